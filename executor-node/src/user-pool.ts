/**
 * @module One user's warm pool (spec §6.3, per-user isolation): up to POOL_MAX_PER_USER sandboxes, each
 * running one job at a time; jobs beyond that queue. POOL_WARM_PER_USER stay started while the user was
 * seen within POOL_IDLE_SECONDS; idle extras are reaped after POOL_IDLE_SECONDS. A dead sandbox is
 * dropped and, when jobs wait or the warm count requires it, replaced (with backoff when starts fail).
 *
 * Package sets: a sandbox has one for life (the job's `requirements`, executor-node/src/packages.ts), and a
 * job runs only in a sandbox with its set. Sandboxes for another set are started within the same per-user
 * maximum; at the maximum an idle sandbox of another set is replaced. Warm sandboxes have no packages.
 * A released sandbox goes to the oldest job wanting its set, but once younger jobs were served FAIR_PASSES
 * times before the oldest one, an idle sandbox is replaced for the oldest job's set instead.
 */
import { NO_PACKAGES, type PackageSet } from "./packages";
import { WaiterQueue } from "./pool-waiters";
import type { SandboxSpec } from "./sandbox/types";
import type { SandboxSession } from "./sandbox-session";

export interface PoolContext {
  warm: number;
  max: number;
  idleMs: number;
  /** A new, not yet started session for this pool, seeing these packages. */
  create(pool: SandboxSpec["pool"], packages: PackageSet): SandboxSession;
  /** Whether the session holds a paused generator younger than the idle timeout. */
  hasYoungPause(session: SandboxSession): boolean;
  /** Called once per dead session (the pool facade forgets its paused executions). */
  onSessionDeath(session: SandboxSession): void;
  log(line: string): void;
}

/** The paused execution's sandbox died before the resume could run. */
export class PausedExecutionLostError extends Error {
  override readonly name = "PausedExecutionLostError";
}

export class PoolStoppedError extends Error {
  override readonly name = "PoolStoppedError";
}

const MAX_BACKOFF_MS = 30_000;

