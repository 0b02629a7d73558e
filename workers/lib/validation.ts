/**
 * @module Turns zod failures into our field issues, so every validation error names its field.
 */
import type { z } from "zod";
import { type AppError, type FieldIssue, validationError } from "./errors";

/** Request part a schema validated, used as the first `loc` segment (FastAPI's convention). */
export type RequestPart = "body" | "query" | "path" | "header" | "cookie";

const TARGET_TO_PART: Record<string, RequestPart> = {
  json: "body",
  form: "body",
  query: "query",
  param: "path",
  header: "header",
  cookie: "cookie",
};

export function requestPartOf(target: string): RequestPart {
  return TARGET_TO_PART[target] ?? "body";
}

export function zodIssuesToFieldIssues(error: z.ZodError, part: RequestPart): FieldIssue[] {
  return error.issues.map((issue) => ({
    loc: [part, ...issue.path.map((segment) => (typeof segment === "symbol" ? String(segment) : segment))],
    msg: issue.message,
    type: issue.code,
  }));
}

export function zodValidationError(error: z.ZodError, part: RequestPart): AppError {
  return validationError(zodIssuesToFieldIssues(error, part));
}
