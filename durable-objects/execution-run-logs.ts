/**
 * @module The live log feed of one ExecutionRun shard: `GET /logs/{execution_id}` as SSE, woken as lines are
 * appended and when the run stops running.
 */
import type { RunStore } from "./execution-run-store";

export class LogFeed {
  readonly #listeners = new Map<string, Set<() => void>>();

  constructor(private readonly store: RunStore) {}

  /** Wakes the streams of the run: lines were appended, or it stopped running. */
  notify(executionId: string): void {
    const listeners = this.#listeners.get(executionId);
    this.#listeners.delete(executionId);
    for (const listener of listeners ?? []) listener();
  }

  /**
   * The run's log as SSE: every line after `after`, then live until the run stops running. A run this shard does
   * not know ends at once.
   */
  stream(executionId: string, after: number): Response {
    const encoder = new TextEncoder();
    const stream = new TransformStream<Uint8Array, Uint8Array>();
    const writer = stream.writable.getWriter();
    const flush = async (): Promise<boolean> => {
      // The state before the lines: a callback appends its lines before it ends the run, so a run read as
      // ended has every line in the snapshot below (read after, the last lines could follow the `end`).
      const state = this.store.state(executionId);
      for (const line of this.store.logsAfter(executionId, after)) {
        after = line.seq;
        const data = JSON.stringify({ stream: line.stream, text: line.text, at: line.at });
        await writer.write(encoder.encode(`id: ${line.seq}\nevent: log\ndata: ${data}\n\n`));
      }
      if (state?.status === "running") return false;
      const status = state?.status ?? "unknown";
      await writer.write(encoder.encode(`event: end\ndata: ${JSON.stringify({ status })}\n\n`));
      return true;
    };
    let listener = () => {};
    const nextLine = () =>
      new Promise<void>((resolve) => {
        const listeners = this.#listeners.get(executionId) ?? new Set();
        this.#listeners.set(executionId, listeners);
        listener = resolve;
        listeners.add(resolve);
      });
    const pump = async () => {
      try {
        // Listening starts before each flush: lines appended while it writes to a slow client wake the next one.
        for (;;) {
          const appended = nextLine();
          if (await flush()) break;
          await appended;
        }
        await writer.close();
      } catch {
        // The client went away.
      } finally {
        this.#listeners.get(executionId)?.delete(listener);
      }
    };
    void pump();
    return new Response(stream.readable, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" },
    });
  }
}
