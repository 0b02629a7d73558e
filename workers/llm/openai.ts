/**
 * @module The adapter for every provider that speaks OpenAI's Chat Completions API (sinas-spec §5.10): `openai`,
 * `mistral` and `ollama` (Ollama's OpenAI-compatible `/v1` endpoint), through the `openai` SDK.
 *
 * The SDK only uses `fetch`, so it runs in workerd. Retries are off: a chat turn reports the failure instead of
 * silently waiting minutes, and the caller's `signal` decides when to give up. A connection lost before any
 * answer is tried once more (fetch-once-more.ts).
 */
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from "openai";
import type {
  ChatCompletionChunk,
  ChatCompletionCreateParamsBase,
  ChatCompletionMessageParam,
} from "openai/resources/chat/completions";
import { hash53 } from "../lib/hash53";
import { activityOptions, reportingActivity } from "./activity";
import { toOpenAiCompatibleParts } from "./content";
import { abortError, type ProviderTarget, type SdkErrorClasses, toLlmError, usageOf } from "./errors";
import { fetchOnceMore } from "./fetch-once-more";
import { readEventStreamsByReader } from "./read-by-reader";
import type {
  CompletionRequest,
  CompletionResult,
  LlmMessage,
  LlmProvider,
  StreamChunk,
  StreamItem,
  ToolCall,
  ToolCallDelta,
  Usage,
} from "./types";

export type OpenAiCompatibleType = "openai" | "mistral" | "ollama";

export interface OpenAiCompatibleOptions {
  type: OpenAiCompatibleType;
  /** Decrypted key; null or empty sends no Authorization header (a local Ollama needs none). */
  apiKey: string | null;
  /** The provider row's `api_endpoint`; null uses the type's default (see `openAiBaseUrl`). */
  apiEndpoint: string | null;
  /** Until the response headers arrive; default 120 s, 300 s for Ollama (see `defaultTimeoutMs`). */
  timeoutMs?: number;
  /** Defaults to the global `fetch` (tests may route elsewhere). */
  fetch?: typeof fetch;
}

export const DEFAULT_TIMEOUT_MS = 120_000;
/** sinas-spec §5.10: a local Ollama may first have to load the model, which takes minutes on a cold start. */
export const OLLAMA_TIMEOUT_MS = 300_000;

export function defaultTimeoutMs(type: OpenAiCompatibleType): number {
  return type === "ollama" ? OLLAMA_TIMEOUT_MS : DEFAULT_TIMEOUT_MS;
}

const DEFAULT_BASE_URLS: Record<OpenAiCompatibleType, string> = {
  openai: "https://api.openai.com/v1",
  mistral: "https://api.mistral.ai/v1",
  ollama: "http://localhost:11434/v1",
};

const LABELS: Record<OpenAiCompatibleType, string> = {
  openai: "OpenAI",
  mistral: "Mistral",
  ollama: "Ollama",
};

const SDK_ERRORS: SdkErrorClasses = {
  APIError,
  APIConnectionError,
  APIConnectionTimeoutError,
  APIUserAbortError,
};

/**
 * The SDK's `baseURL` (it posts `${baseURL}/chat/completions`): the endpoint as configured, or the type's default.
 * An Ollama endpoint is usually configured as the server root (`http://host:11434`), so `/v1` is appended there.
 */
export function openAiBaseUrl(type: OpenAiCompatibleType, apiEndpoint: string | null): string {
  const endpoint = apiEndpoint?.trim().replace(/\/+$/, "");
  if (!endpoint) return DEFAULT_BASE_URLS[type];
  if (type === "ollama" && !/\/v1$/.test(endpoint)) return `${endpoint}/v1`;
  return endpoint;
}

const MISTRAL_TOOL_CALL_ID = /^[A-Za-z0-9]{9}$/;
const ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/**
 * A tool-call id as Mistral accepts it: exactly 9 characters of [A-Za-z0-9] ("Tool call id was ... but must
 * be a-z, A-Z, 0-9, with a length of 9"). Ids from OpenAI (`call_...`), Anthropic (`toolu_...`) or Ollama
 * become a stable hash of themselves (9 base-62 digits hold 53 bits), so a call and its result still pair up;
 * ids Mistral gave itself are sent back unchanged. On the wire only: stored ids stay as the provider made them.
 */
export function mistralToolCallId(id: string): string {
  if (MISTRAL_TOOL_CALL_ID.test(id)) return id;
  let value = hash53(id);
  let digits = "";
  for (let i = 0; i < 9; i++) {
    digits = ID_ALPHABET[value % 62] + digits;
    value = Math.floor(value / 62);
  }
  return digits;
}

