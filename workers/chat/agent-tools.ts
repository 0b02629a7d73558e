/**
 * @module Agent tools (sinas-spec §5.5.2, §5.8, D-16): each active agent of `enabled_agents` (written as
 * `ns/name` or as its UUID) becomes a `call_agent_<name>` tool; a call opens a sub-chat with that agent, owned
 * by the same user, sends it the prompt (or the structured input) in a non-streaming turn, and returns the
 * answer.
 */
import { and, eq, inArray, or, type SQL } from "drizzle-orm";
import { accessScope } from "../auth/access";
import { permissions } from "../auth/catalogue";
import type { Principal } from "../auth/principal";
import { isJsonObject } from "../db/json";
import { type Agent, agents, type JsonObject } from "../db/schema";
import { untilAborted } from "../lib/abort";
import type { ToolDefinition } from "../llm/types";
import { createChatForAgent, findAgentForChat } from "../services/chats";
import { loadUserWithGrants, userPrincipal } from "../services/grants";
import type { OfferedTool, ToolContext } from "./tools";
import { wireName } from "./wire-schema";

/**
 * A call from a chat this deep is refused: a user's turn is depth 0, its sub-chats 1, and so on. Stops an agent
 * that calls itself (or a cycle of agents) from recursing without end.
 */
export const MAX_AGENT_CALL_DEPTH = 3;

/**
 * At most this many `call_agent_*` calls run in one user's turn, its sub-chats' calls included: with the depth
 * cap alone, an agent that calls itself could still fan out to 16 calls a round, 10 rounds, at every depth.
 */
export const MAX_AGENT_CALLS_PER_TURN = 10;

/** Takes one call from a turn's agent-call budget; false once it is spent. Crosses into sub-chats as an RPC stub. */
export type TakeAgentCall = () => Promise<boolean>;

