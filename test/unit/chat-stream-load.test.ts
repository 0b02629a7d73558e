import { describe, expect, it } from "vitest";
import { ChunkCoalescer } from "../../durable-objects/chat-coalescer";
import { coalesceWindowMs, trackStreamingTurn } from "../../durable-objects/chat-stream-load";
import type { ChatEvent } from "../../workers/chat/events";
import { type Env, loadConfig } from "../../workers/env";

const text = (content: string): ChatEvent => ({
  type: "chunk",
  chunk: { content, tool_calls: null, finish_reason: null },
});

const BUSY = { from: 20, full: 60 };

describe("coalescing window under load", () => {
  it("keeps the base window up to `from` streaming turns, then grows linearly to the busy one at `full`", () => {
    expect(coalesceWindowMs(100, 300, BUSY, 1)).toBe(100);
    expect(coalesceWindowMs(100, 300, BUSY, 20)).toBe(100);
    expect(coalesceWindowMs(100, 300, BUSY, 40)).toBe(200);
    expect(coalesceWindowMs(100, 300, BUSY, 60)).toBe(300);
    expect(coalesceWindowMs(100, 300, BUSY, 500)).toBe(300);
    // 0 means every chunk its own event, under any load; a busy window at or below the base changes nothing.
    expect(coalesceWindowMs(0, 300, BUSY, 500)).toBe(0);
    expect(coalesceWindowMs(100, 50, BUSY, 500)).toBe(100);
  });

  it("counts streaming turns until each one's release, released once", () => {
    const before = coalesceWindowMs(100, 140, BUSY);
    const releases = Array.from({ length: BUSY.full }, () => trackStreamingTurn());
    // With `full` more turns the window is the busy one, whatever streamed before.
    expect(coalesceWindowMs(100, 140, BUSY)).toBe(140);
    for (const release of releases) {
      release();
      release();
    }
    expect(coalesceWindowMs(100, 140, BUSY)).toBe(before);
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

  it("reads CHAT_STREAM_BUSY_TURNS as FROM-FULL (default 20-60) and refuses anything else, naming it", () => {
    const env = {
      DATABASE_URL: "postgres://sinas@localhost/sinas",
      UPSTASH_REDIS_REST_URL: "http://localhost:8079",
      UPSTASH_REDIS_REST_TOKEN: "token",
    } as Env;
    expect(loadConfig({ ...env }).CHAT_STREAM_BUSY_TURNS).toEqual({ from: 20, full: 60 });
    expect(loadConfig({ ...env, CHAT_STREAM_BUSY_TURNS: "0-1" }).CHAT_STREAM_BUSY_TURNS).toEqual({
      from: 0,
      full: 1,
    });
    for (const bad of ["60-20", "5-5", "20", "a-b"]) {
      expect(() => loadConfig({ ...env, CHAT_STREAM_BUSY_TURNS: bad })).toThrow(/CHAT_STREAM_BUSY_TURNS/);
    }
  });
});
