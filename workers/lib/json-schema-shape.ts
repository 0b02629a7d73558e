/**
 * @module The shapes of the JSON Schema keywords the validator iterates or compares (`required` must be a list,
 * `dependentRequired` a map of lists, `type` a type name...), checked where a schema sits: a schema saved with
 * `dependentRequired: {"a": 5}` was accepted, then failed every run ("required2 is not iterable"). Maps of
 * schemas (`properties`...) are told apart from schemas, so a property named `type` is a name, not a keyword.
 */

const JSON_TYPES = new Set(["object", "array", "string", "number", "integer", "boolean", "null"]);
/** Keywords whose value is an object mapping names to schemas. */
const SCHEMA_MAPS = new Set(["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"]);
/** Keywords whose value is a list of schemas. */
const SCHEMA_LISTS = new Set(["allOf", "anyOf", "oneOf", "prefixItems"]);
/** Keywords whose value is one schema. */
const SCHEMA_VALUES = new Set([
  "items",
  "additionalItems",
  "additionalProperties",
  "not",
  "if",
  "then",
  "else",
  "contains",
  "propertyNames",
  "unevaluatedItems",
  "unevaluatedProperties",
]);
const NUMBERS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
const COUNTS = [
  "minLength",
  "maxLength",
  "minItems",
  "maxItems",
  "minProperties",
  "maxProperties",
  "minContains",
  "maxContains",
];
const MAX_DEPTH = 64;

const isRecord = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === "object" && !Array.isArray(value);
const isNameList = (value: unknown) =>
  Array.isArray(value) && value.every((item) => typeof item === "string");

/** What is wrong with one schema's own keywords, or null. */
function ownKeywordDefect(schema: Record<string, unknown>): string | null {
  const { type } = schema;
  if (type !== undefined) {
    const types = Array.isArray(type) ? type : [type];
    if (!types.every((name) => typeof name === "string" && JSON_TYPES.has(name))) {
      return "'type' must be a JSON type name or a list of them";
    }
  }
  if (schema.required !== undefined && !isNameList(schema.required)) {
    return "'required' must be a list of property names";
  }
  if (schema.enum !== undefined && !Array.isArray(schema.enum)) return "'enum' must be a list";
  const dependent = schema.dependentRequired;
  if (dependent !== undefined && !(isRecord(dependent) && Object.values(dependent).every(isNameList))) {
    return "'dependentRequired' must map property names to lists of property names";
  }
  for (const key of NUMBERS) {
    // Draft-04's boolean exclusiveMinimum/Maximum is not 2020-12's, the draft the validator applies.
    if (schema[key] !== undefined && typeof schema[key] !== "number") {
      return `'${key}' must be a number (JSON Schema 2020-12)`;
    }
  }
  if (schema.multipleOf !== undefined && !(typeof schema.multipleOf === "number" && schema.multipleOf > 0)) {
    return "'multipleOf' must be a number above 0";
  }
  for (const key of COUNTS) {
    const count = schema[key];
    if (count !== undefined && !(Number.isInteger(count) && (count as number) >= 0)) {
      return `'${key}' must be a whole number >= 0`;
    }
  }
  if (schema.uniqueItems !== undefined && typeof schema.uniqueItems !== "boolean") {
    return "'uniqueItems' must be true or false";
  }
  return null;
}

/** The first keyword of `schema` or of a schema inside it with a value of the wrong shape, with its path. */
export function keywordShapeDefect(schema: unknown, path = "", depth = 0): string | null {
  if (depth > MAX_DEPTH || typeof schema === "boolean" || !isRecord(schema)) return null;
  const own = ownKeywordDefect(schema);
  if (own) return `${path || "/"}: ${own}`;
  for (const [key, value] of Object.entries(schema)) {
    const at = `${path}/${key}`;
    if (SCHEMA_MAPS.has(key)) {
      if (!isRecord(value)) return `${at}: must map names to schemas`;
      for (const [name, sub] of Object.entries(value)) {
        const defect = keywordShapeDefect(sub, `${at}/${name}`, depth + 1);
        if (defect) return defect;
      }
    } else if (SCHEMA_LISTS.has(key)) {
      if (!Array.isArray(value)) return `${at}: must be a list of schemas`;
      for (const [index, sub] of value.entries()) {
        const defect = keywordShapeDefect(sub, `${at}/${index}`, depth + 1);
        if (defect) return defect;
      }
    } else if (SCHEMA_VALUES.has(key)) {
      const defect = Array.isArray(value)
        ? value.map((sub, index) => keywordShapeDefect(sub, `${at}/${index}`, depth + 1)).find(Boolean)
        : keywordShapeDefect(value, at, depth + 1);
      if (defect) return defect;
    }
  }
  return null;
}
