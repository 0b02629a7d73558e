/**
 * @module The held answer to a job with `reply_within_ms` (PROTOCOL.md §2, "Results in the answer"). The
 * status line and headers go out at once (the API knows the job was accepted); the body is one JSON object
 * sent when the job's last callback is ready (it then travels in the answer instead of a post) or when the
 * window closes first (`callback: null`; the callbacks are posted as usual). A fast run thus costs the API
 * one request instead of two.
 */
import type { JobReply, SignedCallback } from "../../workers/lib/executor-protocol";

export class JobReplyChannel {
  readonly body: ReadableStream<Uint8Array>;
  #controller: ReadableStreamDefaultController<Uint8Array> | null = null;
  #open = true;
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly executionId: string,
    windowMs: number,
  ) {
    this.body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      // The API went away (or the answer was written): whatever follows is posted.
      cancel: () => {
        this.#open = false;
      },
    });
    this.#timer = setTimeout(() => this.close(), windowMs);
  }

  /** True while a callback may still travel in the answer. */
  get open(): boolean {
    return this.#open;
  }

  /** Ends the answer with `callback`; false when the answer is over already (then post it). */
  offer(callback: SignedCallback): boolean {
    return this.#end(callback);
  }

  /** Ends the answer without a callback (window over, or the job ended without one). */
  close(): void {
    this.#end(null);
  }

  #end(callback: SignedCallback | null): boolean {
    if (!this.#open || !this.#controller) return false;
    this.#open = false;
    clearTimeout(this.#timer);
    const reply: JobReply = { accepted: true, execution_id: this.executionId, callback };
    try {
      this.#controller.enqueue(new TextEncoder().encode(JSON.stringify(reply)));
      this.#controller.close();
      return true;
    } catch {
      return false; // the stream was cancelled in between
    }
  }
}
