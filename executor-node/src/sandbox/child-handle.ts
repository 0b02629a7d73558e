/**
 * @module A SandboxHandle over a local child process (the bwrap and process drivers): spawns it in its own
 * process group, kills the whole group, and reports how it ended.
 */
import { type ChildProcess, spawn } from "node:child_process";
import type { SandboxExit, SandboxHandle } from "./types";

/** How much of a sandbox's own stderr (runtime crashes, not user output) reaches the executor's log. */
const STDERR_LOG_LIMIT = 2048;

export interface ChildSandboxOptions {
  id: string;
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  uid?: number;
  gid?: number;
}

export function spawnChildSandbox(options: ChildSandboxOptions): Promise<SandboxHandle> {
  const child = spawn(options.command, options.args, {
    env: options.env,
    cwd: options.cwd,
    uid: options.uid,
    gid: options.gid,
    detached: true,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let logged = 0;
  child.stderr?.on("data", (data: Buffer) => {
    if (logged >= STDERR_LOG_LIMIT) return;
    const text = data.subarray(0, STDERR_LOG_LIMIT - logged).toString("utf8");
    logged += data.length;
    for (const line of text.split("\n")) if (line.trim()) console.error(`[sandbox ${options.id}] ${line}`);
    if (logged >= STDERR_LOG_LIMIT) console.error(`[sandbox ${options.id}] (further stderr not shown)`);
  });
  const exited = new Promise<SandboxExit>((resolve) => {
    child.once("error", (error) =>
      resolve({ code: null, reason: `failed to start: ${error.message}`, oomKilled: false }),
    );
    child.once("exit", (code, signal) =>
      resolve({
        code,
        reason: signal ? `killed by ${signal}` : `exited with code ${code ?? "unknown"}`,
        oomKilled: false,
      }),
    );
  });
  return new Promise((resolve, reject) => {
    child.once("spawn", () => resolve(makeHandle(options.id, child, exited)));
    child.once("error", reject);
  });
}

function makeHandle(id: string, child: ChildProcess, exited: Promise<SandboxExit>): SandboxHandle {
  let done = false;
  void exited.then(() => {
    done = true;
  });
  return {
    id,
    exited,
    async kill() {
      if (!done && child.pid !== undefined) {
        try {
          process.kill(-child.pid, "SIGKILL"); // the whole process group
        } catch {
          child.kill("SIGKILL");
        }
      }
      await exited;
    },
    localPid() {
      return done ? null : (child.pid ?? null);
    },
  };
}
