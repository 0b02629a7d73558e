import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSigner } from "../../executor-node/src/auth";
import { CallbackPoster } from "../../executor-node/src/callbacks";
import { ConfigError, loadConfig } from "../../executor-node/src/config";
import { Pool } from "../../executor-node/src/pool";
import {
  createMemoryReplayCache,
  createRedisReplayCache,
  type ReplayCache,
} from "../../executor-node/src/replay-cache";
import { createProcessDriver } from "../../executor-node/src/sandbox/process";
import { selectDriver } from "../../executor-node/src/sandbox/select-driver";
import { SandboxDiedError } from "../../executor-node/src/sandbox-session";
import { checkSyntax } from "../../executor-node/src/syntax-check";
import { API_AUDIENCE, CALLBACK_ISSUER, type CallbackBody } from "../../workers/lib/executor-protocol";
import { verifySignedRequest } from "../../workers/lib/signed-request";

// The executor's pieces that need no sandbox of their own: configuration, the entry point, callback
// delivery, sandbox start-up failures and the syntax check.

async function keyPair(): Promise<{ privateJwk: string; publicJwk: string }> {
  const pair = await generateKeyPair("EdDSA", { extractable: true });
  return {
    privateJwk: JSON.stringify(await exportJWK(pair.privateKey)),
    publicJwk: JSON.stringify(await exportJWK(pair.publicKey)),
  };
}

let jobKeys: { privateJwk: string; publicJwk: string };
let callbackKeys: { privateJwk: string; publicJwk: string };

beforeAll(async () => {
  jobKeys = await keyPair();
  callbackKeys = await keyPair();
});

describe("executor configuration", () => {
  it("applies the defaults", () => {
    const config = loadConfig({
      EXECUTOR_JOB_PUBLIC_KEY: jobKeys.publicJwk,
      EXECUTOR_CALLBACK_PRIVATE_KEY: callbackKeys.privateJwk,
    });
    expect(config).toMatchObject({
      port: 8788,
      host: "127.0.0.1",
      driver: "auto",
      production: false,
      sandbox: { network: "none", memoryMb: 512, cpus: 1, pids: 64, tmpfsMb: 64, fileSizeMb: 16 },
      pool: { warmPerUser: 1, maxPerUser: 4, idleSeconds: 600, sharedSize: 0 },
      redisUrl: undefined,
      publicUrl: undefined,
      pythonBin: "/usr/bin/python3",
      runtimeImage: "localhost/sinas-runtime:latest",
    });
  });

  it("fails fast naming every bad variable", () => {
    let message = "";
    try {
      loadConfig({
        EXECUTOR_JOB_PUBLIC_KEY: jobKeys.privateJwk, // a private key where the public one belongs
        SANDBOX_DRIVER: "chroot",
        SHARED_POOL_SIZE: "11",
        EXECUTOR_PORT: "http",
        EXECUTOR_PUBLIC_URL: "10.0.0.5:8788",
      });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      message = (error as Error).message;
    }
    for (const name of [
      "EXECUTOR_JOB_PUBLIC_KEY",
      "EXECUTOR_CALLBACK_PRIVATE_KEY",
      "SANDBOX_DRIVER",
      "SHARED_POOL_SIZE",
      "EXECUTOR_PORT",
      "EXECUTOR_PUBLIC_URL must be an http:// or https:// URL",
    ]) {
      expect(message).toContain(name);
    }
  });

  it("refuses the process driver in production", async () => {
    const config = loadConfig({
      EXECUTOR_JOB_PUBLIC_KEY: jobKeys.publicJwk,
      EXECUTOR_CALLBACK_PRIVATE_KEY: callbackKeys.privateJwk,
      SANDBOX_DRIVER: "process",
      NODE_ENV: "production",
    });
    await expect(selectDriver(config, () => undefined)).rejects.toThrow(/refused when NODE_ENV=production/);
  });
});

