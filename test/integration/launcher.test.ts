import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { IDENTITY_VARS, SUPERADMIN_EMAIL } from "../helpers/auth";
import { openStackDb } from "../helpers/db";
import { descendants, isAlive } from "../helpers/processes";
import { startTestStack } from "../helpers/stack";

const waitUntil = async (condition: () => boolean, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  return condition();
};

describe("npm start (the launcher)", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "sinas-launcher-"));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  // Two full stack starts on on-disk PGlite (with a real Redis in the PostgreSQL pass).
  it("keeps PGlite data on disk across restarts, and leaves no process behind on SIGTERM", async () => {
    const first = await startTestStack({ dataDir });
    expect(first.database.kind).toBe("pglite");
    expect(first.database.location).toBe(join(dataDir, "pgdata"));
    let handle = openStackDb(first);
    await handle.db.execute(
      sql`insert into groups (name, description) values ('Persisted', 'survives a restart')`,
    );
    await handle.close();

    const children = descendants(first.pid);
    expect(children.some((child) => child.command.includes("wrangler"))).toBe(true);
    expect(children.some((child) => child.command.includes("workerd"))).toBe(true);
    expect(children.some((child) => child.command.includes("pglite"))).toBe(true);
    await first.stop();
    expect(await first.exited).toBe(0);
    expect(await waitUntil(() => children.every((child) => !isAlive(child.pid)), 10_000)).toBe(true);
    expect((await fetch(`${first.apiUrl}/health`).catch(() => null))?.status).toBeUndefined();

    const second = await startTestStack({ dataDir });
    try {
      handle = openStackDb(second);
      const rows = await handle.db.execute(sql`select description from groups where name = 'Persisted'`);
      await handle.close();
      expect(rows.rows).toEqual([{ description: "survives a restart" }]);
      expect((await second.fetch("/health")).status).toBe(200);
    } finally {
      await second.stop();
    }
  }, 150_000);

  // The lifecycle cases share stacks (a stack start is the expensive part of this file): one stack sees its
  // executor die and come back, then its API die; the other moves off a busy port, then loses its launcher.
  it("moves to a free port when the configured one is busy, prints the Worker's console.log, and leaves no process behind when the launcher is killed with SIGKILL", async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const busyPort = (blocker.address() as { port: number }).port;
    // Without SMTP the Worker prints login codes with console.log (DEV_PRINT_OTP): that line must reach the
    // launcher's output although wrangler runs without the inspector here.
    const stack = await startTestStack({
      env: { PORT: String(busyPort) },
      workerVars: { ...IDENTITY_VARS, SMTP_HOST: "", DEV_PRINT_OTP: "true" },
    });
    try {
      expect(stack.ports.api).not.toBe(busyPort);
      expect(stack.logs().join("\n")).toContain(`port ${busyPort} (api) is busy, using ${stack.ports.api}`);
      expect((await stack.fetch("/health")).status).toBe(200);
      const login = await stack.fetch("/auth/login", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: SUPERADMIN_EMAIL }),
      });
      expect(login.status, await login.text()).toBe(200);
      const printed = await waitUntil(
        () => stack.logs().some((line) => line.includes(`OTP CODE FOR ${SUPERADMIN_EMAIL}: `)),
        10_000,
      );
      expect(printed).toBe(true);

      const children = descendants(stack.pid);
      for (const name of ["scripts/wrangler-dev.mjs", "executor-node/src/server.ts", "workerd"]) {
        expect(children.some((child) => child.command.includes(name))).toBe(true);
      }
      // Nothing in the launcher runs on SIGKILL: its children notice their stdin pipe closing.
      process.kill(stack.pid, "SIGKILL");
      await stack.exited;
      const survivors = () => children.filter((child) => isAlive(child.pid)).map((child) => child.command);
      expect(await waitUntil(() => survivors().length === 0, 20_000), survivors().join("\n")).toBe(true);
    } finally {
      await stack.stop();
      blocker.close();
    }
  }, 150_000);

  it("stops with every child when `npm start` itself gets SIGTERM (npm's shell execs the launcher)", async () => {
    const npmDataDir = mkdtempSync(join(tmpdir(), "sinas-npm-start-"));
    const npm = spawn("npm", ["start"], {
      env: { ...process.env, SINAS_DATA_DIR: npmDataDir, SINAS_DEVTOOLS: "false" },
      stdio: "ignore",
    });
    const npmPid = npm.pid as number;
    let tree: { pid: number; command: string }[] = [];
    try {
      // The node process (a shell's command line names the script too).
      const launcherOf = () =>
        descendants(npmPid).find(
          (child) => /^\S*node /.test(child.command) && child.command.includes("scripts/start.ts"),
        );
      expect(await waitUntil(() => launcherOf() !== undefined, 30_000)).toBe(true);
      const launcher = launcherOf() as { pid: number; ppid: number; command: string };
      // No shell in between, which would take npm's SIGTERM and leave the launcher running.
      expect(launcher.ppid).toBe(npmPid);
      expect(await waitUntil(() => descendants(launcher.pid).length >= 3, 30_000)).toBe(true);
      tree = [launcher, ...descendants(launcher.pid)];
      npm.kill("SIGTERM");
      const survivors = () => tree.filter((child) => isAlive(child.pid)).map((child) => child.command);
      expect(await waitUntil(() => survivors().length === 0, 30_000), survivors().join("\n")).toBe(true);
    } finally {
      for (const child of [...tree, ...descendants(npmPid)])
        if (isAlive(child.pid)) process.kill(child.pid, "SIGKILL");
      npm.kill("SIGKILL");
      rmSync(npmDataDir, { recursive: true, force: true });
    }
  }, 120_000);

  it("restarts the executor when it dies, reporting its last lines; a dying API stops everything", async () => {
    const stack = await startTestStack();
    try {
      const executor = descendants(stack.pid).find((child) =>
        child.command.includes("executor-node/src/server.ts"),
      );
      expect(executor).toBeDefined();
      process.kill(executor?.pid as number, "SIGKILL");
      const restarted = await waitUntil(
        () => stack.logs().join("\n").includes("restarting executor."),
        10_000,
      );
      expect(restarted).toBe(true);
      expect(stack.logs().join("\n")).toContain("executor was killed by SIGKILL. Last lines:");
      let executorStatus = "";
      for (let attempt = 0; attempt < 100 && executorStatus !== "ok"; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        const health = (await (await stack.fetch("/health")).json()) as {
          checks: { executor: { status: string } };
        };
        executorStatus = health.checks.executor.status;
      }
      expect(executorStatus).toBe("ok");
      const replacement = descendants(stack.pid).find((child) =>
        child.command.includes("executor-node/src/server.ts"),
      );
      expect(replacement?.pid).not.toBe(executor?.pid);

      // The API is not restarted: the launcher reports it with its last lines and stops everything.
      const children = descendants(stack.pid);
      // wrangler (the API) runs on every database kind; pglite only without TEST_DATABASE_URL.
      const api = children.find((child) => child.command.includes("scripts/wrangler-dev.mjs"));
      expect(api).toBeDefined();
      process.kill(api?.pid as number, "SIGKILL");
      expect(await stack.exited).toBe(1);
      expect(stack.logs().join("\n")).toContain("api was killed by SIGKILL. Last lines:");
      expect(await waitUntil(() => children.every((child) => !isAlive(child.pid)), 10_000)).toBe(true);
    } finally {
      await stack.stop();
    }
  }, 150_000);
});
