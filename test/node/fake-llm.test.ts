/**
 * The fake LLM server, driven by the real `openai` and `@anthropic-ai/sdk` clients: if the SDKs parse what it
 * sends (plain, streamed, tool calls in fragments, errors, usage), the adapters tested against it see the
 * same wire format as the real providers.
 */
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type FakeLlm, startFakeLlm } from "../fixtures/fake-llm";

let fake: FakeLlm;
let openai: OpenAI;
let anthropic: Anthropic;

beforeAll(async () => {
  fake = await startFakeLlm();
  openai = new OpenAI({ baseURL: fake.openaiUrl, apiKey: "sk-test", maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: fake.url, apiKey: "ak-test", maxRetries: 0 });
});
afterAll(() => fake.close());
afterEach(() => {
  fake.release();
  fake.reset();
});

const weatherCall = {
  id: "call_1",
  name: "get_weather",
  arguments: '{"city":"Paris","unit":"c"}',
  fragments: ['{"ci', 'ty":"Pa', 'ris","unit":"c"}'],
};

describe("OpenAI Chat Completions", () => {
  it("completes with the scripted content, usage and recorded request", async () => {
    fake.script({ content: "Hello there", usage: { prompt_tokens: 7, completion_tokens: 3 } });
    const completion = await openai.chat.completions.create({
      model: "gpt-test",
      messages: [{ role: "user", content: "Hi" }],
      temperature: 0,
    });
    expect(completion.object).toBe("chat.completion");
    expect(completion.model).toBe("gpt-test");
    expect(completion.choices[0]?.message).toMatchObject({ role: "assistant", content: "Hello there" });
    expect(completion.choices[0]?.finish_reason).toBe("stop");
    expect(completion.usage).toEqual({ prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
    const [request] = fake.requests;
    expect(request?.api).toBe("openai");
    expect(request?.path).toBe("/v1/chat/completions");
    expect(request?.headers.authorization).toBe("Bearer sk-test");
    expect(request?.body).toMatchObject({ model: "gpt-test", temperature: 0, messages: [{ content: "Hi" }] });
  });

  it("streams content deltas, then finish_reason and a usage chunk when asked", async () => {
    fake.script({ chunks: ["Hel", "lo", "!"], usage: { prompt_tokens: 5, completion_tokens: 2 } });
    const stream = await openai.chat.completions.create({
      model: "gpt-test",
      messages: [{ role: "user", content: "Hi" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((chunk) => chunk.object === "chat.completion.chunk")).toBe(true);
    const deltas = chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.delta.content ?? ""));
    expect(deltas.filter(Boolean)).toEqual(["Hel", "lo", "!"]);
    expect(chunks[0]?.choices[0]?.delta.role).toBe("assistant");
    expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe("stop");
    expect(chunks.at(-1)?.choices).toEqual([]);
    expect(chunks.at(-1)?.usage).toEqual({ prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 });
  });

  it("sends no usage chunk without stream_options.include_usage", async () => {
    fake.script({ content: "abc" });
    const stream = await openai.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe("stop");
    expect(chunks.some((chunk) => chunk.usage)).toBe(false);
  });

  it("returns tool calls, plain and streamed in argument fragments", async () => {
    const second = { id: "call_2", name: "noop", arguments: "{}" };
    fake.script({ tool_calls: [weatherCall, second] }, { tool_calls: [weatherCall, second] });
    const tools = [
      {
        type: "function" as const,
        function: { name: "get_weather", description: "Weather", parameters: { type: "object" } },
      },
    ];
    const plain = await openai.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "Weather?" }],
      tools,
    });
    expect(plain.choices[0]?.finish_reason).toBe("tool_calls");
    expect(plain.choices[0]?.message.content).toBeNull();
    expect(plain.choices[0]?.message.tool_calls).toEqual([
      { id: "call_1", type: "function", function: { name: "get_weather", arguments: weatherCall.arguments } },
      { id: "call_2", type: "function", function: { name: "noop", arguments: "{}" } },
    ]);

    const runner = openai.chat.completions.stream({
      model: "m",
      messages: [{ role: "user", content: "Weather?" }],
      tools,
    });
    const fragments: string[] = [];
    for await (const chunk of runner) {
      for (const call of chunk.choices[0]?.delta.tool_calls ?? []) {
        if (call.index === 0 && call.function?.arguments) fragments.push(call.function.arguments);
      }
    }
    expect(fragments).toEqual(weatherCall.fragments);
    const final = await runner.finalChatCompletion();
    expect(final.choices[0]?.finish_reason).toBe("tool_calls");
    expect(final.choices[0]?.message.tool_calls).toMatchObject([
      { id: "call_1", function: { name: "get_weather", arguments: weatherCall.arguments } },
      { id: "call_2", function: { name: "noop", arguments: "{}" } },
    ]);
    expect(fake.requests[1]?.body.tools).toEqual(tools);
  });

  it("answers scripted errors with the status and OpenAI's error shape", async () => {
    fake.script({ status: 401, error: "Incorrect API key provided" }, { status: 500, error: "boom" });
    const unauthorized = await openai.chat.completions
      .create({ model: "m", messages: [{ role: "user", content: "x" }] })
      .catch((error: unknown) => error);
    expect(unauthorized).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((unauthorized as InstanceType<typeof OpenAI.APIError>).status).toBe(401);
    expect((unauthorized as Error).message).toContain("Incorrect API key provided");
    const failed = await openai.chat.completions
      .create({ model: "m", messages: [{ role: "user", content: "x" }], stream: true })
      .catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(OpenAI.InternalServerError);
    expect((failed as InstanceType<typeof OpenAI.APIError>).status).toBe(500);
  });

  it("serves /chat/completions without /v1 and lists a model", async () => {
    const bare = new OpenAI({ baseURL: fake.url, apiKey: "k", maxRetries: 0 });
    fake.script({ content: "ok" });
    const completion = await bare.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "x" }],
    });
    expect(completion.choices[0]?.message.content).toBe("ok");
    expect(fake.requests[0]?.path).toBe("/chat/completions");
    const models = await openai.models.list();
    expect(models.data.map((model) => model.id)).toEqual(["fake-model"]);
  });
});

