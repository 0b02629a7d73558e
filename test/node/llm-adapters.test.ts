/**
 * Both provider adapters, driven through their real SDKs against the fake LLM server (test/fixtures/fake-llm.ts):
 * one case suite per wire API (complete, stream, tools, tool calls, usage, errors, abort, timeout), plus the
 * OpenAI-compatible variants (Mistral, keyless Ollama), `createProvider` decrypting a stored key, and a chat's
 * streamed model call over them (model-call.ts: heartbeats, the wait for the answer's start, the idle guard).
 */
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { ChatEvent } from "../../workers/chat/events";
import { startCall, streamReply } from "../../workers/chat/model-call";
import type { LlmProvider as LlmProviderRow } from "../../workers/db/schema";
import { encryptText } from "../../workers/lib/crypto";
import { createAnthropicProvider } from "../../workers/llm/anthropic";
import { createOpenAiProvider } from "../../workers/llm/openai";
import { createProvider } from "../../workers/llm/registry";
import {
  type CompletionRequest,
  LlmError,
  type LlmProvider,
  type StreamItem,
  type ToolCall,
  type ToolDefinition,
  type Usage,
} from "../../workers/llm/types";
import { type FakeLlm, startFakeLlm } from "../fixtures/fake-llm";

let fake: FakeLlm;
beforeAll(async () => {
  fake = await startFakeLlm();
});
afterAll(() => fake?.close());
beforeEach(() => fake.reset());

const addTool: ToolDefinition = {
  type: "function",
  function: {
    name: "default__add",
    description: "Execute default/add",
    parameters: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } } },
  },
};

function request(overrides: Partial<CompletionRequest> = {}): CompletionRequest {
  return {
    model: "fake-model",
    messages: [
      { role: "system", content: "You help ACME." },
      { role: "user", content: "Hello" },
    ],
    temperature: 0.2,
    maxTokens: null,
    ...overrides,
  };
}

/** What a chat turn makes of a stream: content joined, tool calls accumulated by index (§5.6 step 2). */
async function drain(stream: AsyncIterable<StreamItem>) {
  const items: StreamItem[] = [];
  let content = "";
  let finishReason: string | null = null;
  let usage: Usage | null = null;
  const calls = new Map<number, ToolCall>();
  for await (const item of stream) {
    items.push(item);
    if (item.kind === "usage") {
      usage = item.usage;
      continue;
    }
    content += item.chunk.content ?? "";
    finishReason = item.chunk.finish_reason ?? finishReason;
    for (const delta of item.chunk.tool_calls ?? []) {
      const call = calls.get(delta.index) ?? {
        id: "",
        type: "function" as const,
        function: { name: "", arguments: "" },
      };
      if (delta.id) call.id = delta.id;
      if (delta.function.name) call.function.name = delta.function.name;
      call.function.arguments += delta.function.arguments ?? "";
      calls.set(delta.index, call);
    }
  }
  return { items, content, finishReason, usage, toolCalls: [...calls.values()] };
}

async function rejectionOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a rejection");
}

interface AdapterCase {
  label: string;
  api: "openai" | "anthropic";
  make(options?: { apiEndpoint?: string; timeoutMs?: number; fetch?: typeof fetch }): LlmProvider;
  unreachable: string;
}

const cases: AdapterCase[] = [
  {
    label: "OpenAI",
    api: "openai",
    make: (options = {}) =>
      createOpenAiProvider({
        type: "openai",
        apiKey: "sk-test",
        apiEndpoint: options.apiEndpoint ?? fake.openaiUrl,
        ...(options.timeoutMs && { timeoutMs: options.timeoutMs }),
        ...(options.fetch && { fetch: options.fetch }),
      }),
    unreachable: "http://127.0.0.1:9/v1",
  },
  {
    label: "Anthropic",
    api: "anthropic",
    make: (options = {}) =>
      createAnthropicProvider({
        apiKey: "sk-test",
        apiEndpoint: options.apiEndpoint ?? fake.url,
        ...(options.timeoutMs && { timeoutMs: options.timeoutMs }),
        ...(options.fetch && { fetch: options.fetch }),
      }),
    unreachable: "http://127.0.0.1:9",
  },
];

