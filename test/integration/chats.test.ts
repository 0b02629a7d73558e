/**
 * Runtime chats through the real stack (sinas-spec §1.2, §5.2, S21, the chat CRUD parts of S22, with D-3, D-18,
 * D-24): creation with input validation and permissions, listing, reading, renaming, deleting, ownership.
 * Nothing here calls a model: turns are tested with the fake LLM elsewhere.
 */
import { randomUUID } from "node:crypto";
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatHistory } from "../../workers/chat/history";
import { buildConversation, type PromptServices } from "../../workers/chat/prompt";
import { sharedHttpDb } from "../../workers/db/client";
import {
  chats,
  executions,
  groupMembers,
  groups,
  llmProviders,
  messages,
  type NewState,
  pendingToolApprovals,
  states,
} from "../../workers/db/schema";
import { encryptText } from "../../workers/lib/crypto";
import { appendMessages, findAgentForChat, findOwnedChat } from "../../workers/services/chats";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL } from "../helpers/auth";
import { openStackDb } from "../helpers/db";
import { stackSecrets } from "../helpers/secrets";
import { startTestStack, type TestStack } from "../helpers/stack";

let stack: TestStack;
let db: ReturnType<typeof openStackDb>;
let admin: Session;
let alice: Session;
let bob: Session;
let helper: { id: string };

type Row = Record<string, unknown>;
type Chat = Row & { id: string };
type Issue = { loc: (string | number)[] };

const CHAT_RESPONSE_FIELDS = [
  "id",
  "user_id",
  "user_email",
  "group_id",
  "agent_id",
  "agent_namespace",
  "agent_name",
  "title",
  "created_at",
  "updated_at",
  "last_message_at",
].sort();
const MESSAGE_RESPONSE_FIELDS = [
  "id",
  "chat_id",
  "role",
  "content",
  "tool_calls",
  "tool_call_id",
  "name",
  "created_at",
].sort();

beforeAll(async () => {
  stack = await startTestStack({ workerVars: IDENTITY_VARS });
  db = openStackDb(stack);
  [admin, alice, bob] = await Promise.all([
    login(stack, SUPERADMIN_EMAIL),
    login(stack, "alice@acme.io"),
    login(stack, "bob@acme.io"),
  ]);
  const [provider] = await db.db
    .insert(llmProviders)
    .values({ name: "fake", providerType: "openai", defaultModel: "fake-model", isDefault: true })
    .returning({ id: llmProviders.id });
  helper = await createAgent(admin, {
    name: "helper",
    system_prompt: "You help {{ customer }}.",
    input_schema: { type: "object", properties: { customer: { type: "string" } }, required: ["customer"] },
    llm_provider_id: provider?.id,
    model: "fake-model",
    temperature: 0.2,
  });
});
afterAll(async () => {
  await db?.close();
  await stack?.stop();
});

/**
 * The Worker's own way to the database (`statementDb()`): queries over HTTP. Prepared statements need it on
 * PGlite, whose one session would see a name prepared by two of the test pool's connections.
 */
function httpDb() {
  return sharedHttpDb({ databaseUrl: stack.database.url, wsProxy: stack.database.wsProxy });
}

async function createAgent(session: Session, body: Row): Promise<Row & { id: string }> {
  const response = await api(stack, session, "POST", "/api/v1/agents", body);
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body as Row & { id: string };
}

async function createChat(session: Session, agent: string, body: Row = {}): Promise<Chat> {
  const response = await api(stack, session, "POST", `/agents/${agent}/chats`, body);
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body as Chat;
}

async function grantUsers(permissionKey: string, value = true) {
  const response = await api(stack, admin, "POST", "/api/v1/groups/Users/permissions", {
    permission_key: permissionKey,
    permission_value: value,
  });
  expect(response.status, JSON.stringify(response.body)).toBe(200);
}

function fieldsOf(body: unknown): string[] {
  return ((body as { detail: Issue[] }).detail ?? []).map((issue) => issue.loc.join("."));
}

