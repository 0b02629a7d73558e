/**
 * @module The `process` driver: the runtime as a plain child process. NO ISOLATION: user code runs with the
 * executor's uid and sees its files and network. Development only; the executor refuses it when
 * NODE_ENV=production. What it does enforce: a clean environment (never the executor's), rlimits on
 * address space (memory), file size, open files and core dumps via `prlimit`, and the timeout (the pool
 * kills the process group). Not enforced: pids (RLIMIT_NPROC would count every process of the executor's
 * uid, and binds nothing for root), network policy, tmpfs size, CPU share. User code can escape the
 * process group with setsid().
 */
import { join } from "node:path";
import { RUNTIME_DIR, RUNTIME_SCRIPT } from "../runtime-files";
import { spawnChildSandbox } from "./child-handle";
import { findPrlimit, limitEnv, prlimitPrefix } from "./limits";
import type { SandboxDriver, SandboxHandle, SandboxSpec } from "./types";

export interface ProcessDriverOptions {
  pythonBin: string;
  runtimeDir?: string;
}

let warned = false;

export function createProcessDriver(options: ProcessDriverOptions): SandboxDriver {
  const runtimeDir = options.runtimeDir ?? RUNTIME_DIR;
  const prlimit = findPrlimit();
  warnOnce();
  return {
    name: "process",
    async available() {
      return true;
    },
    async start(spec: SandboxSpec): Promise<SandboxHandle> {
      const command = [options.pythonBin, "-u", join(runtimeDir, RUNTIME_SCRIPT)];
      const full = prlimit ? [...prlimitPrefix(prlimit, spec.limits, false), ...command] : command;
      return spawnChildSandbox({
        id: spec.id,
        command: full[0] as string,
        args: full.slice(1),
        cwd: spec.socketDir,
        env: {
          PATH: "/usr/local/bin:/usr/bin:/bin",
          ...spec.env,
          ...limitEnv(spec.limits, false),
          ...(spec.packagesDir ? { SINAS_PACKAGES_DIR: spec.packagesDir } : {}),
          SINAS_RUNTIME_SOCKET: join(spec.socketDir, "runtime.sock"),
        },
      });
    },
    async close() {},
  };
}

function warnOnce(): void {
  if (warned) return;
  warned = true;
  console.warn(
    [
      "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
      "!! SANDBOX_DRIVER=process: user functions run WITHOUT ISOLATION, as this executor's user.   !!",
      "!! They can read its files and reach its network. Development only: use docker or bwrap.   !!",
      "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    ].join("\n"),
  );
}
