/**
 * @module A message's content as the API takes it (sinas-spec §5.9): text, or parts. One schema for
 * `POST /chats/{id}/messages` and the parts the AI SDK route turns its files into.
 */
import { z } from "@hono/zod-openapi";

export const ContentPartSchema = z
  .discriminatedUnion("type", [
    z.object({ type: z.literal("text"), text: z.string().min(1, "must not be empty") }),
    z.object({
      type: z.literal("image"),
      image: z
        .string()
        .refine((value) => /^https?:\/\//.test(value) || /^data:image\/[a-z0-9.+-]+;base64,/i.test(value), {
          message: "must be an http(s) URL or a data:image/...;base64, URL",
        }),
      detail: z.enum(["low", "high", "auto"]).optional(),
    }),
    z.object({
      type: z.literal("audio"),
      data: z.string().min(1),
      format: z.enum(["wav", "mp3", "m4a", "ogg"]),
    }),
    z
      .object({
        type: z.literal("file"),
        file_data: z.string().optional(),
        file_url: z.url().optional(),
        file_id: z.string().optional(),
        filename: z.string().optional(),
        mime_type: z.string().optional(),
      })
      .refine((part) => part.file_data || part.file_url || part.file_id, {
        message: "needs file_data, file_url or file_id",
      }),
  ])
  .openapi("ContentPart");

export const MessageContentSchema = z
  .union([
    z.string().refine((text) => text.trim().length > 0, { message: "must not be empty" }),
    z.array(ContentPartSchema).min(1, "must hold at least one part"),
  ])
  .openapi({ description: "Text, or content parts (sinas-spec §5.9)" });
