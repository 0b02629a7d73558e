/**
 * @module Runtime chats (sinas-spec §1.2, §5.2 with D-3, D-18, D-24): create a chat with an agent, and list, read,
 * rename and delete your own chats. Sending messages and approving tools live in ./chat-turns.ts.
 *
 * Authentication is per route (`middleware`), not a `/chats/*` `use()`: the chat-turn routes share the prefix
 * and authenticate themselves, so a prefix middleware here would authenticate their requests twice.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { accessScope } from "../auth/access";
import { permissions } from "../auth/catalogue";
import { AppError } from "../lib/errors";
import { findActiveAgent } from "../services/agents";
import {
  deleteChat,
  findOwnedChat,
  lastMessageAt,
  lastMessageTime,
  listChatMessages,
  listChats,
  openChatForAgent,
  renameChat,
  toChatResponse,
  toMessageResponse,
} from "../services/chats";
import { authenticate, principalOf, recordPermission } from "./auth";
import { createRouter, errorResponse } from "./router";
import { jsonBody, jsonResponse, UuidSchema } from "./schemas";

const security = [{ bearerAuth: [] }];
const tags = ["Chats"];
const middleware = [authenticate];

const TitleSchema = z.string().min(1).max(500);

const ChatCreateSchema = z
  .object({
    input: z.record(z.string(), z.unknown()).nullish().openapi({
      type: "object",
      description: "Validated against the agent's input_schema; renders its prompt",
    }),
    title: TitleSchema.nullish().openapi({ description: "Default: `Chat with {namespace}/{agent_name}`" }),
  })
  .strict()
  .openapi("ChatCreate");

const ChatUpdateSchema = z.object({ title: TitleSchema.nullish() }).strict().openapi("ChatUpdate");

const ChatSchema = z
  .object({
    id: z.uuid(),
    user_id: z.uuid(),
    user_email: z.string(),
    group_id: z.uuid().nullable(),
    agent_id: z.uuid().nullable(),
    agent_namespace: z.string().nullable(),
    agent_name: z.string().nullable(),
    title: z.string(),
    created_at: z.string(),
    updated_at: z.string(),
    last_message_at: z.string().nullable(),
  })
  .openapi("ChatResponse");

export const MessageResponseSchema = z
  .object({
    id: z.uuid(),
    chat_id: z.uuid(),
    role: z.enum(["user", "assistant", "system", "tool"]),
    content: z
      .string()
      .nullable()
      .openapi({ description: "Text, or a JSON string of content parts or of a tool result" }),
    tool_calls: z
      .array(
        z.object({
          id: z.string(),
          type: z.literal("function"),
          function: z.object({ name: z.string(), arguments: z.string() }),
          index: z.number().int().optional(),
        }),
      )
      .nullable(),
    tool_call_id: z.string().nullable(),
    name: z.string().nullable(),
    created_at: z.string(),
  })
  .openapi("MessageResponse");

const ChatWithMessagesSchema = ChatSchema.extend({ messages: z.array(MessageResponseSchema) }).openapi(
  "ChatWithMessages",
);

const AgentChatParams = z.object({
  namespace: z.string().min(1).max(255).openapi({ example: "default" }),
  agent_name: z.string().min(1).max(255).openapi({ example: "helper" }),
});
const ChatIdParams = z.object({ chat_id: UuidSchema });
const ChatListQuery = z.object({
  skip: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(1000).optional().openapi({ description: "Default: every chat" }),
});

/**
 * A chat's input is the variables of its agent's templates, rendered every model call: small structured
 * values (documents belong in messages), so its body is bounded.
 */
export const MAX_CHAT_INPUT_BYTES = 256 * 1024;
const inputLimit = bodyLimit({
  maxSize: MAX_CHAT_INPUT_BYTES,
  onError: () => {
    throw new AppError("PAYLOAD_TOO_LARGE", `The request body exceeds ${MAX_CHAT_INPUT_BYTES / 1024} KiB`);
  },
});

