/**
 * The pure parts of the conversation builder (sinas-spec §5.3 steps D and F, D-24): system prompt rendering,
 * the output-schema instruction, the stored-context section, stored messages for the model, response_format.
 * The database-backed parts run against a real stack in test/integration/chats.test.ts.
 */
import { describe, expect, it } from "vitest";
import {
  agentInputOf,
  type ContextEntry,
  outputSchemaInstruction,
  parseStoredContent,
  renderSystemPrompt,
  responseFormatFor,
  STORED_CONTEXT_HEADER,
  storedContextSection,
  systemContent,
  toLlmMessage,
} from "../../workers/chat/prompt";
import { MISSING_RESULT, withAnsweredToolCalls } from "../../workers/chat/tool-pairing";
import { isStrictOutputSchema, wireName } from "../../workers/chat/wire-schema";
import type { Agent, Message } from "../../workers/db/schema";
import { MAX_RENDER_STEPS, renderTemplate } from "../../workers/lib/jinja";
import type { LlmMessage } from "../../workers/llm/types";

const OUTPUT_SCHEMA = { type: "object", properties: { a: { type: "string" } } };

function agent(fields: Partial<Agent> = {}): Agent {
  const now = new Date();
  return {
    id: "00000000-0000-4000-8000-000000000001",
    userId: null,
    groupId: null,
    namespace: "default",
    name: "helper",
    description: null,
    llmProviderId: null,
    model: null,
    temperature: 0.7,
    maxTokens: null,
    systemPrompt: null,
    inputSchema: {},
    outputSchema: {},
    initialMessages: null,
    enabledFunctions: [],
    enabledMcpTools: [],
    enabledAgents: [],
    functionParameters: {},
    mcpToolParameters: {},
    stateNamespacesReadonly: [],
    stateNamespacesReadwrite: [],
    isActive: true,
    createdAt: now,
    updatedAt: now,
    managedBy: null,
    configName: null,
    configChecksum: null,
    ...fields,
  };
}

function message(fields: Partial<Message>): Message {
  return {
    id: "00000000-0000-4000-8000-000000000002",
    chatId: "00000000-0000-4000-8000-000000000003",
    sequence: 1,
    role: "user",
    content: null,
    toolCalls: null,
    toolCallId: null,
    name: null,
    enabledFunctions: null,
    enabledMcpTools: null,
    createdAt: new Date(),
    ...fields,
  };
}

const tz: ContextEntry = { namespace: "prefs", key: "tz", description: "timezone", value: { tz: "CET" } };

