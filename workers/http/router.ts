/**
 * @module Factory for resource routers: an OpenAPIHono whose validation failures become our 422.
 *
 * Every router is created here so that request parsing behaves the same everywhere and every route's zod
 * schemas feed the OpenAPI document.
 */
import { OpenAPIHono, type RouteConfig, z } from "@hono/zod-openapi";
import { ERROR_STATUS, type ErrorCode } from "../lib/errors";
import { requestPartOf, zodValidationError } from "../lib/validation";
import type { AppEnv } from "./app-env";

export function createRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw zodValidationError(result.error, requestPartOf(result.target));
    },
  });
}

/** Every error code (workers/lib/errors.ts), so that clients can generate the closed set they switch on. */
const ERROR_CODES = Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]];

/** Name of the error shape's component: `#/components/schemas/Error`. */
export const ERROR_SCHEMA_NAME = "Error";

/** OpenAPI schema of the one error shape (workers/lib/errors.ts). */
export const ErrorResponseSchema = z
  .object({
    code: z.enum(ERROR_CODES).openapi({ example: "NOT_FOUND" }),
    message: z.string(),
    detail: z.union([
      z.string(),
      z.array(
        z.object({
          loc: z.array(z.union([z.string(), z.number()])),
          msg: z.string(),
          type: z.string(),
        }),
      ),
    ]),
    request_id: z.string().nullable(),
  })
  .openapi(ERROR_SCHEMA_NAME);

/** Response entry for `createRoute({ responses })`. */
export function errorResponse(description: string) {
  return { description, content: { "application/json": { schema: ErrorResponseSchema } } };
}

/**
 * For a route whose `{param}` may contain `/` (webhook paths): documents `route` as written and returns the
 * copy to register, whose parameter uses Hono's `{.+}` pattern (which zod-openapi would document verbatim).
 *
 * @example
 * router.openapi(slashParamRoute(router, getRoute, "path"), handler);
 */
export function slashParamRoute<R extends RouteConfig>(app: OpenAPIHono<AppEnv>, route: R, param: string): R {
  app.openAPIRegistry.registerPath(route);
  return { ...route, path: route.path.replace(`{${param}}`, `{${param}{.+}}`), hide: true };
}
