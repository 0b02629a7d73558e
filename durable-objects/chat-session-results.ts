/**
 * @module What a ChatSession's calls answer (RPC results: a failure is a value, not a thrown error, so that its
 * code crosses the object boundary intact) and how an error becomes one.
 */

import type { ApiKeyCredential } from "../workers/auth/principal";
import type { TakeAgentCall } from "../workers/chat/agent-tools";
import { toAppError } from "../workers/http/fallbacks";
import type { ErrorCode } from "../workers/lib/errors";
import type { toMessageResponse } from "../workers/services/chats";

export type MessageView = ReturnType<typeof toMessageResponse>;

export interface SendRequest {
  chatId: string;
  userId: string;
  /** A string, or the JSON of universal content parts (§5.9), as stored. */
  content: string;
  mode: "stream" | "complete";
  /** Nesting of agent-to-agent calls: absent for a user's turn, 1 for its sub-chats, and so on. */
  depth?: number;
  /** The API key's own permissions when the sender used one (their tools stay within them); absent for a JWT. */
  apiKey?: ApiKeyCredential;
  /** A sub-chat's turn: its caller's agent-call budget (an RPC stub); absent, the turn starts its own. */
  takeAgentCall?: TakeAgentCall;
}

/** Who decides a tool approval: the chat's owner, with their API key's permissions when they used one. */
export type Decider = Pick<SendRequest, "chatId" | "userId" | "apiKey">;

export type Failure = { ok: false; code: ErrorCode; message: string };
export type Started = { ok: true; turnId: string; afterSeq: number };
export type Answered = { ok: true; message: MessageView | null; status: string; outputErrors?: string };
export type ApprovalAnswer = {
  ok: true;
  status: "approved" | "rejected";
  tool_call_id: string;
  message: string;
};

export function failure(code: ErrorCode, message: string): Failure {
  return { ok: false, code, message };
}

/** A thrown error as a failure: app errors keep their code, provider errors become PROVIDER_ERROR. */
export function failureOf(error: unknown): Failure {
  if (error instanceof Error && error.name === "LlmError")
    return { ok: false, code: "PROVIDER_ERROR", message: error.message };
  // As the Worker answers a thrown error (a NUL Postgres refused is a 422): anything unexpected is only
  // "Internal server error", its text (a failed query's SQL and parameters) in the log, not in the answer.
  const mapped = toAppError(error);
  if (mapped.code === "INTERNAL" && mapped !== error) console.error("chat turn failed:", error);
  return { ok: false, code: mapped.code, message: mapped.message };
}
