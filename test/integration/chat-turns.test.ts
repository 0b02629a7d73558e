/**
 * Chat turns through the real stack (sinas-spec §5.3-5.6, S22-S26), on both wire formats: the fake LLM speaks
 * OpenAI Chat Completions and Anthropic Messages and the platform drives it through the official SDKs.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { FakeLlm } from "../fixtures/fake-llm";
import { api, login, type Session } from "../helpers/auth";
import {
  chatMessages,
  contentOf,
  createAgent,
  createChat,
  createProvider,
  lastUserText,
  startChatStack,
  stopChatStack,
  streamMessage,
  systemText,
  toolNames,
  toolParameters,
  toolResults,
  WIRE_FORMATS,
  type WireFormat,
} from "../helpers/chat";
import { createFunction, pythonFunction } from "../helpers/functions";
import type { TestStack } from "../helpers/stack";

let stack: TestStack;
let fake: FakeLlm;
let admin: Session;
let bob: Session;
let providers: Record<WireFormat, string>;

/** The status a chat's WebSocket upgrade gets with the session's token offered as a browser does: 101 if open. */
function webSocketStatus(chat: string, session: Session): Promise<number> {
  const url = `${stack.apiUrl.replace(/^http/, "ws")}/chats/${chat}/ws`;
  const socket = new WebSocket(url, ["sinas.v1", `bearer.${session.accessToken}`]);
  return new Promise((resolve, reject) => {
    socket.on("error", reject);
    socket.once("open", () => {
      socket.close();
      resolve(101);
    });
    socket.once("unexpected-response", (request, response) => {
      resolve(response.statusCode ?? 0);
      request.destroy();
    });
  });
}

beforeAll(async () => {
  ({
    stack,
    fake,
    admin,
    other: bob,
    providers,
  } = await startChatStack("bob@acme.io", {
    LLM_STREAM_IDLE_SECONDS: "2",
    // Every text chunk its own event here (chat-streams.test.ts covers the default window of 50 ms).
    CHAT_STREAM_COALESCE_MS: "0",
  }));
  await createFunction(
    stack,
    admin,
    pythonFunction(
      "add",
      '    return {"sum": input["a"] + input["b"], "chat": context["chat_id"], "trigger": context["trigger_type"]}',
      {
        input_schema: {
          type: "object",
          properties: { a: { type: "number" }, b: { type: "number" } },
          required: ["a", "b"],
        },
      },
    ),
  );
  await createFunction(
    stack,
    admin,
    pythonFunction("forecast", "    return input", {
      input_schema: {
        type: "object",
        properties: { city: { type: "string" }, units: { type: "string" }, days: { type: "integer" } },
        required: ["city", "days"],
      },
    }),
  );
  await createFunction(stack, admin, pythonFunction("wire", "    return input", { requires_approval: true }));
});
afterAll(() => stopChatStack({ stack, fake }));
beforeEach(() => fake.reset());

