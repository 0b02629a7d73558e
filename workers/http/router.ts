/**
 * @module Factory for resource routers: an OpenAPIHono whose validation failures become our 422.
 *
 * Every router is created here so that request parsing behaves the same everywhere and every route's zod
 * schemas feed the OpenAPI document.
 */
import { OpenAPIHono, z } from "@hono/zod-openapi";
import { requestPartOf, zodValidationError } from "../lib/validation";
import type { AppEnv } from "./app-env";

export function createRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw zodValidationError(result.error, requestPartOf(result.target));
    },
  });
}

/** OpenAPI schema of the one error shape (workers/lib/errors.ts). */
export const ErrorResponseSchema = z
  .object({
    code: z.string().openapi({ example: "NOT_FOUND" }),
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
  .openapi("Error");

/** Response entry for `createRoute({ responses })`. */
export function errorResponse(description: string) {
  return { description, content: { "application/json": { schema: ErrorResponseSchema } } };
}
