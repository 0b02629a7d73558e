/**
 * @module Calling a webhook (sinas-spec §1.3, §7.1, D-1, D-4, D-27): finds the active webhook with its owner
 * and function in one query, checks the caller (execute permission, or the webhook's secret when it needs no
 * auth), applies the per-webhook rate limit, and starts the run at most once per Idempotency-Key.
 */
import { and, eq, sql } from "drizzle-orm";
import type { RunState } from "../../durable-objects/execution-run";
import { accessScope } from "../auth/access";
import { permissions } from "../auth/catalogue";
import type { Scope } from "../auth/permissions";
import type { Principal } from "../auth/principal";
import type { Database } from "../db/client";
import { preparedOnce } from "../db/prepared";
import {
  chats,
  type Execution,
  functions,
  httpMethod,
  type JsonObject,
  type StoredFunction,
  type User,
  users,
  type Webhook,
  webhooks,
} from "../db/schema";
import { parseRateLimit, requireSecret } from "../env";
import { decryptText, sha256Hex } from "../lib/crypto";
import { AppError } from "../lib/errors";
import {
  claimIdempotencyKey,
  confirmIdempotencyKey,
  idempotencyKeyError,
  PENDING_CLAIM_TTL_SECONDS,
  releaseIdempotencyKey,
} from "../lib/idempotency";
import { enforceRateLimit } from "../lib/rate-limit";
import { verifyWebhookRequest } from "../lib/webhook-signature";
import { runKeyUsableSql } from "./api-keys";
import { type CallableRow, callableRowsSql } from "./callable-scope";
import { findExecution } from "./execution-records";
import { waitForExecution } from "./executions";
import type { Services } from "./services";

/** How long a repeat waits for the first request with its Idempotency-Key to record the execution. */
const FIRST_REQUEST_WAIT_MS = 10_000;

export interface WebhookTarget {
  webhook: Webhook;
  owner: Pick<User, "id" | "email" | "isActive">;
  /** The active function the webhook names, if it still exists and is still its owner's. */
  fn: StoredFunction | null;
  /** What the function may call when run as the user the webhook runs as (see `findWebhookTarget`). */
  callable: CallableRow[];
  /** False when the API key the webhook is saved with is revoked or expired (`runKeyUsableSql`). */
  runKeyUsable: boolean;
}

const webhookTargetStatement = preparedOnce((db) => {
  const callerId = sql.placeholder("callerId");
  const runAs = sql`(case when ${webhooks.requiresAuth} then ${callerId}::uuid else ${webhooks.userId} end)`;
  const namespaces = sql`(jsonb_build_array(${functions.namespace}) || ${functions.enabledNamespaces}::jsonb)`;
  return db
    .select({
      webhook: webhooks,
      owner: { id: users.id, email: users.email, isActive: users.isActive },
      fn: functions,
      callable: callableRowsSql(namespaces, runAs),
      runKeyUsable: runKeyUsableSql(webhooks.apiKeyId),
    })
    .from(webhooks)
    .innerJoin(users, eq(users.id, webhooks.userId))
    .leftJoin(
      functions,
      and(
        eq(functions.namespace, webhooks.functionNamespace),
        eq(functions.name, webhooks.functionName),
        eq(functions.isActive, true),
        // Still the owner's (checked at create and update): a deleted function's name is free for anyone.
        eq(functions.userId, webhooks.userId),
      ),
    )
    .where(
      and(
        eq(webhooks.path, sql.placeholder("path")),
        eq(webhooks.httpMethod, sql.placeholder("method")),
        eq(webhooks.isActive, true),
      ),
    )
    .limit(1)
    .prepare("webhook_target");
});

/**
 * The active webhook at exactly `path` and `method`, with its owner, its function and what that function may
 * call: one prepared statement. The run's user is the webhook's owner, or `callerId` (the caller whose
 * credentials the request carries, checked already) when the webhook requires auth.
 */