describe.each(WIRE_FORMATS)("on the %s wire format", (format) => {
  const agentName = (base: string) => `${base}-${format}`;
  let helperChat: string;

  beforeAll(async () => {
    const provider = providers[format];
    await createAgent(stack, admin, {
      name: agentName("helper"),
      system_prompt: "You help {{ customer }}.",
      input_schema: { type: "object", properties: { customer: { type: "string" } }, required: ["customer"] },
      llm_provider_id: provider,
      model: "fake-model",
      temperature: 0.2,
    });
    await createAgent(stack, admin, {
      name: agentName("calc"),
      system_prompt: "Calc.",
      enabled_functions: ["default/add"],
      llm_provider_id: provider,
      model: "fake-model",
      temperature: 0,
    });
    await createAgent(stack, admin, {
      name: agentName("weather"),
      enabled_functions: ["default/forecast"],
      function_parameters: { "default/forecast": { city: "{{ home_city }}", units: "metric" } },
      input_schema: { type: "object", properties: { home_city: { type: "string" } } },
      llm_provider_id: provider,
    });
    await createAgent(stack, admin, {
      name: agentName("bank"),
      enabled_functions: ["default/wire"],
      llm_provider_id: provider,
    });
    helperChat = await createChat(stack, admin, agentName("helper"), {
      input: { customer: "ACME" },
      title: "t1",
    });
  });

  it("answers a message without streaming, with the rendered system prompt and temperature (S22)", async () => {
    fake.script({ content: "Hi there" });
    const response = await api(stack, admin, "POST", `/chats/${helperChat}/messages`, { content: "Hello" });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.body).toMatchObject({ role: "assistant", content: "Hi there", chat_id: helperChat });
    const [request] = fake.requests;
    expect(request?.api).toBe(format);
    // The official SDKs carry the decrypted key (Anthropic's as x-api-key or a bearer token, by SDK version).
    expect(`${request?.headers.authorization ?? ""} ${request?.headers["x-api-key"] ?? ""}`).toContain(
      "sk-test",
    );
    expect(request?.body.model).toBe("fake-model");
    expect(request?.body.temperature).toBe(0.2);
    expect(systemText(request as never)).toBe("You help ACME.");
    expect(lastUserText(request as never)).toBe("Hello");
    expect(request?.body.tools).toBeUndefined();
    const messages = await chatMessages(stack, admin, helperChat);
    expect(messages.slice(-2).map((message) => message.role)).toEqual(["user", "assistant"]);
    expect((await api(stack, bob, "POST", `/chats/${helperChat}/messages`, { content: "x" })).status).toBe(
      403,
    );
  });

  it("streams a plain answer as SINAS SSE events with sequence ids (S25)", async () => {
    fake.script({ content: "Hello", chunks: ["Hel", "lo"] });
    const stream = await streamMessage(stack, admin, helperChat, "hi");
    expect(stream.status).toBe(200);
    expect(stream.headers.get("content-type")).toContain("text/event-stream");
    const messages = stream.events.filter((event) => event.event === "message");
    for (const event of messages) {
      expect(Object.keys(event.data as object).sort()).toEqual(["content", "finish_reason", "tool_calls"]);
    }
    expect(contentOf(stream.events)).toBe("Hello");
    const last = stream.events[stream.events.length - 1];
    expect(last).toMatchObject({ event: "done", data: { status: "completed" } });
    const ids = stream.events.map((event) => Number(event.id));
    expect(ids.every((id, index) => index === 0 || id > (ids[index - 1] as number))).toBe(true);
    const history = await chatMessages(stack, admin, helperChat);
    expect(history.slice(-2)).toMatchObject([
      { role: "user", content: "hi" },
      { role: "assistant", content: "Hello" },
    ]);
  });

  it("sends every text chunk as its own event with CHAT_STREAM_COALESCE_MS=0", async () => {
    fake.script({ content: "abcd", chunks: ["a", "b", "c", "d"] });
    const stream = await streamMessage(stack, admin, helperChat, "letters");
    const texts = stream.events
      .filter((event) => event.event === "message")
      .map((event) => (event.data as { content: string | null }).content)
      .filter(Boolean);
    expect(texts).toEqual(["a", "b", "c", "d"]);
  });

  it("ends a stream with an error event when the provider fails, keeping the user message (S25)", async () => {
    fake.script({ status: 500, error: "upstream exploded" });
    const stream = await streamMessage(stack, admin, helperChat, "will fail");
    expect(stream.status).toBe(200);
    const last = stream.events[stream.events.length - 1];
    expect(last?.event).toBe("error");
    expect(String((last?.data as { error?: string } | undefined)?.error)).toMatch(/500|exploded/);
    const history = await chatMessages(stack, admin, helperChat);
    expect(history[history.length - 1]).toMatchObject({ role: "user", content: "will fail" });
  });

  it("reports a turn that cannot start (inactive provider) as an SSE error event, keeping the message", async () => {
    const provider = await api(stack, admin, "POST", "/api/v1/llm-providers", {
      name: `gone-${format}`,
      provider_type: format,
      api_endpoint: format === "openai" ? fake.openaiUrl : fake.url,
      default_model: "fake-model",
    });
    const providerId = (provider.body as { id: string }).id;
    await createAgent(stack, admin, { name: agentName("orphan"), llm_provider_id: providerId });
    const chat = await createChat(stack, admin, agentName("orphan"));
    expect((await api(stack, admin, "DELETE", `/api/v1/llm-providers/${providerId}`)).status).toBe(204);
    const stream = await streamMessage(stack, admin, chat, "anyone?");
    expect(stream.status).toBe(200);
    expect(stream.events.map((event) => event.event)).toEqual(["error"]);
    expect(String((stream.events[0]?.data as { error?: string } | undefined)?.error)).toContain(
      `gone-${format}`,
    );
    expect(await chatMessages(stack, admin, chat)).toMatchObject([{ role: "user", content: "anyone?" }]);
    const plain = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "still?" });
    expect(plain.status).toBe(400);
    expect(fake.requests).toEqual([]);
  });

  it("ends the turn with a clear error when the provider goes silent mid-stream", async () => {
    fake.script({ content: "partial", chunks: ["par", "tial"], hold: true });
    const stream = await streamMessage(stack, admin, helperChat, "slow");
    fake.release();
    expect(contentOf(stream.events)).toBe("partial");
    const last = stream.events[stream.events.length - 1];
    expect(last?.event).toBe("error");
    expect(String((last?.data as { error?: string } | undefined)?.error)).toContain("sent nothing for 2 s");
    const history = await chatMessages(stack, admin, helperChat);
    expect(history.slice(-2)).toMatchObject([
      { role: "user", content: "slow" },
      { role: "assistant", content: "partial" },
    ]);
    const next = await streamMessage(stack, admin, helperChat, "again");
    expect(next.events[next.events.length - 1]?.event).toBe("done");
  });

  it("ends the turn with an error when the provider's stream is cut before its end; no half tool call runs", async () => {
    fake.script({ content: "half an ans", chunks: ["half ", "an ans"], truncate: true });
    const stream = await streamMessage(stack, admin, helperChat, "cut");
    expect(contentOf(stream.events)).toBe("half an ans");
    const last = stream.events[stream.events.length - 1];
    expect(last?.event).toBe("error");
    expect(String((last?.data as { error?: string } | undefined)?.error)).toContain(
      "ended before the answer",
    );
    const history = await chatMessages(stack, admin, helperChat);
    expect(history.at(-1)).toMatchObject({ role: "assistant", content: "half an ans" });

    const chat = await createChat(stack, admin, agentName("calc"));
    fake.script({
      tool_calls: [
        { id: `cut${format}`, name: "default__add", arguments: '{"a":2,', fragments: ['{"a":2,'] },
      ],
      truncate: true,
    });
    const cut = await streamMessage(stack, admin, chat, "add");
    expect(cut.events.at(-1)?.event).toBe("error");
    const executions = await api(stack, admin, "GET", "/executions?function_name=add");
    expect((executions.body as Record<string, unknown>[]).filter((row) => row.trigger_id === chat)).toEqual(
      [],
    );
  });

  it("calls a function tool and answers with its result; the execution is AGENT-triggered (S23)", async () => {
    const chat = await createChat(stack, admin, agentName("calc"));
    fake.script(
      { tool_calls: [{ id: `call_1${format}`, name: "default__add", arguments: '{"a":2,"b":3}' }] },
      { content: "The sum is 5" },
    );
    const response = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "add 2 and 3" });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.body).toMatchObject({ content: "The sum is 5" });
    const [first, second] = fake.requests;
    expect(toolNames(first as never)).toEqual(["default__add"]);
    expect(JSON.stringify(first?.body)).not.toContain("_metadata");
    expect(toolParameters(first as never, "default__add")).toMatchObject({ required: ["a", "b"] });
    expect(toolResults(second as never)).toEqual([
      { tool_call_id: `call_1${format}`, content: { sum: 5, chat, trigger: "AGENT" } },
    ]);
    expect(systemText(second as never)).toBe("Calc.");
    expect(second?.body.temperature).toBe(0);
    const messages = await chatMessages(stack, admin, chat);
    expect(messages.map((message) => message.role)).toEqual(["user", "assistant", "tool", "assistant"]);
    expect((messages[1]?.tool_calls as unknown[] | undefined)?.length).toBe(1);
    const executions = await api(stack, admin, "GET", "/executions?function_name=add");
    const mine = (executions.body as Record<string, unknown>[]).filter((row) => row.trigger_id === chat);
    expect(mine).toMatchObject([{ trigger_type: "AGENT", status: "COMPLETED" }]);
  });

  it("prefills and locks function parameters from the chat input (S24)", async () => {
    const chat = await createChat(stack, admin, agentName("weather"), { input: { home_city: "London" } });
    fake.script(
      {
        tool_calls: [
          { id: `call_f${format}`, name: "default__forecast", arguments: '{"city":"Paris","days":2}' },
        ],
      },
      { content: "ok" },
    );
    const response = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "weather?" });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    const parameters = toolParameters(fake.requests[0] as never, "default__forecast") as {
      properties: Record<string, { default?: unknown }>;
      required: string[];
    };
    expect(parameters.properties.city?.default).toBe("London");
    expect(parameters.properties.units?.default).toBe("metric");
    expect(parameters.required).toEqual(["days"]);
    expect(toolResults(fake.requests[1] as never)[0]?.content).toEqual({
      city: "London",
      units: "metric",
      days: 2,
    });
  });

  it("streams the tool round and the follow-up answer (S26, D-28)", async () => {
    const chat = await createChat(stack, admin, agentName("calc"));
    fake.script(
      {
        tool_calls: [
          {
            id: `call_9${format}`,
            name: "default__add",
            arguments: '{"a":1,"b":1}',
            fragments: ['{"a":1,', '"b":1}'],
          },
        ],
      },
      { content: "2" },
    );
    const stream = await streamMessage(stack, admin, chat, "1+1");
    const deltas = stream.events.filter(
      (event) => event.event === "message" && (event.data as { tool_calls: unknown }).tool_calls,
    );
    expect(deltas.length).toBeGreaterThan(0);
    expect(contentOf(stream.events)).toBe("2");
    expect(stream.events.some((event) => event.event === "tool_result")).toBe(true);
    expect(stream.events[stream.events.length - 1]?.event).toBe("done");
    const messages = await chatMessages(stack, admin, chat);
    expect(messages.map((message) => message.role)).toEqual(["user", "assistant", "tool", "assistant"]);
    const calls = messages[1]?.tool_calls as { function: { arguments: string } }[];
    expect(calls).toHaveLength(1);
    expect(calls[0]?.function.arguments).toBe('{"a":1,"b":1}');
    expect(messages[3]?.content).toBe("2");
  });

  it("refuses a call needing approval without streaming: 409 and nothing run (S27.5, D-11)", async () => {
    const chat = await createChat(stack, admin, agentName("bank"));
    fake.script({
      tool_calls: [{ id: `call_b3${format}`, name: "default__wire", arguments: '{"amount":1}' }],
    });
    const response = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "pay" });
    expect(response.status).toBe(409);
    expect((response.body as { detail: string }).detail).toBe(
      "Function default/wire requires user approval. Please use streaming mode to handle approval flow.",
    );
    const messages = await chatMessages(stack, admin, chat);
    expect(messages.map((message) => message.role)).toEqual(["user"]);
  });
});

