/**
 * @module The sandbox pools: per-user warm pools, the shared worker pool, and the registry of paused
 * generators (execution_id -> the sandbox holding it) so that a `resume` job reaches the same sandbox.
 * A reaper drops idle sandboxes; a sandbox holding a pause younger than POOL_IDLE_SECONDS is kept.
 */
import { tmpdir } from "node:os";
import type { PoolsReport } from "../../workers/lib/executor-protocol";
import { NO_PACKAGES, type PackageSet } from "./packages";
import type { SandboxDriver, SandboxLimits } from "./sandbox/types";
import { SandboxSession } from "./sandbox-session";
import { type ScaleResult, SharedPool } from "./shared-pool";
import { PausedExecutionLostError, type PoolContext, UserPool } from "./user-pool";

export interface PoolOptions {
  driver: SandboxDriver;
  limits: SandboxLimits;
  warmPerUser: number;
  maxPerUser: number;
  idleSeconds: number;
  sharedSize: number;
  /** How often idle sandboxes are checked for CPU use (`checkIdleCpu`); 0 or unset: never. */
  idleCheckMs?: number;
  readyTimeoutMs?: number;
  /** Parent of the sandboxes' socket folders (default: the system temp folder). */
  workDir?: string;
  log?: (line: string) => void;
}

export class PoolClosedError extends Error {
  override readonly name = "PoolClosedError";
  constructor() {
    super("The executor is shutting down");
  }
}

/**
 * CPU share (% of a core) at which an idle sandbox is killed. An idle runtime waits on its socket and uses
 * none; a thread or process a job left running (`while True: pass`) uses 100.
 */
const IDLE_CPU_LIMIT_PERCENT = 20;

interface PausedEntry {
  session: SandboxSession;
  pausedAt: number;
}

export class Pool {
  private readonly users = new Map<string, UserPool>();
  private readonly shared: SharedPool;
  private readonly paused = new Map<string, PausedEntry>();
  private readonly ctx: PoolContext;
  private readonly reaper: NodeJS.Timeout;
  private readonly idleCheck: NodeJS.Timeout | null;
  private closed = false;

  constructor(private readonly options: PoolOptions) {
    const idleMs = options.idleSeconds * 1000;
    this.ctx = {
      warm: options.warmPerUser,
      max: options.maxPerUser,
      idleMs,
      create: (pool, packages) =>
        new SandboxSession({
          driver: options.driver,
          pool,
          limits: options.limits,
          readyTimeoutMs: options.readyTimeoutMs ?? 10_000,
          parentDir: options.workDir ?? tmpdir(),
          packages,
        }),
      hasYoungPause: (session) => this.hasYoungPause(session, Date.now()),
      onSessionDeath: (session) => {
        for (const [executionId, entry] of this.paused) {
          if (entry.session === session) this.paused.delete(executionId);
        }
      },
      log: options.log ?? ((line) => console.log(line)),
    };
    this.shared = new SharedPool(this.ctx);
    this.reaper = setInterval(() => this.reap(), Math.min(30_000, Math.max(200, idleMs / 4)));
    this.reaper.unref();
    this.idleCheck = options.idleCheckMs ? setInterval(() => this.checkIdleCpu(), options.idleCheckMs) : null;
    this.idleCheck?.unref();
  }

  get driverName(): SandboxDriver["name"] {
    return this.options.driver.name;
  }

  /** Starts the configured shared workers. */
  async init(): Promise<void> {
    if (this.options.sharedSize > 0) await this.shared.scale(this.options.sharedSize);
  }

  /**
   * An idle sandbox for a new run, seeing `packages` (default none): the user's pool, or the shared pool
   * for `shared_pool` functions.
   */
  acquire(
    target: { userId: string; shared: boolean; packages?: PackageSet },
    signal?: AbortSignal,
  ): Promise<SandboxSession> {
    if (this.closed) return Promise.reject(new PoolClosedError());
    const packages = target.packages ?? NO_PACKAGES;
    if (target.shared) return this.shared.acquire(signal, undefined, packages);
    return this.userPool(target.userId).acquire(signal, undefined, packages);
  }

  /** The sandbox holding the paused execution, once idle; PausedExecutionLostError when it is gone. */
  acquireForResume(executionId: string, signal?: AbortSignal): Promise<SandboxSession> {
    if (this.closed) return Promise.reject(new PoolClosedError());
    const entry = this.paused.get(executionId);
    if (!entry?.session.alive) {
      this.paused.delete(executionId);
      return Promise.reject(
        new PausedExecutionLostError("The paused execution was lost (its sandbox restarted)"),
      );
    }
    this.paused.delete(executionId);
    const { session } = entry;
    if (session.pool.kind === "shared") return this.shared.acquire(signal, session.id);
    return this.userPool(session.pool.userId).acquire(signal, session.id);
  }

  /** Whether a paused execution is held here (the resume can run). */
  holdsPaused(executionId: string): boolean {
    return this.paused.get(executionId)?.session.alive === true;
  }

  /** Forgets a paused execution (cancelled while awaiting input); true when it was held. */
  forgetPaused(executionId: string): boolean {
    return this.paused.delete(executionId);
  }

