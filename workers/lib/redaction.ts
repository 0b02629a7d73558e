/**
 * @module Secret redaction for the request log (sinas-spec §10.5, issue 3 item 7): pure functions that
 * decide what of a request may be stored.
 *
 * SINAS redacts seven top-level body keys only; SINAS Edge redacts a wider set of keys at any depth, in
 * bodies, query strings and the referer, so a token nested in `{"auth": {"token": ...}}` or sent as
 * `?token=` never reaches the table.
 */

export const REDACTED = "***REDACTED***";
/** Stands in for values nested deeper than {@link MAX_REDACTION_DEPTH}: they cannot be inspected, so they are dropped. */
export const TRUNCATED = "***TRUNCATED***";
/** A 64 KiB body can nest tens of thousands of levels; walking them recursively would overflow the stack. */
export const MAX_REDACTION_DEPTH = 32;

/**
 * Secret key names, compared case-insensitively and ignoring `-` and `_`, so `api_key`, `apiKey`,
 * `X-API-Key` and `x_api_key` are one name. `key` is listed on its own: a body could carry an API key under
 * it (the API-key creation response, which is never logged, uses that name).
 */
const SECRET_KEY_NAMES = new Set([
  "password",
  "otp",
  "otpcode",
  "token",
  "refreshtoken",
  "accesstoken",
  "apikey",
  "xapikey",
  "authorization",
  "secret",
  "key",
  "cookie",
  // Browsers' WebSocket viewers offer their token as a subprotocol (`bearer.<token>`).
  "secwebsocketprotocol",
]);

/** True when a value stored under `key` must be redacted. */
export function isSecretKey(key: string): boolean {
  return SECRET_KEY_NAMES.has(key.toLowerCase().replace(/[-_]/g, ""));
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

function redactAtDepth(value: unknown, depth: number): unknown {
  if (depth > MAX_REDACTION_DEPTH && typeof value === "object" && value !== null) return TRUNCATED;
  if (Array.isArray(value)) return value.map((item) => redactAtDepth(item, depth + 1));
  if (!isPlainObject(value)) return value;
  const redacted: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    redacted[key] = isSecretKey(key) ? REDACTED : redactAtDepth(item, depth + 1);
  }
  return redacted;
}

/**
 * Copies a parsed JSON value, replacing the value of every secret key (see {@link isSecretKey}) at any
 * depth, in objects and inside arrays, with `"***REDACTED***"`. Objects nested deeper than 32 levels become
 * `"***TRUNCATED***"`.
 *
 * @example
 * redactSecrets({ name: "t", auth: [{ Token: "abc" }] }) // { name: "t", auth: [{ Token: "***REDACTED***" }] }
 */
export function redactSecrets(value: unknown): unknown {
  return redactAtDepth(value, 0);
}

/** Without U+0000, and with U+FFFD for each lone surrogate (`"\ud800"` in JSON parses to one). */
function jsonbSafeText(text: string): string {
  return text.replaceAll("\u0000", "").replace(/\p{Cs}/gu, "\uFFFD");
}

/**
 * Postgres `text` and `jsonb` refuse U+0000, and `jsonb` a lone surrogate: a body carrying either must not be
 * able to make its log row (and the batch of other requests' rows written with it) fail.
 */
export function jsonbSafe(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return jsonbSafeText(value);
  if (depth > MAX_REDACTION_DEPTH) return value;
  if (Array.isArray(value)) return value.map((item) => jsonbSafe(item, depth + 1));
  if (!isPlainObject(value)) return value;
  const cleaned: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    cleaned[jsonbSafeText(key)] = jsonbSafe(item, depth + 1);
  }
  return cleaned;
}

/** Percent-decodes for comparison only; a malformed escape leaves the text as it is. */
function decodeForMatching(text: string): string {
  try {
    return decodeURIComponent(text.replaceAll("+", " "));
  } catch {
    return text;
  }
}

/** A query key is secret when its raw or its decoded form is, so `?api%5Fkey=` is caught too. */
function isSecretQueryKey(rawKey: string): boolean {
  return isSecretKey(rawKey) || isSecretKey(decodeForMatching(rawKey));
}

function splitQuery(rawQuery: string): { key: string; value: string; part: string }[] {
  const query = rawQuery.startsWith("?") ? rawQuery.slice(1) : rawQuery;
  return query
    .split("&")
    .filter((part) => part.length > 0)
    .map((part) => {
      const equals = part.indexOf("=");
      return equals < 0
        ? { key: part, value: "", part }
        : { key: part.slice(0, equals), value: part.slice(equals + 1), part };
    });
}

/**
 * Parses a raw query string as SINAS does (§10.5): split on `&`, then on the first `=`, **not**
 * URL-decoded; a later duplicate key wins; a part without `=` has the value `""`. Values of secret keys
 * are redacted. Null when there is no parameter.
 *
 * @example
 * parseQueryParams("?a=1&token=abc&b=x%20y") // { a: "1", token: "***REDACTED***", b: "x%20y" }
 */
export function parseQueryParams(rawQuery: string): Record<string, string> | null {
  const params: Record<string, string> = {};
  for (const { key, value } of splitQuery(rawQuery)) {
    params[key] = isSecretQueryKey(key) ? REDACTED : value;
  }
  return Object.keys(params).length > 0 ? params : null;
}

/**
 * Redacts secret query parameters inside a URL (the `Referer` header can carry a page's `?token=`).
 * Everything else, including the order of parameters and the fragment, is kept.
 */
export function redactUrlQuery(url: string): string {
  const queryStart = url.indexOf("?");
  if (queryStart < 0) return url;
  const fragmentStart = url.indexOf("#", queryStart);
  const queryEnd = fragmentStart < 0 ? url.length : fragmentStart;
  const query = splitQuery(url.slice(queryStart + 1, queryEnd))
    .map(({ key, part }) => (isSecretQueryKey(key) ? `${key}=${REDACTED}` : part))
    .join("&");
  return `${url.slice(0, queryStart + 1)}${query}${url.slice(queryEnd)}`;
}

/**
 * Auth endpoints, whose bodies are never logged: every `/auth/*` route (also SINAS's `/api/auth/*` and
 * `/api/v1/auth/*` spellings), and any path containing `/login`, `/verify-otp`, `/refresh` or `/logout`.
 */
export function isAuthPath(path: string): boolean {
  if (/^\/(?:api\/(?:v1\/)?)?auth(?:\/|$)/.test(path)) return true;
  return ["/login", "/verify-otp", "/refresh", "/logout"].some((fragment) => path.includes(fragment));
}