function toWireMessage(message: LlmMessage, type: OpenAiCompatibleType): ChatCompletionMessageParam {
  const content = Array.isArray(message.content)
    ? toOpenAiCompatibleParts(message.content, type)
    : message.content;
  const wireId = type === "mistral" ? mistralToolCallId : (id: string) => id;
  const wire: Record<string, unknown> = { role: message.role, content };
  if (message.tool_calls?.length) {
    // Stored calls may carry a stream `index`; the request shape has none.
    wire.tool_calls = message.tool_calls.map(({ id, type: callType, function: fn }) => ({
      id: wireId(id),
      type: callType,
      function: { name: fn.name, arguments: fn.arguments },
    }));
  }
  if (message.tool_call_id) wire.tool_call_id = wireId(message.tool_call_id);
  if (message.name) wire.name = message.name;
  // Mistral and Ollama parts (`image_url` as a bare string, `document_url`) are outside OpenAI's own types.
  return wire as unknown as ChatCompletionMessageParam;
}

/** What Mistral is sent between a tool result and a user message (see `wireMessages`). */
export const MISTRAL_BRIDGE = "OK.";

/**
 * The conversation in `type`'s wire format. Mistral refuses a user message right after a tool result ("Unexpected
 * role 'user' after role 'tool'": a turn stopped or paused after its tools ran, then a new message), so an
 * assistant message bridges the two there, on the wire only.
 */
function wireMessages(messages: LlmMessage[], type: OpenAiCompatibleType): ChatCompletionMessageParam[] {
  const wire: ChatCompletionMessageParam[] = [];
  for (const message of messages) {
    if (type === "mistral" && message.role === "user" && wire.at(-1)?.role === "tool") {
      wire.push({ role: "assistant", content: MISTRAL_BRIDGE });
    }
    wire.push(toWireMessage(message, type));
  }
  return wire;
}

/** OpenAI's reasoning models (o1, o3, o4-mini, gpt-5...) refuse any temperature but their default of 1. */
export function isOpenAiReasoningModel(model: string): boolean {
  return /^(o\d|gpt-5)/.test(model.toLowerCase());
}

/**
 * The output limit under the name `type` takes: OpenAI deprecated `max_tokens` and its reasoning models refuse
 * it, while every current OpenAI chat model takes `max_completion_tokens`; Mistral and Ollama know only
 * `max_tokens`.
 */
function maxTokensField(type: OpenAiCompatibleType, maxTokens: number | null | undefined) {
  if (maxTokens === null || maxTokens === undefined) return {};
  return type === "openai" ? { max_completion_tokens: maxTokens } : { max_tokens: maxTokens };
}

function temperatureField(type: OpenAiCompatibleType, request: CompletionRequest) {
  if (request.temperature === null) return {};
  if (type === "openai" && isOpenAiReasoningModel(request.model)) return {};
  return { temperature: request.temperature };
}

/** The request body shared by both calls: optional fields only when set, and never a `tools` key without tools. */
export function buildChatRequest(
  request: CompletionRequest,
  type: OpenAiCompatibleType,
): ChatCompletionCreateParamsBase {
  const tools = request.tools?.length ? request.tools : undefined;
  return {
    model: request.model,
    messages: wireMessages(request.messages, type),
    ...(tools && { tools, tool_choice: "auto" as const }),
    ...temperatureField(type, request),
    ...maxTokensField(type, request.maxTokens),
    ...(request.responseFormat && {
      response_format: request.responseFormat as unknown as ChatCompletionCreateParamsBase["response_format"],
    }),
  };
}

type WireToolCallDelta = Partial<ChatCompletionChunk.Choice.Delta.ToolCall>;

/**
 * Gives every streamed tool-call fragment an index of its own call. OpenAI sends `index` itself, with the id on a
 * call's first fragment only; Mistral sends whole calls without one, which SINAS collapsed into index 0 (D-31):
 * a call with an id and no index takes the next free index, and a fragment with neither continues the last call.
 * Ollama sends each parallel call whole, every one at `index: 0` with its own id: a wire index whose call already
 * has a different id therefore starts a new call, and later fragments at that wire index continue the new one.
 */
export class ToolCallIndexer {
  #next = 0;
  #last = 0;
  /** wire index -> the index given to the call now sent at it */
  readonly #indexOfWire = new Map<number, number>();
  /** given index -> the id its call started with */
  readonly #idOf = new Map<number, string>();

  indexOf(delta: { index?: number | null; id?: string | null }): number {
    if (typeof delta.index === "number") this.#last = this.#indexForWire(delta.index, delta.id ?? null);
    else if (delta.id) this.#last = this.#newCall(delta.id);
    return this.#last;
  }

  #indexForWire(wireIndex: number, id: string | null): number {
    const known = this.#indexOfWire.get(wireIndex);
    if (known !== undefined) {
      const knownId = this.#idOf.get(known);
      if (!id || !knownId || id === knownId) {
        if (id && !knownId) this.#idOf.set(known, id);
        return known;
      }
    }
    const index = this.#newCall(id);
    this.#indexOfWire.set(wireIndex, index);
    return index;
  }

  #newCall(id: string | null): number {
    const index = this.#next++;
    if (id) this.#idOf.set(index, id);
    return index;
  }
}