describe("executor entry point", () => {
  const runServer = (env: Record<string, string>, untilLine: RegExp) =>
    new Promise<{ output: string; code: number | null }>((resolve) => {
      const child = spawn(process.execPath, ["--import", "tsx", "executor-node/src/server.ts"], {
        env: { PATH: process.env.PATH ?? "", ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      let signalled = false;
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (!signalled && untilLine.test(output)) {
          signalled = true;
          child.kill("SIGTERM");
        }
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", onData);
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      child.on("exit", (code) => {
        clearTimeout(timer);
        resolve({ output, code });
      });
    });

  it("prints the listening line with its driver and shuts down on SIGTERM", async () => {
    const { output, code } = await runServer(
      {
        EXECUTOR_PORT: "0",
        SANDBOX_DRIVER: "process",
        EXECUTOR_JOB_PUBLIC_KEY: jobKeys.publicJwk,
        EXECUTOR_CALLBACK_PRIVATE_KEY: callbackKeys.privateJwk,
      },
      /executor listening on http:\/\/127\.0\.0\.1:\d+ \(driver: process\)/,
    );
    expect(output).toMatch(/executor listening on http:\/\/127\.0\.0\.1:\d+ \(driver: process\)/);
    expect({ code, output }).toMatchObject({ code: 0 });
  });

  it("exits with a message naming the missing keys", async () => {
    const { output, code } = await runServer({ EXECUTOR_PORT: "0" }, /$^/);
    expect(code).toBe(1);
    expect(output).toContain("EXECUTOR_JOB_PUBLIC_KEY");
    expect(output).toContain("EXECUTOR_CALLBACK_PRIVATE_KEY");
  });
});

describe("callback poster", () => {
  let server: Server;
  let base = "";
  const received: Array<{ body: CallbackBody; verified: boolean }> = [];
  let plan: number[] = [];

  const readBody = (request: IncomingMessage) =>
    new Promise<string>((resolve) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    });

  beforeAll(async () => {
    server = createServer(async (request, response) => {
      const text = await readBody(request);
      const verified = await verifySignedRequest(
        callbackKeys.publicJwk,
        (request.headers.authorization ?? "").replace(/^Bearer /, ""),
        {
          issuer: CALLBACK_ISSUER,
          audience: API_AUDIENCE,
          method: "POST",
          path: request.url ?? "",
          body: text,
        },
      ).then(
        () => true,
        () => false,
      );
      received.push({ body: JSON.parse(text) as CallbackBody, verified });
      response.writeHead(plan.shift() ?? 200).end("{}");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const poster = async (onConflict = () => undefined) =>
    new CallbackPoster({
      url: `${base}/internal/executions/00000000-0000-4000-8000-000000000001/events`,
      executionId: "00000000-0000-4000-8000-000000000001",
      signer: await createSigner({
        jobPublicKey: jobKeys.publicJwk,
        callbackPrivateKey: callbackKeys.privateJwk,
        replayCache: createMemoryReplayCache(),
      }),
      onConflict,
      log: () => undefined,
      retryForMs: 5000,
    });

  it("batches events, sends a result at once, numbers posts and retries failures with the same seq", async () => {
    received.length = 0;
    plan = [200, 503, 502, 200];
    const sender = await poster();
    const at = new Date().toISOString();
    sender.push({ type: "started", at, sandbox: "s1" });
    sender.push({ type: "log", stream: "stdout", text: "one", at });
    sender.push({ type: "log", stream: "stdout", text: "two", at });
    await new Promise((resolve) => setTimeout(resolve, 150));
    sender.push({ type: "result", status: "completed", result: 1, duration_ms: 1 });
    await sender.drain();
    expect(received.every((post) => post.verified)).toBe(true);
    expect(received.map((post) => [post.body.seq, post.body.events.map((event) => event.type)])).toEqual([
      [1, ["started", "log", "log"]],
      [2, ["result"]],
      [2, ["result"]],
      [2, ["result"]],
    ]);
  });

  it("stops for good on 409", async () => {
    received.length = 0;
    plan = [409];
    let conflicts = 0;
    const sender = await poster(() => {
      conflicts++;
    });
    sender.push({ type: "result", status: "completed", result: 1, duration_ms: 1 });
    await sender.drain();
    sender.push({ type: "log", stream: "stdout", text: "late", at: new Date().toISOString() });
    await sender.drain();
    expect(conflicts).toBe(1);
    expect(sender.stopped).toBe(true);
    expect(received.length).toBe(1);
  });
});

const replayBackends: Array<{ mode: string; make: () => ReplayCache }> = [
  { mode: "memory", make: () => createMemoryReplayCache() },
];
const redisUrl = process.env.TEST_REDIS_URL;
if (redisUrl) replayBackends.push({ mode: "redis", make: () => createRedisReplayCache(redisUrl) });

describe.each(replayBackends)("jti replay cache ($mode)", ({ make }) => {
  it("accepts a jti once within its lifetime, then again after it expired", async () => {
    const cache = make();
    try {
      const jti = `test-${Math.random()}`;
      expect(await cache.claim(jti, 1)).toBe(true);
      expect(await cache.claim(jti, 1)).toBe(false);
      expect(await cache.claim(`${jti}-other`, 1)).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      expect(await cache.claim(jti, 1)).toBe(true);
    } finally {
      await cache.close();
    }
  });
});

describe("sandbox start-up failures", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "sinas-fake-runtime-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const poolWith = (script: string) => {
    writeFileSync(join(dir, "sinas_runtime.py"), script);
    return new Pool({
      driver: createProcessDriver({ pythonBin: "/usr/bin/python3", runtimeDir: dir }),
      limits: { memoryMb: 256, cpus: 1, pids: 32, tmpfsMb: 8, fileSizeMb: 8, network: "none" },
      warmPerUser: 0,
      maxPerUser: 1,
      idleSeconds: 60,
      sharedSize: 0,
      readyTimeoutMs: 700,
      log: () => undefined,
    });
  };

  it("reports a runtime that exits before connecting", async () => {
    const pool = poolWith("import sys\nsys.exit(3)\n");
    try {
      const failure = await pool.acquire({ userId: "u", shared: false }).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(SandboxDiedError);
      expect((failure as SandboxDiedError).exit.reason).toContain("exited with code 3");
      expect(pool.stats().sandboxes).toBe(0);
    } finally {
      await pool.close();
    }
  });

  it("kills a runtime that never announces itself within the ready timeout", async () => {
    const pool = poolWith("import time\ntime.sleep(30)\n");
    try {
      const started = Date.now();
      const failure = await pool.acquire({ userId: "u", shared: false }).catch((error: unknown) => error);
      expect((failure as Error).message).toContain("did not connect within 700 ms");
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      await pool.close();
    }
  });
});

describe("syntax check", () => {
  it("parses without executing", async () => {
    const marker = join(tmpdir(), `sinas-syntax-${process.pid}`);
    const result = await checkSyntax("/usr/bin/python3", `open(${JSON.stringify(marker)}, "w")\n`);
    expect(result).toEqual({ ok: true });
    expect(() => rmSync(marker)).toThrow(); // never created: nothing ran
  });

  it("names the line of a syntax error and refuses null bytes and deep nesting", async () => {
    expect(await checkSyntax("/usr/bin/python3", "x = 1\nif x\n    pass\n")).toEqual({
      ok: false,
      error: "line 2: expected ':'",
    });
    expect((await checkSyntax("/usr/bin/python3", "x = 1\0")).ok).toBe(false);
    expect((await checkSyntax("/usr/bin/python3", `${"(".repeat(5000)}1${")".repeat(5000)}`)).ok).toBe(false);
  });
});
