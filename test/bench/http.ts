/**
 * @module HTTP throughput of the API itself: a fixed number of concurrent clients for a fixed time.
 */
import { performance } from "node:perf_hooks";
import { sql } from "drizzle-orm";
import { api, login, SUPERADMIN_EMAIL } from "../helpers/auth";
import { openStackDb } from "../helpers/db";
import type { TestStack } from "../helpers/stack";
import { ms, percentile } from "./stats";

interface HttpBenchmark {
  name: string;
  path: string;
  concurrency: number;
  durationMs: number;
  headers?: Record<string, string>;
}

/** The chat list's size: a user with this many chats of this many messages each. */
const LIST_CHATS = 200;
const LIST_MESSAGES = 500;

/**
 * The superadmin gets `LIST_CHATS` chats of `LIST_MESSAGES` messages each, written straight to the database
 * (through the API it would take minutes); returns the superadmin's auth headers.
 */
async function seedChatList(stack: TestStack): Promise<Record<string, string>> {
  const session = await login(stack, SUPERADMIN_EMAIL);
  const agent = await api(stack, session, "POST", "/api/v1/agents", { name: "bench-list" });
  if (agent.status !== 201) throw new Error(`agent: ${agent.status} ${JSON.stringify(agent.body)}`);
  const agentId = (agent.body as { id: string }).id;
  const db = openStackDb(stack);
  try {
    await db.db.execute(sql`insert into chats (user_id, agent_id, agent_namespace, agent_name, title)
      select ${session.user.id}, ${agentId}, 'default', 'bench-list', 'chat ' || g
      from generate_series(1, ${LIST_CHATS}) g`);
    await db.db.execute(sql`insert into messages (chat_id, role, content)
      select c.id, 'user', repeat('x', 200) from chats c, generate_series(1, ${LIST_MESSAGES}) g
      where c.user_id = ${session.user.id}`);
  } finally {
    await db.close();
  }
  return session.headers;
}

const HTTP_BENCHMARKS: HttpBenchmark[] = [
  { name: "GET /health (Postgres + Redis + executor)", path: "/health", concurrency: 16, durationMs: 5_000 },
  {
    name: "GET /openapi.json (cached static part + active webhooks and agents)",
    path: "/openapi.json",
    concurrency: 16,
    durationMs: 3_000,
  },
];

export async function runHttpBenchmarks(stack: TestStack): Promise<string[]> {
  const headers = await seedChatList(stack);
  const listed = `${LIST_CHATS} chats of ${LIST_MESSAGES} messages`;
  const benchmarks: HttpBenchmark[] = [
    ...HTTP_BENCHMARKS,
    {
      name: `GET /chats?limit=20 (${listed})`,
      path: "/chats?limit=20",
      concurrency: 16,
      durationMs: 3_000,
      headers,
    },
    { name: `GET /chats (all ${listed})`, path: "/chats", concurrency: 16, durationMs: 3_000, headers },
  ];
  const rows = [
    "| benchmark | concurrency | ok | failed | per second | p50 ms | p95 ms | p99 ms |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const benchmark of benchmarks) {
    const latencies: number[] = [];
    let failed = 0;
    const started = performance.now();
    const deadline = started + benchmark.durationMs;
    const worker = async () => {
      while (performance.now() < deadline) {
        const begin = performance.now();
        const init = benchmark.headers ? { headers: benchmark.headers } : {};
        const response = await stack.fetch(benchmark.path, init).catch(() => null);
        await response?.arrayBuffer();
        if (response?.status === 200) latencies.push(performance.now() - begin);
        else failed++;
      }
    };
    await Promise.all(Array.from({ length: benchmark.concurrency }, worker));
    const perSecond = latencies.length / ((performance.now() - started) / 1000);
    const cells = [
      perSecond,
      percentile(latencies, 0.5),
      percentile(latencies, 0.95),
      percentile(latencies, 0.99),
    ].map(ms);
    rows.push(
      `| ${benchmark.name} | ${benchmark.concurrency} | ${latencies.length} | ${failed} | ${cells.join(" | ")} |`,
    );
  }
  return rows;
}
