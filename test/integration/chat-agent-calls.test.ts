/**
 * Agent-to-agent calls (S29) held within their limits through the real stack: the sender's API key bounds
 * which agents a turn and its sub-chats may call (an approval's continuation: the decider's key), a round runs at
 * most 16 calls, a turn and its sub-chats at most 10 agent calls, and a `call_agent_*` tool runs its own agent.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { FakeLlm } from "../fixtures/fake-llm";
import { api, type Session, tokenHolds } from "../helpers/auth";
import {
  createAgent,
  createChat,
  startChatStack,
  stopChatStack,
  streamMessage,
  systemText,
  toolNames,
  toolResults,
  type WireFormat,
} from "../helpers/chat";
import { createFunction, pythonFunction } from "../helpers/functions";
import type { TestStack } from "../helpers/stack";

let stack: TestStack;
let fake: FakeLlm;
let admin: Session;
let providers: Record<WireFormat, string>;

beforeAll(async () => {
  ({ stack, fake, admin, providers } = await startChatStack("erin@acme.io"));
  await createFunction(stack, admin, pythonFunction("wire", "    return input", { requires_approval: true }));
});
afterAll(() => stopChatStack({ stack, fake }));
beforeEach(() => fake.reset());

type ScriptedCall = { id: string; name: string; arguments: string };

/** A call of the agent `name`'s tool with `prompt` (and `_agent_id` when given). */
function agentCall(id: string, name: string, prompt: string, agentId?: string): ScriptedCall {
  const args = agentId === undefined ? { prompt } : { prompt, _agent_id: agentId };
  return { id, name: `call_agent_${name}`, arguments: JSON.stringify(args) };
}

type Caller = Pick<Session, "headers">;

/** An API key of `session`'s user holding only `permissions`, as a caller that sends it. */
async function keyCaller(session: Session, permissions: Record<string, boolean>): Promise<Caller> {
  const created = await api(stack, session, "POST", "/api/v1/api-keys", { name: "scoped", permissions });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return { headers: { "x-api-key": (created.body as { key: string }).key } };
}

async function chatTitles(session: Caller): Promise<string[]> {
  return ((await api(stack, session, "GET", "/chats")).body as { title: string }[]).map((row) => row.title);
}

const resultsOf = (request: unknown) => toolResults(request as never).map((result) => result.content);

