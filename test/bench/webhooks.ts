/**
 * @module Webhook throughput: async calls of a trivial function through `wrangler dev` (accepted per second,
 * then completed per second once every accepted run has finished), against the same function's jobs posted
 * straight to the executor (signed with the stack's dev keys, results counted by a local callback receiver).
 * Both run as the same user, so they share the executor's per-user pool.
 */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { sql } from "drizzle-orm";
import { sha256Hex } from "../../workers/lib/crypto";
import { EXECUTOR_AUDIENCE, JOB_ISSUER, type Job } from "../../workers/lib/executor-protocol";
import { signRequest } from "../../workers/lib/signed-request";
import { api, login, type Session, SUPERADMIN_EMAIL } from "../helpers/auth";
import { openStackDb } from "../helpers/db";
import { createFunction, pythonFunction } from "../helpers/functions";
import { stackSecrets } from "../helpers/secrets";
import type { TestStack } from "../helpers/stack";
import { cpuPerUnit, formatCpu, sampleCpu } from "./cpu";
import { startDriverStack } from "./driver-stack";
import { createLoadClient } from "./load-client";
import { ms, percentile } from "./stats";

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 10_000);
/** Async calls before the measured rows, to warm the code paths under load. */
const WARMUP_MS = 3_000;
/** How long the completions of one load may take before the row reports what finished so far. */
const DRAIN_TIMEOUT_MS = 180_000;
const NOOP = pythonFunction("noop", "    return {}");

interface Load {
  accepted: number;
  refused: number;
  latencies: number[];
  seconds: number;
}

/** `CONCURRENCY` clients calling `send` back to back for `durationMs`; `send` says whether it was accepted. */
async function runLoad(send: () => Promise<boolean>, durationMs = DURATION_MS): Promise<Load> {
  const latencies: number[] = [];
  let refused = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  const client = async () => {
    while (performance.now() < deadline) {
      const begin = performance.now();
      if (await send().catch(() => false)) latencies.push(performance.now() - begin);
      else refused++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, client));
  return { accepted: latencies.length, refused, latencies, seconds: (performance.now() - started) / 1000 };
}

function row(
  driver: string,
  name: string,
  load: Load,
  completed: number,
  failed: number,
  completedSeconds: number,
): string {
  const cells = [
    driver,
    name,
    String(CONCURRENCY),
    String(load.accepted),
    ms(load.accepted / load.seconds),
    ms(percentile(load.latencies, 0.5)),
    ms(percentile(load.latencies, 0.95)),
    String(completed),
    String(failed),
    ms(completed / completedSeconds),
    String(load.refused),
  ];
  return `| ${cells.join(" | ")} |`;
}

/** Async calls of `webhook` from `CONCURRENCY` clients for `durationMs`. */
async function callAsync(
  stack: TestStack,
  webhook: { path: string },
  headers: Record<string, string>,
  durationMs = DURATION_MS,
): Promise<Load> {
  const client = createLoadClient(stack.apiUrl);
  const path = `/webhooks/${webhook.path}?async=true`;
  const headersOut = { "content-type": "application/json", ...headers };
  return runLoad(
    async () => (await client.send("POST", path, headersOut, '{"n":1}')).status === 202,
    durationMs,
  ).finally(() => client.close());
}

/** Waits until the `accepted` runs of a webhook are over; their counts and span, read from the rows. */
async function waitForRuns(db: ReturnType<typeof openStackDb>, webhookId: string, accepted: number) {
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  let counts = { completed: 0, failed: 0, running: 0, seconds: Number.NaN };
  while (Date.now() < deadline) {
    const result = await db.db.execute(sql`
      select count(*) filter (where status = 'COMPLETED')::int as completed,
             count(*) filter (where status = 'FAILED')::int as failed,
             count(*) filter (where status = 'RUNNING')::int as running,
             extract(epoch from max(completed_at) - min(started_at))::float8 as seconds
      from executions where trigger_id = ${webhookId}`);
    counts = result.rows[0] as typeof counts;
    if (counts.running === 0 && counts.completed + counts.failed >= accepted) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return counts;
}

/** Async webhook calls; then waits until every accepted execution is over and reads its span from the rows. */
async function benchWebhook(
  driver: string,
  stack: TestStack,
  db: ReturnType<typeof openStackDb>,
  name: string,
  webhook: { id: string; path: string },
  headers: Record<string, string>,
  notes: string[],
): Promise<string> {
  const cpuBefore = sampleCpu();
  const load = await callAsync(stack, webhook, headers);
  const counts = await waitForRuns(db, webhook.id, load.accepted);
  notes.push(`- ${name}: CPU ms per run: ${formatCpu(cpuPerUnit(cpuBefore, sampleCpu(), counts.completed))}`);
  return row(driver, name, load, counts.completed, counts.failed + counts.running, counts.seconds);
}

/** A local receiver for the executor's callbacks: counts result events per status. */
async function startCallbackReceiver() {
  const results = { completed: 0, failed: 0, lastAt: 0 };
  const readBody = (request: IncomingMessage) =>
    new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      request.on("error", reject);
    });
  const server = createServer(async (request, response) => {
    const body = JSON.parse(await readBody(request)) as { events: { type: string; status?: string }[] };
    for (const event of body.events) {
      if (event.type !== "result") continue;
      if (event.status === "completed") results.completed++;
      else results.failed++;
      results.lastAt = performance.now();
    }
    response.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, results, close: () => server.close() };
}

