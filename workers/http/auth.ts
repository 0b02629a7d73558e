/**
 * @module Authentication middleware and the helpers handlers use to read the caller and record the
 * permission they checked (for the request log).
 */
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { matchedRoutes } from "hono/route";
import { METHOD_NAME_ALL } from "hono/router";
import { authorize } from "../auth/access";
import { type ApiKeyCredential, apiKeyCredentialOf, type Principal } from "../auth/principal";
import { AppError } from "../lib/errors";
import { authenticate as authenticateToken, verifyTokenUser } from "../services/authentication";
import type { AppEnv } from "./app-env";

/** The WebSocket subprotocol that carries a browser's token: `new WebSocket(url, ["sinas.v1", "bearer.<token>"])`. */
export const WEBSOCKET_TOKEN_PREFIX = "bearer.";

/**
 * `X-API-Key` wins over `Authorization: Bearer` (sinas-spec §4.5). A WebSocket upgrade may carry the token as a
 * subprotocol instead, since browsers cannot set headers on one.
 */
export function credentialOf(headers: { get(name: string): string | null | undefined }): string | null {
  const apiKey = headers.get("x-api-key");
  if (apiKey) return apiKey;
  const authorization = headers.get("authorization");
  const match = authorization ? /^Bearer\s+(.+)$/i.exec(authorization.trim()) : null;
  if (match?.[1]) return match[1];
  if (headers.get("upgrade")?.toLowerCase() !== "websocket") return null;
  const offered = headers
    .get("sec-websocket-protocol")
    ?.split(",")
    .map((protocol) => protocol.trim())
    .find((protocol) => protocol.startsWith(WEBSOCKET_TOKEN_PREFIX));
  return offered ? offered.slice(WEBSOCKET_TOKEN_PREFIX.length) : null;
}

function missingCredentials(): AppError {
  return new AppError("UNAUTHORIZED", "Missing authorization header", {
    headers: { "WWW-Authenticate": "Bearer" },
  });
}

/**
 * Whether a route's handler matched the request, not only middleware (registered for every method): routers
 * attach `authenticate` to path prefixes, and a request no route answers must get the fallbacks' 404 or 405,
 * not a 401 that hides them. Handlers read the principal through `principalOf`, which refuses without one.
 */
function handlerMatched(c: Context<AppEnv>): boolean {
  return matchedRoutes(c).some((route) => route.method !== METHOD_NAME_ALL);
}

/** Requires a valid JWT or API key; sets `principal`. */
export const authenticate = createMiddleware<AppEnv>(async function authenticate(c, next) {
  if (!handlerMatched(c)) return next();
  const token = credentialOf({ get: (name) => c.req.header(name) });
  if (!token) throw missingCredentials();
  const services = c.get("services");
  const { principal, afterResponse } = await authenticateToken(services, token);
  c.set("principal", principal);
  try {
    await next();
  } finally {
    c.executionCtx.waitUntil(services.runAfterResponse(afterResponse()));
  }
});

/**
 * `authenticate` for the chat routes, whose services check the caller themselves in their first statement (the
 * chat's owner, an active user: services/chats.ts, durable-objects/chat-turn-data.ts). A valid bearer JWT lets
 * the handler go on at once: one database round trip fewer before the model is called or the stream is joined.
 * A refused request (any 4xx) then reads the user as `authenticate` does, so that an unknown or inactive user
 * gets `authenticate`'s 401 whatever the service answered. API keys, which carry their own permissions, take
 * `authenticate`'s path. Sets `sender`, or `principal`.
 */
export const authenticateSender = createMiddleware<AppEnv>(async function authenticateSender(c, next) {
  const token = credentialOf({ get: (name) => c.req.header(name) });
  if (!token) throw missingCredentials();
  const services = c.get("services");
  const verified = await verifyTokenUser(services, token);
  if (!verified) return authenticate(c, next);
  c.set("sender", { userId: verified.userId, email: verified.email, expiresAt: verified.expiresAt });
  try {
    await next();
    if (c.res.status >= 400 && c.res.status < 500) {
      c.set("principal", (await authenticateToken(services, token)).principal);
    }
  } finally {
    c.executionCtx.waitUntil(services.runAfterResponse(verified.afterResponse()));
  }
});

/** The id of the caller behind `authenticate` or `authenticateSender`. */
export function senderIdOf(c: Context<AppEnv>): string {
  const id = c.get("principal")?.user.id ?? c.get("sender")?.userId;
  if (!id) throw new AppError("UNAUTHORIZED", "Missing authorization header");
  return id;
}

/**
 * The API key the caller behind `authenticateSender` used, else undefined (a JWT caller acts by their group
 * grants, which the turn reads where it needs them). A chat turn carries it, so that its tools stay within the
 * key (§3.4).
 */
export function apiKeyOf(c: Context<AppEnv>): ApiKeyCredential | undefined {
  const principal = c.get("principal");
  return principal ? apiKeyCredentialOf(principal) : undefined;
}

/** The outcome of checking a request's credentials before it is known whether they are needed. */
export type CallerCheck =
  | { principal: Principal; afterResponse: () => Promise<void> }
  | { error: unknown }
  | null;

/** Checks the credentials the request carries (null when none), without requiring them or recording a caller. */
export function checkCaller(c: Context<AppEnv>): Promise<CallerCheck> {
  const token = credentialOf({ get: (name) => c.req.header(name) });
  if (!token) return Promise.resolve(null);
  return authenticateToken(c.get("services"), token).catch((error: unknown) => ({ error }));
}

/** The caller's user id when the request carries valid credentials. */
export function callerIdOf(check: CallerCheck): string | null {
  return check && "principal" in check ? check.principal.user.id : null;
}

/**
 * `authenticate` for a route that decides per resource whether it needs a caller (a webhook with
 * `requires_auth`): call it from the handler once the resource is known (with the `checkCaller` it made
 * earlier, if any). Sets `principal`.
 */
export async function authenticateCaller(
  c: Context<AppEnv>,
  checked: Promise<CallerCheck> = checkCaller(c),
): Promise<Principal> {
  const check = await checked;
  if (!check) throw missingCredentials();
  if ("error" in check) throw check.error;
  c.set("principal", check.principal);
  c.executionCtx.waitUntil(c.get("services").runAfterResponse(check.afterResponse()));
  return check.principal;
}

/** The authenticated caller; only valid behind `authenticate`. */
export function principalOf(c: Context<AppEnv>): Principal {
  const principal = c.get("principal");
  if (!principal) throw new AppError("UNAUTHORIZED", "Missing authorization header");
  return principal;
}

/** Records the permission a handler checked, for the request log. */
export function recordPermission(c: Context<AppEnv>, permission: string, granted = true): void {
  c.set("permissionUsed", { permission, granted });
}

/** Checks and records `permission`; throws 403 with `message` when it is not held. */
export function requirePermission(c: Context<AppEnv>, permission: string, message: string): Principal {
  const principal = principalOf(c);
  try {
    authorize(principal, permission, message);
    recordPermission(c, permission, true);
  } catch (error) {
    recordPermission(c, permission, false);
    throw error;
  }
  return principal;
}
