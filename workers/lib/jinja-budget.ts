/**
 * @module The cost model of a Jinja render (`@huggingface/jinja`), for jinja.ts: BoundedInterpreter charges the
 * library's work as it runs and stops a render past `MAX_RENDER_STEPS` steps or `MAX_PRODUCED_CHARS` characters
 * of text. Templates are written by agent authors and rendered with a chat's input in a Durable Object, whose
 * thread and 128 MB every chat of the isolate shares, so every operation whose cost grows with its values is
 * charged. It is long because the library's costs are spread over many operations; each is measured and tested
 * in test/unit/chat-prompt.test.ts ("template render bounds").
 */
import { Environment, Interpreter } from "@huggingface/jinja";

/** The longest rendered text: a system prompt or parameter value beyond it is refused. */
export const MAX_RENDERED_CHARS = 1_000_000;
/**
 * A render's budget, in steps of about one evaluated expression each (~0.5 µs on a slow machine): a loop over
 * 50,000 input items with a few expressions fits, the worst template stops within about half a second.
 */
export const MAX_RENDER_STEPS = 1_000_000;
/** The text a render may produce on its way, counted at every level (a nested block's text counts again). */
const MAX_PRODUCED_CHARS = 16 * MAX_RENDERED_CHARS;

// What the library's work costs, in steps, as measured against evaluating one expression (one step).
/** Per item of a loop's list or mapping, when the loop starts: the library prepares every item first. */
const LOOP_ITEM_STEPS = 2;
/** Per run of a loop body, macro or call block: the library builds a scope (and `loop`) for each run. */
const SCOPE_STEPS = 6;
/** Per name not found: the library throws and catches an error to find that out. */
const UNDEFINED_STEPS = 16;
/** Scopes a name is looked up through per step: macros recursing a thousand deep. */
const SCOPES_PER_STEP = 32;
/** Characters read per step by a string operation (`in`, upper, split, replace...). */
const SCAN_CHARS_PER_STEP = 64;
/** Characters per step where the library makes one value per character (string slices, `join` on a string). */
const SPLIT_CHARS_PER_STEP = 16;
/** List items per step that `in` compares; other operations on a list or mapping cost a step per item. */
const SCAN_ITEMS_PER_STEP = 32;
/** Replacements per step: `replace` calls back for each. */
const MATCHES_PER_STEP = 4;
/**
 * Per part that `split` makes: each is a new value (57 to 110 bytes), so a render's budget makes at most 250,000
 * of them (~25 MB), and the library makes all of them (a JavaScript array of every part first) before returning.
 */
const PART_STEPS = 4;

type Statement = NonNullable<Parameters<Interpreter["evaluate"]>[0]>;
type Value = ReturnType<Interpreter["evaluate"]>;
type Call = (args: Value[], scope: Environment) => Value;
type Arguments = [Value[], Map<string, Value>];

/** The fields of the library's syntax nodes read here (its AST classes are not exported). */
interface Syntax {
  readonly type: string;
}
interface Named extends Syntax {
  value: string;
}
interface ForSyntax extends Syntax {
  iterable: Syntax & { lhs: Syntax };
  body: Syntax[];
}
interface BodySyntax extends Syntax {
  body: Syntax[];
}
interface BinarySyntax extends Syntax {
  operator: { value: string };
  left: Syntax;
  right: Syntax;
}
interface TestSyntax extends Syntax {
  operand: Syntax;
  test: Named;
}
interface MemberSyntax extends Syntax {
  object: Syntax;
  property: Syntax & { value?: unknown };
  computed: boolean;
}
interface CallSyntax extends Syntax {
  callee: Syntax;
  args: Syntax[];
}
/** A value evaluated ahead, standing in for its expression when the library evaluates it (see BoundedInterpreter). */
interface Evaluated extends Syntax {
  value: Value;
}
const EVALUATED = "sinas:Evaluated";

/** The library's interpreter methods hooked here: private in its typings, ordinary methods at run time. */
interface Internals {
  evaluateBlock(statements: Syntax[], environment: Environment): Value;
  applyFilter(operand: Value, filter: Syntax, environment: Environment): Value;
  evaluateArguments(args: Syntax[], environment: Environment): Arguments;
}

