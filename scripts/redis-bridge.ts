/**
 * @module
 * A local stand-in for Upstash's REST API, so `@upstash/redis` runs offline in dev and tests.
 * Commands go to a real redis-server through ioredis, or to ioredis-mock in memory when no URL is given.
 * Memory mode is for quick dev runs only: no SCRIPT LOAD (EVAL/EVALSHA work), no arity checks, no pub/sub.
 *
 * @example
 * ```sh
 * tsx scripts/redis-bridge.ts --port 8079 --token dev [--redis-url redis://127.0.0.1:6379]
 * ```
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { Redis as IORedis } from "ioredis";
import RedisMock from "ioredis-mock";

export interface RedisBridgeOptions {
  /** Port to listen on; 0 picks a free one (read it back from `RedisBridge.port`). */
  port: number;
  host?: string;
  /** The bearer token clients must send (`UPSTASH_REDIS_REST_TOKEN`). */
  token: string;
  /** `redis://...`; when unset, data lives in memory (ioredis-mock). */
  redisUrl?: string;
}

export interface RedisBridge {
  url: string;
  port: number;
  mode: "redis" | "memory";
  close(): Promise<void>;
}

/** One command's outcome inside a pipeline or transaction, before encoding. */
type Outcome = { reply: unknown } | { error: Error };
type HttpReply = [status: number, body: unknown];

const settle = (pending: Promise<unknown>): Promise<Outcome> =>
  pending.then(
    (reply) => ({ reply }),
    (error: Error) => ({ error }),
  );

interface RedisBackend {
  mode: "redis" | "memory";
  run(command: string[]): Promise<unknown>;
  /** Runs the commands atomically; rejects when the whole transaction is refused (EXECABORT). */
  transaction(commands: string[][]): Promise<Outcome[]>;
  close(): void;
}

/** A Redis error reply or a malformed request: the caller's fault, so a 400, unlike connection failures (500). */
class RedisReplyError extends Error {
  override name = "ReplyError";
}

// Commands that change the state of the one shared connection would break every other request.
const CONNECTION_STATE_COMMANDS = wordSet(`multi exec discard watch unwatch select quit reset hello monitor
  subscribe psubscribe ssubscribe unsubscribe punsubscribe sunsubscribe`);
// ioredis-mock only recognises upper-case option keywords, and the client sends them lower-case. Only
// arguments from the command's first option position are touched, so keys and SET values stay as sent.
const OPTION_KEYWORDS = wordSet(`EX PX EXAT PXAT NX XX GT LT GET KEEPTTL CH INCR
  MATCH COUNT TYPE WITHSCORES LIMIT BYSCORE BYLEX REV`);
// Position of the first argument that may be an option keyword, for each command the client sends options with.
const FIRST_OPTION_INDEX: Partial<Record<string, number>> = {
  set: 2,
  getex: 1,
  expire: 2,
  pexpire: 2,
  zadd: 1,
  zrange: 3,
  scan: 1,
  hscan: 2,
  sscan: 2,
  zscan: 2,
};
const KNOWN_COMMANDS = new Set(new IORedis({ lazyConnect: true }).getBuiltinCommands());
const MAX_BODY_BYTES = 10 * 1024 * 1024;

function wordSet(words: string): Set<string> {
  return new Set(words.trim().split(/\s+/));
}

function assertAllowed(name: string): void {
  if (CONNECTION_STATE_COMMANDS.has(name.toLowerCase())) {
    throw new RedisReplyError(`ERR command '${name}' is not supported over REST`);
  }
}

function isReplyError(error: unknown): boolean {
  return error instanceof Error && error.name === "ReplyError";
}

function connectRedis(redisUrl: string): RedisBackend {
  // Bounded retries and timeouts turn an unreachable Redis into a prompt 500 instead of a queued, hanging request.
  const client = new IORedis(redisUrl, {
    maxRetriesPerRequest: 1,
    connectTimeout: 3000,
    commandTimeout: 5000,
  });
  client.on("error", () => {}); // failures reach the caller per request; this only silences ioredis' logging
  return {
    mode: "redis",
    run: async ([name = "", ...args]) => {
      assertAllowed(name);
      return client.callBuffer(name, ...args);
    },
    transaction: async (commands) => {
      for (const [name = ""] of commands) assertAllowed(name);
      const multi = client.multi();
      for (const [name = "", ...args] of commands) multi.callBuffer(name, ...args);
      const results = (await multi.exec()) ?? [];
      return results.map(([error, reply]) => (error ? { error } : { reply }));
    },
    close: () => client.disconnect(),
  };
}

