/**
 * The activity hook of a streamed model call inside workerd itself (llm/activity.ts wraps the response body's
 * reader; Node tests cannot tell whether workerd's streams allow that): every piece read reports, pings included.
 */
import { describe, expect, it } from "vitest";
import { activityOptions, reportingActivity } from "../../workers/llm/activity";

describe("reportingActivity in workerd", () => {
  it("reports each piece of the body read through its reader, and passes no hook to fetch", async () => {
    const pieces = [": keep-alive\n\n", "event: ping\ndata: {}\n\n", "data: hello\n\n"];
    let seenInit: RequestInit | undefined;
    const base = (async (_input: RequestInfo | URL, init?: RequestInit) => {
      seenInit = init;
      const encoder = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          for (const piece of pieces) controller.enqueue(encoder.encode(piece));
          controller.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    }) as typeof fetch;
    let reports = 0;
    const { fetchOptions } = activityOptions(() => reports++);
    const response = await reportingActivity(base)("https://llm.example/v1", {
      method: "POST",
      ...fetchOptions,
    });
    expect(Object.getOwnPropertySymbols(seenInit ?? {})).toEqual([]);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    let text = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    expect(text).toBe(pieces.join(""));
    expect(reports).toBe(pieces.length);
  });
});