describe("system prompt (D-24)", () => {
  it("renders the prompt with the chat input", () => {
    expect(renderSystemPrompt("You help {{ customer }}.", { customer: "ACME" })).toBe("You help ACME.");
    expect(
      renderSystemPrompt("{% if vip %}VIP {% endif %}{{ name | upper }}", { vip: true, name: "ada" }),
    ).toBe("VIP ADA");
  });

  it("keeps the prompt as written without an input; a template error is an error, not the raw template", () => {
    expect(renderSystemPrompt("You help {{ customer }}.", null)).toBe("You help {{ customer }}.");
    expect(() => renderSystemPrompt("Broken {% if %}", { a: 1 })).toThrow("system_prompt");
    // Input names shadow the engine's globals, but `namespace` is refused where a template uses it: the engine
    // declares its own namespace() again in every loop and macro scope, which would hide the input there.
    expect(renderSystemPrompt("{{ range }} {{ true }}", { range: "r", true: "t", namespace: "n" })).toBe(
      "r t",
    );
    expect(() =>
      renderSystemPrompt("{% for i in items %}{{ namespace }}{% endfor %}", { namespace: "n", items: [1] }),
    ).toThrow("reserved");
    expect(renderSystemPrompt("{{ strftime_now('%Y') }}", { a: 1 })).toMatch(/^\d{4}$/);
    // A render is bounded in steps (nested loops) and in the text it produces on its way, not only at its end.
    const xs = Array.from({ length: 2000 }, (_, index) => index);
    expect(() =>
      renderSystemPrompt("{% for a in xs %}{% for b in xs %}{% endfor %}{% endfor %}", { xs }),
    ).toThrow(`more than ${MAX_RENDER_STEPS} steps`);
    expect(() =>
      renderSystemPrompt("{% for a in range(20) %}{% for b in range(10000) %}{% endfor %}{% endfor %}", {}),
    ).toThrow(`more than ${MAX_RENDER_STEPS} steps`);
    expect(() =>
      renderSystemPrompt(
        "{% for a in range(100) %}{% for b in range(100) %}{{ s }}{% endfor %}{% endfor %}",
        {
          s: "x".repeat(2000),
        },
      ),
    ).toThrow("produces more than 1000000 characters");
    expect(renderSystemPrompt("{% for a in xs %}{{ a }},{% endfor %}", { xs }).length).toBeGreaterThan(2000);
    expect(renderSystemPrompt(null, { a: 1 })).toBe("");
  });

  it("reads agent_input from chat metadata only when it is an object", () => {
    expect(agentInputOf({ chatMetadata: { agent_input: { customer: "ACME" } } })).toEqual({
      customer: "ACME",
    });
    expect(agentInputOf({ chatMetadata: null })).toBeNull();
    expect(agentInputOf({ chatMetadata: { agent_input: [1] } })).toBeNull();
    expect(agentInputOf({ chatMetadata: { other: 1 } })).toBeNull();
  });
});

