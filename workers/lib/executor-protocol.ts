/**
 * @module Messages between the API and the executor (executor-node/PROTOCOL.md), as zod schemas shared by
 * both sides: the Worker builds jobs and parses callbacks, the executor parses jobs and builds callbacks.
 */
import { z } from "zod";

export const JOB_ISSUER = "sinas-api";
export const EXECUTOR_AUDIENCE = "sinas-executor";
export const CALLBACK_ISSUER = "sinas-executor";
export const API_AUDIENCE = "sinas-api";
/** Signed requests live this long; receivers remember their `jti` for as long. */
export const SIGNED_REQUEST_TTL_SECONDS = 60;

/**
 * How long a callback is retried when applying it fails (PROTOCOL.md §3): by the executor for a post, by the
 * API for one that came in a held answer.
 */
export const CALLBACK_RETRY_MS = 30_000;

/** The wait before retry number `attempt` (from 0) of a callback: 100 ms, doubling, at most 5 s. */
export function callbackRetryDelayMs(attempt: number): number {
  return Math.min(5_000, 100 * 2 ** attempt);
}

export const ERROR_TYPES = [
  "timeout",
  "memory",
  "killed",
  "exception",
  "not_found",
  "invalid_result",
  "cancelled",
  "internal",
  /** Set by the API, not the executor: the input broke the function's input_schema, nothing ran. */
  "invalid_input",
] as const;
export type ErrorType = (typeof ERROR_TYPES)[number];

/**
 * The largest result a run may return, as UTF-8 JSON. A larger one fails the run (`invalid_result`) in the
 * executor and again in the ExecutionRun object: its callback would be refused (4 MiB at most, with its other
 * events) and dropped, and the run end by the watchdog instead. Results over 64 KiB live in Postgres only, not
 * in the object's 2 MB rows (execution-run-store.ts).
 */
export const MAX_RESULT_BYTES = 3 * 1024 * 1024;

/** Why `result` may not be kept (too large), or null. */
export function resultSizeProblem(result: unknown): string | null {
  const json = JSON.stringify(result ?? null);
  // A UTF-16 unit is at most 3 UTF-8 bytes: only a text that may be over the limit is encoded to measure it.
  if (json.length * 3 <= MAX_RESULT_BYTES) return null;
  const bytes = new TextEncoder().encode(json).byteLength;
  if (bytes <= MAX_RESULT_BYTES) return null;
  return `The result is ${bytes} bytes of JSON; at most ${MAX_RESULT_BYTES} are kept (return less, or store large data elsewhere, e.g. in state)`;
}

/**
 * A pip spec the executor installs (PROTOCOL.md "Packages"), once its whitespace is removed: a PEP 508 name,
 * optional extras, optional comma-separated version clauses; nothing else (no URLs, paths, markers or pip
 * options: pip runs on the executor's host). The API refuses other specs when a function is saved, since
 * one refused spec fails every run whose callable scope includes that function.
 */
export const REQUIREMENT_SPEC =
  /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?:\[[A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*\])?(?:(?:===|==|!=|~=|<=|>=|<|>)[A-Za-z0-9.*+!_-]+(?:,(?:===|==|!=|~=|<=|>=|<|>)[A-Za-z0-9.*+!_-]+)*)?$/;

/** What REQUIREMENT_SPEC accepts, for error messages. */
export const REQUIREMENT_SPEC_DESCRIPTION =
  "must be a package name with optional [extras] and version clauses, e.g. requests, requests[socks]>=2.0,<3 (URLs, paths, environment markers and pip options are not accepted)";

/** `spec` as the executor installs it: without whitespace (`a >= 1` is `a>=1`). */
export function compactRequirement(spec: string): string {
  return spec.replace(/\s+/g, "");
}

export function isInstallableRequirement(spec: string): boolean {
  return REQUIREMENT_SPEC.test(compactRequirement(spec));
}

const JsonValue = z.unknown();

export const CallableFunctionSchema = z.object({ code: z.string(), code_hash: z.string() });
/** namespace -> name -> code: everything the function may call as `namespace.name(...)`. */
export const CallableScopeSchema = z.record(z.string(), z.record(z.string(), CallableFunctionSchema));
export type CallableScope = z.infer<typeof CallableScopeSchema>;

export const ExecutionContextSchema = z.object({
  user_id: z.string(),
  user_email: z.string(),
  access_token: z.string(),
  execution_id: z.string(),
  trigger_type: z.string(),
  chat_id: z.string().nullable(),
});

