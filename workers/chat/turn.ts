/**
 * @module One agent turn (sinas-spec §5.3-5.7 with D-11, D-25, D-26, D-28, D-29): call the model, run the tool
 * rounds it asks for (in parallel, at most MAX_TOOL_ROUNDS), pause for approvals, and save every message as it
 * happens. Knows nothing of HTTP or of Durable Objects: it reports progress through `emit` and stops when
 * `signal` aborts. The ChatSession object runs it and logs what it emits.
 */

import type { ApiKeyCredential } from "../auth/principal";
import type { Agent, Chat, ConversationContext, JsonObject, Message, ToolCall } from "../db/schema";
import { pendingToolApprovals } from "../db/schema";
import { AppError } from "../lib/errors";
import { describeSchemaProblems, validateAgainstSchema } from "../lib/json-schema";
import { type LlmProviderRow, type ResolvedChatModel, resolveChatModel } from "../llm/registry";
import type { CompletionRequest, LlmMessage } from "../llm/types";
import { appendMessages, type NewChatMessage } from "../services/chats";
import type { Services } from "../services/services";
import type { TakeAgentCall } from "./agent-tools";
import type { ChatEvent, TurnEndStatus } from "./events";
import type { ChatHistory } from "./history";
import { completeReply, type StartedCall, startCall, streamReply } from "./model-call";
import { buildConversation, type FirstRoundMessages, responseFormatFor, storedWith } from "./prompt";
import {
  approvalNeeded,
  assembleTools,
  type OfferedTool,
  readableContextScope,
  runToolCall,
  type ToolContext,
  toolResultContent,
} from "./tools";

/** D-26: a model that keeps calling tools is stopped here. */
export const MAX_TOOL_ROUNDS = 10;
export const MAX_ROUNDS_MESSAGE = "Maximum tool call rounds exceeded";

/**
 * The breadth cap beside D-26's depth cap: a round's calls past this many do not run (nor ask for approval); each
 * gets TOO_MANY_CALLS as its result, so that every call still has one.
 */
export const MAX_TOOL_CALLS_PER_ROUND = 16;
const TOO_MANY_CALLS = { error: `Too many tool calls in one round (limit ${MAX_TOOL_CALLS_PER_ROUND})` };

/**
 * The result of every call of an answer the max_tokens limit cut off (finish_reason "length"): the last call's
 * arguments may stop midway, and which call was cut cannot be told for sure, so none runs (nor asks for approval).
 * The model reads why and can ask again with less; ending the turn instead would lose the round.
 */
export const CUT_OFF_CALL = {
  error:
    "Not run: the answer hit the max_tokens limit before this call's arguments were complete. Make the call " +
    "again with shorter arguments, or fewer calls at once.",
};

/** Tool calls decided after a pause: every call of the paused assistant message, with its decision. */
export interface ApprovalResume {
  /** The assistant message holding the calls. */
  message: Message;
  /** tool_call_id -> approved; calls without an entry did not need approval and run. */
  decisions: Map<string, boolean>;
  /** The round that paused: the turn's rounds go on after it, so an approval does not reset the cap (D-26). */
  pausedRound: number;
}

export interface TurnRequest {
  services: Services;
  chat: Chat;
  agent: Agent;
  /** The agent's own provider row, when the caller read it with the agent (saves a round trip). */
  agentProvider?: LlmProviderRow | null;
  /** Whether the chat has an execution awaiting input, when the caller knows (saves a round trip). */
  hasPausedExecutions?: boolean;
  user: { id: string; email: string };
  /** `stream`: provider streaming, chunk by chunk; `complete`: one completion per round (§5.4, D-11). */
  mode: "stream" | "complete";
  /** Nesting of agent-to-agent calls (0 for a user's turn). */
  depth: number;
  /** The sender's API key's own permissions, when the turn was sent (or continued) with one (ToolContext). */
  apiKey?: ApiKeyCredential;
  /** The turn's agent-call budget, shared with its sub-chats (ToolContext). */
  takeAgentCall: TakeAgentCall;
  /** The chat's messages, kept by its object between reads. */
  history: ChatHistory;
  resume?: ApprovalResume;
  signal: AbortSignal;
  emit(event: ChatEvent): void;
  runSubChatTurn(chatId: string, content: string): Promise<string>;
}

export interface TurnResult {
  status: TurnEndStatus;
  /** The last assistant message saved (the answer, or the tool-call message of a pause). */
  message: Message | null;
  outputErrors?: string;
}