let memoryStoreCount = 0;

function createMemoryStore(): RedisBackend {
  // ioredis-mock shares data between instances with the same host:port; a unique port keeps each bridge's own.
  const mock = new RedisMock({ port: 1_000_000 + memoryStoreCount++ });
  const methods = mock as unknown as Record<string, unknown>;
  // ioredis-mock awaits between commands, so one queue keeps transactions atomic against concurrent requests.
  let queueTail: Promise<unknown> = Promise.resolve();
  const exclusively = <T>(work: () => Promise<T>): Promise<T> => {
    const result = queueTail.then(work);
    queueTail = result.catch(() => undefined);
    return result;
  };
  const methodFor = (name: string): ((...args: string[]) => unknown) => {
    assertAllowed(name);
    const lower = name.toLowerCase();
    // The mock has methods that are not Redis commands (`on`, `emit`...); only real command names may run.
    if (!KNOWN_COMMANDS.has(lower)) throw new RedisReplyError(`ERR unknown command '${name}'`);
    const method = methods[`${lower}Buffer`] ?? methods[lower];
    if (typeof method !== "function") throw new RedisReplyError(`ERR '${name}' is not supported in memory`);
    const optionsFrom = FIRST_OPTION_INDEX[lower] ?? Number.POSITIVE_INFINITY;
    const normalize = (arg: string, index: number) =>
      index >= optionsFrom && OPTION_KEYWORDS.has(arg.toUpperCase()) ? arg.toUpperCase() : arg;
    return (...args) => Reflect.apply(method, mock, args.map(normalize));
  };
  const call = async ([name = "", ...args]: string[]): Promise<unknown> => {
    try {
      const reply = await methodFor(name)(...args);
      // ioredis-mock answers NaN where Redis refuses to increment a non-integer value.
      if (Number.isNaN(reply)) throw new RedisReplyError("ERR value is not an integer or out of range");
      return reply;
    } catch (error) {
      throw isReplyError(error)
        ? error
        : new RedisReplyError(error instanceof Error ? error.message : String(error));
    }
  };
  return {
    mode: "memory",
    run: (command) => exclusively(() => call(command)),
    transaction: (commands) =>
      exclusively(async () => {
        for (const [name = ""] of commands) methodFor(name);
        const outcomes: Outcome[] = [];
        for (const command of commands) {
          outcomes.push(await settle(call(command)));
        }
        return outcomes;
      }),
    close: () => mock.disconnect(),
  };
}

/**
 * Upstash accepts Redis 7 script shebangs with flags that Redis 7.0 (`allow-key-locking`) and ioredis-mock's
 * Lua VM (any shebang) reject; @upstash/ratelimit's scripts carry one. Scripts are stripped of that first
 * line, and an EVALSHA of the original script's SHA1 runs the stripped script by EVAL (Redis caches it).
 */
function withScriptTranslation(backend: RedisBackend): RedisBackend {
  const scriptsBySha = new Map<string, string>();
  const translate = (command: string[]): string[] => {
    const [name = "", first = "", ...rest] = command;
    const lower = name.toLowerCase();
    if (lower === "eval" && first.startsWith("#!")) {
      const stripped = first.slice(first.indexOf("\n") + 1);
      scriptsBySha.set(createHash("sha1").update(first).digest("hex"), stripped);
      return [name, stripped, ...rest];
    }
    const stored = lower === "evalsha" ? scriptsBySha.get(first.toLowerCase()) : undefined;
    return stored === undefined ? command : ["EVAL", stored, ...rest];
  };
  return {
    ...backend,
    run: (command) => backend.run(translate(command)),
    transaction: (commands) => backend.transaction(commands.map(translate)),
  };
}

/** Converts a raw reply to JSON, base64-encoding every string when the client asked for it. */
function encodeReply(reply: unknown, base64: boolean): unknown {
  if (Buffer.isBuffer(reply)) return reply.toString(base64 ? "base64" : "utf8");
  if (typeof reply === "string") return base64 ? Buffer.from(reply).toString("base64") : reply;
  if (Array.isArray(reply)) return reply.map((item) => encodeReply(item, base64));
  // ioredis-mock returns HGETALL as an object; Redis (and Upstash) answer a flat field/value array.
  if (reply !== null && typeof reply === "object") return encodeReply(Object.entries(reply).flat(), base64);
  return reply ?? null;
}

