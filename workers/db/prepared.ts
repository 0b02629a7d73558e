/**
 * @module Hot statements built once. Turning a drizzle query into SQL text costs more CPU than sending it
 * (~0.3 ms for the webhook lookup, measured in Node); a prepared statement keeps the text and its parameter
 * positions, and each call only fills in the placeholders (`sql.placeholder`).
 *
 * A statement belongs to the handle it was prepared on, so it is built once per handle: per isolate on
 * `Services.statementDb()` (an HTTP query holds no connection, so one handle serves every request), per
 * object for a Durable Object's long-lived handle.
 */
import type { Database } from "./client";

export function preparedOnce<T>(build: (db: Database) => T): (db: Database) => T {
  const built = new WeakMap<Database, T>();
  return (db) => {
    let statement = built.get(db);
    if (statement === undefined) {
      statement = build(db);
      built.set(db, statement);
    }
    return statement;
  };
}