/** The same function posted as signed jobs straight to the executor (what the ExecutionRun object sends). */
async function benchExecutor(driver: string, stack: TestStack, user: Session["user"]): Promise<string> {
  const receiver = await startCallbackReceiver();
  const privateKey = stackSecrets(stack).EXECUTOR_JOB_PRIVATE_KEY;
  const codeHash = await sha256Hex(NOOP.code);
  const client = createLoadClient(stack.executorUrl);
  try {
    const started = performance.now();
    const load = await runLoad(async () => {
      const executionId = crypto.randomUUID();
      const job: Job = {
        execution_id: executionId,
        kind: "run",
        user: { id: user.id, email: user.email },
        function: {
          namespace: "default",
          name: NOOP.name,
          code: NOOP.code,
          code_hash: codeHash,
          timeout_seconds: 60,
          shared_pool: false,
        },
        callable: { default: { [NOOP.name]: { code: NOOP.code, code_hash: codeHash } } },
        requirements: [],
        input: { n: 1 },
        context: {
          user_id: user.id,
          user_email: user.email,
          access_token: "bench",
          execution_id: executionId,
          trigger_type: "WEBHOOK",
          chat_id: null,
        },
        callback_url: `${receiver.url}/internal/executions/${executionId}/events`,
      };
      const body = JSON.stringify(job);
      const token = await signRequest(privateKey, {
        issuer: JOB_ISSUER,
        audience: EXECUTOR_AUDIENCE,
        method: "POST",
        path: "/v1/jobs",
        body,
        subject: executionId,
      });
      const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
      return (await client.send("POST", "/v1/jobs", headers, body)).status === 202;
    });
    const deadline = Date.now() + DRAIN_TIMEOUT_MS;
    while (receiver.results.completed + receiver.results.failed < load.accepted && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const { completed, failed, lastAt } = receiver.results;
    return row(driver, "executor direct: POST /v1/jobs", load, completed, failed, (lastAt - started) / 1000);
  } finally {
    client.close();
    receiver.close();
  }
}

/** One stack per sandbox driver; a driver this machine lacks gets a row saying so. */
export async function runWebhookBenchmarks(drivers = ["bwrap", "docker"]): Promise<string[]> {
  const rows = [
    `${CONCURRENCY} clients for ${DURATION_MS / 1000} s per row; completed/s spans the first start to the last completion.\n`,
    "| driver | path | clients | accepted | accepted/s | accept p50 ms | accept p95 ms | completed | failed or unfinished | completed/s | refused |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const driver of drivers) {
    const started = await startDriverStack(driver);
    if ("unavailable" in started) {
      rows.push(`| ${driver} | ${started.unavailable} | | | | | | | | | |`);
      continue;
    }
    const { stack } = started;
    try {
      rows.push(...(await benchStack(driver, stack)));
    } finally {
      await stack.stop();
    }
  }
  return rows;
}

async function benchStack(driver: string, stack: TestStack): Promise<string[]> {
  const db = openStackDb(stack);
  try {
    const admin = await login(stack, SUPERADMIN_EMAIL);
    await createFunction(stack, admin, NOOP);
    const webhook = async (path: string, requiresAuth: boolean) => {
      const response = await api(stack, admin, "POST", "/api/v1/webhooks", {
        path,
        function_name: NOOP.name,
        requires_auth: requiresAuth,
        rate_limit: "1000000/1m",
      });
      if (response.status !== 200) throw new Error(`webhook not created: ${JSON.stringify(response.body)}`);
      return response.body as { id: string; path: string };
    };
    const label = `${driver} (${stack.database.kind}, Redis ${stack.redisMode})`;
    // Warm the user's sandboxes, then the async path under load (JIT), and let those runs finish first: the
    // first measured row was otherwise the slowest of a run.
    const warm = await webhook("bench/warm", false);
    for (let index = 0; index < 20; index++) await stack.fetch(`/webhooks/${warm.path}`, { method: "POST" });
    await waitForRuns(db, warm.id, (await callAsync(stack, warm, {}, WARMUP_MS)).accepted);
    const notes: string[] = [];
    const rows = [
      await benchWebhook(
        label,
        stack,
        db,
        "webhook async, no auth",
        await webhook("bench/public", false),
        {},
        notes,
      ),
      await benchWebhook(
        label,
        stack,
        db,
        "webhook async, bearer token",
        await webhook("bench/auth", true),
        { authorization: `Bearer ${admin.accessToken}` },
        notes,
      ),
      await benchExecutor(label, stack, admin.user),
    ];
    return [...rows, "", ...notes, ""];
  } finally {
    await db.close();
  }
}
