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
} from "../lib/executor-protocol";
import { SignatureError, verifySignedRequest } from "../lib/signed-request";
import { callExecutor } from "./executor-client";

export function callbackPath(executionId: string): string {
  return `/internal/executions/${executionId}/events`;
}

export function callbackUrl(config: AppConfig, executionId: string): string {
  return new URL(callbackPath(executionId), requireSecret(config, "API_PUBLIC_URL")).toString();
}

/** Posts a job; null when accepted, else why not (the execution then fails at once). */
export async function postJob(config: AppConfig, job: Job): Promise<string | null> {
  try {
    const answer = await callExecutor(config, {
      method: "POST",
      path: "/v1/jobs",
      body: job,
      subject: job.execution_id,
    });
    if (answer.status === 202) return null;
    const detail = (answer.body as { message?: string } | null)?.message ?? JSON.stringify(answer.body);
    return `The executor refused the job (${answer.status}): ${detail}`;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** Best effort: the watchdog and stop ask the executor to kill a job. */
export async function cancelJob(config: AppConfig, executionId: string): Promise<void> {
  await callExecutor(config, {
    method: "POST",
    path: `/v1/jobs/${executionId}/cancel`,
    body: {},
    subject: executionId,
    timeoutMs: 3_000,
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
