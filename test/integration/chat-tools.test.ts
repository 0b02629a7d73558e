/**
 * Agent tools through the real stack: tool approval (S27, D-26, D-29) on both wire formats, state tools and
 * stored-context injection (S28, D-39), and agent-to-agent calls (S29, D-16).
 */
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { encryptText } from "../../workers/lib/crypto";
import type { FakeLlm } from "../fixtures/fake-llm";
import { api, type Session } from "../helpers/auth";
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
import { openStackDb } from "../helpers/db";
import { createFunction, pythonFunction } from "../helpers/functions";
import type { TestStack } from "../helpers/stack";

let stack: TestStack;
let fake: FakeLlm;
let admin: Session;
let eve: Session;
let providers: Record<WireFormat, string>;

beforeAll(async () => {
  ({ stack, fake, admin, other: eve, providers } = await startChatStack("eve@acme.io"));
  await createFunction(stack, admin, pythonFunction("wire", "    return input", { requires_approval: true }));
  await createFunction(stack, admin, pythonFunction("note", '    return {"noted": True}'));
});
afterAll(() => stopChatStack({ stack, fake }));
beforeEach(() => fake.reset());

/** A scripted model reply that calls the agent `name` (its `call_agent_*` tool) with `prompt`. */
function agentCall(id: string, name: string, agentId: string, prompt: string) {
  const args = JSON.stringify({ prompt, _agent_id: agentId });
  return { tool_calls: [{ id, name: `call_agent_${name}`, arguments: args }] };
}

/** One message whose turn makes one tool call and then answers; returns that call's tool result. */
async function toolRound(
  chat: string,
  content: string,
  call: { id: string; name: string; arguments: string },
) {
  fake.reset();
  fake.script({ tool_calls: [call] }, { content: "ok" });
  await api(stack, admin, "POST", `/chats/${chat}/messages`, { content });
  return toolResults(fake.requests[1] as never).at(-1)?.content;
}

/**
 * A chat with a new agent offering the generator function `fn` (created from `definition`), which the model ran
 * once on the chat's first message: its run is paused. Returns the chat and that run's execution id.
 */
async function chatWithPausedRun(fn: string, definition: Parameters<typeof createFunction>[2]) {
  await createFunction(stack, admin, definition);
  const agent = `${fn}-agent`;
  await createAgent(stack, admin, {
    name: agent,
    enabled_functions: [`default/${fn}`],
    llm_provider_id: providers.openai,
  });
  const chat = await createChat(stack, admin, agent);
  fake.script(
    { tool_calls: [{ id: `${fn}-1`, name: `default__${fn}`, arguments: "{}" }] },
    { content: "Paused" },
  );
  await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "go" });
  const [paused] = await executionsOf(fn, chat);
  expect(paused).toMatchObject({ status: "AWAITING_INPUT" });
  return { chat, executionId: String(paused?.execution_id) };
}

/** The execution ids a model request offered to `continue_execution`. */
function offeredToContinue(request: unknown): string[] {
  const parameters = toolParameters(request as never, "continue_execution") as {
    properties: { execution_id: { enum: string[] } };
  };
  return parameters.properties.execution_id.enum;
}

async function executionsOf(name: string, chat: string) {
  const response = await api(stack, admin, "GET", `/executions?function_name=${name}`);
  return (response.body as Record<string, unknown>[]).filter((row) => row.trigger_id === chat);
}

