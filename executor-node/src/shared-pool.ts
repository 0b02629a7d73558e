/**
 * @module The shared worker pool (spec §6.6, §1.21): SHARED_POOL_SIZE sandboxes (`worker-1`..`worker-N`)
 * serving `shared_pool` functions of every user, picked round robin, scaled within 0..10. A dead worker is
 * restarted in its slot (with backoff when starts fail); scaling down removes the last workers, a busy
 * one after its job. A worker has one package set (executor-node/src/packages.ts) for life; when jobs wait
 * for a set no worker has, an idle worker whose set nobody waits for is restarted in its slot with theirs,
 * and once younger jobs were served FAIR_PASSES times before the oldest waiter, an idle worker is restarted
 * with the oldest waiter's set even if others want its own. A set whose sandbox cannot start fails its
 * oldest job with the start error, and the slot goes back to no packages once nobody waits for that set.
 */

import { NO_PACKAGES, type PackageSet } from "./packages";
import { WaiterQueue } from "./pool-waiters";
import type { SandboxSession } from "./sandbox-session";
import type { PoolContext } from "./user-pool";
import { PausedExecutionLostError } from "./user-pool";

export const MAX_SHARED_WORKERS = 10;

export class NoWorkersError extends Error {
  override readonly name = "NoWorkersError";
  constructor() {
    super("No workers available. Please scale workers up first.");
  }
}

/** A refused scale target; the HTTP layer answers 400 with its message. */
export class ScaleError extends Error {
  override readonly name = "ScaleError";
}

export interface ScaleResult {
  action: "scale_up" | "scale_down" | "no_change";
  previous_count: number;
  current_count: number;
  added: number;
  removed: number;
}

interface Slot {
  index: number;
  /** The packages of the slot's next sandbox (and of its current one, unless being restarted for others). */
  packages: PackageSet;
  session: SandboxSession | null;
  failures: number;
  restartTimer: NodeJS.Timeout | null;
}

const MAX_BACKOFF_MS = 30_000;

export class SharedPool {
  private slots: Slot[] = [];
  private readonly waiters = new WaiterQueue();
  private next = 0;
  private closed = false;

  constructor(private readonly ctx: PoolContext) {}

  get size(): number {
    return this.slots.length;
  }

  get workers(): Array<{ index: number; session: SandboxSession | null }> {
    return this.slots.map((slot) => ({ index: slot.index, session: slot.session }));
  }

  acquire(
    signal: AbortSignal | undefined,
    sandboxId?: string,
    packages: PackageSet = NO_PACKAGES,
  ): Promise<SandboxSession> {
    if (this.slots.length === 0) return Promise.reject(new NoWorkersError());
    const promise = this.waiters.wait(sandboxId, signal, packages);
    this.dispatch();
    return promise;
  }

  release(session: SandboxSession): void {
    if (!session.alive) return;
    const slot = this.slots.find((candidate) => candidate.session === session);
    if (!slot || session.retire || this.closed) {
      void session.kill("removed from the shared pool");
      return;
    }
    session.status = "idle";
    session.lastUsed = Date.now();
    this.dispatch();
  }

  async scale(target: number): Promise<ScaleResult> {
    if (!Number.isInteger(target) || target < 0) throw new ScaleError("Target count must be >= 0");
    if (target > MAX_SHARED_WORKERS) throw new ScaleError(`Maximum ${MAX_SHARED_WORKERS} workers allowed`);
    const previous = this.slots.length;
    if (target === previous) {
      return { action: "no_change", previous_count: previous, current_count: previous, added: 0, removed: 0 };
    }
    if (target > previous) {
      const added: Slot[] = [];
      for (let index = previous; index < target; index++) {
        const slot: Slot = { index, packages: NO_PACKAGES, session: null, failures: 0, restartTimer: null };
        this.slots.push(slot);
        added.push(slot);
      }
      await Promise.allSettled(added.map((slot) => this.startSlot(slot)));
      return {
        action: "scale_up",
        previous_count: previous,
        current_count: target,
        added: target - previous,
        removed: 0,
      };
    }
    const removed = this.slots.splice(target);
    for (const slot of removed) {
      if (slot.restartTimer) clearTimeout(slot.restartTimer);
      const session = slot.session;
      slot.session = null;
      if (!session) continue;
      if (session.status === "busy") session.retire = true;
      else void session.kill("removed from the shared pool");
    }
    if (this.slots.length === 0) this.waiters.failAll(new NoWorkersError());
    this.next = this.slots.length === 0 ? 0 : this.next % this.slots.length;
    return {
      action: "scale_down",
      previous_count: previous,
      current_count: target,
      added: 0,
      removed: previous - target,
    };
  }

