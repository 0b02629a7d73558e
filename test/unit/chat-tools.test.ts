import { describe, expect, it, vi } from "vitest";
import {
  agentCallBudget,
  agentCallMessage,
  agentToolDefinition,
  agentToolName,
  MAX_AGENT_CALL_DEPTH,
  parseAgentRef,
} from "../../workers/chat/agent-tools";
import {
  executionOutcome,
  functionToolDefinition,
  functionToolInput,
  functionToolName,
  parseFunctionRef,
} from "../../workers/chat/function-tools";
import { prefillFor, renderPrefill } from "../../workers/chat/prefill";
import {
  describeAvailableContext,
  namespaceDenial,
  stateToolDefinitions,
} from "../../workers/chat/state-tool-definitions";
import {
  approvalNeeded,
  continueExecutionDefinition,
  type OfferedTool,
  parseToolArguments,
  runToolCall,
  type ToolContext,
  toolResultContent,
} from "../../workers/chat/tools";
import type { Agent, Chat, ToolCall } from "../../workers/db/schema";
import type { Services } from "../../workers/services/services";

const call = (name: string, args: unknown, id = "call_1"): ToolCall => ({
  id,
  type: "function",
  function: { name, arguments: typeof args === "string" ? args : JSON.stringify(args) },
});

const names = (tools: { function: { name: string } }[]) => tools.map((tool) => tool.function.name);

describe("function tools", () => {
  const forecast = {
    namespace: "default",
    name: "forecast",
    description: null,
    inputSchema: {
      type: "object",
      properties: { city: { type: "string" }, units: { type: "string" }, days: { type: "integer" } },
      required: ["city", "days"],
    },
  };

  it("names `ns/name` as `ns__name` and skips entries without a slash", () => {
    expect(functionToolName("default", "add")).toBe("default__add");
    expect(parseFunctionRef("default/add")).toEqual({
      ref: "default/add",
      namespace: "default",
      name: "add",
    });
    expect(parseFunctionRef("a/b/c")).toEqual({ ref: "a/b/c", namespace: "a", name: "b/c" });
    expect(parseFunctionRef("add")).toBeNull();
  });

  it("renders prefill templates at any depth, a lone expression to its value; other values pass through", () => {
    const input = { home_city: "London", n: 3 };
    expect(
      renderPrefill(
        {
          city: "{{ home_city }}",
          units: "metric",
          nested: { label: "in {{ home_city }}", deeper: { count: "{{ n }}" } },
          list: ["{{ home_city }}", 5, { raw: "{{ home_city }}" }],
          days: 2,
          flag: true,
          none: null,
        },
        input,
      ),
    ).toEqual({
      city: "London",
      units: "metric",
      nested: { label: "in London", deeper: { count: 3 } },
      list: ["London", 5, { raw: "London" }],
      days: 2,
      flag: true,
      none: null,
    });
  });

  it("prefills raw values without input, and nothing when rendering fails", () => {
    const parameters = { "default/forecast": { city: "{{ home_city }}", units: "metric" } };
    expect(prefillFor(parameters, "default/forecast", null)).toEqual({
      city: "{{ home_city }}",
      units: "metric",
    });
    expect(prefillFor(parameters, "default/forecast", {})).toEqual({
      city: "{{ home_city }}",
      units: "metric",
    });
    expect(prefillFor(parameters, "default/forecast", { home_city: "London" })).toEqual({
      city: "London",
      units: "metric",
    });
    expect(prefillFor(parameters, "default/other", { home_city: "London" })).toEqual({});
    // A render error never prefills nothing (that would unlock every locked parameter): it is an error.
    expect(() => prefillFor({ "a/b": { bad: "{{ home_city " } }, "a/b", { home_city: "x" })).toThrow(
      "function_parameters for 'a/b'",
    );
  });

  it("offers the input schema with prefilled defaults, no longer required (S24)", () => {
    const definition = functionToolDefinition(forecast, { city: "London", units: "metric", extra: 1 });
    expect(definition).toEqual({
      type: "function",
      function: {
        name: "default__forecast",
        description: "Execute default/forecast",
        parameters: {
          type: "object",
          properties: {
            city: { type: "string", default: "London" },
            units: { type: "string", default: "metric" },
            days: { type: "integer" },
          },
          required: ["days"],
        },
      },
    });
    // The stored schema is untouched, and no `_metadata` leaks to the model.
    expect(forecast.inputSchema.required).toEqual(["city", "days"]);
    expect(forecast.inputSchema.properties.city).toEqual({ type: "string" });
    expect(JSON.stringify(definition)).not.toContain("_metadata");
  });

  it("uses the schema as is without prefill, `{type: object}` without a schema, and the description", () => {
    expect(functionToolDefinition(forecast, {}).function.parameters).toEqual(forecast.inputSchema);
    const bare = { namespace: "ns", name: "f", description: "Does f", inputSchema: {} };
    expect(functionToolDefinition(bare, { a: 1 }).function).toEqual({
      name: "ns__f",
      description: "Does f",
      parameters: { type: "object" },
    });
  });

  it("offers parameters of type object even when the input schema leaves the type out", () => {
    const untyped = {
      ...forecast,
      inputSchema: { properties: { city: { type: "string" } }, required: ["city"] },
    };
    expect(functionToolDefinition(untyped, {}).function.parameters).toEqual({
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
    });
    expect(untyped.inputSchema).not.toHaveProperty("type");
  });

  it("shortens a name over 64 characters, the same every turn, keeping names under it as they are", () => {
    const namespace = "n".repeat(40);
    const long = { ...forecast, namespace, name: "f".repeat(200) };
    const name = functionToolDefinition(long, {}).function.name;
    expect(name).toMatch(/^[a-zA-Z0-9_-]{1,64}$/);
    expect(name.startsWith(`${namespace}__fff`)).toBe(true);
    expect(functionToolName(long.namespace, long.name)).toBe(name);
    expect(functionToolName(namespace, `${"f".repeat(199)}g`)).not.toBe(name);
    expect(functionToolName("n".repeat(31), "f".repeat(31))).toBe(`${"n".repeat(31)}__${"f".repeat(31)}`);
  });

  it("locks prefilled values over the model's arguments", () => {
    expect(functionToolInput({ city: "Paris", days: 2 }, { city: "London", units: "metric" })).toEqual({
      city: "London",
      units: "metric",
      days: 2,
    });
  });

  it("reports a run's outcome", () => {
    const state = {
      executionId: "e1",
      dispatchedAt: null,
      roundTripMs: null,
      durationMs: null,
      result: null as unknown,
      error: null as string | null,
      errorType: null,
      prompt: null as string | null,
      schema: null,
    };
    expect(executionOutcome("e1", { ...state, status: "completed", result: { sum: 5 } })).toEqual({ sum: 5 });
    expect(executionOutcome("e1", { ...state, status: "completed", result: undefined })).toBeNull();
    expect(executionOutcome("e1", { ...state, status: "failed", error: "boom" })).toEqual({
      error: "Function execution failed",
      message: "Function execution failed: boom",
    });
    expect(executionOutcome("e1", { ...state, status: "awaiting_input", prompt: "Name?" })).toEqual({
      status: "awaiting_input",
      execution_id: "e1",
      prompt: "Name?",
      schema: null,
    });
    expect(executionOutcome("e1", null)).toEqual({
      error: "Function execution failed",
      message: "Function execution failed: Execution timeout",
    });
  });
});

