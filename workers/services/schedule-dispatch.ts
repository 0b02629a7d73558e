/**
 * @module The Cron Trigger's schedule work (sinas-spec §7.2, D-9): claim due schedules in Postgres, run each
 * claimed occurrence exactly once, record the outcome on the schedule.
 *
 * Claiming: the tick reads the due rows (`is_active AND next_run <= now`), computes each one's next run
 * with croner in its time zone, and claims the row with a conditional update
 * `UPDATE ... SET next_run = <next>, last_run = now, last_status/last_execution_id/last_error = NULL
 * WHERE id = $1 AND is_active AND next_run = <the value read> AND next_run <= now RETURNING *`. Of two
 * concurrent ticks only one update matches (the second waits on the row lock and then no longer sees the
 * old next_run), so only one of them dispatches. A PATCH racing with the tick wins the same way: it moves
 * next_run to the future, and the claim misses. The outcome is written `WHERE last_run = <the claim's>`,
 * so a slow dispatch never overwrites the outcome of a later claim. The tick leaves updated_at alone.
 *
 * Catch-up: the next run is computed from now, not from the missed occurrence, so a schedule that missed
 * many ticks runs once and continues at its next regular time.
 *
 * Idempotency: each claimed occurrence also takes the Redis key
 * `sinas:idempotency:schedule:{id}:{scheduled minute ISO}` (`SET NX EX 86400`) before it starts; a
 * retried or duplicated tick that somehow claimed the same occurrence skips it. The database claim is the
 * guard that matters, so a Redis outage does not stop schedules (the run goes ahead and a warning is logged).
 *
 * Delivery is at most once: an occurrence whose dispatch fails (function gone, invalid input, executor
 * down or refusing the job) is recorded as `last_status: FAILED` with `last_error`, and is not retried.
 * A gone function, an invalid input or a job the executor refused or never received is also stored as a
 * FAILED execution (`last_execution_id`), as every attempt is (§6.2).
 */
import { and, asc, eq, gte, isNull, lt, lte, or, sql } from "drizzle-orm";
import type { Database } from "../db/client";
import { type ScheduledJob, type ScheduleRunStatus, scheduledJobs, users } from "../db/schema";
import { minuteOf, nextRunAfter } from "../lib/cron";
import { AppError } from "../lib/errors";
import { claimIdempotencyKey } from "../lib/idempotency";
import { runKeyRevokedError, runKeyUsableSql } from "./api-keys";
import {
  type ExecutionRequest,
  findActiveFunction,
  recordFailedAttempt,
  startExecutionRun,
} from "./executions";
import { type ScheduleTarget, targetOf } from "./schedules";
import type { Services } from "./services";

/** Due schedules handled per tick; the rest stay due and are taken by the next tick. */
const MAX_CLAIMS_PER_TICK = 200;
/** Dispatches in flight at once (each uses the database and an ExecutionRun Durable Object). */
const DISPATCH_CONCURRENCY = 4;

export interface ScheduleTickReport {
  /** Occurrences this tick claimed and started. */
  started: number;
  /** Occurrences this tick claimed whose dispatch failed. */
  failed: number;
  /** Due rows another tick claimed first, or whose idempotency key was taken. */
  skipped: number;
  /** Active rows without a next_run that were given one (rows written outside the API). */
  rescheduled: number;
}

type DueRow = Pick<ScheduledJob, "id" | "cronExpression" | "timezone" | "nextRun">;

function idempotencyKey(scheduleId: string, scheduledFor: Date): string {
  return `schedule:${scheduleId}:${minuteOf(scheduledFor)}`;
}

/** Keeps updated_at as it is: it says when the schedule was last saved, not when it last ran. */
const keepUpdatedAt = () => sql`${scheduledJobs.updatedAt}`;

/**
 * Claims one due occurrence: moves next_run on (computed from `now`), sets last_run and clears the
 * previous run's outcome (until this run's is recorded, the row must not show it). Returns the updated
 * row, or null when another tick (or a PATCH) changed the row first.
 */
