/**
 * @module The events of a chat turn, as the ChatSession Durable Object logs them (each gets a sequence number),
 * and their two wire renderings: SINAS's SSE events (sinas-spec §5.6, D-28) and the Vercel AI SDK UI-message
 * stream (peers.md §4.1). One log, several views: a resumed or second viewer sees exactly what the first saw.
 */
import type { StreamChunk } from "../llm/types";

export type TurnEndStatus = "completed" | "awaiting_approval" | "stopped";

export type ChatEvent =
  /** A turn began; `message_id` is the user message it answers (null for a continuation after approval). */
  | { type: "turn_start"; turn_id: string; message_id: string | null }
  /** One LLM call began; `may_pause`: a tool it offers needs approval, so the round may pause for it. */
  | { type: "step_start"; round: number; may_pause?: boolean }
  /** A provider chunk, in SINAS's `message` shape. */
  | { type: "chunk"; chunk: StreamChunk }
  /**
   * A tool call is complete and runs or asks for approval (its arguments parsed when JSON). A paused round's
   * call that needs no approval is announced only when it runs, in the continuation after the decisions.
   */
  | { type: "tool_call"; tool_call_id: string; name: string; arguments: unknown }
  | {
      type: "approval_required";
      tool_call_id: string;
      function_namespace: string;
      function_name: string;
      arguments: unknown;
    }
  | { type: "tool_result"; tool_call_id: string; name: string; result: unknown; rejected?: boolean }
  | { type: "step_end"; round: number; finish_reason: string | null }
  /** The turn's end; `message_id` is the last assistant message saved. */
  | { type: "done"; status: TurnEndStatus; message_id: string | null; output_errors?: string }
  /** The turn failed; also an end. */
  | { type: "error"; error: string; message_id?: string | null };

export interface LoggedEvent {
  seq: number;
  turnId: string;
  event: ChatEvent;
}

/**
 * The most characters of JSON one logged event may take. A Durable Object's SQLite row holds at most 2 MB, and a
 * function's result may be bigger (up to 3 MiB): such a result failed the whole turn when logged.
 */
export const MAX_LOGGED_EVENT_CHARS = 256 * 1024;
/** How much of an oversized value its stand-in shows. */
const PREVIEW_CHARS = 4096;

/**
 * `event` as the log keeps it, with its JSON: a tool result or arguments too big for a row become a stand-in
 * `{truncated: true, chars, preview}` (the model and the chat's messages get the whole value).
 */
export function loggableEvent(event: ChatEvent): { event: ChatEvent; json: string } {
  const json = JSON.stringify(event);
  if (json.length <= MAX_LOGGED_EVENT_CHARS) return { event, json };
  const standIn = (value: unknown) => {
    const text = JSON.stringify(value) ?? "";
    return { truncated: true, chars: text.length, preview: text.slice(0, PREVIEW_CHARS) };
  };
  let bounded: ChatEvent;
  if (event.type === "tool_result") bounded = { ...event, result: standIn(event.result) };
  else if (event.type === "tool_call" || event.type === "approval_required")
    bounded = { ...event, arguments: standIn(event.arguments) };
  else return { event, json };
  return { event: bounded, json: JSON.stringify(bounded) };
}

export function isTurnEnd(event: ChatEvent): boolean {
  return event.type === "done" || event.type === "error";
}

/** One SSE frame; `event` omitted means the default `message` type of the AI SDK framing. */
export function sseFrame(seq: number | null, event: string | null, data: unknown): string {
  const id = seq === null ? "" : `id: ${seq}\n`;
  const type = event === null ? "" : `event: ${event}\n`;
  return `${id}${type}data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`;
}

/**
 * SINAS's view (§5.6) of an event: chunks and approval requests are `message` events, tool results (D-28) are
 * `tool_result` events that SINAS clients ignore, and the end is `done` or `error`. Other events are internal.
 * The SSE stream and the WebSocket viewers both use it.
 */
export function sinasView(event: ChatEvent): { event: string; data: unknown } | null {
  switch (event.type) {
    case "chunk":
      return { event: "message", data: event.chunk };
    case "approval_required": {
      const { type: _type, ...rest } = event;
      return { event: "message", data: { type: "approval_required", ...rest } };
    }
    case "tool_result":
      return {
        event: "tool_result",
        data: { tool_call_id: event.tool_call_id, name: event.name, result: event.result },
      };
    case "done":
      // SINAS ends an approval pause with a plain "completed" too; the extra fields say which end it was.
      return {
        event: "done",
        data: {
          status: event.status === "stopped" ? "stopped" : "completed",
          awaiting_approval: event.status === "awaiting_approval",
          message_id: event.message_id,
          ...(event.output_errors ? { output_errors: event.output_errors } : {}),
        },
      };
    case "error":
      return { event: "error", data: { error: event.error } };
    default:
      return null;
  }
}

export function renderSinasEvent({ seq, event }: LoggedEvent): string | null {
  const view = sinasView(event);
  return view === null ? null : sseFrame(seq, view.event, view.data);
}

/**
 * The AI SDK UI-message stream view. Stateful: the text part id, tool-call ids by stream index and the open
 * text part are derived from the turn's earlier events, so the renderer is fed the whole turn from its start
 * and `emit=false` for the events the client already has.
 *
 * A tool part shows once its call is announced (`tool_call`); in a step that may pause for approval, its input
 * is not streamed before. The AI SDK resubmits approvals (`lastAssistantMessageIsCompleteWithApprovalResponses`)
 * only when every tool part of the step is decided or done: a call that needs no approval, shown pending while
 * the turn paused, would keep it from ever sending. Such a call appears when the continuation runs it.
 */
