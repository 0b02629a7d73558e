/**
 * @module JSON Schema validation without eval (workerd forbids code generation, so ajv cannot run there):
 * @cfworker/json-schema, drafts 4 to 2020-12.
 */
import { type Schema, Validator } from "@cfworker/json-schema";
import { keywordShapeDefect } from "./json-schema-shape";

export interface SchemaProblem {
  /** JSON pointer of the offending value, e.g. `#/body/name`. */
  location: string;
  message: string;
}

const validators = new Map<string, Validator>();

function validatorFor(schema: object): Validator {
  const key = JSON.stringify(schema);
  let validator = validators.get(key);
  if (!validator) {
    validator = new Validator(schema as Schema, "2020-12", false);
    if (validators.size > 500) validators.clear();
    validators.set(key, validator);
  }
  return validator;
}

const MAX_SCHEMA_DEPTH = 64;
const DATA_KEYWORDS = new Set(["enum", "const", "default", "examples"]);

/** The value at a local JSON pointer (`#/$defs/x`) of `root`, or undefined. */
function resolveLocalRef(root: unknown, ref: string): unknown {
  if (ref === "#") return root;
  if (!ref.startsWith("#/")) return undefined;
  let node: unknown = root;
  for (const raw of ref.slice(2).split("/")) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(raw);
    } catch {
      return undefined; // a broken %-escape (`#/%`): unresolvable, as any other bad pointer
    }
    const key = decoded.replaceAll("~1", "/").replaceAll("~0", "~");
    if (node === null || typeof node !== "object" || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/**
 * Why `schema` cannot be applied, or null: what the validator would only find while validating (a bad `pattern`,
 * an unresolvable `$ref`), so that a schema is refused when saved instead of failing every later run.
 */
export function schemaDefect(schema: object): string | null {
  const shape = keywordShapeDefect(schema);
  if (shape) return shape;
  const visit = (node: unknown, path: string, depth: number): string | null => {
    if (depth > MAX_SCHEMA_DEPTH) return `${path || "/"}: nested too deeply`;
    if (node === null || typeof node !== "object") return null;
    if (Array.isArray(node)) {
      for (const [index, item] of node.entries()) {
        const defect = visit(item, `${path}/${index}`, depth + 1);
        if (defect) return defect;
      }
      return null;
    }
    const record = node as Record<string, unknown>;
    const patterns = [
      ...(typeof record.pattern === "string" ? [record.pattern] : []),
      ...(record.patternProperties && typeof record.patternProperties === "object"
        ? Object.keys(record.patternProperties)
        : []),
    ];
    for (const pattern of patterns) {
      try {
        new RegExp(pattern, "u");
      } catch {
        return `${path || "/"}: pattern '${pattern}' is not a valid regular expression`;
      }
    }
    if (typeof record.$ref === "string" && resolveLocalRef(schema, record.$ref) === undefined) {
      return `${path || "/"}: $ref '${record.$ref}' does not resolve within the schema (only local refs are)`;
    }
    for (const [key, value] of Object.entries(record)) {
      // Values of these keywords are data, not schemas; anything else may hold schemas.
      if (DATA_KEYWORDS.has(key)) continue;
      const defect = visit(value, `${path}/${key}`, depth + 1);
      if (defect) return defect;
    }
    return null;
  };
  const defect = visit(schema, "", 0);
  if (defect) return defect;
  try {
    new Validator(schema as Schema, "2020-12", false).validate(null);
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/**
 * Problems of `value` against `schema` (empty when valid). An empty schema accepts everything. A schema the
 * validator cannot apply (saved before `schemaDefect` existed) is reported as a problem, not thrown.
 */
export function validateAgainstSchema(schema: object | null | undefined, value: unknown): SchemaProblem[] {
  if (!schema || Object.keys(schema).length === 0) return [];
  let result: ReturnType<Validator["validate"]>;
  try {
    result = validatorFor(schema).validate(value);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return [{ location: "#", message: `The schema cannot be applied: ${reason}` }];
  }
  if (result.valid) return [];
  // The last errors are the most specific ones (the first are "properties failed" summaries).
  const specific = result.errors.filter(
    (error) => !/^Property ".*" does not match schema\.$|does not match|failed/.test(error.error),
  );
  return (specific.length ? specific : result.errors).map((error) => ({
    location: error.instanceLocation,
    message: error.error,
  }));
}

/** `Schema validation failed: <location>: <message>` (SINAS's message prefix). */
export function describeSchemaProblems(problems: SchemaProblem[]): string {
  const details = problems
    .slice(0, 5)
    .map((problem) => `${problem.location.replace(/^#/, "") || "/"}: ${problem.message}`);
  return `Schema validation failed: ${details.join("; ")}`;
}
