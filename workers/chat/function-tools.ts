/**
 * @module Function tools (sinas-spec §5.5.3, D-24, D-27): each `ns/name` of the agent's `enabled_functions` that
 * the chat user may run (owned, or shared with one of their active groups) becomes the tool `ns__name`, with
 * the agent's `function_parameters` prefilled (rendered with the chat input) and locked; a call runs the
 * function as the chat user and waits for its result.
 */
import { and, eq, inArray, or } from "drizzle-orm";
import type { RunState } from "../../durable-objects/execution-run";
import { permissions } from "../auth/catalogue";
import type { Scope } from "../auth/permissions";
import { isJsonObject } from "../db/json";
import { functions, groupMembers, type JsonObject, type StoredFunction } from "../db/schema";
import { untilAborted } from "../lib/abort";
import { AppError } from "../lib/errors";
import type { ToolDefinition } from "../llm/types";
import { findActiveFunction, startExecution, timeoutOf, waitForExecution } from "../services/executions";
import { prefillFor } from "./prefill";
import { credentialAllows, type OfferedTool, type ToolContext } from "./tools";
import { wireName } from "./wire-schema";

export interface FunctionRef {
  /** As written in `enabled_functions`: `ns/name`. */
  ref: string;
  namespace: string;
  name: string;
}

/** `ns/name` split at its first `/`; null for entries without one (skipped, §5.5.3). */
export function parseFunctionRef(ref: string): FunctionRef | null {
  const slash = ref.indexOf("/");
  if (slash < 0) return null;
  return { ref, namespace: ref.slice(0, slash), name: ref.slice(slash + 1) };
}

/**
 * OpenAI tool names cannot contain `/`, so `ns/name` is offered as `ns__name`; one over 64 characters is
 * shortened (see `wireName`).
 */
export function functionToolName(namespace: string, name: string): string {
  return wireName(`${namespace}__${name}`);
}

/**
 * The tool of one function: its input schema (or `{type: object}`), where each prefilled parameter the schema
 * declares gets that value as `default` and is no longer required. The stored schema is not modified. The
 * parameters are always `type: "object"` (a function's input is an object): OpenAI and Anthropic refuse a tool
 * without it, and with it the request.
 */
export function functionToolDefinition(
  fn: Pick<StoredFunction, "namespace" | "name" | "description" | "inputSchema">,
  prefilled: JsonObject,
): ToolDefinition {
  const hasSchema = isJsonObject(fn.inputSchema) && Object.keys(fn.inputSchema).length > 0;
  const parameters: JsonObject = hasSchema
    ? { ...structuredClone(fn.inputSchema), type: "object" }
    : { type: "object" };
  const properties = parameters.properties;
  if (isJsonObject(properties)) {
    for (const [param, value] of Object.entries(prefilled)) {
      const property = properties[param];
      if (!isJsonObject(property)) continue;
      properties[param] = { ...property, default: value };
      if (Array.isArray(parameters.required)) {
        parameters.required = parameters.required.filter((required) => required !== param);
      }
    }
  }
  return {
    type: "function",
    function: {
      name: functionToolName(fn.namespace, fn.name),
      description: fn.description || `Execute ${fn.namespace}/${fn.name}`,
      parameters,
    },
  };
}

/** The input a call runs with: the model's arguments, overridden by the prefilled (locked) values. */
export function functionToolInput(args: JsonObject, prefilled: JsonObject): JsonObject {
  return { ...args, ...prefilled };
}

/**
 * Whether the turn's credential may run `fn`: a turn sent with an API key runs only what the key may execute,
 * as `POST /functions/{ns}/{name}/execute` asks (§3.4); a JWT sender runs the functions of D-27.
 */
function credentialMayRun(ctx: ToolContext, fn: StoredFunction): boolean {
  // The query offers the user's own functions and those of their active groups only (D-27).
  const scopes: Scope[] = fn.userId === ctx.user.id ? ["all", "own"] : ["all", "group"];
  return scopes.some((scope) =>
    credentialAllows(ctx, permissions.functionExecute(fn.namespace, fn.name, scope)),
  );
}

/**
 * The agent's function tools, in `enabled_functions` order; missing, inactive or foreign functions are skipped,
 * and so are those the sender's API key may not execute.
 */