export const JobSchema = z.object({
  execution_id: z.string().uuid(),
  kind: z.enum(["run", "resume"]),
  user: z.object({ id: z.string(), email: z.string() }),
  function: z.object({
    namespace: z.string(),
    name: z.string(),
    code: z.string(),
    code_hash: z.string(),
    timeout_seconds: z.number().positive(),
    shared_pool: z.boolean(),
  }),
  callable: CallableScopeSchema,
  /**
   * pip specs the sandbox must provide (approved packages of the function and its callable scope, admin-locked
   * versions as `name==version`), sorted and deduplicated; the executor installs each distinct set once.
   */
  requirements: z.array(z.string().min(1).max(500)).max(500).default([]),
  input: JsonValue,
  context: ExecutionContextSchema,
  callback_url: z.string().url(),
  /**
   * Hold the answer (200, streamed) up to this long: a job that ends in time has its final callback in the
   * answer instead of a post to `callback_url` (PROTOCOL.md §2, "Results in the answer"). 0 or absent: 202 at once.
   */
  reply_within_ms: z.number().int().min(0).max(60_000).optional(),
  /**
   * The `seq` of the job's first callback (default 1). A resume starts above every seq of the job before it, so
   * that job's late or retried posts can never pass for the resume's (PROTOCOL.md §3).
   */
  first_seq: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
});
export type Job = z.infer<typeof JobSchema>;

export const StepSchema = z.object({
  id: z.string(),
  parent_id: z.string().nullable(),
  namespace: z.string(),
  name: z.string(),
  status: z.enum(["RUNNING", "COMPLETED", "FAILED"]),
  input: JsonValue,
  output: JsonValue.optional(),
  error: z.string().nullish(),
  traceback: z.string().nullish(),
  started_at: z.string(),
  completed_at: z.string().nullish(),
  duration_ms: z.number().nullish(),
});
export type Step = z.infer<typeof StepSchema>;

export const ResultEventSchema = z.object({
  type: z.literal("result"),
  status: z.enum(["completed", "failed", "awaiting_input"]),
  result: JsonValue.optional(),
  error: z.string().nullish(),
  error_type: z.enum(ERROR_TYPES).nullish(),
  traceback: z.string().nullish(),
  prompt: z.string().nullish(),
  schema: JsonValue.optional(),
  duration_ms: z.number().nullish(),
});
export type ResultEvent = z.infer<typeof ResultEventSchema>;

export const ExecutorEventSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("started"),
    at: z.string(),
    sandbox: z.string(),
    /** Where this executor itself answers (EXECUTOR_PUBLIC_URL): the run's resume and cancel go there. */
    executor_url: z.url({ protocol: /^https?$/ }).optional(),
  }),
  z.object({
    type: z.literal("log"),
    stream: z.enum(["stdout", "stderr"]),
    text: z.string(),
    at: z.string(),
  }),
  z.object({ type: z.literal("step"), step: StepSchema }),
  ResultEventSchema,
]);
export type ExecutorEvent = z.infer<typeof ExecutorEventSchema>;

export const CallbackBodySchema = z.object({
  execution_id: z.string().uuid(),
  seq: z.number().int().positive(),
  events: z.array(ExecutorEventSchema).max(1000),
});
export type CallbackBody = z.infer<typeof CallbackBodySchema>;

/** A callback carried in a job's answer: `body` is the exact text `token` signs, as if it had been posted. */
export const SignedCallbackSchema = z.object({ token: z.string(), body: z.string() });
export type SignedCallback = z.infer<typeof SignedCallbackSchema>;

/** The 200 answer to a job with `reply_within_ms`: its last callback when the job ended in time, else null. */
export const JobReplySchema = z.object({
  accepted: z.literal(true),
  execution_id: z.string().uuid(),
  callback: SignedCallbackSchema.nullable(),
});
export type JobReply = z.infer<typeof JobReplySchema>;

export const PoolsReportSchema = z.object({
  driver: z.enum(["docker", "bwrap", "process"]),
  user_pools: z.array(
    z.object({
      user_id: z.string(),
      sandbox_id: z.string(),
      status: z.enum(["idle", "busy", "starting"]),
      last_used: z.string(),
      idle_seconds: z.number(),
    }),
  ),
  shared_pool: z.array(
    z.object({
      id: z.string(),
      container_name: z.string(),
      status: z.enum(["idle", "busy", "starting"]),
      created_at: z.string(),
      executions: z.number().int(),
    }),
  ),
});
export type PoolsReport = z.infer<typeof PoolsReportSchema>;
