/**
 * @module The executor's end of one runtime's Unix socket: NDJSON framing (one JSON object per line),
 * validation of every incoming message, and bounds on line length and nesting depth so a runaway sandbox
 * cannot exhaust the executor's memory or stack. Nothing a line holds may throw out of the socket's data
 * listener: that would end the executor and every tenant's jobs with it.
 */
import type { Socket } from "node:net";
import { messageOf } from "../../workers/lib/errors";
import { MAX_RESULT_BYTES } from "../../workers/lib/executor-protocol";
import { type ExecutorMessage, type RuntimeMessage, RuntimeMessageSchema } from "./runtime-protocol";

/**
 * Longest line accepted from a runtime: one carrying the largest result the API keeps. The runtime writes
 * ASCII-escaped JSON, at most 3 bytes per byte of UTF-8 (a 4-byte character becomes a 12-byte surrogate pair
 * escape), plus 1 MiB for the message around it. Everything else it sends is far smaller (log chunks of 8 KiB,
 * step fields and errors cut to 64 KiB by the runtime); a longer line is a broken or hostile runtime.
 */
export const MAX_RUNTIME_LINE_BYTES = 3 * MAX_RESULT_BYTES + 1024 * 1024;

/**
 * Deepest nesting of arrays and objects accepted in a runtime message. The runtime's `json.dumps` stops at
 * Python's recursion limit (1000), so an honest message stays below this; V8's JSON.stringify overflows its
 * stack at about 4000 levels, and every value forwarded is stringified (bounds, callbacks).
 */
export const MAX_RUNTIME_JSON_DEPTH = 1024;

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

  /**
   * Stops reading while no job runs (the runtime sends nothing between jobs: it drops output written then).
   * A flood from a thread left running in an idle sandbox then fills the socket's buffers and blocks that
   * thread, instead of being parsed on the executor's one event loop. Lines left in the chunk being handled
   * still arrive (and are dropped as no job's): at most one read's worth.
   */
  pause(): void {
    this.socket.pause();
  }

  /** Reads again (before a job is sent); what was buffered meanwhile comes first. */
  resume(): void {
    this.socket.resume();
  }

  private receive(data: Buffer): void {
    let start = 0;
    for (let newline = data.indexOf(10, start); newline !== -1; newline = data.indexOf(10, start)) {
      this.chunks.push(data.subarray(start, newline));
      const line = Buffer.concat(this.chunks);
      this.chunks = [];
      this.buffered = 0;
      start = newline + 1;
      try {
        this.handleLine(line);
      } catch (error) {
        // A throw would leave the data listener and end the executor: only this sandbox pays for its line.
        this.fail(`handling a runtime message failed: ${messageOf(error)}`);
      }
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

  private handleLine(bytes: Buffer): void {
    if (nestedDeeperThan(bytes, MAX_RUNTIME_JSON_DEPTH)) {
      this.fail(`the runtime sent a message nested more than ${MAX_RUNTIME_JSON_DEPTH} levels deep`);
      return;
    }
    const line = bytes.toString("utf8");
    if (!line.trim()) return;
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

/**
 * Whether the JSON text nests arrays and objects deeper than `max` (brackets inside strings do not count).
 * One pass over the bytes, skipping strings with indexOf: a fraction of what JSON.parse costs on the line.
 */
function nestedDeeperThan(line: Buffer, max: number): boolean {
  if (line.length <= max) return false; // each level takes at least one byte
  let depth = 0;
  for (let index = 0; index < line.length; index++) {
    const byte = line[index];
    if (byte === QUOTE) {
      index = stringEnd(line, index);
      if (index === -1) return false; // unterminated: JSON.parse refuses the line
    } else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > max) return true;
    } else if (byte === 0x5d || byte === 0x7d) {
      depth--;
    }
  }
  return false;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Index of the quote closing the string opened at `open`, or -1. */
function stringEnd(line: Buffer, open: number): number {
  let end = open;
  for (;;) {
    end = line.indexOf(QUOTE, end + 1);
    if (end === -1) return -1;
    let backslashes = 0;
    while (line[end - 1 - backslashes] === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return end; // an odd count escapes this quote
  }
}