/** How a parent uses a node's value whole: a loop goes through it, a block turns it into text... */
type Role = "loop" | "rendered" | "scanned" | "sliced";

/**
 * A value's size as text, summed over everything in it: characters, values, nesting depth. A value held twice
 * counts twice, as its text holds it twice. `mutable`: it holds a namespace, whose entries `set` may change.
 */
interface Shape {
  chars: number;
  nodes: number;
  depth: number;
  mutable?: boolean;
}
const SCALAR: Shape = { chars: 0, nodes: 1, depth: 0 };
/** Marks a value being measured: met again inside itself, it holds itself. */
const MEASURING: Shape = { chars: 0, nodes: 0, depth: 0 };

/** The library's string and mapping methods, each charged in BoundedInterpreter.#methodSteps. */
const STRING_METHODS = new Set([
  "upper",
  "lower",
  "strip",
  "title",
  "capitalize",
  "rstrip",
  "lstrip",
  "startswith",
  "endswith",
  "split",
  "replace",
]);
const MAPPING_METHODS = new Set(["get", "items", "keys", "values", "dictsort"]);
const METHODS = new Set([...STRING_METHODS, ...MAPPING_METHODS]);
/** Filters that take constant time on any operand (a size, an end, or the operand itself). */
const FREE_FILTERS = new Set(["safe", "length", "first", "last", "list", "default"]);
/** Filters whose arguments decide how much text they make: evaluated first, and the result checked before. */
const SIZED_FILTERS = new Set(["join", "replace", "indent", "tojson"]);
/** Operators that may go through or turn into text a whole list or string (not `and`/`or`: they short-circuit). */
const SIZED_OPERATORS = new Set(["in", "not in", "~", "+", "==", "!="]);
/** Tests that read a whole string. */
const SCANNING_TESTS = new Set(["lower", "upper"]);

const isList = (value: Value) => value.type === "ArrayValue" || (value.type as string) === "TupleValue";
const isMapping = (value: Value) =>
  value.type === "ObjectValue" ||
  value.type === "NamespaceValue" ||
  (value.type as string) === "KeywordArgumentsValue";
const isPrimitive = (value: Value) =>
  ["StringValue", "IntegerValue", "FloatValue", "BooleanValue"].includes(value.type);
const itemsOf = (value: Value) => value.value as Value[];
const entriesOf = (value: Value) => value.value as Map<string, Value>;
const textOf = (value: Value) => value.value as string;
const numberOf = (value: Value) => value.value as number;

/** Items of a list or mapping, characters of a string, else 0. */
function sizeOf(value: Value): number {
  if (isList(value)) return itemsOf(value).length;
  if (isMapping(value)) return entriesOf(value).size;
  return value.type === "StringValue" ? textOf(value).length : 0;
}

/**
 * Characters JavaScript's `==` reads: two strings are compared in full when they are of one length (of two
 * lengths they differ at once), a string beside a number or boolean is read as a number.
 */
function comparedChars(left: Value, right: Value): number {
  const [leftText, rightText] = [left.type === "StringValue", right.type === "StringValue"];
  if (leftText && rightText) return sizeOf(left) === sizeOf(right) ? sizeOf(left) : 0;
  if (leftText && isPrimitive(right)) return sizeOf(left);
  if (rightText && isPrimitive(left)) return sizeOf(right);
  return 0;
}

/** Characters `in` compares looking for a string of `length` in `list`: its strings of that length. */
function sameLengthChars(list: Value, length: number): number {
  let chars = 0;
  for (const item of itemsOf(list))
    if (item.type === "StringValue" && textOf(item).length === length) chars += length;
  return chars;
}

/** JavaScript's `\s` (ECMAScript's white space and line terminators), where the library's split() splits. */
function isSpace(code: number): boolean {
  return (
    code === 32 ||
    (code >= 9 && code <= 13) ||
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000 ||
    code === 0xfeff
  );
}

/** Runs of characters other than white space in `subject` (split()'s parts), up to `limit`. */
function words(subject: string, limit: number): number {
  let count = 0;
  let inWord = false;
  for (let at = 0; at < subject.length && count < limit; at++) {
    const space = isSpace(subject.charCodeAt(at));
    if (!space && !inWord) count++;
    inWord = !space;
  }
  return count;
}

