/**
 * @module Stop latency: a turn is streaming to two viewers (the sender's POST stream and a GET viewer); the
 * time from `POST /chats/{id}/stop` until both streams have ended with `done {status:"stopped"}`. The issue
 * asks for <= 200 ms. A fake LLM in this process holds each reply open after its first chunks.
 */
import { performance } from "node:perf_hooks";
import { startFakeLlm } from "../fixtures/fake-llm";
import { api, type Session } from "../helpers/auth";
import type { TestStack } from "../helpers/stack";
import { ms, percentile } from "./stats";

const TRIALS = Number(process.env.BENCH_CHAT_STOP_TRIALS ?? 20);

/** Reads a stream until `predicate` holds on the text so far; resolves with the whole text when it ends. */
function follow(response: Response, onText: (text: string) => void): Promise<string> {
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = "";
  return (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return text;
      text += decoder.decode(value, { stream: true });
      onText(text);
    }
  })();
}

async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the stream");
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

export async function measureStopLatency(stack: TestStack, session: Session): Promise<string[]> {
  const fake = await startFakeLlm();
  try {
    const provider = await api(stack, session, "POST", "/api/v1/llm-providers", {
      name: "bench-stop",
      provider_type: "openai",
      api_endpoint: fake.openaiUrl,
      default_model: "fake-model",
    });
    const providerId = (provider.body as { id: string }).id;
    await api(stack, session, "POST", "/api/v1/agents", { name: "bench-stop", llm_provider_id: providerId });
    const samples: number[] = [];
    const headers = { "content-type": "application/json", ...session.headers };
    for (let trial = 0; trial < TRIALS; trial++) {
      const chat = await api(stack, session, "POST", "/agents/default/bench-stop/chats", {});
      const chatId = (chat.body as { id: string }).id;
      fake.script({ content: "streaming...", chunks: ["stream", "ing..."], hold: true });
      let senderText = "";
      let viewerText = "";
      const sender = await stack.fetch(`/chats/${chatId}/messages/stream`, {
        method: "POST",
        headers,
        body: JSON.stringify({ content: "talk" }),
      });
      const senderDone = follow(sender, (text) => (senderText = text));
      await until(() => senderText.includes("ing..."));
      const viewer = await stack.fetch(`/chats/${chatId}/stream`, { headers: session.headers });
      const viewerDone = follow(viewer, (text) => (viewerText = text));
      await until(() => viewerText.includes("ing..."));
      const begin = performance.now();
      const stop = stack.fetch(`/chats/${chatId}/stop`, { method: "POST", headers: session.headers });
      await Promise.all([senderDone, viewerDone]);
      samples.push(performance.now() - begin);
      await stop;
      if (!senderText.includes('"stopped"') || !viewerText.includes('"stopped"')) {
        throw new Error("a viewer did not see the stopped end");
      }
    }
    return [
      `\nStop: POST /chats/{id}/stop until both viewers (POST stream + GET viewer) saw done "stopped", ${TRIALS} trials: ` +
        `p50 ${ms(percentile(samples, 0.5))} ms, p95 ${ms(percentile(samples, 0.95))} ms, max ${ms(Math.max(...samples))} ms.`,
    ];
  } finally {
    fake.release();
    await fake.close();
  }
}