const createChatRoute = createRoute({
  method: "post",
  path: "/agents/{namespace}/{agent_name}/chats",
  tags,
  security,
  middleware: [...middleware, inputLimit] as const,
  summary: "Start a chat with an agent (sinas.agents.{namespace}.{agent_name}.read:{own|group|all})",
  request: { params: AgentChatParams, body: jsonBody(ChatCreateSchema) },
  responses: {
    200: jsonResponse(ChatSchema, "The new chat"),
    400: errorResponse(
      "`Input validation failed: ...`, or the agent's templates do not render with the input",
    ),
    403: errorResponse("Not allowed to use the agent"),
    404: errorResponse("Unknown or deleted agent"),
    413: errorResponse("The body exceeds 256 KiB"),
    422: errorResponse("Invalid fields"),
  },
});
const listRoute = createRoute({
  method: "get",
  path: "/chats",
  tags,
  security,
  middleware,
  summary: "Your chats, most recently active first",
  request: { query: ChatListQuery },
  responses: { 200: jsonResponse(z.array(ChatSchema), "Chats") },
});
const getRoute = createRoute({
  method: "get",
  path: "/chats/{chat_id}",
  tags,
  security,
  middleware,
  summary: "One of your chats with its messages in order",
  request: { params: ChatIdParams },
  responses: {
    200: jsonResponse(ChatWithMessagesSchema, "Chat"),
    404: errorResponse("Unknown, or someone else's"),
  },
});
const updateRoute = createRoute({
  method: "put",
  path: "/chats/{chat_id}",
  tags,
  security,
  middleware,
  summary: "Rename one of your chats",
  request: { params: ChatIdParams, body: jsonBody(ChatUpdateSchema) },
  responses: {
    200: jsonResponse(ChatSchema, "Updated"),
    404: errorResponse("Unknown, or someone else's"),
    422: errorResponse("Invalid fields"),
  },
});
const deleteRoute = createRoute({
  method: "delete",
  path: "/chats/{chat_id}",
  tags,
  security,
  middleware,
  summary:
    "Delete one of your chats with its messages and pending approvals (executions keep running history)",
  request: { params: ChatIdParams },
  responses: { 204: { description: "Deleted" }, 404: errorResponse("Unknown, or someone else's") },
});

export const chatsRouter = createRouter();

chatsRouter
  .openapi(createChatRoute, async (c) => {
    const { namespace, agent_name: name } = c.req.valid("param");
    const body = c.req.valid("json");
    const principal = principalOf(c);
    const db = c.get("services").db();
    const agent = await findActiveAgent(db, namespace, name);
    if (!agent) throw new AppError("NOT_FOUND", `Agent '${namespace}/${name}' not found`);
    // D-3: the group scope needs membership of the agent's group.
    const scope = accessScope(principal, (s) => permissions.agentRead(namespace, name, s), agent);
    recordPermission(c, permissions.agentRead(namespace, name, scope ?? "own"), scope !== null);
    if (scope === null) throw new AppError("FORBIDDEN", `Not authorized to use agent '${namespace}/${name}'`);
    const opened = await openChatForAgent(db, {
      agent,
      userId: principal.user.id,
      groupId: agent.groupId,
      title: body.title ?? `Chat with ${namespace}/${name}`,
      input: body.input,
    });
    // The chat's object sets up its storage now, not during the first message (not awaited: nothing depends on it).
    const session = c.env.CHAT_SESSION.get(c.env.CHAT_SESSION.idFromName(opened.chat.id));
    c.executionCtx.waitUntil(session.prepare());
    const summary = { userEmail: principal.user.email, lastMessageAt: lastMessageTime(opened.messages) };
    return c.json(toChatResponse(opened.chat, summary), 200);
  })
  .openapi(listRoute, async (c) => {
    recordPermission(c, permissions.chats("get"));
    const principal = principalOf(c);
    const rows = await listChats(c.get("services").db(), principal.user.id, c.req.valid("query"));
    return c.json(
      rows.map((row) =>
        toChatResponse(row.chat, { userEmail: principal.user.email, lastMessageAt: row.lastMessageAt }),
      ),
      200,
    );
  })
  .openapi(getRoute, async (c) => {
    recordPermission(c, permissions.chats("get"));
    const principal = principalOf(c);
    const db = c.get("services").db();
    const chat = await findOwnedChat(db, c.req.valid("param").chat_id, principal.user.id);
    const messages = await listChatMessages(c.get("services").statementDb(), chat.id);
    const summary = { userEmail: principal.user.email, lastMessageAt: lastMessageTime(messages) };
    return c.json({ ...toChatResponse(chat, summary), messages: messages.map(toMessageResponse) }, 200);
  })
  .openapi(updateRoute, async (c) => {
    recordPermission(c, permissions.chats("put"));
    const principal = principalOf(c);
    const db = c.get("services").db();
    const chat = await findOwnedChat(db, c.req.valid("param").chat_id, principal.user.id);
    const [renamed, lastAt] = await Promise.all([
      renameChat(db, chat, c.req.valid("json").title),
      lastMessageAt(db, chat.id),
    ]);
    return c.json(toChatResponse(renamed, { userEmail: principal.user.email, lastMessageAt: lastAt }), 200);
  })
  .openapi(deleteRoute, async (c) => {
    recordPermission(c, permissions.chats("delete"));
    const principal = principalOf(c);
    const db = c.get("services").db();
    const chat = await findOwnedChat(db, c.req.valid("param").chat_id, principal.user.id);
    // The running turn stops first and the stream log goes with the chat (it holds the chat's content).
    await c.env.CHAT_SESSION.get(c.env.CHAT_SESSION.idFromName(chat.id)).forget();
    await deleteChat(db, chat);
    return c.body(null, 204);
  });
