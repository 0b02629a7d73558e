/**
 * @module Sending jobs to the executor and checking its callbacks (executor-node/PROTOCOL.md §1-3).
 */
import { type AppConfig, requireSecret } from "../env";
import {
  API_AUDIENCE,
  CALLBACK_ISSUER,
  type CallbackBody,
  CallbackBodySchema,
  type Job,
  JobReplySchema,
  type SignedCallback,
} from "../lib/executor-protocol";
import { SignatureError, verifySignedRequest } from "../lib/signed-request";
import { callExecutor, readExecutorAnswer, sendToExecutor } from "./executor-client";

export function callbackPath(executionId: string): string {
  return `/internal/executions/${executionId}/events`;
}

export function callbackUrl(config: AppConfig, executionId: string): string {
  return new URL(callbackPath(executionId), requireSecret(config, "API_PUBLIC_URL")).toString();
}

/**
 * What became of a posted job. `reply` (when the executor holds its answer, PROTOCOL.md §2) settles with the
 * job's last callback if the job ended within `EXECUTOR_REPLY_WITHIN_MS`, else with null (callbacks follow).
 */
export type JobPosting =
  | { accepted: false; problem: string }
  | { accepted: true; reply: Promise<SignedCallback | null> | null };

/**
 * Posts a job; resolves once the executor accepted or refused it (a refused execution fails at once).
 * `holdAnswer`: ask the executor to hold its answer for the result (EXECUTOR_REPLY_WITHIN_MS). `executorUrl`:
 * the executor holding the run (a resume), else EXECUTOR_URL.
 */
export async function postJob(
  config: AppConfig,
  job: Job,
  options: { holdAnswer: boolean; executorUrl?: string },
): Promise<JobPosting> {
  const replyWithinMs = options.holdAnswer ? config.EXECUTOR_REPLY_WITHIN_MS : 0;
  try {
    const response = await sendToExecutor(config, {
      method: "POST",
      path: "/v1/jobs",
      body: replyWithinMs > 0 ? { ...job, reply_within_ms: replyWithinMs } : job,
      subject: job.execution_id,
      timeoutMs: 10_000 + replyWithinMs,
      executorUrl: options.executorUrl,
    });
    if (response.status === 200) {
      const reply = readJobReply(response);
      reply.catch(() => {}); // handled by whoever awaits it; a failure meanwhile is no unhandled rejection
      return { accepted: true, reply };
    }
    const answer = await readExecutorAnswer(response);
    if (answer.status === 202) return { accepted: true, reply: null };
    const detail = (answer.body as { message?: string } | null)?.message ?? JSON.stringify(answer.body);
    return { accepted: false, problem: `The executor refused the job (${answer.status}): ${detail}` };
  } catch (error) {
    return { accepted: false, problem: error instanceof Error ? error.message : String(error) };
  }
}

async function readJobReply(response: Response): Promise<SignedCallback | null> {
  const parsed = JobReplySchema.safeParse(JSON.parse(await response.text()));
  if (!parsed.success) throw new Error("the executor's answer to a job does not match the protocol");
  return parsed.data.callback;
}

/** Best effort: the watchdog asks the executor running the job (`executorUrl`, else EXECUTOR_URL) to kill it. */
export async function cancelJob(config: AppConfig, executionId: string, executorUrl?: string): Promise<void> {
  await callExecutor(config, {
    method: "POST",
    path: `/v1/jobs/${executionId}/cancel`,
    body: {},
    subject: executionId,
    timeoutMs: 3_000,
    executorUrl,
  }).catch(() => undefined);
}

/** Verifies a callback's signature and body; throws SignatureError (-> 401) or returns the parsed body. */
export async function verifyCallback(
  config: AppConfig,
  input: { token: string | null; executionId: string; path: string; body: string },
): Promise<CallbackBody> {
  if (!input.token) throw new SignatureError("missing bearer token");
  const claims = await verifySignedRequest(
    requireSecret(config, "EXECUTOR_CALLBACK_PUBLIC_KEY"),
    input.token,
    {
      issuer: CALLBACK_ISSUER,
      audience: API_AUDIENCE,
      method: "POST",
      path: input.path,
      body: input.body,
    },
  );
  if (claims.sub !== input.executionId) throw new SignatureError("token was signed for another execution");
  const parsed = CallbackBodySchema.safeParse(JSON.parse(input.body));
  if (!parsed.success || parsed.data.execution_id !== input.executionId) {
    throw new SignatureError("callback body does not match the protocol");
  }
  return parsed.data;
}
