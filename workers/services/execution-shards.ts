/**
 * @module Which ExecutionRun object holds an execution: one of a fixed set of shards, chosen by a hash of
 * the execution id, so the API, the executor's callbacks and the log stream all reach the same object.
 *
 * One object per execution made every run create its own SQLite database and open its own Postgres
 * connection (~30 ms of CPU locally); a shard keeps both warm. 32 shards leave each far below a Durable
 * Object's request rate at thousands of runs per second. Changing the count remaps running executions:
 * drain them first.
 */
import type { Env } from "../env";

export const EXECUTION_RUN_SHARDS = 32;

/** FNV-1a over the id's characters: stable, cheap, and even for UUIDs and other ids alike. */
export function executionShardOf(executionId: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < executionId.length; index++) {
    hash ^= executionId.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % EXECUTION_RUN_SHARDS;
}

export function executionRunFor(env: Pick<Env, "EXECUTION_RUN">, executionId: string) {
  const name = `shard-${executionShardOf(executionId)}`;
  return env.EXECUTION_RUN.get(env.EXECUTION_RUN.idFromName(name));
}