describe("agent tools", () => {
  const child = {
    id: "11111111-2222-4333-8444-555555555555",
    name: "child",
    description: null,
    inputSchema: {},
  };

  it("names the tool after the agent (D-16)", () => {
    expect(agentToolName("child")).toBe("call_agent_child");
    expect(agentToolName("Research Bot-2")).toBe("call_agent_research_bot_2");
  });

  it("offers a required prompt and the constant _agent_id (S29)", () => {
    const definition = agentToolDefinition(child);
    expect(definition.function.name).toBe("call_agent_child");
    expect(definition.function.description).toBe("Call the child agent");
    const parameters = definition.function.parameters as {
      properties: Record<string, { const?: string; type: string }>;
      required: string[];
    };
    expect(parameters.required).toEqual(["prompt"]);
    expect(parameters.properties.prompt?.type).toBe("string");
    expect(parameters.properties._agent_id).toMatchObject({ type: "string", const: child.id });
  });

  it("uses the agent's input schema plus _agent_id when it has properties", () => {
    const schema = { type: "object", properties: { topic: { type: "string" } }, required: ["topic"] };
    const definition = agentToolDefinition({ ...child, description: "Researches", inputSchema: schema });
    expect(definition.function.description).toBe("child: Researches");
    expect(definition.function.parameters).toEqual({
      type: "object",
      properties: {
        topic: { type: "string" },
        _agent_id: { type: "string", description: "Internal agent identifier", const: child.id },
      },
      required: ["topic"],
    });
    expect(schema.properties).toEqual({ topic: { type: "string" } });
  });

  it("offers parameters of type object even when the input schema leaves the type out", () => {
    const untyped = { properties: { topic: { type: "string" } }, required: ["topic"] };
    expect(agentToolDefinition({ ...child, inputSchema: untyped }).function.parameters).toEqual({
      type: "object",
      properties: {
        topic: { type: "string" },
        _agent_id: { type: "string", description: "Internal agent identifier", const: child.id },
      },
      required: ["topic"],
    });
    expect(untyped).not.toHaveProperty("type");
  });

  it("shortens a tool name over 64 characters, the same every turn", () => {
    const name = agentToolName(`Research ${"x".repeat(100)}`);
    expect(name).toMatch(/^[a-zA-Z0-9_-]{1,64}$/);
    expect(name.startsWith("call_agent_research_xxx")).toBe(true);
    expect(agentToolName(`Research ${"x".repeat(100)}`)).toBe(name);
    expect(agentToolName(`Research ${"x".repeat(101)}`)).not.toBe(name);
    expect(agentToolName("a".repeat(53))).toBe(`call_agent_${"a".repeat(53)}`);
  });

  it("sends a lone prompt as the message, anything else as input and JSON", () => {
    expect(agentCallMessage({ prompt: "ping", _agent_id: child.id })).toEqual({ content: "ping", input: {} });
    expect(agentCallMessage({ topic: "cats", _agent_id: child.id, _x: 1 })).toEqual({
      content: '{"topic":"cats"}',
      input: { topic: "cats" },
    });
    expect(agentCallMessage({ prompt: "p", topic: "t" }).input).toEqual({ prompt: "p", topic: "t" });
  });

  it("reads enabled_agents entries as a UUID or `ns/name`", () => {
    expect(parseAgentRef(child.id.toUpperCase())).toEqual({ id: child.id });
    expect(parseAgentRef("default/child")).toEqual({ namespace: "default", name: "child" });
    expect(parseAgentRef("default/My Agent")).toEqual({ namespace: "default", name: "My Agent" });
    expect(parseAgentRef("child")).toBeNull();
    expect(parseAgentRef("/child")).toBeNull();
  });
});

