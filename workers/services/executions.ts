/**
 * @module Running functions (sinas-spec §6.2, D-27, D-33): builds the run plan (current code of the
 * function and of everything it may call), hands it to the execution's ExecutionRun Durable Object, and
 * reads executions back for the API (§1.4).
 */
import { and, desc, eq, inArray, lte, type SQL } from "drizzle-orm";
import type { RunPlan, RunState } from "../../durable-objects/execution-run";
import { can } from "../auth/access";
import type { Principal } from "../auth/principal";
import type { Database } from "../db/client";
import {
  type Execution,
  type ExecutionStatus,
  executions,
  functions,
  installedPackages,
  type JsonObject,
  type StoredFunction,
  type TriggerType,
  type User,
  users,
} from "../db/schema";
import { sha256Hex } from "../lib/crypto";
import { AppError, validationError } from "../lib/errors";
import { isInstallableRequirement } from "../lib/executor-protocol";
import { exceedsJsonDepth, JSON_DEPTH_MESSAGE, MAX_JSON_DEPTH } from "../lib/json-depth";
import { describeSchemaProblems, validateAgainstSchema } from "../lib/json-schema";
import { type CallableRow, callableScopeOf, readCallableRows } from "./callable-scope";
import { contextToken } from "./context-token";
import { callbackUrl } from "./execution-dispatch";
import { findExecution, insertFailedAttempt, listSteps } from "./execution-records";
import { executionRunFor } from "./execution-shards";
import { normalizedPackageName, normalizedPackageNameSql, packageNameOf } from "./functions";
import type { Services } from "./services";

export interface ExecutionRequest {
  /**
   * What a schema violation of the input does: `reject` (default) answers 422 and records nothing;
   * `record` (webhooks, schedules: SINAS keeps a FAILED execution of every attempt, sinas-spec §6.2)
   * stores a FAILED execution and throws FUNCTION_FAILED with its id.
   */
  invalidInput?: "reject" | "record";
  /** Chosen by the caller when it must be known before the run starts (an idempotency claim); else random. */
  executionId?: string;
  fn: StoredFunction;
  runAs: Pick<User, "id" | "email">;
  input: JsonObject;
  triggerType: TriggerType;
  triggerId: string;
  chatId: string | null;
  /**
   * The API key that started the run (direct call, authenticated webhook, chat turn), else null: the run's
   * context token then acts within that key's permissions, not as the user's login.
   */
  apiKeyId: string | null;
  /** What the function may call, when the caller read it already (in its own query); else read here. */
  callable?: CallableRow[];
}

export async function findActiveFunction(
  db: Database,
  namespace: string,
  name: string,
): Promise<StoredFunction> {
  const [fn] = await db
    .select()
    .from(functions)
    .where(and(eq(functions.namespace, namespace), eq(functions.name, name), eq(functions.isActive, true)))
    .limit(1);
  if (!fn) throw new AppError("NOT_FOUND", `Function '${namespace}/${name}' not found`);
  return fn;
}

/**
 * The pip specs the sandbox installs (§6.3, §10.2): approved packages only (an approval may have been
 * removed since), an admin-locked version replacing the spec (`name==version`); sorted and deduplicated so
 * the same set always reads the same. Names match as PEP 503 normalizes them (`PyYAML` is `pyyaml`).
 * A spec the executor would refuse (saved before specs were checked) would fail every run of its scope:
 * unlocked, it becomes the bare approved name; still refused (a malformed legacy lock), it is left out.
 */
async function approvedRequirements(db: Database, specs: string[]): Promise<string[]> {
  const names = [...new Set(specs.map(packageNameOf).filter(Boolean))];
  if (names.length === 0) return [];
  const approved = await db
    .select({ name: installedPackages.packageName, version: installedPackages.version })
    .from(installedPackages)
    .where(inArray(normalizedPackageNameSql(), names));
  const byName = new Map(approved.map((row) => [normalizedPackageName(row.name), row]));
  const result = new Set<string>();
  for (const spec of specs) {
    const row = byName.get(packageNameOf(spec));
    if (!row) continue;
    let install = row.version ? `${row.name}==${row.version}` : spec.trim();
    if (!row.version && !isInstallableRequirement(install)) install = row.name;
    if (isInstallableRequirement(install)) result.add(install);
  }
  return [...result].sort();
}

export function timeoutOf(services: Services, fn: Pick<StoredFunction, "timeoutSeconds">): number {
  return fn.timeoutSeconds ?? services.config.FUNCTION_TIMEOUT;
}

/**
 * Validates the input and starts the run; returns the execution id. A schema violation is a 422 naming
 * the input field and nothing is recorded or run.
 */
export async function startExecution(services: Services, request: ExecutionRequest): Promise<string> {
  return (await startExecutionRun(services, request)).executionId;
}

/**
 * startExecution, returning the run's state just after the job was posted: `failed` when the executor
 * refused the job or could not be reached (the execution is then FAILED already; nothing throws).
 */
