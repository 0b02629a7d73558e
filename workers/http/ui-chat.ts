/**
 * @module The request of the Vercel AI SDK's `useChat` (DefaultChatTransport): `{id, messages, trigger?,
 * messageId?}` with UIMessages made of parts. The chat's history lives on the server, so only the last user
 * message is sent; its text and file parts become SINAS content (sinas-spec §5.9).
 */
import { z } from "@hono/zod-openapi";
import { toBase64 } from "../lib/crypto";
import { type AppError, validationError } from "../lib/errors";
import { zodIssuesToFieldIssues } from "../lib/validation";
import { parseDataUrl } from "../llm/content";
import type { ContentPart } from "../llm/types";
import { ContentPartSchema } from "./message-content";

const UiPartSchema = z
  .object({
    type: z.string(),
    text: z.string().optional(),
    url: z.string().optional(),
    mediaType: z.string().optional(),
    filename: z.string().optional(),
    toolCallId: z.string().optional(),
    state: z.string().optional(),
    approval: z.object({ id: z.string(), approved: z.boolean().optional() }).passthrough().optional(),
  })
  .passthrough();

const UiMessageSchema = z
  .object({
    id: z.string().optional(),
    role: z.enum(["system", "user", "assistant"]),
    parts: z.array(UiPartSchema),
  })
  .passthrough();

/**
 * The chat's history lives on the server, where a sent message stays: a `sendMessage` editing a message
 * (`messageId` with a user message last) would store the user message again, answer it again and auto-reject
 * the pending tool approvals, so it is refused before anything happens. `regenerate()` is served: the server
 * drops its latest answer and answers the last user message again (durable-objects/chat-regenerate.ts).
 */
const NO_EDIT =
  "must be left out after a user message: editing or resending it is not supported (the chat's history lives on the server; send a new message instead)";

export const UiChatRequestSchema = z
  .object({
    id: z.uuid({ error: "must be the chat id (a UUID)" }),
    messages: z.array(UiMessageSchema).min(1, "must hold the user message to send"),
    trigger: z
      .enum(["submit-message", "regenerate-message"], {
        error: 'must be "submit-message" or "regenerate-message"',
      })
      .optional()
      .openapi({
        description:
          "`regenerate-message` (useChat's `regenerate()`): the chat's latest answer is dropped and its last user message answered again",
      }),
    messageId: z.string().nullish().openapi({
      description:
        "With `regenerate-message`: the answer to regenerate (only the latest may be). Else only after the assistant's message with answered approvals: editing a sent user message is refused (422)",
    }),
  })
  .passthrough()
  // useChat sets messageId with a user message last only to edit (or resend) that message, or to regenerate.
  .refine(
    (body) =>
      body.trigger === "regenerate-message" ||
      body.messageId == null ||
      body.messages.at(-1)?.role !== "user",
    { path: ["messageId"], error: NO_EDIT },
  )
  .openapi("UiChatRequest");

type UiMessage = z.infer<typeof UiMessageSchema>;

/**
 * What a regenerate's `messageId` names: an answer (`answerId`; null: the latest), or, when it is the id of the
 * user message sent last (useChat keeps a user message it regenerates the answer of), that message's content
 * (`question`), as the server stores it: the client's ids are not the server's.
 */
export function regenerateTargetOf(body: z.infer<typeof UiChatRequestSchema>): {
  answerId: string | null;
  question: string | null;
} {
  const last = body.messages[body.messages.length - 1];
  if (body.messageId == null) return { answerId: null, question: null };
  if (last?.role === "user" && last.id === body.messageId) {
    return { answerId: null, question: messageContentOfUiMessages(body.messages) };
  }
  return { answerId: body.messageId, question: null };
}

/**
 * The tool approvals a client answered (`addToolApprovalResponse`): when the last message is the assistant's,
 * its tool parts in state `approval-responded` carry the decisions. Empty for a new user message.
 */
export function approvalDecisionsOf(messages: UiMessage[]): { toolCallId: string; approved: boolean }[] {
  const last = messages[messages.length - 1];
  if (last?.role !== "assistant") return [];
  return last.parts.flatMap((part) =>
    part.state === "approval-responded" && part.toolCallId && typeof part.approval?.approved === "boolean"
      ? [{ toolCallId: part.toolCallId, approved: part.approval.approved }]
      : [],
  );
}