describe("template render bounds (lib/jinja)", () => {
  const STEPS = `more than ${MAX_RENDER_STEPS} steps`;
  const TEXT = "produces more than 1000000 characters";
  const numbers = (count: number) => Array.from({ length: count }, (_, index) => index);
  const items = (count: number) => numbers(count).map((id) => ({ id, name: `item ${id}` }));
  const keys = (count: number) => Object.fromEntries(numbers(count).map((index) => [`key${index}`, index]));
  // 256 KiB, the largest chat input; "a" throughout is the slowest text to search for "ab".
  const doc = "ab".repeat(128 * 1024);
  const aaa = "a".repeat(256 * 1024);

  it("counts every loop iteration and item, whatever the loop goes through", () => {
    // A mapping's keys, a list kept in a variable (looking it up costs nothing), loops that break at once; and a
    // run of a loop body costs more than a step (the library sets up its scope): 120,000 empty runs are too many.
    expect(() =>
      renderTemplate("{% for a in d %}{% for b in d %}{% endfor %}{% endfor %}", { d: keys(3000) }),
    ).toThrow(STEPS);
    expect(() =>
      renderTemplate(
        "{% set r = range(10000) %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}",
        {},
      ),
    ).toThrow(STEPS);
    expect(() =>
      renderTemplate("{% for a in xs %}{% for b in xs %}{% break %}{% endfor %}{% endfor %}", {
        xs: numbers(50000),
      }),
    ).toThrow(STEPS);
    expect(() =>
      renderTemplate("{% for a in range(400) %}{% for b in range(300) %}{% endfor %}{% endfor %}", {}),
    ).toThrow(STEPS);
  });

  it("renders ordinary templates over large inputs", () => {
    // The reviewer's templates at 400 items, and at 5,000: a lookup (`xs`, `xs[i]`) costs a step, not the list's size.
    for (const count of [400, 5000]) {
      const list = items(count);
      expect(
        renderTemplate("{% for x in xs %}{{ loop.index }}/{{ xs|length }} {{ x.name }}\n{% endfor %}", {
          xs: list,
        }),
      ).toContain(`${count}/${count} item ${count - 1}\n`);
      expect(
        renderTemplate("{% for i in range(xs|length) %}{{ xs[i].name }};{% endfor %}", { xs: list }),
      ).toContain(`item ${count - 1};`);
    }
    // A 256 KiB document searched for 70 keywords, and upper-cased: looking it up is neither work nor new text.
    const kws = numbers(70).map((index) => `kw${index}`);
    expect(
      renderTemplate("{% for kw in kws %}{% if kw in doc %}{{ kw }}{% endif %}{% endfor %}", {
        kws,
        doc: `${doc}kw69`,
      }),
    ).toBe("kw6kw69");
    expect(renderTemplate("{{ doc | upper }}", { doc })).toHaveLength(doc.length);
    expect(
      renderTemplate("{% for x in xs %}{{ loop.index }}. {{ x.name }}\n{% endfor %}", { xs: items(20000) }),
    ).toContain("20000. item 19999\n");
    // 50,000 items with two expressions each: about 0.7 of the budget.
    const names = numbers(50000).map((id) => ({ name: `n${id}` }));
    expect(
      renderTemplate("{% for x in xs %}{{ loop.index }}. {{ x.name }}\n{% endfor %}", { xs: names }),
    ).toContain("50000. n49999\n");
  });

  // Templates that make little, but read a whole list or string every time round a loop.
  const refused = (cases: [string, Record<string, unknown>][]) => {
    for (const [template, input] of cases)
      expect(() => renderTemplate(template, input), template).toThrow(STEPS);
  };

  it("charges filters and operators by what they go through", () => {
    // A filter on a 2,000-item list inside a loop over it: the reviewer's case.
    const xs = numbers(2000);
    expect(() => renderTemplate("{% for a in xs %}{{ xs|join(',') }}{% endfor %}", { xs })).toThrow(
      /steps|characters/,
    );
    refused([
      [
        "{% for a in xs %}{% for b in xs|selectattr('missing') %}{% endfor %}{% endfor %}",
        { xs: items(5000) },
      ],
      ["{% for a in range(1000) %}{% set n = doc|int %}{% endfor %}", { doc: "1".repeat(256 * 1024) }],
      ["{% for a in range(40) %}{% set p = xs|sort(attribute='name') %}{% endfor %}", { xs: items(10000) }],
      ["{% for a in range(1000) %}{% if -1 in xs %}{% endif %}{% endfor %}", { xs: numbers(50000) }],
      ["{% for a in range(1000) %}{% if 'ab' in doc %}{% endif %}{% endfor %}", { doc: aaa }],
      ["{% for a in range(300) %}{% set p = doc[:10] %}{% endfor %}", { doc: aaa }],
    ]);
  });

  it("charges tests, methods and unpacked arguments by what they go through", () => {
    refused([
      ["{% for a in range(1000) %}{% if doc is lower %}{% endif %}{% endfor %}", { doc: aaa }],
      // A method however it is reached: called on the spot, kept in a variable, or looked up by name.
      ["{% for a in range(2000) %}{% set p = doc.split('z') %}{% endfor %}", { doc: aaa }],
      ["{% set f = doc.split %}{% for a in range(2000) %}{% set p = f('z') %}{% endfor %}", { doc: aaa }],
      ["{% for a in range(2000) %}{% set p = doc['split']('z') %}{% endfor %}", { doc: aaa }],
      [
        "{% macro f() %}{{ varargs|length }}{% endmacro %}{% for a in range(300) %}{{ f(*xs) }}{% endfor %}",
        { xs: numbers(50000) },
      ],
    ]);
  });

  it("charges what the library does behind a name or a definition", () => {
    // A name not found costs the library an exception; a macro's definition is walked each time it is evaluated;
    // names are looked up through every scope of a deep recursion.
    expect(() =>
      renderTemplate(`{% for a in range(10000) %}${"{{ nothing }}".repeat(10)}{% endfor %}`, {}),
    ).toThrow(STEPS);
    const body = "{{ x }}".repeat(100);
    expect(() =>
      renderTemplate(`{% for a in range(10000) %}{% macro f(x) %}${body}{% endmacro %}{% endfor %}`, {}),
    ).toThrow(STEPS);
    expect(() =>
      renderTemplate(
        "{% macro f(n) %}{% if n > 0 %}{{ xs|length }}{{ f(n - 1) }}{% endif %}{% endmacro %}{% for a in range(120) %}{{ f(300) }}{% endfor %}",
        { xs: [1] },
      ),
    ).toThrow(STEPS);
  });

  it("refuses text before making it where one operation makes far more than it reads", () => {
    // Each would hold hundreds of megabytes (past a Worker's memory) before the text could be counted.
    const cases: [string, Record<string, unknown>][] = [
      ["{{ xs|join(doc) }}", { xs: numbers(3000), doc: aaa }],
      ["{{ doc.replace('a', doc) }}", { doc: "a".repeat(30000) }],
      ["{{ doc|replace('a', doc) }}", { doc: "a".repeat(30000) }],
      ["{{ doc|indent(100000000) }}", { doc: "a\n".repeat(10) }],
      ["{{ xs|tojson(indent=100000000) }}", { xs: [[[1]]] }],
    ];
    // Lists holding the same lists eight times, three deep: 1,024 copies of the document, made in a few steps,
    // as text when output, joined with `~`, compared with a number or turned into JSON.
    const nested =
      "{% set a = [doc, doc] %}{% set b = [a,a,a,a,a,a,a,a] %}{% set c = [b,b,b,b,b,b,b,b] %}{% set d = [c,c,c,c,c,c,c,c] %}";
    for (const use of ["{{ d }}", "{{ d ~ '' }}", "{{ d == 1 }}", "{{ d|tojson }}"])
      cases.push([nested + use, { doc: aaa }]);
    for (const [template, input] of cases)
      expect(() => renderTemplate(template, input), template).toThrow(TEXT);
  });

  it("measures a value held many times once, and refuses a namespace that holds itself", () => {
    // Namespaces holding one another twice, 21 deep: 2^22 values as text, refused at once. Walked value by value
    // (as before), they took 2.3 s in Node before being refused (24 deep: over 20 s); each value walked now costs
    // a step, so walking them again would be refused by steps instead.
    const shared =
      "{% set ns = namespace(cur=namespace(v=1)) %}{% for i in range(21) %}{% set ns.cur = namespace(l=ns.cur, r=ns.cur) %}{% endfor %}";
    expect(() => renderTemplate(`${shared}{{ ns.cur }}`, {})).toThrow(TEXT);
    // Its size as text is the same however it is measured: 6 deep, it is turned into JSON.
    expect(renderTemplate(`${shared.replace("range(21)", "range(6)")}{{ ns.cur|tojson|length }}`, {})).toBe(
      "1394",
    );
    for (const loop of ["{% set ns.me = ns %}{{ ns }}", "{% set ns.l = [1, ns] %}{{ ns|tojson }}"])
      expect(() => renderTemplate(`{% set ns = namespace(a=1) %}${loop}`, {}), loop).toThrow(
        "the template makes a namespace that holds itself",
      );
    // A namespace is measured anew each time (`set` may have changed it), a step per value it holds: 5,000
    // entries sorted (as a list of one) 300 times.
    refused([
      [
        "{% set ns = namespace(d) %}{% for a in range(300) %}{% set s = [ns]|sort %}{% endfor %}",
        { d: keys(5000) },
      ],
    ]);
  });

  it("measures a list holding a namespace anew, after the namespace has changed", () => {
    // 64 copies of one namespace, measured while it holds "x", then its string doubled to 65,536 characters: 4.2
    // million characters of JSON, up to 25 million with every character escaped, is refused before it is made.
    const copies = "{% set l = l + l %}".repeat(6);
    expect(() =>
      renderTemplate(
        `{% set ns = namespace(s="x") %}{% set l = [ns] %}${copies}{% set probe = l|tojson %}{% for a in range(16) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ l|tojson|length }}`,
        {},
      ),
    ).toThrow(TEXT);
  });

  it("charges == and in by the strings they compare", () => {
    // Strings of one length are compared in full (of two lengths, they differ at once); a string beside a number
    // is read as one. The document and a copy (a new string), compared 300 times; searched for in a list of 1,024.
    const copies = "{% set l = l + l %}".repeat(10);
    refused([
      [`{% set a = doc ~ "c" %}{% set l = [doc ~ "d"] %}${copies}{% if a in l %}{% endif %}`, { doc }],
      [`{% set a = doc ~ "c" %}{% set l = [doc ~ "d"] %}${copies}{% if a not in l %}{% endif %}`, { doc }],
      [
        '{% set a = doc ~ "c" %}{% set b = doc ~ "c" %}{% for i in range(300) %}{% if a == b %}{% endif %}{% endfor %}',
        { doc },
      ],
      [
        '{% set a = doc ~ "c" %}{% set b = doc ~ "c" %}{% for i in range(300) %}{% if a != b %}{% endif %}{% endfor %}',
        { doc },
      ],
      ["{% for i in range(300) %}{% if doc == 0 %}{% endif %}{% endfor %}", { doc: " ".repeat(256 * 1024) }],
    ]);
    // Strings of other lengths cost nothing to compare: 70 keywords looked for in a list of 20,000 items.
    const kws = numbers(70).map((index) => `kw${index}`);
    expect(
      renderTemplate("{% for kw in kws %}{% if kw in xs %}{{ kw }}{% endif %}{% endfor %}", {
        kws,
        xs: [...numbers(20000).map((index) => `keyword ${index}`), "kw7"],
      }),
    ).toBe("kw7");
  });

  it("charges split by its parts and namespace() by its entries, before the library makes them", () => {
    // 100,000 parts a split, made three times: each part is a new value. With a separator the library splits at
    // every one whatever maxsplit says.
    const commas = ",".repeat(100000);
    refused([
      ["{% for a in range(3) %}{% set p = commas.split(',') %}{% endfor %}", { commas }],
      ["{% for a in range(3) %}{% set p = commas.split(',', 1) %}{% endfor %}", { commas }],
      ["{% for a in range(3) %}{% set p = words.split() %}{% endfor %}", { words: "a ".repeat(100000) }],
      [
        "{% for a in range(30) %}{% set n = namespace(pairs) %}{% endfor %}",
        { pairs: numbers(50000).map((index) => ["k", index]) },
      ],
    ]);
    expect(renderTemplate("{{ doc.split()|length }} {{ csv.split(',', 1) }}", { doc, csv: "a,b,c" })).toBe(
      `1 ["a", "b,c"]`,
    );
    // A string entry is a pair of characters: a longer one is refused in the library's words before the library
    // makes a value per character (a million-character string took 0.45 s in Node, 4 million ~400 MB).
    expect(() => renderTemplate("{{ namespace([doc]) }}", { doc })).toThrow(
      "namespace expected an object or an iterable of [key, value] pairs",
    );
    expect(
      renderTemplate("{% set n = namespace([['a', 1], 'bc', pair], d=2) %}{{ n|tojson }}", {
        pair: "\u{1F600}x",
      }),
    ).toBe('{"a": 1, "b": "c", "\u{1F600}": "x", "d": 2}');
  });

  it("gives the globals numbers and strings only (a list would become text of any size)", () => {
    expect(() => renderTemplate("{{ range(xs) }}", { xs: [1] })).toThrow(
      "range() takes one to three numbers",
    );
    expect(() => renderTemplate("{{ strftime_now(xs) }}", { xs: ["%Y"] })).toThrow(
      "strftime_now() takes a format",
    );
    expect(() => renderTemplate("{{ raise_exception(xs) }}", { xs: ["x"] })).toThrow(
      "raise_exception() takes a message",
    );
    expect(renderTemplate("{{ range(1, 7, 2)|join(',') }}", {})).toBe("1,3,5");
  });
});

