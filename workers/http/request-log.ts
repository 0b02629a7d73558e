/**
 * @module The request-log middleware (sinas-spec §10.5): one `request_logs` row per request, written after
 * the response so it never delays or breaks it, batched with other requests' rows of the isolate
 * (services/request-log-batches.ts).
 *
 * Install it right after the services middleware: it reads `services`, and what inner middleware and
 * handlers set (`principal`, `permissionUsed`, `c.error`).
 */
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import type { NewRequestLog } from "../db/schema";
import { readBounded } from "../lib/read-bounded";
import {
  isAuthPath,
  jsonbSafe,
  parseQueryParams,
  REDACTED,
  redactSecrets,
  redactUrlQuery,
} from "../lib/redaction";
import { writeRequestLogBatched } from "../services/request-log-batches";
import type { AppEnv } from "./app-env";
import { toAppError } from "./fallbacks";

/** Larger bodies are not logged (and not read twice). */
export const MAX_LOGGED_BODY_BYTES = 64 * 1024;
/** Headers are client-chosen; a few kilobytes are plenty to identify a client. */
const MAX_HEADER_CHARS = 2048;
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BODY_METHODS = new Set(["POST", "PUT", "PATCH"]);
/** Bodies of these types are complete strings in memory; others (event streams, downloads) are not measured. */
const MEASURED_CONTENT_TYPE =
  /^(?:application\/(?:[\w.+-]+\+)?json|application\/x-yaml|text\/(?:plain|html))/i;

/**
 * Why a request body is absent from its row, kept in `metadata` so an empty column is not a mystery
 * (`unavailable`: a handler read the raw stream without leaving it in Hono's body cache).
 */
type BodySkipReason = "too_large" | "unparseable" | "unavailable";
type LoggedBody = { body: unknown } | { skipped: BodySkipReason } | null;

/**
 * Not logged: `GET /health` (as SINAS; load balancers poll it), CORS preflights (no caller, no body, and
 * one per browser call would double the table), and the Swagger UI files (static assets, normally served
 * before the Worker runs at all).
 */
function isLogged(method: string, path: string): boolean {
  if (method === "OPTIONS") return false;
  if ((method === "GET" || method === "HEAD") && path === "/health") return false;
  // The executor's signed callbacks are machine traffic (several per run), not requests of a user: logging
  // them doubled the database writes of every execution.
  return !path.startsWith("/docs-assets/") && !path.startsWith("/internal/");
}

/** What Hono's `c.req.bodyCache` holds at run time (its declared type is `Partial<Body>`): read bodies. */
export interface ReadBodies {
  text?: Promise<string>;
  arrayBuffer?: Promise<ArrayBuffer>;
}

export function readBodiesOf(c: Context<AppEnv>): ReadBodies {
  return c.req.bodyCache as unknown as ReadBodies;
}

/** The body's text as the handler left it: from Hono's body cache, else read now if nothing read it. */
async function bodyTextAfterHandler(c: Context<AppEnv>): Promise<string | LoggedBody> {
  const bodyCache = readBodiesOf(c);
  const { raw } = c.req;
  if (bodyCache.text) return bodyCache.text;
  if (bodyCache.arrayBuffer) return new TextDecoder().decode(await bodyCache.arrayBuffer);
  if (raw.bodyUsed || !raw.body) return { skipped: "unavailable" };
  const bytes = await readBounded(raw.body, MAX_LOGGED_BODY_BYTES);
  return bytes ? new TextDecoder().decode(bytes) : { skipped: "too_large" };
}

/** Body fields never logged, by path prefix: a state's value may be stored encrypted (README, States). */
const UNLOGGED_FIELDS: readonly (readonly [prefix: string, field: string])[] = [["/states", "value"]];

