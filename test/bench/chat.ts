/**
 * @module Platform-added time to first token: a chat turn streamed through the API
 * (`POST /chats/{id}/messages/stream`, first SSE `message` event with content) against the same fake LLM called
 * directly with the `openai` SDK (first content delta). The fake runs in the launcher (`SINAS_FAKE_LLM=true`) in
 * echo mode, so both paths get the same instant answer; the difference is what the platform adds. Measured one
 * turn at a time, then with many chats streaming at once.
 */
import { performance } from "node:perf_hooks";
import OpenAI from "openai";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL } from "../helpers/auth";
import { startTestStack, type TestStack } from "../helpers/stack";
import { measureStopLatency } from "./chat-stop";
import { cpuPerUnit, formatCpu, sampleCpu } from "./cpu";
import { ms, percentile } from "./stats";

const SAMPLES = Number(process.env.BENCH_CHAT_SAMPLES ?? 50);
const CONCURRENCY = Number(process.env.BENCH_CHAT_CONCURRENCY ?? 100);
/** Turns each concurrent chat sends, one after the other. */
const ROUNDS = Number(process.env.BENCH_CHAT_ROUNDS ?? 2);
const WARMUP_TURNS = 5;
const MODEL = "fake-model";
const AGENT = "bench";

interface Sample {
  firstTokenMs: number;
  totalMs: number;
}

interface Series {
  samples: Sample[];
  failures: string[];
}

interface SseFrame {
  event: string;
  data: string;
}

/** SSE frames of a response body (`event:` defaults to `message`; comments and `id:` are skipped). */
async function* sseFrames(body: ReadableStream<Uint8Array>): AsyncGenerator<SseFrame> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replaceAll("\r\n", "\n");
      let end = buffer.indexOf("\n\n");
      while (end !== -1) {
        const frame = { event: "message", data: "" };
        const data: string[] = [];
        for (const line of buffer.slice(0, end).split("\n")) {
          if (line.startsWith("event:")) frame.event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf("\n\n");
        if (data.length > 0) yield { event: frame.event, data: data.join("\n") };
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/** One streamed turn through the API: until the first content chunk, then until `done`. */
async function platformTurn(
  stack: TestStack,
  session: Session,
  chatId: string,
  text: string,
): Promise<Sample> {
  const begin = performance.now();
  const response = await stack.fetch(`/chats/${chatId}/messages/stream`, {
    method: "POST",
    headers: session.headers,
    body: JSON.stringify({ content: text }),
  });
  if (response.status !== 200 || !response.body) {
    throw new Error(`stream answered ${response.status}: ${(await response.text()).slice(0, 200)}`);
  }
  let firstTokenMs = Number.NaN;
  const seen: string[] = [];
  for await (const frame of sseFrames(response.body)) {
    seen.push(`${frame.event} ${frame.data.slice(0, 120)}`);
    if (frame.event === "error") throw new Error(`SSE error: ${frame.data.slice(0, 200)}`);
    if (frame.event === "done") break;
    if (frame.event === "message" && Number.isNaN(firstTokenMs)) {
      const chunk = JSON.parse(frame.data) as { content?: unknown };
      if (typeof chunk.content === "string" && chunk.content.length > 0) {
        firstTokenMs = performance.now() - begin;
      }
    }
  }
  if (Number.isNaN(firstTokenMs)) {
    throw new Error(`the turn ended without content; its events: ${seen.slice(-4).join(" | ") || "none"}`);
  }
  return { firstTokenMs, totalMs: performance.now() - begin };
}

/** The same question straight to the fake with the SDK the platform's adapter uses. */
async function directTurn(client: OpenAI, text: string): Promise<Sample> {
  const begin = performance.now();
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: text }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let firstTokenMs = Number.NaN;
  for await (const chunk of stream) {
    if (Number.isNaN(firstTokenMs) && chunk.choices[0]?.delta.content)
      firstTokenMs = performance.now() - begin;
  }
  if (Number.isNaN(firstTokenMs)) throw new Error("no content delta");
  return { firstTokenMs, totalMs: performance.now() - begin };
}

/** `clients` loops of `rounds` turns each, all at once; `turn(client, round)` runs one. */
async function runSeries(
  clients: number,
  rounds: number,
  turn: (client: number, round: number) => Promise<Sample>,
): Promise<Series> {
  const series: Series = { samples: [], failures: [] };
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      for (let round = 0; round < rounds; round++) {
        try {
          series.samples.push(await turn(client, round));
        } catch (error) {
          series.failures.push(error instanceof Error ? error.message : String(error));
        }
      }
    }),
  );
  return series;
}

async function setUp(stack: TestStack, session: Session): Promise<void> {
  if (!stack.fakeLlmUrl) throw new Error("the launcher did not start the fake LLM (SINAS_FAKE_LLM=true)");
  const provider = await api(stack, session, "POST", "/api/v1/llm-providers", {
    name: "bench-fake",
    provider_type: "openai",
    api_key: "sk-bench",
    api_endpoint: `${stack.fakeLlmUrl}/v1`,
    default_model: MODEL,
    is_default: true,
  });
  if (provider.status !== 201) throw new Error(`provider not created: ${JSON.stringify(provider.body)}`);
  const agent = await api(stack, session, "POST", "/api/v1/agents", {
    namespace: "default",
    name: AGENT,
    llm_provider_id: (provider.body as { id: string }).id,
    model: MODEL,
    system_prompt: "You are a benchmark. Answer briefly.",
  });
  if (agent.status !== 201) throw new Error(`agent not created: ${JSON.stringify(agent.body)}`);
}

