/**
 * @module
 * The fake LLM server (test/fixtures/fake-llm.ts) for the local stack: `SINAS_FAKE_LLM=true npm start` runs
 * it next to the API (port FAKE_LLM_PORT, default 8790), so a provider can be created without a real key.
 * With nothing scripted it echoes `You said: <last user text>` in 3 streamed chunks.
 *
 * @example
 * ```sh
 * tsx scripts/fake-llm.ts --port 8790
 * ```
 */
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { type FakeLlm, startFakeLlm } from "../test/fixtures/fake-llm";
import { findPort } from "./lib/ports";

export const DEFAULT_FAKE_LLM_PORT = 8790;

/** Starts the fake on `port` when free (else on a free one). */
export async function startLocalFakeLlm(port: number): Promise<FakeLlm> {
  return startFakeLlm({ port: await findPort(port) });
}

/** How to point a provider at it, for the launcher's summary and the CLI. */
export function describeFakeLlm(url: string): string {
  return `${url} (echoes; provider api_endpoint ${url}/v1 for openai/mistral/ollama, ${url} for anthropic)`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { port: { type: "string" } } });
  const fake = await startLocalFakeLlm(Number(values.port ?? DEFAULT_FAKE_LLM_PORT));
  console.log(`Fake LLM on ${describeFakeLlm(fake.url)}`);
  const stop = () => void fake.close().then(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
