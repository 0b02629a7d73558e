/**
 * @module What a run may call (sinas-spec §6.4): the active functions of its function's namespace and enabled
 * namespaces, owned by the user it runs as or by one of their active groups. The filter is one SQL fragment,
 * so a trigger can read it in the same round trip as its own lookup (webhooks do).
 */
import { type SQL, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/pg-core";
import type { Database } from "../db/client";
import { inArrayOf } from "../db/conditions";
import { jsonColumn } from "../db/json";
import { functions, type StoredFunction } from "../db/schema";
import { sha256Hex } from "../lib/crypto";
import type { CallableScope } from "../lib/executor-protocol";
import { activeGroupIdsOf } from "./grants";

const CALLEE = "callee";

/** One function a run may call, as read for its scope. */
export interface CallableRow {
  namespace: string;
  name: string;
  code: string;
  requirements: string[];
}

function parseRows(value: unknown): CallableRow[] {
  const rows = jsonColumn<unknown>(value);
  return Array.isArray(rows) ? (rows as CallableRow[]) : [];
}

/**
 * The callable functions as one `json` value: `namespaces` is a `jsonb` array of namespace names and `userId`
 * the user the run acts for (both SQL, so they may be columns of the caller's query).
 */
export function callableRowsSql(namespaces: SQL, userId: SQL): SQL<CallableRow[]> {
  // A table alias renders as its bare name inside `sql`, so the FROM clause names the table itself.
  const callee = alias(functions, CALLEE);
  const row = sql`json_build_object('namespace', ${callee.namespace}, 'name', ${callee.name}, 'code', ${callee.code}, 'requirements', ${callee.requirements})`;
  return sql<
    CallableRow[]
  >`(select coalesce(json_agg(${row}), '[]'::json) from ${functions} as ${sql.identifier(CALLEE)}
    where ${callee.namespace} in (select jsonb_array_elements_text(${namespaces}))
      and ${callee.isActive}
      and (${callee.userId} = ${userId} or ${inArrayOf(callee.groupId, activeGroupIdsOf(userId))}))`.mapWith(
    parseRows,
  );
}

/** Reads the callable functions of `fn` run as `userId` (one round trip). */
export async function readCallableRows(
  db: Database,
  fn: Pick<StoredFunction, "namespace" | "enabledNamespaces">,
  userId: string,
): Promise<CallableRow[]> {
  const namespaces = sql`${JSON.stringify([fn.namespace, ...fn.enabledNamespaces])}::jsonb`;
  const result = await db.execute<{ rows: unknown }>(
    sql`select ${callableRowsSql(namespaces, sql`${userId}::uuid`)} as "rows"`,
  );
  return parseRows(result.rows[0]?.rows);
}

/** The executor's callable scope (the run's own function always in it) and the pip specs of all of them. */
export async function callableScopeOf(
  rows: CallableRow[],
  fn: Pick<StoredFunction, "namespace" | "name" | "code" | "requirements">,
): Promise<{ scope: CallableScope; requirements: string[] }> {
  const scope: CallableScope = {};
  const requirements: string[] = [];
  for (const row of [...rows, fn]) {
    scope[row.namespace] ??= {};
    (scope[row.namespace] as CallableScope[string])[row.name] = {
      code: row.code,
      code_hash: await sha256Hex(row.code),
    };
    requirements.push(...row.requirements);
  }
  return { scope, requirements };
}