export class UiMessageStreamRenderer {
  #textId: string | null = null;
  #textCount = 0;
  #toolIds = new Map<number, string>();
  /** The current step may pause for approval: its tool input is not streamed. */
  #holdToolInput = false;
  /** Tool calls whose input streamed but that never became a call, by id: their names and input so far. */
  #unfinishedTools = new Map<string, { toolName: string; input: string }>();

  /** Parts for one event, as SSE frames (empty when the client already has it). */
  render({ seq, event }: LoggedEvent, emit: boolean): string[] {
    const parts = this.#parts(event);
    if (!emit) return [];
    const frames = parts.map((part) => sseFrame(seq, null, part));
    if (isTurnEnd(event)) frames.push(sseFrame(null, null, "[DONE]"));
    return frames;
  }

  /**
   * Frames of a turn that paused for tool approval, replayed as the beginning of the message its continuation
   * goes on: all but its end (the message is not finished).
   */
  renderPaused({ seq, event }: LoggedEvent): string[] {
    const parts = this.#parts(event);
    const kept = isTurnEnd(event) ? parts.filter((part) => part.type === "text-end") : parts;
    return kept.map((part) => sseFrame(seq, null, part));
  }

  #closeText(): Record<string, unknown>[] {
    if (this.#textId === null) return [];
    const id = this.#textId;
    this.#textId = null;
    return [{ type: "text-end", id }];
  }

  #parts(event: ChatEvent): Record<string, unknown>[] {
    switch (event.type) {
      case "turn_start":
        // A continuation (after tool approvals) goes on in the client's last assistant message: no new id.
        return [event.message_id === null ? { type: "start" } : { type: "start", messageId: event.turn_id }];
      case "step_start":
        this.#toolIds.clear();
        this.#holdToolInput = event.may_pause === true;
        return [{ type: "start-step" }];
      case "chunk":
        return this.#chunkParts(event.chunk);
      case "tool_call":
        this.#unfinishedTools.delete(event.tool_call_id);
        return [
          ...this.#closeText(),
          {
            type: "tool-input-available",
            toolCallId: event.tool_call_id,
            toolName: event.name,
            input: event.arguments,
          },
        ];
      case "approval_required":
        return [
          { type: "tool-approval-request", toolCallId: event.tool_call_id, approvalId: event.tool_call_id },
        ];
      case "tool_result":
        return event.rejected
          ? [{ type: "tool-output-denied", toolCallId: event.tool_call_id }]
          : [{ type: "tool-output-available", toolCallId: event.tool_call_id, output: event.result }];
      case "step_end":
        return [...this.#closeText(), { type: "finish-step" }];
      case "done":
        if (event.status === "awaiting_approval") {
          // The calls not announced wait for the decisions, and the continuation announces them: no error.
          this.#unfinishedTools.clear();
          return [...this.#closeText(), { type: "finish" }];
        }
        return event.status === "stopped"
          ? [...this.#closeText(), ...this.#endUnfinishedTools(), { type: "abort", reason: "stopped" }]
          : [...this.#closeText(), ...this.#endUnfinishedTools(), { type: "finish" }];
      case "error":
        return [
          ...this.#closeText(),
          ...this.#endUnfinishedTools(),
          { type: "error", errorText: event.error },
        ];
    }
  }

  /**
   * A tool part the client saw start but that no call followed (the round cap, a stop, a failure) would show
   * as pending forever: it ends as an error.
   */
  #endUnfinishedTools(): Record<string, unknown>[] {
    const parts = [...this.#unfinishedTools].map(([toolCallId, { toolName, input }]) => ({
      type: "tool-input-error",
      toolCallId,
      toolName,
      input,
      errorText: "Not run: the turn ended without this call",
    }));
    this.#unfinishedTools.clear();
    return parts;
  }

  #chunkParts(chunk: StreamChunk): Record<string, unknown>[] {
    const parts: Record<string, unknown>[] = [];
    if (chunk.content) {
      if (this.#textId === null) {
        this.#textCount += 1;
        this.#textId = `text-${this.#textCount}`;
        parts.push({ type: "text-start", id: this.#textId });
      }
      parts.push({ type: "text-delta", id: this.#textId, delta: chunk.content });
    }
    for (const delta of chunk.tool_calls ?? []) {
      let toolCallId = this.#toolIds.get(delta.index);
      if (toolCallId === undefined && delta.id) {
        toolCallId = delta.id;
        this.#toolIds.set(delta.index, toolCallId);
        this.#unfinishedTools.set(toolCallId, { toolName: delta.function.name ?? "", input: "" });
        if (!this.#holdToolInput) {
          parts.push(...this.#closeText());
          parts.push({ type: "tool-input-start", toolCallId, toolName: delta.function.name ?? "" });
        }
      }
      if (toolCallId !== undefined && delta.function.arguments) {
        const unfinished = this.#unfinishedTools.get(toolCallId);
        if (unfinished) unfinished.input += delta.function.arguments;
        if (!this.#holdToolInput)
          parts.push({ type: "tool-input-delta", toolCallId, inputTextDelta: delta.function.arguments });
      }
    }
    return parts;
  }
}
