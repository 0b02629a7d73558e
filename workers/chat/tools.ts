/**
 * @module The tools an agent offers the model, and running the calls it makes (sinas-spec §5.5, §5.8, §8.2-8.3,
 * D-16, D-27, D-39). The turn engine (turn.ts) calls `assembleTools` once per turn, then `runToolCall` for each
 * call of a round: only offered tools are dispatched, and every failure becomes an `{error}` result the model
 * reads, so a tool can never break the turn (except a stop, which propagates as an AbortError).
 *
 * The kinds live in their own files: state-tools.ts, agent-tools.ts, function-tools.ts; `continue_execution`
 * (§5.5.5) is here.
 */
import { and, desc, eq, type SQL } from "drizzle-orm";
import { permissions } from "../auth/catalogue";
import { checkPermission } from "../auth/permissions";
import type { ApiKeyCredential } from "../auth/principal";
import { isJsonObject } from "../db/json";
import { type Agent, type Chat, type Execution, executions, functions, type JsonObject } from "../db/schema";
import { untilAborted } from "../lib/abort";
import { AppError } from "../lib/errors";
import type { ToolCall, ToolDefinition } from "../llm/types";
import { findExecution } from "../services/execution-records";
import { resumeExecution, timeoutOf, waitForExecution } from "../services/executions";
import type { Services } from "../services/services";
import { offerAgentTools, runAgentTool, type TakeAgentCall } from "./agent-tools";
import { executionOutcome, offerFunctionTools, runFunctionTool } from "./function-tools";
import type { ContextScope } from "./prompt";
import { offerStateTools, runStateTool } from "./state-tools";

export interface ToolContext {
  services: Services;
  /** The chat the calls belong to (db row). */
  chat: Chat;
  /** The chat's agent (db row). */
  agent: Agent;
  /** The chat's owner: tools act as this user (§6.5, §8.3). */
  user: { id: string; email: string };
  /** `chat.chatMetadata?.agent_input`, or null. */
  agentInput: JsonObject | null;
  /** Runs a non-streaming turn in another chat (the sub-agent's) and returns its final assistant content. */
  runSubChatTurn(chatId: string, content: string): Promise<string>;
  signal?: AbortSignal;
  /**
   * Nesting of agent-to-agent calls: 0 (or absent) in a user's turn; `runSubChatTurn` runs the sub-chat's turn
   * one deeper. A call at MAX_AGENT_CALL_DEPTH is refused (an agent calling itself, or a cycle).
   */
  depth?: number;
  /**
   * The API key's own permissions when the turn was sent (or its approval decided) with one: agent calls are
   * checked against them instead of the user's group grants. Absent for a JWT sender.
   */
  apiKey?: ApiKeyCredential;
  /** Takes one call from the turn's agent-call budget (MAX_AGENT_CALLS_PER_TURN, shared with its sub-chats). */
  takeAgentCall: TakeAgentCall;
  /** Known already when the chat was read: false skips the query for `continue_execution`. */
  hasPausedExecutions?: boolean;
}

export type OfferedToolKind = "state" | "agent" | "function" | "mcp" | "continue";

export interface OfferedTool {
  /** What the model sees (no `_metadata`). */
  definition: ToolDefinition;
  kind: OfferedToolKind;
  /** For kind=function: `prefilled` values override the model's arguments (they are locked, §5.5.3). */
  fn?: { namespace: string; name: string; requiresApproval: boolean; prefilled: JsonObject };
  /** For kind=agent. */
  agentId?: string;
}

/** At most this many paused executions are listed in `continue_execution` (§5.5.5). */
const MAX_PAUSED_EXECUTIONS = 10;

/**
 * Every tool the agent offers in this chat, in §5.5 order: state tools, agent tools, function tools, MCP tools
 * (none yet), `continue_execution`. Names are unique: a later tool whose name is taken is dropped (two agents
 * named `child` in different namespaces both map to `call_agent_child`; the first listed wins).
 *
 * @example
 * const tools = await assembleTools(ctx);
 * provider.complete({ ..., tools: tools.map((tool) => tool.definition) });
 */
