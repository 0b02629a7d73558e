/**
 * @module `wrangler dev` for the launcher, through wrangler's own `startWorker` (the function the CLI's
 * `dev` command runs), because the CLI cannot turn two things off:
 * - the DevTools inspector: with it, wrangler enables the runtime's Network domain, and every subrequest of
 *   the Worker (the executor, the Redis bridge, each Postgres socket) becomes four inspector events relayed
 *   to wrangler's Node process and written to its debug log; that cost ~30 ms of CPU per function run;
 * - file watching, so that tests keep running while their sources are edited.
 *
 * Plain JavaScript, run by node itself: loading wrangler through tsx's loader costs seconds per start.
 *
 * Usage: node scripts/wrangler-dev.mjs --port 8787 --persist-to DIR --env-file FILE
 *   [--inspector-port 9229] [--watch] [--log-level log]
 * Stops cleanly on SIGINT or SIGTERM.
 */
import { parseArgs } from "node:util";
import { unstable_startWorker } from "wrangler";

const { values } = parseArgs({
  options: {
    ip: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    "persist-to": { type: "string" },
    "env-file": { type: "string" },
    "inspector-port": { type: "string" },
    watch: { type: "boolean", default: false },
    // "log", not wrangler's usual "info": the Worker's console.log reaches wrangler as a structured log at level
    // "log", which "info" hides, with or without the inspector (console.warn and console.error pass either way).
    "log-level": { type: "string", default: "log" },
  },
});

const inspectorPort = values["inspector-port"] ? Number(values["inspector-port"]) : undefined;
const worker = await unstable_startWorker({
  config: "wrangler.toml",
  envFiles: values["env-file"] ? [values["env-file"]] : [],
  sendMetrics: false,
  dev: {
    server: { hostname: values.ip, port: Number(values.port ?? 8787) },
    inspector: inspectorPort === undefined ? false : { hostname: values.ip, port: inspectorPort },
    persist: values["persist-to"] ?? ".wrangler/state",
    testScheduled: true,
    watch: values.watch,
    liveReload: false,
    logLevel: values["log-level"],
  },
});
await worker.ready;

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await worker.dispose().catch(() => undefined);
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
// Started by the launcher: its pipe on stdin closes when the launcher dies, even by SIGKILL.
if (process.env.SINAS_STOP_WITH_LAUNCHER === "true") process.stdin.on("end", stop).on("error", stop).resume();