function toToolCallDelta(delta: WireToolCallDelta, index: number): ToolCallDelta {
  return {
    index,
    id: delta.id ?? null,
    type: delta.type ?? null,
    function: { name: delta.function?.name ?? null, arguments: delta.function?.arguments ?? null },
  };
}

/**
 * The finish reason in OpenAI's words: Mistral says `model_length` when the model's context is full, which
 * cuts the answer off exactly as `length` does (a cut-off tool call must not run; chat/turn.ts).
 */
function finishReasonOf(reason: string | null | undefined): string | null {
  return reason === "model_length" ? "length" : (reason ?? null);
}

function toChunk(
  choice: ChatCompletionChunk.Choice | undefined,
  indexer: ToolCallIndexer,
): StreamChunk | null {
  if (!choice) return null;
  const deltas = (choice.delta?.tool_calls ?? []) as WireToolCallDelta[];
  const chunk: StreamChunk = {
    content: choice.delta?.content ?? null,
    tool_calls: deltas.length ? deltas.map((delta) => toToolCallDelta(delta, indexer.indexOf(delta))) : null,
    finish_reason: finishReasonOf(choice.finish_reason),
  };
  // The opening `{role:"assistant", content:""}` delta and keep-alive chunks carry nothing for the user (their
  // bytes still count as activity, see activity.ts).
  const empty = !chunk.content && chunk.tool_calls === null && chunk.finish_reason === null;
  return empty ? null : chunk;
}

function toUsage(usage: OpenAI.CompletionUsage | null | undefined): Usage {
  return usageOf(usage?.prompt_tokens, usage?.completion_tokens);
}

/**
 * An OpenAI-compatible provider.
 *
 * @example
 * const provider = createOpenAiProvider({ type: "openai", apiKey: "sk-...", apiEndpoint: null });
 * const reply = await provider.complete({ model: "gpt-4o-mini", messages, temperature: 0.2, maxTokens: null });
 */
export function createOpenAiProvider(options: OpenAiCompatibleOptions): LlmProvider {
  const { type } = options;
  const target: ProviderTarget = {
    label: LABELS[type],
    baseURL: openAiBaseUrl(type, options.apiEndpoint),
    timeoutMs: options.timeoutMs ?? defaultTimeoutMs(type),
  };
  const fetchImpl = readEventStreamsByReader(
    reportingActivity(fetchOnceMore(options.fetch ?? ((input, init) => fetch(input, init)))),
  );
  const client = new OpenAI({
    // The SDK insists on a credential; without a key the placeholder is never sent (the header is removed).
    apiKey: options.apiKey || "none",
    ...(!options.apiKey && { defaultHeaders: { Authorization: null } }),
    baseURL: target.baseURL,
    maxRetries: 0,
    timeout: target.timeoutMs,
    fetch: fetchImpl,
    // workerd is not a browser, but keep the SDK from guessing otherwise in browser-like runtimes.
    dangerouslyAllowBrowser: true,
  });

  return {
    type,
    timeoutMs: target.timeoutMs,

    async complete(request: CompletionRequest): Promise<CompletionResult> {
      try {
        const completion = await client.chat.completions.create(
          { ...buildChatRequest(request, type), stream: false },
          { signal: request.signal },
        );
        const choice = completion.choices[0];
        const calls = (choice?.message.tool_calls ?? []).flatMap((call): ToolCall[] =>
          call.type === "function"
            ? [
                {
                  id: call.id,
                  type: "function",
                  function: { name: call.function.name, arguments: call.function.arguments },
                },
              ]
            : [],
        );
        return {
          content: choice?.message.content ?? null,
          tool_calls: calls.length ? calls : null,
          finish_reason: finishReasonOf(choice?.finish_reason),
          usage: toUsage(completion.usage),
        };
      } catch (error) {
        throw toLlmError(error, SDK_ERRORS, target, request.signal);
      }
    },

    async *stream(request: CompletionRequest): AsyncIterable<StreamItem> {
      const indexer = new ToolCallIndexer();
      let usage: Usage | null = null;
      try {
        const stream = await client.chat.completions.create(
          {
            ...buildChatRequest(request, type),
            stream: true,
            ...(type === "openai" && { stream_options: { include_usage: true } }),
          },
          { signal: request.signal, ...activityOptions(request.onActivity) },
        );
        for await (const event of stream) {
          if (event.usage) usage = toUsage(event.usage);
          const chunk = toChunk(event.choices?.[0], indexer);
          if (chunk) yield { kind: "chunk", chunk };
        }
        // The SDK ends a stream quietly when its signal aborts; the caller must still learn it was cut short.
        if (request.signal?.aborted) throw abortError(request.signal);
      } catch (error) {
        throw toLlmError(error, SDK_ERRORS, target, request.signal);
      }
      if (usage) yield { kind: "usage", usage };
    },
  };
}