describe("Anthropic Messages", () => {
  it("completes with text and tool_use blocks, mapped stop_reason and usage", async () => {
    fake.script(
      { content: "Hi!", usage: { prompt_tokens: 11, completion_tokens: 2 } },
      { content: "Checking.", tool_calls: [weatherCall] },
      { content: "cut", finish_reason: "length" },
    );
    const params = {
      model: "claude-test",
      max_tokens: 100,
      system: "Be brief",
      messages: [{ role: "user" as const, content: "Hello" }],
    };
    const message = await anthropic.messages.create(params);
    expect(message.type).toBe("message");
    expect(message.content).toEqual([{ type: "text", text: "Hi!" }]);
    expect(message.stop_reason).toBe("end_turn");
    expect(message.usage).toMatchObject({ input_tokens: 11, output_tokens: 2 });

    const withTool = await anthropic.messages.create(params);
    expect(withTool.stop_reason).toBe("tool_use");
    expect(withTool.content).toEqual([
      { type: "text", text: "Checking." },
      { type: "tool_use", id: "call_1", name: "get_weather", input: { city: "Paris", unit: "c" } },
    ]);
    expect((await anthropic.messages.create(params)).stop_reason).toBe("max_tokens");

    const [request] = fake.requests;
    expect(request?.api).toBe("anthropic");
    expect(request?.path).toBe("/v1/messages");
    // SDK 1.x sends the key as a bearer token (older ones as x-api-key): the fake records either.
    expect(request?.headers["x-api-key"] ?? request?.headers.authorization).toMatch(/ak-test$/);
    expect(request?.headers["anthropic-version"]).toBeTruthy();
    expect(request?.body).toMatchObject({ system: "Be brief", max_tokens: 100 });
  });

  it("streams text deltas and tool input in fragments the SDK reassembles", async () => {
    fake.script({
      chunks: ["Let me ", "check."],
      tool_calls: [weatherCall],
      usage: { prompt_tokens: 9, completion_tokens: 4 },
    });
    const stream = anthropic.messages.stream({
      model: "claude-test",
      max_tokens: 100,
      messages: [{ role: "user", content: "Weather?" }],
    });
    const texts: string[] = [];
    const partials: string[] = [];
    const types: string[] = [];
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "content_block_delta" && event.delta.type === "text_delta")
        texts.push(event.delta.text);
      if (event.type === "content_block_delta" && event.delta.type === "input_json_delta") {
        partials.push(event.delta.partial_json);
      }
    }
    expect(types[0]).toBe("message_start");
    expect(types.slice(-2)).toEqual(["message_delta", "message_stop"]);
    expect(texts).toEqual(["Let me ", "check."]);
    expect(partials).toEqual(weatherCall.fragments);
    const final = await stream.finalMessage();
    expect(final.stop_reason).toBe("tool_use");
    expect(final.content).toEqual([
      { type: "text", text: "Let me check." },
      { type: "tool_use", id: "call_1", name: "get_weather", input: { city: "Paris", unit: "c" } },
    ]);
    expect(final.usage).toMatchObject({ input_tokens: 9, output_tokens: 4 });
  });

  it("answers scripted errors with the status and Anthropic's error shape", async () => {
    fake.script({ status: 429, error: "Slow down" });
    const error = await anthropic.messages
      .create({ model: "c", max_tokens: 10, messages: [{ role: "user", content: "x" }], stream: true })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(Anthropic.RateLimitError);
    expect((error as InstanceType<typeof Anthropic.APIError>).status).toBe(429);
    expect((error as Error).message).toContain("Slow down");
    expect((error as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
      type: "error",
      error: { type: "rate_limit_error", message: "Slow down" },
    });
  });
});