describe("the runtime OpenAPI document (§1.7)", () => {
  it("has a path for each active webhook and agent", async () => {
    const hook = await api(stack, admin, "POST", "/api/v1/webhooks", {
      path: "docs/add",
      function_name: "add",
      http_method: "PUT",
      requires_auth: false,
    });
    expect(hook.status, JSON.stringify(hook.body)).toBe(200);
    type Doc = { paths: Record<string, Record<string, Record<string, unknown>>> };
    const document = (await api(stack, null, "GET", "/openapi.json")).body as Doc;
    expect(document.paths["/health"]).toBeDefined();
    expect(document.paths["/webhooks/docs/add"]?.put).toMatchObject({
      security: [],
      requestBody: { content: { "application/json": { schema: { required: ["a", "b"] } } } },
    });
    expect(document.paths["/agents/default/helper-openai/chats"]?.post).toMatchObject({
      security: [{ bearerAuth: [] }],
      requestBody: {
        content: {
          "application/json": {
            schema: { properties: { input: { required: ["customer"] }, title: { type: "string" } } },
          },
        },
      },
    });
    const off = await api(stack, admin, "PATCH", "/api/v1/webhooks/docs/add", { is_active: false });
    expect(off.status, JSON.stringify(off.body)).toBe(200);
    const after = (await api(stack, null, "GET", "/openapi.json")).body as Doc;
    expect(after.paths["/webhooks/docs/add"]).toBeUndefined();
  });
});

