/**
 * @module Chats and their messages (sinas-spec §1.2, §5.2 with D-17, D-18, D-24): creating a chat for an agent,
 * the owner-only lookups, listing, renaming, deleting, and appending messages in order.
 *
 * Chats belong to one user: nobody else reads them, admins included (§3.6). Messages are ordered by their
 * `sequence` identity, never by `created_at`, which ties inside one transaction (D-17). Deleting a chat takes
 * its messages and pending approvals with it and leaves its executions with `chat_id` null (the foreign keys).
 */
import { and, asc, count, desc, eq, exists, gt, isNull, sql } from "drizzle-orm";
import { prefillFor } from "../chat/prefill";
import { renderSystemPrompt } from "../chat/prompt";
import type { Database, DbOrTx } from "../db/client";
import { preparedOnce } from "../db/prepared";
import {
  type Agent,
  agents,
  type Chat,
  chats,
  type JsonObject,
  type Message,
  type MessageRole,
  messages,
  pendingToolApprovals,
  type ToolCall,
  users,
} from "../db/schema";
import { AppError } from "../lib/errors";
import { validateAgainstSchema } from "../lib/json-schema";

/** A message to store; `sequence`, `id` and `created_at` come from the database. */
export interface NewChatMessage {
  role: MessageRole;
  content: string | null;
  tool_calls?: ToolCall[] | null;
  tool_call_id?: string | null;
  name?: string | null;
}

export interface NewChatForAgent {
  agent: Agent;
  userId: string;
  /** The agent's group for a user's chat; the parent chat's group for a sub-chat (§5.8). */
  groupId: string | null;
  title: string;
  /** The chat input (§5.2); validated against the agent's input_schema and kept as `agent_input`. */
  input?: JsonObject | null | undefined;
}

/** A new chat and the initial messages it was given, in order. */
export interface OpenedChat {
  chat: Chat;
  messages: Message[];
}

/** Who a chat response names as its owner, and when its last message was written. */
export interface ChatSummary {
  userEmail: string;
  lastMessageAt: Date | null;
}

export type ChatSenderAction = "send" | "approve";

export const SENDER_DENIED: Record<ChatSenderAction, string> = {
  send: "Not authorized to send messages in this chat",
  approve: "Not authorized to approve tools in this chat",
};

function chatNotFound(): AppError {
  return new AppError("NOT_FOUND", "Chat not found");
}

export function toChatResponse(chat: Chat, summary: ChatSummary) {
  return {
    id: chat.id,
    user_id: chat.userId,
    user_email: summary.userEmail,
    group_id: chat.groupId,
    agent_id: chat.agentId,
    agent_namespace: chat.agentNamespace,
    agent_name: chat.agentName,
    title: chat.title,
    created_at: chat.createdAt.toISOString(),
    updated_at: chat.updatedAt.toISOString(),
    last_message_at: summary.lastMessageAt?.toISOString() ?? null,
  };
}

/** MessageResponse (§1.0): multimodal and tool-result contents stay the JSON strings they were stored as. */
export function toMessageResponse(message: Message) {
  return {
    id: message.id,
    chat_id: message.chatId,
    role: message.role,
    content: message.content,
    tool_calls: message.toolCalls,
    tool_call_id: message.toolCallId,
    name: message.name,
    created_at: message.createdAt.toISOString(),
  };
}

export type ChatResponse = ReturnType<typeof toChatResponse>;
export type MessageResponse = ReturnType<typeof toMessageResponse>;

/** The latest `created_at` among `rows` (the chat's last message), or null for none. */
export function lastMessageTime(rows: Pick<Message, "createdAt">[]): Date | null {
  let latest: Date | null = null;
  for (const row of rows) if (latest === null || row.createdAt > latest) latest = row.createdAt;
  return latest;
}

function isNonEmpty(value: JsonObject | null | undefined): value is JsonObject {
  return value != null && Object.keys(value).length > 0;
}

