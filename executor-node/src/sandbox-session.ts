/**
 * @module One live sandbox as the pool sees it: its socket folder, the driver handle, the runtime
 * connection, its state (starting / idle / busy / dead) and the job it runs. Launching = make a private
 * socket folder, listen on `runtime.sock`, start the driver, wait for the runtime's `ready`. Any death
 * (process exit, socket closed, protocol violation, kill) ends the session for good; the pool replaces it.
 * The runtime's socket is read only up to its `ready` and while a job runs (RuntimeConnection.pause).
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import type { ExecutorEvent, ResultEvent } from "../../workers/lib/executor-protocol";
import { NO_PACKAGES, type PackageSet } from "./packages";
import { RuntimeConnection } from "./runtime-connection";
import type { JobMessage, RuntimeMessage, RuntimeReady } from "./runtime-protocol";
import { descendantsOf, runningCount, treeCpuMs } from "./sandbox/process-tree";
import type { SandboxDriver, SandboxExit, SandboxHandle, SandboxLimits, SandboxSpec } from "./sandbox/types";

export type SessionStatus = "starting" | "idle" | "busy" | "dead";
export type JobEvent = Extract<ExecutorEvent, { type: "log" | "step" }>;

/** The sandbox ended while a job ran in it (or before it could). */
export class SandboxDiedError extends Error {
  override readonly name = "SandboxDiedError";
  constructor(readonly exit: SandboxExit) {
    super(`The sandbox died: ${exit.reason}`);
  }
}

export interface SessionLaunch {
  driver: SandboxDriver;
  pool: SandboxSpec["pool"];
  limits: SandboxLimits;
  readyTimeoutMs: number;
  /** Where the socket folder is made (the executor's work folder). */
  parentDir: string;
  /** The Python packages this sandbox sees, for its whole life (default: none). */
  packages?: PackageSet;
}

interface RunningJob {
  jobId: string;
  onEvent(event: JobEvent): void;
  resolve(result: ResultEvent): void;
  reject(error: Error): void;
}

export class SandboxSession {
  readonly id = randomUUID().replace(/-/g, "").slice(0, 12);
  readonly createdAt = new Date();
  status: SessionStatus = "starting";
  lastUsed = Date.now();
  executions = 0;
  /** Set to end the session when its current job is released (scale-down, reload, after a MemoryError). */
  retire = false;
  runtime: RuntimeReady | null = null;
  /** Resolves once the session is dead, with why. */
  readonly ended: Promise<SandboxExit>;

  private endedResolve!: (exit: SandboxExit) => void;
  private socketDir: string | null = null;
  private server: Server | null = null;
  private handle: SandboxHandle | null = null;
  private connection: RuntimeConnection | null = null;
  private job: RunningJob | null = null;
  private deathReason: SandboxExit | null = null;
  /** Processes under the sandbox's own once its runtime was ready (bwrap: its init and the runtime). */
  private baselineProcesses: number | null = null;
  /** The last idle CPU reading (`idleCpuPercent`). */
  private idleReading: { at: number; cpuMs: number } | null = null;

  constructor(private readonly launch: SessionLaunch) {
    this.ended = new Promise((resolve) => {
      this.endedResolve = resolve;
    });
  }

  get pool(): SandboxSpec["pool"] {
    return this.launch.pool;
  }

  /** Jobs needing other packages go to another sandbox. */
  get packages(): PackageSet {
    return this.launch.packages ?? NO_PACKAGES;
  }

  get alive(): boolean {
    return this.status !== "dead";
  }

