/**
 * @module zod schemas shared by several routers (one schema per payload; each feeds validation and OpenAPI).
 */
import { z } from "@hono/zod-openapi";

export const EmailSchema = z.email({ error: "must be a valid e-mail address" }).max(255).openapi({
  example: "alice@acme.io",
});

/**
 * Any ISO-8601 date-time (D-20) as a Date; one without an offset is read as UTC, not as local time. Its UTC year
 * must be 1..9999, which Postgres takes (`9999-12-31T23:59:59-05:00` is year 10000 in UTC; a 500 otherwise).
 */
export const DateTimeInput = z.iso
  .datetime({ offset: true, local: true })
  .transform((text) => new Date(/(?:[zZ]|[+-]\d{2}:?\d{2})$/.test(text) ? text : `${text}Z`))
  .refine((date) => date.getUTCFullYear() >= 1 && date.getUTCFullYear() <= 9999, {
    message: "must be a date-time between the years 0001 and 9999 (UTC)",
  })
  .openapi({ type: "string", format: "date-time", example: "2030-01-01T00:00:00Z" });

/** Text Postgres can store: without NUL characters, which its text type refuses (a 500 otherwise). */
export function storableText(schema: z.ZodString = z.string()) {
  return schema.refine((value) => !value.includes("\u0000"), { message: "must not contain NUL characters" });
}

/** A UUID in its canonical lower case: ids are compared as strings (self-protection checks), Postgres ignores case. */
export const UuidSchema = z.uuid({ error: "must be a UUID" }).overwrite((value) => value.toLowerCase());

export const UserResponseSchema = z
  .object({
    id: z.uuid(),
    email: z.string(),
    is_active: z.boolean(),
    last_login_at: z.string().nullable(),
    created_at: z.string(),
  })
  .openapi("UserResponse");

export const MessageSchema = z.object({ message: z.string() }).openapi("Message");

/** `skip`/`limit` query parameters of list endpoints. */
export const PageQuerySchema = z.object({
  skip: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

export const PermissionMapSchema = z
  .record(z.string().min(1).max(255), z.boolean())
  .openapi({ example: { "sinas.functions.*.get:own": true } });

export function jsonBody<T extends z.ZodType>(schema: T) {
  return { content: { "application/json": { schema } }, required: true };
}

export function jsonResponse<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { "application/json": { schema } } };
}
