/**
 * @module One conversation at a time in front of pglite-server.
 *
 * pglite-server multiplexes many connections onto one single-user PGlite backend, and it interleaves
 * their extended-protocol messages: connection B's Parse can land between A's Parse and Bind, and A then
 * fails with "unnamed prepared statement does not exist" or a protocol violation. The proxy therefore
 * gives the backend to one connection at a time: a connection takes its turn when it sends, and hands it
 * back once the server has answered every Sync/Query it sent with ReadyForQuery and is idle (not inside a
 * transaction). Real Postgres needs none of this; the launcher enables it for PGlite only.
 */

/** A FIFO mutex; `acquire` resolves with the release function. */
export class TurnQueue {
  #tail: Promise<void> = Promise.resolve();

  acquire(): Promise<() => void> {
    let release: () => void = () => {};
    const turn = new Promise<void>((resolve) => {
      release = resolve;
    });
    const granted = this.#tail.then(() => release);
    this.#tail = this.#tail.then(() => turn);
    return granted;
  }
}

/**
 * Frames a Postgres byte stream into messages (1-byte type, 4-byte length including itself). The client's
 * first message (startup or SSLRequest) has no type byte; `untypedFirst` handles it.
 */
export class MessageFramer {
  #buffer: Buffer = Buffer.alloc(0);
  #untyped: boolean;

  constructor(untypedFirst: boolean) {
    this.#untyped = untypedFirst;
  }

  /** Feeds bytes; returns the types of the messages completed (`"startup"` for the untyped one). */
  push(chunk: Buffer): string[] {
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
    const types: string[] = [];
    for (;;) {
      if (this.#untyped) {
        if (this.#buffer.length < 4) break;
        const length = this.#buffer.readInt32BE(0);
        if (this.#buffer.length < length) break;
        const code = length >= 8 ? this.#buffer.readInt32BE(4) : 0;
        this.#buffer = this.#buffer.subarray(length);
        // SSLRequest (80877103) is answered with one byte and followed by the real, still untyped, startup.
        if (code !== 80877103) this.#untyped = false;
        types.push(code === 80877103 ? "ssl" : "startup");
        continue;
      }
      if (this.#buffer.length < 5) break;
      const length = this.#buffer.readInt32BE(1);
      if (this.#buffer.length < 1 + length) break;
      const type = String.fromCharCode(this.#buffer[0] as number);
      types.push(type === "Z" ? `Z${String.fromCharCode(this.#buffer[5] as number)}` : type);
      this.#buffer = this.#buffer.subarray(1 + length);
    }
    return types;
  }
}

/** How many ReadyForQuery answers a client message sequence calls for. */
export function expectedReadies(clientTypes: string[]): number {
  return clientTypes.filter((type) => type === "S" || type === "Q" || type === "startup").length;
}
