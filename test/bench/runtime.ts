/**
 * @module The runtime's own floor for streamed answers: workerd's CPU per piece of an event stream read by a
 * Worker, with no code of ours in the way. A model streams its answer as small pieces (a token, ~150 bytes of
 * SSE each, 50-100 a second); every piece arrives as its own network read, and a Durable Object reading it pays
 * workerd's I/O machinery for it. The chat goal (100 chats streaming at once, README: Chat) spends its CPU on
 * one workerd thread, so this floor says how much of that thread the reads alone take on this machine.
 *
 * A Node server streams `BENCH_RUNTIME_PIECES` OpenAI-style chunks 1 ms apart; a bare Worker in Miniflare
 * (workerd, as `wrangler dev` runs it) reads the response: whole (`text()`, nothing returns to JavaScript per
 * piece), with `getReader().read()`, and with `for await` (the body's async iterator, which the provider SDKs
 * use). workerd's CPU time comes from /proc; each mode runs `ROUNDS` times, in turns, and the median counts.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Miniflare } from "miniflare";
import { sampleCpu } from "./cpu";
import { percentile } from "./stats";

const PIECES = Number(process.env.BENCH_RUNTIME_PIECES ?? 4000);
const ROUNDS = 3;
const PIECE = `data: ${JSON.stringify({
  id: "chatcmpl-bench",
  object: "chat.completion.chunk",
  created: 1,
  model: "fake-model",
  choices: [{ index: 0, delta: { content: " lorem" }, finish_reason: null }],
})}\n\n`;

const MODES = {
  "text()": "await response.text();",
  "getReader().read()":
    "const reader = response.body.getReader(); for (;;) { const { done } = await reader.read(); if (done) break; }",
  "for await (body's async iterator)": "for await (const _ of response.body) {}",
} as const;
type Mode = keyof typeof MODES;

const WORKER = `export default {
  async fetch(request) {
    const { mode, source } = Object.fromEntries(new URL(request.url).searchParams);
    const response = await fetch(source);
    switch (mode) {
${Object.entries(MODES)
  .map(([, code], index) => `      case "${index}": { ${code} break; }`)
  .join("\n")}
    }
    return new Response("ok");
  },
};`;

/** Streams `PIECES` pieces 1 ms apart, each its own write (and so its own HTTP chunk). */
async function startPieceServer() {
  const server = createServer((_request, response) => {
    response.writeHead(200, { "content-type": "text/event-stream" });
    let sent = 0;
    const next = () => {
      if (sent++ >= PIECES) return void response.end();
      response.write(PIECE);
      setTimeout(next, 1);
    };
    next();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, close: () => server.close() };
}

/** CPU ticks (1/100 s) of this process's workerd children (Miniflare's; not a stack's running beside). */
function workerdTicks(): number {
  let ticks = 0;
  for (const child of sampleCpu().values()) {
    if (child.parent === process.pid && child.command.includes("workerd")) ticks += child.ticks;
  }
  return ticks;
}

const median = (values: number[]) => percentile(values, 0.5);

export async function runRuntimeBenchmarks(): Promise<string[]> {
  const source = await startPieceServer();
  const worker = new Miniflare({ modules: true, script: WORKER, compatibilityDate: "2025-09-01" });
  try {
    const url = await worker.ready;
    const modes = Object.keys(MODES) as Mode[];
    const perPiece = new Map<Mode, number[]>(modes.map((mode) => [mode, []]));
    for (let round = 0; round < ROUNDS + 1; round++) {
      for (const [index, mode] of modes.entries()) {
        const before = workerdTicks();
        const query = new URLSearchParams({ mode: String(index), source: source.url });
        const response = await fetch(new URL(`/?${query}`, url));
        if ((await response.text()) !== "ok") throw new Error(`the Worker failed reading with ${mode}`);
        // The first round warms the JIT and is not counted.
        if (round > 0) perPiece.get(mode)?.push(((workerdTicks() - before) * 10_000) / PIECES);
      }
    }
    const floor = median(perPiece.get("text()") ?? []);
    const iterated = median(perPiece.get("for await (body's async iterator)") ?? []);
    // 100 chats streaming 1 s answers of 50 pieces: 5000 pieces a second on the one thread.
    const share = (microseconds: number) => `${((microseconds * 5000) / 10_000).toFixed(0)}%`;
    return [
      `${PIECES} SSE pieces of ${PIECE.length} bytes, 1 ms apart, read by a bare Worker in Miniflare (workerd); median of ${ROUNDS} rounds.\n`,
      "| read | workerd CPU µs per piece |",
      "|---|---|",
      ...modes.map((mode) => `| ${mode} | ${median(perPiece.get(mode) ?? []).toFixed(0)} |`),
      "",
      `- 100 chats streaming 50 pieces a second each (the chat goal's load) are 5000 pieces a second: the reads ` +
        `alone take ${share(floor)} of workerd's one thread at the floor and ${share(iterated)} through the ` +
        "body's async iterator, before any code of ours runs.",
    ];
  } finally {
    await worker.dispose();
    source.close();
  }
}
