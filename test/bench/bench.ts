/**
 * @module `npm run bench`: timing goals, measured on the real stack (never asserted in tests).
 *
 * Boots stacks like the integration tests (embedded defaults, or TEST_DATABASE_URL / TEST_REDIS_URL) and
 * prints Markdown tables. Loads are bounded in count and time and stay on this machine.
 * `npm run bench -- http`, `-- functions`, `-- webhooks`, `-- chat` or `-- runtime` runs one part.
 */
import { performance } from "node:perf_hooks";
import { IDENTITY_VARS } from "../helpers/auth";
import { startTestStack, stopAllStacks } from "../helpers/stack";
import { runChatBenchmarks } from "./chat";
import { formatSteal, sampleMachine } from "./cpu";
import { runFunctionBenchmarks } from "./functions";
import { runHttpBenchmarks } from "./http";
import { runRuntimeBenchmarks } from "./runtime";
import { runWebhookBenchmarks } from "./webhooks";

// Interrupted (Ctrl-C, a kill): stop the stacks first, so that no process or data folder outlives the run.
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  process.once(signal, () => void stopAllStacks().finally(() => process.exit(code)));
}

const parts = process.argv.slice(2);
const wants = (part: string) => parts.length === 0 || parts.includes(part);
const machineBefore = sampleMachine();

if (wants("http")) {
  const bootStarted = performance.now();
  const stack = await startTestStack({ workerVars: { ...IDENTITY_VARS } });
  const bootSeconds = (performance.now() - bootStarted) / 1000;
  try {
    console.log(
      `\nAPI (${stack.database.kind}, Redis ${stack.redisMode}); stack ready in ${bootSeconds.toFixed(1)} s\n`,
    );
    console.log((await runHttpBenchmarks(stack)).join("\n"));
  } finally {
    await stack.stop();
  }
}
if (wants("functions")) {
  console.log("\nFunction execution per sandbox driver\n");
  console.log((await runFunctionBenchmarks(["docker", "bwrap", "process"])).join("\n"));
}
if (wants("webhooks")) {
  console.log("\nWebhooks: async calls accepted and completed, and the executor called directly\n");
  const drivers = process.env.BENCH_DRIVERS?.split(",");
  console.log((await runWebhookBenchmarks(drivers)).join("\n"));
}
if (wants("chat")) {
  console.log("\nChat: time to first token through the platform, against the fake LLM called directly\n");
  console.log((await runChatBenchmarks()).join("\n"));
}
if (wants("runtime")) {
  console.log("\nThe runtime's floor: workerd's CPU per streamed piece read by a bare Worker\n");
  console.log((await runRuntimeBenchmarks()).join("\n"));
}
console.log(`\n${formatSteal(machineBefore, sampleMachine())}`);