describe("chat creation (S21)", () => {
  it("1. creates a chat with a valid input and keeps the input (D-24)", async () => {
    const chat = await createChat(admin, "default/helper", { input: { customer: "ACME" }, title: "t1" });
    expect(Object.keys(chat).sort()).toEqual(CHAT_RESPONSE_FIELDS);
    expect(chat).toMatchObject({
      title: "t1",
      agent_namespace: "default",
      agent_name: "helper",
      agent_id: helper.id,
      user_id: admin.user.id,
      user_email: "admin@acme.io",
      group_id: null,
      last_message_at: null,
    });
    const [row] = await db.db.select().from(chats).where(eq(chats.id, chat.id));
    expect(row?.chatMetadata).toEqual({ agent_input: { customer: "ACME" } });
  });

  it("2. refuses an input that violates the schema; skips validation without input", async () => {
    const bad = await api(stack, admin, "POST", "/agents/default/helper/chats", { input: { customer: 5 } });
    expect(bad.status).toBe(400);
    expect((bad.body as Row).detail).toMatch(/^Input validation failed: /);

    const missing = await api(stack, admin, "POST", "/agents/default/helper/chats", { input: {} });
    expect(missing.status, "an empty input is not validated").toBe(200);

    const plain = await createChat(admin, "default/helper", {});
    expect(plain.title).toBe("Chat with default/helper");
    const [row] = await db.db.select().from(chats).where(eq(chats.id, plain.id));
    expect(row?.chatMetadata).toBeNull();
  });

  it("refuses a chat whose input makes the agent's prompt too much work to render (400)", async () => {
    await createAgent(admin, {
      name: "looper",
      system_prompt: "{% for a in items %}{% for b in items %}{{ a }}{% endfor %}{% endfor %}",
    });
    const items = Array.from({ length: 3000 }, (_, index) => index);
    const refused = await api(stack, admin, "POST", "/agents/default/looper/chats", { input: { items } });
    expect(refused.status).toBe(400);
    expect(String((refused.body as Row).detail)).toMatch(/takes more than 1000000 steps|produces more than/);
    const fine = await api(stack, admin, "POST", "/agents/default/looper/chats", {
      input: { items: [1, 2] },
    });
    expect(fine.status).toBe(200);
  });

  it("3. answers 404 for an unknown agent", async () => {
    const response = await api(stack, admin, "POST", "/agents/default/nope/chats", {});
    expect(response.status).toBe(404);
    expect((response.body as Row).detail).toBe("Agent 'default/nope' not found");
  });

  it("4. needs the agent read permission; a grant opens the agent to others", async () => {
    const denied = await api(stack, bob, "POST", "/agents/default/helper/chats", {
      input: { customer: "x" },
    });
    expect(denied.status).toBe(403);
    expect((denied.body as Row).detail).toBe("Not authorized to use agent 'default/helper'");

    await grantUsers("sinas.agents.default.helper.read:all");
    try {
      const chat = await createChat(bob, "default/helper", { input: { customer: "x" } });
      expect(chat).toMatchObject({ user_id: bob.user.id, user_email: "bob@acme.io", agent_id: helper.id });
    } finally {
      await grantUsers("sinas.agents.default.helper.read:all", false);
    }
  });

  it("lets owners chat with their own agents (D-2 defaults)", async () => {
    await createAgent(alice, { name: "alices" });
    const chat = await createChat(alice, "default/alices", { title: "mine" });
    expect(chat).toMatchObject({ user_id: alice.user.id, agent_name: "alices", title: "mine" });
    const denied = await api(stack, bob, "POST", "/agents/default/alices/chats", {});
    expect(denied.status).toBe(403);
  });

  it("needs membership of the agent's group for the group scope (D-3)", async () => {
    const team = await api(stack, admin, "POST", "/api/v1/groups", { name: "Team" });
    expect(team.status, JSON.stringify(team.body)).toBe(200);
    const teamId = (team.body as { id: string }).id;
    await createAgent(admin, { name: "shared", group_id: teamId });
    await grantUsers("sinas.agents.default.shared.read:group");

    const outsider = await api(stack, bob, "POST", "/agents/default/shared/chats", {});
    expect(outsider.status).toBe(403);
    const added = await api(stack, admin, "POST", "/api/v1/groups/Team/members", { user_id: bob.user.id });
    expect(added.status, JSON.stringify(added.body)).toBe(200);
    const chat = await createChat(bob, "default/shared");
    expect(chat.group_id).toBe(teamId);
  });

  it("inserts the agent's initial messages in order (D-24)", async () => {
    await createAgent(admin, {
      name: "fewshot",
      initial_messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "2+2?" },
        { role: "assistant", content: "4" },
      ],
    });
    const chat = await createChat(admin, "default/fewshot");
    expect(chat.last_message_at).not.toBeNull();
    const read = await api(stack, admin, "GET", `/chats/${chat.id}`);
    const body = read.body as Row & { messages: Row[] };
    expect(body.messages.map((message) => [message.role, message.content])).toEqual([
      ["system", "Be brief."],
      ["user", "2+2?"],
      ["assistant", "4"],
    ]);
    expect(body.last_message_at).toBe(chat.last_message_at);
  });

  it("refuses malformed bodies with 422 naming the field", async () => {
    const cases: [unknown, string][] = [
      [{ input: [1, 2] }, "body.input"],
      [{ input: "x" }, "body.input"],
      [{ title: 5 }, "body.title"],
      [{ title: "" }, "body.title"],
      [{ title: "x".repeat(501) }, "body.title"],
      [{ colour: "blue" }, "body"],
    ];
    for (const [body, field] of cases) {
      const response = await api(stack, admin, "POST", "/agents/default/helper/chats", body);
      expect(response.status, JSON.stringify(body)).toBe(422);
      expect(fieldsOf(response.body)).toContain(field);
    }
  });

  it("refuses a deleted agent and keeps its chats readable", async () => {
    await createAgent(admin, { name: "retired" });
    const chat = await createChat(admin, "default/retired");
    expect((await api(stack, admin, "DELETE", "/api/v1/agents/default/retired")).status).toBe(204);
    const response = await api(stack, admin, "POST", "/agents/default/retired/chats", {});
    expect(response.status).toBe(404);
    expect((response.body as Row).detail).toBe("Agent 'default/retired' not found");
    const read = await api(stack, admin, "GET", `/chats/${chat.id}`);
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ agent_name: "retired", messages: [] });
  });
});

