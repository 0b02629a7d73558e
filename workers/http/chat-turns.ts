/**
 * @module Chat turns (sinas-spec §1.2, §5.4-5.7): send a message (whole answer, or streamed as SSE), approve or
 * reject a paused tool call, stop the running turn, and watch or resume the chat's stream (SSE with
 * `Last-Event-ID`, or a WebSocket). Also the Vercel AI SDK UI-message stream for `useChat` (see `/ui/chats`).
 * Every call is authorized here; the chat's ChatSession Durable Object runs the turn.
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { VIEWER_UNTIL_HEADER } from "../../durable-objects/chat-viewers";
import { permissions } from "../auth/catalogue";
import { AppError } from "../lib/errors";
import { zodValidationError } from "../lib/validation";
import type { ContentPart } from "../llm/types";
import { findChatForSender, findOwnedChat } from "../services/chats";
import type { AppEnv } from "./app-env";
import { apiKeyOf, authenticateSender, recordPermission, senderIdOf, WEBSOCKET_TOKEN_PREFIX } from "./auth";
import { MessageResponseSchema } from "./chats";
import { MessageContentSchema } from "./message-content";
import { createRouter, errorResponse } from "./router";
import { jsonBody, jsonResponse } from "./schemas";
import {
  approvalDecisionsOf,
  messageContentOfUiMessages,
  regenerateTargetOf,
  UiChatRequestSchema,
} from "./ui-chat";

const security = [{ bearerAuth: [] }];
const tags = ["Chats"];

/** One message, with its images or files inline, must fit; larger content is a 413 before anything is saved. */
export const MAX_MESSAGE_BYTES = 2 * 1024 * 1024;

const MessageCreateSchema = z.object({ content: MessageContentSchema }).openapi("MessageCreate");

const ChatParams = z.object({ chat_id: z.uuid({ error: "must be a UUID" }) });
const ApproveParams = ChatParams.extend({ tool_call_id: z.string().min(1).max(255) });
const ApprovalSchema = z.object({ approved: z.boolean() }).openapi("ToolApproval");
const ApprovalResultSchema = z
  .object({ status: z.enum(["approved", "rejected"]), tool_call_id: z.string(), message: z.string() })
  .openapi("ToolApprovalResult");
const StopResultSchema = z
  .object({ stopped: z.boolean(), turn_id: z.string().nullable() })
  .openapi("ChatStopResult");
/** An event id (`?after=`, `Last-Event-ID`): the sequence of the last event the client has. */
const EventIdSchema = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const StreamQuery = z.object({
  after: EventIdSchema.optional().openapi({ description: "Same as Last-Event-ID" }),
  format: z.enum(["sinas", "ui"]).default("sinas"),
});
const SocketQuery = z.object({ after: EventIdSchema.optional() });
const LastEventIdHeader = z.object({ "last-event-id": EventIdSchema.optional() });

const sseResponse = (description: string) => ({
  description,
  content: { "text/event-stream": { schema: z.string() } },
});

function contentText(content: string | ContentPart[]): string {
  return typeof content === "string" ? content : JSON.stringify(content);
}

/** A UI-message stream that only says there is nothing to run yet. */
function uiStreamWithoutTurn(): Response {
  const frames = [{ type: "start" }, { type: "finish" }].map((part) => `data: ${JSON.stringify(part)}\n\n`);
  return new Response(`${frames.join("")}data: [DONE]\n\n`, {
    headers: { "content-type": "text/event-stream", "x-vercel-ai-ui-message-stream": "v1" },
  }) as never;
}

function chatSession(c: Context<AppEnv>, chatId: string) {
  return c.env.CHAT_SESSION.get(c.env.CHAT_SESSION.idFromName(chatId));
}

function raise(failure: { code: AppError["code"]; message: string }): never {
  throw new AppError(failure.code, failure.message);
}

/** `Last-Event-ID` (an empty one is none), checked as `?after=` is. */
function lastEventIdOf(c: Context<AppEnv>): number | undefined {
  const header = c.req.header("last-event-id");
  if (!header) return undefined;
  const parsed = LastEventIdHeader.safeParse({ "last-event-id": header });
  if (!parsed.success) throw zodValidationError(parsed.error, "header");
  return parsed.data["last-event-id"];
}

