/**
 * @module Resource limits shared by the local drivers (bwrap, process): the `prlimit` wrapper that sets
 * rlimits before the sandbox's first process starts (so they hold even if the runtime never applies
 * them), and the `SINAS_LIMIT_*` variables the runtime re-applies with setrlimit.
 */
import { accessSync, constants } from "node:fs";
import type { SandboxLimits } from "./types";

const MIB = 1024 * 1024;

/** Open files per sandbox process. */
const NOFILE_LIMIT = 1024;

export function findPrlimit(): string | null {
  for (const candidate of ["/usr/bin/prlimit", "/bin/prlimit", "/usr/sbin/prlimit"]) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return null;
}

/**
 * `prlimit --as=... --fsize=... [--nproc=...] --core=0 --nofile=... --` to put before a command.
 * RLIMIT_NPROC only where it binds per sandbox (bwrap, non-root host uid in its own user namespace).
 */
export function prlimitPrefix(prlimit: string, limits: SandboxLimits, withNproc: boolean): string[] {
  const args = [
    prlimit,
    `--as=${limits.memoryMb * MIB}`,
    `--fsize=${limits.fileSizeMb * MIB}`,
    "--core=0",
    `--nofile=${NOFILE_LIMIT}`,
  ];
  if (withNproc) args.push(`--nproc=${limits.pids}`);
  args.push("--");
  return args;
}

/** The limit variables the runtime applies with setrlimit (PROTOCOL.md §4). */
export function limitEnv(limits: SandboxLimits, withNproc: boolean): Record<string, string> {
  const env: Record<string, string> = {
    SINAS_LIMIT_MEMORY_MB: String(limits.memoryMb),
    SINAS_LIMIT_FILE_MB: String(limits.fileSizeMb),
    // RLIMIT_AS counts address space: without this, glibc reserves 64 MiB per thread arena and a few
    // threads exhaust the limit long before the memory is used.
    MALLOC_ARENA_MAX: "2",
  };
  if (withNproc) env.SINAS_LIMIT_NPROC = String(limits.pids);
  return env;
}
