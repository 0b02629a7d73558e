/**
 * @module `npm run bench`: timing goals, measured on the real stack (never asserted in tests).
 *
 * Boots the stack like the integration tests (embedded defaults, or TEST_DATABASE_URL / TEST_REDIS_URL),
 * then runs each benchmark: a fixed number of concurrent workers for a fixed time, bounded and local.
 * Prints one table; later issues add their benchmarks to BENCHMARKS.
 */
import { performance } from "node:perf_hooks";
import { startTestStack, type TestStack } from "../helpers/stack";

interface Benchmark {
  name: string;
  concurrency: number;
  durationMs: number;
  /** One operation; resolves when it succeeded, throws otherwise. */
  run(stack: TestStack): Promise<void>;
}

interface Result {
  name: string;
  ok: number;
  failed: number;
  perSecond: number;
  p50: number;
  p95: number;
  p99: number;
}

const BENCHMARKS: Benchmark[] = [
  {
    name: "GET /health (Postgres + Redis + executor)",
    concurrency: 16,
    durationMs: 5_000,
    async run(stack) {
      const response = await stack.fetch("/health");
      await response.arrayBuffer();
      if (response.status !== 200) throw new Error(`status ${response.status}`);
    },
  },
  {
    name: "GET /openapi.json (no I/O)",
    concurrency: 16,
    durationMs: 3_000,
    async run(stack) {
      const response = await stack.fetch("/openapi.json");
      await response.arrayBuffer();
      if (response.status !== 200) throw new Error(`status ${response.status}`);
    },
  },
];

function percentile(sorted: number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))] as number;
}

async function measure(stack: TestStack, benchmark: Benchmark): Promise<Result> {
  const latencies: number[] = [];
  let failed = 0;
  const started = performance.now();
  const deadline = started + benchmark.durationMs;
  const worker = async () => {
    while (performance.now() < deadline) {
      const begin = performance.now();
      try {
        await benchmark.run(stack);
        latencies.push(performance.now() - begin);
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: benchmark.concurrency }, worker));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    name: benchmark.name,
    ok: latencies.length,
    failed,
    perSecond: latencies.length / elapsed,
    p50: percentile(latencies, 0.5),
    p95: percentile(latencies, 0.95),
    p99: percentile(latencies, 0.99),
  };
}

const bootStarted = performance.now();
const stack = await startTestStack();
const bootSeconds = (performance.now() - bootStarted) / 1000;
try {
  console.log(
    `stack: ${stack.database.kind}, Redis ${stack.redisMode}; ready in ${bootSeconds.toFixed(1)} s\n`,
  );
  const results: Result[] = [];
  for (const benchmark of BENCHMARKS) results.push(await measure(stack, benchmark));
  console.log("| benchmark | concurrency | ok | failed | per second | p50 ms | p95 ms | p99 ms |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const [index, result] of results.entries()) {
    const concurrency = BENCHMARKS[index]?.concurrency;
    const cells = [result.perSecond, result.p50, result.p95, result.p99].map((value) => value.toFixed(1));
    console.log(
      `| ${result.name} | ${concurrency} | ${result.ok} | ${result.failed} | ${cells.join(" | ")} |`,
    );
  }
} finally {
  await stack.stop();
}
