/**
 * Both provider adapters, driven through their real SDKs against the fake LLM server (test/fixtures/fake-llm.ts):
 * one case suite per wire API (complete, stream, tools, tool calls, usage, errors, abort, timeout), plus the
 * OpenAI-compatible variants (Mistral, keyless Ollama) and `createProvider` decrypting a stored key.
 */
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
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
    expect(body.max_tokens).toBe(64);
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
    const server: Server = createServer((_request, response) => {
      response.writeHead(200, { "content-type": "text/event-stream" });
      const call = (id: string, args: string) => ({
        id,
        type: "function",
        function: { name: "f", arguments: args },
      });
      const chunk = {
        id: "x",
        object: "chat.completion.chunk",
        created: 1,
        model: "m",
        choices: [
          {
            index: 0,
            delta: { tool_calls: [call("a", "{}"), call("b", '{"x":1}')] },
            finish_reason: "tool_calls",
          },
        ],
      };
      response.end(`data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const provider = createOpenAiProvider({
        type: "mistral",
        apiKey: "k",
        apiEndpoint: `http://127.0.0.1:${port}/v1`,
      });
      const { toolCalls, finishReason } = await drain(provider.stream(request()));
      expect(finishReason).toBe("tool_calls");
      expect(toolCalls.map((call) => [call.id, call.function.arguments])).toEqual([
        ["a", "{}"],
        ["b", '{"x":1}'],
      ]);
    } finally {
      server.close();
    }
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
