/**
 * @module The local stack: everything `npm start` runs, as a library the integration tests use too.
 *
 * Order: `wrangler dev` and the executor first (the slowest to come up; every address they need is known
 * in advance), then Postgres (embedded PGlite unless a URL is given) -> WebSocket proxy -> migrations ->
 * Redis bridge -> SMTP sink, then both health checks. Every piece that starts is stopped by `close()`,
 * also when a later piece fails to start.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { startLocalFakeLlm } from "../fake-llm";
import { startRedisBridge } from "../redis-bridge";
import { startSmtpSink } from "../smtp-sink";
import { startWsProxy } from "../ws-proxy";
import { ManagedChild } from "./child";
import { createDatabase, dropDatabase, MIGRATIONS_FOLDER, runMigrations, withDatabaseName } from "./migrate";
import { findPort } from "./ports";
import { describeError } from "./printable";
import { waitForHttp, waitForPort, withinTime } from "./wait";
import { loadDevSecrets, PASS_THROUGH_VARS, writeEnvFile } from "./worker-vars";

/** Creating the database or applying the migrations takes seconds; past this the start fails, naming the step. */
const DATABASE_STEP_MS = 60_000;

export const ROOT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Lines that say nothing useful in a dev console: pglite's per-connection chatter, wrangler's offline cf warning. */
const NOISE =
  /Client (connected|disconnected) from|Unable to fetch the `Request\.cf` object|getaddrinfo ENOTFOUND workers\.cloudflare\.com|at GetAddrInfoReqWrap\./;

export interface StackPorts {
  api: number;
  executor: number;
  redisBridge: number;
  dbProxy: number;
  pglite: number;
  smtp: number;
  mailHttp: number;
  inspector: number;
}

export const DEFAULT_PORTS: StackPorts = {
  api: 8787,
  executor: 8788,
  redisBridge: 8079,
  dbProxy: 5480,
  pglite: 5481,
  smtp: 2525,
  mailHttp: 8025,
  inspector: 9229,
};

export interface ExternalSmtp {
  host: string;
  port: number;
  user?: string;
  password?: string;
  domain: string;
}

export interface StackOptions {
  /** Folder for PGlite data, Durable Object storage and dev secrets (`.sinas/` for `npm start`). */
  dataDir: string;
  ports?: Partial<StackPorts>;
  /** External Postgres; when unset, embedded PGlite is started. */
  databaseUrl?: string;
  /** PGlite on disk under dataDir (kept across starts) or in memory (fresh, for tests). */
  pglite?: "disk" | "memory";
  /** Create this database on `databaseUrl`'s server, use it, and drop it on close (tests). */
  freshDatabase?: string;
  /** External Redis (`redis://...`); when unset, the bridge keeps data in memory. */
  redisUrl?: string;
  /** External SMTP; when unset, the local sink receives and prints every mail. */
  smtp?: ExternalSmtp;
  /** Extra Worker vars (they win over pass-through ones from the environment). */
  workerVars?: Record<string, string>;
  /** Launcher messages (default console.log). */
  log?: (line: string) => void;
  /** Every output line of a child process and of the SMTP sink. */
  onChildLine?: (name: string, line: string) => void;
  /** A child died after the stack was up. */
  onFailure?: (message: string) => void;
  /** How long to wait for the API's first healthy answer. */
  readyTimeoutMs?: number;
  /**
   * `wrangler dev` never fires Cron Triggers by itself; the launcher calls `/__scheduled` at every full
   * minute instead (default). Tests turn it off and fire ticks themselves.
   */
  localCron?: boolean;
  /** Start the fake LLM server on this port (or a free one): `SINAS_FAKE_LLM=true`. Off when unset. */
  fakeLlmPort?: number;
  /**
   * Developer comforts of `wrangler dev`: the DevTools inspector on `ports.inspector` and reloading on
   * source changes. Off by default (tests, benchmarks): the inspector makes wrangler relay four events per
   * subrequest of the Worker, a large share of a request's CPU.
   */
  devtools?: boolean;
  /** Aborting stops a start in progress: everything started so far is stopped and startStack rejects. */
  signal?: AbortSignal;
}

export interface StackInfo {
  apiUrl: string;
  docsUrl: string;
  executorUrl: string;
  redisBridgeUrl: string;
  redisToken: string;
  redisMode: "redis" | "memory";
  /** URL of the sink's mail API, null with external SMTP. */
  mailUrl: string | null;
  smtp: { host: string; port: number };
  database: { kind: "pglite" | "postgres"; url: string; wsProxy: string; location: string };
  dataDir: string;
  ports: StackPorts;
  /** The fake LLM server (`fakeLlmPort`), else null. */
  fakeLlmUrl: string | null;
}

