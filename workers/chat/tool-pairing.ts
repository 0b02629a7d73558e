/**
 * @module Every tool call answered before the conversation goes on, as both wire formats demand: OpenAI refuses an
 * assistant message with `tool_calls` that is not followed by a tool message for each call, and Anthropic a
 * `tool_use` without its `tool_result`. A chat's stored history can lack some: a turn stopped or interrupted
 * (a crash) while its tools ran, a new message sent while calls awaited approval, a continuation that failed
 * after the decisions were taken. Without this, one such turn would break every later turn of the chat.
 *
 * The stored messages stay as they are; only what the model is sent is mended: a call without a result gets a
 * tool message saying it has none, and a tool message that answers no open call (a result stored after a newer
 * message) is left out.
 */
import type { LlmMessage } from "../llm/types";

/** The content of a stand-in result (a JSON text, like the stored results of tools). */
export const MISSING_RESULT = JSON.stringify({
  error:
    "No result: the call did not complete (the turn was stopped or interrupted, or it was never approved)",
});

/** `messages` with every assistant message's tool calls answered right after it (stand-ins after the stored results). */
export function withAnsweredToolCalls(messages: LlmMessage[]): LlmMessage[] {
  const mended: LlmMessage[] = [];
  /** The open calls of the latest assistant message with tool calls: id -> tool name. */
  let open = new Map<string, string>();
  const closeOpenCalls = () => {
    for (const [id, name] of open) {
      mended.push({ role: "tool", content: MISSING_RESULT, tool_call_id: id, name });
    }
    open = new Map();
  };
  for (const message of messages) {
    if (message.role === "tool") {
      const id = message.tool_call_id;
      if (id === undefined || !open.has(id)) continue; // answers nothing open: the model could not place it
      open.delete(id);
      mended.push(message);
      continue;
    }
    closeOpenCalls();
    mended.push(message);
    if (message.role === "assistant" && message.tool_calls) {
      open = new Map(message.tool_calls.map((call) => [call.id, call.function.name]));
    }
  }
  closeOpenCalls();
  return mended;
}