/** The message of the library's `namespace()` for an entry that is not a [key, value] pair. */
const NOT_PAIRS = "namespace expected an object or an iterable of [key, value] pairs";
/** The source of the library's `namespace()`: every scope declares its own, so it is known by its text. */
let namespaceSource: string | undefined;

function isLibraryNamespace(value: Value): boolean {
  if (value.type !== "FunctionValue" || typeof value.value !== "function") return false;
  namespaceSource ??= String(new Environment().variables.get("namespace")?.value);
  return String(value.value) === namespaceSource;
}

function evaluated(value: Value): Syntax {
  return { type: EVALUATED, value } as Evaluated;
}

/** Evaluated arguments as argument syntax: the library's own evaluation of them returns these values. */
function evaluatedArguments([positional, keywords]: Arguments): Syntax[] {
  return [
    ...positional.map(evaluated),
    ...[...keywords].map(([key, value]) => ({
      type: "KeywordArgumentExpression",
      key: { type: "Identifier", value: key },
      value: evaluated(value),
    })),
  ];
}

/** How often `part` occurs in `subject` (without overlaps), up to `limit`; "" occurs between every character. */
function occurrences(subject: string, part: string, limit: number): number {
  if (part === "") return Math.min(subject.length + 1, limit);
  let count = 0;
  for (
    let at = subject.indexOf(part);
    at !== -1 && count < limit;
    at = subject.indexOf(part, at + part.length)
  )
    count++;
  return count;
}

/** The nodes in a piece of syntax: what the library walks each time a macro or call block is defined. */
function syntaxSize(syntax: unknown): number {
  if (Array.isArray(syntax)) return syntax.reduce((sum: number, child) => sum + syntaxSize(child), 0);
  if (typeof syntax !== "object" || syntax === null) return 0;
  let size = 1;
  for (const child of Object.values(syntax)) size += syntaxSize(child);
  return size;
}

let methodsChecked = false;

/** Fails loudly when the library has string or mapping methods that BoundedInterpreter does not charge. */
function checkLibraryMethods(): void {
  if (methodsChecked) return;
  const probe = new Environment();
  for (const [name, sample, known] of [
    ["text", "", STRING_METHODS],
    ["mapping", {}, MAPPING_METHODS],
    ["list", [], new Set<string>()],
  ] as const) {
    for (const [method, value] of probe.set(name, sample).builtins)
      if (value.type === "FunctionValue" && !known.has(method))
        throw new Error(
          `@huggingface/jinja has a ${name} method '${method}' that the render bounds do not charge`,
        );
  }
  methodsChecked = true;
}

/**
 * Counts what a render does and stops it past the budgets: `MAX_RENDER_STEPS` steps of work and
 * `MAX_PRODUCED_CHARS` characters of text made on the way (memory). Everything is charged where the work is done,
 * as it runs, so a render stops early instead of after its work:
 * - a step per evaluated expression or statement (`evaluate`, public), and per block run (`evaluateBlock`), six
 *   for the body of a loop or macro: a loop runs its body through `evaluateBlock` once per item, whatever it
 *   iterates (a list, a mapping's keys);
 * - a loop, when it starts, two steps per item of its list or mapping: the library prepares each item first,
 *   also when the loop breaks at the first;
 * - a list or mapping when it is built (the result of a call, filter, operator or literal: `range()`, `.items()`,
 *   `xs + ys`...), a step per item, once; looking one up (`xs`, `x.tags`) costs nothing: the input is converted
 *   once, when the scope is set;
 * - an operation by the size of what it goes through: a filter by its operand (a step per item of a list or
 *   mapping, a string's characters at 64 a step; `length`, `first`, `default`... nothing), `in` by the list or
 *   string it searches, a string method by its string, sorting per comparison, a list turned into text (tojson,
 *   output, `~`) by everything in it, `==` and `in` by the strings they compare; measuring a list or mapping
 *   costs a step per value it holds, once (a shape holding a namespace, which `set` changes, every time);
 * - values made one per part or entry: `split` by its parts, `namespace()` by its entries;
 * - text made (strings computed, blocks' output) to the characters' budget, before it is made where one
 *   operation could make far more than it reads (join's separator, replace, indent, tojson's indent).
 * The library's `evaluateBlock`, `applyFilter` and `evaluateArguments` are private in its typings: this instance
 * shadows them with bound wrappers (the library calls them as `this.x(...)`), and refuses to run if they are gone.
 * Where a check needs an operation's values before the library uses them (operands of `in` or `~`, a filter's
 * arguments, a method's receiver), they are evaluated here, in the library's order, and handed to the library as
 * already evaluated syntax (EVALUATED).
 */