export async function claimOccurrence(
  db: Database,
  row: DueRow,
  now: Date,
  nextRun: Date,
): Promise<ScheduledJob | null> {
  const dueAt = row.nextRun;
  if (!dueAt) return null;
  const [claimed] = await db
    .update(scheduledJobs)
    .set({
      nextRun,
      lastRun: now,
      lastStatus: null,
      lastExecutionId: null,
      lastError: null,
      updatedAt: keepUpdatedAt(),
    })
    .where(
      and(
        eq(scheduledJobs.id, row.id),
        eq(scheduledJobs.isActive, true),
        lte(scheduledJobs.nextRun, now),
        // "next_run = the value read", at the millisecond precision JavaScript read it with.
        gte(scheduledJobs.nextRun, dueAt),
        lt(scheduledJobs.nextRun, new Date(dueAt.getTime() + 1)),
      ),
    )
    .returning();
  return claimed ?? null;
}

/** Gives an active row without next_run its next run (nothing runs). */
async function reschedule(db: Database, row: DueRow, nextRun: Date): Promise<boolean> {
  const updated = await db
    .update(scheduledJobs)
    .set({ nextRun, updatedAt: keepUpdatedAt() })
    .where(and(eq(scheduledJobs.id, row.id), eq(scheduledJobs.isActive, true), isNull(scheduledJobs.nextRun)))
    .returning({ id: scheduledJobs.id });
  return updated.length > 0;
}

/** Takes the occurrence's key (`claimIdempotencyKey`, with a value unique to this tick's claim). */
async function takeIdempotencyKey(services: Services, key: string): Promise<boolean> {
  try {
    return (await claimIdempotencyKey(services.redis(), key, crypto.randomUUID())).kind === "claimed";
  } catch (error) {
    console.warn(`schedule idempotency key ${key} not taken (Redis failed), running anyway:`, error);
    return true;
  }
}

function nullIfNotFound(error: unknown): null {
  if (error instanceof AppError && error.code === "NOT_FOUND") return null;
  throw error;
}

/**
 * Starts the run; returns the execution id. A job the executor refused or never received does not throw
 * in startExecution (its execution is FAILED already), so its state is read to fail the occurrence too.
 */
async function startRun(services: Services, request: ExecutionRequest): Promise<string> {
  const state = await startExecutionRun(services, request);
  if (state.status !== "failed") return state.executionId;
  throw new AppError("FUNCTION_FAILED", `Function execution failed: ${state.error ?? "not started"}`, {
    extra: { execution_id: state.executionId, error_type: state.errorType },
  });
}

/** Starts the target as the schedule's owner; returns the execution id. */
async function dispatchTarget(
  services: Services,
  job: ScheduledJob,
  target: ScheduleTarget,
): Promise<string> {
  const db = services.db();
  const [owner] = await db
    .select({
      id: users.id,
      email: users.email,
      isActive: users.isActive,
      runKeyUsable: runKeyUsableSql(job.apiKeyId),
    })
    .from(users)
    .where(eq(users.id, job.userId))
    .limit(1);
  if (!owner?.isActive) throw new AppError("FORBIDDEN", "The schedule's owner is inactive");
  // Its runs act as the owner's key the schedule was saved with: a dead key would give them a dead token.
  if (!owner.runKeyUsable) throw runKeyRevokedError("schedule");
  switch (target.kind) {
    case "function": {
      const { namespace, name } = target;
      const fn = await findActiveFunction(db, namespace, name).catch(nullIfNotFound);
      const attempt = {
        runAs: owner,
        input: job.inputData,
        triggerType: "SCHEDULE" as const,
        triggerId: job.id,
        // The owner's key the schedule was saved with: its runs act as that key, not as the owner's login.
        apiKeyId: job.apiKeyId,
      };
      // The target must still be the owner's (checked at create and update; a function may have been replaced).
      // An occurrence that cannot run is still an attempt, stored as a FAILED execution as a webhook's is.
      if (fn?.userId !== job.userId) {
        throw await recordFailedAttempt(
          services,
          { ...attempt, chatId: null, functionNamespace: namespace, functionName: name },
          `Function '${namespace}/${name}' not found`,
          "not_found",
        );
      }
      return startRun(services, { ...attempt, fn, chatId: null, invalidInput: "record" });
    }
  }
}

