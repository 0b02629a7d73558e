import { spawn } from "node:child_process";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { openNodeDb } from "../../scripts/lib/migrate";
import { findPort } from "../../scripts/lib/ports";
import { ROOT_DIR } from "../../scripts/lib/stack";
import { waitForPort } from "../../scripts/lib/wait";
import { parseProxyTarget, startWsProxy, type WsProxy } from "../../scripts/ws-proxy";
import { isUniqueViolation } from "../../workers/db/errors";

const PGLITE_SERVER = join(ROOT_DIR, "node_modules/@electric-sql/pglite-socket/dist/scripts/server.js");

describe("parseProxyTarget", () => {
  it.each([
    ["/v2?address=127.0.0.1:5432", { host: "127.0.0.1", port: 5432 }],
    ["/v2?address=localhost:6000", { host: "localhost", port: 6000 }],
    ["/v2?address=[::1]:5432", { host: "::1", port: 5432 }],
    ["/v2?address=10.0.0.5:5432", null],
    ["/v2?address=db.example.com:5432", null],
    ["/v2?address=127.0.0.1:99999", null],
    ["/v2", null],
  ])("%s -> %j", (url, expected) => {
    expect(parseProxyTarget(url)).toEqual(expected);
  });
});

// pglite-server with only two connection slots: a proxy that leaks a slot per closed client fails by the third.
describe("proxy in front of pglite-server", () => {
  let proxy: WsProxy;
  let pglitePort: number;
  let server: ReturnType<typeof spawn>;

  beforeAll(async () => {
    pglitePort = await findPort(0);
    server = spawn(
      process.execPath,
      [PGLITE_SERVER, "--db", "memory://", "--port", String(pglitePort), "-m", "2"],
      { stdio: "ignore" },
    );
    await waitForPort(pglitePort, { timeoutMs: 30_000 });
    proxy = await startWsProxy({ port: 0 });
  });
  afterAll(async () => {
    await proxy?.close();
    server?.kill();
  });

  it("frees the server's connection slot when a client ends", async () => {
    const databaseUrl = `postgresql://postgres:postgres@127.0.0.1:${pglitePort}/postgres?sslmode=disable`;
    for (let round = 0; round < 8; round++) {
      const handle = openNodeDb({ databaseUrl, wsProxy: proxy.address }, 1);
      const result = await handle.db.execute(sql`select ${round}::int as round`);
      expect(result.rows).toEqual([{ round }]);
      await handle.close();
      // The server releases the slot on its next tick after the socket closes.
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });

  it("serializes concurrent conversations so pglite-server never mixes their messages", async () => {
    // A server with room for every client: what is tested is the interleaving, not the slot limit.
    const widePort = await findPort(0);
    const wideServer = spawn(
      process.execPath,
      [PGLITE_SERVER, "--db", "memory://", "--port", String(widePort), "-m", "64"],
      {
        stdio: "ignore",
      },
    );
    await waitForPort(widePort, { timeoutMs: 30_000 });
    const serialized = await startWsProxy({ port: 0, serializeConnections: true });
    const databaseUrl = `postgresql://postgres:postgres@127.0.0.1:${widePort}/postgres?sslmode=disable`;
    try {
      const clients = Array.from({ length: 12 }, (_, client) => async () => {
        // One connection each (-m 2 on the server, so connect lazily and close when done).
        const handle = openNodeDb({ databaseUrl, wsProxy: serialized.address }, 1);
        try {
          for (let query = 0; query < 5; query++) {
            const result = await handle.db.execute(
              sql`select ${client}::int as client, ${query}::int as query`,
            );
            expect(result.rows).toEqual([{ client, query }]);
          }
          await handle.db
            .transaction(async (tx) => {
              await tx.execute(sql`select ${client}::int`);
              tx.rollback();
            })
            .catch(() => undefined);
        } finally {
          await handle.close();
        }
      });
      await Promise.all(clients.map((run) => run()));
    } finally {
      await serialized.close();
      wideServer.kill();
    }
  });

  it("refuses targets that are not on loopback", async () => {
    const socket = new WebSocket(`ws://${proxy.address}/v2?address=192.0.2.1:5432`);
    const code = await new Promise<number>((resolve) =>
      socket.on("close", (closeCode) => resolve(closeCode)),
    );
    expect(code).toBe(1008);
  });
});

// Neon's HTTP query endpoint (scripts/lib/sql-over-http.ts), driven by the real driver with
// `poolQueryViaFetch`, as the Worker uses it, in front of pglite-server (turns on) as `npm start` runs it.
describe("POST /sql (Neon's HTTP query protocol)", () => {
  let proxy: WsProxy;
  let server: ReturnType<typeof spawn>;
  let databaseUrl: string;

  beforeAll(async () => {
    const port = await findPort(0);
    server = spawn(
      process.execPath,
      [PGLITE_SERVER, "--db", "memory://", "--port", String(port), "-m", "16"],
      {
        stdio: "ignore",
      },
    );
    await waitForPort(port, { timeoutMs: 30_000 });
    proxy = await startWsProxy({ port: 0, serializeConnections: true });
    databaseUrl = `postgresql://postgres:postgres@127.0.0.1:${port}/postgres?sslmode=disable`;
  });
  afterAll(async () => {
    await proxy?.close();
    server?.kill();
  });

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`http://${proxy.address}/sql?address=127.0.0.1:${new URL(databaseUrl).port}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "neon-connection-string": databaseUrl.replace(/:\d+\//, "/"),
        "neon-raw-text-output": "true",
        "neon-array-mode": "true",
        ...headers,
      },
      body: JSON.stringify(body),
    });

  it("answers with fields and rows as text, as Neon's endpoint does", async () => {
    const response = await post({
      query: "select $1::int as n, null::text as nothing, 't'::bool as yes",
      params: ["7"],
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      command: string;
      rowCount: number;
      fields: { name: string; dataTypeID: number }[];
      rows: unknown[][];
    };
    expect(body.command).toBe("SELECT");
    expect(body.rowCount).toBe(1);
    expect(body.fields.map((field) => [field.name, field.dataTypeID])).toEqual([
      ["n", 23],
      ["nothing", 25],
      ["yes", 16],
    ]);
    expect(body.rows).toEqual([["7", null, "t"]]);
  });

  it("reports a query error as 400 with Postgres' fields, and refuses bad requests", async () => {
    const failed = await post({ query: "select * from no_such_table", params: [] });
    expect(failed.status).toBe(400);
    expect(await failed.json()).toMatchObject({
      code: "42P01",
      message: expect.stringContaining("no_such_table"),
    });
    const headless = await post({ query: "select 1" }, { "neon-connection-string": "" });
    expect(headless.status).toBe(400);
    const noQuery = await post({ params: [] });
    expect(await noQuery.json()).toEqual({ message: "query is required" });
  });

  it("keeps answering a repeated (prepared) statement after query errors on PGlite's shared session", async () => {
    const repeated = { query: "select $1::int * 2 as doubled", params: ["21"] };
    for (let round = 0; round < 3; round++) {
      const answer = await post(repeated);
      expect(answer.status, await answer.clone().text()).toBe(200);
      expect(((await answer.json()) as { rows: unknown[][] }).rows).toEqual([["42"]]);
      // A failed query must not cost the connection: a new one would prepare the same name again.
      expect((await post({ query: "select 1/0", params: [] })).status).toBe(400);
    }
  });

  it("serves drizzle through the driver: typed rows, constraint errors, and transactions over WebSocket", async () => {
    const handle = openNodeDb({ databaseUrl, wsProxy: proxy.address, httpQueries: true }, 2);
    try {
      await handle.db.execute(
        sql`create table http_items (id int primary key, tags text[], doc jsonb, at timestamptz)`,
      );
      await handle.db.execute(
        sql`insert into http_items values (1, ${"{a,b}"}::text[], ${JSON.stringify({ k: [1, 2] })}::jsonb, '2026-01-02T03:04:05Z')`,
      );
      const rows = await handle.db.execute(sql`select id, tags, doc, at from http_items`);
      expect(rows.rows).toEqual([
        { id: 1, tags: ["a", "b"], doc: { k: [1, 2] }, at: "2026-01-02 03:04:05+00" },
      ]);
      const duplicate = await handle.db
        .execute(sql`insert into http_items (id) values (1)`)
        .catch((error) => error);
      expect(isUniqueViolation(duplicate)).toBe(true);
      await handle.db
        .transaction(async (tx) => {
          await tx.execute(sql`insert into http_items (id) values (2)`);
          tx.rollback();
        })
        .catch(() => undefined);
      await handle.db.transaction(async (tx) => {
        await tx.execute(sql`insert into http_items (id) values (3)`);
      });
      const ids = await handle.db.execute(sql`select id from http_items order by id`);
      expect(ids.rows).toEqual([{ id: 1 }, { id: 3 }]);
    } finally {
      await handle.close();
    }
  });
});