describe("agent calls and the sender's credential (S29, §3.4)", () => {
  it("holds a turn sent with an API key, and its sub-chats, to the key's permissions", async () => {
    await createAgent(stack, admin, { name: "admin-bot", llm_provider_id: providers.openai });
    await createAgent(stack, admin, {
      name: "middle",
      enabled_agents: ["default/admin-bot"],
      llm_provider_id: providers.openai,
    });
    await createAgent(stack, admin, {
      name: "front",
      enabled_agents: ["default/admin-bot", "default/middle"],
      llm_provider_id: providers.openai,
    });
    const key = await keyCaller(admin, {
      "sinas.agents.default.front.read:own": true,
      "sinas.agents.default.middle.read:own": true,
    });
    expect((await api(stack, key, "POST", "/agents/default/admin-bot/chats", {})).status).toBe(403);
    const opened = await api(stack, key, "POST", "/agents/default/front/chats", {});
    expect(opened.status, JSON.stringify(opened.body)).toBe(200);
    const chat = (opened.body as { id: string }).id;

    // front calls admin-bot (refused) and middle, whose call of admin-bot is refused as well.
    fake.script(
      { tool_calls: [agentCall("a1", "admin_bot", "hi"), agentCall("m1", "middle", "go")] },
      { tool_calls: [agentCall("a2", "admin_bot", "hi")] },
      { content: "middle done" },
      { content: "front done" },
    );
    const response = await api(stack, key, "POST", `/chats/${chat}/messages`, { content: "reach admin-bot" });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.body).toMatchObject({ content: "front done" });
    expect(fake.requests).toHaveLength(4);
    const refused = { error: "Not authorized to use agent 'default/admin-bot'" };
    expect(resultsOf(fake.requests[2])).toEqual([refused]);
    expect(resultsOf(fake.requests[3])).toEqual([
      refused,
      expect.objectContaining({ agent_name: "middle", response: "middle done" }),
    ]);
    expect(await chatTitles(admin)).not.toContain("Sub-chat: admin-bot");

    // The user's own token still reaches admin-bot: the key, not the user, was refused.
    fake.reset();
    fake.script({ tool_calls: [agentCall("a3", "admin_bot", "hi")] }, { content: "pong" }, { content: "ok" });
    const byToken = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "again" });
    expect(byToken.body).toMatchObject({ content: "ok" });
    expect(resultsOf(fake.requests[2]).at(-1)).toMatchObject({ agent_name: "admin-bot", response: "pong" });
  });

  it("gives a function tool of a turn sent with an API key a context token that acts as the key", async () => {
    await createFunction(
      stack,
      admin,
      pythonFunction("whoami", '    return {"token": context["access_token"]}'),
    );
    await createAgent(stack, admin, {
      name: "keyed",
      enabled_functions: ["default/whoami"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "keyed");
    const key = await keyCaller(admin, {
      "sinas.agents.default.keyed.read:own": true,
      "sinas.functions.*.*.execute:own": true,
    });
    const tokenOfTurn = async (caller: Caller) => {
      fake.reset();
      fake.script(
        { tool_calls: [{ id: "t1", name: "default__whoami", arguments: "{}" }] },
        { content: "ok" },
      );
      const sent = await api(stack, caller, "POST", `/chats/${chat}/messages`, { content: "who am I" });
      expect(sent.status, JSON.stringify(sent.body)).toBe(200);
      const result = resultsOf(fake.requests[1]).at(-1); // the history holds earlier turns' results
      return (typeof result === "string" ? JSON.parse(result) : result).token as string;
    };
    const mayListFunctions = (token: string) =>
      tokenHolds(stack, token, "sinas.functions.default.whoami.get:own");
    // The admin's own turn: the token acts as the admin; the key's turn: as the key, which may not list.
    expect(await mayListFunctions(await tokenOfTurn(admin))).toBe(true);
    expect(await mayListFunctions(await tokenOfTurn(key))).toBe(false);
  });

  it("continues an approved turn with the decider's API key", async () => {
    await createAgent(stack, admin, { name: "vault", llm_provider_id: providers.openai });
    await createAgent(stack, admin, {
      name: "teller",
      enabled_agents: ["default/vault"],
      enabled_functions: ["default/wire"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "teller");
    const key = await keyCaller(admin, { "sinas.agents.default.teller.read:own": true });

    // Sent with the token; the round pauses for the wire's approval before the agent call runs.
    fake.script({
      tool_calls: [
        { id: "w1", name: "default__wire", arguments: '{"amount":1}' },
        agentCall("v1", "vault", "open"),
      ],
    });
    const paused = await streamMessage(stack, admin, chat, "wire and open");
    const types = paused.events.map((event) => (event.data as { type?: string }).type);
    expect(types).toContain("approval_required");

    fake.reset();
    fake.script({ content: "after the decision" });
    const decided = await api(stack, key, "POST", `/chats/${chat}/approve-tool/w1`, { approved: false });
    expect(decided.status, JSON.stringify(decided.body)).toBe(200);
    expect(fake.requests).toHaveLength(1);
    expect(resultsOf(fake.requests[0])).toEqual([
      { error: "Tool call rejected by user: default/wire" },
      { error: "Not authorized to use agent 'default/vault'" },
    ]);
    expect(await chatTitles(admin)).not.toContain("Sub-chat: vault");
  });
});

describe("agent call limits", () => {
  it("runs at most 16 calls of a round; the rest get an error result", async () => {
    await createAgent(stack, admin, {
      name: "spray",
      state_namespaces_readwrite: ["spray"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "spray");
    const saves = Array.from({ length: 18 }, (_, index) => ({
      id: `s${index}`,
      name: "save_context",
      arguments: JSON.stringify({ namespace: "spray", key: `k${index}`, value: { index } }),
    }));
    fake.script({ tool_calls: saves }, { content: "sprayed" });
    const response = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "save all" });
    expect(response.body).toMatchObject({ content: "sprayed" });
    const results = resultsOf(fake.requests[1]);
    expect(results).toHaveLength(18);
    const tooMany = { error: "Too many tool calls in one round (limit 16)" };
    expect(results.slice(16)).toEqual([tooMany, tooMany]);
    expect(results.slice(0, 16)).not.toContainEqual(tooMany);
    const states = (await api(stack, admin, "GET", "/states?namespace=spray")).body as { key: string }[];
    expect(states.map((state) => state.key).sort()).toEqual(
      Array.from({ length: 16 }, (_, index) => `k${index}`).sort(),
    );
  });

  it("runs at most 10 agent calls in a turn, its sub-chats' calls included", async () => {
    await createAgent(stack, admin, {
      name: "fan",
      enabled_agents: ["default/fan"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "fan");
    const fanOut = Array.from({ length: 12 }, (_, index) => agentCall(`f${index}`, "fan", "leaf"));
    // The turn's one call opens a sub-chat whose 12 calls share the budget: 9 run, 3 are refused.
    fake.script(
      { tool_calls: [agentCall("top", "fan", "spread")] },
      { tool_calls: fanOut },
      ...Array.from({ length: 9 }, () => ({ content: "leaf" })),
      { content: "middle" },
      { content: "top" },
    );
    const response = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "fan out" });
    expect(response.body).toMatchObject({ content: "top" });
    expect(fake.requests).toHaveLength(13);
    const results = resultsOf(fake.requests[11]);
    expect(results).toHaveLength(12);
    const refused = { error: "Too many agent calls in this turn (limit 10)" };
    expect(results.filter((result) => JSON.stringify(result) === JSON.stringify(refused))).toHaveLength(3);
    const ran = results.filter((result) => (result as { response?: string }).response === "leaf");
    expect(ran).toHaveLength(9);
  });
});

describe("which agent a call_agent tool runs (§5.8)", () => {
  it("runs the tool's own agent: _agent_id may be left out and may not name another", async () => {
    const alpha = await createAgent(stack, admin, { name: "alpha", llm_provider_id: providers.openai });
    const beta = await createAgent(stack, admin, { name: "beta", llm_provider_id: providers.openai });
    await createAgent(stack, admin, {
      name: "chooser",
      enabled_agents: ["default/alpha", "default/beta"],
      llm_provider_id: providers.openai,
    });
    const chat = await createChat(stack, admin, "chooser");
    fake.script(
      { tool_calls: [agentCall("x1", "alpha", "hi", beta.id), agentCall("x2", "beta", "hi")] },
      { content: "from beta" },
      { content: "done" },
    );
    const response = await api(stack, admin, "POST", `/chats/${chat}/messages`, { content: "choose" });
    expect(response.body).toMatchObject({ content: "done" });
    expect(fake.requests).toHaveLength(3);
    expect(resultsOf(fake.requests[2])).toEqual([
      { error: `_agent_id "${beta.id}" is not the agent of this tool` },
      expect.objectContaining({ agent_name: "beta", response: "from beta" }),
    ]);
    expect(alpha.id).not.toBe(beta.id);
    expect(await chatTitles(admin)).not.toContain("Sub-chat: alpha");
  });
});

describe("function tools and the sender's credential (§3.4)", () => {
  it("offers a turn sent with an API key only the functions the key may execute", async () => {
    await createFunction(stack, admin, pythonFunction("ledger", '    return {"ok": True}'));
    await createAgent(stack, admin, {
      name: "bookkeeper",
      enabled_functions: ["default/ledger"],
      llm_provider_id: providers.openai,
    });
    const readOnly = await keyCaller(admin, { "sinas.agents.default.bookkeeper.read:own": true });
    const runner = await keyCaller(admin, {
      "sinas.agents.default.bookkeeper.read:own": true,
      "sinas.functions.default.ledger.execute:own": true,
    });
    const offeredTo = async (caller: Caller) => {
      const opened = await api(stack, caller, "POST", "/agents/default/bookkeeper/chats", {});
      expect(opened.status, JSON.stringify(opened.body)).toBe(200);
      fake.reset();
      fake.script({ content: "ok" });
      const chat = (opened.body as { id: string }).id;
      expect((await api(stack, caller, "POST", `/chats/${chat}/messages`, { content: "hi" })).status).toBe(
        200,
      );
      return toolNames(fake.requests[0] as never);
    };
    expect(await offeredTo(readOnly)).toEqual([]);
    expect(await offeredTo(runner)).toEqual(["default__ledger"]);
    expect(await offeredTo(admin)).toEqual(["default__ledger"]);
  });
});

describe("state tools and the sender's credential (§3.4)", () => {
  it("holds a turn sent with an API key to the key's states grants: tools and stored context", async () => {
    await createAgent(stack, admin, {
      name: "keeper",
      system_prompt: "Keeper.",
      state_namespaces_readwrite: ["diary"],
      llm_provider_id: providers.openai,
    });
    const stored = await api(stack, admin, "POST", "/states", {
      namespace: "diary",
      key: "secret",
      value: { code: "4711" },
    });
    expect(stored.status, JSON.stringify(stored.body)).toBe(200);
    const turnOf = async (caller: Caller) => {
      const opened = await api(stack, caller, "POST", "/agents/default/keeper/chats", {});
      expect(opened.status, JSON.stringify(opened.body)).toBe(200);
      fake.reset();
      fake.script(
        {
          tool_calls: [
            { id: "r1", name: "retrieve_context", arguments: '{"namespace":"diary","key":"secret"}' },
            {
              id: "w1",
              name: "save_context",
              arguments: '{"namespace":"diary","key":"new","value":{"a":1}}',
            },
          ],
        },
        { content: "done" },
      );
      const chat = (opened.body as { id: string }).id;
      expect((await api(stack, caller, "POST", `/chats/${chat}/messages`, { content: "go" })).status).toBe(
        200,
      );
      await api(stack, admin, "DELETE", `/states/${await stateIdOf("new")}`);
      return { system: systemText(fake.requests[0] as never) ?? "", results: resultsOf(fake.requests[1]) };
    };
    const stateIdOf = async (key: string) =>
      (
        (await api(stack, admin, "GET", `/states?namespace=diary`)).body as { id: string; key: string }[]
      ).find((row) => row.key === key)?.id ?? "none";

    const bare = await turnOf(await keyCaller(admin, { "sinas.agents.default.keeper.read:own": true }));
    expect(bare.system).toBe("Keeper.");
    expect(bare.results).toEqual([
      { error: "Not authorized: this chat's API key does not grant sinas.states.get:own" },
      { error: "Not authorized: this chat's API key does not grant sinas.states.post:own" },
    ]);

    const granted = await turnOf(
      await keyCaller(admin, {
        "sinas.agents.default.keeper.read:own": true,
        "sinas.states.get:own": true,
        "sinas.states.post:own": true,
      }),
    );
    expect(granted.system).toContain('"code": "4711"');
    expect(granted.results[0]).toMatchObject({ success: true, count: 1 });
    expect(granted.results[1]).toMatchObject({ success: true });
  });
});
