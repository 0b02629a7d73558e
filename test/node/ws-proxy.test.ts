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
      [
        join(ROOT_DIR, "node_modules/@electric-sql/pglite-socket/dist/scripts/server.js"),
        "--db",
        "memory://",
        "--port",
        String(pglitePort),
        "-m",
        "2",
      ],
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

  it("refuses targets that are not on loopback", async () => {
    const socket = new WebSocket(`ws://${proxy.address}/v2?address=192.0.2.1:5432`);
    const code = await new Promise<number>((resolve) =>
      socket.on("close", (closeCode) => resolve(closeCode)),
    );
    expect(code).toBe(1008);
  });
});
