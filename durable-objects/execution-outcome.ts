/**
 * @module The executor's result as the outcome an ExecutionRun records: its size and its output schema checked.
 */
import type { JsonObject, JsonSchema } from "../workers/db/schema";
import { type ResultEvent, resultSizeProblem } from "../workers/lib/executor-protocol";
import { describeSchemaProblems, validateAgainstSchema } from "../workers/lib/json-schema";
import type { ExecutionOutcome } from "../workers/services/execution-records";

/** Maps the executor's result to the recorded outcome, checking the output against the function's schema. */
export function outcomeOf(event: ResultEvent, outputSchema: JsonSchema): ExecutionOutcome {
  if (event.status === "awaiting_input") {
    const schema = event.schema && typeof event.schema === "object" ? (event.schema as JsonObject) : null;
    return { status: "AWAITING_INPUT", prompt: event.prompt ?? null, schema };
  }
  if (event.status === "failed") {
    return {
      status: "FAILED",
      error: event.error ?? "The function failed",
      errorType: event.error_type ?? "internal",
      traceback: event.traceback ?? null,
      durationMs: event.duration_ms ?? null,
    };
  }
  // Size first: a result too large to keep is not worth validating.
  const invalid = resultSizeProblem(event.result) ?? outputProblem(outputSchema, event.result ?? null);
  if (invalid) {
    return {
      status: "FAILED",
      error: invalid,
      errorType: "invalid_result",
      traceback: null,
      durationMs: event.duration_ms ?? null,
    };
  }
  return { status: "COMPLETED", output: event.result ?? null, durationMs: event.duration_ms ?? null };
}

function outputProblem(outputSchema: JsonSchema, result: unknown): string | null {
  const problems = validateAgainstSchema(outputSchema, result);
  return problems.length > 0 ? describeSchemaProblems(problems) : null;
}
