import { describe, expect, it } from "vitest";
import { NO_PACKAGES, type PackageSet } from "../../executor-node/src/packages";
import type { SandboxExit } from "../../executor-node/src/sandbox/types";
import type { SandboxSession, SessionStatus } from "../../executor-node/src/sandbox-session";
import { UserPool } from "../../executor-node/src/user-pool";

// A user's pool with fake sandboxes (start() takes START_MS, kill() ends them): the pool's decisions alone.

const START_MS = 50;

class FakeSession {
  static started: FakeSession[] = [];
  readonly id = `fake-${FakeSession.started.length + 1}`;
  status: SessionStatus = "starting";
  retire = false;
  lastUsed = Date.now();
  readonly ended: Promise<SandboxExit>;
  private endedResolve!: (exit: SandboxExit) => void;

  constructor(readonly packages: PackageSet) {
    this.ended = new Promise((resolve) => {
      this.endedResolve = resolve;
    });
    FakeSession.started.push(this);
  }

  get alive(): boolean {
    return this.status !== "dead";
  }

  async start(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, START_MS));
    if (!this.alive) throw new Error("killed while starting");
    this.status = "idle";
  }

  async kill(reason: string): Promise<void> {
    if (!this.alive) return;
    this.status = "dead";
    this.endedResolve({ code: null, reason, oomKilled: false });
  }
}

function fakePool(options: { warm: number; max: number }): UserPool {
  return new UserPool("user", {
    ...options,
    idleMs: 600_000,
    create: (_pool, packages) => new FakeSession(packages) as unknown as SandboxSession,
    hasYoungPause: () => false,
    onSessionDeath: () => undefined,
    log: () => undefined,
  });
}

describe("user pool", () => {
  it("replaces a warm sandbox that finished starting while a job for other packages waited", async () => {
    // POOL_MAX_PER_USER=1: job 1 times out (its sandbox is killed), the warm replacement starts, and job 2,
    // which needs packages, arrives while it is still starting.
    const pool = fakePool({ warm: 1, max: 1 });
    const withPackages: PackageSet = { key: "requests==2.31.0", dir: "/packages/x" };
    const first = await pool.acquire(undefined, undefined, NO_PACKAGES);
    await first.kill("the job timed out");
    await new Promise((resolve) => setTimeout(resolve, 0));
    const warm = FakeSession.started.at(-1);
    expect(warm?.status).toBe("starting");

    const timeout = AbortSignal.timeout(2000);
    const second = await pool.acquire(timeout, undefined, withPackages);
    expect(second.packages).toEqual(withPackages);
    expect(warm?.status).toBe("dead"); // replaced once idle, rather than kept while job 2 waited
    expect([...pool.sessions]).toEqual([second]);
    await pool.stop("test over");
  });
});
