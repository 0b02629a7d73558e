/**
 * @module The executor's end of one runtime's Unix socket: NDJSON framing (one JSON object per line),
 * validation of every incoming message, and a bound on line length so a runaway sandbox cannot
 * exhaust the executor's memory.
 */
import type { Socket } from "node:net";
import { MAX_RESULT_BYTES } from "../../workers/lib/executor-protocol";
import { type ExecutorMessage, type RuntimeMessage, RuntimeMessageSchema } from "./runtime-protocol";

/**
 * Longest line accepted from a runtime: one carrying the largest result the API keeps. The runtime writes
 * ASCII-escaped JSON, at most 3 bytes per byte of UTF-8 (a 4-byte character becomes a 12-byte surrogate pair
 * escape), plus 1 MiB for the message around it. Everything else it sends is far smaller (log chunks of 8 KiB,
 * step fields and errors cut to 64 KiB by the runtime); a longer line is a broken or hostile runtime.
 */
export const MAX_RUNTIME_LINE_BYTES = 3 * MAX_RESULT_BYTES + 1024 * 1024;

const KNOWN_TYPES = new Set(["ready", "pong", "log", "step", "result"]);

export interface RuntimeConnectionHandlers {
  onMessage(message: RuntimeMessage): void;
  /** A line that is not valid JSON or not a known message, or an oversized line: the peer is broken. */
  onProtocolError(reason: string): void;
  onClose(): void;
}

export class RuntimeConnection {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private closed = false;

  constructor(
    private readonly socket: Socket,
    private readonly handlers: RuntimeConnectionHandlers,
  ) {
    socket.on("data", (data: Buffer) => this.receive(data));
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      if (this.closed) return;
      this.closed = true;
      handlers.onClose();
    });
  }

  get isOpen(): boolean {
    return !this.closed && !this.socket.destroyed;
  }

  send(message: ExecutorMessage): boolean {
    if (!this.isOpen) return false;
    this.socket.write(`${JSON.stringify(message)}\n`);
    return true;
  }

  close(): void {
    this.socket.destroy();
  }

  private receive(data: Buffer): void {
    let start = 0;
    for (let newline = data.indexOf(10, start); newline !== -1; newline = data.indexOf(10, start)) {
      this.chunks.push(data.subarray(start, newline));
      const line = Buffer.concat(this.chunks).toString("utf8");
      this.chunks = [];
      this.buffered = 0;
      start = newline + 1;
      if (line.trim()) this.handleLine(line);
      if (this.closed) return;
    }
    if (start < data.length) {
      this.chunks.push(data.subarray(start));
      this.buffered += data.length - start;
      if (this.buffered > MAX_RUNTIME_LINE_BYTES) {
        this.chunks = [];
        this.fail(`a runtime message exceeded ${MAX_RUNTIME_LINE_BYTES} bytes`);
      }
    }
  }

  private handleLine(line: string): void {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      this.fail("the runtime sent a line that is not JSON");
      return;
    }
    const type = (value as { type?: unknown } | null)?.type;
    if (typeof type !== "string" || !KNOWN_TYPES.has(type)) return; // newer runtime, unknown message: ignore
    const parsed = RuntimeMessageSchema.safeParse(value);
    if (!parsed.success) {
      this.fail(`the runtime sent an invalid message: ${parsed.error.issues[0]?.message ?? "unknown"}`);
      return;
    }
    this.handlers.onMessage(parsed.data);
  }

  private fail(reason: string): void {
    if (this.closed) return;
    this.handlers.onProtocolError(reason);
    this.socket.destroy();
  }
}
