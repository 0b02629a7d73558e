/**
 * @module Function execution per sandbox driver: warm dispatch overhead, API-observed (the ExecutionRun
 * object's job-sent-to-result time minus the runtime's own measurement, from the `Server-Timing: dispatch`
 * header), the client's round trip through `wrangler dev`, and cold start (the API-observed run right
 * after the user's sandboxes were stopped).
 */
import { performance } from "node:perf_hooks";
import { api, login, SUPERADMIN_EMAIL } from "../helpers/auth";
import { createFunction, execute, pythonFunction } from "../helpers/functions";
import { startDriverStack } from "./driver-stack";
import { ms, percentile } from "./stats";

const WARM_RUNS = 60;
const COLD_RUNS = 10;

export async function runFunctionBenchmarks(drivers: string[]): Promise<string[]> {
  const rows = [
    "| driver | warm dispatch overhead p50 ms | p95 ms | client round trip p50 ms | cold start p50 ms | p95 ms |",
    "|---|---|---|---|---|---|",
  ];
  for (const driver of drivers) {
    const started = await startDriverStack(driver);
    if ("unavailable" in started) {
      rows.push(`| ${driver} | ${started.unavailable} | | | | |`);
      continue;
    }
    const { stack } = started;
    try {
      const admin = await login(stack, SUPERADMIN_EMAIL);
      await createFunction(stack, admin, pythonFunction("noop", "    return {}"));
      const run = async () => {
        const begin = performance.now();
        const response = await execute(stack, admin, { name: "noop" });
        const roundTrip = performance.now() - begin;
        if (response.status !== 200) throw new Error(`run failed: ${JSON.stringify(response.body)}`);
        const timing = response.headers.get("server-timing") ?? "";
        const dispatch = Number(/dispatch;dur=([\d.]+)/.exec(timing)?.[1] ?? Number.NaN);
        const inside = Number(/run;dur=([\d.]+)/.exec(timing)?.[1] ?? 0);
        return { roundTrip, dispatch, total: dispatch + inside };
      };
      for (let warmup = 0; warmup < 5; warmup++) await run();
      const overhead: number[] = [];
      const roundTrips: number[] = [];
      for (let index = 0; index < WARM_RUNS; index++) {
        const { roundTrip, dispatch } = await run();
        roundTrips.push(roundTrip);
        overhead.push(dispatch);
      }
      const cold: number[] = [];
      for (let index = 0; index < COLD_RUNS; index++) {
        await api(stack, admin, "DELETE", `/api/v1/containers/${admin.user.id}`);
        cold.push((await run()).total);
      }
      rows.push(
        `| ${driver} | ${ms(percentile(overhead, 0.5))} | ${ms(percentile(overhead, 0.95))} | ${ms(percentile(roundTrips, 0.5))} | ${ms(percentile(cold, 0.5))} | ${ms(percentile(cold, 0.95))} |`,
      );
    } finally {
      await stack.stop();
    }
  }
  return rows;
}
