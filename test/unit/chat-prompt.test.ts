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
import type { Agent, Message } from "../../workers/db/schema";
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
    ).toThrow("more than 100000 steps");
    expect(() =>
      renderSystemPrompt("{% for a in range(10) %}{% for b in range(10000) %}{% endfor %}{% endfor %}", {}),
    ).toThrow("more than 100000 steps");
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
        strict: true,
        schema: { ...OUTPUT_SCHEMA, additionalProperties: false },
      },
    });
    const open = { ...OUTPUT_SCHEMA, additionalProperties: true };
    expect(responseFormatFor(agent({ outputSchema: open }))).toMatchObject({ json_schema: { schema: open } });
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
