/**
 * @module useChat's `regenerate()` on the server, where the chat's history lives: the chat's latest answer (every
 * message after its last user message, their pending approvals with them) is dropped, and a new turn answers
 * that user message again. Only the latest answer: regenerating an older one would also drop the later turns,
 * which a client that asked for it still shows. Runs in the chat's object, the only writer of its messages, with
 * its turn slot held, so nothing else changes the messages between the check and the drop.
 */
import { and, desc, eq, gt, sql } from "drizzle-orm";
import type { DbOrTx } from "../workers/db/client";
import { chats, type Message, messages } from "../workers/db/schema";
import { validationError } from "../workers/lib/errors";
import type { Services } from "../workers/services/services";
import type { ChatLog } from "./chat-log";
import { loadTurnSubjects, type TurnSubjects } from "./chat-turn-data";

/**
 * What useChat's `messageId` names: nothing (the latest answer); the UI message of a turn's answer (its id is
 * the turn's id: events.ts), known here by that turn's user message; a stored message (an answer loaded from
 * `GET /chats/{id}`); the user message whose answer is regenerated, sent last (useChat keeps it), known by its
 * content; or none of these.
 */
export type AnswerRef =
  | { kind: "latest" }
  | { kind: "turn"; userMessageId: string }
  | { kind: "message"; messageId: string }
  | { kind: "question"; content: string }
  | { kind: "unknown" };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** What `answerId` names, by the chat's log (turn ids) or else as a stored message's id (a UUID). */
export function answerRefOf(log: ChatLog, answerId: string): AnswerRef {
  const turn = log.turn(answerId);
  const first = turn ? log.eventAt(turn.firstSeq)?.event : undefined;
  if (first?.type === "turn_start" && first.message_id)
    return { kind: "turn", userMessageId: first.message_id };
  return UUID.test(answerId) ? { kind: "message", messageId: answerId } : { kind: "unknown" };
}

function notRegenerable(why: string) {
  return validationError([{ loc: ["body", "messageId"], msg: why, type: "value_error" }]);
}

/** Whether `answer` is the answer to `question`, the chat's last user message. */
async function answersLatest(db: DbOrTx, question: Message, answer: AnswerRef): Promise<boolean> {
  switch (answer.kind) {
    case "latest":
      return true;
    case "turn":
      return answer.userMessageId === question.id;
    case "question":
      return answer.content === question.content;
    case "unknown":
      return false;
    case "message": {
      const [found] = await db
        .select({ id: messages.id })
        .from(messages)
        .where(
          and(
            eq(messages.id, answer.messageId),
            eq(messages.chatId, question.chatId),
            gt(messages.sequence, question.sequence),
          ),
        )
        .limit(1);
      return found !== undefined;
    }
  }
}

/**
 * The turn's subjects (the sender's checks, as for a send: 404 / 403 / 401) and the user message to answer
 * again, once `answer` is checked to be the chat's latest answer; 422 naming `messageId` when the chat has no
 * user message or it is not. Changes nothing: `dropAnswerTo` does, once the new turn is ready to start.
 */
export async function findRegenerable(
  services: Services,
  turn: { chatId: string; userId: string },
  answer: AnswerRef,
): Promise<{ subjects: TurnSubjects; message: Message }> {
  const subjects = await loadTurnSubjects(services, turn.chatId, turn.userId);
  const db = services.db();
  const [question] = await db
    .select()
    .from(messages)
    .where(and(eq(messages.chatId, turn.chatId), eq(messages.role, "user")))
    .orderBy(desc(messages.sequence))
    .limit(1);
  if (!question) throw notRegenerable("the chat has no user message to answer again");
  if (!(await answersLatest(db, question, answer))) {
    throw notRegenerable(
      "must be the chat's latest answer (or its user message): only that one can be regenerated",
    );
  }
  return { subjects, message: question };
}

/** Deletes every message after `question` (pending approvals of their calls go with them: ON DELETE CASCADE). */
export async function dropAnswerTo(services: Services, question: Message): Promise<void> {
  await services.db().transaction(async (tx) => {
    await tx
      .delete(messages)
      .where(and(eq(messages.chatId, question.chatId), gt(messages.sequence, question.sequence)));
    await tx.update(chats).set({ updatedAt: sql`now()` }).where(eq(chats.id, question.chatId));
  });
}
