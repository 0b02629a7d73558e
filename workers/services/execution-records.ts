/**
 * @module Postgres records of executions and their steps (sinas-spec §2.3, §6.8), written by the
 * ExecutionRun Durable Object as the executor reports progress.
 */
import { and, eq, inArray, sql } from "drizzle-orm";
import type { Database, DbOrTx } from "../db/client";
import { preparedOnce } from "../db/prepared";
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

const insertExecutionStatement = preparedOnce((db) =>
  db
    .insert(executions)
    .values({
      executionId: sql.placeholder("executionId"),
      userId: sql.placeholder("userId"),
      functionNamespace: sql.placeholder("functionNamespace"),
      functionName: sql.placeholder("functionName"),
      triggerType: sql.placeholder("triggerType"),
      triggerId: sql.placeholder("triggerId"),
      chatId: sql.placeholder("chatId"),
      inputData: sql.placeholder("input"),
      status: "RUNNING",
    })
    .onConflictDoNothing({ target: executions.executionId })
    .prepare("insert_execution"),
);

export async function insertExecution(db: Database, record: NewExecutionRecord): Promise<void> {
  // A placeholder skips the column's own encoding: json text, as drizzle would send it.
  await insertExecutionStatement(db).execute({ ...record, input: JSON.stringify(record.input) });
}

/**
 * An attempt that never ran, stored FAILED in one statement: a row is never left RUNNING without a run (and
 * without the ExecutionRun object whose watchdog would end it) when a second write would fail.
 */
export async function insertFailedAttempt(
  db: Database,
  record: NewExecutionRecord,
  failure: { error: string; errorType: ErrorType },
): Promise<void> {
  await db
    .insert(executions)
    .values({
      ...record,
      inputData: record.input,
      status: "FAILED",
      error: textParam(failure.error),
      errorType: failure.errorType,
      completedAt: sql`now()`,
      durationMs: 0,
    })
    .onConflictDoNothing({ target: executions.executionId });
}

/** Statements for up to this many step rows are kept prepared; a larger report is built for itself. */
const PREPARED_STEP_ROWS = 8;

/**
 * A text column's value without NUL characters, which Postgres text refuses (a function may raise an error that
 * holds one): the whole outcome would fail to be written, and the run end as a timeout. Json columns need no
 * care (JSON.stringify escapes NUL).
 */
function textParam(value: string | null | undefined): string | null {
  return value == null ? null : value.replaceAll("\u0000", "\uFFFD");
}

/** Json text, as drizzle encodes a json column (placeholders skip the column's encoding); SQL NULL for none. */
function jsonParam(value: unknown): string | null {
  return value === undefined || value === null ? null : JSON.stringify(value);
}

/**
 * The placeholder values of reported steps: the latest report of each step id (its end overwrites its start,
 * also within one callback: the executor sends a fast step's start and end together), as `s{i}_{column}`.
 */
function stepParams(steps: Step[]): { count: number; params: Record<string, unknown> } {
  const latest = new Map<string, Step>();
  for (const step of steps) latest.set(step.id, step);
  const params: Record<string, unknown> = {};
  [...latest.values()].forEach((step, index) => {
    const values = {
      id: step.id,
      parentStepId: step.parent_id,
      functionNamespace: step.namespace,
      functionName: step.name,
      status: step.status,
      inputData: jsonParam(step.input),
      outputData: jsonParam(step.output),
      error: textParam(step.error),
      traceback: textParam(step.traceback),
      durationMs: step.duration_ms == null ? null : Math.round(step.duration_ms),
      startedAt: step.started_at,
      completedAt: step.completed_at ?? null,
    };
    for (const [column, value] of Object.entries(values)) params[`s${index}_${column}`] = value;
  });
  return { count: latest.size, params };
}