describe.each(WIRE_FORMATS)("tool approval on the %s wire format (S27)", (format) => {
  const bank = `bank-${format}`;
  beforeAll(async () => {
    await createAgent(stack, admin, {
      name: bank,
      enabled_functions: ["default/wire", "default/note"],
      llm_provider_id: providers[format],
    });
  });

  it("pauses, then runs exactly the approved call and continues", async () => {
    const chat = await createChat(stack, admin, bank);
    const call = `call_w${format}`;
    fake.script({ tool_calls: [{ id: call, name: "default__wire", arguments: '{"amount":10}' }] });
    const stream = await streamMessage(stack, admin, chat, "pay");
    const approval = stream.events.find(
      (event) => (event.data as { type?: string }).type === "approval_required",
    );
    expect(approval).toMatchObject({
      event: "message",
      data: {
        type: "approval_required",
        tool_call_id: call,
        function_namespace: "default",
        function_name: "wire",
        arguments: { amount: 10 },
      },
    });
    expect(stream.events[stream.events.length - 1]?.event).toBe("done");
    expect(await executionsOf("wire", chat)).toEqual([]);

    fake.script({ content: "Wired" });
    const approved = await api(stack, admin, "POST", `/chats/${chat}/approve-tool/${call}`, {
      approved: true,
    });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    expect(approved.body).toMatchObject({ status: "approved", tool_call_id: call });
    expect((approved.body as { message: string }).message).toContain("Result message ID:");
    expect(await executionsOf("wire", chat)).toMatchObject([
      { status: "COMPLETED", input_data: { amount: 10 } },
    ]);
    const messages = await chatMessages(stack, admin, chat);
    expect(messages.slice(-2)).toMatchObject([
      { role: "tool", tool_call_id: call },
      { role: "assistant", content: "Wired" },
    ]);
    const again = await api(stack, admin, "POST", `/chats/${chat}/approve-tool/${call}`, { approved: true });
    expect(again.status).toBe(404);
    expect((again.body as { detail: string }).detail).toBe("Pending approval not found or already processed");
  });

  it("asks approval for a call id another chat or turn used before (local models reuse `call_0`)", async () => {
    const reused = `call_0${format}`;
    const pause = async (chat: string) => {
      fake.script({ tool_calls: [{ id: reused, name: "default__wire", arguments: '{"amount":1}' }] });
      const stream = await streamMessage(stack, admin, chat, "pay");
      const types = stream.events.map((event) => (event.data as { type?: string }).type);
      expect(types).toContain("approval_required");
    };
    const approve = async (chat: string) => {
      fake.script({ content: "Paid" });
      const answer = await api(stack, admin, "POST", `/chats/${chat}/approve-tool/${reused}`, {
        approved: true,
      });
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    };
    const [first, second] = [await createChat(stack, admin, bank), await createChat(stack, admin, bank)];
    await pause(first);
    await pause(second); // the same id pending in another chat
    await approve(second);
    await approve(first);
    await pause(first); // and again in a later turn of the same chat
    await approve(first);
    expect(await executionsOf("wire", first)).toHaveLength(2);
    expect(await executionsOf("wire", second)).toHaveLength(1);
  });

  it("runs no call of an answer cut off by max_tokens, asks no approval, and tells the model", async () => {
    const chat = await createChat(stack, admin, bank);
    fake.script(
      {
        tool_calls: [
          { id: `call_n${format}`, name: "default__note", arguments: "{}" },
          { id: `call_c${format}`, name: "default__wire", arguments: '{"amount":' },
        ],
        finish_reason: "length",
      },
      { content: "Retrying shorter" },
    );
    const stream = await streamMessage(stack, admin, chat, "note and pay");
    const types = stream.events.map((event) => (event.data as { type?: string }).type);
    expect(types).not.toContain("approval_required");
    expect(stream.events.at(-1)?.event).toBe("done");
    expect(fake.requests).toHaveLength(2);
    const results = toolResults(fake.requests[1] as never).map((result) => result.content);
    expect(results).toHaveLength(2);
    for (const result of results) expect(JSON.stringify(result)).toContain("hit the max_tokens limit");
    expect(await executionsOf("note", chat)).toEqual([]);
    expect(await executionsOf("wire", chat)).toEqual([]);
  });

  it("tells the model about a rejection and answers without tools", async () => {
    const chat = await createChat(stack, admin, bank);
    const call = `call_x${format}`;
    fake.script({ tool_calls: [{ id: call, name: "default__wire", arguments: '{"amount":5}' }] });
    await streamMessage(stack, admin, chat, "pay");
    fake.script({ content: "Cancelled" });
    expect(
      (await api(stack, eve, "POST", `/chats/${chat}/approve-tool/${call}`, { approved: true })).status,
    ).toBe(403);
    const rejected = await api(stack, admin, "POST", `/chats/${chat}/approve-tool/${call}`, {
      approved: false,
    });
    expect(rejected.status).toBe(200);
    expect(rejected.body).toMatchObject({ status: "rejected" });
    const messages = await chatMessages(stack, admin, chat);
    const tool = messages.find((message) => message.role === "tool");
    expect(tool).toMatchObject({ name: "default__wire" });
    expect(JSON.parse(String(tool?.content))).toEqual({ error: "Tool call rejected by user: default/wire" });
    expect(messages[messages.length - 1]).toMatchObject({ role: "assistant", content: "Cancelled" });
    expect(fake.requests[fake.requests.length - 1]?.body.tools).toBeUndefined();
    expect(await executionsOf("wire", chat)).toEqual([]);
  });

  it("refuses a decision its turn could not go on with (agent deleted): 404, nothing run", async () => {
    const name = `doomed-${format}`;
    await createAgent(stack, admin, {
      name,
      enabled_functions: ["default/wire"],
      llm_provider_id: providers[format],
    });
    const chat = await createChat(stack, admin, name);
    const call = `call_d${format}`;
    fake.script({ tool_calls: [{ id: call, name: "default__wire", arguments: '{"amount":3}' }] });
    await streamMessage(stack, admin, chat, "pay");
    expect((await api(stack, admin, "DELETE", `/api/v1/agents/default/${name}`)).status).toBe(204);
    const refused = await api(stack, admin, "POST", `/chats/${chat}/approve-tool/${call}`, {
      approved: true,
    });
    expect(refused.status).toBe(404);
    expect(JSON.stringify(refused.body)).toContain("no longer exists or is inactive");
    expect(await executionsOf("wire", chat)).toEqual([]);
  });

  it("keeps a decision open when its continuation cannot start (provider deactivated), and runs the call once later", async () => {
    const provider = await createProvider(stack, admin, {
      name: `flaky-${format}`,
      provider_type: format,
      api_key: "sk-test",
      api_endpoint: format === "openai" ? fake.openaiUrl : fake.url,
      default_model: "fake-model",
    });
    const name = `flaky-bank-${format}`;
    await createAgent(stack, admin, { name, enabled_functions: ["default/wire"], llm_provider_id: provider });
    const chat = await createChat(stack, admin, name);
    const call = `call_f${format}`;
    fake.script({ tool_calls: [{ id: call, name: "default__wire", arguments: '{"amount":9}' }] });
    await streamMessage(stack, admin, chat, "pay");
    const switchProvider = (isActive: boolean) =>
      api(stack, admin, "PATCH", `/api/v1/llm-providers/${provider}`, { is_active: isActive });
    expect((await switchProvider(false)).status).toBe(200);
    const refused = await api(stack, admin, "POST", `/chats/${chat}/approve-tool/${call}`, {
      approved: true,
    });
    expect(refused.status).toBe(400);
    expect((refused.body as { detail: string }).detail).toBe(
      `No active LLM provider found for: flaky-${format}`,
    );
    expect(await executionsOf("wire", chat)).toEqual([]);

    expect((await switchProvider(true)).status).toBe(200);
    fake.script({ content: "Wired at last" });
    const approved = await api(stack, admin, "POST", `/chats/${chat}/approve-tool/${call}`, {
      approved: true,
    });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    expect(approved.body).toMatchObject({ status: "approved", tool_call_id: call });
    expect(await executionsOf("wire", chat)).toMatchObject([
      { status: "COMPLETED", input_data: { amount: 9 } },
    ]);
    const messages = await chatMessages(stack, admin, chat);
    expect(messages.slice(-2)).toMatchObject([
      { role: "tool", tool_call_id: call },
      { role: "assistant", content: "Wired at last" },
    ]);
  });

  it("answers a call left pending when a new message comes instead of a decision; a late approval runs nothing", async () => {
    const chat = await createChat(stack, admin, bank);
    const call = `call_p${format}`;
    fake.script({ tool_calls: [{ id: call, name: "default__wire", arguments: '{"amount":7}' }] });
    await streamMessage(stack, admin, chat, "pay");
    fake.script({ content: "Fine, nothing sent" });
    const next = await streamMessage(stack, admin, chat, "never mind");
    expect(next.status).toBe(200);
    const request = fake.requests[fake.requests.length - 1] as never;
    // Both wire formats refuse a call without its result: the model gets a stand-in, then the new message.
    expect(toolResults(request)).toEqual([
      { tool_call_id: call, content: { error: expect.stringContaining("No result") } },
    ]);
    expect(lastUserText(request)).toBe("never mind");
    const messages = await chatMessages(stack, admin, chat);
    expect(messages[messages.length - 1]).toMatchObject({ role: "assistant", content: "Fine, nothing sent" });
    // The new message answered the call: a late approval runs nothing.
    const late = await api(stack, admin, "POST", `/chats/${chat}/approve-tool/${call}`, { approved: true });
    expect(late.status).toBe(404);
    expect(await executionsOf("wire", chat)).toEqual([]);
    expect(await chatMessages(stack, admin, chat)).toHaveLength(messages.length);
  });

  it("runs nothing until every approval of the message is decided (D-29)", async () => {
    const chat = await createChat(stack, admin, bank);
    fake.script({
      tool_calls: [
        { id: `a1${format}`, name: "default__wire", arguments: '{"amount":1}' },
        { id: `a2${format}`, name: "default__wire", arguments: '{"amount":2}' },
        { id: `n1${format}`, name: "default__note", arguments: "{}" },
      ],
    });
    const stream = await streamMessage(stack, admin, chat, "pay twice");
    const approvals = stream.events.filter(
      (event) => (event.data as { type?: string }).type === "approval_required",
    );
    expect(approvals).toHaveLength(2);
    const first = await api(stack, admin, "POST", `/chats/${chat}/approve-tool/a1${format}`, {
      approved: true,
    });
    expect((first.body as { message: string }).message).toContain("still await approval");
    expect(await executionsOf("wire", chat)).toEqual([]);
    fake.script({ content: "Done" });
    const second = await api(stack, admin, "POST", `/chats/${chat}/approve-tool/a2${format}`, {
      approved: false,
    });
    expect(second.status).toBe(200);
    expect(await executionsOf("wire", chat)).toMatchObject([{ input_data: { amount: 1 } }]);
    expect(await executionsOf("note", chat)).toHaveLength(1);
    const results = toolResults(fake.requests[fake.requests.length - 1] as never);
    expect(results.map((result) => result.tool_call_id)).toEqual([
      `a1${format}`,
      `a2${format}`,
      `n1${format}`,
    ]);
    expect(results[1]?.content).toEqual({ error: "Tool call rejected by user: default/wire" });
  });
});

