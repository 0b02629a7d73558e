/**
 * @module The outcomes an ExecutionRun records in Postgres, and the state each leaves the run in. Postgres has
 * the last word: an outcome it does not take (the row is no longer RUNNING: another outcome was recorded first,
 * e.g. by this object just before a restart lost its own save) leaves the run as the row says.
 */
import type { Database } from "../workers/db/client";
import type { Execution, JsonObject } from "../workers/db/schema";
import type { Step } from "../workers/lib/executor-protocol";
import { type ExecutionOutcome, findExecution, recordOutcome } from "../workers/services/execution-records";
import type { RunState, RunStatus } from "./execution-run-store";

/** How ExecutionRun applies an outcome (`#finish`). */
export interface FinishOptions {
  /** A completed run's output as reported. */
  result?: unknown;
  /** Steps reported alongside the outcome. */
  steps?: Step[];
  /** The status the run must be in to take the outcome (default running). */
  from?: RunStatus;
}

/** A failure this API decides (no result from the executor): no traceback, no duration. */
function failure(error: string, errorType: "timeout" | "internal"): ExecutionOutcome {
  return { status: "FAILED", error, errorType, traceback: null, durationMs: null };
}

/**
 * The watchdog's outcome for an overdue run: a running one sent no result within its timeout plus the grace; a
 * paused one had no input within the pause's lifetime (its generator may be gone from the executor by then).
 */
export function watchdogOutcome(
  state: RunState,
  timeoutSeconds: number,
  limits: { graceSeconds: number; pauseTtlSeconds: number },
): ExecutionOutcome {
  if (state.status === "awaiting_input") {
    return failure(
      `The paused execution expired: no input within ${limits.pauseTtlSeconds} s (EXECUTION_PAUSE_TTL_SECONDS)`,
      "timeout",
    );
  }
  const { graceSeconds } = limits;
  return failure(
    `No result from the executor within ${timeoutSeconds + graceSeconds} s (timeout ${timeoutSeconds} s + ${graceSeconds} s grace); the executor may have crashed`,
    "timeout",
  );
}

/** A start whose execution row may have been written although the write failed: it ends so, never RUNNING. */
export const COULD_NOT_START = failure("The execution could not be started: recording it failed", "internal");

/** The state `outcome` gives the run (`result`: a completed run's output as reported). */
function stateWithOutcome(state: RunState, outcome: ExecutionOutcome, result: unknown): RunState {
  switch (outcome.status) {
    case "COMPLETED":
      return { ...state, status: "completed", result, durationMs: outcome.durationMs };
    case "AWAITING_INPUT":
      return {
        ...state,
        status: "awaiting_input",
        prompt: outcome.prompt,
        schema: outcome.schema,
        durationMs: null,
      };
    case "FAILED":
      return {
        ...state,
        status: "failed",
        error: outcome.error,
        errorType: outcome.errorType,
        durationMs: outcome.durationMs,
      };
  }
}

/** The state an ended (or paused) row says the run is in. */
function stateOfRow(state: RunState, row: Execution): RunState {
  if (row.status === "COMPLETED") {
    return { ...state, status: "completed", result: row.outputData ?? null, durationMs: row.durationMs };
  }
  if (row.status === "AWAITING_INPUT") {
    const schema = (row.inputSchema as JsonObject | null) ?? null;
    return { ...state, status: "awaiting_input", prompt: row.inputPrompt, schema, durationMs: null };
  }
  return {
    ...state,
    status: "failed",
    error: row.error,
    errorType: row.errorType,
    durationMs: row.durationMs,
  };
}

/**
 * Records `outcome` (with `steps` reported alongside it) for the run in `state`; returns the state the run takes:
 * the outcome's, or, when the row was not RUNNING (nor paused, for a failure), the row's. A row still RUNNING then
 * changed under the write (a resume's flip): this throws, and the caller's retry records it. No row at all (a
 * start that could not tell whether it wrote one) leaves the outcome to this object alone.
 */
export async function recordRunOutcome(
  db: Database,
  state: RunState,
  outcome: ExecutionOutcome,
  result: unknown,
  steps: Step[],
): Promise<RunState> {
  const { executionId } = state;
  if (await recordOutcome(db, executionId, outcome, steps)) return stateWithOutcome(state, outcome, result);
  const row = await findExecution(db, executionId);
  if (!row || row.status === "PENDING") return stateWithOutcome(state, outcome, result);
  if (row.status === "RUNNING") {
    throw new Error(`execution ${executionId}: the row changed while its outcome was written; not recorded`);
  }
  return stateOfRow(state, row);
}