  async close(reason: string): Promise<void> {
    this.closed = true;
    const slots = this.slots;
    this.slots = [];
    this.waiters.failAll(new NoWorkersError());
    await Promise.all(
      slots.map(async (slot) => {
        if (slot.restartTimer) clearTimeout(slot.restartTimer);
        await slot.session?.kill(reason);
      }),
    );
  }

  /** Hands idle workers to waiters, round robin from the worker after the last one used. */
  private dispatch(): void {
    this.claimForOldest();
    let served = true;
    while (served && this.waiters.length > 0 && this.slots.length > 0) {
      served = false;
      for (let step = 0; step < this.slots.length; step++) {
        const position = (this.next + step) % this.slots.length;
        const session = this.slots[position]?.session;
        if (session?.status !== "idle" || session.retire) continue;
        const waiter = this.waiters.takeFor(session);
        if (!waiter) continue;
        session.status = "busy";
        session.lastUsed = Date.now();
        this.next = (position + 1) % this.slots.length;
        waiter.resolve(session);
        served = true;
        break;
      }
    }
    this.repurpose();
  }

  /**
   * Restarts an idle worker with the oldest waiter's set once younger jobs were served FAIR_PASSES times
   * before it (pool-waiters.ts), unless a worker with that set is on its way or about to serve it.
   */
  private claimForOldest(): void {
    const oldest = this.waiters.starved();
    if (!oldest) return;
    const { key } = oldest.packages;
    if (this.slots.some((slot) => slot.packages.key === key && slot.session?.status !== "busy")) return;
    const slot = this.slots.find(
      (candidate) =>
        candidate.session?.status === "idle" &&
        !candidate.session.retire &&
        !this.ctx.hasYoungPause(candidate.session),
    );
    if (!slot) return;
    slot.packages = oldest.packages;
    void slot.session?.kill("restarted with other packages"); // onDeath starts the slot's next sandbox
  }

  /** Restarts an idle worker whose package set nobody waits for with the set of waiters no worker has. */
  private repurpose(): void {
    const demand = this.waiters.demand();
    const wanted = new Set(demand.map(({ packages }) => packages.key));
    for (const { packages } of demand) {
      if (this.slots.some((slot) => slot.packages.key === packages.key)) continue;
      const slot = this.slots.find(
        (candidate) =>
          candidate.session?.status === "idle" &&
          !wanted.has(candidate.packages.key) &&
          !this.ctx.hasYoungPause(candidate.session),
      );
      if (!slot) return; // a busy worker is considered again once released
      slot.packages = packages;
      void slot.session?.kill("restarted with other packages"); // onDeath starts the slot's next sandbox
    }
  }

  private async startSlot(slot: Slot): Promise<void> {
    const session = this.ctx.create({ kind: "shared", workerIndex: slot.index }, slot.packages);
    slot.session = session;
    try {
      await session.start();
      slot.failures = 0;
      this.dispatch();
    } catch (error) {
      slot.failures++;
      const reason = error instanceof Error ? error.message : String(error);
      this.ctx.log(`shared worker-${slot.index + 1} failed to start: ${reason}`);
      // A job waiting for this set fails with the start error rather than at its timeout (as in the user
      // pools), unless the slot was scaled away or another live worker with the set can serve it.
      const { key } = slot.packages;
      const servedElsewhere = this.slots.some(
        (other) => other !== slot && other.packages.key === key && other.session?.alive,
      );
      if (this.slots.includes(slot) && !servedElsewhere) {
        this.waiters.takeGeneric(key)?.reject(error instanceof Error ? error : new Error(reason));
      }
    }
    // Watched only once start() settled, so the restart backoff sees this start's failure count.
    void session.ended.then(() => this.onDeath(slot, session));
  }

  private onDeath(slot: Slot, session: SandboxSession): void {
    this.ctx.onSessionDeath(session);
    this.waiters.failFor(
      session.id,
      new PausedExecutionLostError("The paused execution was lost (its sandbox restarted)"),
    );
    if (slot.session !== session) return; // removed by a scale down, or already replaced
    slot.session = null;
    if (this.closed || !this.slots.includes(slot)) return;
    this.dropFailedSet(slot);
    const delay = slot.failures === 0 ? 0 : Math.min(MAX_BACKOFF_MS, 500 * 2 ** (slot.failures - 1));
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = null;
      if (this.closed || !this.slots.includes(slot) || slot.session) return;
      this.dropFailedSet(slot); // its last waiter may have left during the backoff
      void this.startSlot(slot);
    }, delay);
    slot.restartTimer.unref();
  }

  /**
   * A slot whose start failed with a package set nobody waits for any more goes back to no packages, so a
   * set that cannot start does not hold a worker for good. Its failures were the set's: the backoff
   * starts over.
   */
  private dropFailedSet(slot: Slot): void {
    const { key } = slot.packages;
    if (slot.failures === 0 || key === NO_PACKAGES.key || this.waiters.wants(key)) return;
    slot.packages = NO_PACKAGES;
    slot.failures = 0;
  }
}