async function createChats(stack: TestStack, session: Session, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < count; start += 10) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(10, count - start) }, async (_, index) => {
        const chat = await api(stack, session, "POST", `/agents/default/${AGENT}/chats`, {
          title: `bench ${start + index}`,
        });
        if (chat.status !== 200 && chat.status !== 201) {
          throw new Error(`chat not created: ${chat.status} ${JSON.stringify(chat.body)}`);
        }
        return (chat.body as { id: string }).id;
      }),
    );
    ids.push(...batch);
  }
  return ids;
}

function row(path: string, clients: number, series: Series): string {
  const first = series.samples.map((sample) => sample.firstTokenMs);
  const total = series.samples.map((sample) => sample.totalMs);
  const cells = [
    path,
    String(clients),
    String(series.samples.length),
    String(series.failures.length),
    ms(percentile(first, 0.5)),
    ms(percentile(first, 0.95)),
    ms(percentile(total, 0.5)),
    ms(percentile(total, 0.95)),
  ];
  return `| ${cells.join(" | ")} |`;
}

/** Platform minus direct, per percentile (a difference of percentiles, not a percentile of differences). */
function added(platform: Series, direct: Series, fraction: number): string {
  const first = (series: Series) =>
    percentile(
      series.samples.map((sample) => sample.firstTokenMs),
      fraction,
    );
  return ms(first(platform) - first(direct));
}

export async function runChatBenchmarks(): Promise<string[]> {
  const stack = await startTestStack({
    workerVars: { ...IDENTITY_VARS },
    env: { SINAS_FAKE_LLM: "true", FAKE_LLM_PORT: "0" },
  });
  try {
    const session = await login(stack, SUPERADMIN_EMAIL);
    await setUp(stack, session);
    const client = new OpenAI({ baseURL: `${stack.fakeLlmUrl}/v1`, apiKey: "sk-bench", maxRetries: 0 });
    const sequentialChats = await createChats(stack, session, WARMUP_TURNS + SAMPLES);
    const concurrentChats = await createChats(stack, session, CONCURRENCY);
    const say = (client: number, round: number) => `bench message ${client}.${round}`;

    // Warm the Worker, the Durable Objects' code paths and the fake before counting.
    await runSeries(1, WARMUP_TURNS, (_, round) =>
      platformTurn(stack, session, sequentialChats[round] as string, say(0, round)),
    );
    await runSeries(1, WARMUP_TURNS, (_, round) => directTurn(client, say(0, round)));

    const directAlone = await runSeries(1, SAMPLES, (_, round) => directTurn(client, say(0, round)));
    const platformAlone = await runSeries(1, SAMPLES, (_, round) =>
      platformTurn(stack, session, sequentialChats[WARMUP_TURNS + round] as string, say(0, round)),
    );
    // Follow-up turns in one chat: its ChatSession object (and its SQLite storage) already exists.
    const followUps = await runSeries(1, SAMPLES, (_, round) =>
      platformTurn(stack, session, sequentialChats[0] as string, say(1, round)),
    );
    const directLoaded = await runSeries(CONCURRENCY, ROUNDS, (index, round) =>
      directTurn(client, say(index, round)),
    );
    const cpuBefore = sampleCpu();
    const platformLoaded = await runSeries(CONCURRENCY, ROUNDS, (index, round) =>
      platformTurn(stack, session, concurrentChats[index] as string, say(index, round)),
    );
    const loadedCpu = formatCpu(cpuPerUnit(cpuBefore, sampleCpu(), platformLoaded.samples.length));

    const failures = [...platformAlone.failures, ...followUps.failures, ...platformLoaded.failures];
    const stopLines = await measureStopLatency(stack, session);
    return [
      `Stack: ${stack.database.kind}, Redis ${stack.redisMode}; fake LLM in echo mode (3 chunks, no delay). ` +
        `Alone: ${SAMPLES} turns one after the other; loaded: ${CONCURRENCY} chats x ${ROUNDS} turns at once.\n`,
      "| path | clients | turns | failed | first token p50 ms | first token p95 ms | whole turn p50 ms | whole turn p95 ms |",
      "|---|---|---|---|---|---|---|---|",
      row("fake LLM direct (openai SDK)", 1, directAlone),
      row("POST /chats/{id}/messages/stream, first turn of a new chat", 1, platformAlone),
      row("POST /chats/{id}/messages/stream, follow-up turns of one chat", 1, followUps),
      row("fake LLM direct (openai SDK)", CONCURRENCY, directLoaded),
      row("POST /chats/{id}/messages/stream", CONCURRENCY, platformLoaded),
      "",
      `Platform-added time to first token: alone p50 ${added(platformAlone, directAlone, 0.5)} ms, ` +
        `p95 ${added(platformAlone, directAlone, 0.95)} ms (follow-up turns: p50 ${added(followUps, directAlone, 0.5)} ms, ` +
        `p95 ${added(followUps, directAlone, 0.95)} ms); ${CONCURRENCY} concurrent chats p50 ` +
        `${added(platformLoaded, directLoaded, 0.5)} ms, p95 ${added(platformLoaded, directLoaded, 0.95)} ms.`,
      `CPU ms per streamed turn under load (whole turn, all processes): ${loadedCpu}.`,
      ...stopLines,
      ...(failures.length > 0
        ? [
            `\nFirst failure: ${failures[0]}`,
            "Last error lines of the stack:",
            ...stack
              .logs()
              .filter((line) => /error|exception|uncaught/i.test(line))
              .slice(-8),
          ]
        : []),
    ];
  } finally {
    await stack.stop();
  }
}
