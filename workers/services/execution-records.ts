/**
 * @module Postgres records of executions and their steps (sinas-spec §2.3, §6.8), written by the
 * ExecutionRun Durable Object as the executor reports progress.
 */
import { and, eq, inArray, sql } from "drizzle-orm";
import type { DbOrTx } from "../db/client";
import {
  type Execution,
  executions,
  type JsonObject,
  type StepExecution,
  stepExecutions,
  type TriggerType,
} from "../db/schema";
import type { ErrorType, Step } from "../lib/executor-protocol";

export interface NewExecutionRecord {
  executionId: string;
  userId: string;
  functionNamespace: string;
  functionName: string;
  triggerType: TriggerType;
  triggerId: string;
  chatId: string | null;
  input: JsonObject;
}

export async function insertExecution(db: DbOrTx, record: NewExecutionRecord): Promise<void> {
  await db
    .insert(executions)
    .values({
      executionId: record.executionId,
      userId: record.userId,
      functionNamespace: record.functionNamespace,
      functionName: record.functionName,
      triggerType: record.triggerType,
      triggerId: record.triggerId,
      chatId: record.chatId,
      inputData: record.input,
      status: "RUNNING",
    })
    .onConflictDoNothing({ target: executions.executionId });
}

/**
 * The statement that writes steps as reported; a later report of a step id (its end) overwrites the earlier
 * one, also within `steps` (the executor sends a fast step's start and end in one callback). Null when there
 * is nothing to write.
 */
function stepsUpsert(db: DbOrTx, executionId: string, steps: Step[]) {
  const latest = new Map<string, Step>();
  for (const step of steps) latest.set(step.id, step);
  if (latest.size === 0) return null;
  const rows = [...latest.values()].map((step) => ({
    id: step.id,
    executionId,
    parentStepId: step.parent_id,
    functionNamespace: step.namespace,
    functionName: step.name,
    status: step.status,
    inputData: step.input ?? null,
    outputData: step.output ?? null,
    error: step.error ?? null,
    traceback: step.traceback ?? null,
    durationMs: step.duration_ms == null ? null : Math.round(step.duration_ms),
    // Kept as text so Postgres stores the runtime's microseconds (a JS Date would cut them to
    // milliseconds, and nested calls in the same millisecond would lose their order).
    startedAt: sql`${step.started_at}::timestamptz`,
    completedAt: step.completed_at ? sql`${step.completed_at}::timestamptz` : null,
  }));
  const excluded = (column: { name: string }) => sql.raw(`excluded."${column.name}"`);
  return db
    .insert(stepExecutions)
    .values(rows)
    .onConflictDoUpdate({
      target: stepExecutions.id,
      set: {
        status: excluded(stepExecutions.status),
        outputData: excluded(stepExecutions.outputData),
        error: excluded(stepExecutions.error),
        traceback: excluded(stepExecutions.traceback),
        durationMs: excluded(stepExecutions.durationMs),
        completedAt: excluded(stepExecutions.completedAt),
      },
      // A late RUNNING report must not overwrite a finished step.
      setWhere: sql`${stepExecutions.status} = 'RUNNING'`,
    })
    .returning({ id: stepExecutions.id });
}

/** Writes steps as reported, in one statement (see `stepsUpsert`). */
export async function upsertSteps(db: DbOrTx, executionId: string, steps: Step[]): Promise<void> {
  await stepsUpsert(db, executionId, steps);
}

export type ExecutionOutcome =
  | { status: "COMPLETED"; output: unknown; durationMs: number | null }
  | {
      status: "FAILED";
      error: string;
      errorType: ErrorType;
      traceback: string | null;
      durationMs: number | null;
    }
  | { status: "AWAITING_INPUT"; prompt: string | null; schema: JsonObject | null };

/**
 * Records the outcome; only a RUNNING execution changes, so a stale or repeated report changes nothing.
 * `steps` reported with the outcome are written first, in the same statement unless the run failed (its
 * still-running steps are then closed by a second statement, which must see them).
 */
export async function recordOutcome(
  db: DbOrTx,
  executionId: string,
  outcome: ExecutionOutcome,
  steps: Step[] = [],
): Promise<boolean> {
  const running = and(eq(executions.executionId, executionId), eq(executions.status, "RUNNING"));
  const changes =
    outcome.status === "AWAITING_INPUT"
      ? { status: outcome.status, inputPrompt: outcome.prompt, inputSchema: outcome.schema }
      : outcome.status === "COMPLETED"
        ? {
            status: outcome.status,
            outputData: outcome.output ?? null,
            completedAt: sql`now()`,
            durationMs: outcome.durationMs == null ? null : Math.round(outcome.durationMs),
            inputPrompt: null,
            inputSchema: null,
          }
        : {
            status: outcome.status,
            error: outcome.error,
            errorType: outcome.errorType,
            traceback: outcome.traceback,
            completedAt: sql`now()`,
            durationMs: outcome.durationMs == null ? null : Math.round(outcome.durationMs),
          };
  const written = stepsUpsert(db, executionId, steps);
  if (written && outcome.status === "FAILED") await written;
  // Every data-modifying CTE runs to completion whether or not the main statement reads it.
  const update = written && outcome.status !== "FAILED" ? db.with(db.$with("steps").as(written)) : db;
  const updated = await update
    .update(executions)
    .set(changes)
    .where(running)
    .returning({ id: executions.id });
  if (outcome.status === "FAILED") {
    // Steps still marked running belonged to the failed run: close them so the tree tells the truth.
    await db
      .update(stepExecutions)
      .set({ status: "FAILED", error: outcome.error, completedAt: sql`now()` })
      .where(and(eq(stepExecutions.executionId, executionId), inArray(stepExecutions.status, ["RUNNING"])));
  }
  return updated.length > 0;
}

/** AWAITING_INPUT -> RUNNING for a resume; false when the execution is not awaiting input. */
export async function resumeRecord(db: DbOrTx, executionId: string): Promise<boolean> {
  const updated = await db
    .update(executions)
    .set({ status: "RUNNING" })
    .where(and(eq(executions.executionId, executionId), eq(executions.status, "AWAITING_INPUT")))
    .returning({ id: executions.id });
  return updated.length > 0;
}

export async function findExecution(db: DbOrTx, executionId: string): Promise<Execution | undefined> {
  const [row] = await db.select().from(executions).where(eq(executions.executionId, executionId)).limit(1);
  return row;
}

export async function listSteps(db: DbOrTx, executionId: string): Promise<StepExecution[]> {
  return db
    .select()
    .from(stepExecutions)
    .where(eq(stepExecutions.executionId, executionId))
    .orderBy(stepExecutions.startedAt, stepExecutions.id);
}
