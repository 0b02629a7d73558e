/**
 * useChat against the real stack, driven by the `ai` package's own Chat logic (AbstractChat with an in-memory
 * state, as `@ai-sdk/react` keeps it in React): tool approvals resubmitted by
 * `lastAssistantMessageIsCompleteWithApprovalResponses` when the paused round also has a call needing no
 * approval, regenerate (the server drops its latest answer and answers again), and message edits, which the server
 * refuses (its history is the chat's).
 */
import {
  AbstractChat,
  type ChatInit,
  type ChatState,
  DefaultChatTransport,
  isToolUIPart,
  lastAssistantMessageIsCompleteWithApprovalResponses,
  readUIMessageStream,
  type UIMessage,
  type UIMessageChunk,
} from "ai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { api } from "../helpers/auth";
import {
  type ChatStack,
  chatMessages,
  createAgent,
  createChat,
  parseSse,
  startChatStack,
  stopChatStack,
} from "../helpers/chat";
import { createFunction, pythonFunction } from "../helpers/functions";

let ctx: ChatStack;

beforeAll(async () => {
  ctx = await startChatStack("ui-other@acme.io");
  const { stack, admin, providers } = ctx;
  await createFunction(stack, admin, pythonFunction("double", '    return {"value": input["x"] * 2}'));
  await createFunction(stack, admin, pythonFunction("pay", "    return input", { requires_approval: true }));
  await createAgent(stack, admin, {
    name: "mixer",
    enabled_functions: ["default/double", "default/pay"],
    llm_provider_id: providers.openai,
  });
});
afterAll(() => stopChatStack(ctx ?? {}));
beforeEach(() => ctx.fake.reset());

/** useChat's state outside React: plain arrays, replaced on every change as React's state is. */
function memoryState(): ChatState<UIMessage> {
  return {
    status: "ready",
    error: undefined,
    messages: [],
    pushMessage(message) {
      this.messages = [...this.messages, message];
    },
    popMessage() {
      this.messages = this.messages.slice(0, -1);
    },
    replaceMessage(index, message) {
      this.messages = this.messages.map((old, at) => (at === index ? message : old));
    },
    snapshot: (thing) => structuredClone(thing),
  };
}

class TestChat extends AbstractChat<UIMessage> {
  readonly #ends: (() => void)[];

  constructor(init: Omit<ChatInit<UIMessage>, "messages" | "onFinish" | "onError">) {
    const ends: (() => void)[] = [];
    const ended = () => ends.shift()?.();
    super({ ...init, state: memoryState(), onFinish: ended, onError: ended });
    this.#ends = ends;
  }