export class BoundedInterpreter extends Interpreter {
  #steps = 0;
  #chars = 0;
  /** Loop bodies and macro calls running now: the scopes a name is looked up through. */
  #depth = 0;
  /** Lists, mappings and strings already charged: each once, however often it is used after. */
  readonly #paid = new WeakSet<object>();
  /** Nodes (and blocks) whose children's roles are set. */
  readonly #prepared = new WeakSet<object>();
  readonly #roles = new WeakMap<object, Role>();
  /** Bodies that run in a scope of their own: loops', macros', call blocks'. */
  readonly #scoped = new WeakSet<object>();
  /** The syntax size of macro and call-block definitions. */
  readonly #definitions = new WeakMap<object, number>();
  /** Shapes of lists and mappings, which do not change (namespaces do: a shape holding one is not kept). */
  readonly #shapes = new WeakMap<object, Shape>();
  readonly #library: Internals;

  constructor(environment: Environment) {
    super(environment);
    const self = this as unknown as Internals;
    const { evaluateBlock, applyFilter, evaluateArguments } = self;
    for (const [name, method] of Object.entries({ evaluateBlock, applyFilter, evaluateArguments }))
      if (typeof method !== "function")
        throw new Error(`@huggingface/jinja's Interpreter has no ${name}: the render bounds need it`);
    checkLibraryMethods();
    this.#library = {
      evaluateBlock: evaluateBlock.bind(this),
      applyFilter: applyFilter.bind(this),
      evaluateArguments: evaluateArguments.bind(this),
    };
    self.evaluateBlock = (statements, scope) => this.#block(statements, scope);
    self.applyFilter = (operand, filter, scope) => this.#filter(operand, filter, scope);
    self.evaluateArguments = (args, scope) => this.#arguments(args, scope);
  }

  override evaluate(statement: Statement | undefined, environment: Environment): Value {
    if (statement?.type === EVALUATED) return (statement as unknown as Evaluated).value;
    this.#spend(1);
    if (statement === undefined) return super.evaluate(statement, environment);
    if (!this.#prepared.has(statement)) this.#prepare(statement);
    const value = this.#dispatch(statement, environment);
    const role = this.#roles.get(statement);
    if (role !== undefined) this.#consume(role, value);
    this.#charge(statement, value);
    return value;
  }

  #dispatch(statement: Statement, environment: Environment): Value {
    switch (statement.type) {
      case "BinaryExpression":
        return this.#binary(statement as unknown as BinarySyntax, environment);
      case "MemberExpression":
        return this.#member(statement as unknown as MemberSyntax, environment);
      case "Identifier": {
        const value = super.evaluate(statement, environment);
        this.#spend(this.#depth / SCOPES_PER_STEP + (value.type === "UndefinedValue" ? UNDEFINED_STEPS : 0));
        // The library's namespace() is reached only by its name: wrapped here, it is checked wherever it is called.
        const name = (statement as unknown as Named).value;
        return name === "namespace" && isLibraryNamespace(value) ? this.#namespace(value) : value;
      }
      case "Macro":
      case "CallStatement":
        this.#spend(this.#definitions.get(statement) ?? 0);
        break;
    }
    return super.evaluate(statement, environment);
  }

  /** Notes, once per node, how it uses its children's values (see Role) and which bodies are scoped. */
  #prepare(node: Syntax): void {
    this.#prepared.add(node);
    switch (node.type) {
      case "For": {
        const loop = node as ForSyntax;
        this.#roles.set(
          loop.iterable.type === "SelectExpression" ? loop.iterable.lhs : loop.iterable,
          "loop",
        );
        this.#scoped.add(loop.body);
        break;
      }
      case "Macro":
      case "CallStatement":
        this.#scoped.add((node as BodySyntax).body);
        this.#definitions.set(node, syntaxSize(node));
        break;
      case "TestExpression": {
        const test = node as TestSyntax;
        if (SCANNING_TESTS.has(test.test.value)) this.#roles.set(test.operand, "scanned");
        break;
      }
      case "MemberExpression": {
        const member = node as MemberSyntax;
        if (member.computed && member.property.type === "SliceExpression")
          this.#roles.set(member.object, "sliced");
        break;
      }
    }
  }

  #consume(role: Role, value: Value): void {
    switch (role) {
      case "loop":
        if (isList(value)) this.#spend(sizeOf(value) * LOOP_ITEM_STEPS);
        // A mapping's keys are made into a list first.
        else if (isMapping(value)) this.#spend(sizeOf(value) * (LOOP_ITEM_STEPS + 1));
        break;
      case "rendered":
        if (isList(value) || isMapping(value)) this.#spend(this.#json(value));
        break;
      case "scanned":
        if (value.type === "StringValue") this.#spend(sizeOf(value) / SCAN_CHARS_PER_STEP);
        break;
      case "sliced":
        if (value.type === "StringValue") this.#spend(sizeOf(value) / SPLIT_CHARS_PER_STEP);
        else if (isList(value)) this.#spend(sizeOf(value) / SCAN_ITEMS_PER_STEP);
        break;
    }
  }

  /** Charges what an expression made: a new list or mapping per item, a new string to the characters made. */
  #charge(statement: Statement, value: Value): void {
    switch (statement.type) {
      case "Identifier":
      case "StringLiteral":
        return;
      case "MemberExpression":
        if ((statement as unknown as MemberSyntax).property.type !== "SliceExpression") return;
    }
    if (isList(value) || isMapping(value)) {
      if (this.#paid.has(value)) return;
      this.#paid.add(value);
      this.#spend(sizeOf(value));
    } else if (value.type === "StringValue" && !this.#paid.has(value)) {
      this.#paid.add(value);
      this.#produce(sizeOf(value));
    }
  }

  #block(statements: Syntax[], environment: Environment): Value {
    const scoped = this.#scoped.has(statements);
    this.#spend(scoped ? SCOPE_STEPS : 1);
    if (!this.#prepared.has(statements)) {
      this.#prepared.add(statements);
      for (const statement of statements) this.#roles.set(statement, "rendered");
    }
    if (scoped) this.#depth++;
    let text: Value;
    try {
      text = this.#library.evaluateBlock(statements, environment);
    } finally {
      if (scoped) this.#depth--;
    }
    this.#paid.add(text);
    this.#produce(sizeOf(text));
    return text;
  }

  /** The library's evaluation of call arguments, charging the items that `*list` and `**mapping` unpack. */
  #arguments(args: Syntax[], environment: Environment): Arguments {
    const result = this.#library.evaluateArguments(args, environment);
    this.#spend(Math.max(0, result[0].length + result[1].size - args.length));
    return result;
  }

  #filter(operand: Value, filter: Syntax, environment: Environment): Value {
    if (filter.type !== "CallExpression") {
      const name = filter.type === "Identifier" ? (filter as Named).value : "";
      this.#spend(this.#filterSteps(name, operand, undefined));
      return this.#library.applyFilter(operand, filter, environment);
    }
    const call = filter as CallSyntax;
    const name = call.callee.type === "Identifier" ? (call.callee as Named).value : "";
    if (!SIZED_FILTERS.has(name)) {
      this.#spend(this.#filterSteps(name, operand, [[], new Map()]));
      return this.#library.applyFilter(operand, filter, environment);
    }
    const args = this.#arguments(call.args, environment);
    this.#spend(this.#filterSteps(name, operand, args));
    const withArgs: CallSyntax = { ...call, args: evaluatedArguments(args) };
    return this.#library.applyFilter(operand, withArgs, environment);
  }

  /** What filter `name` costs on `operand`; `args` is undefined for a filter without parentheses. */
  #filterSteps(name: string, operand: Value, args: Arguments | undefined): number {
    if (FREE_FILTERS.has(name)) return 0;
    const [positional, keywords] = args ?? [[], new Map<string, Value>()];
    if (operand.type === "StringValue") {
      const subject = textOf(operand);
      switch (name) {
        case "string":
          return 0; // the string itself
        case "join": {
          if (args === undefined) return 0; // the string itself; join(separator) takes it apart
          const separator = positional[0] ?? keywords.get("separator");
          this.#fits(subject.length * (1 + (separator ? sizeOf(separator) : 0)));
          return subject.length / SPLIT_CHARS_PER_STEP;
        }
        case "replace":
          return this.#replace(subject, positional[0], positional[1], positional[2] ?? keywords.get("count"));
        case "indent": {
          const width = args === undefined ? undefined : (positional[0] ?? keywords.get("width"));
          const spaces =
            width === undefined ? 4 : width.type === "IntegerValue" ? Math.max(0, numberOf(width)) : 0;
          this.#fits(subject.length + (occurrences(subject, "\n", Number.POSITIVE_INFINITY) + 1) * spaces);
          return subject.length / SCAN_CHARS_PER_STEP;
        }
        case "tojson":
          return this.#json(operand, keywords);
        default:
          return subject.length / SCAN_CHARS_PER_STEP;
      }
    }
    if (!isList(operand) && !isMapping(operand)) return 0;
    switch (name) {
      case "tojson":
      case "string":
        return this.#json(operand, keywords);
      case "join": {
        const separator = positional[0] ?? keywords.get("separator");
        return this.#listText(operand, separator ? sizeOf(separator) : 0);
      }
      case "sort":
      case "dictsort":
        return this.#sort(operand, args !== undefined);
      default:
        return sizeOf(operand);
    }
  }

  /**
   * Sorting: per comparison, a quarter of a step for plain values (a step with arguments, which may compare by
   * attribute), and the strings lowercased in each comparison.
   */
  #sort(value: Value, withArguments: boolean): number {
    const rounds = Math.log2(sizeOf(value) + 1);
    const comparisons = sizeOf(value) * rounds * (withArguments ? 1 : 0.25);
    return comparisons + (this.#shape(value).chars * rounds) / SCAN_CHARS_PER_STEP;
  }

  /** `replace` (filter or method): checks the text it makes, and costs its reading and its replacements. */
  #replace(subject: string, old?: Value, fresh?: Value, count?: Value): number {
    if (old?.type !== "StringValue" || fresh?.type !== "StringValue") return 0; // the library refuses it
    const limit =
      count?.type === "IntegerValue" && numberOf(count) >= 0 ? numberOf(count) : Number.POSITIVE_INFINITY;
    const matches = occurrences(subject, textOf(old), limit);
    this.#fits(subject.length + matches * Math.max(0, sizeOf(fresh) - sizeOf(old)));
    return subject.length / SCAN_CHARS_PER_STEP + matches / MATCHES_PER_STEP;
  }

  /** A value turned into JSON (tojson, output of a list or mapping): checks the most text it can make, and costs going through it. */
  #json(value: Value, options?: Map<string, Value>): number {
    const indent = options?.get("indent");
    const width = indent?.type === "IntegerValue" ? Math.max(0, numberOf(indent)) : 0;
    const separators = options?.get("separators");
    const between = separators && isList(separators) ? this.#shape(separators).chars : 0;
    const shape = this.#shape(value);
    this.#fits(jsonSize(shape, between + (width > 0 ? 1 + width * (shape.depth + 1) : 0)));
    const sortKeys = options?.get("sort_keys")?.value === true ? Math.log2(shape.nodes + 1) / 4 : 0;
    return shape.nodes * (1 + sortKeys) + shape.chars / SCAN_CHARS_PER_STEP;
  }

  /**
   * A list (or mapping) turned into text by JavaScript (`join`, `~`, `==`): its strings as they are, what is
   * nested in its items as JSON; `separator` characters between items. Checks the text, costs going through it.
   */
  #listText(value: Value, separator = 0): number {
    const shape = this.#shape(value);
    const text = shape.depth > 1 ? jsonSize(shape) : shape.chars + shape.nodes * 26;
    this.#fits(text + sizeOf(value) * separator);
    return shape.nodes + shape.chars / SCAN_CHARS_PER_STEP;
  }

  /**
   * The shape of `value`. Each list or mapping is walked once per measurement, a step per value it holds, and
   * its shape kept unless it holds a namespace: a value held many times (namespaces holding one another, which
   * would unfold into exponentially many) is summed, not walked again. A namespace that holds itself is refused.
   */
  #shape(value: Value): Shape {
    return this.#measure(value, new Map());
  }

  #measure(value: Value, measured: Map<Value, Shape>): Shape {
    if (value.type === "StringValue") return { chars: textOf(value).length, nodes: 1, depth: 0 };
    const list = isList(value);
    if (!list && !isMapping(value)) return SCALAR;
    const known = this.#shapes.get(value) ?? measured.get(value);
    if (known === MEASURING) throw new Error("the template makes a namespace that holds itself");
    if (known) return known;
    measured.set(value, MEASURING);
    this.#spend(1 + sizeOf(value));
    const shape: Shape = { chars: 0, nodes: 1, depth: 1, mutable: value.type === "NamespaceValue" };
    const add = (child: Value) => {
      const inner = this.#measure(child, measured);
      shape.chars += inner.chars;
      shape.nodes += inner.nodes;
      shape.depth = Math.max(shape.depth, inner.depth + 1);
      shape.mutable ||= inner.mutable;
    };
    if (list) for (const item of itemsOf(value)) add(item);
    else
      for (const [key, item] of entriesOf(value)) {
        shape.chars += key.length;
        add(item);
      }
    measured.set(value, shape);
    if (!shape.mutable) this.#shapes.set(value, shape);
    return shape;
  }

  /** Operators: both operands first (as the library does), then what the operator goes through. */
  #binary(node: BinarySyntax, environment: Environment): Value {
    const operator = node.operator.value;
    if (!SIZED_OPERATORS.has(operator)) return super.evaluate(node as unknown as Statement, environment);
    const left = this.evaluate(node.left as unknown as Statement, environment);
    const right = this.evaluate(node.right as unknown as Statement, environment);
    switch (operator) {
      case "in":
      case "not in":
        if (isList(right)) {
          this.#spend(sizeOf(right) / SCAN_ITEMS_PER_STEP);
          // The library searches with ===, which compares a string with every string of its length in full.
          if (left.type === "StringValue")
            this.#spend(sameLengthChars(right, sizeOf(left)) / SCAN_CHARS_PER_STEP);
        } else if (right.type === "StringValue" && left.type === "StringValue")
          this.#spend(sizeOf(right) / SCAN_CHARS_PER_STEP);
        break;
      case "==":
      case "!=":
        // The library compares with JavaScript's ==, which turns a list beside a string or number into text.
        if (isList(left) !== isList(right) && (isPrimitive(left) || isPrimitive(right)))
          this.#spend(this.#listText(isList(left) ? left : right));
        else this.#spend(comparedChars(left, right) / SCAN_CHARS_PER_STEP);
        break;
      default:
        // `~`, and `+` beside a string, turn a list into text.
        if (operator === "~" || left.type === "StringValue" || right.type === "StringValue")
          for (const side of [left, right]) if (isList(side)) this.#spend(this.#listText(side));
    }
    const operands = { left: evaluated(left), right: evaluated(right) };
    return super.evaluate({ ...node, ...operands } as unknown as Statement, environment);
  }

  /**
   * Member lookups that may yield a method (`s.upper`, `d.items`, `x[name]`): the receiver first, then the
   * method wrapped so that each call is charged, wherever it is called (`{% set f = s.upper %}`).
   */
  #member(node: MemberSyntax, environment: Environment): Value {
    const mayBeMethod = node.computed
      ? node.property.type !== "SliceExpression"
      : METHODS.has(String(node.property.value));
    if (!mayBeMethod) return super.evaluate(node as unknown as Statement, environment);
    const receiver = this.evaluate(node.object as unknown as Statement, environment);
    const value = super.evaluate(
      { ...node, object: evaluated(receiver) } as unknown as Statement,
      environment,
    );
    return value.type === "FunctionValue" ? this.#method(receiver, value) : value;
  }

  #method(receiver: Value, method: Value): Value {
    const name = [...receiver.builtins].find(([, candidate]) => candidate === method)?.[0];
    if (name === undefined) return method; // a macro kept in a namespace
    const call = method.value as Call;
    const FunctionValue = method.constructor as new (call: Call) => Value;
    return new FunctionValue((args, scope) => {
      this.#spend(this.#methodSteps(receiver, name, args));
      return call(args, scope);
    });
  }

  #methodSteps(receiver: Value, name: string, args: Value[]): number {
    if (receiver.type === "StringValue") {
      const subject = textOf(receiver);
      switch (name) {
        case "startswith":
        case "endswith": {
          if (args[0] === undefined) return 0;
          const prefixes = this.#shape(args[0]);
          return prefixes.nodes / SCAN_ITEMS_PER_STEP + prefixes.chars / SCAN_CHARS_PER_STEP;
        }
        case "replace": {
          const options =
            args[2]?.type === ("KeywordArgumentsValue" as string) ? entriesOf(args[2]) : undefined;
          return this.#replace(subject, args[0], args[1], options ? options.get("count") : args[2]);
        }
        case "split":
          this.#spend(subject.length / SCAN_CHARS_PER_STEP);
          return this.#parts(subject, args[0], args[1]) * PART_STEPS;
        default:
          return subject.length / SCAN_CHARS_PER_STEP;
      }
    }
    if (!isMapping(receiver) || name === "get") return 0;
    return name === "dictsort" ? this.#sort(receiver, true) : sizeOf(receiver);
  }

  /**
   * The parts `split(separator, maxsplit)` makes, counted up to what the budget has left: with a separator, one
   * more than its occurrences (the library splits at all of them, then joins those past `maxsplit` again);
   * without, the words, up to `maxsplit` + 1.
   */
  #parts(subject: string, separator?: Value, maxsplit?: Value): number {
    const limit = Math.floor((MAX_RENDER_STEPS - this.#steps) / PART_STEPS) + 1;
    if (separator?.type === "StringValue")
      return textOf(separator) === "" ? 0 : occurrences(subject, textOf(separator), limit) + 1;
    if (separator !== undefined && separator.type !== "NullValue") return 0; // the library refuses it
    const most =
      maxsplit?.type === "IntegerValue" && numberOf(maxsplit) !== -1
        ? Math.max(0, numberOf(maxsplit)) + 1
        : Number.POSITIVE_INFINITY;
    return words(subject, Math.min(limit, most));
  }

  /**
   * The library's `namespace()`, checking its argument first: a list's entries cost a step each (a mapping's
   * too), and a string entry longer than a pair is refused before the library makes a value per character of it.
   */
  #namespace(library: Value): Value {
    const call = library.value as Call;
    const FunctionValue = library.constructor as new (call: Call) => Value;
    return new FunctionValue((args, scope) => {
      const keywords = args.at(-1)?.type === ("KeywordArgumentsValue" as string);
      const positional = keywords ? args.slice(0, -1) : args;
      const source = positional.length === 1 ? positional[0] : undefined;
      if (source && (isList(source) || isMapping(source))) this.#spend(sizeOf(source));
      if (source && isList(source))
        for (const entry of itemsOf(source)) {
          // Two characters at most two units each: a longer string is no [key, value] pair.
          if (entry.type === "StringValue") {
            if (textOf(entry).length > 4) throw new Error(NOT_PAIRS);
          } else if (!isList(entry) || sizeOf(entry) !== 2 || itemsOf(entry)[0]?.type !== "StringValue")
            break; // the library refuses it in its words
        }
      return call(args, scope);
    });
  }

  #spend(steps: number): void {
    this.#steps += steps;
    if (this.#steps > MAX_RENDER_STEPS)
      throw new Error(`the template takes more than ${MAX_RENDER_STEPS} steps (loops too large or nested)`);
  }

  #produce(chars: number): void {
    this.#chars += chars;
    this.#fits(0);
  }

  /** Refuses text of `chars` more characters before it is made, when it would pass the budget. */
  #fits(chars: number): void {
    if (this.#chars + chars > MAX_PRODUCED_CHARS)
      throw new Error(`the template produces more than ${MAX_RENDERED_CHARS} characters`);
  }
}

/**
 * The most characters a value of `shape` turns into as JSON: every character escaped (`\u0000`), numbers at
 * their longest, plus `extra` per value (separators, indentation).
 */
function jsonSize(shape: Shape, extra = 0): number {
  return 6 * shape.chars + shape.nodes * (26 + extra);
}