function parseArguments(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function toolDefinitions(tools: OfferedTool[]) {
  return tools.map((tool) => tool.definition);
}

/** What a turn resolves before its first event: the model, the tools and the first conversation. */
export interface PreparedTurn {
  llm: ResolvedChatModel;
  tools: OfferedTool[];
  toolContext: ToolContext;
  /** The conversation of the first round; null when decided tool calls run first (it changes then). */
  firstMessages: LlmMessage[] | null;
  /** The first round's model call, when `startFirstCall` sent it already. */
  started?: StartedCall;
}

export type TurnSetup = Omit<TurnRequest, "emit" | "signal"> & { signal: AbortSignal };

/**
 * Loads everything the first model call needs, in parallel, before the turn logs anything: the Durable
 * Object's storage writes, which hold back its network traffic until they are durable, come after the database
 * round trips instead of between them. `first`: the chat's messages and the user message being inserted (a
 * new turn); without it (a resumed one) the conversation is read when the decided calls have run.
 */
export async function prepareTurn(setup: TurnSetup, first?: FirstRoundMessages): Promise<PreparedTurn> {
  const { services, chat, agent, user, signal } = setup;
  const toolContext: ToolContext = {
    // Tools wait for executions; the turn's pool must stay open meanwhile, whatever the waiters do.
    services: { ...services, releaseDb: async () => {} },
    chat,
    agent,
    user,
    agentInput: (chat.chatMetadata?.agent_input as JsonObject | undefined) ?? null,
    runSubChatTurn: setup.runSubChatTurn,
    signal,
    depth: setup.depth,
    apiKey: setup.apiKey,
    takeAgentCall: setup.takeAgentCall,
    hasPausedExecutions: setup.hasPausedExecutions,
  };
  const [llm, tools, firstMessages] = await Promise.all([
    resolveChatModel(services, agent, setup.agentProvider),
    assembleTools(toolContext),
    first && !setup.resume ? buildConversationFor(setup, first) : null,
  ]);
  return { llm, tools, toolContext, firstMessages };
}

/** The conversation in universal content; each adapter converts it for its wire format. */
function buildConversationFor(
  setup: Pick<TurnSetup, "services" | "chat" | "agent" | "user" | "history" | "apiKey">,
  first?: FirstRoundMessages,
) {
  return buildConversation(
    setup.services,
    {
      chat: setup.chat,
      agent: setup.agent,
      userId: setup.user.id,
      contextScope: readableContextScope({ apiKey: setup.apiKey }),
    },
    first ? storedWith(first) : setup.history.read(setup.services.statementDb()),
  );
}

/** The model call of `round`. */
function completionFor(
  setup: TurnSetup,
  prepared: PreparedTurn,
  messages: LlmMessage[],
  offerTools: boolean,
  round: number,
): CompletionRequest {
  const { llm, tools } = prepared;
  const completion: CompletionRequest = {
    model: llm.model,
    messages,
    tools: offerTools && tools.length > 0 ? toolDefinitions(tools) : undefined,
    temperature: setup.agent.temperature,
    maxTokens: setup.agent.maxTokens,
    signal: setup.signal,
  };
  // §5.3 step F: response_format on the first non-streaming call only.
  if (setup.mode === "complete" && round === 0 && !setup.resume)
    completion.responseFormat = responseFormatFor(setup.agent);
  return completion;
}

/**
 * Sends a streamed turn's first model call before the turn logs anything: a Durable Object's storage writes
 * hold back the network traffic that follows them until they are durable, so the call goes out first and the
 * writes overlap with the provider's latency.
 */
export function startFirstCall(setup: TurnSetup, prepared: PreparedTurn): void {
  if (setup.mode !== "stream" || setup.resume || !prepared.firstMessages) return;
  const completion = completionFor(setup, prepared, prepared.firstMessages, true, 0);
  prepared.started = startCall(prepared.llm.provider, completion, idleMsOf(setup));
}

function idleMsOf(setup: Pick<TurnSetup, "services">): number {
  return setup.services.config.LLM_STREAM_IDLE_SECONDS * 1000;
}

/** Runs a prepared turn to its end (answer, approval pause or stop). Provider and tool failures throw. */
export async function runTurn(request: TurnRequest, prepared: PreparedTurn): Promise<TurnResult> {
  const { services, chat, agent, user, emit } = request;
  const db = () => services.db();
  const { llm, tools, toolContext } = prepared;
  let lastMessage: Message | null = null;
  let offerTools = true;
  let firstMessages = prepared.firstMessages;

  if (request.resume) {
    const outcome = await runDecidedCalls(request, toolContext, tools, request.resume);
    if (outcome.stopped) return { status: "stopped", message: null };
    // §5.7: after a rejection only, the model answers without tools.
    offerTools = outcome.anyRun;
  }

  // MAX_TOOL_ROUNDS rounds of tools, then one more model call to answer with their results (D-26).
  const firstRound = request.resume ? Math.min(request.resume.pausedRound + 1, MAX_TOOL_ROUNDS) : 0;
  for (let round = firstRound; round <= MAX_TOOL_ROUNDS; round++) {
    const messages = firstMessages ?? (await buildConversationFor(request));
    firstMessages = null;
    const completion = completionFor(request, prepared, messages, offerTools, round);
    const started = round === 0 ? prepared.started : undefined;
    emit(stepStart(request, offerTools ? tools : [], round));
    const reply =
      request.mode === "stream"
        ? await streamReply(started ?? startCall(llm.provider, completion, idleMsOf(request)), emit)
        : await completeReply(llm.provider, completion, emit);

    if (reply.failure !== undefined) {
      await appendMessages(db(), chat.id, [{ role: "assistant", content: reply.content }]);
      throw reply.failure;
    }
    if (reply.stopped) {
      // §5.6 step 7: a partial answer is kept.
      const [partial] = reply.content
        ? await appendMessages(db(), chat.id, [{ role: "assistant", content: reply.content }])
        : [];
      return { status: "stopped", message: partial ?? null };
    }
    emit({ type: "step_end", round, finish_reason: reply.finishReason });

    if (reply.toolCalls.length === 0) {
      const [answer] = await appendMessages(db(), chat.id, [{ role: "assistant", content: reply.content }]);
      return {
        status: "completed",
        message: answer ?? null,
        outputErrors: checkOutput(agent, reply.content),
      };
    }

    // A model that asks for tools once more is not given them: nothing runs, and the cap answers instead.
    if (round === MAX_TOOL_ROUNDS) break;
    const cutOff = reply.finishReason === "length";
    const needing = (cutOff ? [] : reply.toolCalls.slice(0, MAX_TOOL_CALLS_PER_ROUND)).flatMap((call) => {
      const fn = approvalNeeded(tools, call);
      return fn ? [{ call, fn }] : [];
    });
    if (needing.length > 0 && request.mode === "complete") {
      const { fn } = needing[0] as (typeof needing)[number];
      // D-11: 409, and the tool-call message is not saved.
      throw new AppError(
        "CONFLICT",
        `Function ${fn.namespace}/${fn.name} requires user approval. Please use streaming mode to handle approval flow.`,
      );
    }
    const [callMessage] = await appendMessages(db(), chat.id, [
      { role: "assistant", content: reply.content || null, tool_calls: reply.toolCalls },
    ]);
    lastMessage = callMessage ?? null;
    // A round that pauses announces the calls asking for approval; the others run, and are announced, after
    // the decisions (runDecidedCalls): a client shows an announced call as pending (events.ts).
    const asking = new Set(needing.map(({ call }) => call.id));
    for (const call of reply.toolCalls)
      if (asking.size === 0 || asking.has(call.id)) emit(toolCallEvent(call));

    if (needing.length > 0 && callMessage) {
      const context: ConversationContext = {
        provider: llm.providerName,
        model: llm.model,
        temperature: agent.temperature,
        max_tokens: agent.maxTokens,
        // Without the system messages: the states injected into them (decrypted `encrypted` ones too) are stored
        // nowhere else, and a continuation rebuilds them anyway. What the model read through a tool (a
        // retrieve_context result) is in the chat's messages already (README, States).
        messages: messages.filter((message) => message.role !== "system") as unknown as JsonObject[],
        tools: tools as unknown as JsonObject[],
        round,
      };
      await db()
        .insert(pendingToolApprovals)
        .values(
          needing.map(({ call, fn }) => ({
            chatId: chat.id,
            messageId: callMessage.id,
            userId: user.id,
            toolCallId: call.id,
            functionNamespace: fn.namespace,
            functionName: fn.name,
            arguments: toObject(parseArguments(call.function.arguments)),
            allToolCalls: reply.toolCalls,
            conversationContext: context,
          })),
        );
      for (const { call, fn } of needing) {
        emit({
          type: "approval_required",
          tool_call_id: call.id,
          function_namespace: fn.namespace,
          function_name: fn.name,
          arguments: parseArguments(call.function.arguments),
        });
      }
      return { status: "awaiting_approval", message: callMessage };
    }

    const stopped = await runCalls(request, toolContext, tools, reply.toolCalls, { cutOff });
    if (stopped) return { status: "stopped", message: lastMessage };
    offerTools = true;
  }

  const [capped] = await appendMessages(db(), chat.id, [{ role: "assistant", content: MAX_ROUNDS_MESSAGE }]);
  emit({ type: "chunk", chunk: { content: MAX_ROUNDS_MESSAGE, tool_calls: null, finish_reason: "length" } });
  return { status: "completed", message: capped ?? lastMessage };
}

function toolCallEvent({ id, function: fn }: ToolCall): ChatEvent {
  return { type: "tool_call", tool_call_id: id, name: fn.name, arguments: parseArguments(fn.arguments) };
}

/** A round's `step_start`: `may_pause` when a tool it offers is a function requiring approval (§5.6 step 5). */
function stepStart(request: TurnRequest, offered: OfferedTool[], round: number): ChatEvent {
  const pausable = request.mode === "stream" && offered.some((tool) => tool.fn?.requiresApproval);
  return pausable ? { type: "step_start", round, may_pause: true } : { type: "step_start", round };
}

function toObject(value: unknown): JsonObject {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as JsonObject) : {};
}

