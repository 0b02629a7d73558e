/**
 * @module Process-tree inspection through /proc (Linux), to prove the launcher leaves nothing behind.
 */
import { readdirSync, readFileSync } from "node:fs";

interface ProcessEntry {
  pid: number;
  ppid: number;
  command: string;
}

function readProcesses(): ProcessEntry[] {
  const entries: ProcessEntry[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // The command name may contain spaces and parentheses; fields resume after the last ")".
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const command = readFileSync(`/proc/${name}/cmdline`, "utf8").replaceAll("\0", " ").trim();
      entries.push({ pid: Number(name), ppid: Number(fields[1]), command });
    } catch {
      // The process ended while we looked.
    }
  }
  return entries;
}

/** Every live descendant of `rootPid`, with its command line. */
export function descendants(rootPid: number): ProcessEntry[] {
  const all = readProcesses();
  const found: ProcessEntry[] = [];
  const queue = [rootPid];
  while (queue.length > 0) {
    const parent = queue.shift() as number;
    for (const entry of all) {
      if (entry.ppid === parent) {
        found.push(entry);
        queue.push(entry.pid);
      }
    }
  }
  return found;
}

export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // A zombie has exited; only its parent's bookkeeping remains.
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}