describe("chat CRUD (S22, without a model)", () => {
  let t1: Chat;

  beforeAll(async () => {
    t1 = await createChat(admin, "default/helper", { input: { customer: "ACME" }, title: "crud" });
    // Messages as a turn would have written them (the turn engine is tested with the fake LLM).
    await db.db.insert(messages).values([
      { chatId: t1.id, role: "user", content: "Hello" },
      { chatId: t1.id, role: "assistant", content: "Hi there" },
    ]);
  });

  it("reads a chat with its messages in order and the last message time", async () => {
    const read = await api(stack, admin, "GET", `/chats/${t1.id}`);
    expect(read.status).toBe(200);
    const body = read.body as Row & { messages: Row[] };
    expect(Object.keys(body).sort()).toEqual([...CHAT_RESPONSE_FIELDS, "messages"].sort());
    expect(body.messages.map((message) => message.role)).toEqual(["user", "assistant"]);
    const [first, second] = body.messages;
    expect(Object.keys(first ?? {}).sort()).toEqual(MESSAGE_RESPONSE_FIELDS);
    expect(first).toMatchObject({ chat_id: t1.id, content: "Hello", tool_calls: null, tool_call_id: null });
    expect(body.last_message_at).toBe(second?.created_at);
  });

  it("orders messages by insertion even when they share a timestamp (D-17)", async () => {
    const chat = await createChat(admin, "default/helper");
    // One transaction: every row gets the same created_at.
    await db.db.transaction(async (tx) => {
      for (const content of ["a", "b", "c", "d"]) {
        await tx.insert(messages).values({ chatId: chat.id, role: "user", content });
      }
    });
    const read = await api(stack, admin, "GET", `/chats/${chat.id}`);
    const contents = (read.body as { messages: Row[] }).messages.map((message) => message.content);
    expect(contents).toEqual(["a", "b", "c", "d"]);
    expect((await api(stack, admin, "DELETE", `/chats/${chat.id}`)).status).toBe(204);
  });

  it("lists only the caller's chats, most recently active first", async () => {
    const list = await api(stack, admin, "GET", "/chats");
    expect(list.status).toBe(200);
    const rows = list.body as Row[];
    const listed = rows.find((chat) => chat.id === t1.id);
    expect(listed).toBeDefined();
    expect(Object.keys(listed ?? {}).sort()).toEqual(CHAT_RESPONSE_FIELDS);
    const read = (await api(stack, admin, "GET", `/chats/${t1.id}`)).body as Row;
    expect(listed?.last_message_at, "the last message's time").toBe(read.last_message_at);
    expect(listed?.last_message_at).not.toBeNull();
    expect(rows.every((chat) => chat.user_id === admin.user.id)).toBe(true);
    const updated = rows.map((chat) => Date.parse(chat.updated_at as string));
    expect(updated).toEqual([...updated].sort((a, b) => b - a));

    const bobs = (await api(stack, bob, "GET", "/chats")).body as Row[];
    expect(bobs.map((chat) => chat.id)).not.toContain(t1.id);
    expect(bobs.every((chat) => chat.user_id === bob.user.id)).toBe(true);

    const page = (await api(stack, admin, "GET", "/chats?skip=1&limit=1")).body as Row[];
    expect(page).toHaveLength(1);
    expect(page[0]?.id).toBe(rows[1]?.id);
  });

  it("renames a chat, which moves it to the top of the list", async () => {
    const renamed = await api(stack, admin, "PUT", `/chats/${t1.id}`, { title: "renamed" });
    expect(renamed.status).toBe(200);
    expect(renamed.body).toMatchObject({ id: t1.id, title: "renamed", user_email: "admin@acme.io" });
    const rows = (await api(stack, admin, "GET", "/chats")).body as Row[];
    expect(rows[0]?.id).toBe(t1.id);
    expect((renamed.body as Row).last_message_at).not.toBeNull();
    expect((renamed.body as Row).last_message_at).toBe(rows[0]?.last_message_at);

    const unchanged = await api(stack, admin, "PUT", `/chats/${t1.id}`, {});
    expect(unchanged.status).toBe(200);
    expect((unchanged.body as Row).title).toBe("renamed");
    const invalid = await api(stack, admin, "PUT", `/chats/${t1.id}`, { title: 7 });
    expect(invalid.status).toBe(422);
    expect(fieldsOf(invalid.body)).toEqual(["body.title"]);
  });

  it("hides chats from everyone but their owner, admins included", async () => {
    const asBob = await api(stack, bob, "GET", `/chats/${t1.id}`);
    expect(asBob.status).toBe(404);
    expect((asBob.body as Row).detail).toBe("Chat not found");
    expect((await api(stack, bob, "PUT", `/chats/${t1.id}`, { title: "mine now" })).status).toBe(404);
    expect((await api(stack, bob, "DELETE", `/chats/${t1.id}`)).status).toBe(404);

    const bobsChat = (await api(stack, bob, "GET", "/chats")).body as Row[];
    const target = bobsChat[0]?.id as string;
    expect(target).toBeDefined();
    expect((await api(stack, admin, "GET", `/chats/${target}`)).status).toBe(404);
  });

  it("answers 404 for an unknown chat and 422 for an id that is no UUID", async () => {
    const unknown = await api(stack, admin, "GET", `/chats/${randomUUID()}`);
    expect(unknown.status).toBe(404);
    expect((unknown.body as Row).detail).toBe("Chat not found");
    const invalid = await api(stack, admin, "GET", "/chats/not-a-uuid");
    expect(invalid.status).toBe(422);
    expect(fieldsOf(invalid.body)).toEqual(["path.chat_id"]);
  });

  it("documents the routes in the runtime OpenAPI document", async () => {
    const document = (await api(stack, null, "GET", "/openapi.json")).body as {
      paths: Record<string, Record<string, unknown>>;
    };
    expect(Object.keys(document.paths["/agents/{namespace}/{agent_name}/chats"] ?? {})).toEqual(["post"]);
    // Each active agent's own path, with the route's errors (unknown agent, bad input...).
    const own = document.paths["/agents/default/helper/chats"]?.post as { responses: object } | undefined;
    expect(Object.keys(own?.responses ?? {})).toEqual(expect.arrayContaining(["200", "401", "404", "422"]));
    expect(Object.keys(document.paths["/chats"] ?? {})).toContain("get");
    expect(Object.keys(document.paths["/chats/{chat_id}"] ?? {})).toEqual(
      expect.arrayContaining(["get", "put", "delete"]),
    );
  });

  it("needs a token", async () => {
    expect((await api(stack, null, "GET", "/chats")).status).toBe(401);
    expect((await api(stack, null, "GET", `/chats/${t1.id}`)).status).toBe(401);
    expect((await api(stack, null, "POST", "/agents/default/helper/chats", {})).status).toBe(401);
  });

  it("deletes a chat with its messages and approvals; executions keep history (D-18)", async () => {
    const chat = await createChat(admin, "default/helper", { title: "to delete" });
    const [assistant] = await db.db
      .insert(messages)
      .values({
        chatId: chat.id,
        role: "assistant",
        content: null,
        toolCalls: [{ id: "call_w", type: "function", function: { name: "default__wire", arguments: "{}" } }],
      })
      .returning({ id: messages.id });
    await db.db.insert(pendingToolApprovals).values({
      chatId: chat.id,
      messageId: assistant?.id as string,
      userId: admin.user.id,
      toolCallId: `call_${randomUUID()}`,
      functionNamespace: "default",
      functionName: "wire",
      arguments: {},
      allToolCalls: [],
      conversationContext: {
        provider: "fake",
        model: "fake-model",
        temperature: 0.2,
        max_tokens: null,
        messages: [],
        tools: [],
      },
    });
    const executionId = randomUUID();
    await db.db.insert(executions).values({
      userId: admin.user.id,
      executionId,
      functionName: "wire",
      triggerType: "AGENT",
      triggerId: chat.id,
      chatId: chat.id,
      status: "COMPLETED",
      inputData: {},
    });

    const deleted = await api(stack, admin, "DELETE", `/chats/${chat.id}`);
    expect(deleted.status).toBe(204);
    expect((await api(stack, admin, "GET", `/chats/${chat.id}`)).status).toBe(404);
    const count = async (table: "messages" | "pending_tool_approvals") =>
      (
        (
          await db.db.execute(
            sql`select count(*)::int as n from ${sql.identifier(table)} where chat_id = ${chat.id}`,
          )
        ).rows[0] as { n: number }
      ).n;
    expect(await count("messages")).toBe(0);
    expect(await count("pending_tool_approvals")).toBe(0);
    const [execution] = await db.db.select().from(executions).where(eq(executions.executionId, executionId));
    expect(execution).toMatchObject({ chatId: null, triggerId: chat.id, status: "COMPLETED" });
  });
});