function withoutUnloggedFields(path: string, body: unknown): unknown {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return body;
  let kept = body as Record<string, unknown>;
  for (const [prefix, field] of UNLOGGED_FIELDS) {
    if ((path === prefix || path.startsWith(`${prefix}/`)) && field in kept)
      kept = { ...kept, [field]: REDACTED };
  }
  return kept;
}

/**
 * A redacted copy of a JSON body, taken once the handler is done: what it read (Hono's body cache, where the
 * validator's `c.req.json()` leaves the text) or, if nothing read the body, the body itself. No copy of the
 * request is made (cloning a request tees its body, a visible cost per request). Null when the body is not
 * logged at all (method, content type, auth path).
 */
async function loggedBodyAfterHandler(c: Context<AppEnv>): Promise<LoggedBody> {
  const request = c.req.raw;
  if (!BODY_METHODS.has(request.method) || isAuthPath(c.req.path) || !request.body) return null;
  if (!request.headers.get("content-type")?.toLowerCase().includes("application/json")) return null;
  const declaredLength = Number(request.headers.get("content-length") ?? "0");
  if (declaredLength > MAX_LOGGED_BODY_BYTES) return { skipped: "too_large" };
  try {
    const text = await bodyTextAfterHandler(c);
    if (typeof text !== "string") return text;
    // A UTF-16 unit is at most 3 UTF-8 bytes: only a text that may be over the limit is encoded to measure it.
    const mayBeTooLarge = text.length > MAX_LOGGED_BODY_BYTES / 3;
    if (mayBeTooLarge && new TextEncoder().encode(text).byteLength > MAX_LOGGED_BODY_BYTES) {
      return { skipped: "too_large" };
    }
    return { body: jsonbSafe(redactSecrets(withoutUnloggedFields(c.req.path, JSON.parse(text)))) };
  } catch {
    return { skipped: "unparseable" };
  }
}

/**
 * Bytes in the response body: `Content-Length` when set; otherwise a clone of a textual body is counted
 * after the response (Hono's `c.json` sets no length). Streams are not counted: that would buffer them.
 */
function measureResponse(response: Response): Promise<number> {
  const declared = response.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared)) return Promise.resolve(Number(declared));
  if (!response.body || !MEASURED_CONTENT_TYPE.test(response.headers.get("content-type") ?? "")) {
    return Promise.resolve(0);
  }
  const clone = response.clone();
  return (async () => {
    const reader = (clone.body as ReadableStream<Uint8Array>).getReader();
    let size = 0;
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read())
      size += chunk.value.byteLength;
    return size;
  })().catch(() => 0);
}

function clientIp(c: Context<AppEnv>): string | null {
  const connecting = c.req.header("cf-connecting-ip");
  if (connecting) return connecting;
  const forwarded = c.req.header("x-forwarded-for")?.split(",")[0]?.trim();
  return forwarded || null;
}

function headerValue(c: Context<AppEnv>, name: string): string | null {
  const value = c.req.header(name);
  return value ? value.slice(0, MAX_HEADER_CHARS) : null;
}

/**
 * The row's id: the request id the API returned (`X-Request-Id`, `request_id` in error bodies) when it is
 * a UUID we generated. A client-supplied id is kept in `metadata` instead: reusing one would otherwise hit
 * the primary key and let a client suppress its own log rows.
 */
function rowIdentity(c: Context<AppEnv>): { requestId: string; clientRequestId: string | null } {
  const requestId = c.get("requestId");
  const clientSupplied = requestId !== undefined && c.req.header("x-request-id") === requestId;
  if (requestId && !clientSupplied && UUID_PATTERN.test(requestId))
    return { requestId, clientRequestId: null };
  return { requestId: crypto.randomUUID(), clientRequestId: clientSupplied ? requestId : null };
}

/** The authenticated caller, whichever middleware named it. */
function callerOfRequest(c: Context<AppEnv>): { id: string; email: string } | null {
  const principal = c.get("principal");
  if (principal) return principal.user;
  const sender = c.get("sender");
  return sender ? { id: sender.userId, email: sender.email } : null;
}

