import { createHash, randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { Ratelimit } from "@upstash/ratelimit";
import { Redis } from "@upstash/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisBridge, startRedisBridge } from "../../scripts/redis-bridge";
import type { AppError } from "../../workers/lib/errors";
import { claimIdempotencyKey } from "../../workers/lib/idempotency";
import { enforceRateLimit, secondsUntilAdmitted } from "../../workers/lib/rate-limit";

// One suite for both backends: in memory always, against a real redis-server when TEST_REDIS_URL is set.
const TOKEN = "test-token";
const backends: Array<{ mode: "memory" | "redis"; redisUrl?: string }> = [{ mode: "memory" }];
if (process.env.TEST_REDIS_URL) backends.push({ mode: "redis", redisUrl: process.env.TEST_REDIS_URL });

async function postJson(url: string, body: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
    body,
  });
  return { status: response.status, body: (await response.json()) as unknown };
}

describe.each(backends)("redis bridge ($mode)", ({ mode, redisUrl }) => {
  let bridge: RedisBridge;
  let redis: Redis;
  const prefix = `test:${randomUUID()}:`;
  const key = (name: string) => `${prefix}${name}`;

  beforeAll(async () => {
    bridge = await startRedisBridge({ port: 0, token: TOKEN, redisUrl });
    redis = new Redis({ url: bridge.url, token: TOKEN, retry: false });
  });

  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await bridge.close();
  });

  it("reports its mode on /health without auth", async () => {
    expect(bridge.mode).toBe(mode);
    const response = await fetch(`${bridge.url}/health`);
    expect(await response.json()).toEqual({ status: "ok", mode });
  });

  it("sets with EX, gets and reports the TTL", async () => {
    expect(await redis.set(key("ttl"), "value", { ex: 10 })).toBe("OK");
    expect(await redis.get(key("ttl"))).toBe("value");
    const ttl = await redis.ttl(key("ttl"));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(10);
    expect(await redis.get(key("missing"))).toBeNull();
  });

  it("claims an idempotency key once; a claim whose SET landed unanswered is still its own", async () => {
    const claim = (executionId: string, fingerprint?: string) =>
      claimIdempotencyKey(redis as never, key(`idempotency:${mode}`), executionId, {
        ttlSeconds: 10,
        fingerprint,
      });
    expect(await claim("first")).toEqual({ kind: "claimed" });
    expect(await claim("second")).toEqual({ kind: "repeat", executionId: "first" });
    // The client's retry of a SET whose answer was lost is refused, and the key names this very request.
    expect(await claim("first")).toEqual({ kind: "claimed" });

    const print = (executionId: string, fingerprint: string) =>
      claimIdempotencyKey(redis as never, key(`fingerprinted:${mode}`), executionId, { fingerprint });
    expect(await print("one", "aaa")).toEqual({ kind: "claimed" });
    expect(await print("two", "aaa")).toEqual({ kind: "repeat", executionId: "one" });
    expect(await print("three", "bbb")).toEqual({ kind: "mismatch" });
    expect(await print("one", "aaa")).toEqual({ kind: "claimed" });
    // A key stored without a fingerprint (before there were any) is a repeat for any request.
    const legacy = key(`legacy:${mode}`);
    expect(await claimIdempotencyKey(redis as never, legacy, "old")).toEqual({ kind: "claimed" });
    expect(await claimIdempotencyKey(redis as never, legacy, "new", { fingerprint: "ccc" })).toEqual({
      kind: "repeat",
      executionId: "old",
    });
  });

  it("increments counters", async () => {
    expect(await redis.incr(key("counter"))).toBe(1);
    expect(await redis.incrby(key("counter"), 41)).toBe(42);
  });

  it("runs hash commands", async () => {
    expect(await redis.hset(key("hash"), { name: "ada", role: "admin" })).toBe(2);
    expect(await redis.hget(key("hash"), "name")).toBe("ada");
    expect(await redis.hincrby(key("hash"), "logins", 3)).toBe(3);
    // The client JSON-parses each field, so the numeric string "3" comes back as a number.
    expect(await redis.hgetall(key("hash"))).toEqual({ name: "ada", role: "admin", logins: 3 });
    expect(await redis.hdel(key("hash"), "role")).toBe(1);
    expect(await redis.hlen(key("hash"))).toBe(2);
  });

  it("round-trips JSON objects the client serializes", async () => {
    const value = { id: "a1", tags: ["x", "y"], nested: { count: 2, ok: true, none: null } };
    await redis.set(key("json"), value);
    expect(await redis.get(key("json"))).toEqual(value);
  });

  it("keeps unicode, control characters and base64-looking strings intact", async () => {
    const values = ["héllo wörld ✓ 🚀 日本語", "tab\there\nnewline \u0000 nul", "T0s=", "OK", "   "];
    for (const [index, value] of values.entries()) {
      await redis.set(key(`text:${index}`), value);
      expect(await redis.get(key(`text:${index}`))).toBe(value);
    }
  });

  it("runs a pipeline whose commands fail independently", async () => {
    await redis.set(key("word"), "abc");
    const pipeline = redis.pipeline();
    pipeline.set(key("p1"), "one");
    pipeline.incr(key("word"));
    pipeline.get(key("p1"));
    const results = await pipeline.exec({ keepErrors: true });
    expect(results[0]).toEqual({ result: "OK", error: undefined });
    expect(results[1]?.error).toMatch(/not an integer/);
    expect(results[2]).toEqual({ result: "one", error: undefined });
  });

  it("runs a MULTI/EXEC transaction", async () => {
    const transaction = redis.multi();
    transaction.set(key("tx"), 1);
    transaction.incr(key("tx"));
    transaction.get(key("tx"));
    expect(await transaction.exec()).toEqual(["OK", 2, 2]);
  });

  it("surfaces a Redis error reply as a thrown error", async () => {
    await redis.set(key("not-a-number"), "abc");
    await expect(redis.incr(key("not-a-number"))).rejects.toThrow(/not an integer/);
  });

  it("rejects a wrong token with 401", async () => {
    const intruder = new Redis({ url: bridge.url, token: "wrong", retry: false });
    await expect(intruder.get(key("ttl"))).rejects.toThrow(/Unauthorized/);
    const response = await fetch(bridge.url, { method: "POST", body: '["PING"]' });
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: "Unauthorized" });
  });

  it("answers 400 for bad JSON and unknown commands", async () => {
    expect(await postJson(bridge.url, "{not json")).toEqual({
      status: 400,
      body: { error: expect.stringMatching(/JSON/) },
    });
    expect((await postJson(bridge.url, '["NOSUCHCOMMAND"]')).status).toBe(400);
  });

  it("base64-encodes strings only when asked to", async () => {
    await redis.set(key("plain"), "é");
    const command = JSON.stringify(["MGET", key("plain"), key("missing")]);
    expect((await postJson(bridge.url, command)).body).toEqual({ result: ["é", null] });
    const encoded = await postJson(bridge.url, command, { "upstash-encoding": "base64" });
    expect(encoded.body).toEqual({ result: [Buffer.from("é").toString("base64"), null] });
  });

  it("evaluates Lua with EVAL, EVALSHA and a cached script", async () => {
    const source = "return {KEYS[1], ARGV[1], 7}";
    expect(await redis.eval(source, [key("lua")], ["arg"])).toEqual([key("lua"), "arg", 7]);
    const sha1 = createHash("sha1").update(source).digest("hex");
    expect(await redis.evalsha(sha1, [key("lua")], ["again"])).toEqual([key("lua"), "again", 7]);
    const script = redis.createScript<number>("return redis.call('INCR', KEYS[1])");
    expect(await script.exec([key("lua-counter")], [])).toBe(1);
    expect(await script.exec([key("lua-counter")], [])).toBe(2);
  });

  it("runs @upstash/ratelimit, whose scripts start with a `#!lua flags=` line", async () => {
    const limiter = new Ratelimit({
      redis,
      prefix: key("ratelimit"),
      limiter: Ratelimit.slidingWindow(2, "60 s"),
      ephemeralCache: false,
    });
    const results = [];
    for (let attempt = 0; attempt < 3; attempt++) results.push((await limiter.limit("alice")).success);
    expect(results).toEqual([true, true, false]);
    expect((await limiter.limit("bob")).success).toBe(true);
  });

  it("carries the API's sliding-window rate limit: the limit per window, refusals not counted, the previous window weighted", async () => {
    const name = `test-${randomUUID()}`;
    const setting = { limit: 3, windowSeconds: 60 };
    const start = Math.ceil(Date.now() / 60_000) * 60_000 + 10_000; // 10 s into a window
    const call = (at: number) =>
      enforceRateLimit(
        redis as unknown as Parameters<typeof enforceRateLimit>[0],
        name,
        setting,
        "alice",
        at,
      ).then(
        () => "ok",
        (error: AppError) => `${error.code} ${error.headers?.["Retry-After"]}`,
      );
    const calls = async (at: number, count: number) => {
      const answers = [];
      for (let index = 0; index < count; index++) answers.push(await call(at));
      return answers;
    };
    // Retry-After says when a call passes: 20 s into the next window, where ceil(3 * 2/3) + 1 = 3.
    expect(await calls(start, 5)).toEqual(["ok", "ok", "ok", "RATE_LIMITED 70", "RATE_LIMITED 70"]);
    // 10 s into the next window 5/6 of the previous one still counts: ceil(3 * 5/6) = 3, so no call yet.
    expect(await calls(start + 60_000, 1)).toEqual(["RATE_LIMITED 10"]);
    // Just past the window's turn the previous window counts whole: no fourth call a moment after the third.
    expect(await calls(start + 50_001, 1)).toEqual(["RATE_LIMITED 20"]);
    // 50 s in, a sixth of it still counts (ceil(3 * 1/6) = 1): two calls.
    expect(await calls(start + 100_000, 3)).toEqual(["ok", "ok", "RATE_LIMITED 10"]);
    // 20 s into the window after, those two calls weigh ceil(2 * 2/3) = 2: one call; 30 s in, 1: another.
    expect(await calls(start + 130_000, 2)).toEqual(["ok", "RATE_LIMITED 10"]);
    expect(await calls(start + 140_000, 2)).toEqual(["ok", "RATE_LIMITED 30"]);
    expect(await call(start)).toBe("RATE_LIMITED 70"); // another identifier is counted apart:
    await expect(
      enforceRateLimit(
        redis as unknown as Parameters<typeof enforceRateLimit>[0],
        name,
        setting,
        "bob",
        start,
      ),
    ).resolves.toBeUndefined();
    const keys = await redis.keys(`sinas:ratelimit:${name}:*`);
    if (keys.length > 0) await redis.del(...keys);
  });

  it("answers a refusal with a Retry-After after which a call passes, and not a second earlier", () => {
    const admittedAfter = (
      setting: { limit: number; windowSeconds: number },
      secondsIn: number,
      counted: number,
      previous: number,
    ) => {
      const windowMs = setting.windowSeconds * 1000;
      const now = 100 * windowMs + secondsIn * 1000;
      return secondsUntilAdmitted(setting, now, counted, previous);
    };
    // 2 a minute, both used 30 s in: the next window weighs them 2 until 30 s in, then 1.
    expect(admittedAfter({ limit: 2, windowSeconds: 60 }, 30, 2, 0)).toBe(60);
    // 1 a minute: the next window counts the call whole until its end.
    expect(admittedAfter({ limit: 1, windowSeconds: 60 }, 10, 1, 0)).toBe(110);
    // Nothing counted here yet, the previous window full: its weight must fall to limit - 1.
    expect(admittedAfter({ limit: 5, windowSeconds: 60 }, 6, 0, 5)).toBe(6);
    // 1 000 an hour, 999 last hour (weighing ceil(999 * 5/6) = 833 at 600 s in) and 168 now: at 605.4 s
    // the weight is 831, and 831 + 168 + 1 fits.
    expect(admittedAfter({ limit: 1000, windowSeconds: 3600 }, 600, 168, 999)).toBe(6);
  });

  it("frees its port when closed", async () => {
    const extra = await startRedisBridge({ port: 0, token: TOKEN, redisUrl });
    const client = new Redis({ url: extra.url, token: TOKEN, retry: false });
    await client.ping(); // leaves a keep-alive connection open, which close() must not wait for
    await extra.close();
    const probe = createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.listen(extra.port, "127.0.0.1", resolve);
    });
    await new Promise((resolve) => probe.close(resolve));
  });
});

describe("redis bridge with an unreachable Redis", () => {
  it("answers 500 with the error instead of hanging", async () => {
    const bridge = await startRedisBridge({ port: 0, token: TOKEN, redisUrl: "redis://127.0.0.1:1" });
    try {
      const { status, body } = await postJson(bridge.url, '["GET","k"]');
      expect(status).toBe(500);
      expect(body).toEqual({ error: expect.any(String) });
    } finally {
      await bridge.close();
    }
  });
});
