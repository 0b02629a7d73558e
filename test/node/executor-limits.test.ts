import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { performance } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Job, ResultEvent, Step } from "../../workers/lib/executor-protocol";
import { type Harness, startHarness } from "../helpers/executor-harness";

// The executor for real, against user code that tries to use more than it may: memory in the sandbox's /dev,
// and steps, errors, prompts and results larger than the API can take. Each must end as a clear, prompt
// result, with the executor (and the user's next job) unharmed.

const bwrapWorks = spawnSync("bwrap", ["--version"]).status === 0;

/**
 * User code writing raw lines to the executor's socket (as hostile code can): the runtime's channel, under its
 * lock so no line of the runtime's own is cut in two. `send(text)` writes `text` as is. It goes after the
 * job's function: the harness names the job after the code's first `def`.
 */
const RAW = `import sys, json, time, threading
_capture = sys.stdout._capture
def send(text):
    with _capture.channel._lock:
        _capture.channel._sock.sendall(text.encode())
def line(message):
    return json.dumps(message) + "\\n"
`;

/** MAX_FIELD_BYTES (executor-node/src/event-limits.ts), and its marker for cut texts. */
const FIELD_BYTES = 64 * 1024;
const MARKER = "…[truncated]";

const ADD = "def add(input, context):\n    return input['a'] + input['b']\n";

const entry = (code: string) => ({ code, code_hash: createHash("sha256").update(code).digest("hex") });

