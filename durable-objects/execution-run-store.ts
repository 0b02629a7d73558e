/**
 * @module The SQLite tables of one ExecutionRun shard: its runs (plan, state, watchdog deadline), their log
 * lines (a sequence per execution, for SSE resume) and the callback sequence numbers already applied.
 *
 * One object holds many executions (workers/services/execution-shards.ts): creating a SQLite database per
 * execution was the largest CPU cost of a run. Finished runs are kept `FINISHED_RUN_RETENTION_MS`; a paused run
 * has a deadline too, its pause's end (EXECUTION_PAUSE_TTL_SECONDS), when the watchdog fails it.
 */
import type { JsonObject, JsonSchema } from "../workers/db/schema";
import type { Job } from "../workers/lib/executor-protocol";
import type { NewExecutionRecord } from "../workers/services/execution-records";

export interface RunPlan {
  record: NewExecutionRecord;
  job: Job;
  outputSchema: JsonSchema;
  /** The API key the run was started with (its context token acts within it); absent or null: none. */
  apiKeyId?: string | null;
}

export type RunStatus = "running" | "awaiting_input" | "completed" | "failed";

export interface RunState {
  executionId: string;
  status: RunStatus;
  /** When the job was sent (epoch ms) and how long until its result was applied: the API-observed run. */
  dispatchedAt: number | null;
  roundTripMs: number | null;
  /** The runtime's own measurement of the function call. */
  durationMs: number | null;
  result: unknown;
  error: string | null;
  errorType: string | null;
  prompt: string | null;
  schema: JsonObject | null;
  /** The first callback seq of the current job (a resume's starts above its predecessor's); absent: 1. */
  firstSeq?: number;
  /** The result was too large for this object's row (see `RunStore.save`): it is in Postgres only. */
  resultInDatabase?: boolean;
  /** The executor running or holding the run (its started event's `executor_url`); absent: EXECUTOR_URL. */
  executorUrl?: string;
}

/**
 * Results larger than this (JSON characters) are not kept in the object's row, whose 2 MB must also hold the
 * run's plan (its input, up to a webhook's 1 MiB body, and code): Postgres has them (`output_data`).
 */
const MAX_KEPT_RESULT_CHARS = 64 * 1024;

/** A run that was just started: running, nothing measured or answered yet. */
export function newRunState(executionId: string): RunState {
  return {
    executionId,
    status: "running",
    dispatchedAt: null,
    roundTripMs: null,
    durationMs: null,
    result: null,
    error: null,
    errorType: null,
    prompt: null,
    schema: null,
  };
}

export interface LogLine {
  seq: number;
  stream: string;
  text: string;
  at: string;
}

/** Logs and states of finished runs stay readable this long (the executions table keeps the outcome). */
export const FINISHED_RUN_RETENTION_MS = 30 * 24 * 3600 * 1000;

/**
 * The plan as stored: the job's input is the record's input, kept once. SQLite values of a Durable Object hold
 * at most 2 MB, and an input near the 1 MiB request limit stored twice would not fit.
 */
function serializePlan(plan: RunPlan): string {
  return JSON.stringify({ ...plan, job: { ...plan.job, input: undefined } });
}

function parsePlan(text: string): RunPlan {
  const plan = JSON.parse(text) as RunPlan;
  return { ...plan, job: { ...plan.job, input: plan.record.input } };
}

/**
 * Characters of a plan kept in one SQLite value: at most 3 bytes each in UTF-8, so a part stays under the
 * 2 MB a value may hold. A longer plan (a large webhook body, a namespace of large functions: the job carries
 * every callable function's code) is split into `plan_parts`, and its `runs.plan` is empty.
 */
export const PLAN_PART_CHARS = 600_000;

/** `text` in parts of at most `size` characters, never splitting a surrogate pair (SQLite would mangle it). */
export function partsOf(text: string, size: number): string[] {
  const parts: string[] = [];
  for (let start = 0; start < text.length; ) {
    let end = Math.min(start + size, text.length);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--;
    parts.push(text.slice(start, end));
    start = end;
  }
  return parts;
}

export class RunStore {
  /**
   * States of the runs not over yet, as last saved: a run's state is read several times per start and per
   * callback. Only this object writes them, so memory and SQLite agree; an over run is read from SQLite.
   */
  readonly #unfinished = new Map<string, RunState>();
  /** Plans of the running runs (each callback reads one); paused and over runs' plans are read from SQLite. */
  readonly #runningPlans = new Map<string, RunPlan>();

