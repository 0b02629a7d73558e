/**
 * @module The Anthropic adapter (SINAS Edge's optional provider, sinas-spec D-30) over the Messages API with
 * `@anthropic-ai/sdk`, translating SINAS's OpenAI-shaped conversation and stream both ways:
 * system messages -> `system`; assistant tool calls -> `tool_use` blocks; tool results -> `tool_result` blocks in a
 * user turn; stream events -> OpenAI-style chunks with tool-call deltas by index.
 */
import { BaseAnthropic } from "@anthropic-ai/sdk/client";
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
} from "@anthropic-ai/sdk/error";
import {
  type MessageCreateParamsBase,
  type MessageParam,
  Messages,
  type RawMessageStreamEvent,
} from "@anthropic-ai/sdk/resources/messages";
import type { JsonObject } from "../db/schema";
import { activityOptions, reportingActivity } from "./activity";
import { textOf, toAnthropicBlocks, type WirePart } from "./content";
import { abortError, type ProviderTarget, type SdkErrorClasses, toLlmError, usageOf } from "./errors";
import { fetchOnceMore } from "./fetch-once-more";
import { readEventStreamsByReader } from "./read-by-reader";
import type {
  CompletionRequest,
  CompletionResult,
  LlmMessage,
  LlmProvider,
  StreamItem,
  ToolCall,
  Usage,
} from "./types";

