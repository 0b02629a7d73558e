import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  NO_PACKAGES,
  PackageInstallError,
  PackageInstaller,
  type PackageSet,
} from "../../executor-node/src/packages";
import { FAIR_PASSES } from "../../executor-node/src/pool-waiters";
import type { SandboxExit } from "../../executor-node/src/sandbox/types";
import type { SandboxSession, SessionStatus } from "../../executor-node/src/sandbox-session";
import { SharedPool } from "../../executor-node/src/shared-pool";
import { type PoolContext, UserPool } from "../../executor-node/src/user-pool";

// Who gets a sandbox when jobs for several package sets wait, what a set whose sandbox cannot start does
// to the shared pool, and how many pip installs run at once. The pools run fake sandboxes (start() takes
// START_MS; a set named BROKEN never starts), so only the pools' decisions are tested; the installer runs a
// stand-in for pip that waits until the test lets it finish.

const START_MS = 20;
const BROKEN: PackageSet = { key: "broken", dir: "/packages/broken" };
const X: PackageSet = { key: "x", dir: "/packages/x" };

class FakeSession {
  static count = 0;
  readonly id = `fake-${++FakeSession.count}`;
  status: SessionStatus = "starting";
  retire = false;
  lastUsed = Date.now();
  readonly ended: Promise<SandboxExit>;
  private endedResolve!: (exit: SandboxExit) => void;

  constructor(readonly packages: PackageSet) {
    this.ended = new Promise((resolve) => {
      this.endedResolve = resolve;
    });
  }

  get alive(): boolean {
    return this.status !== "dead";
  }

  async start(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, START_MS));
    if (this.packages.key === BROKEN.key) {
      await this.kill("exited with code 3");
      throw new Error("The sandbox died: exited with code 3");
    }
    if (!this.alive) throw new Error("killed while starting");
    this.status = "idle";
  }

  async kill(reason: string): Promise<void> {
    if (!this.alive) return;
    this.status = "dead";
    this.endedResolve({ code: null, reason, oomKilled: false });
  }
}

function fakeContext(max: number): PoolContext {
  return {
    warm: 0,
    max,
    idleMs: 600_000,
    create: (_pool, packages) => new FakeSession(packages) as unknown as SandboxSession,
    hasYoungPause: () => false,
    onSessionDeath: () => undefined,
    log: () => undefined,
  };
}

type Pool = Pick<SharedPool, "release"> & {
  acquire(signal: AbortSignal, packages: PackageSet): Promise<SandboxSession>;
};

/**
 * One job for NO_PACKAGES queued behind a running job for X, then a stream of younger jobs for X, each
 * queued before the running one ends (one sandbox). How many X jobs ran before the older job got one.
 */
async function xJobsBeforeTheOlderJob(pool: Pool): Promise<number> {
  let held = await pool.acquire(AbortSignal.timeout(10_000), X);
  const older = pool.acquire(AbortSignal.timeout(20_000), NO_PACKAGES);
  for (let served = 0; served < 5 * FAIR_PASSES; served++) {
    const next = pool.acquire(AbortSignal.timeout(20_000), X);
    pool.release(held);
    const first = await Promise.race([next, older]);
    if (first.packages.key === NO_PACKAGES.key) {
      pool.release(first);
      pool.release(await next); // the younger job still gets its turn after
      return served;
    }
    held = first;
  }
  pool.release(held);
  return Number.POSITIVE_INFINITY;
}

describe("shared pool", () => {
  it("fails a job whose package set cannot start, and gives the worker back to other jobs", async () => {
    const pool = new SharedPool(fakeContext(1));
    await pool.scale(1);
    try {
      const broken = pool.acquire(AbortSignal.timeout(10_000), undefined, BROKEN);
      await expect(broken).rejects.toThrow("exited with code 3"); // the start error, not the timeout
      const plain = await pool.acquire(AbortSignal.timeout(10_000), undefined, NO_PACKAGES);
      expect(plain.packages).toEqual(NO_PACKAGES);
      pool.release(plain);
    } finally {
      await pool.close("test over");
    }
  });

  it("serves an older job for another package set within FAIR_PASSES younger jobs", async () => {
    const shared = new SharedPool(fakeContext(1));
    await shared.scale(1);
    try {
      const passed = await xJobsBeforeTheOlderJob({
        acquire: (signal, packages) => shared.acquire(signal, undefined, packages),
        release: (session) => shared.release(session),
      });
      expect(passed).toBeLessThanOrEqual(FAIR_PASSES);
    } finally {
      await shared.close("test over");
    }
  });
});