describe("bad input", () => {
  let chat: string;
  beforeAll(async () => {
    chat = await createChat(stack, admin, "helper-openai", { input: { customer: "X" } });
  });

  it("rejects empty content, bad parts and oversized messages before saving anything", async () => {
    const withNul = [{ type: "text", text: "a\u0000b" }];
    for (const content of [
      "",
      "   ",
      [],
      [{ type: "image", image: "ftp://x" }],
      [{ type: "nope" }],
      "a\u0000b",
      withNul,
    ]) {
      const response = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content });
      expect(response.status, JSON.stringify(content)).toBe(422);
      expect(JSON.stringify(response.body)).toContain("content");
      // A NUL, which Postgres refuses, was a 500 quoting the failed query (its SQL and parameters).
      expect(JSON.stringify(response.body)).not.toContain("Failed query");
    }
    const huge = await api(stack, admin, "POST", `/chats/${chat}/messages`, {
      content: "x".repeat(3 * 1024 * 1024),
    });
    expect(huge.status).toBe(413);
    expect(await chatMessages(stack, admin, chat)).toEqual([]);
    expect(fake.requests).toEqual([]);
  });

  it("takes a message sent in chunks (no Content-Length) through the route's own size limit", async () => {
    const chunkedChat = await createChat(stack, admin, "helper-openai", { input: { customer: "X" } });
    fake.script({ content: "chunked ok" });
    const response = await stack.fetch(`/chats/${chunkedChat}/messages`, {
      method: "POST",
      headers: { ...admin.headers, "content-type": "application/json" },
      body: new Blob([JSON.stringify({ content: "in chunks" })]).stream(),
      duplex: "half",
    } as RequestInit);
    expect(response.status, await response.clone().text()).toBe(200);
    expect(await response.json()).toMatchObject({ role: "assistant", content: "chunked ok" });
    const huge = await stack.fetch(`/chats/${chunkedChat}/messages`, {
      method: "POST",
      headers: { ...admin.headers, "content-type": "application/json" },
      body: new Blob([JSON.stringify({ content: "x".repeat(3 * 1024 * 1024) })]).stream(),
      duplex: "half",
    } as RequestInit);
    expect(huge.status).toBe(413);
  });

  it("answers 404 for unknown or malformed chats and 422 for a missing body", async () => {
    const unknown = await api(stack, admin, "POST", `/chats/${crypto.randomUUID()}/messages`, {
      content: "x",
    });
    expect(unknown.status).toBe(404);
    expect((unknown.body as { detail: string }).detail).toBe("Chat not found");
    expect((await api(stack, admin, "POST", "/chats/not-a-uuid/messages", { content: "x" })).status).toBe(
      422,
    );
    expect((await api(stack, admin, "POST", `/chats/${chat}/messages`, {})).status).toBe(422);
  });

  it("sends multimodal content as parts and stores them as JSON (§5.9)", async () => {
    fake.script({ content: "nice picture" });
    const parts = [
      { type: "text", text: "what is this?" },
      { type: "image", image: "data:image/png;base64,iVBORw0KGgo=" },
    ];
    const response = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: parts });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    const userMessage = (
      fake.requests[0]?.body.messages as { role: string; content: unknown }[] | undefined
    )?.at(-1);
    expect(userMessage?.content).toEqual([
      { type: "text", text: "what is this?" },
      { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=", detail: "auto" } },
    ]);
    const messages = await chatMessages(stack, admin, chat);
    expect(JSON.parse(String(messages[0]?.content))).toEqual(parts);
  });
});

