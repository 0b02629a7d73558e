/**
 * @module /executions (sinas-spec §1.4): list, get, steps (flat or as a tree), live logs (SSE, beyond
 * SINAS), continue a paused generator. Also /functions/{ns}/{name}/execute, the direct trigger.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { accessScope, can } from "../auth/access";
import { permissions } from "../auth/catalogue";
import type { Execution, StepExecution } from "../db/schema";
import { executionStatus } from "../db/schema";
import { AppError } from "../lib/errors";
import { executionRunFor } from "../services/execution-shards";
import {
  findActiveFunction,
  findVisibleExecution,
  listExecutions,
  listSteps,
  resumeExecution,
  startExecution,
  timeoutOf,
  waitForExecution,
} from "../services/executions";
import { authenticate, principalOf, recordPermission } from "./auth";
import { IdentifierSchema } from "./functions";
import { createRouter, errorResponse } from "./router";
import { runReply } from "./run-reply";
import { jsonBody, jsonResponse, PageQuerySchema } from "./schemas";

/** Largest request body of a run (its input); larger ones are refused with 413 before anything runs. */
export const MAX_INPUT_BYTES = 1024 * 1024;
const security = [{ bearerAuth: [] }];
const tags = ["Executions"];

export function toExecutionResponse(execution: Execution) {
  return {
    id: execution.id,
    execution_id: execution.executionId,
    function_namespace: execution.functionNamespace,
    function_name: execution.functionName,
    trigger_type: execution.triggerType,
    trigger_id: execution.triggerId,
    status: execution.status,
    input_data: execution.inputData,
    output_data: execution.outputData ?? null,
    error: execution.error,
    error_type: execution.errorType,
    traceback: execution.traceback,
    input_prompt: execution.inputPrompt,
    input_schema: execution.inputSchema ?? null,
    started_at: execution.startedAt.toISOString(),
    completed_at: execution.completedAt?.toISOString() ?? null,
    duration_ms: execution.durationMs,
  };
}

function toStepResponse(step: StepExecution) {
  return {
    id: step.id,
    execution_id: step.executionId,
    parent_step_id: step.parentStepId,
    function_namespace: step.functionNamespace,
    function_name: step.functionName,
    status: step.status,
    input_data: step.inputData ?? null,
    output_data: step.outputData ?? null,
    error: step.error,
    traceback: step.traceback,
    duration_ms: step.durationMs,
    started_at: step.startedAt.toISOString(),
    completed_at: step.completedAt?.toISOString() ?? null,
  };
}

type StepNode = ReturnType<typeof toStepResponse> & { children: StepNode[] };

/** Nests steps under their parents; steps whose parent is unknown become roots. */
function stepTree(steps: StepExecution[]): StepNode[] {
  const nodes = new Map(
    steps.map((step) => [step.id, { ...toStepResponse(step), children: [] as StepNode[] }]),
  );
  const roots: StepNode[] = [];
  for (const node of nodes.values()) {
    const parent = node.parent_step_id ? nodes.get(node.parent_step_id) : undefined;
    (parent ? parent.children : roots).push(node);
  }
  return roots;
}

const JsonRecord = z.record(z.string(), z.unknown());
const ExecutionSchema = z
  .object({
    id: z.uuid(),
    execution_id: z.string(),
    function_namespace: z.string(),
    function_name: z.string(),
    trigger_type: z.string(),
    trigger_id: z.string(),
    status: z.enum(executionStatus.enumValues),
    input_data: JsonRecord,
    output_data: z.unknown(),
    error: z.string().nullable(),
    error_type: z.string().nullable(),
    traceback: z.string().nullable(),
    input_prompt: z.string().nullable(),
    input_schema: z.unknown(),
    started_at: z.string(),
    completed_at: z.string().nullable(),
    duration_ms: z.number().int().nullable(),
  })
  .openapi("ExecutionResponse");

const StepSchema = z
  .object({
    id: z.uuid(),
    execution_id: z.string(),
    parent_step_id: z.uuid().nullable(),
    function_namespace: z.string(),
    function_name: z.string(),
    status: z.enum(executionStatus.enumValues),
    input_data: z.unknown(),
    output_data: z.unknown(),
    error: z.string().nullable(),
    traceback: z.string().nullable(),
    duration_ms: z.number().int().nullable(),
    started_at: z.string(),
    completed_at: z.string().nullable(),
  })
  .openapi("StepExecutionResponse");

