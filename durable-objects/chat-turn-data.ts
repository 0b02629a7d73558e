/**
 * @module What a ChatSession turn loads before it runs (the chat, its agent and the user), and what it
 * recovers from the log after a crash (the partial answer of the step that was streaming).
 */
import { and, eq, sql } from "drizzle-orm";
import type { LoggedEvent } from "../workers/chat/events";
import type { Database } from "../workers/db/client";
import { isNotNullViolation } from "../workers/db/errors";
import { preparedOnce } from "../workers/db/prepared";
import {
  type Agent,
  agents,
  type Chat,
  chats,
  executions,
  type LlmProvider,
  llmProviders,
  type Message,
  users,
} from "../workers/db/schema";
import { AppError } from "../workers/lib/errors";
import {
  appendMessages,
  type ChatSenderAction,
  SENDER_DENIED,
  userMessageCtes,
} from "../workers/services/chats";
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

/** The columns both lookups below read: the chat, its user's e-mail, its active agent and that agent's provider. */
function subjectColumns(db: Database) {
  return {
    chat: chats,
    email: users.email,
    userActive: users.isActive,
    agent: agents,
    agentProvider: llmProviders,
    hasPausedExecutions: sql<boolean>`exists (${db
      .select({ one: sql`1` })
      .from(executions)
      .where(and(eq(executions.chatId, chats.id), eq(executions.status, "AWAITING_INPUT")))})`,
  };
}

type SubjectRow = {
  chat: Chat;
  email: string;
  userActive: boolean;
  agent: Agent | null;
  agentProvider: LlmProvider | null;
  hasPausedExecutions: boolean;
};

/** 404 / 403 / 404 (inactive agent) as the row says, else the subjects. */
function subjectsOf(
  row: SubjectRow | undefined,
  userId: string,
  action: ChatSenderAction = "send",
): TurnSubjects {
  if (!row) throw new AppError("NOT_FOUND", "Chat not found");
  if (row.chat.userId !== userId) throw new AppError("FORBIDDEN", SENDER_DENIED[action]);
  // The Worker may send a caller here on a verified token alone (authenticateSender): this is the user check.
  if (!row.userActive) throw new AppError("UNAUTHORIZED", "User is inactive");
  if (!row.agent) throw new AppError("NOT_FOUND", "The chat's agent no longer exists or is inactive");
  return {
    chat: row.chat,
    agent: row.agent,
    user: { id: userId, email: row.email },
    agentProvider: row.agentProvider,
    hasPausedExecutions: row.hasPausedExecutions,
  };
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
    .select(subjectColumns(db))
    .from(chats)
    .innerJoin(users, eq(users.id, chats.userId))
    .leftJoin(agents, and(eq(agents.id, chats.agentId), eq(agents.isActive, true)))
    .leftJoin(llmProviders, eq(llmProviders.id, agents.llmProviderId))
    .where(eq(chats.id, chatId))
    .limit(1);
  return subjectsOf(row, userId, action);
}

/** The statement `beginTurnRecord` runs, prepared once (building it cost ~0.6 ms per turn). */
const beginTurnStatement = preparedOnce((db) => {
  const { touched, added, answered } = userMessageCtes(db);
  return db
    .with(touched, added, answered)
    .select({
      ...subjectColumns(db),
      message: {
        id: added.id,
        chatId: added.chatId,
        sequence: added.sequence,
        role: added.role,
        content: added.content,
        toolCalls: added.toolCalls,
        toolCallId: added.toolCallId,
        name: added.name,
        enabledFunctions: added.enabledFunctions,
        enabledMcpTools: added.enabledMcpTools,
        createdAt: added.createdAt,
      },
    })
    .from(chats)
    .innerJoin(users, eq(users.id, chats.userId))
    .leftJoin(agents, and(eq(agents.id, chats.agentId), eq(agents.isActive, true)))
    .leftJoin(llmProviders, eq(llmProviders.id, agents.llmProviderId))
    .innerJoin(added, eq(added.chatId, chats.id))
    .where(eq(chats.id, sql.placeholder("chatId")))
    .limit(1)
    .prepare("begin_turn");
});

/**
 * A sent turn's start in one statement: stores the user message (§5.3 step C) and reads the turn's subjects.
 * When the message may not be stored (not the owner, no chat, inactive agent), nothing is, and the subjects
 * are read alone to say why (404 / 403).
 */
export async function beginTurnRecord(
  services: Services,
  turn: { chatId: string; userId: string; content: string },
): Promise<{ subjects: TurnSubjects; message: Message }> {
  let row: (SubjectRow & { message: Message }) | undefined;
  try {
    [row] = await beginTurnStatement(services.statementDb()).execute(turn);
  } catch (error) {
    if (!isNotNullViolation(error)) throw error;
  }
  if (!row) {
    // Nothing was stored: the lookup alone says why (it throws), unless the agent changed in between.
    await loadTurnSubjects(services, turn.chatId, turn.userId);
    throw new AppError("NOT_FOUND", "The chat's agent no longer exists or is inactive");
  }
  return { subjects: subjectsOf(row, turn.userId), message: row.message };
}

/**
 * Saves what an interrupted turn had streamed (see `partialAnswerOf`) as the assistant's message; its id, or
 * null when there was nothing or the database is unreachable (the turn is ended either way).
 */
export async function savePartialAnswer(
  services: Services,
  chatId: string,
  events: LoggedEvent[],
): Promise<string | null> {
  const partial = partialAnswerOf(events);
  if (!partial) return null;
  try {
    const [saved] = await appendMessages(services.db(), chatId, [{ role: "assistant", content: partial }]);
    return saved?.id ?? null;
  } catch {
    return null;
  }
}

/** The text streamed by the turn's last step, when that step never ended. */
function partialAnswerOf(events: LoggedEvent[]): string {
  let text = "";
  for (const { event } of events) {
    if (event.type === "step_start") text = "";
    else if (event.type === "step_end") text = "";
    else if (event.type === "chunk" && event.chunk.content) text += event.chunk.content;
  }
  return text;
}