export async function assembleTools(ctx: ToolContext): Promise<OfferedTool[]> {
  const [stateTools, agentTools, functionTools, continueTools] = await Promise.all([
    offerStateTools(ctx),
    offerAgentTools(ctx),
    offerFunctionTools(ctx),
    offerContinueExecution(ctx),
  ]);
  // TODO(MCP, §5.5.4/§10.7): `agent.enabledMcpTools` is stored, but there is no MCP client yet, so no MCP tool is
  // offered. When it lands, offer the registered tools named there here, as kind "mcp", between the function
  // tools and continue_execution, and dispatch them in `dispatch` below.
  const mcpTools: OfferedTool[] = [];
  return uniqueByName([...stateTools, ...agentTools, ...functionTools, ...mcpTools, ...continueTools]);
}

function uniqueByName(tools: OfferedTool[]): OfferedTool[] {
  const seen = new Set<string>();
  return tools.filter((tool) => {
    const name = tool.definition.function.name;
    if (seen.has(name)) {
      console.warn(`tool '${name}' is offered twice; the later one (${tool.kind}) is dropped`);
      return false;
    }
    seen.add(name);
    return true;
  });
}

export function findOfferedTool(tools: OfferedTool[], name: string): OfferedTool | undefined {
  return tools.find((tool) => tool.definition.function.name === name);
}

/** The function a call names when that function needs the user's approval first (§5.6 step 5), else null. */
export function approvalNeeded(
  tools: OfferedTool[],
  call: ToolCall,
): { namespace: string; name: string } | null {
  const tool = findOfferedTool(tools, call.function.name);
  if (tool?.kind !== "function" || !tool.fn?.requiresApproval) return null;
  return { namespace: tool.fn.namespace, name: tool.fn.name };
}

/**
 * Whether the turn's credential grants `permission`: a turn sent with an API key acts within the key's own
 * permissions, as every route holds that key (§3.4); a JWT sender's tools act by the rules of each tool.
 */
export function credentialAllows(ctx: Pick<ToolContext, "apiKey">, permission: string): boolean {
  return !ctx.apiKey || checkPermission(ctx.apiKey.permissions, permission);
}

/**
 * The stored states a turn's credential may read (stored context, the state tools): a JWT sender's own and
 * group ones, an API key's as far as its `sinas.states.get` grants reach (§3.4).
 */
export function readableContextScope(ctx: Pick<ToolContext, "apiKey">): ContextScope {
  if (credentialAllows(ctx, permissions.states("get", "group"))) return "group";
  return credentialAllows(ctx, permissions.states("get", "own")) ? "own" : "none";
}

/** The tool message content of a result: strings as they are, anything else as JSON (§5.4 step 4b). */
export function toolResultContent(result: unknown): string {
  return typeof result === "string" ? result : JSON.stringify(result ?? null);
}

export type ParsedArguments = { ok: true; args: JsonObject } | { ok: false; error: JsonObject };

/** A call's arguments: a JSON string (empty means `{}`) or an already parsed object. */
export function parseToolArguments(raw: unknown): ParsedArguments {
  let value: unknown = raw;
  if (typeof raw === "string") {
    if (raw.trim() === "") return { ok: true, args: {} };
    try {
      value = JSON.parse(raw);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return {
        ok: false,
        error: { error: `Invalid JSON arguments: ${message}`, raw_arguments: raw.slice(0, 200) },
      };
    }
  }
  if (value === null || value === undefined) return { ok: true, args: {} };
  if (!isJsonObject(value)) return { ok: false, error: { error: "Tool arguments must be a JSON object" } };
  return { ok: true, args: value };
}

function isAbort(error: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true || (error instanceof Error && error.name === "AbortError");
}

/**
 * Runs one call of the model and returns its result (any JSON value; see `toolResultContent`). Calls to tools
 * that were not offered get `{"error":"Tool not available: N"}` (D-27). Never throws, except an AbortError when
 * `ctx.signal` aborts: every other failure is returned as `{error: message}`, a generic one unless an AppError.
 */
export async function runToolCall(ctx: ToolContext, tools: OfferedTool[], call: ToolCall): Promise<unknown> {
  ctx.signal?.throwIfAborted();
  const name = call.function.name;
  const tool = findOfferedTool(tools, name);
  if (!tool) return { error: `Tool not available: ${name}` };
  const parsed = parseToolArguments(call.function.arguments);
  if (!parsed.ok) return parsed.error;
  try {
    return await dispatch(ctx, tool, parsed.args);
  } catch (error) {
    if (isAbort(error, ctx.signal)) throw error;
    console.error(`chat ${ctx.chat.id}: tool ${name} failed:`, error);
    // Only an AppError's message is meant for users; any other (a failed query) may hold SQL and its parameters.
    return { error: error instanceof AppError ? error.message : "Tool failed: internal error" };
  }
}

