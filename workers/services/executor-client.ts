/**
 * @module Signed calls from the API to the executor (executor-node/PROTOCOL.md §2).
 */
import { type AppConfig, requireSecret } from "../env";
import { AppError } from "../lib/errors";
import { EXECUTOR_AUDIENCE, JOB_ISSUER } from "../lib/executor-protocol";
import { signRequest } from "../lib/signed-request";

export interface ExecutorAnswer {
  status: number;
  body: unknown;
}

export interface ExecutorRequest {
  method: "GET" | "POST" | "DELETE";
  path: string;
  body?: unknown;
  subject?: string;
  /** For the whole exchange, the answer's body included. */
  timeoutMs?: number;
  /** One executor's own URL (a started event's `executor_url`) instead of EXECUTOR_URL. */
  executorUrl?: string;
}

/** Sends a signed request to the executor; its answer unread. 503 when it is not configured or does not answer. */
export async function sendToExecutor(config: AppConfig, request: ExecutorRequest): Promise<Response> {
  if (!config.EXECUTOR_URL)
    throw new AppError("UNAVAILABLE", "The function executor is not configured (EXECUTOR_URL)");
  const body = request.body === undefined ? "" : JSON.stringify(request.body);
  const token = await signRequest(requireSecret(config, "EXECUTOR_JOB_PRIVATE_KEY"), {
    issuer: JOB_ISSUER,
    audience: EXECUTOR_AUDIENCE,
    method: request.method,
    path: request.path,
    body,
    subject: request.subject ?? "-",
  });
  try {
    return await fetch(new URL(request.path, request.executorUrl ?? config.EXECUTOR_URL), {
      method: request.method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: request.method === "GET" ? undefined : body,
      signal: AbortSignal.timeout(request.timeoutMs ?? 10_000),
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new AppError("UNAVAILABLE", `The function executor did not answer: ${reason}`, { cause: error });
  }
}

/** An answer's body as JSON, or as its text when it is not JSON. */
export async function readExecutorAnswer(response: Response): Promise<ExecutorAnswer> {
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // Keep the text: it is part of the error message of whoever reads it.
  }
  return { status: response.status, body: parsed };
}

/** Calls the executor and reads its answer; 503 when it is not configured or does not answer. */
export async function callExecutor(config: AppConfig, request: ExecutorRequest): Promise<ExecutorAnswer> {
  return readExecutorAnswer(await sendToExecutor(config, request));
}

/** Parses Python source on the executor (the Worker cannot run Python). Null when valid, else the error. */
export async function checkPythonSyntax(config: AppConfig, code: string): Promise<string | null> {
  const answer = await callExecutor(config, { method: "POST", path: "/v1/syntax-check", body: { code } });
  const body = answer.body as { ok?: boolean; error?: string } | null;
  if (answer.status !== 200 || typeof body?.ok !== "boolean") {
    throw new AppError(
      "UNAVAILABLE",
      `The function executor could not check the code (status ${answer.status})`,
    );
  }
  return body.ok ? null : (body.error ?? "invalid syntax");
}