const ExecutionParams = z.object({ execution_id: z.string().min(1).max(255) });

const listRoute = createRoute({
  method: "get",
  path: "/executions",
  tags,
  security,
  summary: "Your executions, newest first (all with sinas.executions.get:all)",
  request: {
    query: PageQuerySchema.extend({
      function_name: z.string().max(255).optional(),
      status: z.enum(executionStatus.enumValues).optional(),
    }),
  },
  responses: { 200: jsonResponse(z.array(ExecutionSchema), "Executions") },
});
const getRoute = createRoute({
  method: "get",
  path: "/executions/{execution_id}",
  tags,
  security,
  summary: "One execution",
  request: { params: ExecutionParams },
  responses: {
    200: jsonResponse(ExecutionSchema, "Execution"),
    403: errorResponse("Not yours"),
    404: errorResponse("Unknown"),
  },
});
const stepsRoute = createRoute({
  method: "get",
  path: "/executions/{execution_id}/steps",
  tags,
  security,
  summary: "Tracked calls in start order, or nested by caller with ?format=tree",
  request: { params: ExecutionParams, query: z.object({ format: z.enum(["flat", "tree"]).default("flat") }) },
  responses: {
    200: jsonResponse(z.array(StepSchema), "Steps"),
    403: errorResponse("Not yours"),
    404: errorResponse("Unknown"),
  },
});
const logsRoute = createRoute({
  method: "get",
  path: "/executions/{execution_id}/logs",
  tags,
  security,
  summary: "The function's stdout/stderr as Server-Sent Events (`log` events, then `end`)",
  description:
    "Resume with `Last-Event-ID` or `?after=<id>`; past lines are replayed, then new ones follow live.",
  request: { params: ExecutionParams },
  responses: {
    200: { description: "text/event-stream" },
    403: errorResponse("Not yours"),
    404: errorResponse("Unknown"),
  },
});
const continueRoute = createRoute({
  method: "post",
  path: "/executions/{execution_id}/continue",
  tags,
  security,
  summary: "Send input to a paused generator function (sinas-spec §6.7)",
  request: {
    params: ExecutionParams,
    body: jsonBody(
      z
        .object({
          input: z.unknown().refine((value) => value !== undefined, { message: "Field required" }),
        })
        .strict()
        .openapi("ContinueRequest"),
    ),
  },
  responses: {
    200: jsonResponse(
      z.object({
        execution_id: z.string(),
        status: z.string(),
        output_data: z.unknown().optional(),
        prompt: z.string().nullable().optional(),
        schema: z.unknown().optional(),
      }),
      "The state after the input was processed",
    ),
    400: errorResponse("Not awaiting input"),
    403: errorResponse("Not yours"),
    404: errorResponse("Unknown, or its function is deleted or inactive (the run stays paused)"),
    422: errorResponse("Input does not match the prompt's schema, or nests too deeply"),
  },
});
const executeRoute = createRoute({
  method: "post",
  path: "/functions/{namespace}/{name}/execute",
  tags,
  security,
  summary: "Run a function (sinas.functions.{ns}.{name}.execute:{own|group|all})",
  description:
    "Waits for the result: 200 `{success: true, execution_id, result}`; a failed run answers 500 with `execution_id` and the error. `?async=true` answers 202 `{execution_id}` at once.",
  request: {
    params: z.object({ namespace: IdentifierSchema, name: IdentifierSchema }),
    query: z.object({ async: z.enum(["true", "false"]).default("false") }),
    body: jsonBody(
      z
        .object({ input: JsonRecord.default({}) })
        .strict()
        .openapi("ExecuteRequest"),
    ),
  },
  responses: {
    200: jsonResponse(
      z.object({ success: z.literal(true), execution_id: z.string(), result: z.unknown() }),
      "Completed (or paused for input: `status: awaiting_input`)",
    ),
    202: jsonResponse(z.object({ execution_id: z.string() }), "Started"),
    403: errorResponse("Not allowed (for a function you could see: yours, or with its namespace's get:all)"),
    404: errorResponse("Unknown function, or one you may neither run nor see"),
    422: errorResponse("Input does not match the function's input_schema, or nests too deeply"),
    500: errorResponse("The function failed"),
  },
});