describe("who may send, and what the model sees", () => {
  it("sends the whole history in order; another user's or an inactive agent's send stores nothing", async () => {
    const providerId = await createProvider(stack, admin, {
      name: "gatekeeper-provider",
      provider_type: "openai",
      api_key: "sk-before",
      api_endpoint: fake.openaiUrl,
    });
    await createAgent(stack, admin, {
      name: "gatekeeper",
      system_prompt: "Gate.",
      llm_provider_id: providerId,
      model: "fake-model",
    });
    const chat = await createChat(stack, admin, "gatekeeper");
    fake.script({ content: "first answer" });
    expect((await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "one" })).status).toBe(200);
    fake.script({ content: "second answer", chunks: ["second ", "answer"] });
    expect((await streamMessage(stack, admin, chat, "two")).status).toBe(200);
    // The second turn's user message is read beside its own insert: exactly once, last.
    const second = fake.requests[1]?.body as { messages?: { role: string; content: unknown }[] } | undefined;
    const sent = (second?.messages ?? [])
      .filter((message) => message.role !== "system")
      .map((message) => [message.role, message.content]);
    expect(sent).toEqual([
      ["user", "one"],
      ["assistant", "first answer"],
      ["user", "two"],
    ]);
    const stored = async () => (await chatMessages(stack, admin, chat)).length;
    expect(await stored()).toBe(4);

    // A provider changed between turns is used as changed (nothing stale from the turn before).
    const rotated = await api(stack, admin, "PATCH", `/api/v1/llm-providers/${providerId}`, {
      api_key: "sk-after",
    });
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    fake.script({ content: "third answer" });
    expect((await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "three" })).status).toBe(
      200,
    );
    expect(fake.requests[0]?.headers.authorization).toBe("Bearer sk-before");
    expect(fake.requests[2]?.headers.authorization).toBe("Bearer sk-after");
    expect(await stored()).toBe(6);

    expect((await api(stack, bob, "POST", `/chats/${chat}/messages`, { content: "x" })).status).toBe(403);
    expect((await streamMessage(stack, bob, chat, "y")).status).toBe(403);
    expect(await stored()).toBe(6);

    const deactivated = await api(stack, admin, "PUT", "/api/v1/agents/default/gatekeeper", {
      is_active: false,
    });
    expect(deactivated.status, JSON.stringify(deactivated.body)).toBe(200);
    const refused = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "z" });
    expect(refused.status).toBe(404);
    expect(JSON.stringify(refused.body)).toContain("no longer exists or is inactive");
    expect((await streamMessage(stack, admin, chat, "w")).status).toBe(404);
    expect(await stored()).toBe(6);
    expect(fake.requests).toHaveLength(3);
  });

  it("starts a turn on a verified token alone; an inactive user's token or key stores nothing (401)", async () => {
    const dora = await login(stack, "dora@acme.io");
    await createAgent(stack, dora, { name: "doras", llm_provider_id: providers.openai, model: "fake-model" });
    const chat = await createChat(stack, dora, "doras");
    const created = await api(stack, dora, "POST", "/api/v1/api-keys", { name: "dora-key", permissions: {} });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const byKey = (path: string) =>
      stack.fetch(path, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": (created.body as { key: string }).key },
        body: JSON.stringify({ content: "by key" }),
      });

    fake.script({ content: "hello dora" }, { content: "hello key" });
    const streamed = await streamMessage(stack, dora, chat, "hi");
    expect(streamed.status).toBe(200);
    expect(contentOf(streamed.events)).toBe("hello dora");
    expect((await byKey(`/chats/${chat}/messages`)).status).toBe(200);
    const stored = async () => (await chatMessages(stack, dora, chat)).length;
    expect(await stored()).toBe(4);

    // The request log names the sender of a turn started on the token alone.
    const path = `/chats/${chat}/messages/stream`;
    let logged: Record<string, unknown>[] = [];
    for (let attempt = 0; attempt < 50 && logged.length === 0; attempt++) {
      const logs = await api(stack, admin, "GET", `/api/v1/request-logs?user_id=${dora.user.id}`);
      logged = (logs.body as Record<string, unknown>[]).filter((row) => row.path === path);
      if (logged.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(logged[0]).toMatchObject({ user_id: dora.user.id, user_email: "dora@acme.io", status_code: 200 });

    // While active, the token alone serves every chat route; another user gets the answer of a foreign chat.
    const chatRoutes: ["GET" | "POST", string][] = [
      ["GET", `/chats/${chat}/stream`],
      ["GET", `/ui/chats/${chat}/stream`],
      ["POST", `/chats/${chat}/stop`],
      ["POST", `/chats/${chat}/approve-tool/call_none`],
    ];
    const expected = [
      [200, 404],
      [204, 404],
      [200, 404],
      [404, 403],
    ];
    for (const [index, [method, route]] of chatRoutes.entries()) {
      const body = route.includes("approve-tool") ? { approved: true } : undefined;
      const own = await api(stack, dora, method, route, body);
      const foreign = await api(stack, bob, method, route, body);
      expect([own.status, foreign.status], `${method} ${route}`).toEqual(expected[index]);
    }
    expect(await webSocketStatus(chat, dora)).toBe(101);
    expect(await webSocketStatus(chat, bob)).toBe(404);
    expect(await webSocketStatus("not-a-uuid", dora)).toBe(422);

    const off = await api(stack, admin, "PATCH", `/api/v1/users/${dora.user.id}`, { is_active: false });
    expect(off.status).toBe(200);
    try {
      const refused = await streamMessage(stack, dora, chat, "still there?");
      expect(refused.status).toBe(401);
      expect(JSON.parse(refused.text)).toMatchObject({ detail: "User is inactive" });
      const plain = await api(stack, dora, "POST", `/chats/${chat}/messages`, { content: "and now?" });
      expect(plain.status).toBe(401);
      expect((await byKey(path)).status).toBe(401);
      const ui = await api(stack, dora, "POST", "/ui/chats", {
        id: chat,
        messages: [{ id: "m1", role: "user", parts: [{ type: "text", text: "from useChat" }] }],
      });
      expect(ui.status).toBe(401);
      expect(fake.requests).toHaveLength(2);
      // The chat's other routes too: their lookup of the chat checks the user (authenticateSender).
      for (const [method, route] of chatRoutes) {
        const body = route.includes("approve-tool") ? { approved: true } : undefined;
        const answer = await api(stack, dora, method, route, body);
        expect(answer.status, `${method} ${route}`).toBe(401);
        expect(answer.body, `${method} ${route}`).toMatchObject({ detail: "User is inactive" });
      }
      expect(await webSocketStatus(chat, dora)).toBe(401);
      // A refusal for another reason (no such chat) is the inactive user's 401 too, as `authenticate` answers.
      const missing = await api(stack, dora, "POST", `/chats/${crypto.randomUUID()}/stop`);
      expect(missing.status).toBe(401);
    } finally {
      await api(stack, admin, "PATCH", `/api/v1/users/${dora.user.id}`, { is_active: true });
    }
    expect(await stored(), "nothing stored while inactive").toBe(4);
  });
});