describe("script, echo, hold and timing", () => {
  it("echoes the last user text in 3 chunks when the script is empty", async () => {
    const stream = await openai.chat.completions.create({
      model: "m",
      messages: [
        { role: "user", content: "first" },
        { role: "assistant", content: "ok" },
        { role: "user", content: [{ type: "text", text: "ping pong" }] },
      ],
      stream: true,
    });
    const deltas: string[] = [];
    for await (const chunk of stream) deltas.push(chunk.choices[0]?.delta.content ?? "");
    expect(deltas.filter(Boolean)).toHaveLength(3);
    expect(deltas.join("")).toBe("You said: ping pong");
    const message = await anthropic.messages.create({
      model: "c",
      max_tokens: 10,
      messages: [{ role: "user", content: [{ type: "text", text: "hello" }] }],
    });
    expect(message.content).toEqual([{ type: "text", text: "You said: hello" }]);
    expect(message.usage.output_tokens).toBeGreaterThan(0);
  });

  it("paces the echo as told: pieces and the delays before and between them", async () => {
    const paced = await startFakeLlm({ echo: { pieces: 10, delayMs: 60, chunkDelayMs: 15 } });
    try {
      const client = new OpenAI({ baseURL: paced.openaiUrl, apiKey: "sk-test", maxRetries: 0 });
      const { deltas, arrivals } = await streamedDeltas(client, "a sentence long enough for ten pieces");
      expect(deltas).toHaveLength(10);
      expect(deltas.join("")).toBe("You said: a sentence long enough for ten pieces");
      expect(arrivals[0]).toBeGreaterThanOrEqual(55);
      expect((arrivals[9] ?? 0) - (arrivals[0] ?? 0)).toBeGreaterThanOrEqual(9 * 15 - 10);
      // A scripted reply keeps its own pace.
      paced.script({ content: "now" });
      expect((await streamedDeltas(client, "x")).deltas).toHaveLength(3);
    } finally {
      await paced.close();
    }
  });

  it("shares one FIFO script between both APIs", async () => {
    fake.script({ content: "one" }, { content: "two" });
    const first = await anthropic.messages.create({
      model: "c",
      max_tokens: 10,
      messages: [{ role: "user", content: "x" }],
    });
    const second = await openai.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "x" }],
    });
    expect(first.content).toEqual([{ type: "text", text: "one" }]);
    expect(second.choices[0]?.message.content).toBe("two");
    expect(fake.requests.map((request) => request.api)).toEqual(["anthropic", "openai"]);
  });

  it("holds a stream open after its chunks until release()", async () => {
    fake.script({ chunks: ["a", "b"], hold: true });
    const stream = await openai.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    const seen: string[] = [];
    let finished = false;
    const consumed = (async () => {
      for await (const chunk of stream) {
        seen.push(chunk.choices[0]?.delta.content ?? "");
        if (chunk.choices[0]?.finish_reason) finished = true;
      }
    })();
    await waitUntil(() => seen.join("") === "ab");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(finished).toBe(false);
    fake.release();
    await consumed;
    expect(finished).toBe(true);
  });

  it("ends a held stream when the client disconnects", async () => {
    fake.script({ chunks: ["a"], hold: true }, { content: "after" });
    const controller = new AbortController();
    const stream = anthropic.messages.stream(
      { model: "c", max_tokens: 10, messages: [{ role: "user", content: "x" }] },
      { signal: controller.signal },
    );
    const texts: string[] = [];
    const consumed = (async () => {
      for await (const event of stream) {
        if (event.type === "content_block_delta" && event.delta.type === "text_delta")
          texts.push(event.delta.text);
      }
    })().catch((error: unknown) => error);
    await waitUntil(() => texts.length === 1);
    controller.abort();
    expect(await consumed).toBeInstanceOf(Error);
    // The server still answers the next request normally.
    const next = await openai.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "x" }],
    });
    expect(next.choices[0]?.message.content).toBe("after");
  });

  it("releases a hold armed before its chunks were all sent, and holds plain completions too", async () => {
    fake.script({ chunks: ["a", "b", "c"], chunkDelayMs: 50, hold: true }, { content: "plain", hold: true });
    const streamed = openai.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    await fake.waitForRequests(1);
    fake.release();
    const deltas: string[] = [];
    for await (const chunk of await streamed) deltas.push(chunk.choices[0]?.delta.content ?? "");
    expect(deltas.join("")).toBe("abc");

    let done = false;
    const plain = openai.chat.completions
      .create({ model: "m", messages: [{ role: "user", content: "x" }] })
      .then((completion) => {
        done = true;
        return completion;
      });
    await fake.waitForRequests(2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(done).toBe(false);
    fake.release();
    expect((await plain).choices[0]?.message.content).toBe("plain");
  });

  it("waits delayMs before the first byte and chunkDelayMs between chunks", async () => {
    fake.script({ chunks: ["a", "b", "c"], delayMs: 150, chunkDelayMs: 60 });
    const { arrivals } = await streamedDeltas(openai, "x");
    expect(arrivals[0]).toBeGreaterThanOrEqual(140);
    expect((arrivals[2] ?? 0) - (arrivals[0] ?? 0)).toBeGreaterThanOrEqual(100);
  });

  it("waitForRequests resolves once enough requests arrived, and times out otherwise", async () => {
    const waiting = fake.waitForRequests(2, 5_000);
    await openai.chat.completions.create({ model: "m", messages: [{ role: "user", content: "1" }] });
    await anthropic.messages.create({
      model: "c",
      max_tokens: 5,
      messages: [{ role: "user", content: "2" }],
    });
    expect((await waiting).map((request) => request.api)).toEqual(["openai", "anthropic"]);
    await expect(fake.waitForRequests(3, 50)).rejects.toThrow("2 of 3 requests");
  });
});

/** A streamed completion's content deltas and when each arrived (ms since the request was sent). */
async function streamedDeltas(
  client: OpenAI,
  text: string,
): Promise<{ deltas: string[]; arrivals: number[] }> {
  const started = performance.now();
  const stream = await client.chat.completions.create({
    model: "m",
    messages: [{ role: "user", content: text }],
    stream: true,
  });
  const deltas: string[] = [];
  const arrivals: number[] = [];
  for await (const chunk of stream) {
    const content = chunk.choices[0]?.delta.content;
    if (!content) continue;
    deltas.push(content);
    arrivals.push(performance.now() - started);
  }
  return { deltas, arrivals };
}

async function waitUntil(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
