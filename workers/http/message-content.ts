/**
 * @module A message's content as the API takes it (sinas-spec §5.9): text, or parts. One schema for
 * `POST /chats/{id}/messages` and the parts the AI SDK route turns its files into.
 */
import { z } from "@hono/zod-openapi";
import { isBase64, parseDataUrl } from "../llm/content";

/**
 * Inline data is held to base64 here, before anything is stored: the stored message goes to the model again on
 * every later turn, so data the provider refuses would fail each of them.
 */
const BASE64_MESSAGE = "must be base64 (standard alphabet, padded, no line breaks)";
const IMAGE_DATA_URL = /^data:image\/[a-z0-9.+-]+;base64,/i;

/** `file_data`: base64, or a data URL of base64 (`data:application/pdf;base64,...`). */
function isFileData(value: string): boolean {
  if (!value.startsWith("data:")) return isBase64(value);
  const inline = parseDataUrl(value);
  return inline !== null && isBase64(inline.data);
}

export const ContentPartSchema = z
  .discriminatedUnion("type", [
    z.object({ type: z.literal("text"), text: z.string().min(1, "must not be empty") }),
    z.object({
      type: z.literal("image"),
      image: z
        .string()
        .refine((value) => /^https?:\/\//.test(value) || IMAGE_DATA_URL.test(value), {
          message: "must be an http(s) URL or a data:image/...;base64, URL",
        })
        .refine((value) => !IMAGE_DATA_URL.test(value) || isBase64(parseDataUrl(value)?.data ?? ""), {
          message: `must hold base64 after ';base64,': ${BASE64_MESSAGE}`,
        }),
      detail: z.enum(["low", "high", "auto"]).optional(),
    }),
    z.object({
      type: z.literal("audio"),
      data: z.string().refine(isBase64, { message: BASE64_MESSAGE }),
      format: z.enum(["wav", "mp3", "m4a", "ogg"]),
    }),
    z
      .object({
        type: z.literal("file"),
        file_data: z
          .string()
          .refine(isFileData, { message: `${BASE64_MESSAGE}, or a data:<media type>;base64, URL of it` })
          .optional(),
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