/** A data: URL's bytes as base64 with its media type: base64 ones as they are, percent-encoded ones encoded. */
function inlineData(url: string): { mediaType: string | undefined; data: string } | null {
  const base64 = parseDataUrl(url);
  if (base64) return base64;
  const plain = /^data:([^;,]*)[^,]*,(.*)$/s.exec(url);
  if (!plain) return null;
  return { mediaType: plain[1] || undefined, data: toBase64(percentDecoded(plain[2] ?? "")) };
}

/** RFC 3986 percent-decoding to bytes (not to text: the bytes need not be UTF-8); other characters as UTF-8. */
function percentDecoded(text: string): Uint8Array {
  const encoder = new TextEncoder();
  const bytes: number[] = [];
  for (const [token] of text.matchAll(/%[0-9a-fA-F]{2}|[^%]+|%/g)) {
    if (token.length === 3 && token.startsWith("%")) bytes.push(Number.parseInt(token.slice(1), 16));
    else for (const byte of encoder.encode(token)) bytes.push(byte);
  }
  return Uint8Array.from(bytes);
}

function partOf(part: UiMessage["parts"][number]): unknown {
  if (part.type === "text" && part.text) return { type: "text", text: part.text };
  if (part.type !== "file" || !part.url) return null;
  if (part.mediaType?.startsWith("image/")) return { type: "image", image: part.url };
  const inline = part.url.startsWith("data:") ? inlineData(part.url) : null;
  if (inline) {
    const mime_type = part.mediaType ?? inline.mediaType;
    return { type: "file", file_data: inline.data, mime_type, filename: part.filename };
  }
  return { type: "file", file_url: part.url, mime_type: part.mediaType, filename: part.filename };
}

/** Fields of a converted part that come from a UI file part's `url`. */
const FROM_URL = new Set(["image", "file_data", "file_url"]);

/**
 * A refused part named where the client put it: `body.messages.<n>.parts.<m>.url` (or `.text`, `.mediaType`...),
 * not by the index and field of the content it was converted to.
 */
function uiPartsError(error: z.ZodError, messageIndex: number, converted: { index: number }[]): AppError {
  return validationError(
    zodIssuesToFieldIssues(error, "body").map((issue) => {
      const [, partIndex, field, ...rest] = issue.loc;
      const index = typeof partIndex === "number" ? converted[partIndex]?.index : undefined;
      if (index === undefined) return issue;
      const uiField = typeof field === "string" && FROM_URL.has(field) ? "url" : field;
      const loc = [
        "body",
        "messages",
        messageIndex,
        "parts",
        index,
        ...(uiField === undefined ? [] : [uiField]),
        ...rest,
      ];
      return { ...issue, loc };
    }),
  );
}

/** The stored content of the last user message: its text, or the JSON of its parts when it has files. */
export function messageContentOfUiMessages(messages: UiMessage[]): string {
  const last = messages[messages.length - 1];
  if (last?.role !== "user") {
    throw validationError([
      {
        loc: ["body", "messages"],
        msg: "the last message must be the user's message to send, or the assistant's with answered tool approvals",
        type: "value_error",
      },
    ]);
  }
  // The parts are held to the rules `POST /chats/{id}/messages` applies (image URLs, file fields...).
  const converted = last.parts.flatMap((part, index) => {
    const content = partOf(part);
    return content === null ? [] : [{ content, index }];
  });
  const parsed = z.array(ContentPartSchema).safeParse(converted.map((part) => part.content));
  if (!parsed.success) throw uiPartsError(parsed.error, messages.length - 1, converted);
  const parts: ContentPart[] = parsed.data;
  if (parts.length === 0 || parts.every((part) => part.type === "text" && !part.text.trim())) {
    throw validationError([
      {
        loc: ["body", "messages"],
        msg: "the last user message has no text or file part",
        type: "value_error",
      },
    ]);
  }
  if (parts.every((part) => part.type === "text")) {
    return parts.map((part) => (part.type === "text" ? part.text : "")).join("\n");
  }
  return JSON.stringify(parts);
}