export async function findWebhookTarget(
  db: Database,
  path: string,
  method: string,
  callerId: string | null,
): Promise<WebhookTarget> {
  // Made only when needed: an error captures a stack trace, a visible cost on every call.
  const notFound = () =>
    new AppError("NOT_FOUND", `No active webhook found for path '${path}' and method '${method}'`);
  const verb = httpMethod.enumValues.find((value) => value === method);
  if (!verb) throw notFound();
  const [row] = await webhookTargetStatement(db).execute({ path, method: verb, callerId });
  if (!row) throw notFound();
  return row;
}

/** The scope under which `principal` may call the webhook (§3.6: against the webhook's owner and group). */
export function webhookCallScope(principal: Principal, webhook: Webhook): Scope | null {
  return accessScope(
    principal,
    (scope) => permissions.functionExecute(webhook.functionNamespace, webhook.functionName, scope),
    { userId: webhook.userId, groupId: webhook.groupId },
  );
}

/** Throws 401 unless the request carries the webhook's secret or a valid signature (when it has one). */
export async function verifyWebhookSecret(
  services: Services,
  webhook: Webhook,
  request: { header(name: string): string | undefined; body: Uint8Array },
): Promise<void> {
  if (webhook.verification === "none" || !webhook.secretCiphertext) return;
  const secret = await decryptText(
    webhook.secretCiphertext,
    requireSecret(services.config, "ENCRYPTION_KEY"),
  );
  const problem = await verifyWebhookRequest(
    webhook.verification,
    secret,
    request,
    Math.floor(Date.now() / 1000),
  );
  if (problem) throw new AppError("UNAUTHORIZED", problem);
}

/** Counts the call against the webhook's own limit, or WEBHOOK_RATE_LIMIT; 429 beyond it. */
export async function enforceWebhookRateLimit(services: Services, webhook: Webhook): Promise<void> {
  const setting =
    (webhook.rateLimit && parseRateLimit(webhook.rateLimit)) || services.config.WEBHOOK_RATE_LIMIT;
  await enforceRateLimit(services.redis(), "webhook", setting, webhook.id);
}

/** `X-Chat-Id` (§7.1 step 5): a chat of the run-as user, stored as the execution's chat. */
export async function chatOfHeader(
  db: Database,
  value: string | undefined,
  userId: string,
): Promise<string | null> {
  if (!value) return null;
  const invalid = new AppError(
    "VALIDATION_FAILED",
    "header.x-chat-id: must be the UUID of one of your chats",
    {
      issues: [
        { loc: ["header", "x-chat-id"], msg: "must be the UUID of one of your chats", type: "chat_id" },
      ],
    },
  );
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)) throw invalid;
  const [chat] = await db
    .select({ id: chats.id })
    .from(chats)
    .where(and(eq(chats.id, value), eq(chats.userId, userId)))
    .limit(1);
  if (!chat) throw invalid;
  return chat.id;
}

/**
 * What makes two webhook calls the same request for their Idempotency-Key: method, path, query (but `async`,
 * which only picks how the answer comes) and body. Headers are left out: proxies and clients vary them.
 */
async function requestFingerprint(input: JsonObject): Promise<string> {
  const { async: _mode, ...query } = (input.query ?? {}) as JsonObject;
  return sha256Hex(JSON.stringify([input.method, input.path, query, input.body ?? null]));
}

/**
 * Starts the attempt unless `key` was claimed before (within 24 h): then returns the first request's execution
 * id with `repeat: true`, and nothing runs. The key reused for a different request (another body, query...)
 * is a 422 naming the header, and nothing runs. `start` starts (or records as FAILED: a rejected input, a
 * function gone) the execution with the id it is given. A start that fails before any execution was
 * recorded gives the key up again, so a retry runs; a recorded failure (FUNCTION_FAILED) keeps it, so
 * repeats get that failure.
 */