/** §5.2 step 3: only a non-empty input against a non-empty schema is validated. */
function ensureValidInput(agent: Agent, input: JsonObject | null | undefined): void {
  if (!isNonEmpty(input) || !isNonEmpty(agent.inputSchema)) return;
  const problems = validateAgainstSchema(agent.inputSchema, input);
  if (problems.length === 0) return;
  const details = problems
    .slice(0, 5)
    .map((problem) => `${problem.location.replace(/^#/, "") || "/"}: ${problem.message}`);
  throw new AppError("BAD_REQUEST", `Input validation failed: ${details.join("; ")}`);
}

/**
 * D-24: the input is what the agent's templates render with for the chat's whole life, so an input they cannot
 * render (a filter on a missing field, a loop too long) is refused now, with the template's error.
 */
export function ensureInputRenders(agent: Agent, input: JsonObject | null | undefined): void {
  if (!isNonEmpty(input)) return;
  renderSystemPrompt(agent.systemPrompt, input);
  for (const ref of Object.keys(agent.functionParameters ?? {}))
    prefillFor(agent.functionParameters, ref, input);
}

/**
 * Inserts `rows` in one statement, in order, and bumps the chat's `updated_at` in the same statement (a
 * data-modifying CTE), so the chat list orders by latest activity.
 */
export async function appendMessages(db: DbOrTx, chatId: string, rows: NewChatMessage[]): Promise<Message[]> {
  if (rows.length === 0) return [];
  const touched = db
    .$with("touched")
    .as(
      db.update(chats).set({ updatedAt: sql`now()` }).where(eq(chats.id, chatId)).returning({ id: chats.id }),
    );
  const inserted = await db
    .with(touched)
    .insert(messages)
    .values(
      rows.map((row) => ({
        chatId,
        role: row.role,
        content: row.content,
        toolCalls: row.tool_calls ?? null,
        toolCallId: row.tool_call_id ?? null,
        name: row.name ?? null,
      })),
    )
    .returning();
  // Identity values follow the VALUES order; RETURNING's order is not guaranteed, so sort by it.
  return inserted.sort((a, b) => a.sequence - b.sequence);
}

/**
 * A turn's user message (§5.3 step C) as the CTEs of one statement (`added` returns the stored row): stored
 * only if the user owns the chat and is active and the chat's agent is active, touching the chat's
 * `updated_at`. Otherwise no chat row is touched, `chat_id` stays null and NOT NULL refuses the whole
 * statement (`isNotNullViolation`), so a refused send stores nothing. Values are the placeholders `chatId`,
 * `userId` and `content` (the statement is prepared once).
 */
export function userMessageCtes(db: Database) {
  const activeAgent = db
    .select({ id: agents.id })
    .from(agents)
    .where(and(eq(agents.id, chats.agentId), eq(agents.isActive, true)));
  const activeUser = db
    .select({ id: users.id })
    .from(users)
    .where(and(eq(users.id, chats.userId), eq(users.isActive, true)));
  const touched = db.$with("touched").as(
    db
      .update(chats)
      .set({ updatedAt: sql`now()` })
      .where(
        and(
          eq(chats.id, sql.placeholder("chatId")),
          eq(chats.userId, sql.placeholder("userId")),
          exists(activeUser),
          exists(activeAgent),
        ),
      )
      .returning({ id: chats.id }),
  );
  const added = db.$with("added").as(
    db
      .insert(messages)
      .values({
        chatId: sql`(select ${touched.id} from ${touched})`,
        role: "user",
        content: sql.placeholder("content"),
      })
      .returning(),
  );
  // A new message answers the calls still awaiting a decision: rejected, so that no late decision runs them
  // behind the user's back (workers/chat/tool-pairing.ts tells the model they have no result).
  const answered = db.$with("answered").as(
    db
      .update(pendingToolApprovals)
      .set({ approved: false })
      .where(
        and(
          eq(pendingToolApprovals.chatId, sql`(select ${touched.id} from ${touched})`),
          isNull(pendingToolApprovals.approved),
        ),
      )
      .returning({ id: pendingToolApprovals.id }),
  );
  return { touched, added, answered };
}