const sendRoute = createRoute({
  method: "post",
  path: "/chats/{chat_id}/messages",
  tags,
  security,
  summary: "Send a message and wait for the agent's final answer (tool rounds included)",
  request: { params: ChatParams, body: jsonBody(MessageCreateSchema) },
  responses: {
    200: jsonResponse(MessageResponseSchema, "The final assistant message"),
    403: errorResponse("Not your chat"),
    404: errorResponse("No such chat"),
    409: errorResponse("A turn is running, or a called function requires approval (use streaming)"),
    413: errorResponse("Message too large"),
    422: errorResponse("Invalid content"),
    500: errorResponse("The LLM provider failed"),
  },
});

const streamRoute = createRoute({
  method: "post",
  path: "/chats/{chat_id}/messages/stream",
  tags,
  security,
  summary:
    "Send a message and stream the turn as SSE (`message`, `tool_result`, `done`, `error`; `id:` = sequence)",
  request: { params: ChatParams, body: jsonBody(MessageCreateSchema) },
  responses: {
    200: sseResponse("The turn's events"),
    403: errorResponse("Not your chat"),
    404: errorResponse("No such chat"),
    409: errorResponse("A turn is already running"),
    413: errorResponse("Message too large"),
    422: errorResponse("Invalid content"),
  },
});

const resumeRoute = createRoute({
  method: "get",
  path: "/chats/{chat_id}/stream",
  tags,
  security,
  summary:
    "Watch or resume the chat's stream: events after Last-Event-ID (or ?after=), then live until the turn ends; without either, the latest turn from its start. 204 when there is none",
  request: { params: ChatParams, query: StreamQuery },
  responses: {
    200: sseResponse("The turn's events"),
    204: { description: "No turn to follow" },
    400: errorResponse("The event id is beyond the chat's last event"),
    404: errorResponse("No such chat"),
    422: errorResponse("The event id is not a whole number"),
  },
});

const stopRoute = createRoute({
  method: "post",
  path: "/chats/{chat_id}/stop",
  tags,
  security,
  summary: "Stop the running turn server-side; the partial answer is saved and every viewer sees the end",
  request: { params: ChatParams },
  responses: {
    200: jsonResponse(StopResultSchema, "Whether a turn was stopped"),
    404: errorResponse("No such chat"),
  },
});

const approveRoute = createRoute({
  method: "post",
  path: "/chats/{chat_id}/approve-tool/{tool_call_id}",
  tags,
  security,
  summary:
    "Approve or reject a paused tool call; once every call of that message is decided, the approved ones run and the turn goes on",
  request: { params: ApproveParams, body: jsonBody(ApprovalSchema) },
  responses: {
    200: jsonResponse(ApprovalResultSchema, "Decision recorded (and the turn continued)"),
    403: errorResponse("Not your chat"),
    404: errorResponse("No such chat or pending approval"),
    409: errorResponse("A turn is running"),
    500: errorResponse("The approved call could not be run"),
  },
});

const uiChatRoute = createRoute({
  method: "post",
  path: "/ui/chats",
  tags,
  security,
  summary:
    "Vercel AI SDK `useChat` endpoint: body `{id: <chat id>, messages: UIMessage[]}`; the last user message is sent and the turn streams as a UI-message stream (v1). When the last message is the assistant's with answered tool approvals (`addToolApprovalResponse`), those decisions are recorded and the continued turn streams. `trigger: regenerate-message` (`regenerate()`) drops the chat's latest answer and streams a new one to its last user message",
  request: { body: jsonBody(UiChatRequestSchema) },
  responses: {
    200: sseResponse("UI-message stream (`x-vercel-ai-ui-message-stream: v1`)"),
    404: errorResponse("No such chat"),
    409: errorResponse("A turn is already running"),
    422: errorResponse(
      "No user message to send, an edit of a sent message (`messageId`), or a regenerate of another than the latest answer",
    ),
  },
});

const uiResumeRoute = createRoute({
  method: "get",
  path: "/ui/chats/{chat_id}/stream",
  tags,
  security,
  summary:
    "`useChat({resume: true})`: the running turn's UI-message stream from its start; 204 when none runs",
  request: { params: ChatParams },
  responses: { 200: sseResponse("UI-message stream"), 204: { description: "No running turn" } },
});