/** A proxy to the fake that drops the connection of its first `drops` requests without answering. */
async function flakyProxy(drops: number): Promise<{ url: string; seen: () => number; close: () => void }> {
  let seen = 0;
  const server = createServer((incoming, outgoing) => {
    seen++;
    if (seen <= drops) {
      incoming.socket.destroy();
      return;
    }
    const upstream = httpRequest(
      new URL(incoming.url ?? "/", fake.url),
      { method: incoming.method, headers: incoming.headers },
      (answer) => {
        outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(outgoing);
      },
    );
    incoming.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen: () => seen,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

describe.each(cases)("$label adapter against the fake", ({ label, api, make, unreachable }) => {
  it("sends a request once more when its connection drops before any answer, and only once", async () => {
    const endpoint = (url: string) => (api === "openai" ? `${url}/v1` : url);
    const once = await flakyProxy(1);
    try {
      fake.script({ content: "made it" });
      const reply = await make({ apiEndpoint: endpoint(once.url) }).complete(request());
      expect(reply.content).toBe("made it");
      expect(once.seen()).toBe(2);
      expect(fake.requests).toHaveLength(1);
    } finally {
      once.close();
    }
    const always = await flakyProxy(Number.POSITIVE_INFINITY);
    try {
      const error = await rejectionOf(make({ apiEndpoint: endpoint(always.url) }).complete(request()));
      expect(error).toBeInstanceOf(LlmError);
      expect(error.message).toMatch(new RegExp(`^Could not reach ${label}`));
      expect(always.seen()).toBe(2);
    } finally {
      always.close();
    }
  });

  it("completes a plain turn: content, finish reason, usage, and the request it sent", async () => {
    fake.script({ content: "Hi there", usage: { prompt_tokens: 7, completion_tokens: 3 } });
    const result = await make().complete(request());
    expect(result).toEqual({
      content: "Hi there",
      tool_calls: null,
      finish_reason: "stop",
      usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
    });
    const [sent] = fake.requests;
    expect(sent?.api).toBe(api);
    expect(sent?.body.model).toBe("fake-model");
    expect(sent?.body.temperature).toBe(0.2);
    expect(sent?.body).not.toHaveProperty("tools");
    expect(sent?.body).not.toHaveProperty("tool_choice");
    // Both SDKs send the key as a bearer token (@anthropic-ai/sdk v1 no longer uses x-api-key).
    expect(sent?.headers.authorization).toBe("Bearer sk-test");
    if (api === "openai") {
      expect(sent?.body.messages).toEqual([
        { role: "system", content: "You help ACME." },
        { role: "user", content: "Hello" },
      ]);
      expect(sent?.body).not.toHaveProperty("max_tokens");
    } else {
      expect(sent?.body.system).toBe("You help ACME.");
      expect(sent?.body.messages).toEqual([{ role: "user", content: "Hello" }]);
      expect(sent?.body.max_tokens).toBe(4096);
    }
  });

  it("offers tools and returns tool calls from a complete call", async () => {
    fake.script({ tool_calls: [{ id: "call_1", name: "default__add", arguments: '{"a":2,"b":3}' }] });
    const result = await make().complete(request({ tools: [addTool], maxTokens: 64, temperature: 0 }));
    expect(result.finish_reason).toBe("tool_calls");
    expect(result.content).toBeNull();
    expect(result.tool_calls).toHaveLength(1);
    expect(result.tool_calls?.[0]).toMatchObject({
      id: "call_1",
      type: "function",
      function: { name: "default__add" },
    });
    expect(JSON.parse(result.tool_calls?.[0]?.function.arguments ?? "")).toEqual({ a: 2, b: 3 });
    const body = fake.requests[0]?.body;
    // OpenAI's own API takes the limit as `max_completion_tokens` (its reasoning models refuse `max_tokens`).
    if (api === "openai") {
      expect(body.max_completion_tokens).toBe(64);
      expect(body).not.toHaveProperty("max_tokens");
    } else {
      expect(body.max_tokens).toBe(64);
    }
    expect(body.temperature).toBe(0);
    if (api === "openai") {
      expect(body.tools).toEqual([addTool]);
      expect(body.tool_choice).toBe("auto");
    } else {
      expect(body.tools).toEqual([
        {
          name: "default__add",
          description: "Execute default/add",
          input_schema: addTool.function.parameters,
        },
      ]);
    }
  });

  it("sends a whole tool round back: the assistant's calls and the tool results", async () => {
    fake.script({ content: "The sum is 5" });
    const result = await make().complete(
      request({
        messages: [
          { role: "user", content: "add 2 and 3" },
          {
            role: "assistant",
            content: null,
            tool_calls: [
              {
                id: "call_1",
                type: "function",
                function: { name: "default__add", arguments: '{"a":2,"b":3}' },
              },
            ],
          },
          { role: "tool", tool_call_id: "call_1", name: "default__add", content: '{"sum":5}' },
        ],
        tools: [addTool],
      }),
    );
    expect(result.content).toBe("The sum is 5");
    const messages = fake.requests[0]?.body.messages;
    if (api === "openai") {
      expect(messages[1]).toEqual({
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "default__add", arguments: '{"a":2,"b":3}' } },
        ],
      });
      expect(messages[2]).toEqual({
        role: "tool",
        content: '{"sum":5}',
        tool_call_id: "call_1",
        name: "default__add",
      });
    } else {
      expect(messages[1]).toEqual({
        role: "assistant",
        content: [{ type: "tool_use", id: "call_1", name: "default__add", input: { a: 2, b: 3 } }],
      });
      expect(messages[2]).toEqual({
        role: "user",
        content: [{ type: "tool_result", tool_use_id: "call_1", content: '{"sum":5}' }],
      });
    }
  });

  it("streams content chunks, the finish reason and the usage last", async () => {
    fake.script({ chunks: ["Hel", "lo ", "world"], usage: { prompt_tokens: 5, completion_tokens: 4 } });
    const { items, content, finishReason, usage } = await drain(make().stream(request()));
    expect(content).toBe("Hello world");
    expect(finishReason).toBe("stop");
    const chunks = items.filter((item) => item.kind === "chunk").map((item) => item.chunk.content);
    expect(chunks).toEqual(["Hel", "lo ", "world", null]);
    expect(items.at(-1)).toEqual({
      kind: "usage",
      usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 },
    });
    expect(usage?.total_tokens).toBe(9);
    if (api === "openai") expect(fake.requests[0]?.body.stream_options).toEqual({ include_usage: true });
  });

  it("reports activity for bytes that yield no item (role-only delta, message_start) (activity.ts)", async () => {
    fake.script({ chunks: ["Hi"], chunkDelayMs: 20 });
    let activity = 0;
    let activityBeforeFirstItem = -1;
    const { content } = await drain(
      (async function* () {
        for await (const item of make().stream(request({ onActivity: () => activity++ }))) {
          if (activityBeforeFirstItem < 0) activityBeforeFirstItem = activity;
          yield item;
        }
      })(),
    );
    expect(content).toBe("Hi");
    // Both wires open with an event that carries nothing for the chat, before the text's own.
    expect(activityBeforeFirstItem).toBeGreaterThan(0);
  });

  it("reads a stream through the body's reader, never its async iterator (read-by-reader.ts)", async () => {
    const reads = { reader: 0, iterator: 0 };
    const watched: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      const body = response.body as ReadableStream<Uint8Array>;
      const getReader = body.getReader.bind(body);
      const iterable = body as unknown as { [Symbol.asyncIterator]?: () => AsyncIterator<Uint8Array> };
      const iterator = iterable[Symbol.asyncIterator]?.bind(body);
      Object.assign(body, {
        getReader: (...args: []) => {
          reads.reader++;
          return getReader(...args);
        },
        [Symbol.asyncIterator]: () => {
          reads.iterator++;
          return iterator?.();
        },
      });
      return response;
    };
    fake.script({ chunks: ["Hel", "lo"] });
    const { content } = await drain(make({ fetch: watched }).stream(request()));
    expect(content).toBe("Hello");
    expect(reads).toEqual({ reader: 1, iterator: 0 });
  });

  it("streams tool calls as indexed deltas that accumulate into whole calls", async () => {
    fake.script({
      content: "Adding.",
      tool_calls: [
        {
          id: "call_1",
          name: "default__add",
          arguments: '{"a":2,"b":3}',
          fragments: ['{"a":', "2,", '"b":3}'],
        },
        { id: "call_2", name: "default__add", arguments: '{"a":1,"b":1}' },
      ],
    });
    const { items, content, toolCalls, finishReason } = await drain(
      make().stream(request({ tools: [addTool] })),
    );
    expect(content).toBe("Adding.");
    expect(finishReason).toBe("tool_calls");
    expect(toolCalls).toEqual([
      { id: "call_1", type: "function", function: { name: "default__add", arguments: '{"a":2,"b":3}' } },
      { id: "call_2", type: "function", function: { name: "default__add", arguments: '{"a":1,"b":1}' } },
    ]);
    // The first delta of each call names it; later ones carry only argument fragments.
    const deltas = items.flatMap((item) => (item.kind === "chunk" ? (item.chunk.tool_calls ?? []) : []));
    expect(
      deltas.filter((delta) => delta.id !== null).map((delta) => [delta.index, delta.function.name]),
    ).toEqual([
      [0, "default__add"],
      [1, "default__add"],
    ]);
    for (const item of items) {
      if (item.kind !== "chunk") continue;
      for (const delta of item.chunk.tool_calls ?? []) {
        expect(delta).toHaveProperty("function.arguments");
        expect([0, 1]).toContain(delta.index);
      }
    }
  });

  it(`reports HTTP errors as "${label} API error (<status>): <message>"`, async () => {
    fake.script({ status: 401, error: "Invalid API key" });
    const error = await rejectionOf(make().complete(request()));
    expect(error).toBeInstanceOf(LlmError);
    expect(error.message).toBe(`${label} API error (401): Invalid API key`);
    expect((error as LlmError).status).toBe(401);

    fake.script({ status: 500, error: "boom" });
    const streamed = await rejectionOf(drain(make().stream(request())));
    expect(streamed.message).toBe(`${label} API error (500): boom`);
  });

  it("reports an unreachable endpoint with its URL", async () => {
    const error = await rejectionOf(make({ apiEndpoint: unreachable }).complete(request()));
    expect(error).toBeInstanceOf(LlmError);
    expect(error.message).toMatch(
      new RegExp(`^Could not reach ${label} at ${unreachable.replaceAll(".", "\\.")}: `),
    );
  });

  it("gives up after the timeout with a clear message", async () => {
    fake.script({ content: "late", delayMs: 2_000 });
    const error = await rejectionOf(make({ timeoutMs: 200 }).complete(request()));
    expect(error).toBeInstanceOf(LlmError);
    expect(error.message).toMatch(new RegExp(`^${label} did not answer within`));
  });

  it("propagates an abort before the reply as AbortError", async () => {
    fake.script({ content: "late", delayMs: 2_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const error = await rejectionOf(make().complete(request({ signal: controller.signal })));
    expect(error.name).toBe("AbortError");
  });

  it("propagates an abort in the middle of a stream as AbortError", async () => {
    fake.script({ chunks: ["partial ", "answer"], hold: true });
    const controller = new AbortController();
    const seen: string[] = [];
    const error = await rejectionOf(
      (async () => {
        for await (const item of make().stream(request({ signal: controller.signal }))) {
          if (item.kind === "chunk" && item.chunk.content) seen.push(item.chunk.content);
          if (seen.length === 2) controller.abort();
        }
      })(),
    );
    expect(seen).toEqual(["partial ", "answer"]);
    expect(error.name).toBe("AbortError");
  });
});