export const executionsRouter = createRouter();
executionsRouter.use("/executions", authenticate);
executionsRouter.use("/executions/*", authenticate);
executionsRouter.use("/functions/*", authenticate);
executionsRouter.use(
  "/functions/*",
  bodyLimit({
    maxSize: MAX_INPUT_BYTES,
    onError: () => {
      throw new AppError(
        "PAYLOAD_TOO_LARGE",
        `The request body exceeds ${MAX_INPUT_BYTES / 1024 / 1024} MiB`,
      );
    },
  }),
);

executionsRouter
  .openapi(listRoute, async (c) => {
    recordPermission(c, "sinas.executions.get:own");
    const rows = await listExecutions(c.get("services").db(), principalOf(c), c.req.valid("query"));
    return c.json(rows.map(toExecutionResponse), 200);
  })
  .openapi(getRoute, async (c) => {
    recordPermission(c, "sinas.executions.get:own");
    const execution = await findVisibleExecution(
      c.get("services").db(),
      principalOf(c),
      c.req.valid("param").execution_id,
    );
    return c.json(toExecutionResponse(execution), 200);
  })
  .openapi(stepsRoute, async (c) => {
    recordPermission(c, "sinas.executions.get:own");
    const db = c.get("services").db();
    const execution = await findVisibleExecution(db, principalOf(c), c.req.valid("param").execution_id);
    const steps = await listSteps(db, execution.executionId);
    return c.json(c.req.valid("query").format === "tree" ? stepTree(steps) : steps.map(toStepResponse), 200);
  })
  .openapi(logsRoute, async (c) => {
    recordPermission(c, "sinas.executions.get:own");
    const services = c.get("services");
    const execution = await findVisibleExecution(
      services.db(),
      principalOf(c),
      c.req.valid("param").execution_id,
    );
    const { executionId } = execution;
    // The shard's own address for one run's log; the resume position goes along as it came.
    const url = new URL(`https://execution-run/logs/${encodeURIComponent(executionId)}`);
    url.search = new URL(c.req.url).search;
    return executionRunFor(services.env, executionId).fetch(url, { headers: c.req.raw.headers });
  })
  .openapi(continueRoute, async (c) => {
    recordPermission(c, "sinas.executions.put:own");
    const services = c.get("services");
    const execution = await findVisibleExecution(
      services.db(),
      principalOf(c),
      c.req.valid("param").execution_id,
      "put",
    );
    const { apiKeyId, user } = principalOf(c);
    const apiKey = apiKeyId ? { id: apiKeyId, userId: user.id } : undefined;
    await resumeExecution(services, execution, c.req.valid("json").input, apiKey);
    const state = await waitForExecution(services, execution.executionId, 60);
    return c.json(
      {
        execution_id: execution.executionId,
        status:
          state?.status === "awaiting_input" ? "AWAITING_INPUT" : (state?.status ?? "running").toUpperCase(),
        ...(state?.status === "completed" && { output_data: state.result }),
        ...(state?.status === "awaiting_input" && { prompt: state.prompt, schema: state.schema }),
      },
      200,
    );
  })
  .openapi(executeRoute, async (c) => {
    const { namespace, name } = c.req.valid("param");
    const services = c.get("services");
    const principal = principalOf(c);
    const fn = await findActiveFunction(services.db(), namespace, name);
    const permission = (scope: "own" | "group" | "all") =>
      permissions.functionExecute(namespace, name, scope);
    const scope = accessScope(principal, permission, { userId: fn.userId, groupId: fn.groupId });
    recordPermission(c, permission(scope ?? "own"), scope !== null);
    if (!scope) {
      // As the management GET (D-50): only who may see the function learns it exists; others get the 404 of a
      // missing one, so that function names do not leak.
      const visible =
        fn.userId === principal.user.id ||
        can(principal, permissions.functionsNamespace(namespace, "get", "all"));
      if (!visible) throw new AppError("NOT_FOUND", `Function '${namespace}/${name}' not found`);
      throw new AppError("FORBIDDEN", `Not authorized to execute function '${namespace}/${name}'`);
    }
    const executionId = await startExecution(services, {
      fn,
      runAs: principal.user,
      input: c.req.valid("json").input,
      triggerType: "API",
      triggerId: `${namespace}/${name}`,
      chatId: null,
      apiKeyId: principal.apiKeyId,
    });
    if (c.req.valid("query").async === "true") return c.json({ execution_id: executionId }, 202);
    const state = await waitForExecution(services, executionId, timeoutOf(services, fn));
    return c.json(runReply(c, executionId, state), 200);
  });