function parseCommand(value: unknown): string[] {
  const isScalar = (arg: unknown) => ["string", "number", "boolean"].includes(typeof arg);
  if (!Array.isArray(value) || value.length === 0 || typeof value[0] !== "string" || !value.every(isScalar)) {
    throw new RedisReplyError("ERR a command must be a non-empty JSON array of strings and numbers");
  }
  return value.map(String);
}

function parseCommandList(value: unknown): string[][] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new RedisReplyError("ERR the body must be a non-empty JSON array of commands");
  }
  return value.map(parseCommand);
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new RedisReplyError("ERR request body too large");
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new RedisReplyError("ERR request body is not valid JSON");
  }
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  // The client echoes this header back for read-your-writes; one Redis has nothing to sync, so any value works.
  response.writeHead(status, { "content-type": "application/json", "upstash-sync-token": "0" });
  response.end(JSON.stringify(body));
}

async function handle(backend: RedisBackend, token: string, request: IncomingMessage): Promise<HttpReply> {
  const url = new URL(request.url ?? "/", "http://bridge");
  if (request.method === "GET" && url.pathname === "/health")
    return [200, { status: "ok", mode: backend.mode }];
  if (request.headers.authorization !== `Bearer ${token}`) return [401, { error: "Unauthorized" }];
  const base64 = request.headers["upstash-encoding"] === "base64";
  const toItem = (outcome: Outcome) =>
    "error" in outcome ? { error: outcome.error.message } : { result: encodeReply(outcome.reply, base64) };
  if (request.method === "GET") {
    // Upstash's path form: GET /set/key/value.
    const command = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    return [200, { result: encodeReply(await backend.run(parseCommand(command)), base64) }];
  }
  if (request.method !== "POST") return [405, { error: "Method not allowed" }];
  const body = await readJson(request);
  if (url.pathname === "/")
    return [200, { result: encodeReply(await backend.run(parseCommand(body)), base64) }];
  if (url.pathname === "/pipeline") {
    const outcomes = await Promise.all(parseCommandList(body).map((command) => settle(backend.run(command))));
    const failure = outcomes.find((outcome) => "error" in outcome && !isReplyError(outcome.error));
    if (failure && "error" in failure) throw failure.error;
    return [200, outcomes.map(toItem)];
  }
  if (url.pathname === "/multi-exec")
    return [200, (await backend.transaction(parseCommandList(body))).map(toItem)];
  return [404, { error: "Not found" }];
}

/** Starts the bridge; resolves once it listens. */
export async function startRedisBridge(options: RedisBridgeOptions): Promise<RedisBridge> {
  const { port, host = "127.0.0.1", token, redisUrl } = options;
  const backend = withScriptTranslation(redisUrl ? connectRedis(redisUrl) : createMemoryStore());
  const server = createServer((request, response) => {
    handle(backend, token, request).then(
      ([status, body]) => sendJson(response, status, body),
      (error: unknown) => {
        const message = error instanceof Error ? error.message : String(error);
        const status = isReplyError(error) ? 400 : 500;
        sendJson(response, status, { error: message });
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  }).catch((error: unknown) => {
    backend.close();
    throw error;
  });
  const boundPort = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${boundPort}`,
    port: boundPort,
    mode: backend.mode,
    close: async () => {
      const closed = new Promise<void>((resolve, reject) =>
        server.close((error) => (error ? reject(error) : resolve())),
      );
      server.closeAllConnections(); // the client keeps connections alive; without this close() waits for them
      await closed;
      backend.close();
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: "8079" },
      host: { type: "string" },
      token: { type: "string" },
      "redis-url": { type: "string" },
    },
  });
  if (!values.token) throw new Error("--token is required");
  const bridge = await startRedisBridge({
    port: Number(values.port),
    host: values.host,
    token: values.token,
    redisUrl: values["redis-url"],
  });
  console.log(`Redis bridge (${bridge.mode}) listening on ${bridge.url}`);
  const stop = () => void bridge.close().then(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
