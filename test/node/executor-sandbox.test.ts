import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { createServer as createTcpServer, type Server as TcpServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  API_AUDIENCE,
  CALLBACK_ISSUER,
  CallbackBodySchema,
  EXECUTOR_AUDIENCE,
  JOB_ISSUER,
  type Job,
  JobReplySchema,
} from "../../workers/lib/executor-protocol";
import { bodyHash, signRequest, verifySignedRequest } from "../../workers/lib/signed-request";
import { type Harness, makeKeys, SECRET_ENV, SECRET_VALUE, startHarness } from "../helpers/executor-harness";

// The executor for real: signed HTTP jobs in, sandboxes running the Python runtime, signed callbacks out to
// a receiver that verifies them as the API does. Every driver that works here runs the same suite.

const bwrapWorks = spawnSync("bwrap", ["--version"]).status === 0;
if (!bwrapWorks)
  console.warn("executor tests: bwrap suite SKIPPED: `bwrap --version` failed (install bubblewrap)");

/** Host processes per uid among the per-sandbox uids of the bwrap driver (200000-249999). */
function sandboxProcessesByUid(): Map<number, number> {
  const counts = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${name}/status`, "utf8"))?.[1]);
      if (uid >= 200_000 && uid < 250_000) counts.set(uid, (counts.get(uid) ?? 0) + 1);
    } catch {
      // gone
    }
  }
  return counts;
}

const ADD = `def add(input, context):
    print("adding", input["a"], input["b"])
    return {"sum": input["a"] + input["b"], "user": context["user_id"], "execution": context["execution_id"]}
`;

describe.each([
  { driver: "process", enabled: true },
  { driver: "bwrap", enabled: bwrapWorks },
])("executor with the $driver driver", ({ driver, enabled }) => {
  let h: Harness;
  const isolated = driver === "bwrap";

  beforeAll(async () => {
    if (!enabled) return;
    h = await startHarness({ SANDBOX_DRIVER: driver, POOL_MAX_PER_USER: "4", SANDBOX_PIDS: "64" });
    expect(h.executor.driver).toBe(driver);
  });
  afterAll(async () => {
    if (enabled) await h.close();
  });

  it.skipIf(!enabled)(
    "runs a job: started, log, steps and the result arrive as signed callbacks",
    async () => {
      const job = h.job(ADD, { input: { a: 2, b: 3 } });
      const result = await h.run(job);
      expect(result).toMatchObject({
        status: "completed",
        result: { sum: 5, user: "user-a", execution: job.execution_id },
      });
      expect(typeof result.duration_ms).toBe("number");
      const events = h.receiver.events.get(job.execution_id) ?? [];
      expect(events[0]).toMatchObject({ type: "started" });
      const logs = events.filter((event) => event.type === "log").map((event) => event.text);
      expect(logs.join("")).toContain("adding 2 3");
      const steps = events.filter((event) => event.type === "step");
      expect(steps.map((event) => event.step.status)).toEqual(["RUNNING", "COMPLETED"]);
      expect(steps[1]).toMatchObject({
        step: { namespace: "default", name: "add", parent_id: null, output: { sum: 5 } },
      });
      expect(h.receiver.posts.get(job.execution_id)?.[0]).toBe(1); // seq starts at 1
      expect(h.receiver.rejected).toEqual([]);
    },
  );

  it.skipIf(!enabled)(
    "times out a sleeping function, kills its sandbox, and the next job succeeds",
    async () => {
      const sleeper = h.job("import time\ndef nap(input, context):\n    time.sleep(30)\n", {
        timeout: 1,
        userId: "sleepy",
      });
      const started = Date.now();
      const result = await h.run(sleeper);
      expect(result).toMatchObject({
        status: "failed",
        error_type: "timeout",
        error: "Function timed out after 1s",
      });
      expect(Date.now() - started).toBeLessThan(5000);
      const next = await h.run(h.job(ADD, { input: { a: 1, b: 1 }, userId: "sleepy" }));
      expect(next).toMatchObject({ status: "completed", result: { sum: 2 } });
    },
  );

  it.skipIf(!enabled)("contains a memory bomb: failed memory, executor alive, next job fine", async () => {
    const bomb = h.job(
      "def bomb(input, context):\n    hog = []\n    while True:\n        hog.append(bytearray(16 * 1024 * 1024))\n",
      { userId: "hungry", timeout: 20 },
    );
    const result = await h.run(bomb);
    expect(result.status).toBe("failed");
    expect(["memory", "killed"]).toContain(result.error_type);
    const health = await fetch(`${h.executor.url}/health`);
    expect(health.status).toBe(200);
    const next = await h.run(h.job(ADD, { input: { a: 4, b: 4 }, userId: "hungry" }));
    expect(next).toMatchObject({ status: "completed", result: { sum: 8 } });
  });

  it.skipIf(!enabled)("never passes the executor's environment to user code", async () => {
    const result = await h.run(h.job("import os\ndef env(input, context):\n    return dict(os.environ)\n"));
    expect(result.status).toBe("completed");
    const env = result.result as Record<string, string>;
    expect(env[SECRET_ENV]).toBeUndefined();
    expect(JSON.stringify(env)).not.toContain(SECRET_VALUE);
    expect(env.EXECUTOR_CALLBACK_PRIVATE_KEY).toBeUndefined();
    expect(env.SINAS_RUNTIME_SOCKET).toBeTruthy();
  });

  it.skipIf(!enabled)("pauses a generator and resumes it with a second job", async () => {
    const code = `def ask(input, context):
    answer = yield {"prompt": "Your name?", "schema": {"type": "object"}}
    return {"hello": answer["name"], "first": input["n"]}
`;
    const first = h.job(code, { input: { n: 1 } });
    const paused = await h.run(first);
    expect(paused).toMatchObject({
      status: "awaiting_input",
      prompt: "Your name?",
      schema: { type: "object" },
    });
    const resume = { ...first, kind: "resume" as const, input: { name: "Ada" } };
    h.receiver.newJob(first.execution_id);
    const answer = await h.send("POST", "/v1/jobs", resume);
    expect(answer.status).toBe(202);
    const done = await h.receiver.waitFor(first.execution_id, (events) =>
      events.some((event) => event.type === "result" && event.status === "completed"),
    );
    expect(done.filter((event) => event.type === "result").pop()).toMatchObject({
      status: "completed",
      result: { hello: "Ada", first: 1 },
    });
    const lost = h.job(code, { kind: "resume" });
    expect(await h.run(lost)).toMatchObject({
      status: "failed",
      error_type: "not_found",
      error: "The paused execution was lost (its sandbox restarted)",
    });
  });

  it.skipIf(!enabled)(
    "takes a resume while the paused job still waits for its last callback's answer",
    async () => {
      const code = `def ask(input, context):
    answer = yield {"prompt": "Go?"}
    return {"went": answer["go"]}
`;
      const first = h.job(code, { input: {} });
      h.receiver.slowReplies.set(first.execution_id, 3000);
      expect(await h.run(first)).toMatchObject({ status: "awaiting_input" });
      // The pause's post is kept but not yet answered: the paused job is still draining its callbacks.
      h.receiver.slowReplies.delete(first.execution_id);
      h.receiver.newJob(first.execution_id);
      const resume = { ...first, kind: "resume" as const, input: { go: true } };
      expect((await h.send("POST", "/v1/jobs", resume)).status).toBe(202);
      const done = await h.receiver.waitFor(first.execution_id, (events) =>
        events.some((event) => event.type === "result" && event.status === "completed"),
      );
      expect(done.filter((event) => event.type === "result").pop()).toMatchObject({ result: { went: true } });
    },
  );

  it.skipIf(!enabled)("cancels a running job", async () => {
    const job = h.job("import time\ndef slow(input, context):\n    time.sleep(30)\n", {
      userId: "canceller",
    });
    expect((await h.send("POST", "/v1/jobs", job)).status).toBe(202);
    await h.receiver.waitFor(job.execution_id, (events) => events.some((event) => event.type === "started"));
    const path = `/v1/jobs/${job.execution_id}/cancel`;
    expect(await h.send("POST", path, {})).toEqual({ status: 200, body: { cancelled: true } });
    expect(await h.receiver.result(job.execution_id)).toMatchObject({
      status: "failed",
      error_type: "cancelled",
    });
    const unknown = `/v1/jobs/${randomUUID()}/cancel`;
    expect(await h.send("POST", unknown, {})).toEqual({ status: 200, body: { cancelled: false } });
  });

  it.skipIf(!enabled)(
    "runs 50 concurrent jobs across two users with correct results and no cross-talk",
    async () => {
      const jobs = Array.from({ length: 50 }, (_, index) =>
        h.job(ADD, { input: { a: index, b: 1000 }, userId: index % 2 === 0 ? "user-even" : "user-odd" }),
      );
      const answers = await Promise.all(jobs.map((job) => h.send("POST", "/v1/jobs", job)));
      expect(answers.every((answer) => answer.status === 202)).toBe(true);
      const results = await Promise.all(jobs.map((job) => h.receiver.result(job.execution_id, 30_000)));
      results.forEach((result, index) => {
        const job = jobs[index] as Job;
        expect(result).toMatchObject({
          status: "completed",
          result: { sum: index + 1000, user: job.user.id, execution: job.execution_id },
        });
        const logs = (h.receiver.events.get(job.execution_id) ?? []).filter((event) => event.type === "log");
        expect(logs.map((event) => event.text).join("")).toContain(`adding ${index} 1000`);
      });
      const report = (await h.send("GET", "/v1/pools")).body as { user_pools: Array<{ user_id: string }> };
      expect(report.user_pools.filter((entry) => entry.user_id === "user-even").length).toBeLessThanOrEqual(
        4,
      );
    },
  );

  it.skipIf(!enabled || !isolated)(
    "isolation: no host files, no writes outside /tmp, no network",
    async () => {
      const outside = mkdtempSync(join(tmpdir(), "sinas-outside-"));
      chmodSync(outside, 0o755);
      const secretFile = join(outside, "secret.txt");
      writeFileSync(secretFile, "host secret", { mode: 0o644 });
      const listener: TcpServer = createTcpServer((socket) => {
        connections++;
        socket.destroy();
      });
      let connections = 0;
      await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
      const port = (listener.address() as AddressInfo).port;
      const code = `import os, socket
def probe(input, context):
    out = {}
    for path in input["read"]:
        try:
            with open(path) as handle:
                out["read:" + path] = handle.read()[:50]
        except OSError as exc:
            out["read:" + path] = "denied " + type(exc).__name__
    for path in input["write"]:
        try:
            with open(path, "w") as handle:
                handle.write("x")
            out["write:" + path] = "written"
        except OSError as exc:
            out["write:" + path] = "denied " + type(exc).__name__
    try:
        conn = socket.create_connection(("127.0.0.1", input["port"]), timeout=2)
        conn.close()
        out["net"] = "connected"
    except OSError as exc:
        out["net"] = "denied " + type(exc).__name__
    out["uid"] = os.getuid()
    out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    out["root"] = sorted(os.listdir("/"))
    return out
`;
      const cwdFile = join(process.cwd(), "package.json");
      try {
        const result = await h.run(
          h.job(code, {
            input: {
              read: [secretFile, cwdFile, "/etc/shadow", "/etc/passwd"],
              write: [
                "/tmp/ok.txt",
                "/usr/evil",
                "/run/sinas/evil",
                "/opt/sinas/runtime/evil",
                "/evil",
                `${outside}/evil`,
              ],
              port,
            },
          }),
        );
        expect(result.status).toBe("completed");
        const out = result.result as Record<string, unknown>;
        expect(out[`read:${secretFile}`]).toMatch(/^denied/);
        expect(out[`read:${cwdFile}`]).toMatch(/^denied/);
        expect(out["read:/etc/shadow"]).toMatch(/^denied/);
        expect(out["read:/etc/passwd"]).toMatch(/^denied/);
        expect(out["write:/tmp/ok.txt"]).toBe("written");
        for (const path of [
          "/usr/evil",
          "/run/sinas/evil",
          "/opt/sinas/runtime/evil",
          "/evil",
          `${outside}/evil`,
        ]) {
          expect(out[`write:${path}`], path).toMatch(/^denied/);
        }
        expect(out.net).toMatch(/^denied/);
        expect(connections).toBe(0);
        expect(out.uid).toBe(65534);
        expect((out.pids as number[]).length).toBeLessThan(10); // its own pid namespace
        expect(out.root).not.toContain("work");
        expect(out.root).not.toContain("root");
      } finally {
        listener.close();
        rmSync(outside, { recursive: true, force: true });
      }
    },
  );

  it.skipIf(!enabled || !isolated)(
    "contains a fork bomb within the pids limit; timeout kills it all",
    async () => {
      // Guarded: refuses to fork unless it sees the sandbox (uid 65534, its own /proc), and the bwrap driver
      // runs it as an unprivileged host uid with RLIMIT_NPROC=64 counted per user namespace.
      const code = `import os, time
def bomb(input, context):
    if os.getuid() != 65534 or len([p for p in os.listdir("/proc") if p.isdigit()]) > 10:
        raise RuntimeError("not sandboxed: refusing to fork")
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
`;
      const job = h.job(code, { userId: "forker", timeout: 3 });
      expect((await h.send("POST", "/v1/jobs", job)).status).toBe(202);
      await h.receiver.waitFor(job.execution_id, (events) =>
        events.some((event) => event.type === "started"),
      );
      await new Promise((resolve) => setTimeout(resolve, 1500));
      // The bomb's sandbox is the uid with the most processes: at most 64 inside its namespace, plus the
      // outer bwrap process in the host's.
      const [bombUid, during] = [...sandboxProcessesByUid()].sort((a, b) => b[1] - a[1])[0] ?? [0, 0];
      expect(during).toBeGreaterThan(30);
      expect(during).toBeLessThanOrEqual(64 + 1);
      const result = await h.receiver.result(job.execution_id);
      expect(result).toMatchObject({ status: "failed", error_type: "timeout" });
      await expect.poll(() => sandboxProcessesByUid().get(bombUid) ?? 0, { timeout: 3000 }).toBe(0);
      const next = await h.run(h.job(ADD, { input: { a: 5, b: 5 }, userId: "forker" }));
      expect(next).toMatchObject({ status: "completed", result: { sum: 10 } });
    },
  );
});

describe("executor: signed requests", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ SANDBOX_DRIVER: "process" });
  });
  afterAll(() => h.close());

  const post = async (path: string, text: string, token: string) => {
    const response = await fetch(`${h.executor.url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: text,
    });
    return { status: response.status, body: (await response.json()) as { code?: string; message?: string } };
  };

  const craft = async (
    key: string,
    claims: Record<string, unknown>,
    iat: number,
    exp: number,
    by = { issuer: JOB_ISSUER, audience: EXECUTOR_AUDIENCE },
  ) => {
    const { importJWK } = await import("jose");
    return new SignJWT(claims)
      .setProtectedHeader({ alg: "EdDSA", typ: "JWT" })
      .setIssuer(by.issuer)
      .setAudience(by.audience)
      .setSubject("-")
      .setJti(randomUUID())
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .sign(await importJWK(JSON.parse(key), "EdDSA"));
  };

  it("refuses forged, expired, replayed, tampered and misdirected jobs with 401; nothing runs", async () => {
    const jobs: Job[] = [];
    const fresh = () => {
      const job = h.job(ADD, { input: { a: 1, b: 2 } });
      jobs.push(job);
      return job;
    };
    const now = Math.floor(Date.now() / 1000);

    const forgedKeys = await makeKeys();
    const forgedJob = fresh();
    const forgedText = JSON.stringify(forgedJob);
    const forged = await signRequest(forgedKeys.jobPrivate, {
      issuer: JOB_ISSUER,
      audience: EXECUTOR_AUDIENCE,
      method: "POST",
      path: "/v1/jobs",
      body: forgedText,
      subject: forgedJob.execution_id,
    });
    expect((await post("/v1/jobs", forgedText, forged)).status).toBe(401);

    const expiredJob = fresh();
    const expiredText = JSON.stringify(expiredJob);
    const claims = { htm: "POST", htu: "/v1/jobs", bsh: await bodyHash(expiredText) };
    const expired = await craft(h.keys.jobPrivate, claims, now - 200, now - 140);
    const expiredAnswer = await post("/v1/jobs", expiredText, expired);
    expect(expiredAnswer.status).toBe(401);
    expect(expiredAnswer.body.code).toBe("UNAUTHORIZED");
    const tooLong = await craft(h.keys.jobPrivate, claims, now, now + 3600);
    expect((await post("/v1/jobs", expiredText, tooLong)).status).toBe(401);

    const tamperedJob = fresh();
    const signedText = JSON.stringify(tamperedJob);
    const tamperedText = JSON.stringify({ ...tamperedJob, input: { a: 100, b: 2 } });
    const tamperedToken = await h.sign("POST", "/v1/jobs", signedText, tamperedJob.execution_id);
    const tampered = await post("/v1/jobs", tamperedText, tamperedToken);
    expect(tampered.status).toBe(401);
    expect(tampered.body.message).toContain("body");

    const wrongPathJob = fresh();
    const wrongPathText = JSON.stringify(wrongPathJob);
    const wrongPath = await h.sign("POST", "/v1/syntax-check", wrongPathText);
    expect((await post("/v1/jobs", wrongPathText, wrongPath)).status).toBe(401);
    const wrongMethod = await h.sign("PUT", "/v1/jobs", wrongPathText);
    expect((await post("/v1/jobs", wrongPathText, wrongMethod)).status).toBe(401);

    expect((await post("/v1/jobs", wrongPathText, "not-a-jwt")).status).toBe(401);
    // The job key, but another issuer or audience (a token made for a callback); and an unsigned token.
    const otherClaims = { htm: "POST", htu: "/v1/jobs", bsh: await bodyHash(wrongPathText) };
    const byExecutor = { issuer: CALLBACK_ISSUER, audience: EXECUTOR_AUDIENCE };
    const forApi = { issuer: JOB_ISSUER, audience: API_AUDIENCE };
    for (const by of [byExecutor, forApi]) {
      const misdirected = await craft(h.keys.jobPrivate, otherClaims, now, now + 30, by);
      expect((await post("/v1/jobs", wrongPathText, misdirected)).status).toBe(401);
    }
    const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const payload = { ...otherClaims, iss: JOB_ISSUER, aud: EXECUTOR_AUDIENCE, sub: "-", jti: randomUUID() };
    const unsignedToken = `${part({ alg: "none" })}.${part({ ...payload, iat: now, exp: now + 30 })}.`;
    expect((await post("/v1/jobs", wrongPathText, unsignedToken)).body.message).toContain("alg");
    const unsigned = await fetch(`${h.executor.url}/v1/pools`);
    expect(unsigned.status).toBe(401);

    // A replay: the first use runs, the second is refused.
    const replayJob = h.job(ADD, { input: { a: 20, b: 22 } });
    const replayText = JSON.stringify(replayJob);
    const token = await h.sign("POST", "/v1/jobs", replayText, replayJob.execution_id);
    expect((await post("/v1/jobs", replayText, token)).status).toBe(202);
    const replayed = await post("/v1/jobs", replayText, token);
    expect(replayed.status).toBe(401);
    expect(replayed.body.message).toContain("replay");
    expect(await h.receiver.result(replayJob.execution_id)).toMatchObject({ result: { sum: 42 } });

    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const job of jobs) expect(h.receiver.events.get(job.execution_id)).toBeUndefined();
    expect(h.executor.pool.stats().busy).toBe(0);
  });

  it("answers 400 for an invalid job, 413 for a body over 16 MiB, and /health without a signature", async () => {
    expect((await h.send("POST", "/v1/jobs", { execution_id: "nope" })).status).toBe(400);
    const huge = "x".repeat(16 * 1024 * 1024 + 1);
    const declared = await fetch(`${h.executor.url}/v1/jobs`, { method: "POST", body: huge });
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as { code: string }).code).toBe("PAYLOAD_TOO_LARGE");
    // The same without a content-length (chunked): counted as it arrives, once its token passed (a request
    // that is not the API's gets 401 before its body is read).
    const bytes = new TextEncoder().encode(huge);
    const chunked = await fetch(`${h.executor.url}/v1/jobs`, {
      method: "POST",
      headers: { authorization: `Bearer ${await h.sign("POST", "/v1/jobs", huge)}` },
      body: new ReadableStream({
        start(controller) {
          for (let at = 0; at < bytes.length; at += 1024 * 1024)
            controller.enqueue(bytes.slice(at, at + 1024 * 1024));
          controller.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    expect(chunked.status).toBe(413);
    const health = await fetch(`${h.executor.url}/health`);
    expect(await health.json()).toMatchObject({
      status: "ok",
      driver: "process",
      version: expect.any(String),
    });
  });

  it("stops a job when the API answers 409 (finished elsewhere)", async () => {
    const job = h.job("import time\ndef slow(input, context):\n    print('hi')\n    time.sleep(20)\n", {
      userId: "conflicted",
    });
    h.receiver.conflictFor.add(job.execution_id);
    expect((await h.send("POST", "/v1/jobs", job)).status).toBe(202);
    await expect.poll(() => h.receiver.posts.get(job.execution_id)?.length ?? 0, { timeout: 5000 }).toBe(1);
    await expect
      .poll(async () => {
        const report = (await h.send("GET", "/v1/pools")).body as {
          user_pools: Array<{ user_id: string; status: string }>;
        };
        return report.user_pools.filter((entry) => entry.user_id === "conflicted" && entry.status === "busy")
          .length;
      })
      .toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(h.receiver.posts.get(job.execution_id)).toEqual([1]); // nothing after the 409
  });

  it("answers a job with reply_within_ms when it ends: its signed result in the answer, else posted", async () => {
    const postHeld = async (job: Job, signal?: AbortSignal) => {
      const text = JSON.stringify(job);
      const token = await h.sign("POST", "/v1/jobs", text, job.execution_id);
      return fetch(`${h.executor.url}/v1/jobs`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: text,
        signal,
      });
    };
    // Ends in time: the result's callback is in the answer, signed as if posted, and nothing is posted.
    const fast = { ...h.job(ADD, { input: { a: 1, b: 2 }, userId: "held" }), reply_within_ms: 10_000 };
    const fastAnswer = await postHeld(fast);
    expect(fastAnswer.status).toBe(200);
    const reply = JobReplySchema.parse(await fastAnswer.json());
    expect(reply).toMatchObject({ accepted: true, execution_id: fast.execution_id });
    const callback = reply.callback as { token: string; body: string };
    await verifySignedRequest(h.keys.callbackPublic, callback.token, {
      issuer: CALLBACK_ISSUER,
      audience: API_AUDIENCE,
      method: "POST",
      path: new URL(fast.callback_url).pathname,
      body: callback.body,
    });
    const body = CallbackBodySchema.parse(JSON.parse(callback.body));
    expect(body.seq).toBe(1);
    expect(body.events[0]?.type).toBe("started");
    expect(body.events.at(-1)).toMatchObject({ type: "result", status: "completed", result: { sum: 3 } });

    // Runs past the window: the answer ends empty when the window closes, and the result is posted.
    const slowCode =
      "import time\ndef slow(input, context):\n    time.sleep(1.5)\n    return {'done': True}\n";
    const slow = { ...h.job(slowCode, { userId: "held" }), reply_within_ms: 300 };
    const begun = Date.now();
    const slowAnswer = await postHeld(slow);
    expect(slowAnswer.status).toBe(200);
    expect(JobReplySchema.parse(await slowAnswer.json()).callback).toBeNull();
    expect(Date.now() - begun).toBeLessThan(1400);
    expect(await h.receiver.result(slow.execution_id)).toMatchObject({ result: { done: true } });

    // The API goes away while the answer is held: the result is posted.
    const gone = { ...h.job(slowCode, { userId: "held" }), reply_within_ms: 10_000 };
    const abort = new AbortController();
    const goneAnswer = await postHeld(gone, abort.signal);
    expect(goneAnswer.status).toBe(200);
    abort.abort();
    expect(await h.receiver.result(gone.execution_id)).toMatchObject({ result: { done: true } });

    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(h.receiver.posts.get(fast.execution_id)).toBeUndefined();
  });

  it("checks Python syntax", async () => {
    expect(await h.send("POST", "/v1/syntax-check", { code: "def f(x):\n    return x\n" })).toEqual({
      status: 200,
      body: { ok: true },
    });
    const bad = await h.send("POST", "/v1/syntax-check", { code: "def f(x):\n    return (x\n" });
    expect(bad.status).toBe(200);
    expect(bad.body).toMatchObject({ ok: false, error: expect.stringMatching(/^line \d+: /) });
    const huge = await h.send("POST", "/v1/syntax-check", { code: "x = 1\n".repeat(50_000) });
    expect(huge.body).toMatchObject({ ok: false, error: expect.stringContaining("too large") });
  });
});

