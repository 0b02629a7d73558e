/**
 * @module One check of every JSON request body before any route reads it: values nested past MAX_JSON_DEPTH,
 * NUL characters, unpaired surrogates (in values and keys) and numbers JSON cannot carry (`1e309` parses as
 * Infinity) are refused with 422 naming the first place found. Postgres refuses NUL and unpaired surrogates
 * (text, jsonb: a `json` column keeps them until a cast to jsonb fails on every later read), a deep value
 * hung embedded PGlite and overflows recursive walks, and Infinity would be stored as null. Fields checked by
 * their route say the same for themselves; this covers every free-form one (a state's value, an agent's
 * parameters, a chat's input, a provider's config...).
 *
 * Webhooks and the executor's callbacks read their raw bytes themselves (signatures), so they are left alone.
 */
import type { MiddlewareHandler } from "hono";
import type { FieldIssue } from "../lib/errors";
import { AppError, validationError } from "../lib/errors";
import { JSON_DEPTH_MESSAGE, MAX_JSON_DEPTH } from "../lib/json-depth";
import { readBounded } from "../lib/read-bounded";

const RAW_BODY_PATHS = ["/webhooks/", "/internal/"];
/** Above every route's own limit (a chat message's 2 MiB is the largest). */
export const JSON_BODY_MAX_BYTES = 4 * 1024 * 1024;
const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);
/** A lone surrogate: in a `u` regex a valid pair is one code point, so only unpaired halves match. */
const UNPAIRED_SURROGATE = /\p{Cs}/u;

interface Container {
  value: object;
  depth: number;
  parent: Container | null;
  key: string | number | null;
}

function pathOf(container: Container | null, key?: string | number): (string | number)[] {
  const keys: (string | number)[] = key === undefined ? [] : [key];
  for (let at = container; at && at.key !== null; at = at.parent) keys.push(at.key);
  return keys.reverse();
}

function textProblem(text: string): string | null {
  if (text.includes("\u0000")) return "must not contain NUL characters";
  if (UNPAIRED_SURROGATE.test(text)) return "must not contain unpaired surrogates (invalid Unicode)";
  return null;
}

function scalarProblem(value: unknown): string | null {
  if (typeof value === "string") return textProblem(value);
  if (typeof value === "number" && !Number.isFinite(value)) return "must be a finite number";
  return null;
}

/** The first problem of a parsed body, or null. Iterative: any depth is walked safely. */
export function jsonBodyProblem(body: unknown): FieldIssue | null {
  const rootProblem = scalarProblem(body);
  if (rootProblem) return { loc: ["body"], msg: rootProblem, type: "value_error" };
  if (body === null || typeof body !== "object") return null;
  const stack: Container[] = [{ value: body, depth: 1, parent: null, key: null }];
  while (stack.length > 0) {
    const container = stack.pop() as Container;
    // The body object itself is one level above its fields, whose own limit is MAX_JSON_DEPTH.
    if (container.depth > MAX_JSON_DEPTH + 1) {
      return { loc: ["body", ...pathOf(container).slice(0, 1)], msg: JSON_DEPTH_MESSAGE, type: "json_depth" };
    }
    const entries: [string | number, unknown][] = Array.isArray(container.value)
      ? container.value.map((child, index) => [index, child])
      : Object.entries(container.value);
    for (const [key, child] of entries) {
      const keyProblem = typeof key === "string" ? textProblem(key) : null;
      // Named by the object holding it: the key itself is what cannot be shown.
      if (keyProblem)
        return { loc: ["body", ...pathOf(container)], msg: `a key ${keyProblem}`, type: "value_error" };
      const problem = scalarProblem(child);
      if (problem) return { loc: ["body", ...pathOf(container, key)], msg: problem, type: "value_error" };
      if (child !== null && typeof child === "object") {
        stack.push({ value: child, depth: container.depth + 1, parent: container, key });
      }
    }
  }
  return null;
}

/**
 * Whether the body is read here: with credentials (checked by the route, after this), or on the auth routes that
 * take none. A request without any gets its route's 401 first, without its body read and walked for nothing.
 */
function mayReadBody(path: string, headers: Headers): boolean {
  return path.startsWith("/auth/") || headers.has("authorization") || headers.has("x-api-key");
}

/**
 * The middleware: a JSON body with a problem is a 422; one above JSON_BODY_MAX_BYTES a 413 (no route takes that
 * much: their own limits are lower); a body that is not JSON is left to the route (400). The body is read here
 * with a bound, then handed on as a new request, as hono's bodyLimit does: a route's own limit then reads it
 * again (a chunked body has no length to compare), which it could not from a consumed stream.
 */
export const jsonBodyGuard: MiddlewareHandler = async (c, next) => {
  const raw = c.req.raw;
  if (
    !raw.body ||
    !mayReadBody(c.req.path, raw.headers) ||
    !BODY_METHODS.has(raw.method) ||
    !c.req.header("content-type")?.toLowerCase().includes("application/json") ||
    RAW_BODY_PATHS.some((prefix) => c.req.path.startsWith(prefix))
  ) {
    return next();
  }
  const tooLarge = () =>
    new AppError("PAYLOAD_TOO_LARGE", `The request body exceeds the limit of ${JSON_BODY_MAX_BYTES} bytes`);
  if (Number(c.req.header("content-length") ?? 0) > JSON_BODY_MAX_BYTES) throw tooLarge();
  const bytes = await readBounded(raw.body, JSON_BODY_MAX_BYTES).catch(() => {
    throw new AppError("BAD_REQUEST", "The request body could not be read (the connection ended)");
  });
  if (!bytes) throw tooLarge();
  c.req.raw = new Request(raw, { body: bytes });
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return next(); // the route's validator says what is wrong with it (400)
  }
  const problem = jsonBodyProblem(body);
  if (problem) throw validationError([problem]);
  return next();
};
