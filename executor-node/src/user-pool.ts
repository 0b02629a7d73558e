/**
 * @module One user's warm pool (spec §6.3, per-user isolation): up to POOL_MAX_PER_USER sandboxes, each
 * running one job at a time; jobs beyond that queue. POOL_WARM_PER_USER stay started while the user was
 * seen within POOL_IDLE_SECONDS; idle extras are reaped after POOL_IDLE_SECONDS. A dead sandbox is
 * dropped and, when jobs wait or the warm count requires it, replaced (with backoff when starts fail).
 */
import { WaiterQueue } from "./pool-waiters";
import type { SandboxSpec } from "./sandbox/types";
import type { SandboxSession } from "./sandbox-session";

export interface PoolContext {
  warm: number;
  max: number;
  idleMs: number;
  /** A new, not yet started session for this pool. */
  create(pool: SandboxSpec["pool"]): SandboxSession;
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

  /** An idle sandbox of this user (or exactly `sandboxId`), started if needed; queues when at max. */
  acquire(signal: AbortSignal | undefined, sandboxId?: string): Promise<SandboxSession> {
    if (this.stopped) return Promise.reject(new PoolStoppedError("the user's pool was stopped"));
    this.lastSeen = Date.now();
    const promise = this.waiters.wait(sandboxId, signal);
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
    let count = 0;
    for (const session of this.sessions) if (session.alive) count++;
    return count;
  }

  private dispatch(): void {
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

  private ensureCapacity(): void {
    if (this.stopped) return;
    let starting = [...this.sessions].filter((session) => session.status === "starting").length;
    let generic = this.waiters.generic;
    while (generic > starting && this.sessions.size < this.ctx.max) {
      this.startOne();
      starting++;
      generic = this.waiters.generic;
    }
  }

  private maintainWarm(): void {
    if (this.stopped || this.warmTimer) return;
    if (Date.now() - this.lastSeen >= this.ctx.idleMs) return;
    if (this.sessions.size >= this.ctx.warm) return;
    const delay = this.failures === 0 ? 0 : Math.min(MAX_BACKOFF_MS, 500 * 2 ** (this.failures - 1));
    if (delay === 0) {
      while (this.sessions.size < this.ctx.warm) this.startOne();
      return;
    }
    this.warmTimer = setTimeout(() => {
      this.warmTimer = null;
      this.maintainWarm();
    }, delay);
    this.warmTimer.unref();
  }

  private startOne(): void {
    const session = this.ctx.create({ kind: "user", userId: this.userId });
    this.sessions.add(session);
    // Death is watched only once start() settled, so a failed start is handled exactly once, here.
    session.start().then(
      () => {
        this.failures = 0;
        void session.ended.then(() => this.onDeath(session));
        this.dispatch();
      },
      (error: unknown) => {
        this.failures++;
        const reason = error instanceof Error ? error.message : String(error);
        this.ctx.log(`sandbox ${session.id} for user ${this.userId} failed to start: ${reason}`);
        // The job that asked for it fails rather than waiting forever on a driver that cannot start.
        this.waiters.takeGeneric()?.reject(error instanceof Error ? error : new Error(reason));
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