/** The upsert of `count` step rows (placeholders `s{i}_{column}` and `executionId`). */
function stepsInsert(db: Database, count: number) {
  const rows = Array.from({ length: count }, (_, index) => {
    const param = (column: string) => sql.placeholder(`s${index}_${column}`);
    return {
      id: param("id"),
      executionId: sql.placeholder("executionId"),
      parentStepId: param("parentStepId"),
      functionNamespace: param("functionNamespace"),
      functionName: param("functionName"),
      status: param("status"),
      inputData: param("inputData"),
      outputData: param("outputData"),
      error: param("error"),
      traceback: param("traceback"),
      durationMs: param("durationMs"),
      // Text cast in SQL, so Postgres stores the runtime's microseconds (a JS Date would cut them to
      // milliseconds, and nested calls in the same millisecond would lose their order).
      startedAt: sql`${param("startedAt")}::timestamptz`,
      completedAt: sql`${param("completedAt")}::timestamptz`,
    };
  });
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

/** Statements named `{prefix}_{step count}`, each prepared once while the count is small. */
function statementCache<T>(prefix: string, build: (db: Database, count: number, name: string) => T) {
  const cached = new Map<number, (db: Database) => T>();
  return (db: Database, count: number): T => {
    const name = `${prefix}_${count}`;
    if (count > PREPARED_STEP_ROWS) return build(db, count, name);
    let statement = cached.get(count);
    if (!statement) {
      statement = preparedOnce((handle) => build(handle, count, name));
      cached.set(count, statement);
    }
    return statement(db);
  };
}

const stepsStatement = statementCache("upsert_steps", (db, count, name) =>
  stepsInsert(db, count).prepare(name),
);

/** Writes steps as reported, in one statement. */
export async function upsertSteps(db: Database, executionId: string, steps: Step[]): Promise<void> {
  const { count, params } = stepParams(steps);
  if (count > 0) await stepsStatement(db, count).execute({ ...params, executionId });
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

/** A placeholder where drizzle's `set` wants SQL. */
const setParam = (name: string) => sql`${sql.placeholder(name)}`;

/** What an outcome writes into its execution row, as placeholders (`outcome_{column}`). */
const OUTCOME_CHANGES = {
  COMPLETED: {
    status: "COMPLETED",
    outputData: setParam("outcome_output"),
    completedAt: sql`now()`,
    durationMs: setParam("outcome_durationMs"),
    inputPrompt: null,
    inputSchema: null,
  },
  FAILED: {
    status: "FAILED",
    error: setParam("outcome_error"),
    errorType: setParam("outcome_errorType"),
    traceback: setParam("outcome_traceback"),
    completedAt: sql`now()`,
    durationMs: setParam("outcome_durationMs"),
  },
  AWAITING_INPUT: {
    status: "AWAITING_INPUT",
    inputPrompt: setParam("outcome_prompt"),
    inputSchema: setParam("outcome_schema"),
  },
} as const;

function outcomeParams(outcome: ExecutionOutcome): Record<string, unknown> {
  const duration = (ms: number | null) => (ms == null ? null : Math.round(ms));
  switch (outcome.status) {
    case "COMPLETED":
      return { outcome_output: jsonParam(outcome.output), outcome_durationMs: duration(outcome.durationMs) };
    case "FAILED":
      return {
        outcome_error: textParam(outcome.error),
        outcome_errorType: outcome.errorType,
        outcome_traceback: textParam(outcome.traceback),
        outcome_durationMs: duration(outcome.durationMs),
      };
    case "AWAITING_INPUT":
      return { outcome_prompt: textParam(outcome.prompt), outcome_schema: jsonParam(outcome.schema) };
  }
}

/**
 * The outcome's update of a RUNNING execution, with `count` step rows written first in the same statement
 * (a data-modifying CTE runs to completion whether or not the main statement reads it). A failure also ends
 * an AWAITING_INPUT row: the ExecutionRun object marks a resumed run running before the database does, and
 * fails it (its watchdog) if it died in between.
 */
function outcomeStatements(status: ExecutionOutcome["status"]) {
  const from: Execution["status"][] = status === "FAILED" ? ["RUNNING", "AWAITING_INPUT"] : ["RUNNING"];
  return statementCache(`outcome_${status.toLowerCase()}`, (db, count, name) => {
    const update = count > 0 ? db.with(db.$with("steps").as(stepsInsert(db, count))) : db;
    return update
      .update(executions)
      .set(OUTCOME_CHANGES[status])
      .where(
        and(eq(executions.executionId, sql.placeholder("executionId")), inArray(executions.status, from)),
      )
      .returning({ id: executions.id })
      .prepare(name);
  });
}

const OUTCOME_STATEMENTS = {
  COMPLETED: outcomeStatements("COMPLETED"),
  FAILED: outcomeStatements("FAILED"),
  AWAITING_INPUT: outcomeStatements("AWAITING_INPUT"),
};

/**
 * Records the outcome; only a RUNNING execution changes, so a stale or repeated report changes nothing.
 * `steps` reported with the outcome are written first, in the same statement unless the run failed (its
 * still-running steps are then closed by a second statement, which must see them).
 */
export async function recordOutcome(
  db: Database,
  executionId: string,
  outcome: ExecutionOutcome,
  steps: Step[] = [],
): Promise<boolean> {
  const failed = outcome.status === "FAILED";
  if (failed) await upsertSteps(db, executionId, steps);
  const { count, params } = failed ? { count: 0, params: {} } : stepParams(steps);
  const updated = await OUTCOME_STATEMENTS[outcome.status](db, count).execute({
    ...params,
    ...outcomeParams(outcome),
    executionId,
  });
  if (failed) {
    // Steps still marked running belonged to the failed run: close them so the tree tells the truth.
    await db
      .update(stepExecutions)
      .set({ status: "FAILED", error: textParam(outcome.error), completedAt: sql`now()` })
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
