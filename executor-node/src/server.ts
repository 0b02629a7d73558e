/**
 * @module The executor service's entry point (`node --import tsx executor-node/src/server.ts`): reads the
 * configuration, starts the executor, prints `executor listening on http://HOST:PORT (driver: X)`, and on
 * SIGINT/SIGTERM shuts down gracefully (running jobs fail with a clear result, every sandbox is killed).
 */
import { ConfigError, loadConfig } from "./config";
import { type RunningExecutor, startExecutor } from "./executor";

let executor: RunningExecutor | null = null;
let stopping = false;

function shutdown(signal: NodeJS.Signals): void {
  if (stopping) return;
  stopping = true;
  console.log(`executor: ${signal}, shutting down`);
  const force = setTimeout(() => process.exit(1), 10_000);
  force.unref();
  void (executor?.close() ?? Promise.resolve()).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error("executor: shutdown failed:", error);
      process.exit(1);
    },
  );
}

async function main(): Promise<void> {
  // Before anything is printed: whoever reads the listening line may signal at once.
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => shutdown(signal));
  // Started by the local launcher: its pipe on stdin closes when the launcher dies, even by SIGKILL.
  if (process.env.SINAS_STOP_WITH_LAUNCHER === "true") {
    const launcherGone = () => shutdown("SIGTERM");
    process.stdin.on("end", launcherGone).on("error", launcherGone).resume();
  }
  const config = loadConfig();
  const started = await startExecutor(config);
  executor = started;
  if (stopping) {
    await started.close();
    return;
  }
  console.log(`executor listening on ${started.url} (driver: ${started.driver})`);
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) console.error(`executor: ${error.message}`);
  else console.error("executor: failed to start:", error);
  process.exit(1);
});