async function dispatch(ctx: ToolContext, tool: OfferedTool, args: JsonObject) {
  const name = tool.definition.function.name;
  switch (tool.kind) {
    case "state":
      return runStateTool(ctx, name, args);
    case "continue":
      return runContinueExecution(ctx, args);
    case "agent":
      if (!tool.agentId) return { error: `Tool not available: ${name}` };
      return runAgentTool(ctx, tool.agentId, args);
    case "mcp":
      return { error: `MCP tools are not supported yet: ${name}` };
    case "function":
      if (!tool.fn) return { error: `Tool not available: ${name}` };
      return runFunctionTool(ctx, tool.fn, args);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// continue_execution (§5.5.5, §6.7)
// ---------------------------------------------------------------------------------------------------------------

export const CONTINUE_EXECUTION = "continue_execution";

type PausedExecution = Pick<Execution, "executionId" | "functionName" | "inputPrompt">;

/** The `continue_execution` tool for the chat's paused executions (at least one). */
export function continueExecutionDefinition(paused: PausedExecution[]): ToolDefinition {
  const list = paused
    .map(
      (execution) => `- ${execution.executionId}: ${execution.functionName} - ${execution.inputPrompt ?? ""}`,
    )
    .join("\n");
  return {
    type: "function",
    function: {
      name: CONTINUE_EXECUTION,
      description: `Continue a paused function execution by providing required input. Currently paused executions:\n${list}`,
      parameters: {
        type: "object",
        properties: {
          execution_id: {
            type: "string",
            description: "The execution ID to continue",
            enum: paused.map((execution) => execution.executionId),
          },
          input: { type: "object", description: "Input data to provide to the paused execution" },
        },
        required: ["execution_id", "input"],
      },
    },
  };
}

async function offerContinueExecution(ctx: ToolContext): Promise<OfferedTool[]> {
  if (ctx.hasPausedExecutions === false) return [];
  const paused = await ctx.services
    .db()
    .select({
      executionId: executions.executionId,
      functionName: executions.functionName,
      inputPrompt: executions.inputPrompt,
    })
    .from(executions)
    .where(and(eq(executions.chatId, ctx.chat.id), eq(executions.status, "AWAITING_INPUT")))
    // The newest: older pauses the user left behind must not crowd out the one the model just asked about.
    .orderBy(desc(executions.startedAt))
    .limit(MAX_PAUSED_EXECUTIONS);
  if (paused.length === 0) return [];
  return [{ definition: continueExecutionDefinition(paused), kind: "continue" }];
}

/** Resumes a paused execution of this chat with the model's input and waits for its next outcome. */
async function runContinueExecution(ctx: ToolContext, args: JsonObject): Promise<unknown> {
  const executionId = args.execution_id;
  if (typeof executionId !== "string" || executionId === "") return { error: "Missing execution_id" };
  if (!isJsonObject(args.input)) return { error: "input must be a JSON object" };
  const { services } = ctx;
  const execution = await findExecution(services.db(), executionId);
  if (!execution || execution.chatId !== ctx.chat.id) return { error: `Execution not found: ${executionId}` };
  ctx.signal?.throwIfAborted(); // a turn stopped meanwhile resumes nothing
  try {
    const apiKey = ctx.apiKey && { id: ctx.apiKey.id, userId: ctx.user.id };
    await resumeExecution(services, execution, args.input, apiKey);
  } catch (error) {
    if (error instanceof AppError) return { error: error.message };
    throw error;
  }
  // A stop ends the wait, not the run (as for a function tool).
  const timeout = await continueTimeout(services, execution);
  const state = await untilAborted(waitForExecution(services, executionId, timeout), ctx.signal);
  return executionOutcome(executionId, state);
}

async function continueTimeout(services: Services, execution: Execution): Promise<number> {
  const sameFunction: SQL | undefined = and(
    eq(functions.namespace, execution.functionNamespace),
    eq(functions.name, execution.functionName),
  );
  const [fn] = await services
    .db()
    .select({ timeoutSeconds: functions.timeoutSeconds })
    .from(functions)
    .where(sameFunction)
    .limit(1);
  return timeoutOf(services, fn ?? { timeoutSeconds: null });
}
