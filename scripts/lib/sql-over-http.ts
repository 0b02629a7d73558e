/**
 * @module `POST /sql`: Neon's HTTP query endpoint, for the local stack.
 *
 * In production the Worker's one-shot queries go to Neon's `/sql` endpoint over `fetch` (the driver's
 * `poolQueryViaFetch`): no WebSocket, no Postgres connection start-up per request. Locally the WebSocket
 * proxy answers the same protocol on a small pool of real connections to the local Postgres or
 * pglite-server. Transactions still take a WebSocket connection (the driver's `Pool.connect()`).
 *
 * The protocol, as the driver speaks it: body `{query, params}` (params already serialized to text),
 * headers `Neon-Connection-String` (user, password and database; the server comes from `?address=`, as for
 * WebSockets), `Neon-Raw-Text-Output: true` and `Neon-Array-Mode: true`. The answer is
 * `{command, rowCount, fields: [{name, dataTypeID, ...}], rows: [[text | null, ...]]}`, values as Postgres
 * prints them (the driver parses them with the caller's type parsers); a query error is 400 with the
 * error's fields (`message`, `code`, `constraint`, ...).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import pg from "pg";
import type { TurnQueue } from "./pg-turns";

/** Connections per database the endpoint keeps open; pglite-server takes one query at a time anyway. */
const POOL_SIZE = 8;
const POOL_SIZE_SERIALIZED = 1;
/** The driver's own bound on a request body is larger, but a query beyond this is a bug here. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;
const ERROR_FIELDS = [
  "severity",
  "code",
  "detail",
  "hint",
  "position",
  "internalPosition",
  "internalQuery",
  "where",
  "schema",
  "table",
  "column",
  "dataType",
  "constraint",
  "file",
  "line",
  "routine",
] as const;

/** Every value as text: the driver applies the caller's parsers, exactly as over a WebSocket. */
const RAW_TEXT = { getTypeParser: () => (value: string) => value };

export interface SqlOverHttp {
  handle(request: IncomingMessage, response: ServerResponse, target: { host: string; port: number }): void;
  close(): Promise<void>;
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error("request body too large");
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

/** Names of the statements prepared on every connection, by their text (see `statementNameOf`). */
const statementNames = new Map<string, string>();
const MAX_PREPARED_STATEMENTS = 1000;

/**
 * A name to prepare `query` under, so that a connection parses and plans a repeated statement once (on
 * PGlite, parsing is a large part of a small query's cost); null once the cap is reached, as texts with a
 * varying number of rows or list items are endless.
 */
function statementNameOf(query: string): string | null {
  let name = statementNames.get(query);
  if (name === undefined && statementNames.size < MAX_PREPARED_STATEMENTS) {
    name = `sinas_${statementNames.size}`;
    statementNames.set(query, name);
  }
  return name ?? null;
}

/** `turns`: pglite-server takes one conversation at a time (pg-turns.ts); each query waits for its turn. */
export function createSqlOverHttp(turns: TurnQueue | null): SqlOverHttp {
  const pools = new Map<string, pg.Pool>();
  /** Connections whose session was cleared of prepared statements (see `run`). */
  const cleared = new WeakSet<pg.PoolClient>();

  const poolFor = (target: { host: string; port: number }, connectionString: string): pg.Pool => {
    const url = new URL(connectionString);
    const key = `${target.host}:${target.port}/${url.username}/${url.pathname}/${url.password}`;
    let pool = pools.get(key);
    if (!pool) {
      pool = new pg.Pool({
        host: target.host,
        port: target.port,
        user: decodeURIComponent(url.username),
        password: decodeURIComponent(url.password),
        database: decodeURIComponent(url.pathname.slice(1)),
        max: turns ? POOL_SIZE_SERIALIZED : POOL_SIZE,
        idleTimeoutMillis: 30_000,
      });
      pool.on("error", () => {});
      pools.set(key, pool);
    }
    return pool;
  };

  const run = async (pool: pg.Pool, query: string, params: unknown[]) => {
    const release = turns ? await turns.acquire() : null;
    let broken: Error | undefined;
    const client = await pool.connect().catch((error: Error) => {
      release?.();
      throw error;
    });
    try {
      if (!cleared.has(client)) {
        // PGlite has one session for all connections: what a closed connection of ours prepared is still
        // there, under the names this one would prepare again ("already exists"). A real server has nothing.
        await client.query("deallocate all");
        cleared.add(client);
      }
      const name = statementNameOf(query);
      return await client.query({
        ...(name ? { name } : {}),
        text: query,
        values: params,
        rowMode: "array",
        types: RAW_TEXT,
      });
    } catch (error) {
      // An error the server reported (it has a SQLSTATE) leaves the connection usable; any other drops it.
      if (!(error as { code?: unknown }).code) broken = error as Error;
      throw error;
    } finally {
      client.release(broken);
      release?.();
    }
  };

  return {
    handle(request, response, target) {
      void (async () => {
        const connectionString = request.headers["neon-connection-string"];
        if (typeof connectionString !== "string") {
          return send(response, 400, { message: "Neon-Connection-String header is required" });
        }
        let body: { query?: unknown; params?: unknown };
        try {
          body = (await readJson(request)) as typeof body;
        } catch (error) {
          return send(response, 400, { message: `bad request body: ${String(error)}` });
        }
        if (typeof body.query !== "string") return send(response, 400, { message: "query is required" });
        const params = Array.isArray(body.params) ? body.params : [];
        try {
          const result = await run(poolFor(target, connectionString), body.query, params);
          send(response, 200, {
            command: result.command,
            rowCount: result.rowCount,
            fields: result.fields,
            rows: result.rows,
            rowAsArray: true,
          });
        } catch (error) {
          const fields: Record<string, unknown> = {
            message: error instanceof Error ? error.message : String(error),
          };
          for (const name of ERROR_FIELDS) {
            const value = (error as Record<string, unknown>)[name];
            if (value !== undefined) fields[name] = value;
          }
          send(response, 400, fields);
        }
      })();
    },
    async close() {
      await Promise.all([...pools.values()].map((pool) => pool.end().catch(() => undefined)));
      pools.clear();
    },
  };
}