  /**
   * Returns a sandbox after its job; `pausedExecution` when the job ended awaiting input. A sandbox whose
   * finished job left processes running is killed instead (its pool replaces it): they would run on, unbounded,
   * beside the user's next jobs. Not while the sandbox holds a paused generator, which may keep its helpers
   * until it is resumed (whichever job's process spins meanwhile, the idle check finds it). False when the
   * pause could not be kept (the sandbox was retired or its pool stopped): nobody could resume it.
   */
  release(session: SandboxSession, pausedExecution?: string): boolean {
    const checked = session.alive && !pausedExecution && !this.holdsPauseIn(session);
    const leftovers = checked ? session.leftovers() : null;
    if (leftovers) {
      this.ctx.log(`[pool] sandbox ${session.id} killed: ${leftovers}`);
      void session.kill(leftovers);
    }
    if (pausedExecution && session.alive) {
      this.paused.set(pausedExecution, { session, pausedAt: Date.now() });
    }
    if (session.pool.kind === "shared") {
      this.shared.release(session);
    } else {
      const pool = this.users.get(session.pool.userId);
      if (pool?.sessions.has(session)) pool.release(session);
      else void session.kill("its pool was stopped");
    }
    return !pausedExecution || (session.alive && this.paused.get(pausedExecution)?.session === session);
  }

  scaleShared(target: number): Promise<ScaleResult> {
    return this.shared.scale(target);
  }

  /** Replaces the user's sandboxes with fresh ones (idle now, busy after their job; paused ones kept). */
  reloadUser(userId: string): void {
    this.users.get(userId)?.recycle();
  }

  async stopUser(userId: string): Promise<void> {
    const pool = this.users.get(userId);
    if (!pool) return;
    this.users.delete(userId);
    await pool.stop("stopped by an administrator");
  }

  report(): PoolsReport {
    const now = Date.now();
    const user_pools: PoolsReport["user_pools"] = [];
    for (const pool of this.users.values()) {
      for (const session of pool.sessions) {
        if (!session.alive) continue;
        user_pools.push({
          user_id: pool.userId,
          sandbox_id: session.id,
          status: session.status === "dead" ? "idle" : session.status,
          last_used: new Date(session.lastUsed).toISOString(),
          idle_seconds: session.status === "idle" ? Math.floor((now - session.lastUsed) / 1000) : 0,
        });
      }
    }
    const shared_pool: PoolsReport["shared_pool"] = this.shared.workers.map(({ index, session }) => ({
      id: `worker-${index + 1}`,
      container_name: `sinas-worker-${index + 1}`,
      status: session && session.status !== "dead" ? session.status : "starting",
      created_at: (session?.createdAt ?? new Date()).toISOString(),
      executions: session?.executions ?? 0,
    }));
    return { driver: this.options.driver.name, user_pools, shared_pool };
  }

  /** Counts for /health. */
  stats(): { users: number; sandboxes: number; busy: number; shared: number; paused: number } {
    let sandboxes = 0;
    let busy = 0;
    for (const pool of this.users.values()) {
      for (const session of pool.sessions) {
        if (!session.alive) continue;
        sandboxes++;
        if (session.status === "busy") busy++;
      }
    }
    return { users: this.users.size, sandboxes, busy, shared: this.shared.size, paused: this.paused.size };
  }

  /** Kills every sandbox (their folders are removed as they die). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.reaper);
    if (this.idleCheck) clearInterval(this.idleCheck);
    const pools = [...this.users.values()];
    this.users.clear();
    const ended = [
      ...pools.flatMap((pool) => [...pool.sessions].map((session) => session.ended)),
      ...this.shared.workers.flatMap(({ session }) => (session ? [session.ended] : [])),
    ];
    await Promise.all([
      ...pools.map((pool) => pool.stop("the executor is shutting down")),
      this.shared.close("shutdown"),
    ]);
    await Promise.all(ended);
  }

  private userPool(userId: string): UserPool {
    let pool = this.users.get(userId);
    if (!pool) {
      pool = new UserPool(userId, this.ctx);
      this.users.set(userId, pool);
    }
    return pool;
  }

  private holdsPauseIn(session: SandboxSession): boolean {
    for (const entry of this.paused.values()) if (entry.session === session) return true;
    return false;
  }

  private hasYoungPause(session: SandboxSession, now: number): boolean {
    for (const entry of this.paused.values()) {
      if (entry.session === session && now - entry.pausedAt < this.ctx.idleMs) return true;
    }
    return false;
  }

  /** Kills idle sandboxes that use CPU: what their last job left running (bwrap, process; not docker). */
  private checkIdleCpu(): void {
    const sessions = [
      ...[...this.users.values()].flatMap((pool) => [...pool.sessions]),
      ...this.shared.workers.flatMap(({ session }) => (session ? [session] : [])),
    ];
    for (const session of sessions) {
      const percent = session.alive ? session.idleCpuPercent() : null;
      if (percent === null || percent < IDLE_CPU_LIMIT_PERCENT) continue;
      const reason = `used ${Math.round(percent)}% of a core while idle: its last job left a thread or process running`;
      this.ctx.log(`[pool] sandbox ${session.id} killed: ${reason}`);
      void session.kill(reason);
    }
  }

  private reap(): void {
    const now = Date.now();
    for (const [userId, pool] of this.users) {
      pool.reap(now);
      if (pool.forgettable) this.users.delete(userId);
    }
  }
}