export interface AnthropicOptions {
  /** Decrypted key (SDK v1 sends it as `Authorization: Bearer`); null or empty sends none. */
  apiKey: string | null;
  /** The provider row's `api_endpoint` (the SDK posts `${baseURL}/v1/messages`); null: https://api.anthropic.com. */
  apiEndpoint: string | null;
  /** Until the response headers arrive; default 120 s. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * Anthropic requires `max_tokens`; this is sent when the agent sets none and the model is not known to allow
 * more (the Claude 3 models, Haiku 3 still served, refuse anything above 4096).
 */
export const DEFAULT_MAX_TOKENS = 4096;
/** For models whose output limit is at least this (Claude 3.5 and later): fewer answers cut off mid tool call. */
export const LARGER_DEFAULT_MAX_TOKENS = 8192;

/** Claude 3.5, 3.7 and 4+ names, also behind a cloud prefix ("anthropic.claude-3-5-sonnet-...-v1:0"). */
const LARGER_OUTPUT_MODELS = /claude-(3-[5-9]|[4-9]|(opus|sonnet|haiku)-[4-9])/;

/** The `max_tokens` sent when the agent sets none: the larger default only where the model surely takes it. */
export function defaultMaxTokens(model: string): number {
  return LARGER_OUTPUT_MODELS.test(model.toLowerCase()) ? LARGER_DEFAULT_MAX_TOKENS : DEFAULT_MAX_TOKENS;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const DEFAULT_BASE_URL = "https://api.anthropic.com";

/**
 * The SDK's base client with only the Messages resource: the full `Anthropic` class pulls in every API (beta,
 * files, tool runners) and about triples the adapter's share of the Worker bundle.
 */
class MessagesClient extends BaseAnthropic {
  readonly messages = new Messages(this);
}

const SDK_ERRORS: SdkErrorClasses = {
  APIError,
  APIConnectionError,
  APIConnectionTimeoutError,
  APIUserAbortError,
};

const FINISH_REASONS: Record<string, string> = {
  end_turn: "stop",
  stop_sequence: "stop",
  tool_use: "tool_calls",
  max_tokens: "length",
};

/** Anthropic's stop reason in OpenAI's words (`end_turn` -> `stop`...); others pass as they are. */
export function toFinishReason(stopReason: string | null | undefined): string | null {
  if (!stopReason) return null;
  return FINISH_REASONS[stopReason] ?? stopReason;
}

function parseArguments(text: string): unknown {
  try {
    const parsed: unknown = JSON.parse(text || "{}");
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? parsed
      : { value: parsed };
  } catch {
    // A model that produced broken JSON earlier gets it back as a string rather than losing the turn.
    return { arguments: text };
  }
}

function userContent(content: LlmMessage["content"]): string | WirePart[] {
  return Array.isArray(content) ? toAnthropicBlocks(content) : (content ?? "");
}

function assistantContent(message: LlmMessage, toolBlocks: boolean): string | WirePart[] {
  const text = textOf(message.content);
  if (!message.tool_calls?.length) return text;
  if (!toolBlocks) {
    const calls = message.tool_calls.map(
      (call) => `[called ${call.function.name}(${call.function.arguments})]`,
    );
    return [text, ...calls].filter(Boolean).join("\n");
  }
  const toolUses = message.tool_calls.map((call) => ({
    type: "tool_use",
    id: call.id,
    name: call.function.name,
    input: parseArguments(call.function.arguments),
  }));
  return text ? [{ type: "text", text }, ...toolUses] : toolUses;
}

function toolResult(message: LlmMessage): WirePart {
  const content = Array.isArray(message.content)
    ? toAnthropicBlocks(message.content)
    : (message.content ?? "");
  return { type: "tool_result", tool_use_id: message.tool_call_id ?? "", content };
}

/** A tool result as a user's text, for a request without tools (see `toAnthropicConversation`). */
function toolResultText(message: LlmMessage): string {
  return `[result of ${message.name ?? "a tool"} (${message.tool_call_id ?? ""}): ${textOf(message.content)}]`;
}

/**
 * The conversation as Anthropic's `system` and `messages`. Consecutive tool results become one user turn (Anthropic
 * wants every result of an assistant turn in the next user message); empty assistant turns are left out, since the
 * API refuses empty content. Without `toolBlocks` (a request that offers no tools, which Anthropic refuses when the
 * messages hold tool_use or tool_result blocks: after a rejected approval, or an agent whose tools were removed)
 * the calls and results are written as text.
 */
export function toAnthropicConversation(
  messages: LlmMessage[],
  { toolBlocks = true }: { toolBlocks?: boolean } = {},
): {
  system: string;
  messages: MessageParam[];
} {
  const system: string[] = [];
  const wire: { role: "user" | "assistant"; content: string | WirePart[] }[] = [];
  for (const message of messages) {
    if (message.role === "system") {
      const text = textOf(message.content);
      if (text) system.push(text);
    } else if (message.role === "tool" && !toolBlocks) {
      wire.push({ role: "user", content: toolResultText(message) });
    } else if (message.role === "tool") {
      const previous = wire.at(-1);
      const isResults =
        previous?.role === "user" &&
        Array.isArray(previous.content) &&
        previous.content.every((block) => block.type === "tool_result");
      if (previous && isResults) (previous.content as WirePart[]).push(toolResult(message));
      else wire.push({ role: "user", content: [toolResult(message)] });
    } else if (message.role === "assistant") {
      const content = assistantContent(message, toolBlocks);
      if (content.length > 0) wire.push({ role: "assistant", content });
    } else {
      wire.push({ role: "user", content: userContent(message.content) });
    }
  }
  // Blocks from universal parts are Anthropic-shaped but typed loosely (unknown parts pass through).
  return { system: system.join("\n\n"), messages: wire as unknown as MessageParam[] };
}

/**
 * The Messages API request: `max_tokens` always, tools as `{name, description, input_schema}`, the temperature
 * within Anthropic's 0-1 (an agent may set up to 2, for OpenAI).
 */
export function buildMessagesRequest(request: CompletionRequest): MessageCreateParamsBase {
  const tools = request.tools?.length ? request.tools : undefined;
  const conversation = toAnthropicConversation(request.messages, { toolBlocks: tools !== undefined });
  return {
    model: request.model,
    max_tokens: request.maxTokens ?? defaultMaxTokens(request.model),
    messages: conversation.messages,
    ...(conversation.system && { system: conversation.system }),
    ...(request.temperature !== null && { temperature: Math.min(request.temperature, 1) }),
    ...(tools && {
      tools: tools.map((tool) => ({
        name: tool.function.name,
        description: tool.function.description,
        input_schema: tool.function.parameters as JsonObject & { type: "object" },
      })),
    }),
  };
}

interface AnthropicUsage {
  input_tokens?: number | null;
  output_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
}

/** Cached input counts as prompt, as OpenAI's `prompt_tokens` does. */
function toUsage(usage: AnthropicUsage | null | undefined): Usage {
  const prompt =
    (usage?.input_tokens ?? 0) +
    (usage?.cache_creation_input_tokens ?? 0) +
    (usage?.cache_read_input_tokens ?? 0);
  return usageOf(prompt, usage?.output_tokens);
}

/** Reads raw stream events into chunks; keeps the tool-call ordinals and the usage seen so far. */
class StreamTranslator {
  /** content block index -> tool-call ordinal, and whether that call received any argument text. */
  readonly #toolBlocks = new Map<number, { ordinal: number; hasArguments: boolean }>();
  #usage: AnthropicUsage = {};

  get usage(): Usage {
    return toUsage(this.#usage);
  }

  translate(event: RawMessageStreamEvent): StreamItem | null {
    switch (event.type) {
      case "message_start":
        this.#usage = { ...event.message.usage };
        return null;
      case "content_block_start": {
        const block = event.content_block;
        if (block.type === "text") return block.text ? chunk(block.text, null, null) : null;
        if (block.type !== "tool_use") return null;
        const ordinal = this.#toolBlocks.size;
        this.#toolBlocks.set(event.index, { ordinal, hasArguments: false });
        return chunk(
          null,
          { index: ordinal, id: block.id, type: "function", name: block.name, arguments: "" },
          null,
        );
      }
      case "content_block_delta": {
        const delta = event.delta;
        if (delta.type === "text_delta") return delta.text ? chunk(delta.text, null, null) : null;
        const tool = this.#toolBlocks.get(event.index);
        if (delta.type !== "input_json_delta" || !tool || !delta.partial_json) return null;
        tool.hasArguments = true;
        return chunk(null, { index: tool.ordinal, arguments: delta.partial_json }, null);
      }
      case "content_block_stop": {
        // A call without parameters streams no JSON at all; "{}" keeps the accumulated arguments parseable.
        const tool = this.#toolBlocks.get(event.index);
        if (!tool || tool.hasArguments) return null;
        tool.hasArguments = true;
        return chunk(null, { index: tool.ordinal, arguments: "{}" }, null);
      }
      case "message_delta": {
        for (const [key, value] of Object.entries(event.usage ?? {})) {
          if (typeof value === "number") this.#usage[key as keyof AnthropicUsage] = value;
        }
        const finish = toFinishReason(event.delta.stop_reason);
        return finish ? chunk(null, null, finish) : null;
      }
      default:
        return null;
    }
  }
}

function chunk(
  content: string | null,
  call: { index: number; id?: string; type?: "function"; name?: string; arguments: string } | null,
  finishReason: string | null,
): StreamItem {
  return {
    kind: "chunk",
    chunk: {
      content,
      tool_calls: call
        ? [
            {
              index: call.index,
              id: call.id ?? null,
              type: call.type ?? null,
              function: { name: call.name ?? null, arguments: call.arguments },
            },
          ]
        : null,
      finish_reason: finishReason,
    },
  };
}

/**
 * An Anthropic provider.
 *
 * @example
 * const provider = createAnthropicProvider({ apiKey: "sk-ant-...", apiEndpoint: null });
 * for await (const item of provider.stream({ model: "claude-sonnet-4-5", messages, temperature: null, maxTokens: null })) ...
 */
export function createAnthropicProvider(options: AnthropicOptions): LlmProvider {
  const baseURL = options.apiEndpoint?.trim().replace(/\/+$/, "") || DEFAULT_BASE_URL;
  const target: ProviderTarget = {
    label: "Anthropic",
    baseURL,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  };
  const client = new MessagesClient({
    // A string always, so the SDK never searches the environment or credential files for one; without a key the
    // placeholder is never sent (the header is removed).
    apiKey: options.apiKey || "none",
    ...(!options.apiKey && { defaultHeaders: { Authorization: null } }),
    baseURL,
    maxRetries: 0,
    timeout: target.timeoutMs,
    fetch: readEventStreamsByReader(
      reportingActivity(fetchOnceMore(options.fetch ?? ((input, init) => fetch(input, init)))),
    ),
    dangerouslyAllowBrowser: true,
  });

  return {
    type: "anthropic",
    timeoutMs: target.timeoutMs,

    async complete(request: CompletionRequest): Promise<CompletionResult> {
      try {
        const message = await client.messages.create(
          { ...buildMessagesRequest(request), stream: false },
          { signal: request.signal },
        );
        let text = "";
        const calls: ToolCall[] = [];
        for (const block of message.content) {
          if (block.type === "text") text += block.text;
          else if (block.type === "tool_use") {
            calls.push({
              id: block.id,
              type: "function",
              function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) },
            });
          }
        }
        return {
          content: text || null,
          tool_calls: calls.length ? calls : null,
          finish_reason: toFinishReason(message.stop_reason),
          usage: toUsage(message.usage),
        };
      } catch (error) {
        throw toLlmError(error, SDK_ERRORS, target, request.signal);
      }
    },

    async *stream(request: CompletionRequest): AsyncIterable<StreamItem> {
      const translator = new StreamTranslator();
      try {
        const events = await client.messages.create(
          { ...buildMessagesRequest(request), stream: true },
          { signal: request.signal, ...activityOptions(request.onActivity) },
        );
        for await (const event of events) {
          const item = translator.translate(event);
          if (item) yield item;
        }
        // The SDK ends a stream quietly when its signal aborts; the caller must still learn it was cut short.
        if (request.signal?.aborted) throw abortError(request.signal);
      } catch (error) {
        throw toLlmError(error, SDK_ERRORS, target, request.signal);
      }
      yield { kind: "usage", usage: translator.usage };
    },
  };
}
