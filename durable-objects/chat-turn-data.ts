/**
 * @module What a ChatSession turn loads before it runs (the chat, its agent and the user), and what it
 * recovers from the log after a crash (the partial answer of the step that was streaming).
 */
import { and, eq } from "drizzle-orm";
import type { LoggedEvent } from "../workers/chat/events";
import { type Agent, type Chat, chats, users } from "../workers/db/schema";
import { AppError } from "../workers/lib/errors";
import { findAgentForChat } from "../workers/services/chats";
import type { Services } from "../workers/services/services";

export interface TurnSubjects {
  chat: Chat;
  agent: Agent;
  user: { id: string; email: string };
}

export async function loadTurnSubjects(
  services: Services,
  chatId: string,
  userId: string,
): Promise<TurnSubjects> {
  const db = services.db();
  const [row] = await db
    .select({ chat: chats, email: users.email })
    .from(chats)
    .innerJoin(users, eq(users.id, chats.userId))
    .where(and(eq(chats.id, chatId), eq(chats.userId, userId)))
    .limit(1);
  if (!row) throw new AppError("NOT_FOUND", "Chat not found");
  const agent = row.chat.agentId ? await findAgentForChat(db, row.chat.agentId) : null;
  if (!agent) throw new AppError("NOT_FOUND", "The chat's agent no longer exists or is inactive");
  return { chat: row.chat, agent, user: { id: userId, email: row.email } };
}

/** The text streamed by the turn's last step, when that step never ended. */
export function partialAnswerOf(events: LoggedEvent[]): string {
  let text = "";
  for (const { event } of events) {
    if (event.type === "step_start") text = "";
    else if (event.type === "step_end") text = "";
    else if (event.type === "chunk" && event.chunk.content) text += event.chunk.content;
  }
  return text;
}