export async function offerFunctionTools(ctx: ToolContext): Promise<OfferedTool[]> {
  const refs = new Map<string, FunctionRef>();
  for (const entry of ctx.agent.enabledFunctions) {
    const ref = parseFunctionRef(entry);
    if (ref && !refs.has(ref.ref)) refs.set(ref.ref, ref);
  }
  if (refs.size === 0) return [];
  const db = ctx.services.db();
  const userGroups = db
    .select({ groupId: groupMembers.groupId })
    .from(groupMembers)
    .where(and(eq(groupMembers.userId, ctx.user.id), eq(groupMembers.active, true)));
  const rows = await db
    .select()
    .from(functions)
    .where(
      and(
        eq(functions.isActive, true),
        or(
          ...[...refs.values()].map((ref) =>
            and(eq(functions.namespace, ref.namespace), eq(functions.name, ref.name)),
          ),
        ),
        // D-27: the user's own functions and those of their active groups (the container sync rule).
        or(eq(functions.userId, ctx.user.id), inArray(functions.groupId, userGroups)),
      ),
    );
  const byRef = new Map(rows.map((row) => [`${row.namespace}/${row.name}`, row]));
  return [...refs.values()].flatMap((ref): OfferedTool[] => {
    const fn = byRef.get(ref.ref);
    if (!fn || !credentialMayRun(ctx, fn)) return [];
    const prefilled = prefillFor(ctx.agent.functionParameters, ref.ref, ctx.agentInput, fn.inputSchema);
    return [
      {
        definition: functionToolDefinition(fn, prefilled),
        kind: "function",
        fn: { namespace: fn.namespace, name: fn.name, requiresApproval: fn.requiresApproval, prefilled },
      },
    ];
  });
}

const failed = (message: string) => ({
  error: "Function execution failed",
  message: `Function execution failed: ${message}`,
});

/**
 * What a tool call reports about a run: the raw return value when it completed; the pause (§6.7) when it awaits
 * input; `{"error":"Function execution failed","message":...}` when it failed or did not finish in time.
 */
export function executionOutcome(executionId: string, state: RunState | null): unknown {
  if (state?.status === "completed") return state.result ?? null;
  if (state?.status === "awaiting_input") {
    return {
      status: "awaiting_input",
      execution_id: executionId,
      prompt: state.prompt,
      schema: state.schema,
    };
  }
  if (state?.status === "failed") return failed(state.error ?? "unknown error");
  return failed("Execution timeout");
}

/**
 * Runs an offered function as the chat user (trigger AGENT, trigger id = chat id) and waits for it. The function
 * is loaded by name whoever owns it (D-27: offering it was the authorization). An input that violates the
 * schema is recorded as a FAILED execution, as every attempt is (§6.2).
 */
export async function runFunctionTool(
  ctx: ToolContext,
  fn: { namespace: string; name: string; prefilled: JsonObject },
  args: JsonObject,
): Promise<unknown> {
  const { services } = ctx;
  let stored: StoredFunction;
  try {
    stored = await findActiveFunction(services.db(), fn.namespace, fn.name);
  } catch (error) {
    if (error instanceof AppError && error.code === "NOT_FOUND") {
      return { error: `Function not found: ${fn.namespace}/${fn.name}` };
    }
    throw error;
  }
  ctx.signal?.throwIfAborted(); // a turn stopped meanwhile starts nothing
  let executionId: string;
  try {
    executionId = await startExecution(services, {
      invalidInput: "record",
      fn: stored,
      runAs: ctx.user,
      input: functionToolInput(args, fn.prefilled),
      triggerType: "AGENT",
      triggerId: ctx.chat.id,
      chatId: ctx.chat.id,
      apiKeyId: ctx.apiKey?.id ?? null,
    });
  } catch (error) {
    // FUNCTION_FAILED carries "Function execution failed: Schema validation failed: ..." already.
    if (error instanceof AppError && error.code === "FUNCTION_FAILED") {
      return { error: "Function execution failed", message: error.message };
    }
    throw error;
  }
  // A stop ends the wait, not the run: the execution goes on and records its outcome as any other.
  const state = await untilAborted(
    waitForExecution(services, executionId, timeoutOf(services, stored)),
    ctx.signal,
  );
  return executionOutcome(executionId, state);
}
