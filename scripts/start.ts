/**
 * @module `npm start`: the whole platform on one machine, on embedded defaults unless env says otherwise.
 *
 * Flags (used by the integration tests): `--json` prints one `SINAS_STACK_READY {...}` line once up;
 * `--exit-on-stdin-close` stops the stack when the parent closes our stdin (so a killed test runner
 * leaves nothing behind); `--pglite-memory` keeps PGlite in memory; `--fresh-database NAME` creates
 * and later drops database NAME on DATABASE_URL's server.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_FAKE_LLM_PORT, describeFakeLlm } from "./fake-llm";
import { withoutPassword } from "./lib/printable";
import { type ExternalSmtp, ROOT_DIR, type Stack, type StackPorts, startStack } from "./lib/stack";

const { values: flags } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    "exit-on-stdin-close": { type: "boolean", default: false },
    "pglite-memory": { type: "boolean", default: false },
    "fresh-database": { type: "string" },
    quiet: { type: "boolean", default: false },
  },
});

const env = process.env;
const dataDir = resolve(ROOT_DIR, env.SINAS_DATA_DIR ?? ".sinas");

function portFromEnv(name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`${name} must be a port number (0-65535), got "${raw}"`);
    process.exit(2);
  }
  return port;
}

/** Extra Worker vars as JSON (used by tests for vars not in the pass-through list). */
function extraWorkerVars(): Record<string, string> {
  const raw = env.SINAS_EXTRA_WORKER_VARS;
  if (!raw) return {};
  const parsed: unknown = JSON.parse(raw);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    console.error("SINAS_EXTRA_WORKER_VARS must be a JSON object of strings");
    process.exit(2);
  }
  return Object.fromEntries(Object.entries(parsed).map(([name, value]) => [name, String(value)]));
}

function smtpFromEnv(): ExternalSmtp | undefined {
  if (!env.SMTP_HOST) return undefined;
  return {
    host: env.SMTP_HOST,
    port: portFromEnv("SMTP_PORT") ?? 587,
    user: env.SMTP_USER,
    password: env.SMTP_PASSWORD,
    domain: env.SMTP_DOMAIN ?? env.SMTP_HOST,
  };
}

const ports: Partial<StackPorts> = Object.fromEntries(
  (
    [
      ["api", "PORT"],
      ["executor", "EXECUTOR_PORT"],
      ["redisBridge", "REDIS_BRIDGE_PORT"],
      ["dbProxy", "DB_PROXY_PORT"],
      ["pglite", "PGLITE_PORT"],
      ["smtp", env.SMTP_HOST ? "" : "SMTP_PORT"],
      ["mailHttp", "MAIL_PORT"],
      ["inspector", "INSPECTOR_PORT"],
    ] as const
  ).flatMap(([key, name]) => {
    const port = name ? portFromEnv(name) : undefined;
    return port === undefined ? [] : [[key, port]];
  }),
);

/** One launcher per data folder: two PGlite processes on the same files would corrupt them. */
function acquireLock(): () => void {
  const lockFile = join(dataDir, "launcher.pid");
  mkdirSync(dataDir, { recursive: true });
  if (existsSync(lockFile)) {
    const pid = Number(readFileSync(lockFile, "utf8"));
    let alive = false;
    try {
      alive = pid > 0 && process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (alive && pid !== process.pid) {
      console.error(`SINAS Edge is already running from ${dataDir} (pid ${pid}). Stop it first.`);
      process.exit(1);
    }
  }
  writeFileSync(lockFile, String(process.pid));
  return () => rmSync(lockFile, { force: true });
}

function printSummary(stack: Stack): void {
  const db =
    stack.database.kind === "pglite"
      ? `PGlite (embedded), data ${stack.database.location}`
      : `Postgres at ${stack.database.location}`;
  const redis =
    stack.redisMode === "memory"
      ? "in memory (set REDIS_URL to use a Redis server)"
      : `Redis (${withoutPassword(env.REDIS_URL ?? "")})`;
  const mail = stack.mailUrl
    ? `SMTP sink on ${stack.smtp.host}:${stack.smtp.port}: every mail is printed here and listed at ${stack.mailUrl}/mails`
    : `SMTP server ${stack.smtp.host}:${stack.smtp.port}`;
  console.log(
    [
      "",
      "SINAS Edge is running.",
      `  API        ${stack.apiUrl}   (health: ${stack.apiUrl}/health)`,
      `  Docs       ${stack.docsUrl}   (management API: ${stack.apiUrl}/api/v1/docs)`,
      `  Database   ${db}`,
      `  Redis      ${redis}, Upstash REST bridge ${stack.redisBridgeUrl}`,
      `  Mail       ${mail}`,
      `  Executor   ${stack.executorUrl}`,
      ...(stack.fakeLlmUrl ? [`  Fake LLM   ${describeFakeLlm(stack.fakeLlmUrl)}`] : []),
      `  Data       ${stack.dataDir}`,
      "Press Ctrl-C to stop.",
      "",
    ].join("\n"),
  );
}

async function main(): Promise<void> {
  const releaseLock = acquireLock();
  let stack: Stack | undefined;
  let stopping = false;
  let stopCode = 0;
  const startup = new AbortController();
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    stopCode = code;
    if (!flags.quiet) console.log("Stopping SINAS Edge...");
    if (!stack) {
      // Still starting: startStack stops what it started and rejects; the catch below exits.
      startup.abort();
      return;
    }
    await stack.close();
    releaseLock();
    process.exit(code);
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      if (stopping) {
        console.error("Forced exit.");
        process.exit(130);
      }
      void stop(0);
    });
  }
  if (flags["exit-on-stdin-close"]) {
    process.stdin.on("end", () => void stop(0));
    process.stdin.on("error", () => void stop(0));
    process.stdin.resume();
  }

  try {
    stack = await startStack({
      dataDir,
      ports,
      databaseUrl: env.DATABASE_URL || undefined,
      pglite: flags["pglite-memory"] ? "memory" : "disk",
      freshDatabase: flags["fresh-database"],
      redisUrl: env.REDIS_URL || undefined,
      smtp: smtpFromEnv(),
      workerVars: extraWorkerVars(),
      localCron: env.SINAS_LOCAL_CRON !== "false",
      devtools: env.SINAS_DEVTOOLS ? env.SINAS_DEVTOOLS === "true" : !flags.json,
      fakeLlmPort:
        env.SINAS_FAKE_LLM === "true" ? (portFromEnv("FAKE_LLM_PORT") ?? DEFAULT_FAKE_LLM_PORT) : undefined,
      signal: startup.signal,
      log: (line) => console.log(`[launcher] ${line}`),
      onChildLine: flags.quiet ? undefined : (name, line) => console.log(`[${name}] ${line}`),
      onFailure: (message) => {
        console.error(`[launcher] ${message}\n[launcher] stopping the stack.`);
        void stop(1);
      },
    });
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    releaseLock();
    process.exit(startup.signal.aborted ? 0 : 1);
  }
  if (stopping) {
    // A stop came while the last start-up step (the API's first health check) was under way: it was only
    // noted then (`startup.abort()`), so the stack closes now instead of announcing itself.
    await stack.close();
    releaseLock();
    process.exit(stopCode);
  }
  if (flags.json) {
    const { close: _close, ...info } = stack;
    console.log(`SINAS_STACK_READY ${JSON.stringify(info)}`);
  } else {
    printSummary(stack);
  }
}

await main();
