/**
 * @module The conversation sent to the model (sinas-spec §5.3 steps D and F with D-24, D-25): the system message
 * (rendered prompt, output-schema instruction, stored context) followed by every stored message in order.
 *
 * The turn engine calls `buildConversation` before every model call, first round and follow-up rounds alike
 * (D-25), so the model always sees the system prompt and multimodal parts. Provider-specific content conversion
 * is the adapters' job (workers/llm); this module hands them universal parts.
 */
import { and, desc, eq, gt, inArray, isNull, or, type SQL, sql } from "drizzle-orm";
import type { DbOrTx } from "../db/client";
import { inArrayOf } from "../db/conditions";
import {
  type Agent,
  type Chat,
  type JsonObject,
  type JsonSchema,
  type Message,
  type State,
  states,
  type ToolCall,
} from "../db/schema";
import { decryptText } from "../lib/crypto";
import { AppError, messageOf } from "../lib/errors";
import { renderTemplate } from "../lib/jinja";
import type { ProviderServices } from "../llm/registry";
import type { ContentPart, LlmMessage } from "../llm/types";
import { activeGroupIdsOf } from "../services/grants";
import { withAnsweredToolCalls } from "./tool-pairing";
import { isStrictOutputSchema, wireName } from "./wire-schema";

/** How many stored-context entries the system message carries at most (§5.3 D.1c). */
export const STORED_CONTEXT_LIMIT = 5;

export const STORED_CONTEXT_HEADER =
  "\n\n## Stored Context\nThe following information has been saved about the user and should inform your responses:\n\n";

export interface ConversationRequest {
  chat: Chat;
  agent: Agent;
  /** The chat's user: stored context is what this user may see. */
  userId: string;
  /**
   * Which of those states the turn's credential may read (an API key's own grants): `group` (default) adds
   * the group-visible ones to the user's own; `none` injects no stored context.
   */
  contextScope?: ContextScope;
}

export type ContextScope = "group" | "own" | "none";

/** One stored-context entry, value already decrypted. */
export interface ContextEntry {
  namespace: string;
  key: string;
  description: string | null;
  value: JsonObject;
}

/** `chat_metadata.agent_input` when it is an object, else null (D-24). */
export function agentInputOf(chat: Pick<Chat, "chatMetadata">): JsonObject | null {
  const input = chat.chatMetadata?.agent_input;
  return input !== null && typeof input === "object" && !Array.isArray(input) ? (input as JsonObject) : null;
}

/**
 * The agent's system prompt rendered with the chat input (D-24). Without an input the prompt is used as written
 * (like function-parameter prefill, §5.5). A template error is a 400 naming it, not the raw prompt of §5.3 D.1a:
 * that would show the model every branch of the template, those meant for other inputs too. Chat creation
 * refuses an input the prompt cannot render, so this happens only after the agent's prompt changed.
 */
export function renderSystemPrompt(prompt: string | null, agentInput: JsonObject | null): string {
  if (!prompt) return "";
  if (agentInput === null) return prompt;
  try {
    return renderTemplate(prompt, agentInput);
  } catch (error) {
    throw new AppError(
      "BAD_REQUEST",
      `The agent's system_prompt does not render with the chat's input: ${messageOf(error)}`,
    );
  }
}

function hasProperties(schema: JsonSchema): boolean {
  const properties = schema.properties;
  return properties !== null && typeof properties === "object";
}

/** The instruction appended when the agent has an output schema with properties (§5.3 D.1b), else "". */
export function outputSchemaInstruction(outputSchema: JsonSchema): string {
  if (!hasProperties(outputSchema)) return "";
  return (
    "\n\nIMPORTANT: You must respond with valid JSON matching this exact schema:\n```json\n" +
    JSON.stringify(outputSchema, null, 2) +
    "\n```\nDo not include any text outside the JSON object."
  );
}

/** The `## Stored Context` section for `entries` (§5.3 D.1c), or "" for none. */
export function storedContextSection(entries: ContextEntry[]): string {
  if (entries.length === 0) return "";
  const lines = entries.map((entry) => {
    const title = `**${entry.namespace}/${entry.key}**${entry.description ? ` - ${entry.description}` : ""}`;
    return `${title}\n\`\`\`json\n${JSON.stringify(entry.value, null, 2)}\n\`\`\`\n\n`;
  });
  return STORED_CONTEXT_HEADER + lines.join("");
}

/** The whole system content (§5.3 D.1a-c); "" means no system message. */
export function systemContent(agent: Agent, agentInput: JsonObject | null, context: ContextEntry[]): string {
  const content =
    renderSystemPrompt(agent.systemPrompt, agentInput) + outputSchemaInstruction(agent.outputSchema);
  const section = storedContextSection(context);
  // Without anything before it the section stands alone, trimmed (as the reference does).
  return content ? content + section : section.trim();
}

function isContentPart(value: unknown): value is ContentPart {
  return (
    value !== null &&
    typeof value === "object" &&
    !Array.isArray(value) &&
    typeof (value as { type?: unknown }).type === "string"
  );
}

/**
 * A user message's content: a stored JSON array of parts (multimodal input, §5.9) becomes the parts again;
 * anything else is the text as stored.
 */
export function parseStoredContent(content: string): string | ContentPart[] {
  if (!content.startsWith("[")) return content;
  try {
    const parsed: unknown = JSON.parse(content);
    if (Array.isArray(parsed) && parsed.length > 0 && parsed.every(isContentPart)) return parsed;
  } catch {
    // Text that merely starts with "[".
  }
  return content;
}

