/**
 * @module WebSocket-to-TCP proxy for the local stack.
 *
 * The Neon serverless driver speaks the Postgres wire protocol over a WebSocket, because Workers cannot
 * open raw TCP to arbitrary hosts in every deployment. Neon runs such a proxy in production; locally this
 * one forwards each WebSocket to the Postgres (or pglite-server) named in `?address=host:port`.
 * It also answers Neon's HTTP query endpoint, `POST /sql?address=host:port` (lib/sql-over-http.ts).
 * Only loopback targets are allowed: this is a development tool, never an open relay.
 */
import { createServer, type Server } from "node:http";
import { connect } from "node:net";
import { type WebSocket, WebSocketServer } from "ws";
import { expectedReadies, MessageFramer, TurnQueue } from "./lib/pg-turns";
import { createSqlOverHttp } from "./lib/sql-over-http";

export interface WsProxyOptions {
  port: number;
  host?: string;
  /** Give the backend to one connection at a time (pglite-server; see scripts/lib/pg-turns.ts). */
  serializeConnections?: boolean;
}

export interface WsProxy {
  port: number;
  /** Value for the Worker's DB_WS_PROXY: `host:port` without scheme. */
  address: string;
  close(): Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/** The Postgres Terminate message ('X', length 4). The driver sends it alone in one frame on `end()`. */
const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);

/** Parses `?address=host:port`; null when missing or not a loopback target. */
export function parseProxyTarget(requestUrl: string): { host: string; port: number } | null {
  const address = new URL(requestUrl, "http://proxy").searchParams.get("address");
  if (!address) return null;
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon);
  const port = Number(address.slice(colon + 1));
  if (!LOOPBACK.has(host) || !Number.isInteger(port) || port <= 0 || port > 65535) return null;
  return { host: host.replace(/^\[|\]$/g, ""), port };
}

function pipeSocket(ws: WebSocket, target: { host: string; port: number }, turns: TurnQueue | null): void {
  const tcp = connect(target.port, target.host);
  tcp.setNoDelay(true);
  const clientFrames = new MessageFramer(true);
  const serverFrames = new MessageFramer(false);
  let pendingReadies = 0;
  /** After an SSLRequest the server answers one unframed byte ('N' or 'S'). */
  let unframedServerBytes = 0;
  let inTransaction = false;
  let release: (() => void) | null = null;
  let sending: Promise<void> = Promise.resolve();
  const handBack = () => {
    if (release && pendingReadies === 0 && !inTransaction) {
      release();
      release = null;
    }
  };

  tcp.on("data", (data) => {
    if (turns) {
      const skip = Math.min(unframedServerBytes, data.length);
      unframedServerBytes -= skip;
      for (const type of serverFrames.push(data.subarray(skip))) {
        if (!type.startsWith("Z")) continue;
        pendingReadies = Math.max(0, pendingReadies - 1);
        inTransaction = type !== "ZI";
      }
    }
    if (ws.readyState === ws.OPEN) ws.send(data);
    if (turns) handBack();
  });
  tcp.on("close", () => ws.close());
  tcp.on("error", () => ws.close(1011, "upstream error"));
  const forward = (data: Buffer) => {
    // net.Socket buffers writes made before it has connected.
    tcp.write(data);
    // Postgres closes the connection after Terminate, and the driver waits for that. pglite-server does
    // not, so without this every closed client would hold one of its connection slots forever.
    if (data.equals(TERMINATE)) tcp.end();
  };
  ws.on("message", (data: Buffer) => {
    if (!turns) return forward(data);
    // Messages of one connection keep their order: each waits for the previous one's turn.
    sending = sending.then(async () => {
      if (!release) release = await turns.acquire();
      const types = clientFrames.push(data);
      unframedServerBytes += types.filter((type) => type === "ssl").length;
      pendingReadies += expectedReadies(types);
      forward(data);
      handBack();
    });
  });
  const closeAll = () => {
    tcp.destroy();
    void sending.then(() => {
      release?.();
      release = null;
    });
  };
  ws.on("close", closeAll);
  ws.on("error", closeAll);
}

export async function startWsProxy(options: WsProxyOptions): Promise<WsProxy> {
  const host = options.host ?? "127.0.0.1";
  const turns = options.serializeConnections ? new TurnQueue() : null;
  const sqlOverHttp = createSqlOverHttp(turns);
  const server: Server = createServer((req, res) => {
    if (req.method === "POST" && new URL(req.url ?? "/", "http://proxy").pathname === "/sql") {
      const target = parseProxyTarget(req.url ?? "/");
      if (!target) {
        res.writeHead(400, { "content-type": "application/json" });
        res.end(JSON.stringify({ message: "address must be a loopback host:port" }));
        return;
      }
      return sqlOverHttp.handle(req, res, target);
    }
    res.writeHead(426, { "content-type": "text/plain" }).end("WebSocket upgrade required\n");
  });
  // workerd keeps HTTP connections to /sql open between requests and reuses them; Node closing an idle one
  // (after 5 s by default) races with that reuse and fails the query with "Network connection lost".
  server.keepAliveTimeout = 10 * 60_000;
  server.headersTimeout = server.keepAliveTimeout + 1000;
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on("connection", (ws, req) => {
    const target = parseProxyTarget(req.url ?? "/");
    if (!target) {
      ws.close(1008, "address must be a loopback host:port");
      return;
    }
    pipeSocket(ws, target, turns);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, host, () => resolve());
  });
  const addressInfo = server.address();
  const port = typeof addressInfo === "object" && addressInfo ? addressInfo.port : options.port;
  return {
    port,
    address: `${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close();
        // The /sql pools end too, so a stopped proxy leaves no Postgres connection behind.
        server.close(() => void sqlOverHttp.close().then(resolve));
        server.closeAllConnections();
      }),
  };
}
