/**
 * The chat stream as a log (issue 6 §5): resume after a dropped connection, several viewers (SSE and
 * WebSocket) seeing the same sequence, server-side stop, one turn at a time, the AI SDK UI-message stream read
 * by the `ai` package's own transport, and a stack restart in the middle of a turn.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DefaultChatTransport, readUIMessageStream, type UIMessage, type UIMessageChunk } from "ai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { signAccessToken } from "../../workers/auth/tokens";
import { type FakeLlm, startFakeLlm } from "../fixtures/fake-llm";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL } from "../helpers/auth";
import {
  chatMessages,
  contentOf,
  createAgent,
  createChat,
  createFakeProviders,
  parseSse,
  type SseEvent,
  streamMessage,
} from "../helpers/chat";
import { openStackDb } from "../helpers/db";
import { createFunction, pythonFunction } from "../helpers/functions";
import { startTestStack, type TestStack } from "../helpers/stack";

let stack: TestStack;
let fake: FakeLlm;
let admin: Session;
let providers: Awaited<ReturnType<typeof createFakeProviders>>;
const SECRET_KEY = "chat-streams-test-signing-key-0123456789abcdef";

beforeAll(async () => {
  fake = await startFakeLlm();
  // A known signing key: one test mints a token that expires in a moment.
  stack = await startTestStack({ workerVars: { ...IDENTITY_VARS, SECRET_KEY } });
  admin = await login(stack, SUPERADMIN_EMAIL);
  providers = await createFakeProviders(stack, admin, fake);
  await createAgent(stack, admin, { name: "talker", llm_provider_id: providers.openai });
  await createAgent(stack, admin, { name: "claude", llm_provider_id: providers.anthropic });
  await createFunction(stack, admin, pythonFunction("double", '    return {"value": input["x"] * 2}'));
  await createFunction(stack, admin, pythonFunction("pay", "    return input", { requires_approval: true }));
  await createAgent(stack, admin, {
    name: "banker",
    enabled_functions: ["default/pay"],
    llm_provider_id: providers.openai,
  });
  await createAgent(stack, admin, {
    name: "doubler",
    enabled_functions: ["default/double"],
    llm_provider_id: providers.openai,
  });
});
afterAll(async () => {
  await stack?.stop();
  await fake?.close();
});
beforeEach(() => fake.reset());

/** Opens a stream and hands back a reader of its events as they arrive. */
async function openStream(path: string, init: RequestInit = {}) {
  const controller = new AbortController();
  const response = await stack.fetch(path, {
    ...init,
    headers: { "content-type": "application/json", ...admin.headers, ...(init.headers ?? {}) },
    signal: controller.signal,
  });
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const events: SseEvent[] = [];
  let finished = false;
  const pump = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        const end = buffer.lastIndexOf("\n\n");
        if (end >= 0) {
          events.push(...parseSse(buffer.slice(0, end + 2)));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch {
      // aborted
    }
    finished = true;
  })();
  return {
    response,
    events,
    get finished() {
      return finished;
    },
    ended: pump,
    abort: () => controller.abort(),
    async waitFor(predicate: (events: SseEvent[]) => boolean, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(events)) {
        if (Date.now() > deadline) throw new Error(`timed out; events: ${JSON.stringify(events)}`);
        if (finished) throw new Error(`stream ended early; events: ${JSON.stringify(events)}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}

const chunkCount = (events: SseEvent[]) => events.filter((event) => event.event === "message").length;

describe("resume and viewers", () => {
  it("a client that drops mid-stream resumes from its last id and gets every remaining event once", async () => {
    const chat = await createChat(stack, admin, "talker");
    const words = ["one ", "two ", "three ", "four ", "five ", "six"];
    fake.script({ content: words.join(""), chunks: words, chunkDelayMs: 150 });
    const first = await openStream(`/chats/${chat}/messages/stream`, {
      method: "POST",
      body: JSON.stringify({ content: "count" }),
    });
    await first.waitFor((events) => chunkCount(events) >= 2);
    first.abort();
    const seen = [...first.events];
    const lastId = seen[seen.length - 1]?.id as string;
    const resumed = await stack.fetch(`/chats/${chat}/stream`, {
      headers: { ...admin.headers, "last-event-id": lastId, origin: "https://console.example" },
    });
    // The object's own response (immutable headers) still gets the CORS headers.
    expect(resumed.headers.get("access-control-allow-origin")).toBe("https://console.example");
    const rest = parseSse(await resumed.text());
    expect(rest[0]?.id && Number(rest[0].id)).toBeGreaterThan(Number(lastId));
    expect(rest[rest.length - 1]?.event).toBe("done");
    expect(contentOf([...seen, ...rest])).toBe(words.join(""));
    // A full replay of the turn is exactly what the two connections saw together.
    const replay = parseSse(
      await (await stack.fetch(`/chats/${chat}/stream`, { headers: admin.headers })).text(),
    );
    expect(replay.map((event) => event.id)).toEqual([...seen, ...rest].map((event) => event.id));
    const history = await chatMessages(stack, admin, chat);
    expect(history[history.length - 1]).toMatchObject({ role: "assistant", content: words.join("") });
  });

  it("joins text streamed faster than every 50 ms, sending the first at once and the end apart", async () => {
    const chat = await createChat(stack, admin, "talker");
    const words = Array.from({ length: 30 }, (_, index) => `w${index} `);
    fake.script({ content: words.join(""), chunks: words, chunkDelayMs: 2 });
    const stream = await openStream(`/chats/${chat}/messages/stream`, {
      method: "POST",
      body: JSON.stringify({ content: "go" }),
    });
    await stream.ended;
    const messages = stream.events.filter((event) => event.event === "message");
    const texts = messages
      .map((event) => (event.data as { content: string | null }).content)
      .filter((content): content is string => Boolean(content));
    expect(texts[0]).toBe("w0 ");
    expect(texts.join("")).toBe(words.join(""));
    expect(texts.length).toBeLessThanOrEqual(15);
    for (const message of messages) {
      expect(Object.keys(message.data as object).sort()).toEqual(["content", "finish_reason", "tool_calls"]);
    }
    expect(messages[messages.length - 1]?.data).toMatchObject({ content: null, finish_reason: "stop" });
    expect(stream.events[stream.events.length - 1]?.event).toBe("done");
    const history = await chatMessages(stack, admin, chat);
    expect(history[history.length - 1]).toMatchObject({ role: "assistant", content: words.join("") });
  });

  it("two viewers (SSE and WebSocket) see identical sequences, and stop ends the turn for both", async () => {
    const chat = await createChat(stack, admin, "claude");
    fake.script({ content: "partial answer", chunks: ["partial ", "answer"], hold: true });
    const sender = await openStream(`/chats/${chat}/messages/stream`, {
      method: "POST",
      body: JSON.stringify({ content: "talk" }),
    });
    await sender.waitFor((events) => contentOf(events) === "partial answer");
    const viewer = await openStream(`/chats/${chat}/stream`, { method: "GET" });
    const frames: { id: number; event: string; data: unknown }[] = [];
    // As a browser does it: no headers, the token offered as a subprotocol.
    const socket = new WebSocket(`${stack.apiUrl.replace(/^http/, "ws")}/chats/${chat}/ws?after=0`, [
      "sinas.v1",
      `bearer.${admin.accessToken}`,
    ]);
    socket.on("message", (data) => frames.push(JSON.parse(String(data))));
    await new Promise((resolve, reject) => {
      socket.once("open", resolve);
      socket.once("error", reject);
    });
    expect(socket.protocol).toBe("sinas.v1");
    await viewer.waitFor((events) => contentOf(events) === "partial answer");

    const busy = await api(stack, admin, "POST", `/chats/${chat}/messages/stream`, { content: "again" });
    expect(busy.status).toBe(409);
    // Someone else's send is refused as it would be on an idle chat: the turn is not theirs to learn about.
    const stranger = await login(stack, "eve@acme.io");
    const foreign = await api(stack, stranger, "POST", `/chats/${chat}/messages`, { content: "hi" });
    expect(foreign.status).toBe(403);

    const stop = await api(stack, admin, "POST", `/chats/${chat}/stop`);
    expect(stop.status).toBe(200);
    expect(stop.body).toMatchObject({ stopped: true });
    await Promise.all([sender.ended, viewer.ended]);
    for (const stream of [sender, viewer]) {
      expect(stream.events[stream.events.length - 1]).toMatchObject({
        event: "done",
        data: { status: "stopped" },
      });
    }
    expect(viewer.events.map((event) => event.id)).toEqual(sender.events.map((event) => event.id));
    const deadline = Date.now() + 5000;
    while (!frames.some((frame) => frame.event === "done") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    socket.close();
    expect(frames.map((frame) => String(frame.id))).toEqual(sender.events.map((event) => event.id));
    const history = await chatMessages(stack, admin, chat);
    expect(history[history.length - 1]).toMatchObject({ role: "assistant", content: "partial answer" });
    const idle = await api(stack, admin, "POST", `/chats/${chat}/stop`);
    expect(idle.body).toMatchObject({ stopped: false });
  });

  it("closes a WebSocket viewer whose token expired (4001) at the next event; a fresh one resumes it", async () => {
    const chat = await createChat(stack, admin, "talker");
    const url = (after: number) => `${stack.apiUrl.replace(/^http/, "ws")}/chats/${chat}/ws?after=${after}`;
    const open = async (token: string, after: number) => {
      const socket = new WebSocket(url(after), ["sinas.v1", `bearer.${token}`]);
      const frames: { id: number; event: string }[] = [];
      socket.on("message", (data) => frames.push(JSON.parse(String(data))));
      // The close frame's code, as soon as it arrives: ws reports "close" only once the TCP connection has
      // ended too, which wrangler dev's proxy delays by ~10 s after a server-side close.
      const closed = (async () => {
        while (socket.readyState <= WebSocket.OPEN) await new Promise((resolve) => setTimeout(resolve, 20));
        return (socket as unknown as { _closeCode: number })._closeCode;
      })();
      await new Promise((resolve, reject) => {
        socket.once("open", resolve);
        socket.once("error", reject);
      });
      return { socket, frames, closed };
    };
    // A token valid for a few seconds (think: its user deactivated since, or a grant revoked).
    const issuedAt = Math.floor(Date.now() / 1000);
    const claims = { sub: admin.user.id, email: admin.user.email };
    const brief = await signAccessToken(claims, SECRET_KEY, 3, issuedAt);
    const expiring = await open(brief, 0);
    await new Promise((resolve) => setTimeout(resolve, (issuedAt + 3) * 1000 + 100 - Date.now()));
    fake.script({ content: "after expiry" });
    const sent = await openStream(`/chats/${chat}/messages/stream`, {
      method: "POST",
      body: JSON.stringify({ content: "hi" }),
    });
    await sent.ended;
    expect(await expiring.closed).toBe(4001);
    expect(expiring.frames).toEqual([]);

    const fresh = await open(admin.accessToken, 0);
    const deadline = Date.now() + 5000;
    while (!fresh.frames.some((frame) => frame.event === "done") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    fresh.socket.close();
    expect(fresh.frames.map((frame) => String(frame.id))).toEqual(sent.events.map((event) => event.id));
  });

  it("deleting a chat stops its running turn and ends its streams", async () => {
    const chat = await createChat(stack, admin, "talker");
    fake.script({ content: "never finished", chunks: ["never ", "finished"], hold: true });
    const sender = await openStream(`/chats/${chat}/messages/stream`, {
      method: "POST",
      body: JSON.stringify({ content: "talk" }),
    });
    await sender.waitFor((events) => contentOf(events) === "never finished");
    expect((await api(stack, admin, "DELETE", `/chats/${chat}`)).status).toBe(204);
    await sender.ended;
    expect(sender.events[sender.events.length - 1]).toMatchObject({
      event: "done",
      data: { status: "stopped" },
    });
    expect((await stack.fetch(`/chats/${chat}/stream`, { headers: admin.headers })).status).toBe(404);
  });

  it("refuses a malformed event id (422) and one beyond the chat's log (400), for SSE and WebSocket viewers", async () => {
    const chat = await createChat(stack, admin, "talker");
    fake.script({ content: "one answer" });
    expect((await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "hi" })).status).toBe(200);
    const resume = (headers: Record<string, string>, query = "") =>
      stack.fetch(`/chats/${chat}/stream${query}`, { headers: { ...admin.headers, ...headers } });
    for (const id of ["abc", "-1", "1.5"]) {
      const refused = await resume({ "last-event-id": id });
      expect(refused.status, id).toBe(422);
      expect(((await refused.json()) as { detail: { loc: unknown[] }[] }).detail[0]?.loc).toEqual([
        "header",
        "last-event-id",
      ]);
    }
    for (const [headers, query] of [
      [{ "last-event-id": "999999" }, ""],
      [{}, "?after=999999"],
    ] as const) {
      const beyond = await resume(headers, query);
      expect(beyond.status).toBe(400);
      expect(await beyond.json()).toMatchObject({
        code: "BAD_REQUEST",
        message: expect.stringContaining("999999"),
      });
    }
    // An empty Last-Event-ID is none: the latest turn from its start.
    const whole = await resume({ "last-event-id": "" });
    expect(parseSse(await whole.text()).at(-1)).toMatchObject({ event: "done" });

    const socketStatus = (after: string) =>
      new Promise<number>((resolve, reject) => {
        const url = `${stack.apiUrl.replace(/^http/, "ws")}/chats/${chat}/ws?after=${after}`;
        const socket = new WebSocket(url, { headers: admin.headers });
        socket.once("unexpected-response", (_request, response) => resolve(response.statusCode ?? 0));
        socket.once("open", () => {
          socket.close();
          resolve(101);
        });
        socket.once("error", reject);
      });
    expect(await socketStatus("abc")).toBe(422);
    expect(await socketStatus("999999")).toBe(400);
    expect(await socketStatus("0")).toBe(101);
  });

  it("answers 204 when there is no turn to follow, and 404 for another user's chat", async () => {
    const chat = await createChat(stack, admin, "talker");
    expect((await stack.fetch(`/chats/${chat}/stream`, { headers: admin.headers })).status).toBe(204);
    expect((await stack.fetch(`/ui/chats/${chat}/stream`, { headers: admin.headers })).status).toBe(204);
    const eve = await login(stack, "eve@acme.io");
    expect((await stack.fetch(`/chats/${chat}/stream`, { headers: eve.headers })).status).toBe(404);
    expect((await api(stack, eve, "POST", `/chats/${chat}/stop`)).status).toBe(404);
  });

  it("a viewer arriving while an approval's continuation is being prepared follows the continuation", async () => {
    const chat = await createChat(stack, admin, "banker");
    fake.script({ tool_calls: [{ id: "call_vw", name: "default__pay", arguments: '{"amount":6}' }] });
    const paused = await streamMessage(stack, admin, chat, "pay 6");
    const pausedDone = paused.events.at(-1);
    expect(pausedDone).toMatchObject({ event: "done", data: { awaiting_approval: true } });
    fake.script({ content: "Paid" });

    // Statements queue behind a gate in the order they came, and each gate opens in turn: the approve route's
    // lookup, then the viewer's, then the object's first statement after its claim. So the viewer reaches the
    // object after the claim and before the continuation's first logged event, not by luck of timing.
    const db = openStackDb(stack);
    const [beforeApprove, beforeViewer, beforeObject] = await Promise.all([
      chatsGate(db),
      chatsGate(db),
      chatsGate(db),
    ]);
    try {
      await beforeApprove.hold();
      const approving = api(stack, admin, "POST", `/chats/${chat}/approve-tool/call_vw`, { approved: true });
      approving.catch(() => undefined); // awaited below; a failed assertion must not leave it unhandled
      await pause(500);
      const viewerHeld = beforeViewer.hold();
      await pause(500);
      const watching = stack.fetch(`/chats/${chat}/stream?after=${pausedDone?.id}`, {
        headers: admin.headers,
      });
      await pause(500);
      const objectHeld = beforeObject.hold();
      await pause(500);
      await beforeApprove.open(); // the object claims the slot; its first statement waits behind beforeObject
      await viewerHeld;
      await pause(500);
      await beforeViewer.open(); // the viewer's lookup runs, and it asks the object for the stream
      await objectHeld;
      await pause(500);
      await beforeObject.open();

      const watched = await watching;
      expect(watched.status).toBe(200);
      const events = parseSse(await watched.text());
      expect(Number(events[0]?.id)).toBeGreaterThan(Number(pausedDone?.id));
      expect(events.find((event) => event.event === "tool_result")).toMatchObject({
        data: { tool_call_id: "call_vw", result: { amount: 6 } },
      });
      expect(contentOf(events)).toBe("Paid");
      expect(events.at(-1)).toMatchObject({ event: "done", data: { status: "completed" } });
      expect((await approving).status).toBe(200);
    } finally {
      for (const gate of [beforeApprove, beforeViewer, beforeObject]) await gate.close();
      await db.close();
    }
  });
});

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A connection that holds the chats table in a transaction (on PGlite, whose connections the stack's proxy
 * takes in turns, the whole database): every statement sent meanwhile waits, and they run in the order they came.
 */
async function chatsGate(db: ReturnType<typeof openStackDb>) {
  const client = await db.pool.connect();
  await client.query("select 1"); // connected now: holding takes one turn later
  let held = false;
  return {
    hold: async () => {
      await client.query("begin");
      held = true;
      await client.query("lock table chats in access exclusive mode");
    },
    open: async () => {
      await client.query("commit");
      held = false;
    },
    close: async () => {
      if (held) await client.query("rollback").catch(() => undefined);
      client.release();
    },
  };
}

/** useChat's transport for `chat`, and a submit of `messages` through it. */
function uiChat(chat: string) {
  const transport = new DefaultChatTransport<UIMessage>({
    api: `${stack.apiUrl}/ui/chats`,
    headers: admin.headers,
  });
  const send = async (messages: UIMessage[]) =>
    (await transport.sendMessages({
      chatId: chat,
      trigger: "submit-message",
      messageId: undefined,
      abortSignal: undefined,
      messages,
    })) as ReadableStream<UIMessageChunk>;
  return { transport, send };
}

/**
 * The message a UI-message stream builds: on `message` (updated in place), as useChat continues one, or a
 * fresh one, as its resume rebuilds it. A part the AI SDK cannot apply throws.
 */
async function readUiMessage(
  stream: ReadableStream<UIMessageChunk>,
  message?: UIMessage,
): Promise<UIMessage> {
  let last = message;
  for await (const next of readUIMessageStream({
    stream,
    message,
    onError: (error) => {
      throw error;
    },
  }))
    last = next;
  return last as UIMessage;
}

describe("AI SDK UI-message stream", () => {
  it("is consumed without error by the ai package's DefaultChatTransport and readUIMessageStream", async () => {
    const chat = await createChat(stack, admin, "doubler");
    fake.script(
      { tool_calls: [{ id: "call_d", name: "default__double", arguments: '{"x":21}' }] },
      { content: "It is 42", chunks: ["It is ", "42"] },
    );
    const last = await readUiMessage(
      await uiChat(chat).send([{ id: "m1", role: "user", parts: [{ type: "text", text: "double 21" }] }]),
    );
    const parts = last.parts;
    const tool = parts.find((part) => part.type === "dynamic-tool" || part.type.startsWith("tool-")) as
      | { state: string; output: unknown; input: unknown }
      | undefined;
    expect(tool).toMatchObject({ state: "output-available", input: { x: 21 }, output: { value: 42 } });
    const text = parts
      .filter((part) => part.type === "text")
      .map((part) => (part as { text: string }).text)
      .join("");
    expect(text).toBe("It is 42");
    expect(parts.filter((part) => part.type === "step-start")).toHaveLength(2);
    const history = await chatMessages(stack, admin, chat);
    expect(history.map((message) => message.role)).toEqual(["user", "assistant", "tool", "assistant"]);
  });

  it("takes tool approvals the AI SDK way: addToolApprovalResponse, then the messages again", async () => {
    const chat = await createChat(stack, admin, "banker");
    const { send } = uiChat(chat);
    type ToolPart = {
      type: string;
      toolCallId: string;
      state: string;
      approval?: { id: string };
      output?: unknown;
    };
    const toolPart = (message: UIMessage) =>
      message.parts.find((part) => part.type === "dynamic-tool" || part.type.startsWith("tool-")) as
        | ToolPart
        | undefined;

    const user: UIMessage = { id: "u1", role: "user", parts: [{ type: "text", text: "pay 3" }] };
    fake.script({ tool_calls: [{ id: "call_ui", name: "default__pay", arguments: '{"amount":3}' }] });
    const asked = await readUiMessage(await send([user]));
    expect(toolPart(asked)).toMatchObject({
      toolCallId: "call_ui",
      state: "approval-requested",
      approval: { id: "call_ui" },
    });

    // What useChat's addToolApprovalResponse({id, approved: true}) does to the message before resubmitting.
    const answered: UIMessage = {
      ...asked,
      parts: asked.parts.map((part) =>
        part === (toolPart(asked) as unknown)
          ? ({ ...part, state: "approval-responded", approval: { id: "call_ui", approved: true } } as never)
          : part,
      ),
    };
    // Someone else's decision for this chat is refused and changes nothing: the owner's still counts.
    const mallory = await login(stack, "mallory@acme.io");
    const foreign = await api(stack, mallory, "POST", "/ui/chats", { id: chat, messages: [user, answered] });
    expect(foreign.status, JSON.stringify(foreign.body)).toBe(403);
    expect(fake.requests).toHaveLength(1);

    fake.script({ content: "Paid", chunks: ["Pa", "id"] });
    // readUIMessageStream updates the message it is given: keep `answered` as sent.
    const done = await readUiMessage(await send([user, answered]), structuredClone(answered));
    expect(toolPart(done)).toMatchObject({ state: "output-available", output: { amount: 3 } });
    expect(
      done.parts.filter((part) => part.type === "text").map((part) => (part as { text: string }).text),
    ).toEqual(["Paid"]);
    const executions = await api(stack, admin, "GET", "/executions?function_name=pay");
    expect(
      (executions.body as { trigger_id: string }[]).filter((row) => row.trigger_id === chat),
    ).toHaveLength(1);
    const again = await api(stack, admin, "POST", "/ui/chats", { id: chat, messages: [user, answered] });
    expect(again.status, JSON.stringify(again.body)).toBe(404);
  });

  it("replays a turn continued after approval as the whole message, as the AI SDK's resume expects", async () => {
    const chat = await createChat(stack, admin, "banker");
    const { transport, send } = uiChat(chat);
    const user: UIMessage = { id: "u1", role: "user", parts: [{ type: "text", text: "pay 4" }] };
    fake.script({
      content: "Paying",
      tool_calls: [{ id: "call_rs", name: "default__pay", arguments: '{"amount":4}' }],
    });
    const asked = await readUiMessage(await send([user]));
    const answered: UIMessage = {
      ...asked,
      parts: asked.parts.map((part) =>
        "toolCallId" in part && part.toolCallId === "call_rs"
          ? ({ ...part, state: "approval-responded", approval: { id: "call_rs", approved: true } } as never)
          : part,
      ),
    };
    fake.script({ content: "Paid", chunks: ["Pa", "id"], hold: true });
    const continuation = await send([user, answered]);
    const inBand = readUiMessage(continuation, structuredClone(answered));
    while (fake.requests.length < 2) await new Promise((resolve) => setTimeout(resolve, 20));
    // useChat({resume: true}) after a reload, while the continuation runs: the SDK resets the message at the
    // resumed stream's first `start` and rebuilds it from the parts.
    const resumed = await transport.reconnectToStream({ chatId: chat });
    expect(resumed).not.toBeNull();
    const reading = readUiMessage(resumed as ReadableStream<UIMessageChunk>);
    fake.release();
    const wholeMessage = (message: UIMessage) => {
      const tool = message.parts.find((part) => "toolCallId" in part) as { state: string; output: unknown };
      expect(tool).toMatchObject({ state: "output-available", output: { amount: 4 } });
      const texts = message.parts.filter((part) => part.type === "text").map((part) => part.text);
      expect(texts).toEqual(["Paying", "Paid"]);
    };
    wholeMessage(await reading);
    await inBand;
    // The same after the end, also from an id in the middle of the turn (ignored: the whole message again).
    const latest = await stack.fetch(`/chats/${chat}/stream?format=ui`, { headers: admin.headers });
    const body = await latest.text();
    const ids = [...body.matchAll(/^id: (\d+)$/gm)].map((match) => Number(match[1]));
    const middle = ids[Math.floor(ids.length / 2)] as number;
    for (const query of ["?format=ui", `?format=ui&after=${middle}`]) {
      const replay = await new DefaultChatTransport<UIMessage>({
        api: `${stack.apiUrl}/ui/chats`,
        headers: admin.headers,
        prepareReconnectToStreamRequest: () => ({ api: `${stack.apiUrl}/chats/${chat}/stream${query}` }),
      }).reconnectToStream({ chatId: chat });
      wholeMessage(await readUiMessage(replay as ReadableStream<UIMessageChunk>));
    }
  });

  it("ends a tool part whose call never ran (the round cap) as an error, not pending forever", async () => {
    const chat = await createChat(stack, admin, "doubler");
    fake.script(
      ...Array.from({ length: 11 }, (_, round) => ({
        tool_calls: [{ id: `cap${round}`, name: "default__double", arguments: '{"x":1}' }],
      })),
    );
    const last = await readUiMessage(
      await uiChat(chat).send([{ id: "m1", role: "user", parts: [{ type: "text", text: "loop" }] }]),
    );
    const tools = last.parts.filter((part) => "toolCallId" in part) as {
      toolCallId: string;
      state: string;
    }[];
    expect(tools).toHaveLength(11);
    expect(tools.slice(0, 10).every((tool) => tool.state === "output-available")).toBe(true);
    expect(tools[10]).toMatchObject({ toolCallId: "cap10", state: "output-error" });
  });

  it("sends the header and rejects a request without a user message", async () => {
    const chat = await createChat(stack, admin, "talker");
    fake.script({ content: "hey" });
    const response = await stack.fetch("/ui/chats", {
      method: "POST",
      headers: { "content-type": "application/json", ...admin.headers },
      body: JSON.stringify({
        id: chat,
        messages: [{ id: "u", role: "user", parts: [{ type: "text", text: "hi" }] }],
      }),
    });
    expect(response.headers.get("x-vercel-ai-ui-message-stream")).toBe("v1");
    const text = await response.text();
    expect(text.trim().endsWith("data: [DONE]")).toBe(true);
    const empty = await api(stack, admin, "POST", "/ui/chats", {
      id: chat,
      messages: [{ id: "a", role: "assistant", parts: [{ type: "text", text: "x" }] }],
    });
    expect(empty.status).toBe(422);
  });
});

describe("restart mid-turn", () => {
  let dataDir: string;
  let restartable: TestStack | undefined;
  afterAll(async () => {
    await restartable?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  // Two full stack starts on on-disk PGlite: beside another test file's stack in CI, ~30 s each.
  it("keeps every persisted message and ends the interrupted turn with a clear error event", async () => {
    dataDir = mkdtempSync(join(tmpdir(), "sinas-chat-restart-"));
    restartable = await startTestStack({ workerVars: IDENTITY_VARS, dataDir });
    let session = await login(restartable, SUPERADMIN_EMAIL);
    const providers = await createFakeProviders(restartable, session, fake);
    await createAgent(restartable, session, { name: "talker", llm_provider_id: providers.openai });
    const chat = await createChat(restartable, session, "talker");
    fake.script({ content: "half an answer", chunks: ["half ", "an answer"], hold: true });
    const streaming = await restartable.fetch(`/chats/${chat}/messages/stream`, {
      method: "POST",
      headers: { "content-type": "application/json", ...session.headers },
      body: JSON.stringify({ content: "tell me" }),
    });
    const reader = (streaming.body as ReadableStream<Uint8Array>).getReader();
    let seen = "";
    while (!seen.includes("an answer")) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    await restartable.stop();
    restartable = await startTestStack({ workerVars: IDENTITY_VARS, dataDir });
    session = await login(restartable, SUPERADMIN_EMAIL);
    const replay = parseSse(
      await (await restartable.fetch(`/chats/${chat}/stream`, { headers: session.headers })).text(),
    );
    const end = replay[replay.length - 1];
    expect(end?.event).toBe("error");
    expect(String((end?.data as { error?: string } | undefined)?.error)).toContain("interrupted");
    const history = await chatMessages(restartable, session, chat);
    expect(history.map((message) => [message.role, message.content])).toEqual([
      ["user", "tell me"],
      ["assistant", "half an answer"],
    ]);
  }, 150_000);
});
