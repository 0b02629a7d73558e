/**
 * @module Jinja rendering for agent system prompts and function-parameter defaults (sinas-spec §5.3, §5.5),
 * with `@huggingface/jinja`, which interprets templates without `eval` (workerd forbids it).
 */
import { Template } from "@huggingface/jinja";

/** Renders `source` with `variables`; throws on a syntax error. Undefined variables render empty. */
export function renderTemplate(source: string, variables: Record<string, unknown>): string {
  return new Template(source).render(variables);
}
