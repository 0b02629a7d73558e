/**
 * @module JSON Schema validation without eval (workerd forbids code generation, so ajv cannot run there):
 * @cfworker/json-schema, drafts 4 to 2020-12.
 */
import { type Schema, Validator } from "@cfworker/json-schema";

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

/** Problems of `value` against `schema` (empty when valid). An empty schema accepts everything. */
export function validateAgainstSchema(schema: object | null | undefined, value: unknown): SchemaProblem[] {
  if (!schema || Object.keys(schema).length === 0) return [];
  const result = validatorFor(schema).validate(value);
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
