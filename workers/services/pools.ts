/**
 * @module Containers and workers (sinas-spec §1.21, §10.3, D-44), mapped onto the executor's pools.
 */
import type { AppConfig } from "../env";
import { AppError } from "../lib/errors";
import { type PoolsReport, PoolsReportSchema } from "../lib/executor-protocol";
import { callExecutor } from "./executor-client";

export const MAX_SHARED_WORKERS = 10;

async function expectOk(answer: { status: number; body: unknown }, what: string): Promise<unknown> {
  if (answer.status !== 200) {
    const detail = (answer.body as { message?: string } | null)?.message ?? `status ${answer.status}`;
    throw new AppError("BAD_GATEWAY", `The executor could not ${what}: ${detail}`);
  }
  return answer.body;
}

export async function poolsReport(config: AppConfig): Promise<PoolsReport> {
  const body = await expectOk(
    await callExecutor(config, { method: "GET", path: "/v1/pools" }),
    "report its pools",
  );
  const parsed = PoolsReportSchema.safeParse(body);
  if (!parsed.success)
    throw new AppError("BAD_GATEWAY", "The executor's pool report does not match the protocol");
  return parsed.data;
}

export async function containerStats(config: AppConfig) {
  const report = await poolsReport(config);
  return report.user_pools.map((pool) => ({
    user_id: pool.user_id,
    container_id: pool.sandbox_id.slice(0, 12),
    status: pool.status,
    last_used: pool.last_used,
    idle_seconds: pool.idle_seconds,
  }));
}

export async function reloadUserContainers(config: AppConfig, userId: string) {
  const path = `/v1/pools/users/${encodeURIComponent(userId)}/reload`;
  await expectOk(
    await callExecutor(config, { method: "POST", path, body: {} }),
    "reload the user's sandboxes",
  );
  return { status: "reloaded", user_id: userId };
}

export async function stopUserContainers(config: AppConfig, userId: string) {
  const path = `/v1/pools/users/${encodeURIComponent(userId)}`;
  await expectOk(await callExecutor(config, { method: "DELETE", path }), "stop the user's sandboxes");
  return { status: "stopped", user_id: userId };
}

export async function listWorkers(config: AppConfig) {
  return (await poolsReport(config)).shared_pool;
}

export async function scaleWorkers(config: AppConfig, targetCount: number) {
  if (targetCount < 0) throw new AppError("BAD_REQUEST", "Target count must be >= 0");
  if (targetCount > MAX_SHARED_WORKERS)
    throw new AppError("BAD_REQUEST", `Maximum ${MAX_SHARED_WORKERS} workers allowed`);
  const answer = await callExecutor(config, {
    method: "POST",
    path: "/v1/pools/shared/scale",
    body: { target_count: targetCount },
    timeoutMs: 60_000,
  });
  return (await expectOk(answer, "scale the shared pool")) as {
    action: string;
    previous_count: number;
    current_count: number;
    added: number;
    removed: number;
  };
}
