/**
 * @module useChat's `regenerate()` on the server, where the chat's history lives: the chat's latest answer (every
 * message after its last user message, their pending approvals with them) is dropped, and a new turn answers
 * that user message again. Only the latest answer: regenerating an older one would also drop the later turns,
 * which a client that asked for it still shows. Runs in the chat's object, the only writer of its messages, with
 * its turn slot held, so nothing else changes the messages meanwhile.
 */
import { and, desc, eq, gt, sql } from "drizzle-orm";
import type { DbOrTx } from "../workers/db/client";
import { chats, type Message, messages } from "../workers/db/schema";
import { validationError } from "../workers/lib/errors";
import type { Services } from "../workers/services/services";
import type { ChatLog } from "./chat-log";
import { loadTurnSubjects, type TurnSubjects } from "./chat-turn-data";

/**
 * What useChat's `messageId` names: the UI message of a turn's answer (its id is the turn's id: events.ts),
 * known here by that turn's user message; a stored message (an answer loaded from `GET /chats/{id}`); or nothing
 * (the latest answer).
 */
export type AnswerRef = { userMessageId: string } | { messageId: string } | null;

/** What a useChat `messageId` names: a turn of the chat's log (known by its user message), else a stored message. */
export function answerRefOf(log: ChatLog, answerId: string | null): AnswerRef {
  if (answerId === null) return null;
  const turn = log.turn(answerId);
  const first = turn ? log.eventAt(turn.firstSeq)?.event : undefined;
  if (first?.type === "turn_start" && first.message_id) return { userMessageId: first.message_id };
  return { messageId: answerId };
}

function notRegenerable(why: string) {
  return validationError([{ loc: ["body", "messageId"], msg: why, type: "value_error" }]);
}

/** Whether `answer` is the answer to `question`, the chat's last user message. */
async function answersLatest(db: DbOrTx, question: Message, answer: AnswerRef): Promise<boolean> {
  if (answer === null) return true;
  if ("userMessageId" in answer) return answer.userMessageId === question.id;
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

/**
 * Drops the chat's latest answer (checked to be `answer`'s) and returns the user message to answer again, with
 * the turn's subjects (the sender's checks, as for a send: 404 / 403 / 401). 422 naming `messageId` when the
 * chat has no user message or `answer` is not its latest answer; nothing changes then.
 */
export async function beginRegenerateRecord(
  services: Services,
  turn: { chatId: string; userId: string },
  answer: AnswerRef,
): Promise<{ subjects: TurnSubjects; message: Message }> {
  const subjects = await loadTurnSubjects(services, turn.chatId, turn.userId);
  const message = await services.db().transaction(async (tx) => {
    const [question] = await tx
      .select()
      .from(messages)
      .where(and(eq(messages.chatId, turn.chatId), eq(messages.role, "user")))
      .orderBy(desc(messages.sequence))
      .limit(1);
    if (!question) throw notRegenerable("the chat has no user message to answer again");
    if (!(await answersLatest(tx, question, answer))) {
      throw notRegenerable("must be the chat's latest answer: only that one can be regenerated");
    }
    // Pending approvals of the dropped calls go with their messages (ON DELETE CASCADE).
    await tx
      .delete(messages)
      .where(and(eq(messages.chatId, turn.chatId), gt(messages.sequence, question.sequence)));
    await tx.update(chats).set({ updatedAt: sql`now()` }).where(eq(chats.id, turn.chatId));
    return question;
  });
  return { subjects, message };
}
