/**
 * @module The one database client: `@neondatabase/serverless` + `drizzle-orm/neon-serverless`, used the
 * same way by the Worker, the Durable Objects and Node (launcher, migrations, tests).
 *
 * Locally the driver's WebSocket goes through our proxy (scripts/ws-proxy.ts) to PGlite or a plain
 * Postgres, so TLS and pipelining are off there; in production Neon's own endpoint is used as is.
 */
import { type CustomTypesConfig, neon, neonConfig, Pool } from "@neondatabase/serverless";
import { drizzle, type NeonDatabase } from "drizzle-orm/neon-serverless";

/**
 * No relational schema is passed to drizzle (nothing uses `db.query`): with one, every `drizzle()` call walks
 * all tables to build the relational config, and a Worker makes one per request.
 */
export type Database = NeonDatabase;
/** A transaction handle; it has the query API of `Database`. */
export type DbTransaction = Parameters<Parameters<Database["transaction"]>[0]>[0];
/** Services that may run inside a caller's transaction take this. */
export type DbOrTx = Database | DbTransaction;

export interface DbOptions {
  databaseUrl: string;
  /** `host:port` of a local WebSocket-to-TCP proxy; unset in production (Neon). */
  wsProxy?: string | undefined;
  /** Node 20 has no global WebSocket: pass `ws`. Workers and Node 22 need nothing. */
  webSocketConstructor?: unknown;
  /** Pool size; keep it below pglite-server's `-m`. */
  maxConnections?: number;
  /**
   * Send queries outside transactions over HTTP (`POST /sql`: Neon's endpoint, or `wsProxy`'s locally)
   * instead of over a pooled WebSocket connection; transactions still connect. Process-wide once set.
   */
  httpQueries?: boolean;
}

export interface DbHandle {
  db: Database;
  pool: Pool;
  close(): Promise<void>;
}

function configureDriver(options: DbOptions): void {
  if (options.webSocketConstructor) {
    neonConfig.webSocketConstructor = options.webSocketConstructor as typeof neonConfig.webSocketConstructor;
  }
  neonConfig.poolQueryViaFetch = options.httpQueries ?? false;
  if (options.wsProxy) {
    const proxy = options.wsProxy;
    // The driver drops the port from the URL it sends over HTTP, so the address comes from ours.
    const { hostname, port } = new URL(options.databaseUrl);
    neonConfig.fetchEndpoint = `http://${proxy}/sql?address=${hostname}:${port || 5432}`;
    neonConfig.wsProxy = (host, port) => `${proxy}/v2?address=${host}:${port}`;
    neonConfig.useSecureWebSocket = false;
    neonConfig.pipelineTLS = false;
    neonConfig.pipelineConnect = false;
  }
}

/** What drizzle passes to `Pool.query`: a config (text, row mode, type parsers) and the values. */
interface DrizzleQueryConfig {
  text: string;
  values?: unknown[];
  rowMode?: string;
  types?: CustomTypesConfig;
}

/**
 * `pool.query` over HTTP with one query function for the pool: the driver's own (with `poolQueryViaFetch`)
 * parses the connection string and builds a new query function for every query, a visible share of a
 * short request's CPU. The result is the same object (`fullResults`); other call forms go to the driver.
 */
function queryOverHttp(pool: Pool, databaseUrl: string): Pool["query"] {
  const http = neon(databaseUrl, { fullResults: true });
  const driverQuery = pool.query.bind(pool);
  const query = (config: string | DrizzleQueryConfig, values?: unknown, callback?: unknown) => {
    if (typeof config === "string" || callback !== undefined || typeof values === "function") {
      return (driverQuery as (...args: unknown[]) => unknown)(config, values, callback);
    }
    return http.query(config.text, (values as unknown[] | undefined) ?? config.values ?? [], {
      arrayMode: config.rowMode === "array",
      fullResults: true,
      types: config.types ?? pool.options.types,
    });
  };
  return query as Pool["query"];
}

/** Opens a pool. In a Worker, open one per request and close it in `waitUntil`: I/O cannot cross requests. */
export function createDb(options: DbOptions): DbHandle {
  configureDriver(options);
  // Idle connections close after 2 s: Worker requests and Durable Objects are many, and Postgres
  // connections few (max_connections, or Neon's pooler limits).
  const pool = new Pool({
    connectionString: options.databaseUrl,
    max: options.maxConnections ?? 5,
    idleTimeoutMillis: 2_000,
  });
  // An idle client's socket error must not crash the isolate; the next query reports it instead.
  pool.on("error", () => {});
  if (options.httpQueries) pool.query = queryOverHttp(pool, options.databaseUrl);
  const db = drizzle({ client: pool });
  return { db, pool, close: () => pool.end() };
}

const httpDbs = new Map<string, Database>();

/**
 * One handle per isolate (and database) for queries sent over HTTP only: it never opens a connection, so
 * it is no request's I/O and every request may use it. Never run a transaction on it.
 */
export function sharedHttpDb(options: Pick<DbOptions, "databaseUrl" | "wsProxy">): Database {
  const key = `${options.databaseUrl}\n${options.wsProxy ?? ""}`;
  let db = httpDbs.get(key);
  if (!db) {
    db = createDb({ ...options, httpQueries: true }).db;
    httpDbs.set(key, db);
  }
  return db;
}