describe("agent templates (D-24)", () => {
  it("refuses a template that does not parse when the agent is saved (422 naming it)", async () => {
    const bad = await api(stack, admin, "POST", "/api/v1/agents", {
      name: "broken-prompt",
      system_prompt: "Hello {% if %}",
      function_parameters: { "default/forecast": { city: "ok", nested: { deep: ["{{ x"] } } },
    });
    expect(bad.status).toBe(422);
    const locs = (bad.body as { detail: { loc: unknown[] }[] }).detail.map((issue) => issue.loc);
    expect(locs).toEqual(
      expect.arrayContaining([
        ["body", "system_prompt"],
        ["body", "function_parameters", "default/forecast", "nested", "deep", 0],
      ]),
    );
    expect((await api(stack, admin, "GET", "/api/v1/agents/default/broken-prompt")).status).toBe(404);
  });

  it("refuses an input the templates cannot render, renders any input names, and never unlocks a parameter", async () => {
    await createAgent(stack, admin, {
      name: "templated",
      llm_provider_id: providers.openai,
      system_prompt: "Team {{ team }}{% for i in range(count) %}.{% endfor %} {{ owner | upper }} {{ none }}",
      enabled_functions: ["default/forecast"],
      function_parameters: { "default/forecast": { city: "{{ city | upper }}" } },
    });
    const create = (input: unknown) =>
      api(stack, admin, "POST", "/agents/default/templated/chats", { input });
    const before = ((await api(stack, admin, "GET", "/chats")).body as unknown[]).length;
    // A filter on a missing field, a range too long: the template's error, and no chat.
    const missing = await create({ team: "sales", count: 1, city: "paris" });
    expect(missing.status).toBe(400);
    expect(missing.body).toMatchObject({ message: expect.stringContaining("system_prompt") });
    const long = await create({ team: "sales", count: 5_000_000, owner: "ada", city: "paris" });
    expect(long.status).toBe(400);
    expect(long.body).toMatchObject({ message: expect.stringContaining("range()") });
    const noCity = await create({ team: "sales", count: 1, owner: "ada" });
    expect(noCity.status).toBe(400);
    expect(noCity.body).toMatchObject({ message: expect.stringContaining("default/forecast") });
    expect(((await api(stack, admin, "GET", "/chats")).body as unknown[]).length).toBe(before);
    const huge = await create({ team: "x".repeat(300 * 1024), count: 1, owner: "ada", city: "x" });
    expect(huge.status).toBe(413);

    // `none` (a global of the template library) is an input name like any other.
    const chat = await createChat(stack, admin, "templated", {
      input: { team: "sales", count: 2, owner: "ada", city: "paris", none: "!" },
    });
    fake.script({ content: "hi" });
    await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "hello" });
    expect(systemText(fake.requests[0] as never)).toBe("Team sales.. ADA !");

    // The agent changes so that the chat's input no longer renders its parameters: the turn fails clearly,
    // and the model is never offered the function with its locked city unlocked.
    const updated = await api(stack, admin, "PUT", "/api/v1/agents/default/templated", {
      function_parameters: { "default/forecast": { city: "{{ region | upper }}" } },
    });
    expect(updated.status, JSON.stringify(updated.body)).toBe(200);
    fake.reset();
    const refused = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "forecast?" });
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({
      message: expect.stringContaining("function_parameters for 'default/forecast'"),
    });
    expect(fake.requests).toEqual([]);
  });
  it("does not consume an approval whose continuation cannot render the agent's templates", async () => {
    await createAgent(stack, admin, {
      name: "gated",
      llm_provider_id: providers.openai,
      enabled_functions: ["default/wire"],
      function_parameters: { "default/wire": { note: "{{ city }}" } },
    });
    const chat = await createChat(stack, admin, "gated", { input: { city: "paris" } });
    fake.script({ tool_calls: [{ id: "gate1", name: "default__wire", arguments: '{"amount":1}' }] });
    const paused = await streamMessage(stack, admin, chat, "wire it");
    expect(
      paused.events.some(
        (event) => event.event === "message" && JSON.stringify(event.data).includes("approval"),
      ),
    ).toBe(true);
    const setNote = async (note: string) =>
      expect(
        (
          await api(stack, admin, "PUT", "/api/v1/agents/default/gated", {
            function_parameters: { "default/wire": { note } },
          })
        ).status,
      ).toBe(200);
    await setNote("{{ region | upper }}");
    const refused = await api(stack, admin, "POST", `/chats/${chat}/approve-tool/gate1`, { approved: true });
    expect(refused.status).toBe(400);
    await setNote("{{ city | upper }}");
    fake.script({ content: "sent" });
    const approved = await api(stack, admin, "POST", `/chats/${chat}/approve-tool/gate1`, { approved: true });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    expect(toolResults(fake.requests.at(-1) as never)[0]?.content).toEqual({ amount: 1, note: "PARIS" });
  });
});