export interface Stack extends StackInfo {
  close(): Promise<void>;
}

/** Describes a child's death with its last lines, for the user rather than for a stack trace. */
export function describeExit(child: ManagedChild, code: number | null, signal: string | null): string {
  const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
  const tail = child.tail().map((line) => `    ${line}`);
  return [`${child.name} ${how}. Last lines:`, ...(tail.length ? tail : ["    (no output)"])].join("\n");
}

/**
 * Rebuilds the sandbox image when a container engine is here and the runtime changed (a no-op check takes
 * ~70 ms), so the docker driver never runs stale runtime code. Without podman/docker nothing happens and
 * the executor picks bwrap or the process driver.
 */
async function ensureRuntimeImage(log: (line: string) => void, signal: AbortSignal): Promise<void> {
  const engine = ["podman", "docker"].find(
    (name) => spawnSync(name, ["--version"], { stdio: "ignore" }).status === 0,
  );
  if (!engine) return;
  const { ok, output } = await runImageBuild(signal);
  if (ok || signal.aborted) return;
  const tail = output.trim().split("\n").slice(-5).join("\n    ");
  log(`could not build the sandbox runtime image with ${engine}; the executor will fall back:\n    ${tail}`);
}

/**
 * scripts/build-runtime-image.sh in its own process group, killed whole (its podman or docker commands too)
 * when `signal` aborts: a failed or stopped start leaves no build running. The output's end, for errors.
 */
function runImageBuild(signal: AbortSignal): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    const child = spawn("bash", [join(ROOT_DIR, "scripts/build-runtime-image.sh")], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const keep = (data: Buffer) => {
      output = (output + data.toString("utf8")).slice(-4096);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const kill = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    signal.addEventListener("abort", kill, { once: true });
    child.once("error", (error) => resolve({ ok: false, output: error.message }));
    child.once("close", (code) => {
      signal.removeEventListener("abort", kill);
      resolve({ ok: code === 0, output });
    });
  });
}

/**
 * Where the in-memory PGlite snapshot for the current migrations lives (scripts/pglite-server.mjs makes it on
 * first use): named by a hash of the migrations and of PGlite's version, so a change makes a new one.
 */
function pgliteSnapshotFile(): string {
  const hash = createHash("sha256");
  hash.update(readFileSync(join(ROOT_DIR, "node_modules/@electric-sql/pglite/package.json")));
  const files = readdirSync(MIGRATIONS_FOLDER, { recursive: true, encoding: "utf8" }).sort();
  for (const file of files) {
    const path = join(MIGRATIONS_FOLDER, file);
    if (!statSync(path).isFile()) continue;
    hash.update(file);
    hash.update(readFileSync(path));
  }
  const name = `pglite-${hash.digest("hex").slice(0, 16)}.tar`;
  return join(ROOT_DIR, "node_modules/.cache/sinas", name);
}

/** Fires the Worker's `scheduled()` at each full minute, as Cloudflare's Cron Trigger `* * * * *` would. */
function startLocalCron(apiUrl: string): () => Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    timer = setTimeout(
      () => {
        void fetch(`${apiUrl}/__scheduled?cron=*+*+*+*+*`).catch(() => undefined);
        schedule();
      },
      60_000 - (Date.now() % 60_000) + 50,
    );
    timer.unref();
  };
  schedule();
  return async () => clearTimeout(timer);
}

