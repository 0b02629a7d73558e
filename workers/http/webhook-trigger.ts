/**
 * @module `GET|POST|PUT|PATCH|DELETE /webhooks/{path}` (sinas-spec §1.3, §7.1): runs the webhook's function
 * with the request as its input. The path may hold `/`, so the route is Hono's `{.+}` pattern, documented in
 * OpenAPI as the plain `{path}`.
 *
 * Order of checks: body size (413), the webhook (404), the caller (401/403; the secret or signature of a
 * webhook without auth), the rate limit (429), a body nested too deeply (422, webhook-envelope.ts), then the
 * run. Sync answers as the direct trigger does; `?async=true` or an async webhook answers 202
 * `{execution_id}`. An `Idempotency-Key` repeat runs nothing.
 */
import { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { permissions } from "../auth/catalogue";
import type { User } from "../db/schema";
import { httpMethod } from "../db/schema";
import { AppError } from "../lib/errors";
import { idempotencyKeyError } from "../lib/idempotency";
import { MAX_JSON_DEPTH } from "../lib/json-depth";
import { readBounded } from "../lib/read-bounded";
import { runKeyRevokedError } from "../services/api-keys";
import { recordFailedAttempt, startExecution, timeoutOf, waitForExecution } from "../services/executions";
import { webhookInput } from "../services/webhook-envelope";
import {
  awaitRecordedExecution,
  awaitStartedExecution,
  chatOfHeader,
  enforceWebhookRateLimit,
  findWebhookTarget,
  startExecutionOnce,
  verifyWebhookSecret,
  type WebhookTarget,
  webhookCallScope,
} from "../services/webhook-trigger";
import type { AppEnv } from "./app-env";
import { authenticateCaller, type CallerCheck, callerIdOf, checkCaller, recordPermission } from "./auth";
import { readBodiesOf } from "./request-log";
import { createRouter, errorResponse } from "./router";
import { runReply } from "./run-reply";
import { jsonResponse } from "./schemas";

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** The raw body, refused with 413 beyond `maxBytes` (by its declared length, or while reading). */
async function readBody(request: Request, maxBytes: number): Promise<Uint8Array> {
  const tooLarge = () =>
    new AppError("PAYLOAD_TOO_LARGE", `The request body exceeds the limit of ${maxBytes} bytes`);
  if (Number(request.headers.get("content-length") ?? 0) > maxBytes) throw tooLarge();
  if (!request.body) return new Uint8Array();
  const bytes = await readBounded(request.body, maxBytes);
  if (!bytes) throw tooLarge();
  return bytes;
}

/**
 * Who the function runs as (§6.5): the authorized caller (with the API key they called with, if any), or the
 * owner of a webhook without auth (D-1).
 */
async function runAsUser(
  c: Context<AppEnv>,
  target: WebhookTarget,
  caller: Promise<CallerCheck>,
  body: Uint8Array,
): Promise<{ user: Pick<User, "id" | "email">; apiKeyId: string | null }> {
  const { webhook, owner } = target;
  const forbidden = () => new AppError("FORBIDDEN", `Not authorized to execute webhook '${webhook.path}'`);
  const services = c.get("services");
  if (webhook.requiresAuth) {
    const principal = await authenticateCaller(c, caller);
    const scope = webhookCallScope(principal, webhook);
    recordPermission(
      c,
      permissions.functionExecute(webhook.functionNamespace, webhook.functionName, scope ?? "own"),
      scope !== null,
    );
    if (!scope) throw forbidden();
    await verifyWebhookSecret(services, webhook, { header: (name) => c.req.header(name), body });
    return { user: principal.user, apiKeyId: principal.apiKeyId };
  }
  recordPermission(c, permissions.webhookPublic(webhook.path));
  await verifyWebhookSecret(services, webhook, { header: (name) => c.req.header(name), body });
  if (!owner.isActive) throw forbidden();
  // The owner's key the webhook was saved with: its runs act as that key, not as the owner's login.
  if (!target.runKeyUsable) throw runKeyRevokedError("webhook");
  return { user: owner, apiKeyId: webhook.apiKeyId };
}

function idempotencyKeyOf(c: Context<AppEnv>): string | null {
  const key = c.req.header("idempotency-key");
  if (key === undefined) return null;
  if (!IDEMPOTENCY_KEY.test(key)) {
    const msg = "must be 1 to 255 printable ASCII characters without spaces";
    throw idempotencyKeyError(msg, "idempotency_key");
  }
  return key;
}

async function startNow(
  start: (executionId: string) => Promise<void>,
): Promise<{ executionId: string; repeat: false }> {
  const executionId = crypto.randomUUID();
  await start(executionId);
  return { executionId, repeat: false };
}

async function invokeWebhook(c: Context<AppEnv>): Promise<Response> {
  const services = c.get("services");
  const path = c.req.param("path") ?? "";
  const method = c.req.method.toUpperCase();
  const body = await readBody(c.req.raw, services.config.WEBHOOK_MAX_BODY_BYTES);
  // Left where Hono keeps a read body, so the request log finds it without copying the request.
  readBodiesOf(c).arrayBuffer = Promise.resolve(body.buffer as ArrayBuffer);
  // Credentials are checked before the webhook is read, so that its query also reads what the function may
  // call as the caller; whether they were needed (and valid) is decided once the webhook is known.
  const caller = checkCaller(c);
  const target = await findWebhookTarget(services.statementDb(), path, method, callerIdOf(await caller));
  const { webhook, fn } = target;
  const { user: runAs, apiKeyId } = await runAsUser(c, target, caller, body);
  await enforceWebhookRateLimit(services, webhook);
  const key = idempotencyKeyOf(c);
  const attempt = {
    runAs,
    apiKeyId,
    input: webhookInput(
      { method, url: c.req.url, path, headers: c.req.raw.headers, body },
      webhook.defaultValues,
    ),
    triggerType: "WEBHOOK" as const,
    triggerId: webhook.id,
    chatId: await chatOfHeader(services.statementDb(), c.req.header("x-chat-id"), runAs.id),
  };
  // Starts the run, or records the attempt FAILED when the function is gone (every attempt is an execution).
  const start = async (executionId: string): Promise<void> => {
    if (fn) {
      const request = { ...attempt, executionId, fn, callable: target.callable };
      await startExecution(services, { ...request, invalidInput: "record" });
      return;
    }
    const { functionNamespace, functionName } = webhook;
    const missing = `Function '${functionNamespace}/${functionName}' not found or inactive`;
    const record = { ...attempt, executionId, functionNamespace, functionName };
    throw await recordFailedAttempt(services, record, missing, "not_found");
  };
  const runAsync = c.req.query("async") === "true" || webhook.async;
  const { executionId, repeat } = key
    ? await startExecutionOnce(services, `webhook:${webhook.id}:${runAs.id}:${key}`, attempt.input, start)
    : await startNow(start);
  if (repeat) c.header("Idempotent-Replayed", "true");
  if (runAsync) {
    if (repeat) await awaitRecordedExecution(services, executionId);
    return c.json({ execution_id: executionId }, 202);
  }
  const timeout = fn ? timeoutOf(services, fn) : services.config.FUNCTION_TIMEOUT;
  const state = repeat
    ? await awaitStartedExecution(services, executionId, timeout)
    : await waitForExecution(services, executionId, timeout);
  return c.json(runReply(c, executionId, state), 200);
}

const METHODS = httpMethod.enumValues;

export const webhookTriggerRouter = createRouter();
webhookTriggerRouter.on([...METHODS], "/webhooks/:path{.+}", invokeWebhook);

for (const method of METHODS) {
  webhookTriggerRouter.openAPIRegistry.registerPath({
    method: method.toLowerCase() as Lowercase<typeof method>,
    path: "/webhooks/{path}",
    tags: ["Webhooks"],
    summary: `Call the webhook at {path} whose method is ${method} (the path may contain /)`,
    description:
      "Runs the webhook's function with the request as input (`body`, `headers` without credentials, `query`, `path_params`, `method`, `url`, `path`, over the webhook's `default_values`). Needs a bearer token or API key with `sinas.functions.{ns}.{name}.execute` unless the webhook has `requires_auth: false` (then it runs as its owner; a webhook with a secret wants `X-Webhook-Secret` or `X-Signature-256` + `X-Signature-Timestamp`). `Idempotency-Key`: a repeat within 24 h answers with the first execution and runs nothing. `X-Chat-Id`: one of your chats, stored on the execution.",
    security: [{ bearerAuth: [] }, {}],
    request: {
      params: z.object({ path: z.string().openapi({ example: "tools/echo" }) }),
      query: z.object({ async: z.enum(["true", "false"]).optional() }),
    },
    responses: {
      200: jsonResponse(
        z.object({ success: z.literal(true), execution_id: z.string(), result: z.unknown() }),
        "The function's result",
      ),
      202: jsonResponse(z.object({ execution_id: z.string() }), "Started (async)"),
      401: errorResponse("No or bad credentials, secret or signature"),
      403: errorResponse("Not allowed to execute the function"),
      404: errorResponse("No active webhook with this path and method"),
      413: errorResponse("Body larger than WEBHOOK_MAX_BODY_BYTES"),
      422: errorResponse(
        `A malformed Idempotency-Key, or a body nesting arrays and objects over ${MAX_JSON_DEPTH} levels deep`,
      ),
      429: errorResponse("The webhook's rate limit was reached (see Retry-After)"),
      500: errorResponse("Function execution failed: <error> (with execution_id)"),
    },
  });
}
