/**
 * @module The chat benchmarks' turns: one streamed through the API (`POST /chats/{id}/messages/stream`, until the
 * first SSE `message` with content, then until `done`), one straight to the fake LLM with the `openai` SDK (the
 * platform's adapter uses it too), and series of them from many clients at once.
 */
import { performance } from "node:perf_hooks";
import type OpenAI from "openai";
import { api, type Session } from "../helpers/auth";
import type { TestStack } from "../helpers/stack";
import { ms, percentile } from "./stats";

export const MODEL = "fake-model";

export interface Sample {
  firstTokenMs: number;
  totalMs: number;
}

export interface Series {
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
export async function platformTurn(
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
export async function directTurn(client: OpenAI, text: string): Promise<Sample> {
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

export interface SeriesOptions {
  /** client `i` starts `i * staggerMs` after the first (default 0: all at once) */
  staggerMs?: number;
  /** rounds before this one run but are not counted (a ramp-up; default 0) */
  countFrom?: number;
}

/** `clients` loops of `rounds` turns each, side by side; `turn(client, round)` runs one. */
export async function runSeries(
  clients: number,
  rounds: number,
  turn: (client: number, round: number) => Promise<Sample>,
  options: SeriesOptions = {},
): Promise<Series> {
  const series: Series = { samples: [], failures: [] };
  const { staggerMs = 0, countFrom = 0 } = options;
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      if (staggerMs > 0) await new Promise((resolve) => setTimeout(resolve, client * staggerMs));
      for (let round = 0; round < rounds; round++) {
        try {
          const sample = await turn(client, round);
          if (round >= countFrom) series.samples.push(sample);
        } catch (error) {
          series.failures.push(error instanceof Error ? error.message : String(error));
        }
      }
    }),
  );
  return series;
}

/** A provider pointing at a fake LLM and an agent using it; returns nothing, fails loudly. */
export async function createBenchAgent(
  stack: TestStack,
  session: Session,
  name: string,
  openaiUrl: string,
): Promise<void> {
  const provider = await api(stack, session, "POST", "/api/v1/llm-providers", {
    name,
    provider_type: "openai",
    api_key: "sk-bench",
    api_endpoint: openaiUrl,
    default_model: MODEL,
  });
  if (provider.status !== 201) throw new Error(`provider not created: ${JSON.stringify(provider.body)}`);
  const agent = await api(stack, session, "POST", "/api/v1/agents", {
    namespace: "default",
    name,
    llm_provider_id: (provider.body as { id: string }).id,
    model: MODEL,
    system_prompt: "You are a benchmark. Answer briefly.",
  });
  if (agent.status !== 201) throw new Error(`agent not created: ${JSON.stringify(agent.body)}`);
}

export async function createChats(
  stack: TestStack,
  session: Session,
  agent: string,
  count: number,
): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < count; start += 10) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(10, count - start) }, async (_, index) => {
        const chat = await api(stack, session, "POST", `/agents/default/${agent}/chats`, {
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

export const TABLE_HEAD = [
  "| path | clients | turns | failed | first token p50 ms | first token p95 ms | whole turn p50 ms | whole turn p95 ms |",
  "|---|---|---|---|---|---|---|---|",
];

export function row(path: string, clients: number, series: Series): string {
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
export function added(platform: Series, direct: Series, fraction: number): string {
  const first = (series: Series) =>
    percentile(
      series.samples.map((sample) => sample.firstTokenMs),
      fraction,
    );
  return ms(first(platform) - first(direct));
}

/** The first failure and the stack's last error lines, when anything failed. */
export function failureLines(stack: TestStack, failures: string[]): string[] {
  if (failures.length === 0) return [];
  return [
    `\nFirst failure: ${failures[0]}`,
    "Last error lines of the stack:",
    ...stack
      .logs()
      .filter((line) => /error|exception|uncaught/i.test(line))
      .slice(-8),
  ];
}