  /** Starts the sandbox and waits for its runtime; on failure the session is dead and this rejects. */
  async start(): Promise<void> {
    try {
      this.socketDir = await mkdtemp(join(this.launch.parentDir, "sbx-"));
      const socketPath = join(this.socketDir, "runtime.sock");
      const { accepted } = await this.listen(socketPath);
      if (!this.alive) throw new SandboxDiedError(this.deathReason ?? deathOf("killed while starting"));
      this.handle = await this.launch.driver.start({
        id: this.id,
        pool: this.launch.pool,
        socketDir: this.socketDir,
        packagesDir: this.packages.dir,
        env: { SINAS_SANDBOX_ID: this.id, PYTHONDONTWRITEBYTECODE: "1" },
        limits: this.launch.limits,
      });
      void this.handle.exited.then((exit) => this.die(exit));
      if (!this.alive) throw new SandboxDiedError(this.deathReason ?? deathOf("killed while starting"));
      const socket = await this.waitFor(accepted, "connect");
      this.closeServer();
      this.connection = new RuntimeConnection(socket, {
        onMessage: (message) => this.receive(message),
        onProtocolError: (reason) => void this.kill(`broke the runtime protocol: ${reason}`),
        onClose: () => this.connectionLost("the runtime closed its connection"),
      });
      this.runtime = await this.waitFor(this.readyMessage(), "announce itself");
      if (!this.alive) throw new SandboxDiedError(this.deathReason ?? deathOf("killed while starting"));
      const pid = this.handle.localPid?.();
      this.baselineProcesses = pid ? descendantsOf(pid).length : null;
      this.status = "idle";
      this.lastUsed = Date.now();
    } catch (error) {
      await this.kill(error instanceof Error ? error.message : String(error));
      if (this.socketDir) await rm(this.socketDir, { recursive: true, force: true }).catch(() => undefined);
      throw error instanceof SandboxDiedError
        ? error
        : new SandboxDiedError(this.deathReason ?? deathOf(String(error)));
    }
  }

  /** Sends a job and resolves with its result; rejects with SandboxDiedError if the sandbox dies first. */
  run(message: JobMessage, onEvent: (event: JobEvent) => void): Promise<ResultEvent> {
    if (!this.alive || !this.connection) {
      return Promise.reject(new SandboxDiedError(this.deathReason ?? deathOf("not running")));
    }
    if (this.job) return Promise.reject(new Error(`sandbox ${this.id} is already running a job`));
    return new Promise<ResultEvent>((resolve, reject) => {
      this.job = { jobId: message.job_id, onEvent, resolve, reject };
      this.connection?.resume();
      this.connection?.send(message);
    });
  }

  /**
   * Why this sandbox must not take another job: processes its last job started and left running (a warm local
   * sandbox has no cgroup to bound them). Null when clean, or when the driver cannot tell (docker).
   */
  leftovers(): string | null {
    const pid = this.handle?.localPid?.();
    if (!pid || this.baselineProcesses === null) return null;
    const found = descendantsOf(pid);
    // Zombies (exited, not yet reaped) are harmless; only when there are more processes than at the start.
    if (found.length <= this.baselineProcesses) return null;
    const extra = runningCount(found) - this.baselineProcesses;
    return extra > 0 ? `its job left ${extra} process${extra === 1 ? "" : "es"} running` : null;
  }

  /**
   * The share of a core (%) this idle sandbox used since the previous call, or null on the first call, when
   * a job ran in between, or when the driver cannot tell. An idle runtime waits on its socket and uses none:
   * CPU now is a thread or process a job left running.
   */
  idleCpuPercent(now = Date.now()): number | null {
    const pid = this.status === "idle" ? this.handle?.localPid?.() : null;
    const cpuMs = pid ? treeCpuMs(pid) : null;
    const previous = this.idleReading;
    this.idleReading = cpuMs === null ? null : { at: now, cpuMs };
    // A job released since (lastUsed) means the CPU in between was the job's.
    if (cpuMs === null || !previous || this.lastUsed > previous.at) return null;
    const elapsed = now - previous.at;
    return elapsed > 0 ? ((cpuMs - previous.cpuMs) / elapsed) * 100 : null;
  }

  /** Kills the sandbox and everything in it; resolves once it is gone and its folder removed. */
  async kill(reason: string): Promise<void> {
    if (this.alive) this.die(deathOf(reason));
    await this.handle?.kill().catch(() => undefined);
  }