describe("system content", () => {
  it("appends the exact output-schema instruction when the schema has properties", () => {
    expect(outputSchemaInstruction({})).toBe("");
    expect(outputSchemaInstruction({ type: "object" })).toBe("");
    expect(outputSchemaInstruction(OUTPUT_SCHEMA)).toBe(
      '\n\nIMPORTANT: You must respond with valid JSON matching this exact schema:\n```json\n{\n  "type": "object",\n  "properties": {\n    "a": {\n      "type": "string"\n    }\n  }\n}\n```\nDo not include any text outside the JSON object.',
    );
  });

  it("formats stored context entries, with the description when there is one", () => {
    expect(storedContextSection([])).toBe("");
    const section = storedContextSection([
      tz,
      { namespace: "shared", key: "k", description: null, value: {} },
    ]);
    expect(section).toBe(
      `${STORED_CONTEXT_HEADER}**prefs/tz** - timezone\n\`\`\`json\n{\n  "tz": "CET"\n}\n\`\`\`\n\n**shared/k**\n\`\`\`json\n{}\n\`\`\`\n\n`,
    );
  });

  it("puts prompt, instruction and context in that order; context alone is trimmed", () => {
    const withAll = systemContent(agent({ systemPrompt: "Memo.", outputSchema: OUTPUT_SCHEMA }), null, [tz]);
    expect(withAll.startsWith("Memo.\n\nIMPORTANT: You must respond with valid JSON")).toBe(true);
    expect(withAll).toContain("Do not include any text outside the JSON object.\n\n## Stored Context\n");
    expect(withAll).toContain('**prefs/tz** - timezone\n```json\n{\n  "tz": "CET"\n}');

    const contextOnly = systemContent(agent(), null, [tz]);
    expect(contextOnly.startsWith("## Stored Context\n")).toBe(true);
    expect(contextOnly.endsWith("```")).toBe(true);
    expect(systemContent(agent(), null, [])).toBe("");
  });
});

