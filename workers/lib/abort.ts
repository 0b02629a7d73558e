/**
 * @module Waiting for something that cannot be cancelled itself (another object's run, a sub-chat's turn) no
 * longer than a signal allows: a stop ends the turn at once instead of after the slowest tool.
 */

/** `work`'s outcome, or the signal's reason (an AbortError) as soon as `signal` aborts, whichever comes first. */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(signal.reason);
    signal.addEventListener("abort", abort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}
