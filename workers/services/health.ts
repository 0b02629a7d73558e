/**
 * @module Health of the platform's dependencies: database, Redis, executor.
 *
 * Database and Redis are required (503 when either fails); the executor only degrades the platform,
 * since chat and management keep working without it.
 */
import { sql } from "drizzle-orm";
import { pingRedis } from "../lib/redis";
import { readLastCronTick } from "./scheduler";
import type { Services } from "./services";

export type CheckStatus = "ok" | "error" | "not_configured";

export interface DependencyCheck {
  status: CheckStatus;
  latency_ms: number | null;
  error: string | null;
}

export interface HealthReport {
  status: "healthy" | "degraded" | "unhealthy";
  environment: string;
  checks: { database: DependencyCheck; redis: DependencyCheck; executor: DependencyCheck };
  /** When the Cron Trigger last ran (ISO), null if never seen. */
  last_cron_tick: string | null;
}

const CHECK_TIMEOUT_MS = 3_000;

async function timed(check: () => Promise<void>): Promise<DependencyCheck> {
  const started = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
  });
  try {
    await Promise.race([check(), timeout]);
    return { status: "ok", latency_ms: Date.now() - started, error: null };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { status: "error", latency_ms: Date.now() - started, error: message };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

async function checkExecutor(executorUrl: string | undefined): Promise<DependencyCheck> {
  if (!executorUrl) return { status: "not_configured", latency_ms: null, error: null };
  return timed(async () => {
    const response = await fetch(new URL("/health", executorUrl));
    if (!response.ok) throw new Error(`executor answered ${response.status}`);
  });
}

export async function checkHealth(services: Services): Promise<HealthReport> {
  let lastCronTick: string | null = null;
  const [database, redis, executor] = await Promise.all([
    timed(async () => {
      await services.db().execute(sql`select 1`);
    }),
    timed(async () => {
      const result = await pingRedis(services.redis());
      if (!result.ok) throw new Error(result.error);
      lastCronTick = await readLastCronTick(services);
    }),
    checkExecutor(services.config.EXECUTOR_URL),
  ]);
  const required = database.status === "ok" && redis.status === "ok";
  const status = !required ? "unhealthy" : executor.status === "error" ? "degraded" : "healthy";
  return {
    status,
    environment: services.config.ENVIRONMENT,
    checks: { database, redis, executor },
    last_cron_tick: lastCronTick,
  };
}
