/**
 * @module Universal message content (sinas-spec §5.9) converted to each provider's wire format: OpenAI, Mistral and
 * Ollama content parts (the table of §5.9), and Anthropic content blocks (SINAS Edge's optional provider, D-30).
 *
 * Conversion is pure: adapters call it for every message they send, so stored messages stay universal.
 */
import type { JsonObject, LlmProviderType } from "../db/schema";
import type { ContentPart } from "./types";

/** A content part or block as the provider receives it. */
export type WirePart = JsonObject;

type OpenAiCompatibleType = Exclude<LlmProviderType, "anthropic">;

const KNOWN_PART_TYPES = new Set(["text", "image", "audio", "file"]);

/** A part of a type §5.9 does not define; such parts pass through every conversion unchanged. */
function isUnknownPart(part: ContentPart): boolean {
  return !KNOWN_PART_TYPES.has((part as { type?: unknown }).type as string);
}

/**
 * What a provider gets instead of a part it cannot take: a note, so that the model knows something was there
 * (and can say so) and a message never goes out empty, which every provider refuses.
 */
export function omittedPart(part: ContentPart, provider: string): WirePart {
  const name = part.type === "file" && part.filename ? ` '${part.filename}'` : "";
  return { type: "text", text: `[${part.type}${name} omitted: ${provider} does not accept it in this form]` };
}

/** `file_data` as OpenAI wants it, a data URL: base64 (§5.9) gets its media type (PDF when none is given). */
function fileDataUrl(part: Extract<ContentPart, { type: "file" }>, data: string): string {
  return data.startsWith("data:") ? data : `data:${part.mime_type ?? "application/pdf"};base64,${data}`;
}

function toOpenAiPart(part: ContentPart): WirePart | null {
  switch (part.type) {
    case "text":
      return { type: "text", text: part.text };
    case "image":
      return { type: "image_url", image_url: { url: part.image, detail: part.detail ?? "auto" } };
    case "audio":
      return { type: "input_audio", input_audio: { data: part.data, format: part.format } };
    case "file":
      if (part.file_id) return { type: "file", file: { file_id: part.file_id } };
      if (part.file_data) {
        return {
          type: "file",
          file: {
            file_data: fileDataUrl(part, part.file_data),
            ...(part.filename && { filename: part.filename }),
          },
        };
      }
      return null;
  }
}

function toMistralPart(part: ContentPart): WirePart | null {
  switch (part.type) {
    case "text":
      return { type: "text", text: part.text };
    case "image":
      return { type: "image_url", image_url: part.image };
    case "audio":
      return { type: "input_audio", input_audio: part.data };
    case "file":
      return part.file_url
        ? { type: "document_url", document_url: part.file_url, document_name: part.filename ?? null }
        : null;
  }
}

function toOllamaPart(part: ContentPart): WirePart | null {
  switch (part.type) {
    case "text":
      return { type: "text", text: part.text };
    case "image":
      // Ollama's OpenAI-compatible endpoint takes base64 images only ("image URLs are not currently supported").
      return part.image.startsWith("data:") ? { type: "image_url", image_url: part.image } : null;
    case "audio":
    case "file":
      return null;
  }
}

const CONVERTERS: Record<OpenAiCompatibleType, (part: ContentPart) => WirePart | null> = {
  openai: toOpenAiPart,
  mistral: toMistralPart,
  ollama: toOllamaPart,
};

/**
 * Universal parts as OpenAI-compatible content parts for `providerType` (§5.9). Parts the provider cannot take are
 * replaced by a note (`omittedPart`), parts of unknown types pass unchanged, and an unknown provider type gets the
 * array as it is.
 *
 * @example
 * toOpenAiCompatibleParts([{ type: "image", image: "https://x/y.png" }], "mistral");
 * // [{ type: "image_url", image_url: "https://x/y.png" }]
 */