async function resolvePorts(preferred: Partial<StackPorts>): Promise<StackPorts> {
  const ports = { ...DEFAULT_PORTS, ...preferred };
  const resolved = {} as StackPorts;
  for (const key of Object.keys(ports) as (keyof StackPorts)[]) resolved[key] = await findPort(ports[key]);
  return resolved;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const log = options.log ?? ((line: string) => console.log(line));
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const ports = await resolvePorts(options.ports ?? {});
  for (const [name, port] of Object.entries(ports)) {
    const wanted = options.ports?.[name as keyof StackPorts] ?? DEFAULT_PORTS[name as keyof StackPorts];
    if (wanted !== 0 && wanted !== port) log(`port ${wanted} (${name}) is busy, using ${port}`);
  }

  const cleanups: (() => Promise<void>)[] = [];
  const firstCleanups: (() => Promise<void>)[] = [];
  let started = false;
  let startupFailure: string | null = null;
  const abort = () => startupFailure ?? (options.signal?.aborted ? "start-up cancelled" : null);
  /**
   * Spawns a child. One that dies after start-up is reported with its last lines; a `restart` child (the
   * executor, which is stateless) is then started again, up to 5 times a minute, the others stop the stack.
   * `stopFirst` children (the API, the executor) stop before everything else, so that nothing calls a
   * stopped database or bridge on the way down.
   */
  const spawnChild = (
    name: string,
    command: string,
    args: string[],
    env: NodeJS.ProcessEnv = {},
    { restart = false, stopFirst = false } = {},
  ) => {
    let current: ManagedChild;
    const restarts: number[] = [];
    const launch = () => {
      current = new ManagedChild({
        name,
        command,
        args,
        cwd: ROOT_DIR,
        env: { ...process.env, ...env },
        onLine: (childName, line) => {
          if (!NOISE.test(line)) options.onChildLine?.(childName, line);
        },
        onUnexpectedExit: (dead, code, signal) => {
          const message = describeExit(dead, code, signal);
          if (!started) {
            startupFailure = message;
            return;
          }
          const now = Date.now();
          while (restarts.length > 0 && (restarts[0] as number) < now - 60_000) restarts.shift();
          if (restart && restarts.length < 5) {
            restarts.push(now);
            log(`${message}\nrestarting ${name}.`);
            launch();
          } else {
            options.onFailure?.(message);
          }
        },
      });
    };
    launch();
    (stopFirst ? firstCleanups : cleanups).push(() => current.stop());
  };
  const imageBuild = new AbortController();
  const close = async () => {
    imageBuild.abort();
    for (const cleanup of [...firstCleanups.reverse(), ...cleanups.reverse()])
      await cleanup().catch((error) => log(`cleanup failed: ${error}`));
    firstCleanups.length = 0;
    cleanups.length = 0;
  };

  try {
    const secrets = await loadDevSecrets(dataDir);
    const redisToken = randomBytes(24).toString("base64url");
    const pglite = !options.databaseUrl;
    const serverUrl =
      options.databaseUrl ??
      `postgresql://postgres:postgres@127.0.0.1:${ports.pglite}/postgres?sslmode=disable`;
    const databaseUrl = options.freshDatabase
      ? withDatabaseName(serverUrl, options.freshDatabase)
      : serverUrl;
    const proxyAddress = `127.0.0.1:${ports.dbProxy}`;
    const bridgeUrl = `http://127.0.0.1:${ports.redisBridge}`;
    const executorUrl = `http://127.0.0.1:${ports.executor}`;
    const apiUrl = `http://127.0.0.1:${ports.api}`;
    const smtp: ExternalSmtp = options.smtp ?? {
      host: "127.0.0.1",
      port: ports.smtp,
      user: "sinas",
      password: "sinas",
      domain: "sinas.local",
    };

    // The slowest pieces start first and come up side by side with the database: wrangler (bundle, then
    // workerd) and the executor (after the sandbox image check). Every address they need is known already,
    // and nothing calls them before the health checks at the end.
    const passThrough = Object.fromEntries(
      PASS_THROUGH_VARS.flatMap((name) => (process.env[name] ? [[name, process.env[name] as string]] : [])),
    );
    const workerVars: Record<string, string> = {
      ENVIRONMENT: "development",
      SECRET_KEY: secrets.SECRET_KEY,
      ENCRYPTION_KEY: secrets.ENCRYPTION_KEY,
      EXECUTOR_JOB_PRIVATE_KEY: secrets.EXECUTOR_JOB_PRIVATE_KEY,
      EXECUTOR_CALLBACK_PUBLIC_KEY: secrets.EXECUTOR_CALLBACK_PUBLIC_KEY,
      API_PUBLIC_URL: apiUrl,
      ...passThrough,
      DATABASE_URL: databaseUrl,
      DB_WS_PROXY: proxyAddress,
      UPSTASH_REDIS_REST_URL: bridgeUrl,
      UPSTASH_REDIS_REST_TOKEN: redisToken,
      EXECUTOR_URL: executorUrl,
      SMTP_HOST: smtp.host,
      SMTP_PORT: String(smtp.port),
      SMTP_USER: smtp.user ?? "",
      SMTP_PASSWORD: smtp.password ?? "",
      SMTP_DOMAIN: smtp.domain,
      ...options.workerVars,
    };
    const envFile = writeEnvFile(join(dataDir, "run", `worker-${ports.api}.env`), workerVars);
    const devtools = options.devtools ?? false;
    spawnChild(
      "api",
      process.execPath,
      [
        join(ROOT_DIR, "scripts/wrangler-dev.mjs"),
        "--port",
        String(ports.api),
        "--persist-to",
        join(dataDir, "wrangler"),
        "--env-file",
        envFile,
        // Without devtools (tests, benchmarks) wrangler logs warnings and errors only: at "log" its proxy posts
        // every request's log line to wrangler's Node process (~1 ms of CPU per request across the processes).
        ...(devtools ? ["--inspector-port", String(ports.inspector), "--watch"] : ["--log-level", "warn"]),
      ],
      { WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", FORCE_COLOR: "0" },
      { stopFirst: true },
    );
    const executorSpawned = ensureRuntimeImage(log, imageBuild.signal).then(() =>
      spawnChild(
        "executor",
        process.execPath,
        ["--import", "tsx", "executor-node/src/server.ts"],
        {
          EXECUTOR_PORT: String(ports.executor),
          EXECUTOR_JOB_PUBLIC_KEY: secrets.EXECUTOR_JOB_PUBLIC_KEY,
          EXECUTOR_CALLBACK_PRIVATE_KEY: secrets.EXECUTOR_CALLBACK_PRIVATE_KEY,
          // One id per data folder: stacks running side by side (tests) never remove each other's
          // containers as orphans, and a restarted `npm start` cleans up what its crashed run left.
          EXECUTOR_ID: `sinas-${createHash("sha256").update(dataDir).digest("hex").slice(0, 12)}`,
          // Where the Worker reaches this executor itself (its resumes and cancels go there): the same URL here,
          // another when the Worker's EXECUTOR_URL is a balancer in front of several (a test does that).
          EXECUTOR_PUBLIC_URL: process.env.EXECUTOR_PUBLIC_URL || executorUrl,
        },
        { restart: true, stopFirst: true },
      ),
    );

    // Postgres: external server, or PGlite behind a Postgres-protocol socket server.
    let databaseLocation = new URL(serverUrl).host;
    if (pglite) {
      const inMemory = options.pglite === "memory";
      databaseLocation = inMemory ? "in memory" : join(dataDir, "pgdata");
      spawnChild("pglite", process.execPath, [
        join(ROOT_DIR, "scripts/pglite-server.mjs"),
        "--db",
        inMemory ? "memory://" : databaseLocation,
        "--port",
        String(ports.pglite),
        // Connections are multiplexed onto one PGlite; a connection beyond this limit is dropped, which the
        // Neon driver surfaces as an uncaught "send() after close()". Every Worker request and every busy
        // Durable Object holds one, so the limit is generous.
        "--max-connections",
        "1024",
        "--snapshot",
        pgliteSnapshotFile(),
        "--migrations",
        MIGRATIONS_FOLDER,
      ]);
      await waitForPort(ports.pglite, { timeoutMs: 60_000, abort });
    }

    const proxy = await startWsProxy({ port: ports.dbProxy, serializeConnections: pglite });
    cleanups.push(() => proxy.close());

    if (options.freshDatabase) {
      const admin = { databaseUrl: serverUrl, wsProxy: proxy.address };
      const name = options.freshDatabase;
      await withinTime(createDatabase(admin, name), DATABASE_STEP_MS, `creating database ${name}`);
      cleanups.push(() => dropDatabase(admin, name));
    }
    await withinTime(
      runMigrations({ databaseUrl, wsProxy: proxy.address }),
      DATABASE_STEP_MS,
      "applying the migrations",
    );
    log("database ready");

    const bridge = await startRedisBridge({
      port: ports.redisBridge,
      token: redisToken,
      redisUrl: options.redisUrl,
    });
    cleanups.push(() => bridge.close());

    let mailUrl: string | null = null;
    if (!options.smtp) {
      const sink = await startSmtpSink({
        smtpPort: ports.smtp,
        httpPort: ports.mailHttp,
        print: (line) => options.onChildLine?.("mail", line),
      });
      cleanups.push(() => sink.close());
      mailUrl = sink.httpUrl;
    }

    let fakeLlmUrl: string | null = null;
    if (options.fakeLlmPort !== undefined) {
      const fake = await startLocalFakeLlm(options.fakeLlmPort);
      cleanups.push(() => fake.close());
      fakeLlmUrl = fake.url;
    }

    await executorSpawned;
    await waitForHttp(`${executorUrl}/health`, { timeoutMs: 30_000, abort });
    await waitForHttp(`${apiUrl}/health`, { timeoutMs: options.readyTimeoutMs ?? 90_000, abort });

    started = true;
    if (options.localCron !== false) cleanups.push(startLocalCron(apiUrl));
    return {
      apiUrl,
      docsUrl: `${apiUrl}/docs`,
      executorUrl,
      redisBridgeUrl: bridge.url,
      redisToken,
      redisMode: bridge.mode,
      mailUrl,
      smtp: { host: smtp.host, port: smtp.port },
      database: {
        kind: pglite ? "pglite" : "postgres",
        url: databaseUrl,
        wsProxy: proxy.address,
        location: databaseLocation,
      },
      dataDir,
      ports,
      fakeLlmUrl,
      close,
    };
  } catch (error) {
    await close();
    const reason = startupFailure ?? describeError(error);
    throw new Error(`The stack failed to start: ${reason}`, { cause: error });
  }
}
