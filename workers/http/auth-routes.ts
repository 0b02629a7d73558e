/**
 * @module /auth: OTP login, token refresh and logout, the current user, permission checks (sinas-spec §1.1).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { checkPermission } from "../auth/permissions";
import { AppError } from "../lib/errors";
import { startLogin, verifyLogin } from "../services/login";
import { logout, refreshSession } from "../services/sessions";
import { toUserResponse } from "../services/users";
import { authenticate, principalOf, recordPermission } from "./auth";
import { createRouter, errorResponse } from "./router";
import { EmailSchema, jsonBody, jsonResponse, UserResponseSchema, UuidSchema } from "./schemas";

const TokensSchema = z.object({
  access_token: z.string(),
  refresh_token: z.string(),
  token_type: z.literal("bearer"),
  expires_in: z.number().int(),
});

const loginRoute = createRoute({
  method: "post",
  path: "/auth/login",
  tags: ["Authentication"],
  summary: "Start an OTP login: mails a 6-digit code",
  request: { body: jsonBody(z.object({ email: EmailSchema }).strict().openapi("LoginRequest")) },
  responses: {
    200: jsonResponse(z.object({ message: z.string(), session_id: z.uuid() }), "Code sent"),
    403: errorResponse("Unknown user and auto-provisioning disabled"),
    429: errorResponse("Too many login attempts (see Retry-After)"),
    503: errorResponse("The mail could not be sent"),
  },
});

const verifyRoute = createRoute({
  method: "post",
  path: "/auth/verify-otp",
  tags: ["Authentication"],
  summary: "Exchange the mailed code for tokens (5 wrong codes end the session)",
  request: {
    body: jsonBody(
      z
        .object({ session_id: UuidSchema, otp_code: z.string().min(1).max(32) })
        .strict()
        .openapi("VerifyOtpRequest"),
    ),
  },
  responses: {
    200: jsonResponse(TokensSchema.extend({ user: UserResponseSchema }).openapi("LoginTokens"), "Logged in"),
    400: errorResponse("Invalid or expired OTP"),
    429: errorResponse("Too many attempts (see Retry-After)"),
  },
});

const RefreshTokenBody = z.object({ refresh_token: z.string().min(1).max(512) }).strict();

const refreshRoute = createRoute({
  method: "post",
  path: "/auth/refresh",
  tags: ["Authentication"],
  summary: "New access token and a rotated refresh token",
  description:
    "The presented refresh token is retired. Presenting a retired token revokes its whole login session.",
  request: { body: jsonBody(RefreshTokenBody.openapi("RefreshRequest")) },
  responses: {
    200: jsonResponse(TokensSchema.openapi("RefreshedTokens"), "New tokens"),
    401: errorResponse("Invalid, expired, revoked or reused refresh token"),
  },
});

const logoutRoute = createRoute({
  method: "post",
  path: "/auth/logout",
  tags: ["Authentication"],
  summary: "Revoke the refresh token's login session",
  request: { body: jsonBody(RefreshTokenBody.openapi("LogoutRequest")) },
  responses: { 204: { description: "Logged out" }, 404: errorResponse("Refresh token not found") },
});

const externalAuthRoute = createRoute({
  method: "post",
  path: "/auth/external-auth",
  tags: ["Authentication"],
  summary: "Exchange an OIDC token for tokens: not built, so always 503",
  description:
    "External (OIDC) authentication (sinas-spec §4.7) is not implemented; the route answers as SINAS does with it disabled.",
  request: {
    body: jsonBody(
      z
        .object({ token: z.string().min(1) })
        .strict()
        .openapi("ExternalAuthRequest"),
    ),
  },
  responses: { 503: errorResponse("External authentication not configured") },
});

const meRoute = createRoute({
  method: "get",
  path: "/auth/me",
  tags: ["Authentication"],
  summary: "The authenticated user",
  security: [{ bearerAuth: [] }],
  middleware: [authenticate] as const,
  responses: { 200: jsonResponse(UserResponseSchema, "The caller"), 401: errorResponse("Not authenticated") },
});

const checkPermissionsRoute = createRoute({
  method: "post",
  path: "/auth/check-permissions",
  tags: ["Authentication"],
  summary: "Does the caller hold these permissions?",
  security: [{ bearerAuth: [] }],
  middleware: [authenticate] as const,
  request: {
    body: jsonBody(
      z
        .object({
          permissions: z.array(z.string().min(1).max(255)).max(100),
          logic: z.enum(["AND", "OR"]).default("AND"),
        })
        .strict()
        .openapi("CheckPermissionsRequest"),
    ),
  },
  responses: {
    200: jsonResponse(
      z.object({
        result: z.boolean(),
        logic: z.enum(["AND", "OR"]),
        checks: z.array(z.object({ permission: z.string(), has_permission: z.boolean() })),
      }),
      "Per-permission results",
    ),
  },
});

/** Cloudflare sets CF-Connecting-IP and clients cannot forge it; X-Forwarded-For is not trusted. */
const clientIp = (header: (name: string) => string | undefined) => header("cf-connecting-ip") ?? null;

export const authRouter = createRouter()
  .openapi(loginRoute, async (c) => {
    const { email } = c.req.valid("json");
    const result = await startLogin(c.get("services"), { email, ip: clientIp((name) => c.req.header(name)) });
    return c.json(result, 200);
  })
  .openapi(verifyRoute, async (c) => {
    const body = c.req.valid("json");
    const ip = clientIp((name) => c.req.header(name));
    const result = await verifyLogin(c.get("services"), {
      sessionId: body.session_id,
      code: body.otp_code,
      ip,
    });
    return c.json(result, 200);
  })
  .openapi(refreshRoute, async (c) => {
    const services = c.get("services");
    const tokens = await refreshSession(services.db(), services.config, c.req.valid("json").refresh_token);
    return c.json(tokens, 200);
  })
  .openapi(logoutRoute, async (c) => {
    await logout(c.get("services").db(), c.req.valid("json").refresh_token);
    return c.body(null, 204);
  })
  .openapi(externalAuthRoute, () => {
    throw new AppError("UNAVAILABLE", "External authentication not configured");
  })
  .openapi(meRoute, (c) => {
    recordPermission(c, "sinas.users.get:own");
    return c.json(toUserResponse(principalOf(c).user), 200);
  })
  .openapi(checkPermissionsRoute, (c) => {
    const { permissions, logic } = c.req.valid("json");
    const principal = principalOf(c);
    const checks = permissions.map((permission) => ({
      permission,
      has_permission: checkPermission(principal.permissions, permission),
    }));
    const result =
      logic === "AND"
        ? checks.every((check) => check.has_permission)
        : checks.some((check) => check.has_permission);
    return c.json({ result, logic, checks }, 200);
  });