  /** The end of the next request (a stream read to its end, or a failure); call before it starts. */
  nextEnd(): Promise<void> {
    return new Promise((resolve) => this.#ends.push(resolve));
  }
}

function uiChat(chatId: string, sendAutomaticallyWhen?: ChatInit<UIMessage>["sendAutomaticallyWhen"]) {
  const transport = new DefaultChatTransport<UIMessage>({
    api: `${ctx.stack.apiUrl}/ui/chats`,
    headers: ctx.admin.headers,
  });
  return new TestChat({ id: chatId, transport, sendAutomaticallyWhen });
}

function toolStates(message: UIMessage | undefined) {
  return (message?.parts ?? []).filter(isToolUIPart).map((part) => ({
    toolCallId: part.toolCallId,
    state: part.state,
    ...(part.state === "output-available" ? { output: part.output } : {}),
  }));
}

const texts = (message: UIMessage | undefined) =>
  (message?.parts ?? []).flatMap((part) => (part.type === "text" ? [part.text] : []));

async function within<T>(promise: Promise<T>, what: string, ms = 20_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The assistant message a UI-message stream read again from the log builds. */
async function replayedMessage(path: string): Promise<UIMessage> {
  const response = await ctx.stack.fetch(path, { headers: ctx.admin.headers });
  expect(response.status).toBe(200);
  let last: UIMessage | undefined;
  for await (const message of readUIMessageStream({
    stream: (await new DefaultChatTransport<UIMessage>({
      prepareReconnectToStreamRequest: () => ({ api: `${ctx.stack.apiUrl}${path}` }),
      headers: ctx.admin.headers,
    }).reconnectToStream({ chatId: "replay" })) as ReadableStream<UIMessageChunk>,
    onError: (error) => {
      throw error;
    },
  }))
    last = message;
  return last as UIMessage;
}

describe("useChat tool approvals", () => {
  it("resubmits the approval of a round that also has a call needing none, which then runs with it", async () => {
    const { stack, admin, fake } = ctx;
    const chatId = await createChat(stack, admin, "mixer");
    const checks: boolean[] = [];
    const chat = uiChat(chatId, (options) => {
      const ready = lastAssistantMessageIsCompleteWithApprovalResponses(options);
      checks.push(ready);
      return ready;
    });
    fake.script({
      content: "On it",
      tool_calls: [
        { id: "call_d", name: "default__double", arguments: '{"x":21}' },
        { id: "call_p", name: "default__pay", arguments: '{"amount":3}' },
      ],
    });
    await chat.sendMessage({ text: "double 21 and pay 3" });
    expect(chat.error).toBeUndefined();
    // Only the call asking for approval shows: the other runs after the decision (D-29).
    expect(toolStates(chat.lastMessage)).toEqual([{ toolCallId: "call_p", state: "approval-requested" }]);
    expect(checks).toEqual([false]);

    fake.script({ content: "Doubled and paid", chunks: ["Doubled ", "and paid"] });
    const continued = chat.nextEnd();
    await chat.addToolApprovalResponse({ id: "call_p", approved: true });
    expect(checks).toEqual([false, true]);
    await within(continued, "the continued turn");
    expect(chat.error).toBeUndefined();
    expect(chat.messages).toHaveLength(2);
    const live = chat.lastMessage;
    expect(toolStates(live)).toEqual([
      { toolCallId: "call_p", state: "output-available", output: { amount: 3 } },
      { toolCallId: "call_d", state: "output-available", output: { value: 42 } },
    ]);
    expect(texts(live)).toEqual(["On it", "Doubled and paid"]);
    const history = await chatMessages(stack, admin, chatId);
    expect(history.map((message) => message.role)).toEqual([
      "user",
      "assistant",
      "tool",
      "tool",
      "assistant",
    ]);

    // Read again from the log, the message has the same parts, the paused turn included.
    const replayed = await replayedMessage(`/chats/${chatId}/stream?format=ui`);
    expect(toolStates(replayed)).toEqual(toolStates(live));
    expect(texts(replayed)).toEqual(texts(live));
    expect(replayed.parts.map((part) => part.type)).toEqual(live?.parts.map((part) => part.type));
    // SINAS's own stream of the paused turn is as before: both calls' chunks, one approval_required.
    const sinas = parseSse(
      await (await stack.fetch(`/chats/${chatId}/stream?after=0`, { headers: admin.headers })).text(),
    );
    const streamedIds = sinas.flatMap((event) =>
      ((event.data as { tool_calls?: { id?: string }[] }).tool_calls ?? []).flatMap((call) => call.id ?? []),
    );
    expect(streamedIds).toEqual(["call_d", "call_p"]);
    expect(
      sinas.filter((event) => (event.data as { type?: string }).type === "approval_required"),
    ).toHaveLength(1);
  });
});

describe("useChat regenerate and edits", () => {
  /** The texts of the messages the model was sent in request `index`, by role. */
  const sentTexts = (index: number) =>
    (
      (ctx.fake.requests[index]?.body as { messages?: { role: string; content: unknown }[] } | undefined)
        ?.messages ?? []
    ).map((message) => `${message.role}: ${typeof message.content === "string" ? message.content : ""}`);

  it("regenerates the latest answer: dropped from the history, the user message answered again", async () => {
    const { stack, admin, fake } = ctx;
    const chatId = await createChat(stack, admin, "mixer");
    const chat = uiChat(chatId);
    fake.script({ content: "First answer" });
    await chat.sendMessage({ text: "hello" });
    expect(texts(chat.lastMessage)).toEqual(["First answer"]);

    fake.script({ content: "Second answer" });
    await chat.regenerate();
    expect(chat.status, chat.error?.message).toBe("ready");
    expect(chat.messages.map((message) => [message.role, texts(message)])).toEqual([
      ["user", ["hello"]],
      ["assistant", ["Second answer"]],
    ]);
    // The model saw the question again, not the dropped answer; the server's history is the client's.
    expect(sentTexts(1).filter((text) => !text.startsWith("system"))).toEqual(["user: hello"]);
    expect(
      (await chatMessages(stack, admin, chatId)).map((message) => [message.role, message.content]),
    ).toEqual([
      ["user", "hello"],
      ["assistant", "Second answer"],
    ]);

    // The next turn follows the regenerated answer.
    fake.script({ content: "Third" });
    await chat.sendMessage({ text: "and?" });
    expect(sentTexts(2).filter((text) => !text.startsWith("system"))).toEqual([
      "user: hello",
      "assistant: Second answer",
      "user: and?",
    ]);
  });

  it("regenerates an answer paused for approval: its pending call goes with it", async () => {
    const { stack, admin, fake } = ctx;
    const chatId = await createChat(stack, admin, "mixer");
    const chat = uiChat(chatId);
    fake.script({ tool_calls: [{ id: "call_g", name: "default__pay", arguments: '{"amount":7}' }] });
    await chat.sendMessage({ text: "pay 7" });
    expect(toolStates(chat.lastMessage)).toEqual([{ toolCallId: "call_g", state: "approval-requested" }]);

    fake.script({ content: "On second thought, no." });
    await chat.regenerate();
    expect(chat.status, chat.error?.message).toBe("ready");
    expect(texts(chat.lastMessage)).toEqual(["On second thought, no."]);
    expect(toolStates(chat.lastMessage)).toEqual([]);
    const approve = await api(stack, admin, "POST", `/chats/${chatId}/approve-tool/call_g`, {
      approved: true,
    });
    expect(approve.status).toBe(404);
    expect(sentTexts(1).filter((text) => !text.startsWith("system"))).toEqual(["user: pay 7"]);
  });

  it("refuses to regenerate another than the latest answer, or in a chat without a user message (422)", async () => {
    const { stack, admin, fake } = ctx;
    const chatId = await createChat(stack, admin, "mixer");
    const chat = uiChat(chatId);
    fake.script({ content: "One" });
    await chat.sendMessage({ text: "first" });
    const firstAnswer = chat.lastMessage as UIMessage;
    fake.script({ content: "Two" });
    await chat.sendMessage({ text: "second" });
    const before = await chatMessages(stack, admin, chatId);

    await chat.regenerate({ messageId: firstAnswer.id });
    expect(chat.status).toBe("error");
    expect(chat.error?.message).toContain("body.messageId: must be the chat's latest answer");
    const storedFirst = before.find((message) => message.content === "One")?.id as string;
    const byStoredId = await api(stack, admin, "POST", "/ui/chats", {
      id: chatId,
      messages: [{ id: "u", role: "user", parts: [{ type: "text", text: "first" }] }],
      trigger: "regenerate-message",
      messageId: storedFirst,
    });
    expect(byStoredId.status).toBe(422);
    expect(byStoredId.body).toMatchObject({ code: "VALIDATION_FAILED" });
    expect(fake.requests).toHaveLength(2);
    expect(await chatMessages(stack, admin, chatId)).toEqual(before);

    // The latest answer named by its stored id is fine.
    const storedLatest = before.find((message) => message.content === "Two")?.id as string;
    fake.script({ content: "Two again" });
    const latest = await stack.fetch("/ui/chats", {
      method: "POST",
      headers: admin.headers,
      body: JSON.stringify({
        id: chatId,
        messages: [{ id: "u", role: "user", parts: [{ type: "text", text: "second" }] }],
        trigger: "regenerate-message",
        messageId: storedLatest,
      }),
    });
    expect(latest.status).toBe(200);
    await latest.text();
    expect((await chatMessages(stack, admin, chatId)).map((message) => message.content)).toEqual([
      "first",
      "One",
      "second",
      "Two again",
    ]);

    const empty = await createChat(stack, admin, "mixer");
    const none = await api(stack, admin, "POST", "/ui/chats", {
      id: empty,
      messages: [{ id: "u", role: "user", parts: [{ type: "text", text: "hi" }] }],
      trigger: "regenerate-message",
    });
    expect(none.status).toBe(422);
    expect(none.body).toMatchObject({ message: expect.stringContaining("no user message") });
  });

  it("regenerates by the user message's id (useChat keeps that message), and refuses an unknown id (422)", async () => {
    const { stack, admin, fake } = ctx;
    const chatId = await createChat(stack, admin, "mixer");
    const chat = uiChat(chatId);
    fake.script({ content: "Answer" });
    await chat.sendMessage({ text: "question" });
    const user = chat.messages[0] as UIMessage;

    fake.script({ content: "Answer again" });
    await chat.regenerate({ messageId: user.id });
    expect(chat.status, chat.error?.message).toBe("ready");
    expect((await chatMessages(stack, admin, chatId)).map((message) => message.content)).toEqual([
      "question",
      "Answer again",
    ]);

    const before = await chatMessages(stack, admin, chatId);
    const unknown = await api(stack, admin, "POST", "/ui/chats", {
      id: chatId,
      messages: [{ id: "u-other", role: "user", parts: [{ type: "text", text: "question" }] }],
      trigger: "regenerate-message",
      messageId: "Xk3mP9qRt2LwZ8aB",
    });
    expect(unknown.status).toBe(422);
    expect(unknown.body).toMatchObject({
      code: "VALIDATION_FAILED",
      message: expect.stringContaining("body.messageId"),
    });
    // The user message sent last, named by its id, must be the chat's last one: an older one is refused.
    const older = await api(stack, admin, "POST", "/ui/chats", {
      id: chatId,
      messages: [{ id: "u-old", role: "user", parts: [{ type: "text", text: "an older question" }] }],
      trigger: "regenerate-message",
      messageId: "u-old",
    });
    expect(older.status).toBe(422);
    expect(await chatMessages(stack, admin, chatId)).toEqual(before);
  });

  it("keeps the answer when the new turn cannot start (its provider is off), with the error in the stream", async () => {
    const { stack, admin, fake, providers } = ctx;
    const chatId = await createChat(stack, admin, "mixer");
    const chat = uiChat(chatId);
    fake.script({ content: "Good answer" });
    await chat.sendMessage({ text: "hello" });
    const before = await chatMessages(stack, admin, chatId);
    const setActive = (isActive: boolean) =>
      api(stack, admin, "PATCH", `/api/v1/llm-providers/${providers.openai}`, { is_active: isActive });
    expect((await setActive(false)).status).toBe(200);
    try {
      await chat.regenerate();
      expect(chat.status).toBe("error");
      expect(fake.requests).toHaveLength(1);
      expect(await chatMessages(stack, admin, chatId)).toEqual(before);
    } finally {
      expect((await setActive(true)).status).toBe(200);
    }
  });

  it("refuses an edited message with 422 naming the field, and changes nothing", async () => {
    const { stack, admin, fake } = ctx;
    const chatId = await createChat(stack, admin, "mixer");
    const chat = uiChat(chatId);
    fake.script({ tool_calls: [{ id: "call_r", name: "default__pay", arguments: '{"amount":7}' }] });
    await chat.sendMessage({ text: "pay 7" });
    expect(toolStates(chat.lastMessage)).toEqual([{ toolCallId: "call_r", state: "approval-requested" }]);
    const user = chat.messages[0] as UIMessage;
    const before = await chatMessages(stack, admin, chatId);

    await chat.sendMessage({ text: "pay 8", messageId: user.id });
    expect(chat.status).toBe("error");
    expect(chat.error?.message).toContain("body.messageId");
    const edit = await api(stack, admin, "POST", "/ui/chats", {
      id: chatId,
      messages: [{ ...user, parts: [{ type: "text", text: "pay 8" }] }],
      trigger: "submit-message",
      messageId: user.id,
    });
    expect(edit.status).toBe(422);
    expect(edit.body).toMatchObject({
      code: "VALIDATION_FAILED",
      detail: [expect.objectContaining({ loc: ["body", "messageId"] })],
    });
    const badTrigger = await api(stack, admin, "POST", "/ui/chats", {
      id: chatId,
      messages: [user],
      trigger: "resend",
    });
    expect(badTrigger.status).toBe(422);
    expect(badTrigger.body).toMatchObject({
      detail: [expect.objectContaining({ loc: ["body", "trigger"] })],
    });

    // Nothing changed: no model call, the same history, and the approval still pending.
    expect(fake.requests).toHaveLength(1);
    expect(await chatMessages(stack, admin, chatId)).toEqual(before);
    fake.script({ content: "Paid" });
    const approve = await api(stack, admin, "POST", `/chats/${chatId}/approve-tool/call_r`, {
      approved: true,
    });
    expect(approve.status, JSON.stringify(approve.body)).toBe(200);
    expect(approve.body).toMatchObject({ status: "approved" });
  });

  it("names a refused file part where the client put it: body.messages.<n>.parts.<m>.url", async () => {
    const { stack, admin, fake } = ctx;
    const chatId = await createChat(stack, admin, "mixer");
    const refused = await api(stack, admin, "POST", "/ui/chats", {
      id: chatId,
      messages: [
        {
          id: "u1",
          role: "user",
          parts: [
            { type: "step-start" },
            { type: "text", text: "read this" },
            { type: "file", mediaType: "application/pdf", url: "data:application/pdf;base64,not base64!" },
          ],
        },
      ],
    });
    expect(refused.status).toBe(422);
    expect(refused.body).toMatchObject({
      detail: [expect.objectContaining({ loc: ["body", "messages", 0, "parts", 2, "url"] })],
    });
    expect(fake.requests).toHaveLength(0);
    expect(await chatMessages(stack, admin, chatId)).toEqual([]);
  });
});
