/**
 * @module What a ChatSession turn loads before it runs (the chat, its agent and the user), and what it
 * recovers from the log after a crash (the partial answer of the step that was streaming).
 */
import { and, eq, sql } from "drizzle-orm";
import type { LoggedEvent } from "../workers/chat/events";
import {
  type Agent,
  agents,
  type Chat,
  chats,
  executions,
  type LlmProvider,
  llmProviders,
  users,
} from "../workers/db/schema";
import { AppError } from "../workers/lib/errors";
import { type ChatSenderAction, SENDER_DENIED } from "../workers/services/chats";
import type { Services } from "../workers/services/services";

export interface TurnSubjects {
  chat: Chat;
  agent: Agent;
  user: { id: string; email: string };
  /** The agent's own provider row when it names one (read in the same round trip), else null. */
  agentProvider: LlmProvider | null;
  /** Whether an execution of this chat awaits input (then the model is offered `continue_execution`). */
  hasPausedExecutions: boolean;
}

/**
 * The chat, its active agent (with the agent's provider) and its user in one round trip. The Worker sends only
 * authenticated callers here; this is where a sender who does not own the chat is refused (404 missing, 403
 * someone else's).
 */
export async function loadTurnSubjects(
  services: Services,
  chatId: string,
  userId: string,
  action: ChatSenderAction = "send",
): Promise<TurnSubjects> {
  const db = services.db();
  const [row] = await db
    .select({
      chat: chats,
      email: users.email,
      agent: agents,
      agentProvider: llmProviders,
      hasPausedExecutions: sql<boolean>`exists (${db
        .select({ one: sql`1` })
        .from(executions)
        .where(and(eq(executions.chatId, chats.id), eq(executions.status, "AWAITING_INPUT")))})`,
    })
    .from(chats)
    .innerJoin(users, eq(users.id, chats.userId))
    .leftJoin(agents, and(eq(agents.id, chats.agentId), eq(agents.isActive, true)))
    .leftJoin(llmProviders, eq(llmProviders.id, agents.llmProviderId))
    .where(eq(chats.id, chatId))
    .limit(1);
  if (!row) throw new AppError("NOT_FOUND", "Chat not found");
  if (row.chat.userId !== userId) throw new AppError("FORBIDDEN", SENDER_DENIED[action]);
  if (!row.agent) throw new AppError("NOT_FOUND", "The chat's agent no longer exists or is inactive");
  return {
    chat: row.chat,
    agent: row.agent,
    user: { id: userId, email: row.email },
    agentProvider: row.agentProvider,
    hasPausedExecutions: row.hasPausedExecutions,
  };
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
