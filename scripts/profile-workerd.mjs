/**
 * @module A CPU profile of the Worker and its Durable Objects, taken from workerd's own inspector while a stack
 * runs with devtools (`npm start`, or a benchmark or test stack with `SINAS_DEVTOOLS=true`). `perf` mislabels
 * workerd's JavaScript frames; V8's sampling profiler does not. Prints the functions with the most samples
 * (self and inclusive) and writes a `.cpuprofile` that Chrome DevTools opens (Performance panel). `index.js:N`
 * is line N of wrangler's bundle of the Worker, `.wrangler/tmp/dev-XXXXXX/index.js` (the newest).
 *
 * Usage: node scripts/profile-workerd.mjs [--seconds 15] [--out workerd.cpuprofile] [--top 40]
 *
 * workerd listens for the inspector on a port of its own choosing (`--inspector-addr=localhost:0`); the port
 * whose target list names the `core:user:` Worker is the one. With devtools, wrangler restarts workerd once,
 * 15-20 s after a start, and the first connection is sometimes closed at once: both are retried.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import WebSocket from "ws";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "15" },
    out: { type: "string", default: "workerd.cpuprofile" },
    top: { type: "string", default: "40" },
  },
});

/** The inspector targets of every workerd started with an inspector, by port. */
async function findUserWorker() {
  const pids = readdirSync("/proc").filter((entry) => {
    if (!/^\d+$/.test(entry)) return false;
    try {
      return readFileSync(`/proc/${entry}/cmdline`, "utf8").includes("--inspector-addr");
    } catch {
      return false;
    }
  });
  const listening = execFileSync("ss", ["-ltnpH"], { encoding: "utf8" }).split("\n");
  for (const pid of pids) {
    for (const line of listening.filter((row) => row.includes(`pid=${pid},`))) {
      const port = line.trim().split(/\s+/)[3]?.split(":").pop();
      const targets = await fetch(`http://127.0.0.1:${port}/json/list`)
        .then((response) => response.json())
        .catch(() => []);
      // workerd's other port serves the Worker itself (a JSON 404 here, not a target list).
      const target = Array.isArray(targets)
        ? targets.find((candidate) => String(candidate.id).startsWith("core:user:"))
        : undefined;
      if (target) return target.webSocketDebuggerUrl;
    }
  }
  throw new Error("no workerd with an inspector: start the stack with devtools (SINAS_DEVTOOLS=true)");
}

/** One profile over `seconds`, or null when the connection closed first. */
function profileOnce(url, seconds) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    const pending = new Map();
    let nextId = 0;
    const send = (method, params = {}) =>
      new Promise((answer) => {
        pending.set(++nextId, answer);
        socket.send(JSON.stringify({ id: nextId, method, params }));
      });
    socket.on("message", (data) => {
      const message = JSON.parse(String(data));
      pending.get(message.id)?.(message);
      pending.delete(message.id);
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(null));
    socket.on("open", async () => {
      await send("Profiler.enable");
      await send("Profiler.setSamplingInterval", { interval: 200 });
      await send("Profiler.start");
      await new Promise((wait) => setTimeout(wait, seconds * 1000));
      const stopped = await send("Profiler.stop");
      resolve(stopped.result?.profile ?? null);
      socket.close();
    });
  });
}

/** Samples per function, self and inclusive (each function counted once per sample). */
function summarize(profile, top) {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const label = ({ callFrame: frame }) =>
    `${frame.functionName || "(anonymous)"}${frame.url ? ` ${frame.url}:${frame.lineNumber + 1}` : ""}`;
  const self = new Map();
  const inclusive = new Map();
  for (const id of profile.samples) {
    const name = label(nodes.get(id));
    self.set(name, (self.get(name) ?? 0) + 1);
    const seen = new Set();
    for (let at = id; at !== undefined; at = parents.get(at)) seen.add(label(nodes.get(at)));
    for (const name of seen) inclusive.set(name, (inclusive.get(name) ?? 0) + 1);
  }
  const total = profile.samples.length;
  const lines = (counts) =>
    [...counts]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, count]) => `${((100 * count) / total).toFixed(1).padStart(5)}%  ${name}`);
  const seconds = ((profile.endTime - profile.startTime) / 1e6).toFixed(1);
  return [
    `${total} samples over ${seconds} s`,
    "",
    "self:",
    ...lines(self),
    "",
    "inclusive:",
    ...lines(inclusive),
  ];
}

let profile = null;
try {
  for (let attempt = 0; attempt < 3 && profile === null; attempt++) {
    profile = await profileOnce(await findUserWorker(), Number(values.seconds));
  }
  if (profile === null) throw new Error("the inspector closed the connection three times");
} catch (error) {
  console.error(`profile-workerd: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
writeFileSync(values.out, JSON.stringify(profile));
console.log([...summarize(profile, Number(values.top)), "", `written: ${values.out}`].join("\n"));
