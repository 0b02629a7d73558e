/**
 * @module Text chunks of a streamed answer, coalesced before they are logged. Every logged event costs a SQLite
 * insert, a wake-up of each viewer and a network frame to each; a model streaming 50-100 tokens a second in 100
 * chats is thousands of them a second. A chunk of text goes out at once when none went out in the last
 * `windowMs` (so the first token is never held); text arriving sooner waits at most `windowMs` and goes out
 * as one chunk (`CHAT_STREAM_COALESCE_MS`, default 100). Anything else (tool-call deltas, a finish reason, tool results, the turn's end) first sends
 * the text held, so the order of events never changes.
 */
import type { ChatEvent } from "../workers/chat/events";
import type { StreamChunk } from "../workers/llm/types";

/** A chunk with text only (or nothing at all): the kind that can join the next. */
function isTextOnly(chunk: StreamChunk): boolean {
  return chunk.tool_calls === null && chunk.finish_reason === null;
}

export class ChunkCoalescer {
  #held: StreamChunk | null = null;
  #sentAt = Number.NEGATIVE_INFINITY;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly send: (event: ChatEvent) => void,
    /**
     * `CHAT_STREAM_COALESCE_MS` (default 100: at most 10 text events a second), or a function read at each
     * chunk (the window then follows the load: chat-stream-load.ts); 0 sends every chunk.
     */
    private readonly windowMs: number | (() => number),
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes the turn's next event: text is held or sent as the window says; anything else goes out in order. */
  push(event: ChatEvent): void {
    if (event.type !== "chunk" || !isTextOnly(event.chunk)) {
      this.flush();
      this.send(event);
      return;
    }
    const text = event.chunk.content ?? "";
    this.#held = this.#held
      ? { ...this.#held, content: (this.#held.content ?? "") + text }
      : { ...event.chunk };
    // An empty chunk (a role announcement) waits for the first text rather than spending the window on nothing.
    if (text === "" || this.#timer !== null) return;
    const windowMs = typeof this.windowMs === "function" ? this.windowMs() : this.windowMs;
    const wait = this.#sentAt + windowMs - this.now();
    if (wait <= 0) this.flush();
    else this.#timer = setTimeout(() => this.flush(), wait);
  }

  /** Sends the held text now (before another event, or at the end of a turn). */
  flush(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    const held = this.#held;
    if (held === null) return;
    this.#held = null;
    if (held.content) this.#sentAt = this.now();
    this.send({ type: "chunk", chunk: held });
  }
}
