/**
 * @module Jinja rendering for agent system prompts and function-parameter defaults (sinas-spec §5.3, §5.5),
 * with `@huggingface/jinja`, which interprets templates without `eval` (workerd forbids it).
 *
 * Templates are written by agent authors but rendered with a chat's input, so rendering is bounded: `range()`
 * yields at most `MAX_RANGE_ITEMS` numbers, a render takes at most `MAX_RENDER_STEPS` steps (nested loops over
 * the input could otherwise run for minutes: jinja-budget.ts), and the output may hold at most
 * `MAX_RENDERED_CHARS` characters.
 * The input's keys may be any names, as in Python's Jinja: they shadow the globals (`range`, `true`...), which
 * the library's own `render` refuses ("Variable already declared"); only `namespace` is refused where a template
 * uses it (see renderTemplate).
 */
import { Environment, Template } from "@huggingface/jinja";
import { messageOf } from "./errors";
import { BoundedInterpreter, MAX_RENDERED_CHARS } from "./jinja-budget";

export { MAX_RENDER_STEPS, MAX_RENDERED_CHARS } from "./jinja-budget";

/** The most numbers one `range()` call may yield: a loop over more is refused, not run for minutes. */
export const MAX_RANGE_ITEMS = 10_000;
/**
 * The globals below get the library's values as JavaScript values: a list arrives as an array of runtime values,
 * which `String()` or arithmetic would turn into text at any size, so they take numbers and strings only.
 */
function boundedRange(...args: unknown[]): number[] {
  if (args.length === 0 || args.length > 3 || args.some((value) => typeof value !== "number"))
    throw new Error("range() takes one to three numbers");
  const [first, stop, step = 1] = args as number[];
  const [from, to] = stop === undefined ? [0, first as number] : [first as number, stop];
  if (step === 0) throw new Error("range() step must not be zero");
  const count = Math.max(0, Math.ceil((to - from) / step));
  if (count > MAX_RANGE_ITEMS) throw new Error(`range() may yield at most ${MAX_RANGE_ITEMS} numbers`);
  return Array.from({ length: count }, (_, index) => from + index * step);
}

const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

/** `strftime_now(format)`: the current UTC time with `%Y %m %d %H %M %b %B %%`, as the library offers it. */
function strftimeNow(format: unknown): string {
  if (typeof format !== "string") throw new Error("strftime_now() takes a format string");
  const now = new Date();
  const pad = (value: number) => String(value).padStart(2, "0");
  const fields: Record<string, string> = {
    Y: String(now.getUTCFullYear()),
    m: pad(now.getUTCMonth() + 1),
    d: pad(now.getUTCDate()),
    H: pad(now.getUTCHours()),
    M: pad(now.getUTCMinutes()),
    b: (MONTHS[now.getUTCMonth()] as string).slice(0, 3),
    B: MONTHS[now.getUTCMonth()] as string,
    "%": "%",
  };
  return format.replace(/%([YmdHMbB%])/g, (_, field: string) => fields[field] as string);
}

/** The library's globals (its `setupGlobals`), with a bounded `range`. */
const GLOBALS: [string, unknown][] = [
  ["strftime_now", strftimeNow],
  ["false", false],
  ["true", true],
  ["none", null],
  ["False", false],
  ["True", true],
  ["None", null],
  ["range", boundedRange],
  [
    "raise_exception",
    (message: unknown) => {
      const composite = typeof message === "object" && message !== null;
      throw new Error(
        composite ? "raise_exception() takes a message, not a list or mapping" : String(message),
      );
    },
  ],
];

function scopeOf(variables: Record<string, unknown>): Environment {
  const globals = new Environment();
  for (const [name, value] of GLOBALS) globals.set(name, value);
  const scope = new Environment(globals);
  // Its only own variable is `namespace` (also in `globals`): the input may then take any name.
  scope.variables.clear();
  for (const [name, value] of Object.entries(variables)) scope.set(name, value);
  return scope;
}

/** The syntax error of `source` as a template, or null when it parses. */
export function templateSyntaxError(source: string): string | null {
  try {
    new Template(source);
    return null;
  } catch (error) {
    return messageOf(error);
  }
}

/**
 * Renders `source` with `variables`; throws on a syntax or render error. Undefined variables render empty.
 * An input named `namespace` is refused where the template uses that name: the library declares its own
 * `namespace()` in every loop and macro scope, which would hide the input there without a word.
 */
export function renderTemplate(source: string, variables: Record<string, unknown>): string {
  if (Object.hasOwn(variables, "namespace") && /\bnamespace\b/.test(source))
    throw new Error(
      "the input name 'namespace' is reserved in templates (the engine's namespace()); rename it",
    );
  const result = new BoundedInterpreter(scopeOf(variables)).run(new Template(source).parsed);
  const text = String(result.value ?? "");
  if (text.length > MAX_RENDERED_CHARS)
    throw new Error(`the rendered text exceeds ${MAX_RENDERED_CHARS} characters`);
  return text;
}
