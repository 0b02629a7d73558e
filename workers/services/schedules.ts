/**
 * @module Schedules management (sinas-spec §1.11, §7.2 with D-5, D-8, D-9, D-37).
 *
 * There is no in-memory scheduler to keep in sync (D-9): the every-minute Cron Trigger reads
 * `scheduled_jobs` (workers/services/schedule-dispatch.ts), so a change is live on the next tick. What
 * this module owes the tick is a correct `next_run`: recomputed from now whenever the cron expression or
 * time zone changes or the schedule is (re)activated, null while inactive.
 *
 * Target: a function (`function_namespace`/`function_name`, owned by the schedule's owner, run as the
 * owner). Extension point for agent messages: add the agent columns to `scheduled_jobs`, a variant to
 * `ScheduleTarget` and `targetOf`, validate it in `resolveTarget`, and dispatch it in
 * `schedule-dispatch.ts#dispatchTarget`.
 */
import { and, asc, eq } from "drizzle-orm";
import { accessScope, can } from "../auth/access";
import { permissions } from "../auth/catalogue";
import { type Principal, triggerApiKeyId } from "../auth/principal";
import type { Database } from "../db/client";
import { isUniqueViolation } from "../db/errors";
import {
  functions,
  type JsonObject,
  type ScheduledJob,
  type StoredFunction,
  scheduledJobs,
} from "../db/schema";
import { nextRunAfter } from "../lib/cron";
import { AppError, validationError } from "../lib/errors";
import { validateAgainstSchema } from "../lib/json-schema";

/** What a schedule runs. Only functions for now; agent messages are the planned second kind. */
export type ScheduleTarget = { kind: "function"; namespace: string; name: string };

export function targetOf(job: Pick<ScheduledJob, "functionNamespace" | "functionName">): ScheduleTarget {
  return { kind: "function", namespace: job.functionNamespace, name: job.functionName };
}

/** Body of POST /api/v1/schedules after validation (cron and time zone already checked). */
export interface ScheduleCreate {
  name: string;
  function_namespace: string;
  function_name: string;
  description?: string | null | undefined;
  cron_expression: string;
  timezone: string;
  input_data: JsonObject;
  is_active: boolean;
}

export type ScheduleUpdate = Partial<Omit<ScheduleCreate, "name">>;

export function toScheduleResponse(job: ScheduledJob) {
  return {
    id: job.id,
    user_id: job.userId,
    name: job.name,
    function_namespace: job.functionNamespace,
    function_name: job.functionName,
    description: job.description,
    cron_expression: job.cronExpression,
    timezone: job.timezone,
    input_data: job.inputData,
    is_active: job.isActive,
    last_run: job.lastRun?.toISOString() ?? null,
    next_run: job.nextRun?.toISOString() ?? null,
    last_status: job.lastStatus,
    last_execution_id: job.lastExecutionId,
    last_error: job.lastError,
    created_at: job.createdAt.toISOString(),
    updated_at: job.updatedAt.toISOString(),
  };
}

/** `cron[30 2 * * *] tz=America/New_York`: the trigger string of /scheduler/status. */
export function triggerDescription(job: Pick<ScheduledJob, "cronExpression" | "timezone">): string {
  return `cron[${job.cronExpression}] tz=${job.timezone}`;
}

/**
 * The function a schedule may target: its owner's active function (sinas-spec §1.11; the runs run as the owner,
 * whoever edits). Anything else is 404, so other users' function names do not leak.
 */
async function resolveTarget(
  db: Database,
  ownerId: string,
  namespace: string,
  name: string,
): Promise<StoredFunction> {
  const [fn] = await db
    .select()
    .from(functions)
    .where(
      and(
        eq(functions.namespace, namespace),
        eq(functions.name, name),
        eq(functions.isActive, true),
        eq(functions.userId, ownerId),
      ),
    )
    .limit(1);
  if (!fn) throw new AppError("NOT_FOUND", `Function '${namespace}/${name}' not found`);
  return fn;
}

