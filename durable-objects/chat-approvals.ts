/**
 * @module Tool-approval decisions (sinas-spec §5.7 with D-29): recording them, and telling when every call of
 * the paused assistant message is decided, so that the turn can go on with exactly those decisions.
 */
import { and, eq, exists, isNull, sql } from "drizzle-orm";
import type { ApprovalResume } from "../workers/chat/turn";
import type { DbOrTx } from "../workers/db/client";
import { chats, messages, pendingToolApprovals } from "../workers/db/schema";
import { type ApprovalAnswer, type Failure, failure } from "./chat-session-results";
import type { TurnOutcome } from "./chat-turn-slot";

export interface Decision {
  toolCallId: string;
  approved: boolean;
}

export type Recorded =
  /** No pending approval of this chat has one of these ids (unknown, or decided before). */
  | { kind: "not_found" }
  /** Recorded; `waiting` calls of the message still need a decision. */
  | { kind: "waiting"; waiting: number }
  /** Every call of the message is decided: the turn goes on with `resume`. */
  | { kind: "complete"; resume: ApprovalResume };

/**
 * Records `decisions` (all for one message); pending approvals only, so a decision is never taken twice, and
 * only the chat owner's (the routes check that first too; this keeps a route that forgets from recording).
 */
export async function recordDecisions(
  db: DbOrTx,
  chat: { chatId: string; userId: string },
  decisions: Decision[],
): Promise<Recorded> {
  const { chatId } = chat;
  const owned = exists(
    db
      .select({ id: chats.id })
      .from(chats)
      .where(and(eq(chats.id, chatId), eq(chats.userId, chat.userId))),
  );
  let messageId: string | null = null;
  for (const decision of decisions) {
    const [row] = await db
      .update(pendingToolApprovals)
      .set({ approved: decision.approved })
      .where(
        and(
          eq(pendingToolApprovals.chatId, chatId),
          eq(pendingToolApprovals.toolCallId, decision.toolCallId),
          isNull(pendingToolApprovals.approved),
          owned,
        ),
      )
      .returning({ messageId: pendingToolApprovals.messageId });
    if (row) messageId = row.messageId;
  }
  if (messageId === null) return { kind: "not_found" };
  const decided = await db
    .select({
      toolCallId: pendingToolApprovals.toolCallId,
      approved: pendingToolApprovals.approved,
      // Only the round of the stored context (which holds the whole conversation).
      pausedRound: sql<number | null>`(${pendingToolApprovals.conversationContext}->>'round')::int`,
    })
    .from(pendingToolApprovals)
    .where(eq(pendingToolApprovals.messageId, messageId));
  const waiting = decided.filter((entry) => entry.approved === null).length;
  if (waiting > 0) return { kind: "waiting", waiting };
  const [message] = await db.select().from(messages).where(eq(messages.id, messageId)).limit(1);
  if (!message) return { kind: "not_found" };
  return {
    kind: "complete",
    resume: {
      message,
      decisions: new Map(decided.map((entry) => [entry.toolCallId, entry.approved === true])),
      // Rows stored before the round was recorded paused in an unknown round: the first.
      pausedRound: decided[0]?.pausedRound ?? 0,
    },
  };
}

/**
 * §5.7's answer to one decision: recorded while `waiting` other calls of its message need one, else as its
 * continued turn ended (an approved call whose turn failed is a failure; a rejection's is said in the answer).
 */
export function decisionAnswer(
  decision: Decision,
  after: { waiting: number } | TurnOutcome,
): ApprovalAnswer | Failure {
  const answer = (message: string): ApprovalAnswer => ({
    ok: true,
    status: decision.approved ? "approved" : "rejected",
    tool_call_id: decision.toolCallId,
    message,
  });
  if ("waiting" in after) {
    return answer(
      `Decision recorded; ${after.waiting} other tool call(s) of this message still await approval`,
    );
  }
  if (after.failure) {
    if (!decision.approved) {
      return answer(`Tool call rejected but failed to get LLM response: ${after.failure.message}`);
    }
    return failure("INTERNAL", `Failed to execute approved tool call: ${after.failure.message}`);
  }
  const resultId = after.result?.message?.id ?? "none";
  return answer(
    decision.approved
      ? `Tool call executed successfully. Result message ID: ${resultId}`
      : `Tool call rejected. LLM responded with message ID: ${resultId}`,
  );
}