/** A fresh budget of MAX_AGENT_CALLS_PER_TURN calls, for a user's turn (sub-chats share their caller's). */
export function agentCallBudget(): TakeAgentCall {
  let remaining = MAX_AGENT_CALLS_PER_TURN;
  return async () => {
    if (remaining <= 0) return false;
    remaining -= 1;
    return true;
  };
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `call_agent_` + the lower-cased name with spaces and `-` as `_` (`Research Bot` -> `call_agent_research_bot`);
 * one over 64 characters is shortened (see `wireName`).
 */
export function agentToolName(agentName: string): string {
  return wireName(`call_agent_${agentName.toLowerCase().replace(/ /g, "_").replace(/-/g, "_")}`);
}

/**
 * The tool of one agent: its input schema plus the hidden constant `_agent_id` when the schema has properties,
 * else a required `prompt`. Always `type: "object"`: an input schema may leave it out, and OpenAI and Anthropic
 * refuse a tool without it (and with it the whole request).
 */
export function agentToolDefinition(
  agent: Pick<Agent, "id" | "name" | "description" | "inputSchema">,
): ToolDefinition {
  const agentIdProperty = { type: "string", description: "Internal agent identifier", const: agent.id };
  const schemaProperties = agent.inputSchema.properties;
  let parameters: JsonObject;
  if (isJsonObject(schemaProperties) && Object.keys(schemaProperties).length > 0) {
    parameters = {
      ...structuredClone(agent.inputSchema),
      type: "object",
      properties: { ...schemaProperties, _agent_id: agentIdProperty },
    };
  } else {
    parameters = {
      type: "object",
      properties: {
        prompt: { type: "string", description: "The prompt or query to send to the agent" },
        _agent_id: agentIdProperty,
      },
      required: ["prompt"],
    };
  }
  return {
    type: "function",
    function: {
      name: agentToolName(agent.name),
      description: agent.description ? `${agent.name}: ${agent.description}` : `Call the ${agent.name} agent`,
      parameters,
    },
  };
}

/**
 * What a call sends to the sub-agent (§5.8 step 2): keys starting with `_` are dropped; a lone `prompt` is sent
 * as the message with no input, anything else is the chat input and its JSON the message.
 */
export function agentCallMessage(args: JsonObject): { content: string; input: JsonObject } {
  const input = Object.fromEntries(Object.entries(args).filter(([key]) => !key.startsWith("_")));
  const keys = Object.keys(input);
  if (keys.length === 1 && keys[0] === "prompt") {
    const prompt = input.prompt;
    return { content: typeof prompt === "string" ? prompt : JSON.stringify(prompt), input: {} };
  }
  return { content: JSON.stringify(input), input };
}

type AgentRef = { id: string } | { namespace: string; name: string };

/** An `enabled_agents` entry: a UUID, or `ns/name` split at its first `/`; null for anything else. */
export function parseAgentRef(entry: string): AgentRef | null {
  if (UUID_PATTERN.test(entry)) return { id: entry.toLowerCase() };
  const slash = entry.indexOf("/");
  if (slash <= 0 || slash === entry.length - 1) return null;
  return { namespace: entry.slice(0, slash), name: entry.slice(slash + 1) };
}

/** The active agents `enabled_agents` names, in its order, each once (D-16); missing or inactive ones are skipped. */
export async function resolveEnabledAgents(ctx: ToolContext): Promise<Agent[]> {
  const refs = ctx.agent.enabledAgents.map(parseAgentRef).filter((ref): ref is AgentRef => ref !== null);
  if (refs.length === 0) return [];
  const ids = refs.flatMap((ref) => ("id" in ref ? [ref.id] : []));
  const byName = refs.flatMap((ref) =>
    "id" in ref ? [] : [and(eq(agents.namespace, ref.namespace), eq(agents.name, ref.name))],
  );
  const matches: (SQL | undefined)[] = [...byName];
  if (ids.length > 0) matches.push(inArray(agents.id, ids));
  const rows = await ctx.services
    .db()
    .select()
    .from(agents)
    .where(and(eq(agents.isActive, true), or(...matches)));
  const resolved = new Map<string, Agent>();
  for (const ref of refs) {
    const agent = rows.find((row) =>
      "id" in ref ? row.id === ref.id : row.namespace === ref.namespace && row.name === ref.name,
    );
    if (agent && !resolved.has(agent.id)) resolved.set(agent.id, agent);
  }
  return [...resolved.values()];
}

export async function offerAgentTools(ctx: ToolContext): Promise<OfferedTool[]> {
  const enabled = await resolveEnabledAgents(ctx);
  return enabled.map((agent) => ({
    definition: agentToolDefinition(agent),
    kind: "agent",
    agentId: agent.id,
  }));
}

/**
 * Whether the turn's sender may start a chat with `agent` (§1.2, `sinas.agents.{ns}.{name}.read`, D-3), as the
 * chat route asks: naming an agent in `enabled_agents` must not lend it to a caller who may not use it. A turn
 * sent with an API key is held to the key's own permissions, as every route holds that key (§3.4).
 */
async function mayUseAgent(ctx: ToolContext, agent: Agent): Promise<boolean> {
  const found = await loadUserWithGrants(ctx.services.statementDb(), ctx.user.id);
  if (!found?.user.isActive) return false;
  const userAsSelf = userPrincipal(found.user, found.grants);
  const principal: Principal = ctx.apiKey
    ? { ...userAsSelf, permissions: ctx.apiKey.permissions, method: "api_key", apiKeyId: ctx.apiKey.id }
    : userAsSelf;
  return (
    accessScope(principal, (scope) => permissions.agentRead(agent.namespace, agent.name, scope), agent) !==
    null
  );
}

/**
 * Runs a call of the `call_agent_*` tool offered for `agentId` (§5.8). The tool decides which agent runs: the
 * model's `_agent_id` may be left out, and any other value than the tool's own is refused (it would let a model
 * reach an agent through another agent's tool). Expected failures are `{error}` results; anything thrown is
 * turned into one by the caller.
 */
export async function runAgentTool(ctx: ToolContext, agentId: string, args: JsonObject): Promise<unknown> {
  const claimedId = args._agent_id;
  if (claimedId !== undefined && claimedId !== agentId) {
    return { error: `_agent_id ${JSON.stringify(claimedId)} is not the agent of this tool` };
  }
  if ((ctx.depth ?? 0) >= MAX_AGENT_CALL_DEPTH) return { error: "Agent call depth exceeded" };
  const db = ctx.services.db();
  const agent = await findAgentForChat(db, agentId);
  if (!agent) return { error: `Agent not found: ${agentId}` };
  if (!(await mayUseAgent(ctx, agent))) {
    return { error: `Not authorized to use agent '${agent.namespace}/${agent.name}'` };
  }
  if (!(await ctx.takeAgentCall())) {
    return { error: `Too many agent calls in this turn (limit ${MAX_AGENT_CALLS_PER_TURN})` };
  }
  const { content, input } = agentCallMessage(args);
  const subChat = await createChatForAgent(db, {
    agent,
    userId: ctx.user.id,
    groupId: ctx.chat.groupId,
    title: `Sub-chat: ${agent.name}`,
    input,
  });
  // A stop ends the wait at once; runSubChatTurn stops the sub-chat's turn too.
  const response = await untilAborted(ctx.runSubChatTurn(subChat.id, content), ctx.signal);
  return { agent_name: agent.name, response, chat_id: subChat.id };
}