interface RunOutcome {
  status: ScheduleRunStatus;
  executionId: string | null;
  error: string | null;
}

async function runOccurrence(services: Services, job: ScheduledJob): Promise<RunOutcome> {
  try {
    const executionId = await dispatchTarget(services, job, targetOf(job));
    return { status: "STARTED", executionId, error: null };
  } catch (error) {
    const executionId = error instanceof AppError ? error.extra?.execution_id : undefined;
    return {
      status: "FAILED",
      executionId: typeof executionId === "string" ? executionId : null,
      error: error instanceof Error ? error.message : String(error),
    };
  }
}

/**
 * Writes the outcome. `claimedAt`, the claim's last_run: a later claim (a tick that ran while this one's
 * dispatch was slow) owns the row, and this older outcome must not overwrite its own.
 */
async function recordOutcome(
  db: Database,
  scheduleId: string,
  outcome: RunOutcome,
  claimedAt?: Date,
): Promise<void> {
  await db
    .update(scheduledJobs)
    .set({
      lastStatus: outcome.status,
      lastExecutionId: outcome.executionId,
      lastError: outcome.error,
      updatedAt: keepUpdatedAt(),
    })
    .where(
      and(eq(scheduledJobs.id, scheduleId), claimedAt ? eq(scheduledJobs.lastRun, claimedAt) : undefined),
    );
}

type RowResult = "started" | "failed" | "skipped" | "rescheduled";

async function handleDueRow(services: Services, row: DueRow, now: Date): Promise<RowResult> {
  const db = services.db();
  let nextRun: Date;
  try {
    nextRun = nextRunAfter(row.cronExpression, row.timezone, now);
  } catch (error) {
    // Only rows written around the API can get here; the row stays due and says why it does not run.
    const message = error instanceof Error ? error.message : String(error);
    await recordOutcome(db, row.id, { status: "FAILED", executionId: null, error: message });
    console.error(`schedule ${row.id}: cannot compute its next run: ${message}`);
    return "failed";
  }
  if (!row.nextRun) return (await reschedule(db, row, nextRun)) ? "rescheduled" : "skipped";
  const job = await claimOccurrence(db, row, now, nextRun);
  if (!job) return "skipped";
  if (!(await takeIdempotencyKey(services, idempotencyKey(job.id, row.nextRun)))) return "skipped";
  const outcome = await runOccurrence(services, job);
  await recordOutcome(db, job.id, outcome, now);
  if (outcome.error) console.warn(`schedule '${job.name}' (${job.id}) failed to start: ${outcome.error}`);
  return outcome.status === "STARTED" ? "started" : "failed";
}

/**
 * Runs every schedule due at `tickTime` (or at the current time, if later). One schedule's failure
 * (a bad stored cron, a database error) is logged and does not stop the others.
 */
export async function runDueSchedules(services: Services, tickTime: Date): Promise<ScheduleTickReport> {
  const now = new Date(Math.max(Date.now(), tickTime.getTime()));
  const db = services.db();
  const due: DueRow[] = await db
    .select({
      id: scheduledJobs.id,
      cronExpression: scheduledJobs.cronExpression,
      timezone: scheduledJobs.timezone,
      nextRun: scheduledJobs.nextRun,
    })
    .from(scheduledJobs)
    .where(
      and(
        eq(scheduledJobs.isActive, true),
        or(isNull(scheduledJobs.nextRun), lte(scheduledJobs.nextRun, now)),
      ),
    )
    .orderBy(asc(scheduledJobs.nextRun))
    .limit(MAX_CLAIMS_PER_TICK);

  const report: ScheduleTickReport = { started: 0, failed: 0, skipped: 0, rescheduled: 0 };
  const queue = [...due];
  const worker = async () => {
    for (let row = queue.shift(); row; row = queue.shift()) {
      try {
        report[await handleDueRow(services, row, now)]++;
      } catch (error) {
        report.failed++;
        console.error(`schedule ${row.id}: tick failed:`, error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DISPATCH_CONCURRENCY, queue.length) }, worker));
  return report;
}
