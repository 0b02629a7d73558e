/**
 * @module Function-parameter prefill (sinas-spec §5.5.3, D-24): an agent's `function_parameters` rendered with a
 * chat's input. Apart from the tools so that chat creation can check an input renders them.
 *
 * A prefilled value is locked: it replaces the model's argument, so it must fit the function's input schema
 * or every call fails validation with no way for the model to fix it. Hence a template that is one expression
 * (`{{ offset }}`) keeps that expression's value (5, not "5"), and text for a parameter the schema declares
 * `integer`, `number` or `boolean` becomes that type when it reads as one ("5", "true").
 */

import { Template } from "@huggingface/jinja";
import { isJsonObject } from "../db/json";
import type { JsonObject, JsonSchema } from "../db/schema";
import { AppError, messageOf } from "../lib/errors";
import { renderTemplate } from "../lib/jinja";

/** The variable that holds an expression's value in VALUE_TEMPLATE; an input of that name is read before it is set. */
const HELD = "__sinas_prefill_value";

/**
 * Renders one expression (the text inside `{{ }}`) as `J` + its value as JSON, or `T` + its text when it has no
 * JSON form (a function), or nothing when it is undefined. It goes through renderTemplate, so the render
 * budget, the output limit and the `namespace` check hold for it as for any template; `tojson` is charged as
 * the text it makes. It is evaluated once (`set`), so it costs what `{{ expression }}` costs, plus its JSON.
 */
function valueTemplate(expression: string): string {
  return (
    `{% set ${HELD} = (${expression}) %}{% if ${HELD} is defined %}` +
    `{% if ${HELD} is callable %}T{{ ${HELD} }}{% else %}J{{ ${HELD} | tojson }}{% endif %}{% endif %}`
  );
}

/**
 * The expression of a template that is exactly one `{{ expression }}` (spaces and `-` trim marks inside the
 * braces allowed, nothing outside them), else null. The library parses `{{-` and `-}}` as trim marks wherever
 * they open or close an expression, so the expression is what lies between them. A template that does not
 * parse is null: renderTemplate reports its error.
 */
function soleExpression(source: string): string | null {
  if (!source.startsWith("{{") || !source.endsWith("}}")) return null;
  try {
    if (new Template(source).parsed.body.length !== 1) return null;
  } catch {
    return null;
  }
  return source.slice(source.startsWith("{{-") ? 3 : 2, source.endsWith("-}}") ? -3 : -2);
}

/**
 * A template rendered with `input`: the value of a sole expression (number, boolean, list, mapping, null; an
 * undefined one renders empty, as in text), else the rendered text.
 */
function renderTemplateValue(source: string, input: JsonObject): unknown {
  const expression = soleExpression(source);
  if (expression === null) return renderTemplate(source, input);
  const rendered = renderTemplate(valueTemplate(expression), input);
  if (rendered === "") return "";
  return rendered.startsWith("J") ? JSON.parse(rendered.slice(1)) : rendered.slice(1);
}

/** A JSON number, with spaces around it allowed. */
const NUMBER = /^\s*-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?\s*$/;
const BOOLEANS: Record<string, boolean> = { true: true, false: false, True: true, False: false };

/**
 * `text` as the type `schema` declares when that is `integer`, `number` or `boolean` and the text reads as one
 * (a JSON number, an integer within 2^53, `true`/`false` or Python's `True`/`False`, spaces around allowed); the
 * text otherwise. A string never fits those types, so nothing that would validate is changed.
 */
function fitted(text: string, schema: unknown): unknown {
  const type = isJsonObject(schema) ? schema.type : undefined;
  if (type === "boolean") return BOOLEANS[text.trim()] ?? text;
  if ((type !== "integer" && type !== "number") || !NUMBER.test(text)) return text;
  const number = Number(text);
  if (!Number.isFinite(number) || (type === "integer" && !Number.isSafeInteger(number))) return text;
  return number;
}

/** The schema of `key` in an object schema's `properties`, or of the items of an array schema. */
const propertySchema = (schema: unknown, key: string): unknown =>
  isJsonObject(schema) && isJsonObject(schema.properties) ? schema.properties[key] : undefined;