describe("state tools", () => {
  it("offers nothing without namespaces, retrieve only for read-only ones, all four for read-write (S28)", () => {
    expect(stateToolDefinitions({ readonly: [], readwrite: [] }, [])).toEqual([]);
    expect(names(stateToolDefinitions({ readonly: ["shared"], readwrite: [] }, []))).toEqual([
      "retrieve_context",
    ]);
    const tools = stateToolDefinitions({ readonly: ["shared"], readwrite: ["prefs"] }, []);
    expect(names(tools)).toEqual(["retrieve_context", "save_context", "update_context", "delete_context"]);
    for (const tool of tools.slice(1)) {
      const parameters = tool.function.parameters as { properties: { namespace: { enum: string[] } } };
      expect(parameters.properties.namespace.enum).toEqual(["prefs"]);
    }
    const save = tools[1]?.function;
    expect(save?.parameters).toMatchObject({
      required: ["namespace", "key", "value"],
      properties: {
        value: { type: "object" },
        visibility: { enum: ["private", "group"], default: "private" },
      },
    });
    expect(save?.description).toContain(
      "\n\nRead-write namespaces: 'prefs'. You can save/update/delete context in these namespaces.",
    );
    expect(save?.description).toContain(
      "\n\nRead-only namespaces: 'shared'. You can only retrieve context from these namespaces.",
    );
    expect(tools[2]?.function.parameters).toMatchObject({ required: ["namespace", "key"] });
    expect(tools[3]?.function.parameters).toMatchObject({ required: ["namespace", "key"] });
    expect(tools[0]?.function.parameters).toMatchObject({
      properties: { limit: { type: "integer", default: 10 } },
    });
  });

  it("lists the visible keys per namespace in retrieve_context's description", () => {
    const keys = [
      { namespace: "prefs", key: "tz" },
      { namespace: "facts", key: "b" },
      { namespace: "prefs", key: "lang" },
      { namespace: "facts", key: "a" },
    ];
    expect(describeAvailableContext([])).toBe("");
    expect(describeAvailableContext(keys)).toBe(
      "Currently available context:\n  • facts: 'a', 'b'\n  • prefs: 'lang', 'tz'",
    );
    const [retrieve] = stateToolDefinitions({ readonly: [], readwrite: ["prefs"] }, keys);
    expect(retrieve?.function.description).toMatch(
      /^Retrieve saved context by namespace and\/or key\. .*\n\nCurrently available context:\n {2}• facts/s,
    );
  });

  it("confines writes and deletes to read-write, reads to readable namespaces (§8.2, D-39)", () => {
    const namespaces = { readonly: ["shared"], readwrite: ["prefs"] };
    expect(namespaceDenial("save_context", { namespace: "shared", key: "k" }, namespaces)).toEqual({
      error: "Agent not authorized to write to namespace 'shared'",
      allowed_namespaces: ["prefs"],
    });
    expect(namespaceDenial("save_context", { namespace: "prefs" }, namespaces)).toBeNull();
    expect(namespaceDenial("update_context", { namespace: "shared" }, namespaces)?.error).toContain(
      "'shared'",
    );
    expect(namespaceDenial("delete_context", { namespace: "shared" }, namespaces)?.error).toContain(
      "'shared'",
    );
    expect(namespaceDenial("delete_context", {}, namespaces)?.error).toBe(
      "Agent not authorized to write to namespace 'None'",
    );
    expect(namespaceDenial("retrieve_context", { namespace: "shared" }, namespaces)).toBeNull();
    expect(namespaceDenial("retrieve_context", {}, namespaces)).toBeNull();
    expect(namespaceDenial("retrieve_context", { namespace: "secret" }, namespaces)).toEqual({
      error: "Agent not authorized to read namespace 'secret'",
      allowed_namespaces: ["shared", "prefs"],
    });
  });
});