/**
 * Creates a chat for `agent` (§5.2 steps 3-5 with D-24): validates the input, keeps it as
 * `chat_metadata.agent_input` when non-empty, and inserts the agent's initial messages in order. The caller
 * has found the agent and decided access.
 */
export async function openChatForAgent(db: DbOrTx, chat: NewChatForAgent): Promise<OpenedChat> {
  const { agent, input } = chat;
  ensureValidInput(agent, input);
  ensureInputRenders(agent, input);
  const values = {
    userId: chat.userId,
    groupId: chat.groupId,
    agentId: agent.id,
    agentNamespace: agent.namespace,
    agentName: agent.name,
    title: chat.title,
    chatMetadata: isNonEmpty(input) ? { agent_input: input } : null,
  };
  const initial = agent.initialMessages ?? [];
  if (initial.length === 0) {
    const [created] = await db.insert(chats).values(values).returning();
    if (!created) throw new Error("insert returned no row");
    return { chat: created, messages: [] };
  }
  return db.transaction(async (tx) => {
    const [created] = await tx.insert(chats).values(values).returning();
    if (!created) throw new Error("insert returned no row");
    const inserted = await appendMessages(
      tx,
      created.id,
      initial.map((message) => ({ role: message.role, content: message.content })),
    );
    return { chat: created, messages: inserted };
  });
}

/** `openChatForAgent` for callers that need only the chat (sub-chats, §5.8). */
export async function createChatForAgent(db: DbOrTx, chat: NewChatForAgent): Promise<Chat> {
  return (await openChatForAgent(db, chat)).chat;
}

/** Whether `userId` is an active user: checked with the chat itself for callers known by their token alone. */
function userActive(userId: string) {
  return sql<boolean>`exists (select 1 from ${users} where ${users.id} = ${userId} and ${users.isActive})`;
}

/**
 * The chat a user sends to or approves in: 404 when it does not exist, 403 when it is someone else's (§1.2). The
 * sender must be an active user (401): one statement checks both, for callers known by their token alone.
 */
export async function findChatForSender(
  db: DbOrTx,
  chatId: string,
  userId: string,
  action: ChatSenderAction,
): Promise<Chat> {
  const [row] = await db
    .select({ chat: chats, senderActive: userActive(userId) })
    .from(chats)
    .where(eq(chats.id, chatId))
    .limit(1);
  if (row && !row.senderActive) throw new AppError("UNAUTHORIZED", "User is inactive");
  if (!row) throw chatNotFound();
  if (row.chat.userId !== userId) throw new AppError("FORBIDDEN", SENDER_DENIED[action]);
  return row.chat;
}

/**
 * Owner-filtered lookup: another user's chat is a 404 like a missing one (§1.2). The owner must be active (401),
 * checked in the same statement for callers known by their token alone.
 */
export async function findOwnedChat(db: DbOrTx, chatId: string, userId: string): Promise<Chat> {
  const [row] = await db
    .select({ chat: chats, ownerActive: users.isActive })
    .from(chats)
    .innerJoin(users, eq(users.id, chats.userId))
    .where(and(eq(chats.id, chatId), eq(chats.userId, userId)))
    .limit(1);
  if (!row) throw chatNotFound();
  if (!row.ownerActive) throw new AppError("UNAUTHORIZED", "User is inactive");
  return row.chat;
}

/** Every message of the chat in conversation order. */
const chatMessagesStatement = preparedOnce((db) =>
  db
    .select()
    .from(messages)
    .where(eq(messages.chatId, sql.placeholder("chatId")))
    .orderBy(asc(messages.sequence))
    .prepare("chat_messages"),
);

/** The chat's messages in order; a prepared statement (every turn reads them), best on `statementDb()`. */
export async function listChatMessages(db: Database, chatId: string): Promise<Message[]> {
  return chatMessagesStatement(db).execute({ chatId });
}

