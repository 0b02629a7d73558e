/**
 * @module What OpenAI-compatible providers take as names and as strict output schemas: a name over their
 * limit or a schema strict mode refuses fails the whole request with a 400, on every turn of the agent.
 */
import { isJsonObject } from "../db/json";
import type { JsonObject } from "../db/schema";
import { hash53 } from "../lib/hash53";

/** The names OpenAI and Mistral accept for a tool or a response format (Anthropic's rule is looser). */
const WIRE_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** 53 bits in base 36. */
const NAME_HASH_LENGTH = 11;

/**
 * `name` as every provider takes it: unchanged when it fits `^[a-zA-Z0-9_-]{1,64}$`, else its start (other
 * characters as `_`) and a hash of the whole name, 64 characters at most; one name over the limit would fail
 * the whole request. Deterministic, so the calls stored in a chat's history name the same tool in later turns
 * (calls are matched on the offered name); the hash keeps names sharing a long start apart.
 */
export function wireName(name: string): string {
  if (WIRE_NAME.test(name)) return name;
  const start = name.replace(/[^a-zA-Z0-9_-]/g, "_").slice(0, 64 - NAME_HASH_LENGTH - 1);
  return `${start}_${hash53(name).toString(36).padStart(NAME_HASH_LENGTH, "0")}`;
}

/**
 * The keywords OpenAI's strict Structured Outputs take ("Supported schemas"); any other one there is a 400.
 * Anything unlisted here (`default`, `oneOf`, `allOf`, `minLength`...) only costs the schema its strictness.
 */
const STRICT_KEYWORDS = new Set([
  "type",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "anyOf",
  "enum",
  "const",
  "description",
  "title",
  "$ref",
  "$defs",
  "definitions",
  "pattern",
  "format",
  "multipleOf",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "minItems",
  "maxItems",
]);

const STRICT_TYPES = new Set(["string", "number", "integer", "boolean", "object", "array", "null"]);

const STRICT_FORMATS = new Set([
  "date-time",
  "time",
  "date",
  "duration",
  "email",
  "hostname",
  "ipv4",
  "ipv6",
  "uuid",
]);

/** Lookarounds, named groups and backreferences: regex features strict mode does not take. */
const UNSUPPORTED_PATTERN = /\\(?:[1-9]|k<)|\(\?[=!<]/;

/**
 * OpenAI takes 10 levels of nesting; counting every subschema (not only objects) errs towards `strict: false`,
 * and bounds the recursion over a stored schema.
 */
const MAX_STRICT_DEPTH = 10;

function typesOf(schema: JsonObject): unknown[] {
  const { type } = schema;
  return Array.isArray(type) ? type : type === undefined ? [] : [type];
}

/** An object schema strict mode takes: `additionalProperties: false` and every property required. */
function isStrictObject(schema: JsonObject, depth: number): boolean {
  const { properties, required } = schema;
  if (!isJsonObject(properties) || schema.additionalProperties !== false) return false;
  if (!Array.isArray(required)) return false;
  const keys = Object.keys(properties);
  const listed = new Set(required);
  return (
    listed.size === required.length &&
    listed.size === keys.length &&
    keys.every((key) => listed.has(key)) &&
    Object.values(properties).every((property) => isStrictSubschema(property, depth + 1))
  );
}

/** The subschemas a schema holds in `items`, `anyOf`, `$defs` and `definitions` (properties: isStrictObject). */
function nestedSchemas(schema: JsonObject): unknown[] | null {
  const nested: unknown[] = [];
  for (const key of ["$defs", "definitions"] as const) {
    const defs = schema[key];
    if (defs === undefined) continue;
    if (!isJsonObject(defs)) return null;
    nested.push(...Object.values(defs));
  }
  if (schema.anyOf !== undefined) {
    if (!Array.isArray(schema.anyOf) || schema.anyOf.length === 0) return null;
    nested.push(...schema.anyOf);
  }
  if (schema.items !== undefined) nested.push(schema.items);
  return nested;
}

/** Whether a schema inside the output schema meets OpenAI's strict rules, at every depth. */
function isStrictSubschema(schema: unknown, depth: number): boolean {
  if (!isJsonObject(schema) || depth > MAX_STRICT_DEPTH) return false;
  const keys = Object.keys(schema);
  if (!keys.every((key) => STRICT_KEYWORDS.has(key))) return false;
  // A `$ref` must stand alone (OpenAI's own SDKs inline it otherwise).
  if ("$ref" in schema) return keys.length === 1 && typeof schema.$ref === "string";
  const types = typesOf(schema);
  if (types.length === 0 && schema.anyOf === undefined) return false;
  if (!types.every((type) => typeof type === "string" && STRICT_TYPES.has(type))) return false;
  const isObject = types.includes("object");
  if (!isObject && ("properties" in schema || "required" in schema || "additionalProperties" in schema))
    return false;
  if (isObject && !isStrictObject(schema, depth)) return false;
  if (types.includes("array") && !isJsonObject(schema.items)) return false;
  if (schema.format !== undefined && !STRICT_FORMATS.has(schema.format as string)) return false;
  if (schema.pattern !== undefined) {
    if (typeof schema.pattern !== "string" || UNSUPPORTED_PATTERN.test(schema.pattern)) return false;
  }
  return nestedSchemas(schema)?.every((nested) => isStrictSubschema(nested, depth + 1)) ?? false;
}

/**
 * Whether OpenAI takes `schema` with `strict: true`: a root `type: "object"`, and at every depth each object
 * closed (`additionalProperties: false`) with all its properties required, and only the keywords strict mode
 * supports, nested 10 deep at most. Its other size limits (how many properties, enum values) are not checked.
 */
export function isStrictOutputSchema(schema: JsonObject): boolean {
  return schema.type === "object" && schema.anyOf === undefined && isStrictSubschema(schema, 0);
}