  /** `pauseTtlMs`: how long a paused run waits for its input before its deadline (EXECUTION_PAUSE_TTL_SECONDS). */
  constructor(
    private readonly sql: SqlStorage,
    private readonly pauseTtlMs: number,
  ) {
    sql.exec(`
      create table if not exists runs (execution_id text primary key, plan text not null,
        status text not null, state text not null, deadline integer, finished_at integer);
      create index if not exists runs_deadline on runs (deadline) where deadline is not null;
      create index if not exists runs_finished on runs (finished_at) where finished_at is not null;
      create table if not exists logs (execution_id text not null, seq integer not null,
        stream text not null, text text not null, at text not null, primary key (execution_id, seq));
      create table if not exists callbacks (execution_id text not null, seq integer not null,
        primary key (execution_id, seq));
      create table if not exists callback_logs (execution_id text not null, seq integer not null,
        primary key (execution_id, seq));
      create table if not exists plan_parts (execution_id text not null, part integer not null,
        text text not null, primary key (execution_id, part));
      create table if not exists store_changes (name text primary key);`);
    // Runs paused before pauses had a lifetime have no deadline: they get one, once per shard.
    if (
      sql.exec("insert into store_changes values ('pause_deadlines') on conflict do nothing").rowsWritten > 0
    ) {
      const deadline = Date.now() + pauseTtlMs;
      sql.exec("update runs set deadline = ? where status = 'awaiting_input' and deadline is null", deadline);
    }
  }

  state(executionId: string): RunState | null {
    const kept = this.#unfinished.get(executionId);
    if (kept) return { ...kept };
    const [row] = this.sql
      .exec<{ state: string }>("select state from runs where execution_id = ?", executionId)
      .toArray();
    return row ? (JSON.parse(row.state) as RunState) : null;
  }

  plan(executionId: string): RunPlan | null {
    const kept = this.#runningPlans.get(executionId);
    if (kept) return kept;
    const [row] = this.sql
      .exec<{ plan: string }>("select plan from runs where execution_id = ?", executionId)
      .toArray();
    if (!row) return null;
    if (row.plan !== "") return parsePlan(row.plan);
    const parts = this.sql
      .exec<{ text: string }>("select text from plan_parts where execution_id = ? order by part", executionId)
      .toArray();
    return parsePlan(parts.map((part) => part.text).join(""));
  }

  /**
   * Stores a new run with its watchdog deadline; false (and nothing changes) when the execution id is known
   * already. One write per start: the deadline is known before the job goes out.
   */
  insertNew(plan: RunPlan, state: RunState, deadline: number): boolean {
    const text = serializePlan(plan);
    const parts = text.length > PLAN_PART_CHARS ? partsOf(text, PLAN_PART_CHARS) : [];
    const cursor = this.sql.exec(
      `insert into runs (execution_id, plan, status, state, deadline) values (?, ?, ?, ?, ?)
       on conflict do nothing`,
      state.executionId,
      parts.length > 0 ? "" : text,
      state.status,
      JSON.stringify(state),
      deadline,
    );
    if (cursor.rowsWritten === 0) return false;
    // No await in between: the run and its plan's parts are one commit.
    parts.forEach((part, index) => {
      this.sql.exec(
        "insert into plan_parts (execution_id, part, text) values (?, ?, ?)",
        state.executionId,
        index,
        part,
      );
    });
    this.#keep(state, plan);
    return true;
  }

  remove(executionId: string): void {
    this.sql.exec("delete from plan_parts where execution_id = ?", executionId);
    this.sql.exec("delete from runs where execution_id = ?", executionId);
    this.#unfinished.delete(executionId);
    this.#runningPlans.delete(executionId);
  }

