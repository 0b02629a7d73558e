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

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Whether `data` is base64 as the API takes it (§5.9): the standard alphabet, padded, nothing else (no line
 * breaks, no URL-safe characters). What the providers decode.
 */
export function isBase64(data: string): boolean {
  return data.length > 0 && data.length % 4 === 0 && BASE64.test(data);
}

/**
 * Whether stored data is base64 a provider decodes. Messages stored before the API checked `isBase64` may hold
 * anything: data the provider refuses would fail every later turn of the chat, which re-sends it, so the
 * conversions replace it with a note. Line breaks (MIME-style base64) are let through, as before.
 */
function decodesAsBase64(data: string): boolean {
  return isBase64(data) || isBase64(data.replace(/[\r\n]/g, ""));
}

/** `file_data` (base64 or a base64 data URL) as its base64 and the data URL's media type; null if it holds none. */
function inlineFileData(fileData: string): { mediaType?: string; data: string } | null {
  const inline = fileData.startsWith("data:") ? parseDataUrl(fileData) : { data: fileData };
  return inline && decodesAsBase64(inline.data) ? inline : null;
}

/** An image data URL's media type (lower case) and base64; null for an image URL, undefined for bad data. */
function inlineImage(image: string): { mediaType: string; data: string } | null | undefined {
  if (!image.startsWith("data:")) return null;
  const inline = parseDataUrl(image);
  return inline && decodesAsBase64(inline.data)
    ? { mediaType: inline.mediaType.toLowerCase(), data: inline.data }
    : undefined;
}

/**
 * The inline image types each provider documents; another (an SVG, HEIC or BMP image) is refused with a 400.
 * Anthropic is sent `image/jpg` as `image/jpeg`; Ollama matches the data URL's prefix, so it gets the URL rebuilt
 * in lower case.
 */
const IMAGE_TYPES: Record<LlmProviderType, ReadonlySet<string>> = {
  openai: new Set(["image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp"]),
  mistral: new Set(["image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp"]),
  anthropic: new Set(["image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp"]),
  ollama: new Set(["image/png", "image/jpeg", "image/jpg", "image/webp"]),
};

/**
 * The image as `provider` takes it: by URL, or a data URL's media type (lower case) and base64; null when the
 * provider refuses it (a type it does not take, data that is not base64). The data URL is read once.
 */
function imageFor(
  image: string,
  provider: LlmProviderType,
): { url: string } | { mediaType: string; data: string } | null {
  const inline = inlineImage(image);
  if (inline === null) return { url: image };
  return inline && IMAGE_TYPES[provider].has(inline.mediaType) ? inline : null;
}

/** The URL an OpenAI-compatible provider is sent for the image (a data URL rebuilt in its usual form), or null. */
function imageUrlFor(image: string, provider: LlmProviderType): string | null {
  const taken = imageFor(image, provider);
  if (!taken) return null;
  return "url" in taken ? taken.url : `data:${taken.mediaType};base64,${taken.data}`;
}

/** File name extensions by media type, for the name OpenAI requires with `file_data`. */
const EXTENSIONS: Record<string, string> = {
  "application/pdf": "pdf",
  "application/json": "json",
  "application/msword": "doc",
  "application/rtf": "rtf",
  "application/vnd.ms-excel": "xls",
  "application/vnd.ms-powerpoint": "ppt",
  "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
  "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
  "text/plain": "txt",
  "text/markdown": "md",
  "text/csv": "csv",
  "text/html": "html",
  "text/xml": "xml",
  "application/xml": "xml",
};

/**
 * A file name for a file sent without one, from its media type (`file.pdf`, `file.docx`, `file.txt`...): OpenAI
 * refuses `file_data` without `filename` (400), and tells the file's kind by its extension.
 */
export function defaultFilename(mediaType: string): string {
  const type = (mediaType.split(";")[0] ?? "").trim().toLowerCase();
  const subtype = type.split("/")[1] ?? "";
  const extension =
    EXTENSIONS[type] ??
    (type.startsWith("text/") ? "txt" : /^[a-z0-9]{1,8}$/.test(subtype) ? subtype : "bin");
  return `file.${extension}`;
}

/** The input_audio formats OpenAI takes; m4a and ogg (§5.9) are refused. */
const OPENAI_AUDIO_FORMATS = new Set(["wav", "mp3"]);