describe("output schema", () => {
  it("keeps an answer that breaks the agent's output schema and reports why, whatever the schema's language", async () => {
    await createAgent(stack, admin, {
      name: "structured",
      output_schema: { type: "object", properties: { имя: { type: "string" } }, required: ["имя"] },
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "structured");
    fake.script({ content: "{}" }, { content: "{}" });
    const answer = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "fill" });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body).toMatchObject({ role: "assistant", content: "{}" });
    const header = answer.headers.get("x-output-schema-errors") ?? "";
    expect(decodeURIComponent(header)).toContain("имя");
    const streamed = await streamMessage(stack, admin, chat, "again");
    const done = streamed.events.at(-1);
    expect(done?.event).toBe("done");
    expect(String((done?.data as { output_errors?: string } | undefined)?.output_errors)).toContain("имя");
  });
});

describe("typed prefill", () => {
  it("locks the chat input's values with their types, and renders templates inside lists", async () => {
    await createAgent(stack, admin, {
      name: "offsetter",
      llm_provider_id: providers.openai,
      enabled_functions: ["default/add", "default/forecast"],
      function_parameters: {
        "default/add": { b: "{{ offset }}" },
        "default/forecast": { days: "{{ offset }}", stops: [{ city: "{{ cities[0] }}" }] },
      },
    });
    const chat = await createChat(stack, admin, "offsetter", { input: { offset: 5, cities: ["Oslo"] } });
    fake.script(
      {
        tool_calls: [
          { id: "typed_add", name: "default__add", arguments: '{"a":2,"b":"nine"}' },
          { id: "typed_forecast", name: "default__forecast", arguments: '{"city":"Paris","days":1}' },
        ],
      },
      { content: "7" },
    );
    const response = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "2 + offset" });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    const add = toolParameters(fake.requests[0] as never, "default__add") as {
      properties: Record<string, { default?: unknown }>;
    };
    expect(add.properties.b?.default).toBe(5);
    expect(toolResults(fake.requests[1] as never).map((result) => result.content)).toEqual([
      { sum: 7, chat, trigger: "AGENT" },
      { city: "Paris", days: 5, stops: [{ city: "Oslo" }] },
    ]);
  });
});