export class UserPool {
  readonly sessions = new Set<SandboxSession>();
  lastSeen = Date.now();
  private readonly waiters = new WaiterQueue();
  private stopped = false;
  private failures = 0;
  private warmTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly userId: string,
    private readonly ctx: PoolContext,
  ) {}

  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * An idle sandbox of this user with `packages` (or exactly `sandboxId`), started if needed; queues when
   * at max.
   */
  acquire(
    signal: AbortSignal | undefined,
    sandboxId?: string,
    packages: PackageSet = NO_PACKAGES,
  ): Promise<SandboxSession> {
    if (this.stopped) return Promise.reject(new PoolStoppedError("the user's pool was stopped"));
    this.lastSeen = Date.now();
    const promise = this.waiters.wait(sandboxId, signal, packages);
    this.dispatch();
    this.ensureCapacity();
    this.maintainWarm();
    return promise;
  }

  release(session: SandboxSession): void {
    if (!session.alive) return;
    if (session.retire || this.stopped) {
      void session.kill("retired");
      return;
    }
    session.status = "idle";
    session.lastUsed = Date.now();
    this.dispatch();
    this.ensureCapacity(); // waiters for other packages may replace it
    this.maintainWarm();
  }

  /** Kills idle sandboxes unused for the idle timeout, keeping the warm ones while the user is recent. */
  reap(now: number): void {
    const userRecent = now - this.lastSeen < this.ctx.idleMs;
    let remaining = this.aliveCount();
    const idle = [...this.sessions]
      .filter((session) => session.status === "idle")
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const session of idle) {
      if (now - session.lastUsed < this.ctx.idleMs || this.ctx.hasYoungPause(session)) continue;
      if (userRecent && remaining <= this.ctx.warm) break;
      remaining--;
      void session.kill(`idle for ${Math.round((now - session.lastUsed) / 1000)} s`);
    }
  }

  /** Whether the facade may forget this pool. */
  get forgettable(): boolean {
    return (
      this.sessions.size === 0 && this.waiters.length === 0 && Date.now() - this.lastSeen >= this.ctx.idleMs
    );
  }

  /** Replaces idle sandboxes (not those holding paused generators) and busy ones after their job. */
  recycle(): void {
    for (const session of this.sessions) {
      if (this.ctx.hasYoungPause(session)) continue;
      if (session.status === "idle") void session.kill("reloaded");
      else if (session.status === "busy") session.retire = true; // starting ones are fresh already
    }
  }

  /** Kills everything and refuses further jobs (the facade then forgets this pool). */
  async stop(reason: string): Promise<void> {
    this.stopped = true;
    if (this.warmTimer) clearTimeout(this.warmTimer);
    this.waiters.failAll(new PoolStoppedError(reason));
    await Promise.all([...this.sessions].map((session) => session.kill(reason)));
  }

  private aliveCount(): number {
    return this.count((session) => session.alive);
  }

  private count(predicate: (session: SandboxSession) => boolean): number {
    let count = 0;
    for (const session of this.sessions) if (predicate(session)) count++;
    return count;
  }

  private dispatch(): void {
    this.makeRoomForOldest();
    const idle = [...this.sessions]
      .filter((session) => session.status === "idle" && !session.retire)
      .sort((a, b) => b.lastUsed - a.lastUsed); // most recent first: extras stay idle and get reaped
    for (const session of idle) {
      if (this.waiters.length === 0) return;
      const waiter = this.waiters.takeFor(session);
      if (!waiter) continue;
      session.status = "busy";
      session.lastUsed = Date.now();
      waiter.resolve(session);
    }
  }

  /**
   * At the maximum, once younger jobs were served FAIR_PASSES times before the oldest waiter
   * (pool-waiters.ts), kills an idle sandbox of another set even if younger waiters want it: ensureCapacity
   * gives the room to the oldest waiter's set first. Nothing is killed while a sandbox with that set is
   * starting or idle, or one is dying (its room comes).
   */
  private makeRoomForOldest(): void {
    const oldest = this.waiters.starved();
    if (!oldest || this.sessions.size < this.ctx.max) return; // below the maximum ensureCapacity starts one
    const { key } = oldest.packages;
    const coming = [...this.sessions].some(
      (session) => !session.alive || (session.packages.key === key && session.status !== "busy"),
    );
    if (coming) return;
    const victim = [...this.sessions]
      .filter((session) => session.status === "idle" && !session.retire && !this.ctx.hasYoungPause(session))
      .sort((a, b) => a.lastUsed - b.lastUsed)[0];
    void victim?.kill("replaced by a sandbox for an older job's packages");
  }

  /**
   * Starts sandboxes for the waiters, per package set (oldest waiter's set first), up to the maximum. At the
   * maximum, idle sandboxes of other sets (none holding a recent pause) are killed to make room; sandboxes
   * already dying count as room on its way, so repeated calls do not kill more.
   */
  private ensureCapacity(): void {
    if (this.stopped) return;
    let freeing = this.count((session) => !session.alive);
    for (const { packages, count } of this.waiters.demand()) {
      let missing =
        count -
        this.count((session) => session.status === "starting" && session.packages.key === packages.key);
      while (missing > 0 && this.sessions.size < this.ctx.max) {
        this.startOne(packages);
        missing--;
      }
      const coming = Math.min(missing, freeing);
      freeing -= coming;
      missing -= coming;
      if (missing <= 0) continue;
      const replaceable = [...this.sessions]
        .filter(
          (session) =>
            session.status === "idle" &&
            session.packages.key !== packages.key &&
            !this.ctx.hasYoungPause(session),
        )
        .sort((a, b) => a.lastUsed - b.lastUsed)
        .slice(0, missing);
      for (const session of replaceable) void session.kill("replaced by a sandbox with other packages");
    }
  }

  private maintainWarm(): void {
    if (this.stopped || this.warmTimer) return;
    if (Date.now() - this.lastSeen >= this.ctx.idleMs) return;
    if (this.sessions.size >= this.ctx.warm) return;
    const delay = this.failures === 0 ? 0 : Math.min(MAX_BACKOFF_MS, 500 * 2 ** (this.failures - 1));
    if (delay === 0) {
      while (this.sessions.size < this.ctx.warm) this.startOne(NO_PACKAGES);
      return;
    }
    this.warmTimer = setTimeout(() => {
      this.warmTimer = null;
      this.maintainWarm();
    }, delay);
    this.warmTimer.unref();
  }

  private startOne(packages: PackageSet): void {
    const session = this.ctx.create({ kind: "user", userId: this.userId }, packages);
    this.sessions.add(session);
    // Death is watched only once start() settled, so a failed start is handled exactly once, here.
    session.start().then(
      () => {
        this.failures = 0;
        void session.ended.then(() => this.onDeath(session));
        this.dispatch();
        // Waiters for other packages may have come while it started (ensureCapacity skips starting
        // sandboxes): at the maximum, this idle one must now make room for theirs.
        this.ensureCapacity();
      },
      (error: unknown) => {
        this.failures++;
        const reason = error instanceof Error ? error.message : String(error);
        this.ctx.log(`sandbox ${session.id} for user ${this.userId} failed to start: ${reason}`);
        // The job that asked for it fails rather than waiting forever on a driver that cannot start.
        this.waiters.takeGeneric(packages.key)?.reject(error instanceof Error ? error : new Error(reason));
        this.onDeath(session);
      },
    );
  }

  private onDeath(session: SandboxSession): void {
    if (!this.sessions.delete(session)) return;
    this.ctx.onSessionDeath(session);
    this.waiters.failFor(
      session.id,
      new PausedExecutionLostError("The paused execution was lost (its sandbox restarted)"),
    );
    if (this.stopped) return;
    this.dispatch();
    this.ensureCapacity();
    this.maintainWarm();
  }
}
