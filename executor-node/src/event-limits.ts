/**
 * @module Size bounds on the events a job sends to the API (PROTOCOL.md §3). Every queued event sits in the
 * executor's memory until posted, and the API refuses a callback over its body limit (the post is then
 * dropped, a result with it). So a step's input and output, and every error, traceback and prompt, are cut
 * to MAX_FIELD_BYTES here, whatever the runtime sent: the runtime cuts them too, but user code can write to
 * its socket directly.
 */
import { type ResultEvent, resultSizeProblem, type Step } from "../../workers/lib/executor-protocol";

/** The most a step's input or output (UTF-8 bytes of its JSON), or an error, traceback or prompt, keeps. */
export const MAX_FIELD_BYTES = 64 * 1024;
/** The most a step's short strings (ids, names, timestamps) keep; honest ones are far smaller. */
export const MAX_LABEL_BYTES = 1024;
/** Ends a text that was cut. */
export const TRUNCATED_MARKER = "…[truncated]";
const MARKER_BYTES = Buffer.byteLength(TRUNCATED_MARKER);

/** What replaces a JSON value over the bound: its size and the start of its JSON text. */
export interface TruncatedValue {
  truncated: true;
  /** UTF-8 bytes of the whole value's JSON; null when it is nested too deeply to be written as JSON. */
  bytes: number | null;
  preview: string;
}

/** The preview of a value nested too deeply for JSON.stringify. */
export const TOO_DEEP_PREVIEW = "(nested too deeply to be written as JSON)";

/**
 * JSON.stringify, or null when the value is nested too deeply for it: V8 throws RangeError when its stack runs
 * out (about 4000 levels). Such a value counts as too large everywhere; it must never throw out of a handler.
 */
function stringify(value: unknown): string | undefined | null {
  try {
    return JSON.stringify(value);
  } catch (error) {
    if (error instanceof RangeError) return null;
    throw error;
  }
}

/** `text` when it fits in `maxBytes` of UTF-8, else its start cut at a character boundary plus the marker. */
export function truncateText(text: string, maxBytes = MAX_FIELD_BYTES): string {
  // A UTF-16 unit is at most 3 UTF-8 bytes: only a text that may be over the bound is encoded to measure it.
  if (text.length * 3 <= maxBytes) return text;
  // The first `maxBytes` units encode to at least `maxBytes` bytes: enough to cut from, without encoding all.
  const head = Buffer.from(text.slice(0, maxBytes + 1));
  if (head.length <= maxBytes && text.length <= maxBytes) return text;
  let end = Math.max(0, maxBytes - MARKER_BYTES);
  while (end > 0 && ((head[end] ?? 0) & 0xc0) === 0x80) end--; // not inside a character
  return `${head.subarray(0, end).toString("utf8")}${TRUNCATED_MARKER}`;
}

/** UTF-8 bytes of `value` as JSON (`undefined` counts as nothing; too deep a value as Infinity). */
export function jsonBytes(value: unknown): number {
  const json = stringify(value);
  if (json === null) return Number.POSITIVE_INFINITY;
  return json === undefined ? 0 : Buffer.byteLength(json);
}

/** `value` when its JSON fits in `maxBytes`, else a TruncatedValue no larger than that. */
export function truncateJson(value: unknown, maxBytes = MAX_FIELD_BYTES): unknown {
  const json = stringify(value);
  if (json === null) {
    const tooDeep: TruncatedValue = { truncated: true, bytes: null, preview: TOO_DEEP_PREVIEW };
    return tooDeep;
  }
  if (json === undefined || json.length * 3 <= maxBytes) return value;
  const bytes = Buffer.byteLength(json);
  if (bytes <= maxBytes) return value;
  // JSON-escaping the preview at most doubles it (`"` and `\`); the rest of the object takes under 100 bytes.
  const preview = truncateText(json, Math.max(0, Math.floor((maxBytes - 100) / 2)));
  const truncated: TruncatedValue = { truncated: true, bytes, preview };
  return truncated;
}

/** The step with every field cut to its bound. */
export function boundStep(step: Step): Step {
  const label = (text: string) => truncateText(text, MAX_LABEL_BYTES);
  const optionalLabel = (text: string | null | undefined) => (typeof text === "string" ? label(text) : text);
  const optionalText = (text: string | null | undefined) =>
    typeof text === "string" ? truncateText(text) : text;
  const bounded: Step = {
    ...step,
    id: label(step.id),
    parent_id: step.parent_id === null ? null : label(step.parent_id),
    namespace: label(step.namespace),
    name: label(step.name),
    input: truncateJson(step.input),
    started_at: label(step.started_at),
  };
  if ("output" in step) bounded.output = truncateJson(step.output);
  if ("error" in step) bounded.error = optionalText(step.error);
  if ("traceback" in step) bounded.traceback = optionalText(step.traceback);
  if ("completed_at" in step) bounded.completed_at = optionalLabel(step.completed_at);
  return bounded;
}

/**
 * The result as sent: only the fields of its status, error, traceback and prompt cut to MAX_FIELD_BYTES. A
 * completed result's size and a pause's schema size are checked by the caller (they fail the job instead).
 */
export function boundResult(result: ResultEvent): ResultEvent {
  const { status, duration_ms } = result;
  switch (status) {
    case "completed":
      return { type: "result", status, result: result.result, duration_ms };
    case "awaiting_input":
      return {
        type: "result",
        status,
        prompt: typeof result.prompt === "string" ? truncateText(result.prompt) : result.prompt,
        schema: result.schema,
        duration_ms,
      };
    case "failed": {
      const failed: ResultEvent = {
        type: "result",
        status,
        error: truncateText(result.error || "Function failed"),
        error_type: result.error_type ?? "exception",
        duration_ms,
      };
      if (typeof result.traceback === "string") failed.traceback = truncateText(result.traceback);
      return failed;
    }
  }
}

/** Why a pause's `schema` may not be sent (too large), or null. */
export function schemaSizeProblem(schema: unknown): string | null {
  const bytes = jsonBytes(schema);
  if (bytes <= MAX_FIELD_BYTES) return null;
  if (bytes === Number.POSITIVE_INFINITY)
    return "The yielded schema is nested too deeply to be written as JSON";
  return `The yielded schema is ${bytes} bytes of JSON; at most ${MAX_FIELD_BYTES} are kept`;
}

/** Why a completed result may not be sent (resultSizeProblem: too large, or too deep to write), or null. */
export function completedResultProblem(result: unknown): string | null {
  try {
    return resultSizeProblem(result);
  } catch (error) {
    if (error instanceof RangeError) return "The result is nested too deeply to be written as JSON";
    throw error;
  }
}

/** Splits text into pieces of at most `limit` UTF-8 bytes, never inside a character. */
export function chunkUtf8(text: string, limit: number): string[] {
  if (Buffer.byteLength(text) <= limit) return [text];
  const chunks: string[] = [];
  let current = "";
  let size = 0;
  for (const char of text) {
    const length = Buffer.byteLength(char);
    if (size + length > limit) {
      chunks.push(current);
      current = "";
      size = 0;
    }
    current += char;
    size += length;
  }
  if (current) chunks.push(current);
  return chunks;
}
