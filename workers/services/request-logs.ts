/**
 * @module Request logs (sinas-spec §10.5, §1.20): writing one row per request, and the query and statistics
 * behind `GET /api/v1/request-logs[/stats]`.
 *
 * SINAS keeps these in ClickHouse and builds its queries by string interpolation; SINAS Edge keeps them in
 * Postgres and passes every input as a bound parameter through drizzle's builders (D-47).
 */
import { and, desc, eq, getTableColumns, gte, isNotNull, like, lte, ne, type SQL, sql } from "drizzle-orm";
import { can } from "../auth/access";
import { permissions } from "../auth/catalogue";
import type { Principal } from "../auth/principal";
import type { Database } from "../db/client";
import { preparedOnce } from "../db/prepared";
import { type NewRequestLog, type RequestLog, requestLogs } from "../db/schema";
import { AppError } from "../lib/errors";
import { jsonbSafe } from "../lib/redaction";

/** Who is asking, and where to note the permission that decided the request (the request log itself). */
export interface RequestLogCaller {
  principal: Principal;
  recordPermission(permission: string, granted: boolean): void;
}

export interface RequestLogFilter {
  userId?: string | undefined;
  startTime?: Date | undefined;
  endTime?: Date | undefined;
}

export interface RequestLogQuery extends RequestLogFilter {
  /** Exact `permission_used`. */
  permission?: string | undefined;
  /** SQL `LIKE` pattern on the full path, bound as a parameter. */
  pathPattern?: string | undefined;
  statusCode?: number | undefined;
  limit: number;
  offset: number;
}

export interface RequestLogStats {
  total_requests: number;
  unique_users: number;
  avg_response_time_ms: number;
  /** Share of requests answered with a status of 400 or more, 0 when there are none. */
  error_rate: number;
  top_paths: { path: string; count: number }[];
  top_permissions: { permission: string; count: number }[];
}

const TOP_ENTRIES = 10;

/** Property name to column name (`requestId` -> `request_id`). */
const COLUMN_NAMES = new Map(
  Object.entries(getTableColumns(requestLogs)).map(([key, column]) => [key, column.name]),
);

/** SQL defaults of the columns a row may leave out (`jsonb_populate_recordset` yields NULL for them). */
const COLUMN_DEFAULTS: Record<string, SQL> = {
  request_id: sql`gen_random_uuid()`,
  timestamp: sql`now()`,
  has_permission: sql`true`,
  response_size_bytes: sql`0`,
};

/**
 * One prepared statement for any number of rows: they travel as one jsonb array, keyed by column name.
 * Building a many-row INSERT with drizzle cost more CPU than any other statement of a webhook call.
 */
const insertLogsStatement = preparedOnce((db) => {
  const values = Object.values(getTableColumns(requestLogs)).map((column) => {
    const value = sql`row.${sql.identifier(column.name)}`;
    const fallback = COLUMN_DEFAULTS[column.name];
    return fallback ? sql`coalesce(${value}, ${fallback})` : value;
  });
  return db
    .insert(requestLogs)
    .select(
      sql`select ${sql.join(values, sql`, `)} from jsonb_populate_recordset(null::${requestLogs}, ${sql.placeholder("rows")}::jsonb) as row`,
    )
    .prepare("insert_request_logs");
});

/** Writes log rows in one statement. The caller runs it after the response and swallows its failure. */
export async function insertRequestLogs(db: Database, rows: NewRequestLog[]): Promise<void> {
  if (rows.length === 0) return;
  const byName = rows.map((row) => {
    const named: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(row)) {
      // jsonb refuses NUL (a path of `/%00` decodes to one) and lone surrogates, and one such row would lose the
      // whole batch. The body is cleaned already (request-log.ts).
      named[COLUMN_NAMES.get(key) ?? key] = key === "requestBody" ? value : jsonbSafe(value);
    }
    return named;
  });
  await insertLogsStatement(db).execute({ rows: JSON.stringify(byName) });
}

/**
 * The user whose logs the caller may read: anyone's (or everyone's) with `sinas.logs.get:all`, otherwise
 * only their own, whatever they asked for; asking for someone else's is a 403 with `deniedMessage`.
 */
export function scopeUserFilter(
  caller: RequestLogCaller,
  requestedUserId: string | undefined,
  deniedMessage: string,
): string | undefined {
  const { principal } = caller;
  const allLogs = permissions.logs("all");
  if (can(principal, allLogs)) {
    caller.recordPermission(allLogs, true);
    return requestedUserId;
  }
  if (requestedUserId !== undefined && requestedUserId !== principal.user.id) {
    caller.recordPermission(allLogs, false);
    throw new AppError("FORBIDDEN", deniedMessage);
  }
  // Own rows need `sinas.logs.get:own` (every user holds it through the Users group; `{}` keys do not).
  const ownLogs = permissions.logs("own");
  const mayReadOwn = can(principal, ownLogs);
  caller.recordPermission(ownLogs, mayReadOwn);
  if (!mayReadOwn) throw new AppError("FORBIDDEN", `Not authorized to view request logs (needs ${ownLogs})`);
  return principal.user.id;
}

