/**
 * @module Not-found, method-not-allowed and the error handler: the one place errors become responses.
 */
import type { Context, Hono, Env as HonoEnv } from "hono";
import { HTTPException } from "hono/http-exception";
import { isForeignKeyViolation, isNulCharacterError } from "../db/errors";
import { ConfigError } from "../env";
import { AppError, type ErrorCode } from "../lib/errors";

type AnyHono<E extends HonoEnv> = Hono<E, Record<string, never>, string> | Hono<E>;

/** The concrete paths a route path matches, as strictly as Hono's router: no trailing slash (that is a 404). */
function pathPattern(routePath: string): RegExp {
  const source = routePath
    .split("/")
    .map((segment) => {
      if (segment === "*") return ".*";
      if (segment.startsWith(":")) return segment.includes("{") ? ".+" : "[^/]+";
      return segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("/");
  return new RegExp(`^${source}$`);
}

/** Methods registered for a concrete path, ignoring catch-all middleware. */
export function allowedMethods<E extends HonoEnv>(app: AnyHono<E>, path: string): string[] {
  const methods = new Set<string>();
  for (const route of app.routes) {
    if (route.method === "ALL" || route.path.endsWith("*")) continue;
    if (pathPattern(route.path).test(path)) methods.add(route.method);
  }
  return [...methods];
}

export function errorResponse(c: Context, error: AppError): Response {
  const requestId = (c.get("requestId") as string | undefined) ?? null;
  const response = c.json(error.toBody(requestId), error.status);
  for (const [name, value] of Object.entries(error.headers ?? {})) response.headers.set(name, value);
  return response;
}

/**
 * The code and default message of each HTTPException status that Hono and its middleware raise (validators,
 * body limits, zod-openapi's media-type gate); the exception's own message wins when it has one.
 */
const HTTP_EXCEPTION_ERRORS: Readonly<Partial<Record<number, { code: ErrorCode; message: string }>>> = {
  400: { code: "BAD_REQUEST", message: "Bad request" },
  401: { code: "UNAUTHORIZED", message: "Unauthorized" },
  403: { code: "FORBIDDEN", message: "Forbidden" },
  404: { code: "NOT_FOUND", message: "Not Found" },
  405: { code: "METHOD_NOT_ALLOWED", message: "Method Not Allowed" },
  409: { code: "CONFLICT", message: "Conflict" },
  413: { code: "PAYLOAD_TOO_LARGE", message: "Payload Too Large" },
  415: { code: "UNSUPPORTED_MEDIA_TYPE", message: "Content-Type must be application/json" },
  422: { code: "VALIDATION_FAILED", message: "Validation failed" },
  429: { code: "RATE_LIMITED", message: "Too Many Requests" },
  503: { code: "UNAVAILABLE", message: "Service Unavailable" },
  504: { code: "TIMEOUT", message: "Gateway Timeout" },
};

function fromHttpException(error: HTTPException): AppError {
  const known = HTTP_EXCEPTION_ERRORS[error.status];
  if (!known) {
    if (error.status >= 500) return new AppError("INTERNAL", "Internal server error", { cause: error });
    return new AppError("BAD_REQUEST", error.message || "Bad request", { cause: error });
  }
  // zod-openapi's 415 only says "Unsupported Media Type"; every request body of this API is JSON.
  const message = error.status === 415 ? known.message : error.message || known.message;
  return new AppError(known.code, message, { cause: error });
}

/** Maps anything thrown to an AppError, keeping the original as `cause`. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof HTTPException) return fromHttpException(error);
  if (error instanceof ConfigError) return new AppError("INTERNAL", error.message, { cause: error });
  // Fields checked one by one say which (storableText); any other text with a NUL still gets a 422.
  if (isNulCharacterError(error)) {
    return new AppError("VALIDATION_FAILED", "Text values must not contain NUL characters (\\u0000)", {
      cause: error,
    });
  }
  // A row still referenced, or one referencing a row gone meanwhile: the data's state, not a server failure.
  if (isForeignKeyViolation(error)) {
    return new AppError(
      "CONFLICT",
      "The change conflicts with related records (one is missing or still in use)",
      {
        cause: error,
      },
    );
  }
  return new AppError("INTERNAL", "Internal server error", { cause: error });
}

export function installFallbacks<E extends HonoEnv>(app: Hono<E>): void {
  app.notFound((c) => {
    const methods = allowedMethods(app, c.req.path);
    if (methods.length > 0) {
      return errorResponse(
        c,
        new AppError("METHOD_NOT_ALLOWED", "Method Not Allowed", { headers: { Allow: methods.join(", ") } }),
      );
    }
    return errorResponse(c, new AppError("NOT_FOUND", "Not Found"));
  });
  app.onError((error, c) => {
    const appError = toAppError(error);
    if (appError.status >= 500) {
      console.error(`[${c.get("requestId") ?? "-"}] ${c.req.method} ${c.req.path} failed:`, error);
    }
    return errorResponse(c, appError);
  });
}