describe("stored messages for the model", () => {
  it("turns a stored array of parts back into parts, for user messages only", () => {
    const parts = [
      { type: "text", text: "What is this?" },
      { type: "image", image: "https://example.com/a.png" },
    ];
    expect(toLlmMessage(message({ role: "user", content: JSON.stringify(parts) }))).toEqual({
      role: "user",
      content: parts,
    });
    const toolResult = JSON.stringify([{ type: "row", id: 1 }]);
    expect(
      toLlmMessage(message({ role: "tool", content: toolResult, toolCallId: "c1", name: "db__q" })),
    ).toEqual({ role: "tool", content: toolResult, tool_call_id: "c1", name: "db__q" });
  });

  it("keeps text that only looks like JSON", () => {
    expect(parseStoredContent("[1, 2]")).toBe("[1, 2]");
    expect(parseStoredContent("[not json")).toBe("[not json");
    expect(parseStoredContent("[]")).toBe("[]");
    expect(parseStoredContent("plain")).toBe("plain");
  });

  it("includes tool calls without their stream index, and keeps null content", () => {
    const call = {
      id: "call_1",
      type: "function" as const,
      function: { name: "default__add", arguments: "{}" },
    };
    expect(
      toLlmMessage(message({ role: "assistant", content: null, toolCalls: [{ ...call, index: 0 }] })),
    ).toEqual({
      role: "assistant",
      content: null,
      tool_calls: [call],
    });
    expect(toLlmMessage(message({ role: "assistant", content: "Hi", toolCalls: [] }))).toEqual({
      role: "assistant",
      content: "Hi",
    });
  });
});

