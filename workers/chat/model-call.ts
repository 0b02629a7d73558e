/**
 * @module One model call of a turn, streamed or not: the provider's items become logged chunks, tool-call
 * fragments are put together, a silent stream is ended after the idle timeout (the provider's own timeout until
 * its answer starts), and a stop returns what came.
 */
import type { ToolCall } from "../db/schema";
import {
  type CompletionRequest,
  LlmError,
  type LlmProvider,
  type StreamChunk,
  type StreamItem,
  type ToolCallDelta,
} from "../llm/types";
import type { ChatEvent } from "./events";

export interface ModelReply {
  content: string;
  toolCalls: ToolCall[];
  finishReason: string | null;
  stopped: boolean;
  /** The call failed after streaming `content`: save it, then fail the turn with this. */
  failure?: unknown;
}

function isAbort(error: unknown): boolean {
  return error instanceof Error && (error.name === "AbortError" || error.name === "APIUserAbortError");
}

/** Accumulates streamed tool calls by index (§5.6 step 2); D-31 is the adapters' job (distinct indexes). */
function accumulateToolCalls(calls: Map<number, ToolCall>, deltas: ToolCallDelta[]): void {
  for (const delta of deltas) {
    const call = calls.get(delta.index) ?? {
      id: "",
      type: "function" as const,
      function: { name: "", arguments: "" },
    };
    if (delta.id) call.id = delta.id;
    if (delta.function.name) call.function.name = delta.function.name;
    if (delta.function.arguments) call.function.arguments += delta.function.arguments;
    calls.set(delta.index, call);
  }
}

/**
 * Aborts `signal`'s derived signal when the provider stays silent too long; `idle` tells which abort it was.
 * Until the answer starts (its first chunk) the window is `firstMs`: a model may load or think for minutes before
 * it says anything, which the provider's own timeout bounds. From then on it is `idleMs`. Any sign of the
 * provider (bytes, keep-alives included) resets the window. `touch()` only notes the time (it runs per piece);
 * the one timer re-arms itself for what is left, and once more when the shorter window starts.
 */
function idleWatch(signal: AbortSignal | undefined, firstMs: number, idleMs: number) {
  const idle = new AbortController();
  let touchedAt = Date.now();
  let windowMs = firstMs;
  let answering = false;
  const check = () => {
    const left = touchedAt + windowMs - Date.now();
    if (left <= 0) idle.abort();
    else timer = setTimeout(check, left);
  };
  let timer = setTimeout(check, windowMs);
  return {
    signal: signal ? AbortSignal.any([signal, idle.signal]) : idle.signal,
    get idle() {
      return idle.signal.aborted;
    },
    /** Why the watch ended the call, for the chat user. */
    get reason() {
      const seconds = Math.round(windowMs / 1000);
      return answering
        ? `The provider sent nothing for ${seconds} s; the turn was ended`
        : `The provider did not start its answer within ${seconds} s; the turn was ended`;
    },
    /** The provider showed it is there. */
    touch() {
      touchedAt = Date.now();
    },
    /** Its answer began: from now on `idleMs` of silence ends the call. */
    answerStarted() {
      if (answering) return;
      answering = true;
      windowMs = idleMs;
      clearTimeout(timer);
      timer = setTimeout(check, windowMs);
    },
    done() {
      clearTimeout(timer);
    },
  };
}

/** A streamed model call in flight: its items, the first one already asked for, and its idle watch. */
export interface StartedCall {
  items: AsyncIterator<StreamItem>;
  first: Promise<IteratorResult<StreamItem>>;
  watch: ReturnType<typeof idleWatch>;
  /** The stop signal (the watch's signal also fires when the provider goes silent). */
  stop: AbortSignal | undefined;
}

/**
 * Sends a streamed model call now (the generator runs to its first item, so the HTTP request goes out). The
 * answer may take the provider's timeout to start, never less than `idleMs`; then `idleMs` of silence ends it.
 */
export function startCall(provider: LlmProvider, request: CompletionRequest, idleMs: number): StartedCall {
  const watch = idleWatch(request.signal, Math.max(provider.timeoutMs, idleMs), idleMs);
  const streamed = { ...request, signal: watch.signal, onActivity: () => watch.touch() };
  const items = provider.stream(streamed)[Symbol.asyncIterator]();
  const first = items.next();
  // Awaited by streamReply; this keeps an early failure from counting as unhandled meanwhile.
  first.catch(() => {});
  return { items, first, watch, stop: request.signal };
}

export async function streamReply(call: StartedCall, emit: (event: ChatEvent) => void): Promise<ModelReply> {
  let content = "";
  let finishReason: string | null = null;
  const calls = new Map<number, ToolCall>();
  const { watch, stop } = call;
  try {
    for (let next = call.first; ; next = call.items.next()) {
      const { value: item, done } = await next;
      if (done) break;
      watch.touch();
      if (item.kind !== "chunk") continue;
      watch.answerStarted();
      emit({ type: "chunk", chunk: item.chunk });
      if (item.chunk.content) content += item.chunk.content;
      if (item.chunk.tool_calls) accumulateToolCalls(calls, item.chunk.tool_calls);
      if (item.chunk.finish_reason) finishReason = item.chunk.finish_reason;
    }
  } catch (error) {
    if (stop?.aborted || (isAbort(error) && !watch.idle)) {
      return { content, toolCalls: [], finishReason, stopped: true };
    }
    const failure = watch.idle ? new LlmError(watch.reason) : error;
    // What the viewers already saw is kept (the turn then fails).
    if (content) return { content, toolCalls: [], finishReason, stopped: false, failure };
    throw failure;
  } finally {
    watch.done();
  }
  if (stop?.aborted) return { content, toolCalls: [], finishReason, stopped: true };
  if (finishReason === null) {
    // The body ended without the provider's end of answer (a dropped connection, a proxy's cut): half an answer,
    // and tool calls with half their arguments, must not pass as a finished one.
    const failure = new LlmError("The provider's stream ended before the answer was complete");
    if (content) return { content, toolCalls: [], finishReason, stopped: false, failure };
    throw failure;
  }
  const toolCalls = [...calls.entries()].sort(([a], [b]) => a - b).map(([, call]) => call);
  return { content, toolCalls, finishReason, stopped: false };
}

export async function completeReply(
  provider: LlmProvider,
  request: CompletionRequest,
  emit: (event: ChatEvent) => void,
): Promise<ModelReply> {
  try {
    const result = await provider.complete(request);
    const toolCalls = result.tool_calls ?? [];
    // Viewers of a non-streaming turn still see its content, as one chunk.
    const chunk: StreamChunk = {
      content: result.content,
      tool_calls:
        toolCalls.length > 0
          ? toolCalls.map((call, index) => ({
              index,
              id: call.id,
              type: "function" as const,
              function: { name: call.function.name, arguments: call.function.arguments },
            }))
          : null,
      finish_reason: result.finish_reason,
    };
    emit({ type: "chunk", chunk });
    return { content: result.content ?? "", toolCalls, finishReason: result.finish_reason, stopped: false };
  } catch (error) {
    if (isAbort(error) || request.signal?.aborted)
      return { content: "", toolCalls: [], finishReason: null, stopped: true };
    throw error;
  }
}
