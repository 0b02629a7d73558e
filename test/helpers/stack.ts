/**
 * @module Start and stop the real stack for a test file: the same launcher as `npm start`, on free ports,
 * with a clean database (in-memory PGlite, or a fresh database on TEST_DATABASE_URL's server) and its own
 * Redis database (in-memory bridge, or a private DB index on TEST_REDIS_URL's server).
 *
 * ```ts
 * let stack: TestStack;
 * beforeAll(async () => { stack = await startTestStack(); });
 * afterAll(() => stack?.stop());
 * ```
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Redis as IORedis } from "ioredis";
import type { StackInfo } from "../../scripts/lib/stack";
import { ROOT_DIR } from "../../scripts/lib/stack";

/**
 * Where a test stack's temporary folder goes: `SINAS_TEST_DATA_ROOT`, else memory (`/dev/shm`) where the machine
 * has it, else the system's temporary folder. workerd commits each Durable Object write with an fsync on its one
 * thread; on this project's machines that blocked the thread a fifth of the time under load and set the chat and
 * webhook figures by the disk, not by the platform (README, Benchmarks). `npm start` keeps its data on disk.
 */
function testDataRoot(): string {
  if (process.env.SINAS_TEST_DATA_ROOT) return process.env.SINAS_TEST_DATA_ROOT;
  try {
    accessSync("/dev/shm", constants.W_OK);
    return "/dev/shm";
  } catch {
    return tmpdir();
  }
}

export interface TestStackOptions {
  /** Extra Worker vars, e.g. `{ AUTO_PROVISION_USERS: "true" }`. */
  workerVars?: Record<string, string>;
  /** Extra launcher environment. */
  env?: Record<string, string>;
  /** Keep data in this folder (on-disk PGlite) instead of a temporary one removed at stop. */
  dataDir?: string;
}

export interface TestStack extends StackInfo {
  /** `fetch` relative to the API URL. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** Last lines printed by the launcher and its children (for failure messages). */
  logs(): string[];
  /** The launcher's process id. */
  pid: number;
  /** Resolves with the launcher's exit code once it has exited. */
  exited: Promise<number | null>;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const READY_PREFIX = "SINAS_STACK_READY ";
const LOG_LINES = 400;

/** Picks a Redis DB index for this stack; consecutive stacks get different ones (1..15). */
async function allocateRedisDb(redisUrl: string): Promise<string> {
  const admin = new IORedis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await admin.connect();
    const counter = await admin.incr("sinas:test:redis-db-counter");
    const index = 1 + (counter % 15);
    await admin.select(index);
    await admin.flushdb();
    const url = new URL(redisUrl);
    url.pathname = `/${index}`;
    return url.toString();
  } finally {
    admin.disconnect();
  }
}

/**
 * A stack is ready in ~10-40 s. Past this the start fails with the launcher's last lines and is tried once more,
 * both within the integration hook timeout (180 s), which alone says nothing about where a start hung.
 */
const READY_TIMEOUT_MS = 80_000;

function waitForReady(child: ChildProcess, logs: string[]): Promise<StackInfo> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(
            `launcher not ready after ${READY_TIMEOUT_MS / 1000} s; its last lines:\n${logs.slice(-60).join("\n")}`,
          ),
        ),
      READY_TIMEOUT_MS,
    );
    timer.unref();
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const errors = createInterface({ input: child.stderr as NodeJS.ReadableStream });
    const remember = (line: string) => {
      logs.push(line);
      if (logs.length > LOG_LINES) logs.shift();
    };
    lines.on("line", (line) => {
      if (!line.startsWith(READY_PREFIX)) return remember(line);
      clearTimeout(timer);
      resolve(JSON.parse(line.slice(READY_PREFIX.length)) as StackInfo);
    });
    errors.on("line", remember);
    child.once("exit", (code) =>
      reject(
        new Error(
          `launcher exited with code ${code} before the stack was ready:\n${logs.slice(-60).join("\n")}`,
        ),
      ),
    );
  });
}

/**
 * Starts the stack; a start that fails or hangs is reported on stderr and tried once more (twice in CI a
 * launcher hung before its database step finished; not reproduced since: see the launcher's step timeouts).
 */
export async function startTestStack(options: TestStackOptions = {}): Promise<TestStack> {
  try {
    return await launchStack(options);
  } catch (error) {
    if (options.dataDir !== undefined) throw error;
    console.warn(`the test stack did not start; trying once more. ${String(error)}`);
    return launchStack(options);
  }
}

/** `stop` of every stack this process started and has not stopped yet. */
const runningStacks = new Set<() => Promise<void>>();

/**
 * Stops every stack still running (their processes and data folders); for a process that ends on a signal,
 * e.g. the benchmark interrupted with Ctrl-C, which would otherwise leave its stacks' data folders behind.
 */
export async function stopAllStacks(): Promise<void> {
  await Promise.all([...runningStacks].map((stop) => stop()));
}

async function launchStack(options: TestStackOptions): Promise<TestStack> {
  const keepData = options.dataDir !== undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(testDataRoot(), "sinas-test-"));
  const args = ["--import", "tsx", "scripts/start.ts", "--json", "--exit-on-stdin-close"];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SINAS_DATA_DIR: dataDir,
    PORT: "0",
    EXECUTOR_PORT: "0",
    REDIS_BRIDGE_PORT: "0",
    DB_PROXY_PORT: "0",
    PGLITE_PORT: "0",
    SMTP_PORT: "0",
    MAIL_PORT: "0",
    INSPECTOR_PORT: "0",
    DATABASE_URL: "",
    REDIS_URL: "",
    SMTP_HOST: "",
    SINAS_EXTRA_WORKER_VARS: JSON.stringify(options.workerVars ?? {}),
    // Tests fire Cron Triggers themselves (GET /__scheduled), so runs are counted exactly.
    SINAS_LOCAL_CRON: "false",
    ...options.env,
  };
  // With a kept dataDir the launcher's default applies: on-disk PGlite there, as `npm start` uses it.
  if (!keepData && process.env.TEST_DATABASE_URL) {
    env.DATABASE_URL = process.env.TEST_DATABASE_URL;
    args.push("--fresh-database", `sinas_test_${randomBytes(6).toString("hex")}`);
  } else if (!keepData) {
    args.push("--pglite-memory");
  }
  if (process.env.TEST_REDIS_URL) env.REDIS_URL = await allocateRedisDb(process.env.TEST_REDIS_URL);

  const child = spawn(process.execPath, args, { cwd: ROOT_DIR, env, stdio: ["pipe", "pipe", "pipe"] });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let info: StackInfo;
  try {
    info = await waitForReady(child, logs);
  } catch (error) {
    // SIGTERM first: the launcher stops its children; a killed launcher would leave them running.
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
    if (!keepData) rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }

  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
      if (!keepData) rmSync(dataDir, { recursive: true, force: true });
      runningStacks.delete(stop);
    })();
    return stopped;
  };
  runningStacks.add(stop);
  return {
    ...info,
    fetch: (path, init) => fetch(new URL(path, info.apiUrl), init),
    logs: () => [...logs],
    pid: child.pid as number,
    exited,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