  #keep(state: RunState, plan?: RunPlan): void {
    if (state.status === "completed" || state.status === "failed") this.#unfinished.delete(state.executionId);
    else this.#unfinished.set(state.executionId, { ...state });
    if (state.status !== "running") this.#runningPlans.delete(state.executionId);
    else if (plan) this.#runningPlans.set(state.executionId, plan);
  }

  /**
   * Saves the state; returns the run's watchdog deadline (null: none). A running run keeps (or gets) its
   * deadline; a paused one (awaiting input) gets its pause's end, `pauseTtlMs` from when it paused (saved again
   * while paused, it keeps it); a completed or failed one gets its finish time, from which the retention counts.
   */
  save(state: RunState, deadline?: number): number | null {
    const stored =
      state.status === "completed" &&
      state.result != null &&
      JSON.stringify(state.result).length > MAX_KEPT_RESULT_CHARS
        ? { ...state, result: null, resultInDatabase: true }
        : state;
    const over = state.status === "completed" || state.status === "failed" ? 1 : 0;
    const now = Date.now();
    // The right-hand sides read the row as it was: `status` is the status before this save.
    const [row] = this.sql
      .exec<{ deadline: number | null }>(
        `update runs set status = ?, state = ?,
           deadline = case ?
             when 'running' then coalesce(?, deadline)
             when 'awaiting_input' then case when status = 'awaiting_input' then coalesce(deadline, ?) else ? end
           end,
           finished_at = case when ? then ? end
         where execution_id = ? returning deadline`,
        state.status,
        JSON.stringify(stored),
        state.status,
        deadline ?? null,
        now + this.pauseTtlMs,
        now + this.pauseTtlMs,
        over,
        now,
        state.executionId,
      )
      .toArray();
    this.#keep(stored);
    return row?.deadline ?? null;
  }

  /**
   * Notes when a run's job went out, in memory only: it feeds the run's Server-Timing, not its safety (the
   * deadline is stored), so it costs no write; a restarted object reports no timing for the runs it had.
   */
  noteDispatch(executionId: string, at: number): void {
    const kept = this.#unfinished.get(executionId);
    if (kept) this.#unfinished.set(executionId, { ...kept, dispatchedAt: at, roundTripMs: null });
  }

  /**
   * Notes which executor runs the run, in memory: the state's next save stores it. False when it is known
   * already (or the run is over), so that the caller saves only what changed.
   */
  noteExecutor(executionId: string, executorUrl: string): boolean {
    // A restarted object keeps only what it saved since: `state` then reads the run back from SQLite.
    const kept = this.state(executionId);
    if (!kept || kept.status === "completed" || kept.status === "failed") return false;
    if (kept.executorUrl === executorUrl) return false;
    this.#unfinished.set(executionId, { ...kept, executorUrl });
    return true;
  }

  /** Whether the callback numbered `seq` was applied whole (its log lines, steps and outcome). */
  callbackApplied(executionId: string, seq: number): boolean {
    return (
      this.sql.exec("select 1 from callbacks where execution_id = ? and seq = ?", executionId, seq).toArray()
        .length > 0
    );
  }

  /** Records that the callback numbered `seq` was applied whole; false when it was recorded before. */
  markCallback(executionId: string, seq: number): boolean {
    const cursor = this.sql.exec(
      "insert into callbacks (execution_id, seq) values (?, ?) on conflict do nothing",
      executionId,
      seq,
    );
    return cursor.rowsWritten > 0;
  }

  /**
   * Appends a callback's log lines once: a callback applied again (its Postgres writes failed the first time)
   * adds none. The lines and the note that they were added are one commit (no await in between).
   */
  appendCallbackLogs(executionId: string, seq: number, lines: Omit<LogLine, "seq">[]): boolean {
    const cursor = this.sql.exec(
      "insert into callback_logs (execution_id, seq) values (?, ?) on conflict do nothing",
      executionId,
      seq,
    );
    if (cursor.rowsWritten === 0) return false;
    for (const line of lines) this.appendLog(executionId, line);
    return true;
  }

  appendLog(executionId: string, line: Omit<LogLine, "seq">): void {
    this.sql.exec(
      `insert into logs (execution_id, seq, stream, text, at)
       values (?, (select coalesce(max(seq), 0) + 1 from logs where execution_id = ?), ?, ?, ?)`,
      executionId,
      executionId,
      line.stream,
      line.text,
      line.at,
    );
  }

  logsAfter(executionId: string, after: number): LogLine[] {
    return this.sql
      .exec<{ seq: number; stream: string; text: string; at: string }>(
        "select seq, stream, text, at from logs where execution_id = ? and seq > ? order by seq",
        executionId,
        after,
      )
      .toArray();
  }

  /** Running executions whose watchdog deadline has passed, and paused ones whose pause has. */
  overdue(now: number): string[] {
    return this.sql
      .exec<{ execution_id: string }>(
        "select execution_id from runs where deadline is not null and deadline <= ?",
        now,
      )
      .toArray()
      .map((row) => row.execution_id);
  }

  /** When the alarm should next fire: the earliest deadline or retention sweep, else never. */
  nextWakeUp(): number | null {
    const [row] = this.sql
      .exec<{ deadline: number | null; finished: number | null }>(
        "select (select min(deadline) from runs) as deadline, (select min(finished_at) from runs) as finished",
      )
      .toArray();
    const sweep = row?.finished == null ? null : row.finished + FINISHED_RUN_RETENTION_MS;
    const deadline = row?.deadline ?? null;
    if (deadline === null || sweep === null) return deadline ?? sweep;
    return Math.min(deadline, sweep);
  }

  /** Deletes runs finished longer ago than the retention, with their logs and callbacks. */
  sweep(now: number): void {
    const before = now - FINISHED_RUN_RETENTION_MS;
    const filter = "select execution_id from runs where finished_at is not null and finished_at < ?";
    this.sql.exec(`delete from logs where execution_id in (${filter})`, before);
    this.sql.exec(`delete from callbacks where execution_id in (${filter})`, before);
    this.sql.exec(`delete from callback_logs where execution_id in (${filter})`, before);
    this.sql.exec(`delete from plan_parts where execution_id in (${filter})`, before);
    this.sql.exec("delete from runs where finished_at is not null and finished_at < ?", before);
  }
}