/** 422 naming `input_data` when it breaks the target's input_schema (the run would fail anyway). */
function ensureInputMatches(fn: StoredFunction, input: JsonObject): void {
  const problems = validateAgainstSchema(fn.inputSchema, input);
  if (problems.length === 0) return;
  throw validationError(
    problems.map((problem) => ({
      loc: ["body", "input_data", ...problem.location.replace(/^#\/?/, "").split("/").filter(Boolean)],
      msg: problem.message,
      type: "json_schema",
    })),
  );
}

function alreadyExists(name: string): AppError {
  return new AppError("BAD_REQUEST", `Schedule '${name}' already exists`);
}

export async function createSchedule(
  db: Database,
  principal: Principal,
  input: ScheduleCreate,
  now = new Date(),
): Promise<ScheduledJob> {
  const fn = await resolveTarget(db, principal.user.id, input.function_namespace, input.function_name);
  ensureInputMatches(fn, input.input_data);
  try {
    const [job] = await db
      .insert(scheduledJobs)
      .values({
        userId: principal.user.id,
        name: input.name,
        functionNamespace: input.function_namespace,
        functionName: input.function_name,
        description: input.description ?? null,
        cronExpression: input.cron_expression,
        timezone: input.timezone,
        inputData: input.input_data,
        isActive: input.is_active,
        nextRun: input.is_active ? nextRunAfter(input.cron_expression, input.timezone, now) : null,
        apiKeyId: triggerApiKeyId(principal, principal.user.id, null),
      })
      .returning();
    if (!job) throw new Error("insert returned no row");
    return job;
  } catch (error) {
    // Names are unique across users (as in SINAS); another user's name is a 400 too, not a 500.
    if (isUniqueViolation(error)) throw alreadyExists(input.name);
    throw error;
  }
}

export async function listSchedules(
  db: Database,
  principal: Principal,
  page: { skip: number; limit: number },
) {
  const query = db.select().from(scheduledJobs).orderBy(asc(scheduledJobs.name));
  if (can(principal, "sinas.schedules.get:all")) return query.offset(page.skip).limit(page.limit);
  // Own rows need `get:own` too: an API key made with `{}` lists nothing.
  if (!can(principal, "sinas.schedules.get:own")) return [];
  return query.where(eq(scheduledJobs.userId, principal.user.id)).offset(page.skip).limit(page.limit);
}

/**
 * A schedule for management: the owner's (D-5: canonical string ids) or anyone's with
 * `sinas.schedules.{action}:all`; inactive ones too (D-8). Otherwise 404, as SINAS's owner-filtered lookup.
 */
export async function findManagedSchedule(
  db: Database,
  principal: Principal,
  action: "get" | "put" | "delete",
  name: string,
): Promise<ScheduledJob> {
  const [job] = await db.select().from(scheduledJobs).where(eq(scheduledJobs.name, name)).limit(1);
  const owned = { userId: job?.userId ?? null, groupId: null };
  if (job && accessScope(principal, (scope) => `sinas.schedules.${action}:${scope}`, owned)) return job;
  // Someone else's is 404; the owner without the `:own` grant (a key made with `{}`) is 403.
  if (job?.userId !== principal.user.id) throw new AppError("NOT_FOUND", `Schedule '${name}' not found`);
  throw new AppError("FORBIDDEN", `Not authorized to ${action} schedule '${name}'`);
}

export async function updateSchedule(
  db: Database,
  principal: Principal,
  current: ScheduledJob,
  input: ScheduleUpdate,
  now = new Date(),
): Promise<ScheduledJob> {
  const namespace = input.function_namespace ?? current.functionNamespace;
  const name = input.function_name ?? current.functionName;
  if (namespace !== current.functionNamespace) {
    const permission = permissions.functionsNamespace(namespace, "post", "own");
    if (!can(principal, permission)) {
      throw new AppError("FORBIDDEN", `Not authorized to schedule functions in namespace '${namespace}'`);
    }
  }
  // SINAS ignores function_namespace here and checks the name in any namespace; we check the exact target.
  if (input.function_namespace !== undefined || input.function_name !== undefined || input.input_data) {
    // The owner's function, whoever edits (an admin may): dispatch runs the owner's (schedule-dispatch.ts).
    const fn = await resolveTarget(db, current.userId, namespace, name);
    ensureInputMatches(fn, input.input_data ?? current.inputData);
  }
  const cron = input.cron_expression ?? current.cronExpression;
  const timezone = input.timezone ?? current.timezone;
  const active = input.is_active ?? current.isActive;
  // D-9: a new cron, zone or activation takes effect on the next tick; other edits keep a pending run.
  const reschedule =
    active &&
    (!current.isActive ||
      cron !== current.cronExpression ||
      timezone !== current.timezone ||
      !current.nextRun);
  // Only what the request changes is written: a whole row from `current` would put back a `next_run` the tick
  // advanced meanwhile (its run then lost or run twice), or the activation another edit just changed.
  const changes: Partial<typeof scheduledJobs.$inferInsert> = {
    ...(input.function_namespace != null && { functionNamespace: namespace }),
    ...(input.function_name != null && { functionName: name }),
    ...(input.description !== undefined && { description: input.description }),
    ...(input.cron_expression != null && { cronExpression: cron }),
    ...(input.timezone != null && { timezone }),
    ...(input.input_data !== undefined && { inputData: input.input_data }),
    ...(input.is_active != null && { isActive: active }),
    ...(!active ? { nextRun: null } : reschedule ? { nextRun: nextRunAfter(cron, timezone, now) } : {}),
  };
  if (Object.keys(changes).length === 0) return current;
  const [updated] = await db
    .update(scheduledJobs)
    .set({ ...changes, apiKeyId: triggerApiKeyId(principal, current.userId, current.apiKeyId) })
    .where(eq(scheduledJobs.id, current.id))
    .returning();
  if (!updated) throw new AppError("NOT_FOUND", `Schedule '${current.name}' not found`);
  return updated;
}

export async function deleteSchedule(db: Database, job: ScheduledJob): Promise<void> {
  await db.delete(scheduledJobs).where(eq(scheduledJobs.id, job.id));
}

/** Active schedules for GET /scheduler/status, soonest first. */
export async function listActiveSchedules(db: Database) {
  const rows = await db
    .select({
      id: scheduledJobs.id,
      name: scheduledJobs.name,
      nextRun: scheduledJobs.nextRun,
      cronExpression: scheduledJobs.cronExpression,
      timezone: scheduledJobs.timezone,
    })
    .from(scheduledJobs)
    .where(eq(scheduledJobs.isActive, true))
    .orderBy(asc(scheduledJobs.nextRun), asc(scheduledJobs.name));
  return rows.map((row) => ({
    id: row.id,
    name: row.name,
    next_run: row.nextRun?.toISOString() ?? null,
    trigger: triggerDescription(row),
  }));
}
