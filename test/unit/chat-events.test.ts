import { describe, expect, it } from "vitest";
import {
  type ChatEvent,
  type LoggedEvent,
  renderSinasEvent,
  UiMessageStreamRenderer,
} from "../../workers/chat/events";

const logged = (seq: number, event: ChatEvent): LoggedEvent => ({ seq, turnId: "t1", event });

/** A turn with a streamed tool call, its result, and a streamed answer. */
const TURN: LoggedEvent[] = [
  logged(1, { type: "turn_start", turn_id: "t1", message_id: "m1" }),
  logged(2, { type: "step_start", round: 0 }),
  logged(3, {
    type: "chunk",
    chunk: {
      content: null,
      tool_calls: [
        { index: 0, id: "c1", type: "function", function: { name: "default__add", arguments: "" } },
      ],
      finish_reason: null,
    },
  }),
  logged(4, {
    type: "chunk",
    chunk: {
      content: null,
      tool_calls: [{ index: 0, id: null, type: null, function: { name: null, arguments: '{"a":1}' } }],
      finish_reason: "tool_calls",
    },
  }),
  logged(5, { type: "step_end", round: 0, finish_reason: "tool_calls" }),
  logged(6, { type: "tool_call", tool_call_id: "c1", name: "default__add", arguments: { a: 1 } }),
  logged(7, { type: "tool_result", tool_call_id: "c1", name: "default__add", result: { sum: 1 } }),
  logged(8, { type: "step_start", round: 1 }),
  logged(9, { type: "chunk", chunk: { content: "It is ", tool_calls: null, finish_reason: null } }),
  logged(10, { type: "chunk", chunk: { content: "1", tool_calls: null, finish_reason: "stop" } }),
  logged(11, { type: "step_end", round: 1, finish_reason: "stop" }),
  logged(12, { type: "done", status: "completed", message_id: "m2" }),
];

function partsOf(frames: string[]): unknown[] {
  return frames.map((frame) => {
    const data =
      frame
        .split("\n")
        .find((line) => line.startsWith("data: "))
        ?.slice(6) ?? "";
    return data === "[DONE]" ? data : JSON.parse(data);
  });
}

describe("SINAS SSE view", () => {
  it("renders chunks as message events with the sequence as id, and hides internal events", () => {
    const chunk = (TURN[2] as LoggedEvent).event as { chunk: unknown };
    expect(renderSinasEvent(TURN[2] as LoggedEvent)).toBe(
      `id: 3\nevent: message\ndata: ${JSON.stringify(chunk.chunk)}\n\n`,
    );
    expect(renderSinasEvent(TURN[0] as LoggedEvent)).toBeNull();
    expect(renderSinasEvent(TURN[5] as LoggedEvent)).toBeNull();
    expect(renderSinasEvent(TURN[6] as LoggedEvent)).toContain("event: tool_result");
    expect(renderSinasEvent(TURN[11] as LoggedEvent)).toContain(
      'data: {"status":"completed","awaiting_approval":false,"message_id":"m2"}',
    );
  });

  it("renders approvals as SINAS's approval_required message and a pause as a completed done", () => {
    const approval = renderSinasEvent(
      logged(5, {
        type: "approval_required",
        tool_call_id: "c",
        function_namespace: "default",
        function_name: "wire",
        arguments: { amount: 1 },
      }),
    );
    expect(approval).toContain(
      'data: {"type":"approval_required","tool_call_id":"c","function_namespace":"default","function_name":"wire","arguments":{"amount":1}}',
    );
    const paused = renderSinasEvent(
      logged(6, { type: "done", status: "awaiting_approval", message_id: "m" }),
    );
    expect(paused).toContain('"status":"completed","awaiting_approval":true');
    expect(renderSinasEvent(logged(7, { type: "done", status: "stopped", message_id: null }))).toContain(
      '"status":"stopped"',
    );
    expect(renderSinasEvent(logged(8, { type: "error", error: "boom" }))).toBe(
      'id: 8\nevent: error\ndata: {"error":"boom"}\n\n',
    );
  });
});