describe("appending messages and building the conversation (services against the stack's database)", () => {
  /** The services the chat modules use: the database and the Worker's ENCRYPTION_KEY. */
  const services = () =>
    ({
      db: () => db.db,
      config: { ENCRYPTION_KEY: stackSecrets(stack).ENCRYPTION_KEY },
    }) as unknown as PromptServices;

  it("appends in order in one statement and bumps the chat's updated_at", async () => {
    const chat = await createChat(alice, "default/alices");
    const before = await findOwnedChat(db.db, chat.id, alice.user.id);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const call = {
      id: "call_1",
      type: "function" as const,
      function: { name: "default__add", arguments: "{}" },
    };
    const appended = await appendMessages(db.db, chat.id, [
      { role: "user", content: "add" },
      { role: "assistant", content: null, tool_calls: [call] },
      { role: "tool", content: '{"sum":5}', tool_call_id: "call_1", name: "default__add" },
    ]);
    expect(appended.map((row) => row.role)).toEqual(["user", "assistant", "tool"]);
    expect(appended.map((row) => row.sequence)).toEqual(
      [...appended.map((row) => row.sequence)].sort((a, b) => a - b),
    );
    expect(appended[1]?.toolCalls).toEqual([call]);
    expect(appended[2]).toMatchObject({ toolCallId: "call_1", name: "default__add" });
    const after = await findOwnedChat(db.db, chat.id, alice.user.id);
    expect(after.updatedAt.getTime()).toBeGreaterThan(before.updatedAt.getTime());
    expect(await appendMessages(db.db, chat.id, [])).toEqual([]);
  });

  it("builds system prompt, output instruction, visible stored context and every message in order", async () => {
    await createAgent(alice, {
      name: "memo",
      system_prompt: "Memo for {{ who }}.",
      state_namespaces_readwrite: ["prefs"],
      state_namespaces_readonly: ["shared"],
    });
    const chat = await createChat(alice, "default/memo", { input: { who: "Ada" } });
    const [team] = await db.db.select({ id: groups.id }).from(groups).where(eq(groups.name, "Team"));
    const teamId = team?.id as string;
    await db.db.insert(groupMembers).values({ groupId: teamId, userId: alice.user.id, role: "member" });

    const key = stackSecrets(stack).ENCRYPTION_KEY;
    const hour = 3_600_000;
    const state = (fields: Partial<NewState> & Pick<NewState, "key">): NewState => ({
      userId: alice.user.id,
      namespace: "prefs",
      value: { v: fields.key },
      ...fields,
    });
    await db.db.insert(states).values([
      state({ key: "tz", description: "timezone", value: { tz: "CET" }, relevanceScore: 0.9 }),
      state({
        key: "secret",
        namespace: "shared",
        value: {},
        encrypted: true,
        valueCiphertext: await encryptText(JSON.stringify({ pin: "1234" }), key),
        relevanceScore: 0.8,
      }),
      state({
        key: "team-note",
        namespace: "shared",
        userId: bob.user.id,
        visibility: "group",
        groupId: teamId,
        relevanceScore: 0.7,
      }),
      state({ key: "low1", relevanceScore: 0.3 }),
      state({ key: "low2", relevanceScore: 0.2 }),
      state({ key: "lowest", relevanceScore: 0.1 }),
      state({ key: "elsewhere", namespace: "other", relevanceScore: 1 }),
      state({ key: "expired", relevanceScore: 1, expiresAt: new Date(Date.now() - hour) }),
      state({ key: "bobs-private", userId: bob.user.id, relevanceScore: 1 }),
      state({ key: "later", relevanceScore: 0.95, expiresAt: new Date(Date.now() + hour) }),
    ]);

    const parts = [
      { type: "text", text: "What is this?" },
      { type: "image", image: "https://example.com/a.png" },
    ];
    await appendMessages(db.db, chat.id, [
      { role: "user", content: "Hello" },
      { role: "assistant", content: "Hi" },
      { role: "user", content: JSON.stringify(parts) },
    ]);
    const [row] = await db.db.select().from(chats).where(eq(chats.id, chat.id));
    const agentRow = await findAgentForChat(db.db, row?.agentId as string);
    if (!row || !agentRow) throw new Error("chat or agent missing");

    const conversation = await buildConversation(
      services(),
      { chat: row, agent: agentRow, userId: alice.user.id },
      new ChatHistory(chat.id).read(httpDb()),
    );
    expect(conversation.map((message) => message.role)).toEqual(["system", "user", "assistant", "user"]);
    expect(conversation.slice(1)).toEqual([
      { role: "user", content: "Hello" },
      { role: "assistant", content: "Hi" },
      { role: "user", content: parts },
    ]);
    const system = conversation[0]?.content as string;
    expect(system.startsWith("Memo for Ada.\n\n## Stored Context\n")).toBe(true);
    const titles = [...system.matchAll(/^\*\*(\S+)\*\*/gm)].map((match) => match[1]);
    // Top 5 by relevance among the user's own and their groups' states in the agent's namespaces.
    expect(titles).toEqual(["prefs/later", "prefs/tz", "shared/secret", "shared/team-note", "prefs/low1"]);
    expect(system).toContain('**prefs/tz** - timezone\n```json\n{\n  "tz": "CET"\n}\n```');
    expect(system).toContain('"pin": "1234"');
  });
});