export const chatTurnsRouter = createRouter();
const tooLarge = () => {
  throw new AppError("PAYLOAD_TOO_LARGE", `The message exceeds ${MAX_MESSAGE_BYTES / 1024 / 1024} MiB`);
};
/**
 * `text` as a header value: its first 1000 characters (code points, so no surrogate pair is cut), anything but
 * printable ASCII (and `%`) percent-encoded as UTF-8.
 */
function headerSafe(text: string): string {
  // In unicode mode the class matches lone surrogates only, which encodeURIComponent refuses.
  const start = Array.from(text)
    .slice(0, 1000)
    .join("")
    .replace(/[\uD800-\uDFFF]/gu, "\uFFFD");
  return start.replace(/[^\x20-\x24\x26-\x7e]/gu, (char) => encodeURIComponent(char));
}

// Every route's first statement (the chat's lookup, or the turn's own) checks the caller: see authenticateSender.
for (const path of ["/chats/*", "/ui/*"]) {
  chatTurnsRouter.use(path, authenticateSender);
  chatTurnsRouter.use(path, bodyLimit({ maxSize: MAX_MESSAGE_BYTES, onError: tooLarge }));
}

/** A live viewer over WebSocket (hibernatable): frames `{id, event, data}` as in the SSE stream. */
chatTurnsRouter.get("/chats/:chat_id/ws", async (c) => {
  recordPermission(c, permissions.chats("get"));
  if (c.req.header("upgrade")?.toLowerCase() !== "websocket")
    throw new AppError("BAD_REQUEST", "Expected a WebSocket upgrade");
  const params = ChatParams.safeParse({ chat_id: c.req.param("chat_id") });
  if (!params.success) throw zodValidationError(params.error, "path");
  const chatId = params.data.chat_id;
  await findOwnedChat(c.var.services.statementDb(), chatId, senderIdOf(c));
  await c.var.services.releaseDb();
  const url = new URL("https://chat-session/ws");
  const query = SocketQuery.safeParse({ after: c.req.query("after") || undefined });
  if (!query.success) throw zodValidationError(query.error, "query");
  if (query.data.after !== undefined) url.searchParams.set("after", String(query.data.after));
  // The viewer sees events until its credentials would need checking again (ChatViewers closes it then).
  const headers = new Headers(c.req.raw.headers);
  const recheckMs = c.var.services.config.ACCESS_TOKEN_EXPIRE_MINUTES * 60_000;
  headers.set(VIEWER_UNTIL_HEADER, String(c.get("sender")?.expiresAt ?? Date.now() + recheckMs));
  const response = await chatSession(c, chatId).fetch(new Request(url, { headers }));
  // A browser that offered protocols (its token among them) needs one of them echoed, never the token.
  const offered = (c.req.header("sec-websocket-protocol") ?? "")
    .split(",")
    .map((protocol) => protocol.trim())
    .find((protocol) => protocol && !protocol.startsWith(WEBSOCKET_TOKEN_PREFIX));
  if (!offered || !response.webSocket) return response;
  return new Response(null, {
    status: 101,
    webSocket: response.webSocket,
    headers: { "sec-websocket-protocol": offered },
  });
});