describe.each([
  { driver: "process", enabled: true },
  { driver: "bwrap", enabled: bwrapWorks },
])("executor limits with the $driver driver", ({ driver, enabled }) => {
  let h: Harness;

  beforeAll(async () => {
    if (!enabled) return;
    h = await startHarness({ SANDBOX_DRIVER: driver, SANDBOX_TMPFS_MB: "4", POOL_MAX_PER_USER: "2" });
    expect(h.executor.driver).toBe(driver);
  });
  afterAll(async () => {
    if (enabled) await h.close();
  });

  /** The user's next job still runs. */
  const nextJobRuns = async (userId: string) => {
    expect((await fetch(`${h.executor.url}/health`)).status).toBe(200);
    expect(await h.run(h.job(ADD, { input: { a: 2, b: 3 }, userId }))).toMatchObject({
      status: "completed",
      result: 5,
    });
  };

  it.skipIf(!enabled || driver !== "bwrap")(
    "caps /dev/shm like /tmp and keeps /dev read-only, its devices working",
    async () => {
      const code = `import errno
def fill(input, context):
    out = {"shm_mib": 0}
    try:
        for i in range(64):
            with open(f"/dev/shm/f{i}", "wb") as handle:
                handle.write(b"a" * (1 << 20))
            out["shm_mib"] += 1
        out["shm"] = "no limit"
    except OSError as exc:
        out["shm"] = errno.errorcode.get(exc.errno, str(exc))
    try:
        with open("/dev/x", "wb") as handle:
            handle.write(b"a" * (1 << 20))
        out["dev"] = "written"
    except OSError as exc:
        out["dev"] = errno.errorcode.get(exc.errno, str(exc))
    with open("/dev/null", "wb") as handle:
        out["null"] = handle.write(b"a")
    with open("/dev/urandom", "rb") as handle:
        out["urandom"] = len(handle.read(8))
    return out
`;
      const result = await h.run(h.job(code, { userId: "shm-filler" }));
      expect(result).toMatchObject({
        status: "completed",
        result: { shm: "ENOSPC", dev: "EROFS", null: 1, urandom: 8 },
      });
      expect((result.result as { shm_mib: number }).shm_mib).toBeLessThanOrEqual(4);
      await nextJobRuns("shm-filler");
    },
  );

  it.skipIf(!enabled)("records nested calls with huge inputs as steps cut to 64 KiB", async () => {
    const callee = "def f(input, context):\n    return {'length': len(input)}\n";
    const caller = `def main(input, context):
    s = "x" * 12_000_000
    return [default.f(s)["length"] for _ in range(3)]
`;
    const job: Job = {
      ...h.job(caller, { userId: "big-steps" }),
      callable: { default: { f: entry(callee) } },
    };
    const result = await h.run(job);
    expect(result).toMatchObject({ status: "completed", result: [12_000_000, 12_000_000, 12_000_000] });
    const steps = (h.receiver.events.get(job.execution_id) ?? []).flatMap((event) =>
      event.type === "step" ? [event.step] : [],
    );
    const calls = steps.filter((step: Step) => step.name === "f");
    expect(calls.map((step) => step.status)).toEqual([
      "RUNNING",
      "COMPLETED",
      "RUNNING",
      "COMPLETED",
      "RUNNING",
      "COMPLETED",
    ]);
    for (const step of calls) {
      expect(step.input).toMatchObject({ truncated: true, bytes: 12_000_002 });
      expect(Buffer.byteLength(JSON.stringify(step))).toBeLessThanOrEqual(2 * FIELD_BYTES);
    }
    expect(calls[1]?.output).toEqual({ length: 12_000_000 });
    await nextJobRuns("big-steps");
  });

  it.skipIf(!enabled)(
    "delivers a huge exception at once as FAILED, its error and traceback cut",
    async () => {
      const started = Date.now();
      const result = await h.run(
        h.job('def boom(input, context):\n    raise ValueError("x" * 5_000_000)\n', { userId: "big-error" }),
      );
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(result).toMatchObject({ status: "failed", error_type: "exception" });
      expect(result.error?.startsWith("ValueError: xxx")).toBe(true);
      expect(result.error?.endsWith(MARKER)).toBe(true);
      expect(Buffer.byteLength(result.error ?? "")).toBeLessThanOrEqual(FIELD_BYTES);
      expect(Buffer.byteLength(result.traceback ?? "")).toBeLessThanOrEqual(FIELD_BYTES);
      expect(result.traceback).toContain("boom");
      await nextJobRuns("big-error");
    },
  );

  it.skipIf(!enabled)("cuts a huge prompt, and fails too large results and schemas clearly", async () => {
    const asking = await h.run(
      h.job(
        'def ask(input, context):\n    yield {"prompt": "p" * 5_000_000, "schema": {"type": "object"}}\n',
        {
          userId: "big-results",
        },
      ),
    );
    expect(asking).toMatchObject({ status: "awaiting_input", schema: { type: "object" } });
    expect(asking.prompt?.endsWith(MARKER)).toBe(true);
    expect(Buffer.byteLength(asking.prompt ?? "")).toBeLessThanOrEqual(FIELD_BYTES);

    const schema = await h.run(
      h.job(
        'def ask(input, context):\n    yield {"prompt": "?", "schema": {"description": "d" * 200_000}}\n',
        {
          userId: "big-results",
        },
      ),
    );
    expect(schema).toMatchObject({ status: "failed", error_type: "invalid_result" });
    expect(schema.error).toContain("schema");

    // Larger than any runtime message the executor accepts (10 MiB): refused in the sandbox, clearly.
    const huge: ResultEvent = await h.run(
      h.job('def big(input, context):\n    return "y" * 12_000_000\n', { userId: "big-results" }),
    );
    expect(huge).toMatchObject({ status: "failed", error_type: "invalid_result" });
    expect(huge.error).toContain("at most 3145728");
    // Measured as the API measures it, compact: 2.4 MB of JSON (3.6 MB with spaces after the commas) completes.
    const list = await h.run(
      h.job("def many(input, context):\n    return [0] * 1_200_000\n", { userId: "big-results" }),
    );
    expect(list).toMatchObject({ status: "completed" });
    expect((list.result as number[]).length).toBe(1_200_000);
    await nextJobRuns("big-results");
  });

  // Without the depth bound, the step crashed the executor (JSON.stringify's RangeError thrown from the socket's
  // data listener) and the deep result left its sandbox busy for good: each waits 15 s at most for its result.
  it.skipIf(!enabled)("kills a sandbox sending JSON nested too deeply, and serves the next job", async () => {
    const code = `def deep(input, context):
    value = "[" * 200_000 + "]" * 200_000
    job = _capture.job_id
    if input["what"] == "step":
        step = '{"id":"s","parent_id":null,"namespace":"default","name":"x","status":"RUNNING","input":%s,"started_at":"t"}'
        send('{"type":"step","job_id":"%s","step":%s}\\n' % (job, step % value))
    else:
        send('{"type":"result","job_id":"%s","status":"completed","result":%s,"duration_ms":1}\\n' % (job, value))
    time.sleep(30)
${RAW}`;
    for (const what of ["step", "result"]) {
      const result = await h.run(h.job(code, { input: { what }, userId: "deep-json", timeout: 60 }));
      expect(result).toMatchObject({ status: "failed", error_type: "killed" });
      expect(result.error).toContain("nested more than 1024 levels deep");
      await nextJobRuns("deep-json");
    }
    // Python's json stops near 1000 levels: what an honest runtime sends stays within the bound.
    const honest = await h.run(
      h.job("def f(input, context):\n    v = []\n    for _ in range(900):\n        v = [v]\n    return v\n", {
        userId: "deep-json",
      }),
    );
    expect(honest).toMatchObject({ status: "completed" });
  });

  it.skipIf(!enabled)("bounds a flood of empty and tiny log events, with one last notice", async () => {
    const code = `def flood(input, context):
    empty = line({"type": "log", "job_id": _capture.job_id, "stream": "stdout", "text": "", "at": "2026-01-01T00:00:00Z"}) * 1000
    tiny = line({"type": "log", "job_id": _capture.job_id, "stream": "stdout", "text": "x", "at": "not a time"}) * 1000
    for _ in range(200):
        send(empty)
    for _ in range(100):
        send(tiny)
    return "done"
${RAW}`;
    const job = h.job(code, { userId: "log-flood", timeout: 60 });
    const result = await h.run(job);
    expect(result).toMatchObject({ status: "completed", result: "done" });
    const logs = (h.receiver.events.get(job.execution_id) ?? []).flatMap((event) =>
      event.type === "log" ? [event] : [],
    );
    expect(logs.length).toBeGreaterThan(1000);
    expect(logs.length).toBeLessThanOrEqual(20_001);
    expect(logs.some((log) => log.text === "" || log.at === "not a time")).toBe(false);
    expect(logs.at(-1)?.text).toContain("the rest was dropped");
    await nextJobRuns("log-flood");
  });

  // Without the pause, the executor parsed the flood for as long as the sandbox lived: its event loop busy.
  it.skipIf(!enabled)("does not read a sandbox's socket between jobs", async () => {
    const leave = `def leave(input, context):
    stray = line({"type": "log", "job_id": "stray", "stream": "stdout", "text": "x", "at": "2026-01-01T00:00:00Z"}) * 1000
    def flood():
        while not getattr(sys, "stop_flood", False):
            send(stray)
    threading.Thread(target=flood, daemon=True).start()
    return "left"
${RAW}`;
    expect(await h.run(h.job(leave, { userId: "stray-flood" }))).toMatchObject({ result: "left" });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const before = performance.eventLoopUtilization();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(performance.eventLoopUtilization(before).utilization).toBeLessThan(0.3);
    const stop =
      "import sys, time\ndef stop(input, context):\n    sys.stop_flood = True\n    time.sleep(0.2)\n    return 5\n";
    const started = Date.now();
    expect(await h.run(h.job(stop, { userId: "stray-flood" }))).toMatchObject({
      status: "completed",
      result: 5,
    });
    expect(Date.now() - started).toBeLessThan(5000);
    await nextJobRuns("stray-flood");
  });
});
