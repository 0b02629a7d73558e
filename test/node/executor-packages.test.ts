import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerDriver } from "../../executor-node/src/sandbox/docker";
import { ROOT_DIR } from "../../scripts/lib/stack";
import { isInstallableRequirement, type ResultEvent } from "../../workers/lib/executor-protocol";
import { type Harness, startHarness } from "../helpers/executor-harness";
import { buildWheel } from "../helpers/wheel";

// Packages for sandboxes (PROTOCOL.md "Packages"): a job's `requirements` are pip-installed once per set from
// PIP_FIND_LINKS (here a folder holding a wheel built by the test: no network) and the sandbox sees them
// read-only; sandboxes without them cannot import them. Every driver that works here runs the same suite.

const wheels = mkdtempSync(join(tmpdir(), "sinas-wheels-"));
buildWheel(wheels);

const bwrapProblem =
  spawnSync("bwrap", ["--version"]).status === 0
    ? undefined
    : "`bwrap --version` failed (install bubblewrap)";

async function dockerProblem(): Promise<string | undefined> {
  const driver = new DockerDriver({});
  try {
    await driver.client();
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
  // The image must carry the current runtime (the build is a no-op when it does).
  const build = spawnSync("bash", [join(ROOT_DIR, "scripts/build-runtime-image.sh")], {
    encoding: "utf8",
    timeout: 300_000,
  });
  if (build.status !== 0) return `scripts/build-runtime-image.sh failed: ${build.stderr.trim()}`;
  return (await driver.available()) ? undefined : (driver.unavailableReason ?? "image unavailable");
}

const drivers = [
  { driver: "process", problem: undefined },
  { driver: "bwrap", problem: bwrapProblem },
  { driver: "docker", problem: await dockerProblem() },
];
for (const { driver, problem } of drivers) {
  if (problem) console.warn(`[executor-packages.test] ${driver} suite SKIPPED: ${problem}`);
}

afterAll(() => rmSync(wheels, { recursive: true, force: true }));

const USE = `def use(input, context):
    import os, sinas_testpkg
    where = os.path.dirname(sinas_testpkg.__file__)
    return {"v": sinas_testpkg.hello(), "where": where, "writable": os.access(where, os.W_OK)}
`;

describe("the requirement spec pattern (shared with the API, which refuses other specs)", () => {
  it("accepts a name with extras and version clauses, spaces aside, and nothing else", () => {
    for (const spec of [
      "requests",
      "Requests[socks,security] >= 2.0, < 3",
      "a.b_c-d~=1.4.*",
      "x===1.0+local",
    ]) {
      expect(isInstallableRequirement(spec), spec).toBe(true);
    }
    for (const spec of [
      "requests; python_version >= '3.8'",
      "requests (>=2.0)",
      "requests @ https://x/y.whl",
      "requests>=2 --hash=sha256:abcd",
      "-e .",
      "./local/path",
      "requests==>=2.0",
      "requests-",
    ]) {
      expect(isInstallableRequirement(spec), spec).toBe(false);
    }
  });
});

describe.each(drivers)("packages with the $driver driver", ({ driver, problem }) => {
  let h: Harness;
  const enabled = problem === undefined;

  beforeAll(async () => {
    if (!enabled) return;
    // One sandbox per user at most: a job needing other packages replaces the idle one.
    h = await startHarness({ SANDBOX_DRIVER: driver, PIP_FIND_LINKS: wheels, POOL_MAX_PER_USER: "1" });
    expect(h.executor.driver).toBe(driver);
  });
  afterAll(async () => {
    if (enabled) await h.close();
  });

  const installs = (spec: string) => h.logs.filter((line) => line.startsWith(`installed packages ${spec} `));
  const sandboxOf = (executionId: string) => {
    const started = h.receiver.events.get(executionId)?.find((event) => event.type === "started");
    return started?.type === "started" ? started.sandbox : undefined;
  };

  it.skipIf(!enabled)("installs a job's requirements and the sandbox imports them, read-only", async () => {
    const job = h.job(USE, { requirements: ["sinas_testpkg==1.0"], userId: "alice" });
    const result = await h.run(job);
    expect(result, JSON.stringify(result)).toMatchObject({
      status: "completed",
      result: { v: "hi from wheel" },
    });
    const { where, writable } = (result.result ?? {}) as { where: string; writable: boolean };
    if (driver === "process") {
      expect(where).toMatch(/\/packages\/[0-9a-f]{64}\/sinas_testpkg$/); // the host folder itself
    } else {
      expect(where).toBe("/opt/sinas/packages/sinas_testpkg");
      expect(writable).toBe(false);
    }
    expect(installs("sinas_testpkg==1.0")).toHaveLength(1);

    // The same set again: no second install, and the warm sandbox with those packages serves it.
    const again = h.job(USE, { requirements: ["sinas_testpkg==1.0"], userId: "alice" });
    expect(await h.run(again)).toMatchObject({ status: "completed", result: { v: "hi from wheel" } });
    expect(sandboxOf(again.execution_id)).toBe(sandboxOf(job.execution_id));
    expect(installs("sinas_testpkg==1.0")).toHaveLength(1);
  });

  it.skipIf(!enabled)("a job without the requirements cannot import them (another sandbox)", async () => {
    const withPackages = h.job(USE, { requirements: ["sinas_testpkg==1.0"], userId: "bob" });
    expect(await h.run(withPackages)).toMatchObject({ status: "completed" });
    const without = h.job(USE, { userId: "bob" });
    const result = await h.run(without);
    expect(result).toMatchObject({ status: "failed", error_type: "exception" });
    expect(result.error).toContain("No module named 'sinas_testpkg'");
    expect(sandboxOf(without.execution_id)).not.toBe(sandboxOf(withPackages.execution_id));
    // And back: POOL_MAX_PER_USER=1, so the idle sandbox without packages is replaced again.
    expect(await h.run(h.job(USE, { requirements: ["sinas_testpkg==1.0"], userId: "bob" }))).toMatchObject({
      status: "completed",
      result: { v: "hi from wheel" },
    });
  });

  it.skipIf(!enabled)("fails a job whose requirement pip cannot install, with pip's message", async () => {
    const result = await h.run(h.job(USE, { requirements: ["sinas_testpkg==9.9"], userId: "carol" }));
    expect(result).toMatchObject({ status: "failed", error_type: "internal" });
    expect(result.error).toMatch(/^Package installation failed: /);
    expect(result.error).toContain("No matching distribution found for sinas_testpkg==9.9");
    const refused = await h.run(h.job(USE, { requirements: ["sinas_testpkg @ http://x/y.whl"] }));
    expect(refused).toMatchObject({
      status: "failed",
      error_type: "internal",
      error: 'Package installation failed: invalid requirement "sinas_testpkg@http://x/y.whl"',
    });
  });

  it.skipIf(!enabled)("installs a set once for concurrent jobs", async () => {
    const jobs = ["dave", "erin", "dave"].map((userId) =>
      h.job(USE, { requirements: ["sinas_testpkg>=1.0"], userId }),
    );
    const results = await Promise.all(jobs.map((job) => h.run(job)));
    for (const result of results) {
      expect(result, JSON.stringify(result)).toMatchObject({
        status: "completed",
        result: { v: "hi from wheel" },
      });
    }
    expect(installs("sinas_testpkg>=1.0")).toHaveLength(1);
  });

  it.skipIf(!enabled)("resumes a paused generator in its sandbox with the packages", async () => {
    const code = `def ask(input, context):
    import sinas_testpkg
    answer = yield {"prompt": "Name?", "schema": {"type": "object"}}
    return {"v": sinas_testpkg.hello(), "name": answer["name"]}
`;
    const first = h.job(code, { requirements: ["sinas_testpkg==1.0"], userId: "frank" });
    expect(await h.run(first)).toMatchObject({ status: "awaiting_input", prompt: "Name?" });
    h.receiver.newJob(first.execution_id);
    expect(
      (await h.send("POST", "/v1/jobs", { ...first, kind: "resume", input: { name: "Ada" } })).status,
    ).toBe(202);
    const events = await h.receiver.waitFor(first.execution_id, (list) =>
      list.some((event) => event.type === "result" && event.status !== "awaiting_input"),
    );
    expect(events.filter((event) => event.type === "result").pop() as ResultEvent).toMatchObject({
      status: "completed",
      result: { v: "hi from wheel", name: "Ada" },
    });
  });

  it.skipIf(!enabled)("restarts a shared worker with the packages a shared job needs", async () => {
    expect((await h.send("POST", "/v1/pools/shared/scale", { target_count: 1 })).status).toBe(200);
    try {
      const shared = await h.run(h.job(USE, { requirements: ["sinas_testpkg==1.0"], shared: true }));
      expect(shared).toMatchObject({ status: "completed", result: { v: "hi from wheel" } });
      const plain = await h.run(h.job(USE, { shared: true }));
      expect(plain).toMatchObject({ status: "failed", error_type: "exception" });
      expect(plain.error).toContain("No module named 'sinas_testpkg'");
    } finally {
      await h.send("POST", "/v1/pools/shared/scale", { target_count: 0 });
    }
  });
});