describe("tool rounds", () => {
  it("answers after 10 tool rounds, stops a model that asks for an 11th (D-26), and runs a round's calls in parallel", async () => {
    await createAgent(stack, admin, {
      name: "looper",
      enabled_functions: ["default/note"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "looper");
    const rounds = (count: number, tag: string) =>
      Array.from({ length: count }, (_, round) => ({
        tool_calls: [
          { id: `${tag}${round}a`, name: "default__note", arguments: "{}" },
          { id: `${tag}${round}b`, name: "default__note", arguments: "{}" },
        ],
      }));
    // Ten rounds of tools, then the model answers with their results.
    fake.script(...rounds(10, "s"), { content: "after ten rounds" });
    const answered = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "ten" });
    expect(answered.body).toMatchObject({ role: "assistant", content: "after ten rounds" });
    expect(fake.requests).toHaveLength(11);
    expect(await executionsOf("note", chat)).toHaveLength(20);

    // A model that asks for an eleventh round gets the cap, and those calls never run.
    fake.reset();
    fake.script(...rounds(11, "r"));
    const response = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "loop" });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.body).toMatchObject({ role: "assistant", content: "Maximum tool call rounds exceeded" });
    expect(fake.requests).toHaveLength(11);
    expect(await executionsOf("note", chat)).toHaveLength(40);
    const messages = await chatMessages(stack, admin, chat);
    expect(messages.filter((message) => message.role === "tool")).toHaveLength(40);
    expect(JSON.stringify(messages)).not.toContain("r10a");
  });

  it("gives the model a refusal, not a run, for tool arguments nested past 256 levels", async () => {
    await createAgent(stack, admin, {
      name: "deep-args",
      enabled_functions: ["default/note"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "deep-args");
    const deep = `{"a":${"[".repeat(300)}${"]".repeat(300)}}`;
    const result = await toolRound(chat, "deep", { id: "d1", name: "default__note", arguments: deep });
    expect(result).toEqual({
      error: "body.input: must not nest arrays and objects more than 256 levels deep",
    });
    expect(await executionsOf("note", chat)).toHaveLength(0);
  });

  it("counts an approved turn's rounds on from the round that paused: one cap per turn", async () => {
    await createAgent(stack, admin, {
      name: "pauser",
      enabled_functions: ["default/note", "default/wire"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "pauser");
    const noteRound = (tag: string) => ({
      tool_calls: [{ id: tag, name: "default__note", arguments: "{}" }],
    });
    // Rounds 0-2 run notes; round 3 asks for a call needing approval, and the turn pauses.
    fake.script(noteRound("n0"), noteRound("n1"), noteRound("n2"), {
      tool_calls: [{ id: "w3", name: "default__wire", arguments: "{}" }],
    });
    await streamMessage(stack, admin, chat, "go");
    expect(fake.requests).toHaveLength(4);
    // After the approval, rounds 4-9 run and round 10 is the cap: 7 model calls, not 11.
    fake.reset();
    fake.script(...Array.from({ length: 12 }, (_, round) => noteRound(`m${round}`)));
    const approved = await api(stack, admin, "POST", `/chats/${chat}/approve-tool/w3`, { approved: true });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    expect(fake.requests).toHaveLength(7);
    const messages = await chatMessages(stack, admin, chat);
    expect(messages.at(-1)).toMatchObject({
      role: "assistant",
      content: "Maximum tool call rounds exceeded",
    });
    expect(await executionsOf("note", chat)).toHaveLength(9);
  });

  it("stops a turn at once while a function tool runs; the next message gets a stand-in result", async () => {
    await createFunction(
      stack,
      admin,
      pythonFunction("sleeper", '    import time\n    time.sleep(8)\n    return {"slept": True}'),
    );
    await createAgent(stack, admin, {
      name: "napper",
      enabled_functions: ["default/sleeper"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "napper");
    fake.script({ tool_calls: [{ id: "nap1", name: "default__sleeper", arguments: "{}" }] });
    const sending = api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "sleep" });
    let runs: Record<string, unknown>[] = [];
    for (let attempt = 0; attempt < 100 && runs.length === 0; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      runs = await executionsOf("sleeper", chat);
    }
    expect(runs).toMatchObject([{ status: "RUNNING" }]);
    const stop = await api(stack, admin, "POST", `/chats/${chat}/stop`);
    expect(stop.body).toMatchObject({ stopped: true });
    // The stop did not wait for the function: it still runs, and records its outcome later as any run.
    expect(await executionsOf("sleeper", chat)).toMatchObject([{ status: "RUNNING" }]);
    const stopped = await sending;
    expect(stopped.status).toBe(409);
    expect(stopped.body).toMatchObject({ detail: "The turn was stopped before the assistant answered" });

    fake.script({ content: "awake" });
    const next = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "and now?" });
    expect(next.body).toMatchObject({ role: "assistant", content: "awake" });
    const request = fake.requests[fake.requests.length - 1] as never;
    expect(toolResults(request)).toEqual([
      { tool_call_id: "nap1", content: { error: expect.stringContaining("No result") } },
    ]);
  });

  it("streams a 2.5 MB tool result as a stand-in and gives the model the whole of it", async () => {
    await createFunction(stack, admin, pythonFunction("bulky", '    return {"s": "z" * 2_500_000}'));
    await createAgent(stack, admin, {
      name: "hoarder",
      enabled_functions: ["default/bulky"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "hoarder");
    fake.script(
      { tool_calls: [{ id: "big1", name: "default__bulky", arguments: "{}" }] },
      { content: "got it" },
    );
    const stream = await streamMessage(stack, admin, chat, "fetch");
    expect(stream.events.at(-1)).toMatchObject({ event: "done", data: { status: "completed" } });
    expect(contentOf(stream.events)).toBe("got it");
    const logged = stream.events.find((event) => event.event === "tool_result");
    expect(logged?.data).toMatchObject({
      tool_call_id: "big1",
      result: { truncated: true, chars: 2_500_008, preview: expect.stringMatching(/^\{"s":"zzz/) },
    });
    const sent = toolResults(fake.requests[1] as never);
    expect(sent[0]?.content).toEqual({ s: "z".repeat(2_500_000) });
  });

  it("offers a function shared with the user's group, and refuses a tool it did not offer (D-27)", async () => {
    const group = await api(stack, admin, "POST", "/api/v1/groups", { name: "Shared" });
    expect(group.status, JSON.stringify(group.body)).toBeLessThan(300);
    const member = await api(stack, admin, "POST", "/api/v1/groups/Shared/members", { user_id: eve.user.id });
    expect(member.status, JSON.stringify(member.body)).toBeLessThan(300);
    await createFunction(stack, admin, pythonFunction("shared", '    return {"shared": True}'));
    // Only config apply sets a function's group (sinas-spec §9); set it as it would.
    const db = openStackDb(stack);
    try {
      await db.db.execute(
        sql`update functions set group_id = ${(group.body as { id: string }).id} where name = 'shared'`,
      );
    } finally {
      await db.close();
    }
    await createAgent(stack, eve, {
      name: "eves",
      enabled_functions: ["default/shared", "default/note"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, eve, "eves");
    fake.script(
      {
        tool_calls: [
          { id: "g1", name: "default__shared", arguments: "{}" },
          { id: "g2", name: "default__wire", arguments: "{}" },
        ],
      },
      { content: "done" },
    );
    const response = await api(stack, eve, "POST", `/chats/${chat}/messages`, { content: "go" });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(toolNames(fake.requests[0] as never)).toEqual(["default__shared"]);
    expect(toolResults(fake.requests[1] as never)).toEqual([
      { tool_call_id: "g1", content: { shared: true } },
      { tool_call_id: "g2", content: { error: "Tool not available: default__wire" } },
    ]);
  });
});

describe("paused executions (§5.5.5)", () => {
  it("offers continue_execution for the chat's paused function and resumes it", async () => {
    const { chat, executionId } = await chatWithPausedRun(
      "ask",
      pythonFunction(
        "ask",
        '    name = yield {"prompt": "Your name?", "schema": {"type": "object", "required": ["name"]}}\n    return {"hello": name["name"]}',
      ),
    );
    expect(toolResults(fake.requests[1] as never)[0]?.content).toMatchObject({
      status: "awaiting_input",
      execution_id: executionId,
      prompt: "Your name?",
    });

    fake.reset();
    fake.script(
      {
        tool_calls: [
          {
            id: "c1",
            name: "continue_execution",
            arguments: JSON.stringify({ execution_id: executionId, input: { name: "Ada" } }),
          },
        ],
      },
      { content: "Hello Ada" },
    );
    const answer = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "Ada" });
    expect(answer.body).toMatchObject({ content: "Hello Ada" });
    expect(toolNames(fake.requests[0] as never)).toEqual(["default__ask", "continue_execution"]);
    expect(offeredToContinue(fake.requests[0])).toEqual([executionId]);
    expect(toolResults(fake.requests[1] as never).at(-1)?.content).toEqual({ hello: "Ada" });
    expect(await executionsOf("ask", chat)).toMatchObject([{ status: "COMPLETED" }]);
  });

  it("offers the chat's newest paused runs to continue, not the oldest, when there are more than 10", async () => {
    const { chat, executionId: live } = await chatWithPausedRun(
      "ask_many",
      pythonFunction(
        "ask_many",
        '    answer = yield {"prompt": "More?", "schema": {"type": "object"}}\n    return answer',
      ),
    );
    // Eleven older pauses of the chat (as runs left paused a day ago would be).
    const db = openStackDb(stack);
    try {
      for (let index = 0; index < 11; index++) {
        await db.db.execute(
          sql`insert into executions (user_id, execution_id, function_name, trigger_type, trigger_id, chat_id,
                status, input_data, started_at)
              values (${admin.user.id}, ${`stale-${chat}-${index}`}, 'ask_many', 'AGENT', ${chat}, ${chat},
                'AWAITING_INPUT', '{}', now() - interval '1 day' - ${index} * interval '1 minute')`,
        );
      }
    } finally {
      await db.close();
    }
    fake.reset();
    fake.script({ content: "Which one?" });
    await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "continue" });
    const offered = offeredToContinue(fake.requests[0]);
    expect(offered).toHaveLength(10);
    expect(offered[0]).toBe(live);
    expect(offered).not.toContain(`stale-${chat}-10`);
  });

  it("stops a turn at once while continue_execution waits for the resumed run", async () => {
    const { chat, executionId } = await chatWithPausedRun("slowask", {
      ...pythonFunction(
        "slowask",
        '    answer = yield {"prompt": "Go?"}\n    import time\n    time.sleep(90)\n    return answer',
      ),
      timeout: 120,
    });
    const input = JSON.stringify({ execution_id: executionId, input: { go: true } });
    fake.script({ tool_calls: [{ id: "s2", name: "continue_execution", arguments: input }] });
    const sending = api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "yes" });
    let runs: Record<string, unknown>[] = [];
    for (let attempt = 0; attempt < 100 && runs[0]?.status !== "RUNNING"; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      runs = await executionsOf("slowask", chat);
    }
    expect(runs).toMatchObject([{ status: "RUNNING" }]);
    // Without the stop the turn would wait 90 s for the run (the test's own limit is 60 s).
    const stop = await api(stack, admin, "POST", `/chats/${chat}/stop`);
    expect(stop.body).toMatchObject({ stopped: true });
    expect((await sending).status).toBeLessThan(500);
  });
});

describe("state tools (S28)", () => {
  it("keeps encrypted states out of a paused turn's stored approval context", async () => {
    const secret = "s3cret-pin-4711";
    const created = await api(stack, admin, "POST", "/states", {
      namespace: "vault",
      key: "pin",
      value: { pin: secret },
      encrypted: true,
    });
    expect(created.status, JSON.stringify(created.body)).toBeLessThan(300);
    await createAgent(stack, admin, {
      name: "vaulted",
      state_namespaces_readonly: ["vault"],
      enabled_functions: ["default/wire"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "vaulted");
    fake.script({ tool_calls: [{ id: "v1", name: "default__wire", arguments: "{}" }] });
    await streamMessage(stack, admin, chat, "pay");
    // The model saw the decrypted value (that is what the namespace is for); the database row does not keep it.
    expect(systemText(fake.requests[0] as never)).toContain(secret);
    const db = openStackDb(stack);
    try {
      const rows = await db.db.execute(
        sql`select conversation_context::text as context from pending_tool_approvals where chat_id = ${chat}`,
      );
      expect(rows.rows).toHaveLength(1);
      expect(String((rows.rows[0] as { context: string }).context)).not.toContain(secret);
    } finally {
      await db.close();
    }
  });

  it("saves into read-write namespaces only and injects stored context", async () => {
    await createAgent(stack, admin, {
      name: "memo",
      system_prompt: "Memo.",
      state_namespaces_readwrite: ["prefs"],
      state_namespaces_readonly: ["shared"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "memo");
    fake.script(
      {
        tool_calls: [
          {
            id: "s1",
            name: "save_context",
            arguments: '{"namespace":"prefs","key":"tz","value":{"tz":"CET"},"description":"timezone"}',
          },
        ],
      },
      { content: "saved" },
    );
    const saved = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "remember CET" });
    expect(saved.body).toMatchObject({ content: "saved" });
    expect(toolNames(fake.requests[0] as never)).toEqual([
      "retrieve_context",
      "save_context",
      "update_context",
      "delete_context",
    ]);
    expect(
      (
        toolParameters(fake.requests[0] as never, "save_context") as {
          properties: { namespace: { enum: string[] } };
        }
      ).properties.namespace.enum,
    ).toEqual(["prefs"]);
    const states = await api(stack, admin, "GET", "/states?namespace=prefs");
    expect(states.body).toMatchObject([
      { key: "tz", value: { tz: "CET" }, visibility: "private", relevance_score: 1 },
    ]);

    fake.reset();
    fake.script({ content: "ok" });
    await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "hi" });
    const system = systemText(fake.requests[0] as never) ?? "";
    expect(system.startsWith("Memo.")).toBe(true);
    expect(system).toContain("## Stored Context");
    expect(system).toContain("**prefs/tz** - timezone");
    expect(system).toContain('"tz": "CET"');

    expect(
      await toolRound(chat, "write shared", {
        id: "s2",
        name: "save_context",
        arguments: '{"namespace":"shared","key":"k","value":{}}',
      }),
    ).toEqual({
      error: "Agent not authorized to write to namespace 'shared'",
      allowed_namespaces: ["prefs"],
    });

    const duplicate = (await toolRound(chat, "again", {
      id: "s3",
      name: "save_context",
      arguments: '{"namespace":"prefs","key":"tz","value":{}}',
    })) as { error: string };
    expect(duplicate.error.startsWith("Context already exists for namespace 'prefs' and key 'tz'")).toBe(
      true,
    );

    expect(
      await toolRound(chat, "read elsewhere", {
        id: "s4",
        name: "retrieve_context",
        arguments: '{"namespace":"elsewhere"}',
      }),
    ).toMatchObject({
      error: expect.stringContaining("elsewhere"),
    });
  });
});

describe("state tools: bad arguments and failures", () => {
  beforeAll(async () => {
    await createAgent(stack, admin, {
      name: "guarded",
      state_namespaces_readwrite: ["guard"],
      llm_provider_id: providers.openai,
    });
  });

  it("refuses a key the column cannot hold, naming the argument, and stores nothing", async () => {
    const chat = await createChat(stack, admin, "guarded");
    const save = (id: string, key: string) =>
      toolRound(chat, "save", {
        id,
        name: "save_context",
        arguments: JSON.stringify({ namespace: "guard", key, value: { card: "4111-secret" } }),
      });
    expect(await save("g1", "k".repeat(256))).toEqual({
      error: "Invalid argument: key must be at most 255 characters",
    });
    expect(await save("g2", "a\u0000b")).toEqual({
      error: "Invalid argument: key must not contain NUL characters",
    });
    expect(await save("g3", "k".repeat(255))).toMatchObject({ success: true });
    expect((await api(stack, admin, "GET", "/states?namespace=guard")).body).toHaveLength(1);
  });

  it("tells the model only that a tool failed, not the failed query and its parameters", async () => {
    const chat = await createChat(stack, admin, "guarded");
    // A NUL in a search term fails the query inside Postgres: not an AppError.
    const result = await toolRound(chat, "find", {
      id: "g4",
      name: "retrieve_context",
      arguments: JSON.stringify({ namespace: "guard", search: "x\u0000" }),
    });
    expect(result).toEqual({ error: "Tool failed: internal error" });
    const stored = await chatMessages(stack, admin, chat);
    expect(JSON.stringify(stored)).not.toMatch(/select|params/i);
  });

  it("returns a value it cannot decrypt marked and empty, and the others as usual", async () => {
    const sealed = await api(stack, admin, "POST", "/states", {
      namespace: "guard",
      key: "rotated",
      value: { pin: "1234" },
      encrypted: true,
    });
    expect(sealed.status, JSON.stringify(sealed.body)).toBe(200);
    const kept = await api(stack, admin, "POST", "/states", {
      namespace: "guard",
      key: "kept",
      value: { pin: "5678" },
      encrypted: true,
    });
    expect(kept.status, JSON.stringify(kept.body)).toBe(200);
    // Sealed under a key the stack does not hold, as a key rotation leaves older rows.
    const otherKey = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64");
    const foreign = await encryptText(JSON.stringify({ pin: "1234" }), otherKey);
    const db = openStackDb(stack);
    try {
      await db.db.execute(
        sql`update states set value_ciphertext = ${foreign} where id = ${(sealed.body as { id: string }).id}`,
      );
    } finally {
      await db.close();
    }
    const chat = await createChat(stack, admin, "guarded");
    const retrieve = (id: string, key?: string) =>
      toolRound(chat, "recall", {
        id,
        name: "retrieve_context",
        arguments: JSON.stringify({ namespace: "guard", key }),
      });
    const all = (await retrieve("g5")) as { success: boolean; contexts: Record<string, unknown>[] };
    expect(all.success).toBe(true);
    const byKey = (key: string) => all.contexts.find((context) => context.key === key);
    expect(byKey("rotated")).toMatchObject({ value: {}, decryption_failed: true });
    expect(byKey("kept")).toMatchObject({ value: { pin: "5678" } });
    expect(byKey("kept")).not.toHaveProperty("decryption_failed");
    expect(await retrieve("g6", "rotated")).toMatchObject({
      success: true,
      count: 1,
      contexts: [{ key: "rotated", value: {}, decryption_failed: true }],
    });
  });
});

describe("agent-to-agent (S29)", () => {
  it("calls another agent in a sub-chat and answers with its response", async () => {
    const child = await createAgent(stack, admin, {
      name: "child",
      system_prompt: "Child.",
      llm_provider_id: providers.anthropic,
    });
    await createAgent(stack, admin, {
      name: "parent",
      enabled_agents: ["default/child"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "parent");
    fake.script(
      agentCall("c1", "child", child.id, "ping"),
      { content: "pong" },
      { content: "child said pong" },
    );
    const response = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "ask child" });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.body).toMatchObject({ content: "child said pong" });
    const parameters = toolParameters(fake.requests[0] as never, "call_agent_child") as {
      properties: { _agent_id: { const: string } };
      required: string[];
    };
    expect(parameters.properties._agent_id.const).toBe(child.id);
    expect(parameters.required).toEqual(["prompt"]);
    expect(fake.requests[1]?.api).toBe("anthropic");
    expect(systemText(fake.requests[1] as never)).toBe("Child.");
    const result = toolResults(fake.requests[2] as never)[0]?.content as Record<string, unknown>;
    expect(result).toMatchObject({ agent_name: "child", response: "pong" });
    const chats = await api(stack, admin, "GET", "/chats");
    const sub = (chats.body as { id: string; title: string }[]).find((row) => row.id === result.chat_id);
    expect(sub?.title).toBe("Sub-chat: child");
  });

  it("refuses a call of an agent the chat's user may not use, creating no sub-chat", async () => {
    const secret = await createAgent(stack, admin, { name: "secret", llm_provider_id: providers.openai });
    await createAgent(stack, eve, {
      name: "sneaky",
      enabled_agents: ["default/secret"],
      llm_provider_id: providers.openai,
    });
    expect((await api(stack, eve, "POST", "/agents/default/secret/chats", {})).status).toBe(403);
    const chat = await createChat(stack, eve, "sneaky");
    fake.script(agentCall("s1", "secret", secret.id, "hi"), { content: "no luck" });
    const response = await api(stack, eve, "POST", `/chats/${chat}/messages`, { content: "use it" });
    expect(response.body).toMatchObject({ content: "no luck" });
    expect(fake.requests).toHaveLength(2);
    expect(toolResults(fake.requests[1] as never)[0]?.content).toEqual({
      error: "Not authorized to use agent 'default/secret'",
    });
    const chats = (await api(stack, eve, "GET", "/chats")).body as { title: string }[];
    expect(chats.map((row) => row.title)).not.toContain("Sub-chat: secret");
  });
});

