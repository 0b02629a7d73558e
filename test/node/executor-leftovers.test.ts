import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, startHarness } from "../helpers/executor-harness";

// What a job leaves running in a warm local sandbox (no cgroup bounds it): processes still running when the
// job returns end that sandbox at once; a thread (or process) using CPU while the sandbox is idle ends it at
// the next idle check. A clean sandbox stays warm. The executor for real, one sandbox per user.

const bwrapWorks = spawnSync("bwrap", ["--version"]).status === 0;

/** The sandbox a job ran in (SINAS_SANDBOX_ID is set per sandbox), after `body`. */
const job = (name: string, body: string) =>
  `import os, subprocess, threading, time\ndef ${name}(input, context):\n${body}\n    return os.environ["SINAS_SANDBOX_ID"]\n`;

const CLEAN = job("clean", "    subprocess.run(['true'], check=True)");
const LEAVES_CHILD = job("leaves_child", "    subprocess.Popen(['sleep', '60'])");
/** A grandchild that outlives its parent: re-parented to the sandbox's init (bwrap) or the host's. */
const DAEMON = job(
  "daemon",
  `    if os.fork() == 0:
        if os.fork() == 0:
            time.sleep(60)
        os._exit(0)
    os.wait()`,
);
const SPINS = job(
  "spins",
  "    threading.Thread(target=lambda: [None for _ in iter(int, 1)], daemon=True).start()\n    time.sleep(0.05)",
);
/** A generator keeping a helper process across its pause: not a leftover, the function has not returned. */
const GENERATOR_WITH_HELPER = `import os, subprocess
def helper_gen(input, context):
    helper = subprocess.Popen(['sleep', '60'])
    answer = yield {"prompt": "go on?"}
    helper.kill()
    helper.wait()
    return {"got": answer, "sandbox": os.environ["SINAS_SANDBOX_ID"]}
`;
const SLOW_GENERATOR = `import time
def slow_gen(input, context):
    time.sleep(1.5)
    answer = yield {"prompt": "go on?"}
    return {"got": answer}
`;
const IDLE_CHECK_MS = 400;

describe.each([
  { driver: "process", enabled: true },
  { driver: "bwrap", enabled: bwrapWorks },
])("leftovers of a job with the $driver driver", ({ driver, enabled }) => {
  let h: Harness;

  beforeAll(async () => {
    if (!enabled) return;
    h = await startHarness({
      SANDBOX_DRIVER: driver,
      POOL_MAX_PER_USER: "1",
      SANDBOX_IDLE_CHECK_MS: String(IDLE_CHECK_MS),
    });
  });
  afterAll(async () => {
    if (enabled) await h.close();
  });

  const sandboxOf = async (code: string, userId: string): Promise<string> => {
    const result = await h.run(h.job(code, { userId }));
    expect(result).toMatchObject({ status: "completed" });
    return result.result as string;
  };

  it.skipIf(!enabled)("keeps a clean sandbox warm, over idle checks too", async () => {
    const first = await sandboxOf(CLEAN, "clean-user");
    await new Promise((resolve) => setTimeout(resolve, IDLE_CHECK_MS * 3));
    expect(await sandboxOf(CLEAN, "clean-user")).toBe(first);
    expect(await sandboxOf(CLEAN, "clean-user")).toBe(first);
  });

  it.skipIf(!enabled)("replaces a sandbox whose job left a child process running", async () => {
    const first = await sandboxOf(LEAVES_CHILD, "child-user");
    const next = await sandboxOf(CLEAN, "child-user");
    expect(next).not.toBe(first);
    expect(
      h.logs.some((line) => line.includes(`sandbox ${first} killed: its job left 1 process running`)),
    ).toBe(true);
    expect(await sandboxOf(CLEAN, "child-user")).toBe(next);
  });

  it.skipIf(!enabled || driver !== "bwrap")(
    "replaces a sandbox whose job left a daemon (re-parented to the sandbox's init)",
    async () => {
      const first = await sandboxOf(DAEMON, "daemon-user");
      expect(await sandboxOf(CLEAN, "daemon-user")).not.toBe(first);
    },
  );

  /** Resumes the paused run of `first` and returns the resume's result. */
  const resumeOf = async (first: ReturnType<Harness["job"]>) => {
    h.receiver.newJob(first.execution_id);
    expect((await h.send("POST", "/v1/jobs", { ...first, kind: "resume", input: { ok: 1 } })).status).toBe(
      202,
    );
    const events = await h.receiver.waitFor(first.execution_id, (list) =>
      list.some((event) => event.type === "result" && event.status !== "awaiting_input"),
    );
    return events.filter((event) => event.type === "result").pop();
  };

  it.skipIf(!enabled)(
    "keeps a paused generator's sandbox, helper process and all, for its resume",
    async () => {
      const first = h.job(GENERATOR_WITH_HELPER, { userId: "generator-user" });
      expect(await h.run(first)).toMatchObject({ status: "awaiting_input" });
      // Another job of the user runs in that sandbox (its only one) meanwhile: the helper is not its leftover.
      await sandboxOf(CLEAN, "generator-user");
      expect(await resumeOf(first)).toMatchObject({ status: "completed", result: { got: { ok: 1 } } });
    },
  );

  it.skipIf(!enabled)(
    "fails a run whose sandbox was replaced as it paused, instead of asking for input",
    async () => {
      const userId = "reloaded-user";
      const first = h.job(SLOW_GENERATOR, { userId });
      expect((await h.send("POST", "/v1/jobs", first)).status).toBe(202);
      await h.receiver.waitFor(first.execution_id, (events) =>
        events.some((event) => event.type === "started"),
      );
      expect((await h.send("POST", `/v1/pools/users/${userId}/reload`, {})).status).toBe(200);
      expect(await h.receiver.result(first.execution_id)).toMatchObject({
        status: "failed",
        error_type: "killed",
        error: "The sandbox holding the paused generator was replaced",
      });
    },
  );

  it.skipIf(!enabled)("kills an idle sandbox whose job left a thread spinning", async () => {
    const first = await sandboxOf(SPINS, "spin-user");
    const deadline = Date.now() + 10_000;
    const killed = () => h.logs.some((line) => line.includes(`sandbox ${first} killed: used`));
    while (!killed() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(h.logs.find((line) => line.includes(`sandbox ${first} killed`))).toMatch(
      /of a core while idle: its last job left a thread or process running/,
    );
    expect(await sandboxOf(CLEAN, "spin-user")).not.toBe(first);
  });
});