function filterConditions(filter: RequestLogFilter): SQL[] {
  const conditions: SQL[] = [];
  if (filter.userId !== undefined) conditions.push(eq(requestLogs.userId, filter.userId));
  if (filter.startTime !== undefined) conditions.push(gte(requestLogs.timestamp, filter.startTime));
  if (filter.endTime !== undefined) conditions.push(lte(requestLogs.timestamp, filter.endTime));
  return conditions;
}

function queryConditions(query: RequestLogQuery): SQL[] {
  const conditions = filterConditions(query);
  if (query.permission !== undefined) conditions.push(eq(requestLogs.permissionUsed, query.permission));
  if (query.pathPattern !== undefined) conditions.push(like(requestLogs.path, query.pathPattern));
  if (query.statusCode !== undefined) conditions.push(eq(requestLogs.statusCode, query.statusCode));
  return conditions;
}

/** Matching rows, newest first. */
export async function listRequestLogs(db: Database, query: RequestLogQuery): Promise<RequestLog[]> {
  return db
    .select()
    .from(requestLogs)
    .where(and(...queryConditions(query)))
    .orderBy(desc(requestLogs.timestamp), desc(requestLogs.requestId))
    .limit(query.limit)
    .offset(query.offset);
}

/** Totals, error rate and the ten most frequent paths and permissions over the filtered rows. */
export async function requestLogStats(db: Database, filter: RequestLogFilter): Promise<RequestLogStats> {
  const where = and(...filterConditions(filter));
  const rowCount = sql<number>`count(*)::int`.mapWith(Number);
  const [totalsRows, topPaths, topPermissions] = await Promise.all([
    db
      .select({
        total: rowCount,
        uniqueUsers: sql<number>`count(distinct ${requestLogs.userId})::int`.mapWith(Number),
        avgResponseTimeMs: sql<number>`coalesce(avg(${requestLogs.responseTimeMs}), 0)::float8`.mapWith(
          Number,
        ),
        errors: sql<number>`count(*) filter (where ${requestLogs.statusCode} >= 400)::int`.mapWith(Number),
      })
      .from(requestLogs)
      .where(where),
    db
      .select({ path: requestLogs.path, count: rowCount })
      .from(requestLogs)
      .where(where)
      .groupBy(requestLogs.path)
      .orderBy(desc(rowCount), requestLogs.path)
      .limit(TOP_ENTRIES),
    db
      .select({ permission: requestLogs.permissionUsed, count: rowCount })
      .from(requestLogs)
      .where(and(where, isNotNull(requestLogs.permissionUsed), ne(requestLogs.permissionUsed, "")))
      .groupBy(requestLogs.permissionUsed)
      .orderBy(desc(rowCount), requestLogs.permissionUsed)
      .limit(TOP_ENTRIES),
  ]);
  const totals = totalsRows[0] ?? { total: 0, uniqueUsers: 0, avgResponseTimeMs: 0, errors: 0 };
  return {
    total_requests: totals.total,
    unique_users: totals.uniqueUsers,
    avg_response_time_ms: Math.round(totals.avgResponseTimeMs * 100) / 100,
    error_rate: totals.total > 0 ? totals.errors / totals.total : 0,
    top_paths: topPaths,
    top_permissions: topPermissions.flatMap(({ permission, count }) =>
      permission ? [{ permission, count }] : [],
    ),
  };
}

/** Rows the purge deletes per statement, and statements per tick: up to 50,000 rows a minute. */
const PURGE_BATCH_SIZE = 5_000;
const PURGE_MAX_BATCHES = 10;

/**
 * Deletes request-log rows older than `retentionDays` (none when 0) in bounded batches; returns how many went.
 * Run by the cron tick: every request adds a row, so without it the table only grows.
 */
export async function purgeOldRequestLogs(db: Database, retentionDays: number): Promise<number> {
  if (retentionDays <= 0) return 0;
  let purged = 0;
  for (let batch = 0; batch < PURGE_MAX_BATCHES; batch++) {
    const result = await db.execute<{ purged: number }>(sql`
      with gone as (
        delete from ${requestLogs} where ${requestLogs.requestId} in (
          select ${requestLogs.requestId} from ${requestLogs}
          where ${requestLogs.timestamp} < now() - make_interval(secs => ${retentionDays * 86_400})
          limit ${PURGE_BATCH_SIZE})
        returning 1)
      select count(*)::int as purged from gone`);
    const deleted = Number(result.rows[0]?.purged ?? 0);
    purged += deleted;
    if (deleted < PURGE_BATCH_SIZE) break;
  }
  return purged;
}