  /**
   * The runtime's socket closed. Usually the sandbox is ending (OOM kill, crash): wait briefly for the
   * driver's exit report, which says why (oomKilled), before killing it with a generic reason.
   */
  private connectionLost(reason: string): void {
    if (!this.alive) return;
    const handle = this.handle;
    if (!handle) {
      void this.kill(reason);
      return;
    }
    const grace = setTimeout(() => void this.kill(reason), EXIT_REPORT_GRACE_MS);
    void handle.exited.then(() => clearTimeout(grace));
  }

  private die(exit: SandboxExit): void {
    if (!this.alive) return;
    this.status = "dead";
    this.deathReason = exit;
    this.closeServer();
    this.connection?.close();
    const job = this.job;
    this.job = null;
    job?.reject(new SandboxDiedError(exit));
    this.readyWaiter?.reject(new SandboxDiedError(exit));
    void this.handle?.kill().catch(() => undefined);
    const dir = this.socketDir;
    void (async () => {
      if (this.handle) await this.handle.exited.catch(() => undefined);
      if (dir) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      this.endedResolve(exit);
    })();
  }

  private receive(message: RuntimeMessage): void {
    if (message.type === "ready") {
      if (!this.readyWaiter) return; // only the first counts: a later one must not pause a running job
      this.readyWaiter.resolve(message);
      this.readyWaiter = null;
      this.connection?.pause(); // nothing more is expected before a job (RuntimeConnection.pause)
      return;
    }
    if (message.type === "pong") return;
    const job = this.job;
    if (!job || message.job_id !== job.jobId) return; // stale or forged: not the job in flight
    if (message.type === "result") {
      this.job = null;
      this.connection?.pause();
      const { job_id: _jobId, ...result } = message;
      job.resolve(result);
      return;
    }
    if (message.type === "log") {
      job.onEvent({ type: "log", stream: message.stream, text: message.text, at: message.at });
    } else {
      job.onEvent({ type: "step", step: message.step });
    }
  }

  private readyWaiter: { resolve(ready: RuntimeReady): void; reject(error: Error): void } | null = null;

  private readyMessage(): Promise<RuntimeReady> {
    return new Promise((resolve, reject) => {
      this.readyWaiter = { resolve, reject };
    });
  }

  /** Listens on the socket path; resolves once bound, with the promise of the runtime's connection. */
  private listen(socketPath: string): Promise<{ accepted: Promise<Socket> }> {
    return new Promise((bound, failed) => {
      let taken = false;
      let accept!: (socket: Socket) => void;
      const accepted = new Promise<Socket>((resolve) => {
        accept = resolve;
      });
      const server = createServer((socket) => {
        if (taken) {
          socket.destroy(); // only the runtime's first connection counts
          return;
        }
        taken = true;
        accept(socket);
      });
      this.server = server;
      server.once("error", failed);
      server.listen(socketPath, () => bound({ accepted }));
    });
  }

  /** Races a startup step against the ready timeout and the sandbox's death. */
  private async waitFor<T>(step: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new SandboxDiedError(
              deathOf(`the runtime did not ${what} within ${this.launch.readyTimeoutMs} ms`),
            ),
          ),
        this.launch.readyTimeoutMs,
      );
    });
    const death = this.ended.then((exit) => Promise.reject(new SandboxDiedError(exit)));
    const exited = this.handle
      ? this.handle.exited.then((exit) => Promise.reject(new SandboxDiedError(exit)))
      : new Promise<never>(() => undefined);
    try {
      return await Promise.race([step, timeout, death, exited]);
    } finally {
      clearTimeout(timer);
    }
  }

  private closeServer(): void {
    this.server?.close();
    this.server = null;
  }
}

/** How long a lost connection waits for the driver to report the sandbox's exit. */
const EXIT_REPORT_GRACE_MS = 2000;

function deathOf(reason: string): SandboxExit {
  return { code: null, reason, oomKilled: false };
}
