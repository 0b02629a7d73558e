/**
 * @module Migration runner and database helpers for Node (launcher, tests), on the same Neon driver the
 * Worker uses, through the local WebSocket proxy.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { sql } from "drizzle-orm";
import { migrate } from "drizzle-orm/neon-serverless/migrator";
import ws from "ws";
import { createDb, type DbHandle } from "../../workers/db/client";

export const MIGRATIONS_FOLDER = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "migrations");

export interface NodeDbTarget {
  databaseUrl: string;
  /** Local WebSocket proxy `host:port`; unset for Neon. */
  wsProxy?: string | undefined;
  /** Queries outside transactions over the proxy's HTTP endpoint, as the Worker sends them. */
  httpQueries?: boolean;
}

export function openNodeDb(target: NodeDbTarget, maxConnections = 2): DbHandle {
  return createDb({ ...target, webSocketConstructor: ws, maxConnections });
}

/** Applies every pending migration in migrations/ (drizzle-kit's journal decides what is pending). */
export async function runMigrations(target: NodeDbTarget): Promise<void> {
  const handle = openNodeDb(target, 1);
  try {
    await migrate(handle.db, { migrationsFolder: MIGRATIONS_FOLDER });
  } finally {
    await handle.close();
  }
}

function quoteIdentifier(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid database name: ${name}`);
  return `"${name}"`;
}

/** The URL of database `name` on the same server as `url`. */
export function withDatabaseName(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

export async function createDatabase(target: NodeDbTarget, name: string): Promise<string> {
  const handle = openNodeDb(target, 1);
  try {
    await handle.db.execute(sql.raw(`create database ${quoteIdentifier(name)}`));
  } finally {
    await handle.close();
  }
  return withDatabaseName(target.databaseUrl, name);
}

export async function dropDatabase(target: NodeDbTarget, name: string): Promise<void> {
  const handle = openNodeDb(target, 1);
  try {
    await handle.db.execute(sql.raw(`drop database if exists ${quoteIdentifier(name)} with (force)`));
  } finally {
    await handle.close();
  }
}