describe("tool calls", () => {
  const agentId = "11111111-2222-4333-8444-555555555555";
  const functionTool = (requiresApproval: boolean): OfferedTool => ({
    definition: functionToolDefinition(
      { namespace: "default", name: "wire", description: null, inputSchema: {} },
      {},
    ),
    kind: "function",
    fn: { namespace: "default", name: "wire", requiresApproval, prefilled: {} },
  });
  const stateTools: OfferedTool[] = stateToolDefinitions(
    { readonly: ["shared"], readwrite: ["prefs"] },
    [],
  ).map((definition) => ({ definition, kind: "state" }));
  const agentTool: OfferedTool = {
    definition: agentToolDefinition({ id: agentId, name: "child", description: null, inputSchema: {} }),
    kind: "agent",
    agentId,
  };
  const noDatabase = (): never => {
    throw new Error("no database in unit tests");
  };
  const context = (overrides: Partial<ToolContext> = {}): ToolContext => ({
    services: { db: noDatabase } as unknown as Services,
    chat: { id: "chat-1", groupId: null } as Chat,
    agent: { stateNamespacesReadonly: ["shared"], stateNamespacesReadwrite: ["prefs"] } as unknown as Agent,
    user: { id: "user-1", email: "u@example.com" },
    agentInput: null,
    runSubChatTurn: async () => "unused",
    takeAgentCall: agentCallBudget(),
    ...overrides,
  });

  it("asks approval only for offered functions that require it", () => {
    const tools = [...stateTools, functionTool(true)];
    expect(approvalNeeded(tools, call("default__wire", {}))).toEqual({ namespace: "default", name: "wire" });
    expect(approvalNeeded([functionTool(false)], call("default__wire", {}))).toBeNull();
    expect(approvalNeeded(tools, call("save_context", {}))).toBeNull();
    expect(approvalNeeded(tools, call("default__other", {}))).toBeNull();
  });

  it("stores results as JSON unless they are strings", () => {
    expect(toolResultContent("plain")).toBe("plain");
    expect(toolResultContent({ sum: 5 })).toBe('{"sum":5}');
    expect(toolResultContent(null)).toBe("null");
    expect(toolResultContent(undefined)).toBe("null");
    expect(toolResultContent(3)).toBe("3");
  });

  it("parses arguments from JSON text or objects", () => {
    expect(parseToolArguments('{"a":1}')).toEqual({ ok: true, args: { a: 1 } });
    expect(parseToolArguments("  ")).toEqual({ ok: true, args: {} });
    expect(parseToolArguments({ a: 1 })).toEqual({ ok: true, args: { a: 1 } });
    const broken = parseToolArguments('{"a":');
    expect(broken.ok).toBe(false);
    expect(!broken.ok && broken.error.error).toMatch(/^Invalid JSON arguments: /);
    expect(parseToolArguments("[1]")).toEqual({
      ok: false,
      error: { error: "Tool arguments must be a JSON object" },
    });
  });

  it("describes continue_execution with the paused executions", () => {
    const definition = continueExecutionDefinition([
      { executionId: "e1", functionName: "ask", inputPrompt: "Your name?" },
      { executionId: "e2", functionName: "confirm", inputPrompt: null },
    ]);
    expect(definition.function.name).toBe("continue_execution");
    expect(definition.function.description).toBe(
      "Continue a paused function execution by providing required input. Currently paused executions:\n" +
        "- e1: ask - Your name?\n- e2: confirm - ",
    );
    expect(definition.function.parameters).toMatchObject({
      properties: { execution_id: { enum: ["e1", "e2"] }, input: { type: "object" } },
      required: ["execution_id", "input"],
    });
  });

  it("dispatches only offered tools (D-27)", async () => {
    const ctx = context();
    expect(await runToolCall(ctx, stateTools, call("default__wire", {}))).toEqual({
      error: "Tool not available: default__wire",
    });
    expect(await runToolCall(ctx, [], call("save_context", {}))).toEqual({
      error: "Tool not available: save_context",
    });
    const invalid = (await runToolCall(ctx, stateTools, call("save_context", "{oops"))) as { error: string };
    expect(invalid.error).toMatch(/^Invalid JSON arguments/);
  });

  it("routes state calls to the namespace check before any database work (S28 step 4)", async () => {
    const result = await runToolCall(
      context(),
      stateTools,
      call("save_context", { namespace: "shared", key: "k", value: {} }),
    );
    expect(result).toEqual({
      error: "Agent not authorized to write to namespace 'shared'",
      allowed_namespaces: ["prefs"],
    });
  });

  it("routes agent calls: the tool's own agent runs, _agent_id may not name another, the depth is bounded (§5.8)", async () => {
    const tools = [agentTool];
    const other = "99999999-2222-4333-8444-555555555555";
    expect(
      await runToolCall(context(), tools, call("call_agent_child", { prompt: "p", _agent_id: other })),
    ).toEqual({ error: `_agent_id "${other}" is not the agent of this tool` });
    const deep = context({ depth: MAX_AGENT_CALL_DEPTH });
    expect(
      await runToolCall(deep, tools, call("call_agent_child", { prompt: "p", _agent_id: agentId })),
    ).toEqual({
      error: "Agent call depth exceeded",
    });
  });

  it("maps calls of shortened names back to their function and agent", async () => {
    const fn = {
      namespace: "reports",
      name: `quarterly_${"x".repeat(80)}`,
      requiresApproval: true,
      prefilled: {},
    };
    const longFunction: OfferedTool = {
      definition: functionToolDefinition({ ...fn, description: null, inputSchema: {} }, {}),
      kind: "function",
      fn,
    };
    const longAgent: OfferedTool = {
      definition: agentToolDefinition({
        id: agentId,
        name: `child ${"y".repeat(80)}`,
        description: null,
        inputSchema: {},
      }),
      kind: "agent",
      agentId,
    };
    const tools = [...stateTools, longFunction, agentTool, longAgent];
    // A later turn offers the same names, so the calls stored in the history still name these tools.
    const functionName = functionToolName(fn.namespace, fn.name);
    expect(approvalNeeded(tools, call(functionName, {}))).toEqual({ namespace: "reports", name: fn.name });
    const error = vi.spyOn(console, "error").mockImplementation(() => {});
    // A failure that is not an AppError (here: no database) reaches the model as a generic message only.
    expect(await runToolCall(context(), tools, call(functionName, {}))).toEqual({
      error: "Tool failed: internal error",
    });
    error.mockRestore();
    const other = "99999999-2222-4333-8444-555555555555";
    const agentName = agentToolName(`child ${"y".repeat(80)}`);
    expect(await runToolCall(context(), tools, call(agentName, { prompt: "p", _agent_id: other }))).toEqual({
      error: `_agent_id "${other}" is not the agent of this tool`,
    });
    expect(await runToolCall(context(), tools, call(`call_agent_child_${"y".repeat(80)}`, {}))).toEqual({
      error: `Tool not available: call_agent_child_${"y".repeat(80)}`,
    });
  });

  it("turns failures into error results and lets a stop through", async () => {
    const error = vi.spyOn(console, "error").mockImplementation(() => {});
    const failing = await runToolCall(
      context(),
      [functionTool(false)],
      call("default__wire", { amount: 10 }),
    );
    expect(failing).toEqual({ error: "Tool failed: internal error" });
    const viaAgent = await runToolCall(
      context(),
      [agentTool],
      call("call_agent_child", { _agent_id: agentId }),
    );
    expect(viaAgent).toEqual({ error: "Tool failed: internal error" });
    // `_agent_id` may be left out: the tool names its agent.
    const withoutId = await runToolCall(context(), [agentTool], call("call_agent_child", { prompt: "p" }));
    expect(withoutId).toEqual({ error: "Tool failed: internal error" });
    error.mockRestore();

    const controller = new AbortController();
    controller.abort();
    await expect(
      runToolCall(context({ signal: controller.signal }), [functionTool(false)], call("default__wire", {})),
    ).rejects.toMatchObject({ name: "AbortError" });
  });
});
