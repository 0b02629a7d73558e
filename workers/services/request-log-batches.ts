/**
 * @module Request-log rows written in batches (sinas-spec §10.5): a row waits in its isolate's buffer for up to
 * `BATCH_WINDOW_MS`, and the request whose row opened the batch writes every row gathered by then in one
 * INSERT. Under load one statement then carries many requests' rows instead of one each; a lone request's
 * row is written `BATCH_WINDOW_MS` after its response instead of at once.
 *
 * Only plain rows cross requests: the insert runs in the opening request's own context (its `waitUntil`,
 * its database pool), as a Worker's I/O must.
 */
import type { Database } from "../db/client";
import { isDataError } from "../db/errors";
import type { NewRequestLog } from "../db/schema";
import { insertRequestLogs } from "./request-logs";

/** How long the first row of a batch waits for others; also the delay before a lone row is visible. */
export const BATCH_WINDOW_MS = 100;
/** A batch this large is written at once by the request that filled it. */
export const MAX_BATCH_ROWS = 100;

/** The isolate's open batch; its first row's request writes it. */
let buffered: NewRequestLog[] = [];

function takeBatch(): NewRequestLog[] {
  const batch = buffered;
  buffered = [];
  return batch;
}

/**
 * Adds `row` to the isolate's batch. Resolves once the rows this request is responsible for are written
 * (at once when it had nothing to write); rejects with the insert's error. `db` is the request's own.
 */
export async function writeRequestLogBatched(db: () => Database, row: NewRequestLog): Promise<void> {
  buffered.push(row);
  if (buffered.length >= MAX_BATCH_ROWS) return insertBatch(db(), takeBatch());
  if (buffered.length > 1) return; // a batch is open: its first row's request writes this row too
  await new Promise((resolve) => setTimeout(resolve, BATCH_WINDOW_MS));
  // A full batch may have been written meanwhile by another request; what is buffered now is ours.
  await insertBatch(db(), takeBatch());
}

/**
 * One INSERT for the batch; when Postgres refuses its values, each row on its own, so that a row no cleaning
 * foresaw loses only itself, not the other requests' rows. Any other failure (connection, timeout) is not
 * multiplied into a statement per row while the database struggles. Rejects with the first row's error.
 */
async function insertBatch(db: Database, rows: NewRequestLog[]): Promise<void> {
  try {
    await insertRequestLogs(db, rows);
  } catch (error) {
    if (rows.length === 1 || !isDataError(error)) throw error;
    const results = await Promise.allSettled(rows.map((row) => insertRequestLogs(db, [row])));
    const failed = results.find((result) => result.status === "rejected");
    if (failed) throw failed.reason;
  }
}
