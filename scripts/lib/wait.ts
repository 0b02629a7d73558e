/**
 * @module Waiting for the stack's pieces to answer.
 */
import { connect } from "node:net";

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** `step`'s result, or an error naming the step once `timeoutMs` pass (a start-up step must never hang). */
export async function withinTime<T>(step: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([step, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once a TCP connection to host:port succeeds; rejects after `timeoutMs` or when `abort` fires. */
export async function waitForPort(
  port: number,
  options: { host?: string; timeoutMs: number; abort?: () => string | null },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  const host = options.host ?? "127.0.0.1";
  while (Date.now() < deadline) {
    const reason = options.abort?.();
    if (reason) throw new Error(reason);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, host);
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    await sleep(100);
  }
  throw new Error(`nothing listened on ${host}:${port} within ${options.timeoutMs} ms`);
}

/** Polls `url` until `accept(response)` is true; returns the accepted response's JSON body (or null). */
export async function waitForHttp(
  url: string,
  options: { timeoutMs: number; accept?: (response: Response) => boolean; abort?: () => string | null },
): Promise<unknown> {
  const deadline = Date.now() + options.timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    const reason = options.abort?.();
    if (reason) throw new Error(reason);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      const body: unknown = await response.json().catch(() => null);
      if (options.accept ? options.accept(response) : response.ok) return body;
      last = `${response.status} ${JSON.stringify(body)}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await sleep(200);
  }
  throw new Error(`${url} was not ready within ${options.timeoutMs} ms (last: ${last})`);
}
