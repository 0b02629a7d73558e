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