/**
 * The user message is stored before the model is called, and every later turn sends it again: inline data the
 * provider refuses would fail each of them. It is refused before anything is stored, and what the provider needs
 * (OpenAI: a filename with file_data) is added on the wire.
 */
describe("inline data sent to the provider on every later turn (§5.9)", () => {
  let chat: string;
  beforeAll(async () => {
    await createAgent(stack, admin, {
      name: "reader",
      llm_provider_id: providers.openai,
      model: "fake-model",
    });
    chat = await createChat(stack, admin, "reader");
  });

  it("refuses file_data, image or audio data that is not base64 with a 422 naming the field, storing nothing", async () => {
    const cases = [
      { part: { type: "file", file_data: "not base64!", mime_type: "application/pdf" }, field: "file_data" },
      { part: { type: "file", file_data: "data:text/plain,hello", filename: "a.txt" }, field: "file_data" },
      { part: { type: "image", image: "data:image/png;base64,not base64!" }, field: "image" },
      { part: { type: "audio", data: "%%%", format: "wav" }, field: "data" },
    ];
    for (const { part, field } of cases) {
      const content = [{ type: "text", text: "read this" }, part];
      for (const path of [`/chats/${chat}/messages`, `/chats/${chat}/messages/stream`]) {
        const response = await api(stack, admin, "POST", path, { content });
        expect(response.status, `${path} ${JSON.stringify(part)}`).toBe(422);
        expect(response.body).toMatchObject({
          detail: [{ loc: ["body", "content", 1, field], type: "custom" }],
        });
      }
    }
    expect(await chatMessages(stack, admin, chat)).toEqual([]);
    expect(fake.requests).toEqual([]);
  });

  it("sends OpenAI a file without a filename under one made from its media type", async () => {
    fake.script({ content: "read" });
    const notes = btoa("some notes");
    const response = await api(stack, admin, "POST", `/chats/${chat}/messages`, {
      content: [
        { type: "text", text: "summarize" },
        { type: "file", file_data: "JVBERi0xLjQ=", mime_type: "application/pdf" },
        { type: "file", file_data: `data:text/plain;base64,${notes}` },
      ],
    });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    const userMessage = (
      fake.requests[0]?.body.messages as { role: string; content: unknown }[] | undefined
    )?.at(-1);
    expect(userMessage?.content).toEqual([
      { type: "text", text: "summarize" },
      { type: "file", file: { file_data: "data:application/pdf;base64,JVBERi0xLjQ=", filename: "file.pdf" } },
      { type: "file", file: { file_data: `data:text/plain;base64,${notes}`, filename: "file.txt" } },
    ]);
  });
});