/** The answer against the agent's output schema (issue 6): problems are reported, the answer is kept. */
function checkOutput(agent: Agent, content: string): string | undefined {
  const schema = agent.outputSchema;
  if (!schema || typeof schema !== "object" || !("properties" in schema)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(content);
  } catch {
    return "The answer is not valid JSON";
  }
  const problems = validateAgainstSchema(schema, value);
  return problems.length > 0 ? describeSchemaProblems(problems) : undefined;
}

/** Calls of a round that do not run: rejected by the user (id -> function), or all, cut off by max_tokens. */
interface WithheldCalls {
  rejected?: Map<string, string>;
  cutOff?: boolean;
}

/**
 * Runs `calls` in parallel and saves their tool messages together, in call order. `rejected` calls get the
 * rejection result instead of running (§5.7, D-29), calls past MAX_TOOL_CALLS_PER_ROUND get TOO_MANY_CALLS, and
 * every call of a `cutOff` answer CUT_OFF_CALL. Returns true when the turn was stopped meanwhile.
 */
async function runCalls(
  request: TurnRequest,
  context: ToolContext,
  tools: OfferedTool[],
  calls: ToolCall[],
  { rejected = new Map(), cutOff = false }: WithheldCalls,
): Promise<boolean> {
  const running = Promise.all(
    calls.map(async (call, index) => {
      const rejection = rejected.get(call.id);
      let result: unknown;
      if (index >= MAX_TOOL_CALLS_PER_ROUND) result = TOO_MANY_CALLS;
      else if (cutOff) result = CUT_OFF_CALL;
      else if (rejection !== undefined) result = { error: `Tool call rejected by user: ${rejection}` };
      else result = await runToolCall(context, tools, call);
      request.emit({
        type: "tool_result",
        tool_call_id: call.id,
        name: call.function.name,
        result,
        ...(rejection !== undefined ? { rejected: true } : {}),
      });
      return { call, result };
    }),
  );
  // A stop rejects the calls still running (an AbortError): the turn ends as stopped, their results unsaved.
  const results = await running.catch((error: unknown) => {
    if (request.signal.aborted) return null;
    throw error;
  });
  if (results === null || request.signal.aborted) return true;
  const rows: NewChatMessage[] = results.map(({ call, result }) => ({
    role: "tool",
    content: toolResultContent(result),
    tool_call_id: call.id,
    name: call.function.name,
  }));
  await appendMessages(request.services.db(), request.chat.id, rows);
  return false;
}

async function runDecidedCalls(
  request: TurnRequest,
  context: ToolContext,
  tools: OfferedTool[],
  resume: ApprovalResume,
): Promise<{ stopped: boolean; anyRun: boolean }> {
  const calls = resume.message.toolCalls ?? [];
  const rejected = new Map<string, string>();
  for (const call of calls) {
    // The calls that needed no approval were not announced when the turn paused.
    if (!resume.decisions.has(call.id)) request.emit(toolCallEvent(call));
    if (resume.decisions.get(call.id) === false) {
      const fn = approvalNeeded(tools, call);
      rejected.set(call.id, fn ? `${fn.namespace}/${fn.name}` : call.function.name.replace("__", "/"));
    }
  }
  const stopped = await runCalls(request, context, tools, calls, { rejected });
  return { stopped, anyRun: rejected.size < Math.min(calls.length, MAX_TOOL_CALLS_PER_ROUND) };
}
