/**
 * @module Not-found, method-not-allowed and the error handler: the one place errors become responses.
 */
import type { Context, Hono, Env as HonoEnv } from "hono";
import { HTTPException } from "hono/http-exception";
import { isForeignKeyViolation, isNulCharacterError } from "../db/errors";
import { ConfigError } from "../env";
import { AppError } from "../lib/errors";

type AnyHono<E extends HonoEnv> = Hono<E, Record<string, never>, string> | Hono<E>;

function pathPattern(routePath: string): RegExp {
  const source = routePath
    .split("/")
    .map((segment) => {
      if (segment === "*") return ".*";
      if (segment.startsWith(":")) return segment.includes("{") ? ".+" : "[^/]+";
      return segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("/");
  return new RegExp(`^${source}/?$`);
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

/** Maps anything thrown to an AppError, keeping the original as `cause`. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof HTTPException) {
    const code =
      error.status === 401 ? "UNAUTHORIZED" : error.status === 413 ? "PAYLOAD_TOO_LARGE" : "BAD_REQUEST";
    return new AppError(code, error.message || "Bad request", { cause: error });
  }
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