describe("response_format (§5.3 step F)", () => {
  it("is absent without output-schema properties", () => {
    expect(responseFormatFor(agent())).toBeUndefined();
    expect(responseFormatFor(agent({ outputSchema: { type: "object" } }))).toBeUndefined();
  });

  it("names the schema after the agent and closes it unless it says otherwise", () => {
    expect(responseFormatFor(agent({ name: "My Agent", outputSchema: OUTPUT_SCHEMA }))).toEqual({
      type: "json_schema",
      json_schema: {
        name: "my_agent_response",
        strict: false,
        schema: { ...OUTPUT_SCHEMA, additionalProperties: false },
      },
    });
    const open = { ...OUTPUT_SCHEMA, additionalProperties: true };
    expect(responseFormatFor(agent({ outputSchema: open }))).toMatchObject({ json_schema: { schema: open } });
  });

  // OpenAI answers `strict: true` with a 400 for any schema outside its strict subset.
  const strictSchema = {
    type: "object",
    properties: {
      title: { type: "string", description: "Headline" },
      score: { type: ["number", "null"], minimum: 0 },
      tags: { type: "array", items: { type: "string", enum: ["a", "b"] }, maxItems: 3 },
      author: {
        type: "object",
        properties: { name: { type: "string" }, email: { type: "string", format: "email" } },
        required: ["email", "name"],
        additionalProperties: false,
      },
      pick: { anyOf: [{ type: "string" }, { $ref: "#/$defs/point" }] },
    },
    required: ["title", "score", "tags", "author", "pick"],
    additionalProperties: false,
    $defs: {
      point: {
        type: "object",
        properties: { x: { type: "integer" } },
        required: ["x"],
        additionalProperties: false,
      },
    },
  };

  it("is strict for a schema that meets OpenAI's strict rules at every depth", () => {
    expect(isStrictOutputSchema(strictSchema)).toBe(true);
    expect(responseFormatFor(agent({ outputSchema: strictSchema }))).toMatchObject({
      json_schema: { strict: true, schema: strictSchema },
    });
    // The top-level `additionalProperties: false` SINAS adds is enough when all else is strict already.
    const { additionalProperties: _, ...unclosed } = strictSchema;
    expect(responseFormatFor(agent({ outputSchema: unclosed }))).toMatchObject({
      json_schema: { strict: true, schema: strictSchema },
    });
  });

  it("is not strict for an optional property, an open object, or a keyword strict mode refuses, at any depth", () => {
    const withAuthor = (author: object) => ({
      ...strictSchema,
      properties: { ...strictSchema.properties, author },
    });
    const author = strictSchema.properties.author;
    const notStrict = [
      { ...strictSchema, required: ["title", "score", "tags", "author"] },
      { ...strictSchema, required: [...strictSchema.required, "extra"] },
      withAuthor({ ...author, required: ["name"] }),
      withAuthor({ ...author, additionalProperties: true }),
      withAuthor({ type: "object", properties: author.properties, required: author.required }),
      withAuthor({ type: "array", items: { type: "object", properties: {}, required: [] } }),
      withAuthor({ type: "array" }),
      withAuthor({ description: "any value" }),
      withAuthor({ type: "string", default: "x" }),
      withAuthor({ type: "string", minLength: 1 }),
      withAuthor({ type: "string", format: "uri" }),
      withAuthor({ type: "string", pattern: "^(?!x)" }),
      withAuthor({ oneOf: [{ type: "string" }, { type: "integer" }] }),
      withAuthor({ allOf: [{ type: "string" }] }),
      withAuthor({ $ref: "#/$defs/point", description: "A point" }),
      { ...strictSchema, $defs: { point: { type: "object", properties: { x: { type: "integer" } } } } },
      { anyOf: [strictSchema] },
    ];
    for (const schema of notStrict) {
      const before = structuredClone(schema);
      expect(isStrictOutputSchema(schema), JSON.stringify(schema)).toBe(false);
      const format = responseFormatFor(agent({ outputSchema: { properties: {}, ...schema } }));
      expect(format, JSON.stringify(schema)).toMatchObject({ json_schema: { strict: false } });
      // The agent's schema is sent as written, never rewritten to pass.
      expect(schema).toEqual(before);
    }
  });

  it("is not strict for a schema nested deeper than OpenAI takes", () => {
    let deep: Record<string, unknown> = { type: "string" };
    for (let level = 0; level < 11; level++) {
      deep = { type: "object", properties: { n: deep }, required: ["n"], additionalProperties: false };
    }
    expect(isStrictOutputSchema(deep)).toBe(false);
    expect(isStrictOutputSchema((deep.properties as { n: Record<string, unknown> }).n)).toBe(true);
  });

  it("names the schema within OpenAI's 64 characters, the same for the same agent", () => {
    const name = `Report ${"x".repeat(80)}`;
    const format = responseFormatFor(agent({ name, outputSchema: OUTPUT_SCHEMA }));
    const nameOf = (sent: typeof format) => (sent?.json_schema as { name?: string } | undefined)?.name ?? "";
    const sent = nameOf(format);
    expect(sent).toMatch(/^[a-zA-Z0-9_-]{1,64}$/);
    expect(sent.startsWith("report_xxx")).toBe(true);
    expect(responseFormatFor(agent({ name, outputSchema: OUTPUT_SCHEMA }))).toEqual(format);
    const other = responseFormatFor(agent({ name: `${name}y`, outputSchema: OUTPUT_SCHEMA }));
    expect(nameOf(other)).not.toBe(sent);
  });
});