export async function startExecutionRun(services: Services, request: ExecutionRequest): Promise<RunState> {
  // Every trigger's input (a chat's tool arguments too): the run's structured clone and the runtime's json parser
  // would fail on it later (routes refuse it earlier, naming their own field). A webhook's input is an envelope
  // around its body, whose own depth was checked: one level more.
  refuseDeepInput(request.input, request.triggerType === "WEBHOOK" ? MAX_JSON_DEPTH + 1 : MAX_JSON_DEPTH);
  const problems = validateAgainstSchema(request.fn.inputSchema, request.input);
  if (problems.length > 0 && request.invalidInput === "record") {
    throw await recordRejectedInput(services, request, describeSchemaProblems(problems));
  }
  if (problems.length > 0) {
    throw validationError(
      problems.map((problem) => ({
        loc: ["body", "input", ...problem.location.replace(/^#\/?/, "").split("/").filter(Boolean)],
        msg: problem.message,
        type: "json_schema",
      })),
    );
  }
  // Reads only, outside any transaction: no request pool is opened for them.
  const db = services.statementDb();
  const executionId = request.executionId ?? crypto.randomUUID();
  const { fn, runAs } = request;
  const callable = await callableScopeOf(request.callable ?? (await readCallableRows(db, fn, runAs.id)), fn);
  const plan: RunPlan = {
    record: {
      executionId,
      userId: runAs.id,
      functionNamespace: fn.namespace,
      functionName: fn.name,
      triggerType: request.triggerType,
      triggerId: request.triggerId,
      chatId: request.chatId,
      input: request.input,
    },
    outputSchema: fn.outputSchema,
    apiKeyId: request.apiKeyId,
    job: {
      execution_id: executionId,
      kind: "run",
      user: { id: runAs.id, email: runAs.email },
      function: {
        namespace: fn.namespace,
        name: fn.name,
        code: fn.code,
        code_hash: await sha256Hex(fn.code),
        timeout_seconds: timeoutOf(services, fn),
        shared_pool: fn.sharedPool,
      },
      callable: callable.scope,
      requirements: await approvedRequirements(db, callable.requirements),
      input: request.input,
      context: {
        user_id: runAs.id,
        user_email: runAs.email,
        access_token: await contextToken(services, runAs, request.apiKeyId),
        execution_id: executionId,
        trigger_type: request.triggerType,
        chat_id: request.chatId,
      },
      callback_url: callbackUrl(services.config, executionId),
    },
  };
  return (await executionRunFor(services.env, executionId).start(plan)) as RunState;
}

/** 422 for an input nested past `maxDepth` (json-depth.ts). */
function refuseDeepInput(input: unknown, maxDepth = MAX_JSON_DEPTH): void {
  if (exceedsJsonDepth(input, maxDepth)) {
    throw validationError([{ loc: ["body", "input"], msg: JSON_DEPTH_MESSAGE, type: "json_depth" }]);
  }
}

/** Stores the attempt as a FAILED execution without running it; returns the error to throw. */
async function recordRejectedInput(
  services: Services,
  request: ExecutionRequest,
  message: string,
): Promise<AppError> {
  const { fn, ...attempt } = request;
  return recordFailedAttempt(
    services,
    { ...attempt, functionNamespace: fn.namespace, functionName: fn.name },
    message,
    "invalid_input",
  );
}

/**
 * An attempt that cannot run (its input breaks the schema, its function is gone), stored as a FAILED execution as
 * every attempt is (§6.2); returns the FUNCTION_FAILED error, with the execution's id, for the caller to throw.
 */
export async function recordFailedAttempt(
  services: Services,
  attempt: Omit<ExecutionRequest, "fn" | "callable" | "invalidInput"> & {
    functionNamespace: string;
    functionName: string;
  },
  message: string,
  errorType: "invalid_input" | "not_found",
): Promise<AppError> {
  const executionId = attempt.executionId ?? crypto.randomUUID();
  const record = {
    executionId,
    userId: attempt.runAs.id,
    functionNamespace: attempt.functionNamespace,
    functionName: attempt.functionName,
    triggerType: attempt.triggerType,
    triggerId: attempt.triggerId,
    chatId: attempt.chatId,
    input: attempt.input,
  };
  await insertFailedAttempt(services.db(), record, { error: message, errorType });
  return new AppError("FUNCTION_FAILED", `Function execution failed: ${message}`, {
    extra: { execution_id: executionId, error_type: errorType },
  });
}

/** Waits until the run stops running; never longer than its timeout plus the watchdog's grace. */
export async function waitForExecution(
  services: Services,
  executionId: string,
  timeoutSeconds: number,
): Promise<RunState | null> {
  const graceSeconds = services.config.EXECUTION_WATCHDOG_GRACE_SECONDS;
  // The wait may be long; the request's Postgres connection is not needed during it.
  await services.releaseDb();
  const state = (await executionRunFor(services.env, executionId).waitForResult(
    executionId,
    (timeoutSeconds + graceSeconds + 5) * 1000,
  )) as RunState | null;
  if (!state?.resultInDatabase) return state;
  // A large result is kept in Postgres only (RunStore.save).
  const row = await findExecution(services.statementDb(), executionId);
  return { ...state, result: row?.outputData ?? null, resultInDatabase: false };
}

/**
 * Whether the principal may reach their own executions: `sinas.executions.get:own`, which every user holds
 * through the Users group; an API key only when it was given it (`{}` grants nothing, sinas-spec §3.4).
 */
function mayReachOwnExecutions(principal: Principal): boolean {
  return can(principal, "sinas.executions.get:own");
}

/**
 * The execution if the principal may see it (`sinas.executions.get:all`, or its owner holding `get:own`), or
 * continue it (`put:all`, or its owner holding `get:own`: the Users group grants no `put:own`, sinas-spec §3.5).
 */
export async function findVisibleExecution(
  db: Database,
  principal: Principal,
  executionId: string,
  action: "get" | "put" = "get",
): Promise<Execution> {
  const execution = await findExecution(db, executionId);
  if (!execution) throw new AppError("NOT_FOUND", "Execution not found");
  const owner = execution.userId === principal.user.id && mayReachOwnExecutions(principal);
  if (!owner && !can(principal, `sinas.executions.${action}:all`)) {
    const verb = action === "get" ? "view" : "continue";
    throw new AppError("FORBIDDEN", `Not authorized to ${verb} this execution`);
  }
  return execution;
}

export async function listExecutions(
  db: Database,
  principal: Principal,
  query: { skip: number; limit: number; function_name?: string; status?: ExecutionStatus },
) {
  const filters: SQL[] = [];
  if (!can(principal, "sinas.executions.get:all")) {
    if (!mayReachOwnExecutions(principal)) return []; // an API key made with `{}` lists none
    filters.push(eq(executions.userId, principal.user.id));
  }
  if (query.function_name) filters.push(eq(executions.functionName, query.function_name));
  if (query.status) filters.push(eq(executions.status, query.status));
  return (
    db
      .select()
      .from(executions)
      .where(and(...filters))
      // The id breaks ties (runs started in the same microsecond), so that pages neither repeat nor skip rows.
      .orderBy(desc(executions.startedAt), desc(executions.id))
      .offset(query.skip)
      .limit(query.limit)
  );
}

/**
 * 404 unless the function of a paused run is still there and active (sinas-spec §6.2 step 3 reloads it on
 * resume): a deactivated or deleted function runs no more code. The execution keeps neither the function's id
 * nor its owner (the run-as user may be another, D-27), so the function must predate the run: one deleted and
 * created again under its name, by anyone, is another function. The run stays paused until its pause expires.
 */
async function ensureFunctionStillRuns(db: Database, execution: Execution): Promise<void> {
  const { functionNamespace: namespace, functionName: name } = execution;
  const [fn] = await db
    .select({ id: functions.id })
    .from(functions)
    .where(
      and(
        eq(functions.namespace, namespace),
        eq(functions.name, name),
        eq(functions.isActive, true),
        lte(functions.createdAt, execution.startedAt),
      ),
    )
    .limit(1);
  if (!fn) throw new AppError("NOT_FOUND", `Function '${namespace}/${name}' not found or inactive`);
}

/**
 * Sends `input` into a paused run. The resumed run acts with the API key it was continued with when that key
 * is the run's user's, else with the credential that started it (ExecutionRun.resume).
 */
export async function resumeExecution(
  services: Services,
  execution: Execution,
  input: unknown,
  apiKey: { id: string; userId: string } | undefined,
): Promise<RunState> {
  if (execution.status !== "AWAITING_INPUT")
    throw new AppError("BAD_REQUEST", "Execution is not awaiting input");
  refuseDeepInput(input);
  await ensureFunctionStillRuns(services.db(), execution);
  const problems = validateAgainstSchema(execution.inputSchema, input);
  if (problems.length > 0) {
    throw validationError(
      problems.map((problem) => ({
        loc: ["body", "input", ...problem.location.replace(/^#\/?/, "").split("/").filter(Boolean)],
        msg: problem.message,
        type: "json_schema",
      })),
    );
  }
  const [user] = await services
    .db()
    .select({ id: users.id })
    .from(users)
    .where(eq(users.id, execution.userId))
    .limit(1);
  if (!user) throw new AppError("NOT_FOUND", "The execution's user no longer exists");
  const continuedWithKey = apiKey?.userId === user.id ? apiKey.id : null;
  try {
    const { executionId } = execution;
    return await executionRunFor(services.env, executionId).resume(executionId, input, continuedWithKey);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // Another continue got there first: the run is no longer paused. Anything else is ours (§1.4: 500).
    if (message === "Execution is not awaiting input") throw new AppError("BAD_REQUEST", message);
    throw new AppError("INTERNAL", `Failed to continue execution: ${message}`);
  }
}

export { listSteps };