/** Tool calls as the wire wants them: no streaming `index`. */
function wireToolCalls(calls: ToolCall[]): ToolCall[] {
  return calls.map((call) => ({
    id: call.id,
    type: "function",
    function: { name: call.function.name, arguments: call.function.arguments },
  }));
}

/** One stored message for the model (§5.3 D.2). Only user messages can hold parts: tool results stay text. */
export function toLlmMessage(message: Message): LlmMessage {
  const content =
    message.role === "user" && message.content !== null
      ? parseStoredContent(message.content)
      : message.content;
  const llmMessage: LlmMessage = { role: message.role, content };
  if (message.toolCalls && message.toolCalls.length > 0)
    llmMessage.tool_calls = wireToolCalls(message.toolCalls);
  if (message.toolCallId) llmMessage.tool_call_id = message.toolCallId;
  if (message.name) llmMessage.name = message.name;
  return llmMessage;
}

/** The user's own states, and with `group` also the group-visible states of their active groups (§8.3). */
export function visibleStates(userId: string, scope: "own" | "group"): SQL | undefined {
  const own = eq(states.userId, userId);
  if (scope === "own") return own;
  const groupIds = activeGroupIdsOf(sql`${userId}::uuid`);
  return or(own, and(eq(states.visibility, "group"), inArrayOf(states.groupId, groupIds)));
}

/**
 * The states injected as stored context (§5.3 D.1c, §8.2): in the agent's read-only or read-write namespaces,
 * not expired, the user's own or group-visible in one of the user's active groups; most relevant first.
 */
export async function loadContextStates(
  db: DbOrTx,
  agent: Agent,
  userId: string,
  scope: ContextScope = "group",
): Promise<State[]> {
  const namespaces = [...new Set([...agent.stateNamespacesReadonly, ...agent.stateNamespacesReadwrite])];
  if (namespaces.length === 0 || scope === "none") return [];
  return db
    .select()
    .from(states)
    .where(
      and(
        inArray(states.namespace, namespaces),
        or(isNull(states.expiresAt), gt(states.expiresAt, sql`now()`)),
        visibleStates(userId, scope),
      ),
    )
    .orderBy(desc(states.relevanceScore), desc(states.updatedAt))
    .limit(STORED_CONTEXT_LIMIT);
}

/** What prompt building needs (Services satisfies it); narrow, so Node tests can import this module. */
export type PromptServices = ProviderServices;

/** The entry for a state; an encrypted value is decrypted (a value that cannot be is left out, with a log). */
async function toContextEntry(services: PromptServices, state: State): Promise<ContextEntry | null> {
  let value = state.value;
  if (state.encrypted && state.valueCiphertext !== null) {
    try {
      const key = services.config.ENCRYPTION_KEY;
      if (!key) throw new Error("ENCRYPTION_KEY is not set");
      value = JSON.parse(await decryptText(state.valueCiphertext, key)) as JsonObject;
    } catch (error) {
      console.error(
        `Stored context ${state.namespace}/${state.key} could not be decrypted: ${String(error)}`,
      );
      return null;
    }
  }
  return { namespace: state.namespace, key: state.key, description: state.description, value };
}

/**
 * Messages read side by side with the insert of the turn's user message, which need not wait for each other:
 * a chat runs one turn at a time, so nothing else adds to it meanwhile.
 */
export interface FirstRoundMessages {
  /** The chat's messages, read while `added` was being inserted (it may or may not be among them). */
  stored: Promise<Message[]>;
  added: Promise<Message>;
}

/** Every message before `added`, then `added`. */
export async function storedWith(first: FirstRoundMessages): Promise<Message[]> {
  const [stored, added] = await Promise.all([first.stored, first.added]);
  return [...stored.filter((message) => message.sequence < added.sequence), added];
}

/**
 * The full conversation for the next model call (§5.3 step D, D-25): the system message, then `storedMessages`, the
 * chat's messages in order (read by the caller, see ChatHistory), every tool call answered (tool-pairing.ts).
 */
export async function buildConversation(
  services: PromptServices,
  { chat, agent, userId, contextScope }: ConversationRequest,
  storedMessages: Promise<Message[]>,
): Promise<LlmMessage[]> {
  const db = services.db();
  const [contextStates, stored] = await Promise.all([
    loadContextStates(db, agent, userId, contextScope),
    storedMessages,
  ]);
  const entries = await Promise.all(contextStates.map((state) => toContextEntry(services, state)));
  const system = systemContent(
    agent,
    agentInputOf(chat),
    entries.filter((entry) => entry !== null),
  );
  const conversation: LlmMessage[] = system ? [{ role: "system", content: system }] : [];
  return [...conversation, ...withAnsweredToolCalls(stored.map(toLlmMessage))];
}

/**
 * OpenAI `response_format` for an agent with an output schema with properties (§5.3 step F), else undefined.
 * The turn engine sends it on the first non-streaming call only. `strict: true` only for a schema strict mode
 * takes: OpenAI refuses any other with a 400 (an optional property, an open nested object...), so the schema is
 * then a guide, and the answer is still checked against it (turn.ts). The agent's schema is not changed.
 */
export function responseFormatFor(agent: Pick<Agent, "name" | "outputSchema">): JsonObject | undefined {
  const schema = agent.outputSchema;
  if (!hasProperties(schema)) return undefined;
  const sent: JsonObject =
    "additionalProperties" in schema ? schema : { ...schema, additionalProperties: false };
  return {
    type: "json_schema",
    json_schema: {
      name: wireName(`${agent.name.toLowerCase().replace(/ /g, "_")}_response`),
      strict: isStrictOutputSchema(sent),
      schema: sent,
    },
  };
}