describe("names sent to providers", () => {
  it("leaves a name that fits ^[a-zA-Z0-9_-]{1,64}$ unchanged", () => {
    for (const name of ["default__add", "call_agent_research-bot", "a".repeat(64)]) {
      expect(wireName(name)).toBe(name);
    }
  });

  it("shortens a longer name, or one with other characters, to a start and a stable hash", () => {
    const long = `ns__${"f".repeat(100)}`;
    expect(wireName(long)).toHaveLength(64);
    expect(wireName(long)).toMatch(/^ns__f+_[0-9a-z]{11}$/);
    expect(wireName(long)).toBe(wireName(long));
    // Names sharing their first 52 characters, and names that differ only in a character replaced, stay apart.
    expect(wireName(`${long}g`)).not.toBe(wireName(long));
    expect(wireName("a".repeat(65))).not.toBe(wireName("a".repeat(66)));
    expect(wireName("a.b")).toMatch(/^a_b_[0-9a-z]{11}$/);
    expect(wireName("a.b")).not.toBe(wireName("a/b"));
    expect(wireName("")).toMatch(/^_[0-9a-z]{11}$/);
  });
});

describe("every tool call answered before the conversation goes on", () => {
  const call = (id: string, name = "fn") => ({
    id,
    type: "function" as const,
    function: { name, arguments: "{}" },
  });
  const asks = (...ids: string[]): LlmMessage => ({
    role: "assistant",
    content: null,
    tool_calls: ids.map((id) => call(id)),
  });
  const result = (id: string, content = "{}"): LlmMessage => ({
    role: "tool",
    content,
    tool_call_id: id,
    name: "fn",
  });
  const standIn = (id: string): LlmMessage => ({
    role: "tool",
    content: MISSING_RESULT,
    tool_call_id: id,
    name: "fn",
  });
  const user = (content: string): LlmMessage => ({ role: "user", content });

  it("leaves a complete history as it is", () => {
    const history = [
      user("hi"),
      asks("a", "b"),
      result("b"),
      result("a"),
      { role: "assistant", content: "done" } as LlmMessage,
    ];
    expect(withAnsweredToolCalls(history)).toEqual(history);
  });

  it("answers calls a stopped round left without results, before the next message and at the end", () => {
    expect(
      withAnsweredToolCalls([user("1"), asks("a", "b"), result("a", '{"n":1}'), user("2"), asks("c")]),
    ).toEqual([
      user("1"),
      asks("a", "b"),
      result("a", '{"n":1}'),
      standIn("b"),
      user("2"),
      asks("c"),
      standIn("c"),
    ]);
  });

  it("leaves out a result stored after a newer message (a late approval) and one that answers no call", () => {
    expect(withAnsweredToolCalls([asks("a"), user("never mind"), result("a"), result("zzz")])).toEqual([
      asks("a"),
      standIn("a"),
      user("never mind"),
    ]);
  });
});
