/**
 * @module The queue of jobs waiting for a sandbox, shared by the user pools and the shared pool. A waiter
 * wants any idle sandbox of its pool with its package set, or one given sandbox (the resume of a paused
 * generator); it leaves the queue when served, failed, or when its AbortSignal fires (timeout, cancel).
 *
 * Fairness: a sandbox goes to the oldest waiter wanting its package set, so a stream of younger jobs for
 * one set could starve an older job for another. The queue counts how often its oldest generic waiter was
 * passed over; once `starved()` reports it, the pool restarts an idle sandbox with its set.
 */
import { NO_PACKAGES, type PackageSet } from "./packages";
import type { SandboxSession } from "./sandbox-session";

/**
 * How many younger jobs may be served while the oldest waiter waits before a sandbox is taken for it.
 * Taking one costs a sandbox start, and maybe another later to bring the younger jobs' set back, so it
 * happens only after this many went first: at most one forced restart per FAIR_PASSES jobs served, and
 * a job waits behind at most FAIR_PASSES younger ones per older waiter.
 */
export const FAIR_PASSES = 4;

export interface Waiter {
  /** Only this sandbox will do (it holds the paused generator to resume). */
  sandboxId: string | undefined;
  /** The package set a sandbox must have to serve this waiter (ignored with `sandboxId`). */
  packages: PackageSet;
  /** Younger generic waiters served while this one was the oldest. */
  passedOver: number;
  resolve(session: SandboxSession): void;
  reject(error: Error): void;
}

export class WaiterQueue {
  private waiters: Waiter[] = [];

  get length(): number {
    return this.waiters.length;
  }

  /** Waiters that accept any sandbox with the right packages, per package set, oldest waiter's set first. */
  demand(): Array<{ packages: PackageSet; count: number }> {
    const byKey = new Map<string, { packages: PackageSet; count: number }>();
    for (const waiter of this.waiters) {
      if (waiter.sandboxId !== undefined) continue;
      const entry = byKey.get(waiter.packages.key);
      if (entry) entry.count++;
      else byKey.set(waiter.packages.key, { packages: waiter.packages, count: 1 });
    }
    return [...byKey.values()];
  }

  /** Queues a waiter; the promise settles when served or failed, or rejects with the signal's reason. */
  wait(
    sandboxId: string | undefined,
    signal: AbortSignal | undefined,
    packages: PackageSet = NO_PACKAGES,
  ): Promise<SandboxSession> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal));
        return;
      }
      const onAbort = () => {
        this.remove(waiter);
        reject(abortReason(signal as AbortSignal));
      };
      const waiter: Waiter = {
        sandboxId,
        packages,
        passedOver: 0,
        resolve: (session) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(session);
        },
        reject: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /**
   * Takes the first waiter this idle session can serve: its own resume first, else the oldest generic one
   * wanting the session's package set.
   */
  takeFor(session: SandboxSession): Waiter | undefined {
    const resume = this.waiters.findIndex((waiter) => waiter.sandboxId === session.id);
    if (resume !== -1) return this.waiters.splice(resume, 1)[0];
    const oldest = this.oldestGeneric();
    const taken = this.takeGeneric(session.packages.key);
    if (taken && oldest && taken !== oldest) oldest.passedOver++;
    return taken;
  }

  /** Takes the oldest waiter that accepts any sandbox with this package set. */
  takeGeneric(packagesKey: string): Waiter | undefined {
    const index = this.genericIndex(packagesKey);
    return index === -1 ? undefined : this.waiters.splice(index, 1)[0];
  }

  /** Whether a waiter accepts any sandbox with this package set. */
  wants(packagesKey: string): boolean {
    return this.genericIndex(packagesKey) !== -1;
  }

  /** The oldest generic waiter once FAIR_PASSES younger ones were served before it. */
  starved(): Waiter | undefined {
    const oldest = this.oldestGeneric();
    return oldest && oldest.passedOver >= FAIR_PASSES ? oldest : undefined;
  }

  private oldestGeneric(): Waiter | undefined {
    return this.waiters.find((waiter) => waiter.sandboxId === undefined);
  }

  private genericIndex(packagesKey: string): number {
    return this.waiters.findIndex(
      (waiter) => waiter.sandboxId === undefined && waiter.packages.key === packagesKey,
    );
  }

  /** Fails the waiters that wanted exactly this sandbox. */
  failFor(sandboxId: string, error: Error): void {
    for (const waiter of this.waiters.filter((candidate) => candidate.sandboxId === sandboxId)) {
      this.remove(waiter);
      waiter.reject(error);
    }
  }

  failAll(error: Error): void {
    const all = this.waiters;
    this.waiters = [];
    for (const waiter of all) waiter.reject(error);
  }

  private remove(waiter: Waiter): void {
    const index = this.waiters.indexOf(waiter);
    if (index !== -1) this.waiters.splice(index, 1);
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error("aborted");
}
