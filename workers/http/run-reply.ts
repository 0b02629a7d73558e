/**
 * @module The answer of a synchronous run, shared by the direct trigger (`/functions/{ns}/{name}/execute`) and
 * webhooks (sinas-spec §1.3, §7.1 step 6): 200 `{success: true, execution_id, result}`, the paused-generator
 * variant, or a FUNCTION_FAILED error (500) carrying the execution id and error type.
 */
import type { Context } from "hono";
import type { RunState } from "../../durable-objects/execution-run";
import { AppError } from "../lib/errors";
import type { AppEnv } from "./app-env";

/**
 * `Server-Timing` of a sync run: `run` is the function call as the runtime measured it, `dispatch` what
 * the platform added around it, as the ExecutionRun object observed (job sent -> result applied).
 */
function serverTiming(roundTripMs: number, durationMs: number | null): string {
  const run = durationMs ?? 0;
  return `dispatch;dur=${Math.max(0, roundTripMs - run).toFixed(1)}, run;dur=${run.toFixed(1)}`;
}

/**
 * The 200 body for `state` (null or still running: the wait timed out), or the failure thrown as
 * FUNCTION_FAILED. Sets `Server-Timing` when the run was timed.
 *
 * @example
 * const state = await waitForExecution(services, executionId, timeoutOf(services, fn));
 * return c.json(runReply(c, executionId, state), 200);
 */
export function runReply(c: Context<AppEnv>, executionId: string, state: RunState | null) {
  if (state?.roundTripMs != null)
    c.header("Server-Timing", serverTiming(state.roundTripMs, state.durationMs));
  if (state?.status === "completed") {
    return { success: true as const, execution_id: executionId, result: state.result };
  }
  if (state?.status === "awaiting_input") {
    return {
      success: true as const,
      execution_id: executionId,
      result: null,
      status: "awaiting_input",
      prompt: state.prompt,
      schema: state.schema,
    };
  }
  throw new AppError("FUNCTION_FAILED", `Function execution failed: ${state?.error ?? "no result"}`, {
    extra: { execution_id: executionId, error_type: state?.errorType ?? "timeout" },
  });
}