describe("AI SDK UI-message stream view", () => {
  it("maps a turn onto start, steps, tool input/output, text parts, finish and [DONE]", () => {
    const renderer = new UiMessageStreamRenderer();
    const parts = partsOf(TURN.flatMap((event) => renderer.render(event, true)));
    expect(parts).toEqual([
      { type: "start", messageId: "t1" },
      { type: "start-step" },
      { type: "tool-input-start", toolCallId: "c1", toolName: "default__add" },
      { type: "tool-input-delta", toolCallId: "c1", inputTextDelta: '{"a":1}' },
      { type: "finish-step" },
      { type: "tool-input-available", toolCallId: "c1", toolName: "default__add", input: { a: 1 } },
      { type: "tool-output-available", toolCallId: "c1", output: { sum: 1 } },
      { type: "start-step" },
      { type: "text-start", id: "text-1" },
      { type: "text-delta", id: "text-1", delta: "It is " },
      { type: "text-delta", id: "text-1", delta: "1" },
      { type: "text-end", id: "text-1" },
      { type: "finish-step" },
      { type: "finish" },
      "[DONE]",
    ]);
  });

  it("resumes mid-turn with the state rebuilt from the events the client already has", () => {
    const full = new UiMessageStreamRenderer();
    const expected = TURN.flatMap((event) => full.render(event, true)).filter(
      (frame) => !frame.startsWith("id: 1\n"),
    );
    const resumed = new UiMessageStreamRenderer();
    const frames = TURN.flatMap((event) => resumed.render(event, event.seq > 9));
    const tail = expected.slice(expected.findIndex((frame) => frame.startsWith("id: 10\n")));
    expect(frames).toEqual(tail);
    expect(partsOf(frames)[0]).toEqual({ type: "text-delta", id: "text-1", delta: "1" });
  });

  it("ends a stopped turn with abort and a failed one with error", () => {
    const stopped = new UiMessageStreamRenderer();
    stopped.render(
      logged(1, { type: "chunk", chunk: { content: "par", tool_calls: null, finish_reason: null } }),
      true,
    );
    expect(
      partsOf(stopped.render(logged(2, { type: "done", status: "stopped", message_id: null }), true)),
    ).toEqual([{ type: "text-end", id: "text-1" }, { type: "abort", reason: "stopped" }, "[DONE]"]);
    const failed = new UiMessageStreamRenderer();
    expect(partsOf(failed.render(logged(1, { type: "error", error: "provider down" }), true))).toEqual([
      { type: "error", errorText: "provider down" },
      "[DONE]",
    ]);
  });

  it("continues the client's assistant message after approvals (no new message id)", () => {
    const renderer = new UiMessageStreamRenderer();
    const frames = renderer.render(logged(1, { type: "turn_start", turn_id: "t2", message_id: null }), true);
    expect(partsOf(frames)).toEqual([{ type: "start" }]);
  });

  it("marks rejected calls as denied", () => {
    const renderer = new UiMessageStreamRenderer();
    const frames = renderer.render(
      logged(1, {
        type: "tool_result",
        tool_call_id: "c",
        name: "default__wire",
        result: {},
        rejected: true,
      }),
      true,
    );
    expect(partsOf(frames)).toEqual([{ type: "tool-output-denied", toolCallId: "c" }]);
  });
  /** A round that paused for approval: `c2` asks, `c1` needs none and runs after the decision (D-29). */
  const PAUSED: LoggedEvent[] = [
    logged(1, { type: "turn_start", turn_id: "t1", message_id: "m1" }),
    logged(2, { type: "step_start", round: 0, may_pause: true }),
    logged(3, { type: "chunk", chunk: { content: "On it", tool_calls: null, finish_reason: null } }),
    logged(4, {
      type: "chunk",
      chunk: {
        content: null,
        tool_calls: [
          { index: 0, id: "c1", type: "function", function: { name: "default__add", arguments: '{"a":1}' } },
          { index: 1, id: "c2", type: "function", function: { name: "default__pay", arguments: "{}" } },
        ],
        finish_reason: "tool_calls",
      },
    }),
    logged(5, { type: "step_end", round: 0, finish_reason: "tool_calls" }),
    logged(6, { type: "tool_call", tool_call_id: "c2", name: "default__pay", arguments: {} }),
    logged(7, {
      type: "approval_required",
      tool_call_id: "c2",
      function_namespace: "default",
      function_name: "pay",
      arguments: {},
    }),
    logged(8, { type: "done", status: "awaiting_approval", message_id: "m2" }),
  ];
  const CONTINUATION: LoggedEvent[] = [
    logged(9, { type: "turn_start", turn_id: "t2", message_id: null }),
    logged(10, { type: "tool_call", tool_call_id: "c1", name: "default__add", arguments: { a: 1 } }),
    logged(11, { type: "tool_result", tool_call_id: "c1", name: "default__add", result: { sum: 1 } }),
    logged(12, { type: "tool_result", tool_call_id: "c2", name: "default__pay", result: {} }),
    logged(13, { type: "done", status: "completed", message_id: "m3" }),
  ];

  it("shows a step that may pause only the calls announced, whole, and leaves the others for the decisions", () => {
    const renderer = new UiMessageStreamRenderer();
    expect(partsOf(PAUSED.flatMap((event) => renderer.render(event, true)))).toEqual([
      { type: "start", messageId: "t1" },
      { type: "start-step" },
      { type: "text-start", id: "text-1" },
      { type: "text-delta", id: "text-1", delta: "On it" },
      { type: "text-end", id: "text-1" },
      { type: "finish-step" },
      { type: "tool-input-available", toolCallId: "c2", toolName: "default__pay", input: {} },
      { type: "tool-approval-request", toolCallId: "c2", approvalId: "c2" },
      { type: "finish" },
      "[DONE]",
    ]);
    const continued = partsOf(
      CONTINUATION.flatMap((event) => new UiMessageStreamRenderer().render(event, true)),
    );
    expect(continued).toEqual([
      { type: "start" },
      { type: "tool-input-available", toolCallId: "c1", toolName: "default__add", input: { a: 1 } },
      { type: "tool-output-available", toolCallId: "c1", output: { sum: 1 } },
      { type: "tool-output-available", toolCallId: "c2", output: {} },
      { type: "finish" },
      "[DONE]",
    ]);
    // Replayed as one message (the paused turn, then its continuation), the continuation's parts are the same.
    const replay = new UiMessageStreamRenderer();
    PAUSED.forEach((event) => {
      replay.renderPaused(event);
    });
    expect(partsOf(CONTINUATION.flatMap((event) => replay.render(event, true)))).toEqual(continued);
  });

  it("streams no tool input in a step that may pause, and ends a call never announced as an error", () => {
    const renderer = new UiMessageStreamRenderer();
    const events = [...PAUSED.slice(0, 4), logged(5, { type: "done", status: "stopped", message_id: null })];
    const parts = partsOf(events.flatMap((event) => renderer.render(event as LoggedEvent, true)));
    expect(parts.filter((part) => (part as { type?: string }).type?.startsWith("tool-"))).toEqual([
      expect.objectContaining({ type: "tool-input-error", toolCallId: "c1", input: '{"a":1}' }),
      expect.objectContaining({ type: "tool-input-error", toolCallId: "c2", input: "{}" }),
    ]);
  });
});
