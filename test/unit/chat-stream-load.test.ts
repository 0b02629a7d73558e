import { describe, expect, it } from "vitest";
import { ChunkCoalescer } from "../../durable-objects/chat-coalescer";
import {
  BUSY_FROM,
  BUSY_FULL,
  coalesceWindowMs,
  trackStreamingTurn,
} from "../../durable-objects/chat-stream-load";
import type { ChatEvent } from "../../workers/chat/events";

const text = (content: string): ChatEvent => ({
  type: "chunk",
  chunk: { content, tool_calls: null, finish_reason: null },
});

describe("coalescing window under load", () => {
  it("keeps the base window up to BUSY_FROM streaming turns, then grows linearly to the busy one", () => {
    expect(coalesceWindowMs(100, 300, 1)).toBe(100);
    expect(coalesceWindowMs(100, 300, BUSY_FROM)).toBe(100);
    expect(coalesceWindowMs(100, 300, (BUSY_FROM + BUSY_FULL) / 2)).toBe(200);
    expect(coalesceWindowMs(100, 300, BUSY_FULL)).toBe(300);
    expect(coalesceWindowMs(100, 300, 500)).toBe(300);
    // 0 means every chunk its own event, under any load; a busy window at or below the base changes nothing.
    expect(coalesceWindowMs(0, 300, 500)).toBe(0);
    expect(coalesceWindowMs(100, 50, 500)).toBe(100);
  });

  it("counts streaming turns until each one's release, released once", () => {
    const before = coalesceWindowMs(100, 100 + (BUSY_FULL - BUSY_FROM));
    const releases = Array.from({ length: BUSY_FULL }, () => trackStreamingTurn());
    // With BUSY_FULL more turns the window is the busy one, whatever streamed before.
    expect(coalesceWindowMs(100, 100 + (BUSY_FULL - BUSY_FROM))).toBe(100 + (BUSY_FULL - BUSY_FROM));
    for (const release of releases) {
      release();
      release();
    }
    expect(coalesceWindowMs(100, 100 + (BUSY_FULL - BUSY_FROM))).toBe(before);
  });

  it("lets the coalescer read the window at each chunk", () => {
    const sent: ChatEvent[] = [];
    let clock = 1_000;
    let windowMs = 100;
    const coalescer = new ChunkCoalescer(
      (event) => sent.push(event),
      () => windowMs,
      () => clock,
    );
    coalescer.push(text("a"));
    clock += 150;
    coalescer.push(text("b")); // past the 100 ms window: at once
    expect(sent).toEqual([text("a"), text("b")]);
    windowMs = 300;
    clock += 150;
    coalescer.push(text("c")); // within the 300 ms window now: held
    expect(sent).toHaveLength(2);
    coalescer.flush();
    expect(sent).toEqual([text("a"), text("b"), text("c")]);
  });
});
