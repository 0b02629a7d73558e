/**
 * @module The one interface every LLM provider adapter implements (sinas-spec §5.10), in OpenAI's vocabulary:
 * messages carry SINAS's universal content (§5.9), which each adapter converts for its own wire format.
 */
import type { JsonObject, LlmProviderType, ToolCall } from "../db/schema";

export type { ToolCall };

/** Universal content parts (§5.9); unknown part types pass through adapters unchanged. */
export type ContentPart =
  | { type: "text"; text: string }
  | { type: "image"; image: string; detail?: "low" | "high" | "auto" }
  | { type: "audio"; data: string; format: "wav" | "mp3" | "m4a" | "ogg" }
  | {
      type: "file";
      file_data?: string;
      file_url?: string;
      file_id?: string;
      filename?: string;
      mime_type?: string;
    };

export interface LlmMessage {
  role: "system" | "user" | "assistant" | "tool";
  /** Text, universal parts, or null (an assistant message holding only tool calls). */
  content: string | ContentPart[] | null;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  /** Tool name, for role=tool. */
  name?: string;
}

/** An OpenAI "function" tool, as offered to the model (no `_metadata`). */
export interface ToolDefinition {
  type: "function";
  function: { name: string; description: string; parameters: JsonObject };
}

export interface CompletionRequest {
  model: string;
  messages: LlmMessage[];
  /** Absent or empty: no tools are sent (no `tools` key on the wire). */
  tools?: ToolDefinition[];
  /** Null: not sent. 0 is a real value (D-19). */
  temperature: number | null;
  maxTokens: number | null;
  /** OpenAI `response_format` (§5.3 step F); adapters that cannot honour it ignore it. */
  responseFormat?: JsonObject;
  /** Aborts the HTTP call (stop, client gone, timeout). */
  signal?: AbortSignal;
  /**
   * `stream()` only: called whenever the provider's response body brings bytes, including those that yield no
   * item (Anthropic's `ping` and `message_start`, OpenAI's opening role-only delta, SSE keep-alive comments, which
   * the SDKs drop before the adapter sees them). A caller bounding silence learns from it that the provider is
   * still there (activity.ts).
   */
  onActivity?: () => void;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** One streamed tool-call fragment (OpenAI delta shape); `arguments` fragments are appended by index. */
export interface ToolCallDelta {
  index: number;
  id: string | null;
  type: "function" | null;
  function: { name: string | null; arguments: string | null };
}

/** One stream chunk, exactly SINAS's SSE `message` payload (§5.6). */
export interface StreamChunk {
  content: string | null;
  tool_calls: ToolCallDelta[] | null;
  finish_reason: string | null;
}

/** What `stream()` yields: chunks, and at most one usage report (last, when the provider sends one). */
export type StreamItem = { kind: "chunk"; chunk: StreamChunk } | { kind: "usage"; usage: Usage };

export interface CompletionResult {
  content: string | null;
  tool_calls: ToolCall[] | null;
  finish_reason: string | null;
  usage: Usage;
}

export interface LlmProvider {
  readonly type: LlmProviderType;
  /**
   * How long the provider may take to start its answer (its `config.timeout`, or the type's default): the SDK's
   * bound until the response headers, and the chat's bound until the first streamed chunk (model-call.ts).
   */
  readonly timeoutMs: number;
  complete(request: CompletionRequest): Promise<CompletionResult>;
  stream(request: CompletionRequest): AsyncIterable<StreamItem>;
}

/**
 * A provider failure, already worded for the chat user ("OpenAI API error (401): invalid key"). Adapters throw
 * only this (an abort through `signal` surfaces as `AbortError`, untouched).
 */
export class LlmError extends Error {
  constructor(
    message: string,
    readonly status: number | null = null,
  ) {
    super(message);
    this.name = "LlmError";
  }
}