/** One server-sent event (or, with `comment`, an SSE comment line), written `delayMs` after the previous one. */
type TimedEvent = { delayMs?: number } & ({ event?: string; data: unknown } | { comment: string });

function eventText(event: TimedEvent): string {
  if ("comment" in event) return `: ${event.comment}\n\n`;
  const data = typeof event.data === "string" ? event.data : JSON.stringify(event.data);
  return `${event.event ? `event: ${event.event}\n` : ""}data: ${data}\n\n`;
}

/**
 * A local server answering every request with `events` as an event stream (each `data` JSON, or as it is when a
 * string), paced, for wire shapes and pauses the fake does not send. `url` is the server root.
 */
async function eventStreamServer(events: TimedEvent[]): Promise<{ url: string; close: () => void }> {
  const server: Server = createServer(async (_request, response) => {
    response.writeHead(200, { "content-type": "text/event-stream" });
    for (const event of events) {
      if (event.delayMs) await new Promise((resolve) => setTimeout(resolve, event.delayMs));
      if (response.destroyed) return;
      response.write(eventText(event));
    }
    response.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** What an OpenAI-compatible provider of `type` makes of `events`, streamed by a server of their own. */
async function drainStreamOf(type: "mistral" | "ollama", events: TimedEvent[]) {
  const server = await eventStreamServer(events);
  try {
    const apiEndpoint = type === "ollama" ? server.url : `${server.url}/v1`;
    const provider = createOpenAiProvider({ type, apiKey: type === "ollama" ? null : "k", apiEndpoint });
    return await drain(provider.stream(request()));
  } finally {
    server.close();
  }
}

/** An OpenAI `chat.completion.chunk` event with one choice. */
function openAiChunk(delta: Record<string, unknown>, finishReason: string | null = null): TimedEvent {
  return {
    data: {
      id: "x",
      object: "chat.completion.chunk",
      created: 1,
      model: "m",
      choices: [{ index: 0, delta, finish_reason: finishReason }],
    },
  };
}

describe("OpenAI-compatible variants and keyless providers", () => {
  it("mistral: no stream_options; ollama or anthropic without a key: no Authorization header", async () => {
    const mistral = createOpenAiProvider({ type: "mistral", apiKey: "m-key", apiEndpoint: fake.openaiUrl });
    expect((await drain(mistral.stream(request()))).content).toBe("You said: Hello");
    expect(fake.requests[0]?.body).not.toHaveProperty("stream_options");
    expect(fake.requests[0]?.headers.authorization).toBe("Bearer m-key");

    const ollama = createOpenAiProvider({ type: "ollama", apiKey: null, apiEndpoint: fake.url });
    expect((await ollama.complete(request())).content).toBe("You said: Hello");
    expect(fake.requests[1]?.path).toBe("/v1/chat/completions");
    expect(fake.requests[1]?.headers).not.toHaveProperty("authorization");

    const keyless = createAnthropicProvider({ apiKey: null, apiEndpoint: fake.url });
    expect((await keyless.complete(request())).content).toBe("You said: Hello");
    expect(fake.requests[2]?.headers).not.toHaveProperty("authorization");
    expect(fake.requests[2]?.headers).not.toHaveProperty("x-api-key");
  });

  it("gives calls streamed without an index separate indexes (D-31, Mistral style)", async () => {
    // Mistral sends whole calls without `index` on the chunk that finishes the turn.
    const call = (id: string, args: string) => ({
      id,
      type: "function",
      function: { name: "f", arguments: args },
    });
    const { toolCalls, finishReason } = await drainStreamOf("mistral", [
      openAiChunk({ tool_calls: [call("a", "{}"), call("b", '{"x":1}')] }, "tool_calls"),
      { data: "[DONE]" },
    ]);
    expect(finishReason).toBe("tool_calls");
    expect(toolCalls.map((call) => [call.id, call.function.arguments])).toEqual([
      ["a", "{}"],
      ["b", '{"x":1}'],
    ]);
  });

  it("reads Mistral's `model_length` as `length`: the answer was cut off", async () => {
    const { content, finishReason } = await drainStreamOf("mistral", [
      openAiChunk({ role: "assistant", content: "Part of an ans" }),
      openAiChunk({}, "model_length"),
      { data: "[DONE]" },
    ]);
    expect([content, finishReason]).toEqual(["Part of an ans", "length"]);
  });

  it("keeps parallel calls apart when each comes whole at index 0 with its own id (Ollama style)", async () => {
    const call = (id: string, args: string) => ({
      id,
      index: 0,
      type: "function",
      function: { name: "read_file", arguments: args },
    });
    const { toolCalls, finishReason } = await drainStreamOf("ollama", [
      openAiChunk({ role: "assistant", content: "" }),
      openAiChunk({ tool_calls: [call("call_a", '{"path":"a.txt"}')] }),
      openAiChunk({ tool_calls: [call("call_b", '{"path":"b.txt"}')] }),
      openAiChunk({}, "tool_calls"),
      { data: "[DONE]" },
    ]);
    expect(finishReason).toBe("tool_calls");
    expect(toolCalls).toEqual([
      { id: "call_a", type: "function", function: { name: "read_file", arguments: '{"path":"a.txt"}' } },
      { id: "call_b", type: "function", function: { name: "read_file", arguments: '{"path":"b.txt"}' } },
    ]);
  });
});

describe("createProvider", () => {
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));

  function row(overrides: Partial<LlmProviderRow>): LlmProviderRow {
    return {
      id: crypto.randomUUID(),
      name: "fake",
      providerType: "openai",
      apiKey: null,
      apiEndpoint: fake.openaiUrl,
      defaultModel: "fake-model",
      config: {},
      isDefault: true,
      isActive: true,
      createdAt: new Date(),
      updatedAt: new Date(),
      managedBy: null,
      configName: null,
      configChecksum: null,
      ...overrides,
    } as LlmProviderRow;
  }

  it("decrypts the stored key and picks the adapter by type (case-insensitive)", async () => {
    const openai = await createProvider(row({ apiKey: await encryptText("sk-test", key) }), key);
    expect(openai.type).toBe("openai");
    await openai.complete(request());
    expect(fake.requests[0]?.headers.authorization).toBe("Bearer sk-test");

    const anthropicRow = row({
      providerType: "Anthropic" as "anthropic",
      apiEndpoint: fake.url,
      apiKey: await encryptText("sk-ant", key),
    });
    const anthropic = await createProvider(anthropicRow, key);
    expect(anthropic.type).toBe("anthropic");
    await anthropic.complete(request());
    expect(fake.requests[1]?.headers.authorization).toBe("Bearer sk-ant");
  });

  it("gives the call the configured timeout, else the type's: 300 s for Ollama (§5.10), 120 s for others", async () => {
    const timeoutOf = async (overrides: Partial<LlmProviderRow>) =>
      (await createProvider(row(overrides), key)).timeoutMs;
    expect(await timeoutOf({ providerType: "ollama" })).toBe(300_000);
    expect(await timeoutOf({ providerType: "openai" })).toBe(120_000);
    expect(await timeoutOf({ providerType: "mistral" })).toBe(120_000);
    expect(await timeoutOf({ providerType: "anthropic" })).toBe(120_000);
    expect(await timeoutOf({ providerType: "ollama", config: { timeout: 30 } })).toBe(30_000);
    expect(await timeoutOf({ providerType: "openai", config: { timeout: 0 } })).toBe(120_000);
  });

  it("fails clearly on an unknown type or an undecryptable key", async () => {
    await expect(createProvider(row({ providerType: "gemini" as "openai" }), key)).rejects.toThrow(
      "Unknown provider type: gemini",
    );
    const otherKey = btoa(String.fromCharCode(...new Uint8Array(32)));
    const sealed = await encryptText("sk-test", otherKey);
    await expect(createProvider(row({ apiKey: sealed }), key)).rejects.toThrow(/cannot be decrypted/);
    await expect(createProvider(row({ apiKey: sealed }), undefined)).rejects.toThrow(
      "ENCRYPTION_KEY is not configured",
    );
  });
});

describe("a chat's streamed model call (model-call.ts)", () => {
  /** Runs one streamed call as a turn does, with what it emitted. */
  async function streamedCall(provider: LlmProvider, idleMs: number) {
    const events: ChatEvent[] = [];
    const reply = await streamReply(startCall(provider, request(), idleMs), (event) => events.push(event));
    return { reply, events };
  }

  const openAi = (options: { apiEndpoint?: string; timeoutMs?: number } = {}) =>
    createOpenAiProvider({
      type: "openai",
      apiKey: "sk-test",
      apiEndpoint: options.apiEndpoint ?? fake.openaiUrl,
      ...(options.timeoutMs && { timeoutMs: options.timeoutMs }),
    });

  it("waits for the answer's start up to the provider's timeout, not the idle window (a model loading)", async () => {
    // Nothing at all for 500 ms, as a cold Ollama sends while it loads the model.
    fake.script({ chunks: ["Late ", "but here"], delayMs: 500 });
    const { reply } = await streamedCall(openAi({ timeoutMs: 5_000 }), 100);
    expect(reply).toMatchObject({ content: "Late but here", finishReason: "stop", stopped: false });
    expect(reply.failure).toBeUndefined();
  });

  it("waits after the opening role-only delta too (a reasoning model thinking)", async () => {
    const server = await eventStreamServer([
      openAiChunk({ role: "assistant", content: "" }),
      { ...openAiChunk({ content: "Thought it over." }), delayMs: 500 },
      openAiChunk({}, "stop"),
      { data: "[DONE]" },
    ]);
    try {
      const { reply } = await streamedCall(
        openAi({ apiEndpoint: `${server.url}/v1`, timeoutMs: 5_000 }),
        100,
      );
      expect(reply).toMatchObject({ content: "Thought it over.", finishReason: "stop", stopped: false });
    } finally {
      server.close();
    }
  });

  it("ends an answer that does not start within the provider's timeout", async () => {
    fake.script({ content: "too late", delayMs: 2_000 });
    const error = await rejectionOf(streamedCall(openAi({ timeoutMs: 300 }), 100));
    expect(error).toBeInstanceOf(LlmError);
    // Ours, or the SDK's own when the headers are what is late: both bounds are the provider's timeout.
    expect(error.message).toMatch(/did not (start its answer|answer) within/);
  });

  it("still ends a started answer after the idle window of silence, keeping what came", async () => {
    fake.script({ chunks: ["par", "tial"], hold: true });
    try {
      const { reply } = await streamedCall(openAi({ timeoutMs: 5_000 }), 200);
      expect(reply.content).toBe("partial");
      expect(reply.failure).toBeInstanceOf(LlmError);
      expect((reply.failure as Error).message).toMatch(/^The provider sent nothing for \d+ s/);
    } finally {
      fake.release();
    }
  });

  it("is kept alive by SSE keep-alive comments mid-answer (OpenAI-compatible proxies)", async () => {
    const keepAlives: TimedEvent[] = Array.from({ length: 10 }, () => ({
      comment: "keep-alive",
      delayMs: 60,
    }));
    const server = await eventStreamServer([
      openAiChunk({ role: "assistant", content: "" }),
      openAiChunk({ content: "Hello" }),
      ...keepAlives,
      openAiChunk({ content: " again" }),
      openAiChunk({}, "stop"),
      { data: "[DONE]" },
    ]);
    try {
      // 10 comments 60 ms apart: 600 ms after the first text, well past the 300 ms idle window.
      const { reply, events } = await streamedCall(openAi({ apiEndpoint: `${server.url}/v1` }), 300);
      expect(reply).toMatchObject({ content: "Hello again", finishReason: "stop", stopped: false });
      expect(reply.failure).toBeUndefined();
      expect(events.map((event) => event.type === "chunk" && event.chunk.content)).toEqual([
        "Hello",
        " again",
        null,
      ]);
    } finally {
      server.close();
    }
  });

  it("is kept alive by the provider's pings mid-answer, which are never forwarded (Anthropic)", async () => {
    const pings: TimedEvent[] = Array.from({ length: 10 }, () => ({
      event: "ping",
      data: { type: "ping" },
      delayMs: 60,
    }));
    const server = await eventStreamServer([
      {
        event: "message_start",
        data: {
          type: "message_start",
          message: {
            id: "msg_1",
            type: "message",
            role: "assistant",
            model: "m",
            content: [],
            stop_reason: null,
            stop_sequence: null,
            usage: { input_tokens: 3, output_tokens: 1 },
          },
        },
      },
      {
        event: "content_block_start",
        data: { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
      },
      {
        event: "content_block_delta",
        data: { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Hello" } },
      },
      ...pings,
      {
        event: "content_block_delta",
        data: { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: " again" } },
      },
      { event: "content_block_stop", data: { type: "content_block_stop", index: 0 } },
      {
        event: "message_delta",
        data: { type: "message_delta", delta: { stop_reason: "end_turn" }, usage: { output_tokens: 2 } },
      },
      { event: "message_stop", data: { type: "message_stop" } },
    ]);
    try {
      // 10 pings 60 ms apart: 600 ms after the first text, well past the 300 ms idle window.
      const provider = createAnthropicProvider({ apiKey: "k", apiEndpoint: server.url, timeoutMs: 5_000 });
      const { reply, events } = await streamedCall(provider, 300);
      expect(reply).toMatchObject({ content: "Hello again", finishReason: "stop", stopped: false });
      expect(reply.failure).toBeUndefined();
      expect(events.every((event) => event.type === "chunk")).toBe(true);
      expect(
        events.map((event) =>
          event.type === "chunk" ? [event.chunk.content, event.chunk.finish_reason] : null,
        ),
      ).toEqual([
        ["Hello", null],
        [" again", null],
        [null, "stop"],
      ]);
    } finally {
      server.close();
    }
  });
});