/**
 * The chat's messages after sequence `after` in order, each row with the chat's message count (`total`), so that
 * a caller holding the earlier ones can tell whether it missed any; a chat with none after gives one row with
 * `message` null.
 */
const chatMessagesAfterStatement = preparedOnce((db) => {
  const counted = db
    .select({ total: count().as("total") })
    .from(messages)
    .where(eq(messages.chatId, sql.placeholder("chatId")))
    .as("counted");
  return db
    .select({ total: counted.total, message: messages })
    .from(counted)
    .leftJoin(
      messages,
      and(eq(messages.chatId, sql.placeholder("chatId")), gt(messages.sequence, sql.placeholder("after"))),
    )
    .orderBy(asc(messages.sequence))
    .prepare("chat_messages_after");
});

/** The messages added to a chat after sequence `after`, and how many the chat holds in all. */
export async function listChatMessagesAfter(
  db: Database,
  chatId: string,
  after: number,
): Promise<{ added: Message[]; total: number }> {
  const rows = await chatMessagesAfterStatement(db).execute({ chatId, after });
  const added: Message[] = [];
  for (const row of rows) if (row.message) added.push(row.message);
  return { added, total: Number(rows[0]?.total ?? 0) };
}

/**
 * The chat's last message time, or null: the last message by sequence, one step down the (chat_id, sequence)
 * index, where `max(created_at)` read every message of the chat. The chat's object writes its messages one
 * statement after another, so the last by sequence is also the latest.
 */
export async function lastMessageAt(db: DbOrTx, chatId: string): Promise<Date | null> {
  const [row] = await db
    .select({ at: messages.createdAt })
    .from(messages)
    .where(eq(messages.chatId, chatId))
    .orderBy(desc(messages.sequence))
    .limit(1);
  return row?.at ?? null;
}

/**
 * `lastMessageAt` for each chat of a list, as a scalar subquery (evaluated for the page's chats only). Written
 * out: in a select list drizzle leaves columns unqualified, and `"id"` would be the message's.
 */
const lastMessageAtOfChat = () =>
  sql<Date | null>`(select m.created_at from messages m where m.chat_id = "chats"."id"
    order by m.sequence desc limit 1)`.mapWith(messages.createdAt);

export interface ChatListPage {
  skip: number;
  /** No limit when absent (SINAS lists every chat). */
  limit?: number | undefined;
}

/** The user's chats, most recently active first, each with its last message time. */
export async function listChats(
  db: DbOrTx,
  userId: string,
  page: ChatListPage,
): Promise<{ chat: Chat; lastMessageAt: Date | null }[]> {
  // The subquery runs for the page's chats only; a join and `group by` aggregated every message of every chat.
  const query = db
    .select({ chat: chats, lastMessageAt: lastMessageAtOfChat() })
    .from(chats)
    .where(eq(chats.userId, userId))
    .orderBy(desc(chats.updatedAt), desc(chats.id))
    .offset(page.skip);
  return page.limit === undefined ? query : query.limit(page.limit);
}

/** Sets the title when one is given (the update bumps `updated_at`). */
export async function renameChat(db: DbOrTx, chat: Chat, title: string | null | undefined): Promise<Chat> {
  if (title == null) return chat;
  const [updated] = await db.update(chats).set({ title }).where(eq(chats.id, chat.id)).returning();
  if (!updated) throw chatNotFound();
  return updated;
}

/** Deletes the chat; messages and pending approvals go with it, executions keep running history (D-18). */
export async function deleteChat(db: DbOrTx, chat: Chat): Promise<void> {
  await db.delete(chats).where(eq(chats.id, chat.id));
}

/** The chat's agent when it is still active (a soft-deleted agent cannot chat any more). */
export async function findAgentForChat(db: DbOrTx, agentId: string): Promise<Agent | null> {
  const [agent] = await db
    .select()
    .from(agents)
    .where(and(eq(agents.id, agentId), eq(agents.isActive, true)))
    .limit(1);
  return agent ?? null;
}