chatTurnsRouter
  .openapi(sendRoute, async (c) => {
    recordPermission(c, permissions.chats("write"));
    const { chat_id } = c.req.valid("param");
    const { content } = c.req.valid("json");
    const userId = senderIdOf(c);
    // The ChatSession checks that the caller owns the chat and is active; the turn may take long, and this
    // request's Postgres connection is not needed meanwhile.
    await c.var.services.releaseDb();
    const answer = await chatSession(c, chat_id).sendMessage({
      chatId: chat_id,
      userId,
      content: contentText(content),
      mode: "complete",
      apiKey: apiKeyOf(c),
    });
    if (!answer.ok) raise(answer);
    // Stopped before any answer text (during the model's first words, or while tools ran): nothing to return.
    if (answer.status === "stopped" && (!answer.message || answer.message.tool_calls?.length)) {
      throw new AppError("CONFLICT", "The turn was stopped before the assistant answered");
    }
    if (!answer.message) throw new AppError("INTERNAL", "The turn ended without an answer");
    if (answer.outputErrors) c.header("X-Output-Schema-Errors", headerSafe(answer.outputErrors));
    return c.json(answer.message, 200);
  })
  .openapi(streamRoute, async (c) => {
    recordPermission(c, permissions.chats("write"));
    const { chat_id } = c.req.valid("param");
    const { content } = c.req.valid("json");
    const userId = senderIdOf(c);
    // The pool is kept: the request log reuses its connection as soon as the stream's headers are out.
    const stream = await chatSession(c, chat_id).startTurnStream(
      { chatId: chat_id, userId, content: contentText(content), apiKey: apiKeyOf(c) },
      "sinas",
    );
    if (!(stream instanceof Response)) raise(stream);
    return stream as never;
  })
  .openapi(resumeRoute, async (c) => {
    recordPermission(c, permissions.chats("get"));
    const { chat_id } = c.req.valid("param");
    const { after, format } = c.req.valid("query");
    await findOwnedChat(c.var.services.statementDb(), chat_id, senderIdOf(c));
    await c.var.services.releaseDb();
    const lastEventId = lastEventIdOf(c);
    const stream = await chatSession(c, chat_id).openStream({
      after: lastEventId ?? after ?? null,
      format,
      activeOnly: false,
    });
    if (!(stream instanceof Response)) raise(stream);
    return stream as never;
  })
  .openapi(stopRoute, async (c) => {
    recordPermission(c, permissions.chats("write"));
    const { chat_id } = c.req.valid("param");
    await findOwnedChat(c.var.services.statementDb(), chat_id, senderIdOf(c));
    await c.var.services.releaseDb();
    return c.json(await chatSession(c, chat_id).stop(), 200);
  })
  .openapi(approveRoute, async (c) => {
    recordPermission(c, permissions.chats("write"));
    const { chat_id, tool_call_id } = c.req.valid("param");
    const { approved } = c.req.valid("json");
    const userId = senderIdOf(c);
    await findChatForSender(c.var.services.statementDb(), chat_id, userId, "approve");
    await c.var.services.releaseDb();
    const answer = await chatSession(c, chat_id).decideApproval({
      chatId: chat_id,
      userId,
      toolCallId: tool_call_id,
      approved,
      apiKey: apiKeyOf(c),
    });
    if (!answer.ok) raise(answer);
    const { ok: _ok, ...body } = answer;
    return c.json(body, 200);
  })
  .openapi(uiChatRoute, async (c) => {
    recordPermission(c, permissions.chats("write"));
    const body = c.req.valid("json");
    const userId = senderIdOf(c);
    const apiKey = apiKeyOf(c);
    const session = chatSession(c, body.id);
    if (body.trigger === "regenerate-message") {
      const request = { chatId: body.id, userId, apiKey };
      const stream = await session.regenerateTurnStream(request, regenerateTargetOf(body), "ui");
      if (!(stream instanceof Response)) raise(stream);
      return stream as never;
    }
    const decisions = approvalDecisionsOf(body.messages);
    if (decisions.length > 0) {
      // As for approve-tool: only the chat's owner decides (recording comes before the turn's own check).
      await findChatForSender(c.var.services.statementDb(), body.id, userId, "approve");
      await c.var.services.releaseDb();
      const decided = await session.decideApprovals({
        chatId: body.id,
        userId,
        decisions,
        apiKey,
      });
      if (!decided.ok) raise(decided);
      // Other calls of that message still wait for a decision: nothing runs yet.
      if ("waiting" in decided) return uiStreamWithoutTurn();
      return (await session.followTurn(decided.turnId, decided.afterSeq, "ui")) as never;
    }
    const stream = await session.startTurnStream(
      { chatId: body.id, userId, content: messageContentOfUiMessages(body.messages), apiKey },
      "ui",
    );
    if (!(stream instanceof Response)) raise(stream);
    return stream as never;
  })
  .openapi(uiResumeRoute, async (c) => {
    recordPermission(c, permissions.chats("get"));
    const { chat_id } = c.req.valid("param");
    await findOwnedChat(c.var.services.statementDb(), chat_id, senderIdOf(c));
    await c.var.services.releaseDb();
    const stream = await chatSession(c, chat_id).openStream({ after: null, format: "ui", activeOnly: true });
    if (!(stream instanceof Response)) raise(stream);
    return stream as never;
  });