describe("user pool", () => {
  it("serves a user's older job for another package set within FAIR_PASSES younger jobs", async () => {
    const user = new UserPool("user", fakeContext(1));
    try {
      const passed = await xJobsBeforeTheOlderJob({
        acquire: (signal, packages) => user.acquire(signal, undefined, packages),
        release: (session) => user.release(session),
      });
      expect(passed).toBeLessThanOrEqual(FAIR_PASSES);
    } finally {
      await user.stop("test over");
    }
  });
});

describe("package installs", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  /** An installer whose "pip" records each install and finishes only once `letFinish()` was called. */
  function installerWithHeldPip() {
    const state = mkdtempSync(join(tmpdir(), "sinas-fake-pip-"));
    dirs.push(state);
    mkdirSync(join(state, "running"));
    const script = join(state, "python");
    // pip's environment is cleaned, so the state folder is written into the script.
    writeFileSync(
      script,
      `#!/bin/sh
if [ "$3" = "--version" ]; then echo "pip 0 (fake)"; exit 0; fi
touch "${state}/running/$$"
ls "${state}/running" | wc -l >> "${state}/started"
# Also ends once the test removed this script (a failed test never lets it finish), or after a minute.
n=0
while [ ! -e "${state}/finish" ] && [ -e "$0" ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done
rm -f "${state}/running/$$"
`,
    );
    chmodSync(script, 0o755);
    const installer = new PackageInstaller({
      root: join(state, "packages"),
      pipPython: script,
      candidates: [],
    });
    const started = () =>
      existsSync(join(state, "started"))
        ? readFileSync(join(state, "started"), "utf8").trim().split("\n").map(Number)
        : [];
    const letFinish = () => writeFileSync(join(state, "finish"), "");
    return { installer, started, letFinish };
  }

  async function until(condition: () => boolean): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error("timed out waiting");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it("runs at most two pip installs at once; the others queue, one per set", async () => {
    const { installer, started, letFinish } = installerWithHeldPip();
    const sets = ["a", "b", "c", "d", "e"].map((name) => [`pkg-${name}==1.0`]);
    const installs = sets.map((set, index) => installer.ensure(set, `user-${index}`));
    const joined = installer.ensure(["pkg-a==1.0"], "user-9"); // the same set as the first: no new pip
    await until(() => started().length >= 2);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // time enough for more pips, were they let
    expect(started()).toHaveLength(2);
    letFinish();
    const done = await Promise.all(installs);
    expect(new Set(done.map((set) => set.key)).size).toBe(5);
    expect(await joined).toEqual(done[0]);
    expect(started()).toHaveLength(5);
    expect(Math.max(...started())).toBeLessThanOrEqual(2);
  });

  it("refuses a user's fifth pending install of a distinct set at once", async () => {
    const { installer, letFinish } = installerWithHeldPip();
    const mine = [1, 2, 3, 4].map((n) => installer.ensure([`pkg-${n}==1.0`], "flood"));
    const fifth = installer.ensure(["pkg-5==1.0"], "flood");
    const outcome = await Promise.race([
      fifth.then(
        () => "installed",
        (error: unknown) => error,
      ),
      new Promise((resolve) => setTimeout(() => resolve("still waiting"), 5000)),
    ]);
    expect(outcome).toBeInstanceOf(PackageInstallError);
    expect(String(outcome)).toContain("Too many package installs pending for this user");
    // Joining an install under way is free, and other users are not limited by this one's.
    const joined = installer.ensure(["pkg-1==1.0"], "flood");
    const other = installer.ensure(["pkg-6==1.0"], "someone-else");
    letFinish();
    await Promise.all([...mine, joined, other]);
    // Once they finished, the user may install other sets again.
    await expect(installer.ensure(["pkg-5==1.0"], "flood")).resolves.toMatchObject({
      dir: expect.any(String),
    });
  });
});
