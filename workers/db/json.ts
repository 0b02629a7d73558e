/**
 * @module JSON values: telling an object apart, and reading a `json` value a query builds with SQL (`json_agg`,
 * ...): the driver parses `json` columns, but a value may still arrive as text (raw-text query paths), so both
 * are accepted.
 */
import type { JsonObject } from "./schema";

/** A JSON object: not null, not an array. */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function jsonColumn<T>(value: unknown): T {
  return (typeof value === "string" ? JSON.parse(value) : value) as T;
}