const itemSchema = (schema: unknown): unknown => (isJsonObject(schema) ? schema.items : undefined);

/** The JSON-schema types `schema` declares (none: any). */
function declaredTypes(schema: unknown): unknown[] {
  const type = isJsonObject(schema) ? schema.type : undefined;
  return type === undefined ? [] : Array.isArray(type) ? type : [type];
}

/** Whether `value` is of one of `types` (JSON-schema names; a whole number is an `integer` too). */
function isOfTypes(value: unknown, types: unknown[]): boolean {
  if (value === null) return types.includes("null");
  if (Array.isArray(value)) return types.includes("array");
  if (typeof value === "number")
    return types.includes("number") || (types.includes("integer") && Number.isInteger(value));
  return types.includes(typeof value);
}

/**
 * A sole expression's value where the schema takes it; its text where the schema wants a string and not that
 * value's type (`{{ account_id }}` of 42 for a string parameter is "42", as it was before values were kept).
 */
function valueOrText(source: string, value: unknown, input: JsonObject, schema: unknown): unknown {
  const types = declaredTypes(schema);
  if (types.length === 0 || !types.includes("string") || isOfTypes(value, types)) return value;
  return renderTemplate(source, input);
}

/** `value` rendered with `input` (null: left as written), at any depth, strings fitted to `schema`. */
function renderValue(value: unknown, input: JsonObject | null, schema: unknown): unknown {
  if (typeof value === "string") {
    const rendered = input ? renderTemplateValue(value, input) : value;
    if (typeof rendered === "string") return fitted(rendered, schema);
    return input ? valueOrText(value, rendered, input, schema) : rendered;
  }
  if (Array.isArray(value)) return value.map((item) => renderValue(item, input, itemSchema(schema)));
  if (isJsonObject(value)) return renderObject(value, input, schema);
  return value;
}

function renderObject(value: JsonObject, input: JsonObject | null, schema: unknown): JsonObject {
  const rendered: JsonObject = {};
  for (const [key, item] of Object.entries(value))
    rendered[key] = renderValue(item, input, propertySchema(schema, key));
  return rendered;
}

/**
 * `function_parameters` rendered with the chat input: every string, at any depth of objects and lists, is a
 * Jinja template. A template that is one expression keeps its value; other templates give text, which becomes
 * a number or boolean where `inputSchema` (the function's) declares the parameter so and the text reads as
 * one. Other values pass through. Throws on a template error.
 *
 * @example
 * renderPrefill({ city: "{{ home_city }}", days: "{{ days }}", label: "in {{ home_city }}" },
 *   { home_city: "London", days: 3 })
 * // { city: "London", days: 3, label: "in London" }
 */
export function renderPrefill(
  parameters: JsonObject,
  input: JsonObject,
  inputSchema: JsonSchema | null = null,
): JsonObject {
  return renderObject(parameters, input, inputSchema);
}

/**
 * The prefilled values of one function for this chat: rendered when the chat has an input, raw otherwise
 * (templates stay literal); with `inputSchema`, text fitted to the declared types either way. A render error
 * is a 400 naming the function: §5.5.3 would prefill nothing, which unlocks every locked parameter of that
 * function for the model. Chat creation refuses an input the parameters cannot render, so this happens only
 * after the agent's parameters changed.
 */
export function prefillFor(
  functionParameters: Record<string, JsonObject>,
  ref: string,
  agentInput: JsonObject | null,
  inputSchema: JsonSchema | null = null,
): JsonObject {
  const parameters = functionParameters[ref];
  if (!isJsonObject(parameters)) return {};
  const input = agentInput && Object.keys(agentInput).length > 0 ? agentInput : null;
  try {
    return renderObject(parameters, input, inputSchema);
  } catch (error) {
    throw new AppError(
      "BAD_REQUEST",
      `The agent's function_parameters for '${ref}' do not render with the chat's input: ${messageOf(error)}`,
    );
  }
}