function toOpenAiPart(part: ContentPart): WirePart | null {
  switch (part.type) {
    case "text":
      return { type: "text", text: part.text };
    case "image": {
      const url = imageUrlFor(part.image, "openai");
      return url ? { type: "image_url", image_url: { url, detail: part.detail ?? "auto" } } : null;
    }
    case "audio":
      if (!OPENAI_AUDIO_FORMATS.has(part.format) || !decodesAsBase64(part.data)) return null;
      return { type: "input_audio", input_audio: { data: part.data, format: part.format } };
    case "file": {
      if (part.file_id) return { type: "file", file: { file_id: part.file_id } };
      const inline = part.file_data ? inlineFileData(part.file_data) : null;
      if (!part.file_data || !inline) return null;
      // OpenAI wants a data URL: base64 (§5.9) gets its media type (PDF when none is given).
      const mediaType = inline.mediaType ?? (part.mime_type || "application/pdf");
      const fileData = inline.mediaType ? part.file_data : `data:${mediaType};base64,${inline.data}`;
      return {
        type: "file",
        file: { file_data: fileData, filename: part.filename || defaultFilename(mediaType) },
      };
    }
  }
}

function toMistralPart(part: ContentPart): WirePart | null {
  switch (part.type) {
    case "text":
      return { type: "text", text: part.text };
    case "image": {
      const url = imageUrlFor(part.image, "mistral");
      return url ? { type: "image_url", image_url: url } : null;
    }
    case "audio":
      return decodesAsBase64(part.data) ? { type: "input_audio", input_audio: part.data } : null;
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
    case "image": {
      // Ollama's OpenAI-compatible endpoint takes base64 images only ("image URLs are not currently supported").
      const inline = inlineImage(part.image);
      if (!inline || !IMAGE_TYPES.ollama.has(inline.mediaType)) return null;
      return { type: "image_url", image_url: `data:${inline.mediaType};base64,${inline.data}` };
    }
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

/** `;base64` is case-insensitive (RFC 2397's grammar); the URLs sent on are rebuilt in lower case. */
const DATA_URL = /^data:([^;,]*)(?:;[^,]*)?;base64,(.*)$/is;

/** `data:<media type>;base64,<data>` split into its media type and data; null for any other URL. */
export function parseDataUrl(url: string): { mediaType: string; data: string } | null {
  const match = DATA_URL.exec(url);
  return match ? { mediaType: match[1] || "text/plain", data: match[2] as string } : null;
}

function anthropicImage(part: Extract<ContentPart, { type: "image" }>): WirePart | null {
  const taken = imageFor(part.image, "anthropic");
  if (!taken) return null;
  if ("url" in taken) return { type: "image", source: { type: "url", url: taken.url } };
  const mediaType = taken.mediaType === "image/jpg" ? "image/jpeg" : taken.mediaType;
  return { type: "image", source: { type: "base64", media_type: mediaType, data: taken.data } };
}

function isPdf(part: Extract<ContentPart, { type: "file" }>): boolean {
  return part.mime_type === "application/pdf" || /\.pdf$/i.test(part.filename ?? "");
}

function anthropicDocument(part: Extract<ContentPart, { type: "file" }>): WirePart | null {
  const title = part.filename ? { title: part.filename } : {};
  if (part.file_data) {
    // §5.9 says base64; a data URL (what OpenAI wants) is taken too, its media type with it.
    const inline = inlineFileData(part.file_data);
    if (!inline) return null;
    const mimeType = inline.mediaType ?? part.mime_type;
    const data = inline.data;
    if (mimeType?.startsWith("text/")) {
      // Plain-text documents are sent as text, which Anthropic takes without an encoding step on its side.
      const text = decodeBase64Text(data);
      return text === null
        ? null
        : { type: "document", source: { type: "text", media_type: "text/plain", data: text }, ...title };
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

/** Base64 decoded as UTF-8 text; null when it is not base64 (`atob` throws), for a note instead of a failed turn. */
function decodeBase64Text(data: string): string | null {
  let binary: string;
  try {
    binary = atob(data);
  } catch {
    return null;
  }
  return new TextDecoder().decode(Uint8Array.from(binary, (char) => char.charCodeAt(0)));
}

/**
 * Universal parts as Anthropic content blocks: text; images as base64 (data: URL) or url sources; files as
 * documents (base64 PDF, plain text, or url). Audio, OpenAI file ids, other files, images of other types and
 * data that is not base64 become a note (`omittedPart`); unknown part types pass unchanged.
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
