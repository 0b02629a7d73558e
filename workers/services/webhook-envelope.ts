/**
 * @module The function input of a webhook call (sinas-spec §7.1 steps 3-4, D-36): the request as an envelope
 * (body by content type, headers, query, path, method, url), merged over the webhook's default values.
 * Credentials never reach the function: they are dropped from `headers` here.
 */
import type { JsonObject } from "../db/schema";
import { validationError } from "../lib/errors";
import { exceedsJsonDepth, JSON_DEPTH_MESSAGE } from "../lib/json-depth";
import { SECRET_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER } from "../lib/webhook-signature";

/** As SINAS: headers whose lower-cased name starts with one of these are left out. */
const EXCLUDED_HEADER_PREFIXES = ["host", "user-agent", "accept-encoding"];
/** Credentials (D-36) and the webhook's own proof headers: the function must never see them. */
const CREDENTIAL_HEADERS = new Set([
  "authorization",
  "proxy-authorization",
  "x-api-key",
  "cookie",
  // A browser's WebSocket carries its token here (http/auth.ts `credentialOf`), and so may any request.
  "sec-websocket-protocol",
  SECRET_HEADER,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
]);

export interface WebhookRequest {
  method: string;
  /** The full request URL, query included. */
  url: string;
  /** The webhook's path (no leading slash). */
  path: string;
  headers: Headers;
  /** The raw body bytes. */
  body: Uint8Array;
}

/**
 * JSON when the content type says so (invalid JSON gives `{}`); form fields for url-encoded forms; otherwise
 * `{raw: <utf-8 text>}`, or `{}` when there is no body.
 */
export function parseWebhookBody(contentType: string | null, bytes: Uint8Array): unknown {
  const text = new TextDecoder().decode(bytes);
  const type = contentType?.toLowerCase() ?? "";
  if (type.includes("application/json")) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return {};
    }
  }
  if (type.includes("application/x-www-form-urlencoded")) return lastValueWins(new URLSearchParams(text));
  return text.length > 0 ? { raw: text } : {};
}

function lastValueWins(params: URLSearchParams): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [name, value] of params) result[name] = value;
  return result;
}

export function webhookHeaders(headers: Headers): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (CREDENTIAL_HEADERS.has(lower) || EXCLUDED_HEADER_PREFIXES.some((prefix) => lower.startsWith(prefix)))
      continue;
    result[lower] = value;
  }
  return result;
}

/**
 * `{...defaultValues, ...envelope}`: the envelope wins on a shared key. A body nested deeper than MAX_JSON_DEPTH
 * is a 422 naming the body, thrown before anything walks it recursively (the run's structured clone into its
 * Durable Object, the Python runtime's json parser); such an attempt is not recorded.
 */
export function webhookInput(request: WebhookRequest, defaultValues: JsonObject | null): JsonObject {
  const url = new URL(request.url);
  const body = parseWebhookBody(request.headers.get("content-type"), request.body);
  if (exceedsJsonDepth(body)) {
    throw validationError([{ loc: ["body"], msg: JSON_DEPTH_MESSAGE, type: "json_depth" }]);
  }
  return {
    ...(defaultValues ?? {}),
    body,
    headers: webhookHeaders(request.headers),
    query: lastValueWins(url.searchParams),
    path_params: { path: request.path },
    method: request.method,
    url: request.url,
    path: `/webhooks/${request.path}`,
  };
}