describe("a chat's history kept between reads (ChatHistory, against the stack's database)", () => {
  const say = (content: string) => ({ role: "user" as const, content });
  const contents = (rows: readonly { content: string | null }[]) => rows.map((row) => row.content);
  beforeAll(async () => {
    await createAgent(alice, { name: "historian" });
  });

  it("reads the whole chat once, then only what was added", async () => {
    const chat = await createChat(alice, "default/historian");
    await appendMessages(db.db, chat.id, [say("one"), say("two")]);
    const history = new ChatHistory(chat.id);
    const first = await history.read(httpDb());
    expect(contents(first)).toEqual(["one", "two"]);

    await appendMessages(db.db, chat.id, [say("three")]);
    const second = await history.read(httpDb());
    expect(contents(second)).toEqual(["one", "two", "three"]);
    expect(second[0], "rows already held are not read again").toBe(first[0]);
    expect(await history.read(httpDb())).toEqual(second);
  });

  it("takes a message it stored beside a read once, whether remembered before or after the read ends", async () => {
    const chat = await createChat(alice, "default/historian");
    const [, second] = await appendMessages(db.db, chat.id, [say("one"), say("two")]);
    if (!second) throw new Error("no row");
    const fresh = new ChatHistory(chat.id);
    const reading = fresh.read(httpDb());
    fresh.remember(second); // its insert answered first; the read (from the start) returns it too
    expect(contents(await reading)).toEqual(["one", "two"]);
    expect(contents(await fresh.read(httpDb()))).toEqual(["one", "two"]);

    const [third] = await appendMessages(db.db, chat.id, [say("three")]);
    if (!third) throw new Error("no row");
    const read = await fresh.read(httpDb());
    fresh.remember(third);
    fresh.remember(second);
    expect(contents(read)).toEqual(["one", "two", "three"]);
    expect(contents(await fresh.read(httpDb()))).toEqual(["one", "two", "three"]);
  });

  it("reads everything again when the count shows a row it does not hold", async () => {
    const chat = await createChat(alice, "default/historian");
    const [kept, dropped] = await appendMessages(db.db, chat.id, [say("kept"), say("dropped")]);
    const history = new ChatHistory(chat.id);
    await history.read(httpDb());
    await db.db.delete(messages).where(eq(messages.id, dropped?.id as string));
    await appendMessages(db.db, chat.id, [say("later")]);
    expect(contents(await history.read(httpDb()))).toEqual(["kept", "later"]);
    const [reread] = await history.read(httpDb());
    expect(reread?.id).toBe(kept?.id);
  });

  it("does not hold a history larger than its limit, and forgets nothing for it", async () => {
    const chat = await createChat(alice, "default/historian");
    await appendMessages(db.db, chat.id, [say("a long message"), say("another")]);
    const history = new ChatHistory(chat.id, 10);
    const first = await history.read(httpDb());
    const second = await history.read(httpDb());
    expect(contents(second)).toEqual(["a long message", "another"]);
    expect(second[0], "read again, not held").not.toBe(first[0]);
  });
});