export function toOpenAiCompatibleParts(parts: ContentPart[], providerType: string): WirePart[] {
  const convert = CONVERTERS[providerType.toLowerCase() as OpenAiCompatibleType] as
    | ((part: ContentPart) => WirePart | null)
    | undefined;
  if (!convert) return parts as unknown as WirePart[];
  return parts.map((part) =>
    isUnknownPart(part) ? (part as unknown as WirePart) : (convert(part) ?? omittedPart(part, providerType)),
  );
}

const DATA_URL = /^data:([^;,]*)(?:;[^,]*)?;base64,(.*)$/s;

/** `data:<media type>;base64,<data>` split into its media type and data; null for any other URL. */
export function parseDataUrl(url: string): { mediaType: string; data: string } | null {
  const match = DATA_URL.exec(url);
  return match ? { mediaType: match[1] || "text/plain", data: match[2] as string } : null;
}

function anthropicImage(part: Extract<ContentPart, { type: "image" }>): WirePart {
  const inline = parseDataUrl(part.image);
  return inline
    ? { type: "image", source: { type: "base64", media_type: inline.mediaType, data: inline.data } }
    : { type: "image", source: { type: "url", url: part.image } };
}

function isPdf(part: Extract<ContentPart, { type: "file" }>): boolean {
  return part.mime_type === "application/pdf" || /\.pdf$/i.test(part.filename ?? "");
}

function anthropicDocument(part: Extract<ContentPart, { type: "file" }>): WirePart | null {
  const title = part.filename ? { title: part.filename } : {};
  if (part.file_data) {
    // §5.9 says base64; a data URL (what OpenAI wants) is taken too, its media type with it.
    const inline = parseDataUrl(part.file_data);
    const mimeType = inline?.mediaType ?? part.mime_type;
    const data = inline?.data ?? part.file_data;
    if (mimeType?.startsWith("text/")) {
      // Plain-text documents are sent as text, which Anthropic takes without an encoding step on its side.
      return {
        type: "document",
        source: { type: "text", media_type: "text/plain", data: decodeBase64Text(data) },
        ...title,
      };
    }
    // Anthropic documents are PDFs (or text): a file without a media type is sent as a PDF, its usual kind; one of
    // another type (a Word file...) is not taken.
    if (mimeType && !isPdf({ ...part, mime_type: mimeType })) return null;
    return { type: "document", source: { type: "base64", media_type: "application/pdf", data }, ...title };
  }
  if (part.file_url) return { type: "document", source: { type: "url", url: part.file_url }, ...title };
  // An OpenAI `file_id` means nothing to Anthropic.
  return null;
}

function decodeBase64Text(data: string): string {
  const binary = atob(data);
  return new TextDecoder().decode(Uint8Array.from(binary, (char) => char.charCodeAt(0)));
}

/**
 * Universal parts as Anthropic content blocks: text; images as base64 (data: URL) or url sources; files as
 * documents (base64 PDF, plain text, or url). Audio, OpenAI file ids and other files become a note
 * (`omittedPart`); unknown part types pass unchanged.
 *
 * @example
 * toAnthropicBlocks([{ type: "image", image: "data:image/png;base64,iVBO..." }]);
 * // [{ type: "image", source: { type: "base64", media_type: "image/png", data: "iVBO..." } }]
 */
export function toAnthropicBlocks(parts: ContentPart[]): WirePart[] {
  const blocks: WirePart[] = [];
  for (const part of parts) {
    if (isUnknownPart(part)) {
      blocks.push(part as unknown as WirePart);
      continue;
    }
    const block =
      part.type === "text"
        ? { type: "text", text: part.text }
        : part.type === "image"
          ? anthropicImage(part)
          : part.type === "file"
            ? anthropicDocument(part)
            : null;
    blocks.push(block ?? omittedPart(part, "anthropic"));
  }
  return blocks;
}

/** The text of universal content: the string itself, or its text parts joined by blank lines. */
export function textOf(content: string | ContentPart[] | null): string {
  if (content === null) return "";
  if (typeof content === "string") return content;
  return content
    .filter((part): part is Extract<ContentPart, { type: "text" }> => part.type === "text")
    .map((part) => part.text)
    .join("\n\n");
}