/** Everything known once the handler has returned; the body and response size are awaited later. */
function describeRequest(c: Context<AppEnv>, startedAt: number): Omit<NewRequestLog, "requestBody"> {
  const caller = callerOfRequest(c);
  const permissionUsed = c.get("permissionUsed");
  const error = c.error ? toAppError(c.error) : null;
  const url = new URL(c.req.url);
  const referer = headerValue(c, "referer");
  const { requestId, clientRequestId } = rowIdentity(c);
  return {
    requestId,
    // When the request came: rows are inserted in batches (request-log-batches.ts), and Postgres' now() is one
    // value per statement, which gave a batch's requests one time and an order by their random ids.
    timestamp: new Date(startedAt),
    userId: caller?.id ?? null,
    userEmail: caller?.email ?? null,
    permissionUsed: permissionUsed?.permission ?? null,
    hasPermission: permissionUsed?.granted ?? true,
    method: c.req.method,
    path: c.req.path,
    queryParams: parseQueryParams(url.search),
    userAgent: headerValue(c, "user-agent"),
    referer: referer === null ? null : redactUrlQuery(referer),
    ipAddress: clientIp(c),
    statusCode: c.res.status,
    responseTimeMs: Math.max(0, Math.round(Date.now() - startedAt)),
    errorType: error?.code ?? null,
    errorMessage: error?.message ?? null,
    metadata: clientRequestId === null ? null : { client_request_id: clientRequestId },
  };
}

let reportedInsertFailure = false;

/** The driver's own message: drizzle's wrapper would print the row (user e-mail, IP) into the console. */
function rootCauseMessage(error: unknown): string {
  let current = error;
  for (let depth = 0; depth < 5 && current instanceof Error && current.cause !== undefined; depth++) {
    current = current.cause;
  }
  // The Neon driver's cause can be an `ErrorEvent`, which has a message but is no Error.
  const message = (current as { message?: unknown } | null)?.message;
  return typeof message === "string" ? message : String(current);
}

/** One console line per isolate: when the table is unreachable every request fails the same way. */
function reportInsertFailure(error: unknown): void {
  if (reportedInsertFailure) return;
  reportedInsertFailure = true;
  console.error(
    `request log insert failed (further failures in this isolate are not reported): ${rootCauseMessage(error)}`,
  );
}

/**
 * Logs every request (except health checks, preflights and docs assets) to `request_logs` after the
 * response: caller, permission used, status, duration, sizes and a redacted JSON body. Failures are
 * swallowed; the response never waits for or depends on the insert.
 *
 * @example
 * app.use(servicesMiddleware);
 * app.use(requestLog());
 * @see sinas-spec §10.5
 */
export function requestLog() {
  return createMiddleware<AppEnv>(async function requestLog(c, next) {
    if (!isLogged(c.req.method, c.req.path)) return next();
    const startedAt = Date.now();
    await next();

    // Awaited before the response goes: a body nothing read is read here, while the request is current.
    const loggedBody = await loggedBodyAfterHandler(c);
    const row = describeRequest(c, startedAt);
    const responseSize = measureResponse(c.res);
    const services = c.get("services");
    const insert = (async () => {
      const size = await responseSize;
      const skipped =
        loggedBody !== null && "skipped" in loggedBody ? { request_body_skipped: loggedBody.skipped } : null;
      await writeRequestLogBatched(() => services.statementDb(), {
        ...row,
        requestBody: loggedBody !== null && "body" in loggedBody ? loggedBody.body : null,
        responseSizeBytes: size,
        metadata: row.metadata || skipped ? { ...row.metadata, ...skipped } : null,
      });
    })().catch(reportInsertFailure);
    // `dispose()` (also in waitUntil) waits for tracked work, so the pool is still open for the insert.
    c.executionCtx.waitUntil(services.runAfterResponse(insert));
  });
}
