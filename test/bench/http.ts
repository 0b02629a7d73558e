/**
 * @module HTTP throughput of the API itself: a fixed number of concurrent clients for a fixed time.
 */
import { performance } from "node:perf_hooks";
import type { TestStack } from "../helpers/stack";
import { ms, percentile } from "./stats";

interface HttpBenchmark {
  name: string;
  path: string;
  concurrency: number;
  durationMs: number;
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
  const rows = [
    "| benchmark | concurrency | ok | failed | per second | p50 ms | p95 ms | p99 ms |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const benchmark of HTTP_BENCHMARKS) {
    const latencies: number[] = [];
    let failed = 0;
    const started = performance.now();
    const deadline = started + benchmark.durationMs;
    const worker = async () => {
      while (performance.now() < deadline) {
        const begin = performance.now();
        const response = await stack.fetch(benchmark.path).catch(() => null);
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
