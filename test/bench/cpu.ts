/**
 * @module CPU time per process during a benchmark (Linux /proc), to tell where a run's cost goes: workerd,
 * wrangler's Node process, PGlite, the WebSocket proxy, the executor, the benchmark's own clients.
 */
import { readdirSync, readFileSync } from "node:fs";

interface ProcessCpu {
  command: string;
  /** The parent's pid. */
  parent: number;
  ticks: number;
}

const TICKS_PER_SECOND = 100;

/** A short name for a process of the stack, from its command line. */
function labelOf(cmdline: string): string {
  const known: [RegExp, string][] = [
    [/workerd.*entry=127\.0\.0\.1:0 /, "workerd (app)"],
    [/workerd/, "workerd (wrangler's proxy)"],
    [/wrangler/, "wrangler (node)"],
    [/scripts\/start\.ts/, "launcher (ws-proxy, redis bridge)"],
    [/pglite/, "pglite"],
    [/executor-node/, "executor"],
    [/python|bwrap|runtime/, "python sandboxes"],
    [/bench\.ts|vitest/, "bench client"],
    [/postgres/, "postgres"],
    [/redis-server/, "redis"],
  ];
  return known.find(([pattern]) => pattern.test(cmdline))?.[1] ?? "other";
}

export function sampleCpu(): Map<number, ProcessCpu> {
  const sample = new Map<number, ProcessCpu>();
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const ticks = Number(fields[11]) + Number(fields[12]);
      const command = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      sample.set(pid, { command, parent: Number(fields[1]), ticks });
    } catch {
      // The process ended between listing and reading.
    }
  }
  return sample;
}

/** CPU milliseconds per unit of work by process kind between two samples, largest first. */
export function cpuPerUnit(before: Map<number, ProcessCpu>, after: Map<number, ProcessCpu>, units: number) {
  const byLabel = new Map<string, number>();
  for (const [pid, end] of after) {
    const ticks = end.ticks - (before.get(pid)?.ticks ?? 0);
    if (ticks <= 0) continue;
    const label = labelOf(end.command);
    byLabel.set(label, (byLabel.get(label) ?? 0) + ticks);
  }
  return [...byLabel]
    .map(([label, ticks]) => ({ label, ms: (ticks * 1000) / TICKS_PER_SECOND / Math.max(units, 1) }))
    .sort((a, b) => b.ms - a.ms);
}

export function formatCpu(rows: { label: string; ms: number }[]): string {
  const total = rows.reduce((sum, row) => sum + row.ms, 0);
  return `${rows.map((row) => `${row.label} ${row.ms.toFixed(1)}`).join(", ")} (total ${total.toFixed(1)} ms)`;
}

/** The machine's CPU time so far (/proc/stat, all cores): busy, idle and stolen ticks. */
export function sampleMachine(): { busy: number; idle: number; steal: number } {
  const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "")
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = fields;
  return { busy: user + nice + system + irq + softirq, idle: idle + iowait, steal };
}

/**
 * How much of the machine's time the hypervisor gave to other guests between two samples: on a virtual machine
 * shared with busy neighbours every figure here is slower, so the bench prints it beside them.
 */
export function formatSteal(
  before: ReturnType<typeof sampleMachine>,
  after: ReturnType<typeof sampleMachine>,
) {
  const busy = after.busy - before.busy;
  const steal = after.steal - before.steal;
  const total = busy + steal + (after.idle - before.idle);
  const percent = (part: number) => ((100 * part) / Math.max(total, 1)).toFixed(0);
  return `Machine during this run: ${percent(busy)}% busy, ${percent(steal)}% stolen by the hypervisor (CPU steal).`;
}