describe("executor: pools", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ SANDBOX_DRIVER: "process", POOL_IDLE_SECONDS: "1", POOL_WARM_PER_USER: "0" });
  });
  afterAll(() => h.close());

  it("reports pools, scales the shared pool (D-44 no_change) and runs shared jobs round robin", async () => {
    const shared = h.job(ADD, { input: { a: 1, b: 2 }, shared: true });
    expect(await h.run(shared)).toMatchObject({
      status: "failed",
      error: "No workers available. Please scale workers up first.",
    });
    expect(await h.send("POST", "/v1/pools/shared/scale", { target_count: 2 })).toEqual({
      status: 200,
      body: { action: "scale_up", previous_count: 0, current_count: 2, added: 2, removed: 0 },
    });
    expect(await h.send("POST", "/v1/pools/shared/scale", { target_count: 2 })).toEqual({
      status: 200,
      body: { action: "no_change", previous_count: 2, current_count: 2, added: 0, removed: 0 },
    });
    expect((await h.send("POST", "/v1/pools/shared/scale", { target_count: 11 })).body).toMatchObject({
      message: "Maximum 10 workers allowed",
    });
    expect((await h.send("POST", "/v1/pools/shared/scale", { target_count: -1 })).status).toBe(400);

    for (let index = 0; index < 4; index++) {
      const result = await h.run(
        h.job(ADD, { input: { a: index, b: 0 }, shared: true, userId: `u${index}` }),
      );
      expect(result).toMatchObject({ status: "completed", result: { sum: index, user: `u${index}` } });
    }
    const report = (await h.send("GET", "/v1/pools")).body as {
      driver: string;
      shared_pool: Array<{ id: string; container_name: string; status: string; executions: number }>;
    };
    expect(report.driver).toBe("process");
    expect(report.shared_pool.map((worker) => [worker.id, worker.container_name, worker.status])).toEqual([
      ["worker-1", "sinas-worker-1", "idle"],
      ["worker-2", "sinas-worker-2", "idle"],
    ]);
    expect(report.shared_pool.map((worker) => worker.executions)).toEqual([2, 2]);

    expect(await h.send("POST", "/v1/pools/shared/scale", { target_count: 0 })).toEqual({
      status: 200,
      body: { action: "scale_down", previous_count: 2, current_count: 0, added: 0, removed: 2 },
    });
  });

  it("reaps idle user sandboxes, reloads and stops a user's pool", async () => {
    expect(await h.run(h.job(ADD, { input: { a: 1, b: 1 }, userId: "reaped" }))).toMatchObject({
      status: "completed",
    });
    const userEntries = async (userId: string) => {
      const report = (await h.send("GET", "/v1/pools")).body as {
        user_pools: Array<{ user_id: string; sandbox_id: string; status: string; idle_seconds: number }>;
      };
      return report.user_pools.filter((entry) => entry.user_id === userId);
    };
    expect((await userEntries("reaped")).length).toBe(1);
    await expect
      .poll(async () => (await userEntries("reaped")).length, { timeout: 5000, interval: 200 })
      .toBe(0);

    await h.run(h.job(ADD, { input: { a: 1, b: 1 }, userId: "reloaded" }));
    const [before] = await userEntries("reloaded");
    expect(await h.send("POST", "/v1/pools/users/reloaded/reload", {})).toEqual({
      status: 200,
      body: { status: "reloaded", user_id: "reloaded" },
    });
    expect(await h.run(h.job(ADD, { input: { a: 2, b: 2 }, userId: "reloaded" }))).toMatchObject({
      status: "completed",
    });
    const after = await userEntries("reloaded");
    expect(after.map((entry) => entry.sandbox_id)).not.toContain(before?.sandbox_id);
    expect(await h.send("DELETE", "/v1/pools/users/reloaded")).toEqual({
      status: 200,
      body: { status: "stopped", user_id: "reloaded" },
    });
    expect(await userEntries("reloaded")).toEqual([]);
  });
});
