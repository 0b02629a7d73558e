/**
 * @module Function-parameter prefill (sinas-spec §5.5.3, D-24): an agent's `function_parameters` rendered with a
 * chat's input. Apart from the tools so that chat creation can check an input renders them.
 */

import { isJsonObject } from "../db/json";
import type { JsonObject } from "../db/schema";
import { AppError, messageOf } from "../lib/errors";
import { renderTemplate } from "../lib/jinja";

function renderParameterValue(value: unknown, input: JsonObject): unknown {
  if (typeof value === "string") return renderTemplate(value, input);
  if (Array.isArray(value))
    return value.map((item) => (typeof item === "string" ? renderTemplate(item, input) : item));
  if (isJsonObject(value)) return renderPrefill(value, input);
  return value;
}

/**
 * `function_parameters` rendered with the chat input: strings are Jinja templates, nested objects are rendered
 * recursively, strings inside lists are rendered, other values pass through. Throws on a template error.
 *
 * @example
 * renderPrefill({ city: "{{ home_city }}", units: "metric" }, { home_city: "London" })
 * // { city: "London", units: "metric" }
 */
export function renderPrefill(parameters: JsonObject, input: JsonObject): JsonObject {
  const rendered: JsonObject = {};
  for (const [key, value] of Object.entries(parameters)) rendered[key] = renderParameterValue(value, input);
  return rendered;
}

/**
 * The prefilled values of one function for this chat: rendered when the chat has an input, raw otherwise
 * (templates stay literal). A render error is a 400 naming the function: §5.5.3 would prefill nothing, which
 * unlocks every locked parameter of that function for the model. Chat creation refuses an input the
 * parameters cannot render, so this happens only after the agent's parameters changed.
 */
export function prefillFor(
  functionParameters: Record<string, JsonObject>,
  ref: string,
  agentInput: JsonObject | null,
): JsonObject {
  const parameters = functionParameters[ref];
  if (!isJsonObject(parameters)) return {};
  if (!agentInput || Object.keys(agentInput).length === 0) return parameters;
  try {
    return renderPrefill(parameters, agentInput);
  } catch (error) {
    throw new AppError(
      "BAD_REQUEST",
      `The agent's function_parameters for '${ref}' do not render with the chat's input: ${messageOf(error)}`,
    );
  }
}