export async function startExecutionOnce(
  services: Services,
  key: string,
  input: JsonObject,
  start: (executionId: string) => Promise<unknown>,
): Promise<{ executionId: string; repeat: boolean }> {
  const executionId = crypto.randomUUID();
  const redis = services.redis();
  const fingerprint = await requestFingerprint(input);
  // Claimed briefly, then for 24 h once the execution is recorded (see PENDING_CLAIM_TTL_SECONDS).
  const claim = await claimIdempotencyKey(redis, key, executionId, {
    fingerprint,
    ttlSeconds: PENDING_CLAIM_TTL_SECONDS,
  });
  if (claim.kind === "repeat") return { executionId: claim.executionId, repeat: true };
  if (claim.kind === "mismatch") {
    const msg = "was already used within 24 h for a different request (method, path, query or body)";
    throw idempotencyKeyError(msg, "idempotency_key_reused");
  }
  try {
    await start(executionId);
  } catch (error) {
    if (!(error instanceof AppError && error.code === "FUNCTION_FAILED")) {
      await releaseIdempotencyKey(redis, key, executionId, fingerprint).catch(() => undefined);
    } else {
      confirmAfterResponse(services, key); // the failed attempt is recorded: repeats get that failure
    }
    throw error;
  }
  confirmAfterResponse(services, key);
  return { executionId, repeat: false };
}

/**
 * Keeps the claimed key for 24 h, after the response: the answer does not wait for it, and a Redis failure
 * only leaves the key to lapse after its pending minute (a retry after that would run again).
 */
function confirmAfterResponse(services: Services, key: string): void {
  void services.runAfterResponse(confirmIdempotencyKey(services.redis(), key));
}

/** A finished (or paused) execution row as the run state a sync answer is made of. */
function runStateOf(execution: Execution): RunState {
  const status =
    execution.status === "COMPLETED"
      ? "completed"
      : execution.status === "AWAITING_INPUT"
        ? "awaiting_input"
        : "failed";
  return {
    executionId: execution.executionId,
    status,
    dispatchedAt: null,
    roundTripMs: null,
    durationMs: execution.durationMs,
    result: execution.outputData ?? null,
    error: execution.error,
    errorType: execution.errorType,
    prompt: execution.inputPrompt,
    schema: (execution.inputSchema as JsonObject | null) ?? null,
  };
}

/** A moment before the next look, or 409 past `deadline`: the first request with the key is slow to start. */
async function pauseUntil(deadline: number): Promise<void> {
  if (Date.now() > deadline) {
    throw new AppError(
      "CONFLICT",
      "The first request with this Idempotency-Key has not started its execution yet; retry later",
    );
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
}

/** The execution the first request with an Idempotency-Key records, once it is there (409 past `deadline`). */
async function firstRequestsExecution(
  services: Services,
  executionId: string,
  deadline: number,
): Promise<Execution> {
  for (;;) {
    const execution = await findExecution(services.db(), executionId);
    if (execution) return execution;
    await pauseUntil(deadline);
  }
}

/**
 * An async repeat's answer: the first request's execution id once that request recorded it. Answered at once,
 * a repeat could name an execution that never comes to be (the first request failing before recording it).
 */
export async function awaitRecordedExecution(services: Services, executionId: string): Promise<void> {
  await firstRequestsExecution(services, executionId, Date.now() + FIRST_REQUEST_WAIT_MS);
}

/**
 * The outcome of an execution another request started (an idempotent repeat): read from its row when it is
 * over, else awaited like a first call. The first request may not have recorded it yet: wait for that a while.
 */
export async function awaitStartedExecution(
  services: Services,
  executionId: string,
  timeoutSeconds: number,
): Promise<RunState | null> {
  const deadline = Date.now() + FIRST_REQUEST_WAIT_MS;
  for (;;) {
    const execution = await firstRequestsExecution(services, executionId, deadline);
    if (execution.status !== "RUNNING") return runStateOf(execution);
    // Null while the run object is not started yet (a rejected input is recorded without one).
    const state = await waitForExecution(services, executionId, timeoutSeconds);
    if (state) return state;
    await pauseUntil(deadline);
  }
}
