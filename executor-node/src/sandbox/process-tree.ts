/**
 * @module What a local sandbox (bwrap, process) is running, read from Linux's /proc: the processes under the
 * sandbox's own process (every thread's `children` list, walked down) and the CPU time they used. Small
 * synchronous reads, two per process (~50 µs for a bwrap sandbox's three): cheap enough after every job.
 *
 * Used to find what a job left behind in a warm sandbox, where no cgroup bounds it (sandbox-session.ts):
 * processes still running once the job returned, and CPU used while no job runs (a thread left spinning).
 * Outside Linux every answer is empty: nothing is found, nothing is killed.
 */
import { readdirSync, readFileSync } from "node:fs";

/** Linux's USER_HZ, the unit of /proc's CPU times: 100 on every architecture Node runs on. */
const TICK_MS = 10;

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null; // the process or thread ended meanwhile
  }
}

/** Direct children of every thread of `pid` (a child belongs to the thread that forked it). */
function childrenOf(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  return tasks.flatMap((tid) =>
    (readText(`/proc/${pid}/task/${tid}/children`) ?? "").split(" ").filter(Boolean).map(Number),
  );
}

/** State letter and CPU ms from `/proc/<pid>/stat` (the name in parentheses may hold spaces). */
function statOf(pid: number): { state: string; cpuMs: number } | null {
  const stat = readText(`/proc/${pid}/stat`);
  if (!stat) return null;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After the name: state (3rd field of the file), ..., utime (14th), stime (15th).
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { state: fields[0] ?? "?", cpuMs: Number.isFinite(ticks) ? ticks * TICK_MS : 0 };
}

/** Every process under `rootPid` (the root excluded), zombies included. */
export function descendantsOf(rootPid: number): number[] {
  const found: number[] = [];
  const seen = new Set([rootPid]);
  const queue = childrenOf(rootPid);
  while (queue.length > 0) {
    const pid = queue.pop() as number;
    if (seen.has(pid)) continue;
    seen.add(pid);
    found.push(pid);
    queue.push(...childrenOf(pid));
  }
  return found;
}

/** How many of `pids` still run: not zombies (exited, not yet reaped) and not gone. */
export function runningCount(pids: number[]): number {
  return pids.filter((pid) => {
    const state = statOf(pid)?.state;
    return state !== undefined && state !== "Z" && state !== "X";
  }).length;
}

/** User + system CPU ms of `rootPid` and every process under it (all their threads); null once it is gone. */
export function treeCpuMs(rootPid: number): number | null {
  const root = statOf(rootPid);
  if (!root) return null;
  return descendantsOf(rootPid).reduce((sum, pid) => sum + (statOf(pid)?.cpuMs ?? 0), root.cpuMs);
}