describe("state tools: expired states and the sender's API key (§8.3, §3.4)", () => {
  type Caller = Pick<Session, "headers">;
  type ToolCall = { id: string; name: string; arguments: string };

  /** An API key of the admin holding only `grants` plus the use of agent `keybot`. */
  async function keyCaller(grants: string[]): Promise<Caller> {
    const permissions = Object.fromEntries(
      ["sinas.agents.default.keybot.read:own", ...grants].map((grant) => [grant, true]),
    );
    const created = await api(stack, admin, "POST", "/api/v1/api-keys", { name: "tools", permissions });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    return { headers: { "x-api-key": (created.body as { key: string }).key } };
  }

  /** One message in a new chat of `agent` whose turn makes `call`: retrieve_context's description and the result. */
  async function stateToolTurn(caller: Caller, agent: string, call: ToolCall) {
    const opened = await api(stack, caller, "POST", `/agents/default/${agent}/chats`, {});
    expect(opened.status, JSON.stringify(opened.body)).toBe(200);
    fake.reset();
    fake.script({ tool_calls: [call] }, { content: "ok" });
    const chat = (opened.body as { id: string }).id;
    const sent = await api(stack, caller, "POST", `/chats/${chat}/messages`, { content: "go" });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    type OfferedTools = { tools?: { function: { name: string; description: string } }[] };
    const offered = fake.requests[0]?.body as OfferedTools | undefined;
    const retrieve = offered?.tools?.find((tool) => tool.function.name === "retrieve_context");
    return {
      description: retrieve?.function.description ?? "",
      result: toolResults(fake.requests[1] as never).at(-1)?.content,
    };
  }

  const stateCall = (id: string, name: string, args: Record<string, unknown>): ToolCall => ({
    id,
    name,
    arguments: JSON.stringify(args),
  });

  it("treats an expired state as absent: update_context finds nothing, save_context replaces it", async () => {
    await createAgent(stack, admin, {
      name: "ttlbot",
      state_namespaces_readwrite: ["ttl"],
      llm_provider_id: providers.openai,
    });
    for (const key of ["tz", "old"]) {
      const stored = await api(stack, admin, "POST", "/states", {
        namespace: "ttl",
        key,
        value: { tz: "stale" },
        expires_at: "2000-01-01T00:00:00Z",
      });
      expect(stored.status, JSON.stringify(stored.body)).toBe(200);
    }
    const address = { namespace: "ttl", key: "tz" };
    const updated = await stateToolTurn(
      admin,
      "ttlbot",
      stateCall("t1", "update_context", { ...address, value: { tz: "UTC" } }),
    );
    expect(updated.result).toEqual({
      error: "Context not found for namespace 'ttl' and key 'tz'",
      suggestion: "Use save_context to create a new context entry",
    });
    const saved = await stateToolTurn(
      admin,
      "ttlbot",
      stateCall("t2", "save_context", { ...address, value: { tz: "UTC" } }),
    );
    expect(saved.result).toMatchObject({ success: true, value: { tz: "UTC" } });
    const read = await stateToolTurn(admin, "ttlbot", stateCall("t3", "retrieve_context", address));
    expect(read.result).toMatchObject({ success: true, count: 1, contexts: [{ value: { tz: "UTC" } }] });
    expect((await api(stack, admin, "GET", "/states?namespace=ttl")).body).toMatchObject([
      { key: "tz", value: { tz: "UTC" }, expires_at: null },
    ]);
    const deleted = await stateToolTurn(
      admin,
      "ttlbot",
      stateCall("t4", "delete_context", { namespace: "ttl", key: "old" }),
    );
    expect(deleted.result).toEqual({ error: "Context not found for namespace 'ttl' and key 'old'" });
  });

  it("shows stored keys and values only within the key's get grants", async () => {
    await createAgent(stack, admin, {
      name: "keybot",
      state_namespaces_readwrite: ["keyed"],
      llm_provider_id: providers.openai,
    });
    const own = await api(stack, admin, "POST", "/states", {
      namespace: "keyed",
      key: "secret",
      value: { code: "4711" },
    });
    expect(own.status, JSON.stringify(own.body)).toBe(200);
    // Eve's state, visible to the admin through their group `Keyring`.
    const group = await api(stack, admin, "POST", "/api/v1/groups", { name: "Keyring" });
    expect(group.status, JSON.stringify(group.body)).toBe(200);
    expect(
      (await api(stack, admin, "POST", "/api/v1/groups/Keyring/members", { user_id: eve.user.id })).status,
    ).toBe(200);
    const granted = await api(stack, admin, "POST", "/api/v1/groups/Keyring/permissions", {
      permission_key: "sinas.states.post:group",
      permission_value: true,
    });
    expect(granted.status, JSON.stringify(granted.body)).toBe(200);
    const eves = await api(stack, eve, "POST", "/states", {
      namespace: "keyed",
      key: "eves",
      value: {},
      visibility: "group",
      group_id: (group.body as { id: string }).id,
    });
    expect(eves.status, JSON.stringify(eves.body)).toBe(200);
    const secret = { namespace: "keyed", key: "secret" };

    const bySession = await stateToolTurn(admin, "keybot", stateCall("k1", "retrieve_context", {}));
    expect(bySession.description).toContain("keyed: 'eves', 'secret'");

    const writer = await keyCaller(["sinas.states.post:own", "sinas.states.put:own"]);
    const saved = await stateToolTurn(
      writer,
      "keybot",
      stateCall("k2", "save_context", { ...secret, value: {} }),
    );
    expect(saved.description).not.toContain("Currently available context");
    expect(saved.result).toEqual({
      error:
        "Context already exists for namespace 'keyed' and key 'secret'. Use update_context to modify it.",
    });
    const updated = await stateToolTurn(
      writer,
      "keybot",
      stateCall("k3", "update_context", { ...secret, description: "d" }),
    );
    expect(updated.result).toEqual({ success: true, message: "Updated context: keyed/secret" });

    const reader = await keyCaller(["sinas.states.get:own", "sinas.states.post:own"]);
    const read = await stateToolTurn(
      reader,
      "keybot",
      stateCall("k4", "save_context", { ...secret, value: {} }),
    );
    expect(read.description).toContain("keyed: 'secret'");
    expect(read.description).not.toContain("eves");
    expect(read.result).toMatchObject({ existing_value: { code: "4711" } });
  });
});
