/**
 * @module Webhook management (sinas-spec §1.10, §7.1, D-5, D-8): CRUD of the webhooks that trigger functions,
 * plus SINAS Edge's per-webhook async flag, rate limit and secret (`verification`), whose secret is shown
 * once, at creation or rotation, and stored encrypted.
 */
import { and, asc, eq } from "drizzle-orm";
import { accessScope, can } from "../auth/access";
import { permissions } from "../auth/catalogue";
import { type Principal, triggerApiKeyId } from "../auth/principal";
import type { Database } from "../db/client";
import { isUniqueViolation } from "../db/errors";
import {
  functions,
  type HttpMethod,
  type JsonObject,
  type Webhook,
  type WebhookVerification,
  webhooks,
} from "../db/schema";
import { requireSecret } from "../env";
import { encryptText, randomToken } from "../lib/crypto";
import { AppError } from "../lib/errors";
import type { Services } from "./services";

export interface WebhookFields {
  path: string;
  function_namespace: string;
  function_name: string;
  http_method: HttpMethod;
  description?: string | null | undefined;
  default_values?: JsonObject | undefined;
  requires_auth: boolean;
  async: boolean;
  rate_limit?: string | null | undefined;
  verification: WebhookVerification;
}

export interface WebhookUpdate {
  function_namespace?: string | undefined;
  function_name?: string | undefined;
  http_method?: HttpMethod | undefined;
  description?: string | null | undefined;
  default_values?: JsonObject | undefined;
  is_active?: boolean | undefined;
  requires_auth?: boolean | undefined;
  async?: boolean | undefined;
  rate_limit?: string | null | undefined;
  verification?: WebhookVerification | undefined;
  /** Replace the secret (the new one is returned once). */
  rotate_secret?: boolean | undefined;
}

/** A stored webhook and, right after creation or rotation only, its secret in clear. */
export interface WebhookWithSecret {
  webhook: Webhook;
  secret: string | null;
}

export function toWebhookResponse({ webhook, secret }: WebhookWithSecret) {
  return {
    id: webhook.id,
    path: webhook.path,
    function_namespace: webhook.functionNamespace,
    function_name: webhook.functionName,
    http_method: webhook.httpMethod,
    description: webhook.description,
    default_values: webhook.defaultValues ?? {},
    is_active: webhook.isActive,
    requires_auth: webhook.requiresAuth,
    async: webhook.async,
    rate_limit: webhook.rateLimit,
    verification: webhook.verification,
    ...(secret !== null && { secret }),
    created_at: webhook.createdAt.toISOString(),
    updated_at: webhook.updatedAt.toISOString(),
  };
}

/** The target must be an active function of `userId` (sinas-spec §1.10; note the dot in the message). */
async function ensureOwnedFunction(db: Database, userId: string, namespace: string, name: string) {
  const [fn] = await db
    .select({ id: functions.id })
    .from(functions)
    .where(
      and(
        eq(functions.namespace, namespace),
        eq(functions.name, name),
        eq(functions.userId, userId),
        eq(functions.isActive, true),
      ),
    )
    .limit(1);
  if (!fn) throw new AppError("NOT_FOUND", `Function '${namespace}.${name}' not found`);
}

/** A new random secret and its ciphertext; `whsec_` marks it in logs and secret scanners. */
async function newSecret(services: Services): Promise<{ secret: string; ciphertext: string }> {
  const secret = `whsec_${randomToken(32)}`;
  return { secret, ciphertext: await encryptText(secret, requireSecret(services.config, "ENCRYPTION_KEY")) };
}

export async function createWebhook(
  services: Services,
  principal: Principal,
  input: WebhookFields,
): Promise<WebhookWithSecret> {
  const db = services.db();
  await ensureOwnedFunction(db, principal.user.id, input.function_namespace, input.function_name);
  const secret = input.verification === "none" ? null : await newSecret(services);
  try {
    const [webhook] = await db
      .insert(webhooks)
      .values({
        userId: principal.user.id,
        path: input.path,
        functionNamespace: input.function_namespace,
        functionName: input.function_name,
        httpMethod: input.http_method,
        description: input.description ?? null,
        defaultValues: input.default_values ?? {},
        requiresAuth: input.requires_auth,
        async: input.async,
        rateLimit: input.rate_limit ?? null,
        verification: input.verification,
        secretCiphertext: secret?.ciphertext ?? null,
        apiKeyId: triggerApiKeyId(principal, principal.user.id, null),
      })
      .returning();
    if (!webhook) throw new Error("insert returned no row");
    return { webhook, secret: secret?.secret ?? null };
  } catch (error) {
    // The path is unique across all users (one method per path, as in SINAS), so another user's path is a 400 too.
    if (isUniqueViolation(error))
      throw new AppError("BAD_REQUEST", `Webhook path '${input.path}' already exists`);
    throw error;
  }
}

export async function listWebhooks(
  db: Database,
  principal: Principal,
  page: { skip: number; limit: number },
) {
  const query = db.select().from(webhooks).orderBy(asc(webhooks.path));
  if (can(principal, permissions.webhooks("get", "all"))) return query.offset(page.skip).limit(page.limit);
  // Own rows need `get:own` too: an API key made with `{}` lists nothing.
  if (!can(principal, permissions.webhooks("get", "own"))) return [];
  return query.where(eq(webhooks.userId, principal.user.id)).offset(page.skip).limit(page.limit);
}

/**
 * The webhook at `path` for management: the caller's own, or anyone's with `sinas.webhooks.{action}:all`.
 * Inactive webhooks are found too, so they can be reactivated (D-8).
 */
export async function findManagedWebhook(
  db: Database,
  principal: Principal,
  action: "get" | "put" | "delete",
  path: string,
): Promise<Webhook> {
  const [webhook] = await db.select().from(webhooks).where(eq(webhooks.path, path)).limit(1);
  const owned = { userId: webhook?.userId ?? null, groupId: null };
  if (webhook && accessScope(principal, (scope) => permissions.webhooks(action, scope), owned))
    return webhook;
  // Someone else's is 404, as SINAS's owner-filtered lookup; the owner without the `:own` grant (a key made
  // with `{}`, which may not rotate the secret) is 403.
  if (webhook?.userId !== principal.user.id) throw new AppError("NOT_FOUND", `Webhook '${path}' not found`);
  throw new AppError("FORBIDDEN", `Not authorized to ${action} webhook '${path}'`);
}

export async function updateWebhook(
  services: Services,
  principal: Principal,
  current: Webhook,
  input: WebhookUpdate,
): Promise<WebhookWithSecret> {
  const db = services.db();
  const namespace = input.function_namespace ?? current.functionNamespace;
  const name = input.function_name ?? current.functionName;
  if (namespace !== current.functionNamespace) {
    if (!can(principal, permissions.functionsNamespace(namespace, "put", "own"))) {
      throw new AppError(
        "FORBIDDEN",
        `Not authorized to update webhooks for functions in namespace '${namespace}'`,
      );
    }
  }
  // A new target must belong to the webhook's owner, who stays its run-as user for calls without auth.
  if (namespace !== current.functionNamespace || name !== current.functionName) {
    await ensureOwnedFunction(db, current.userId, namespace, name);
  }
  const verification = input.verification ?? current.verification;
  const needsSecret =
    verification !== "none" && (input.rotate_secret === true || current.secretCiphertext === null);
  const secret = needsSecret ? await newSecret(services) : null;
  const [updated] = await db
    .update(webhooks)
    .set({
      functionNamespace: namespace,
      functionName: name,
      ...(input.http_method !== undefined && { httpMethod: input.http_method }),
      ...(input.description !== undefined && { description: input.description }),
      ...(input.default_values !== undefined && { defaultValues: input.default_values }),
      ...(input.is_active !== undefined && { isActive: input.is_active }),
      ...(input.requires_auth !== undefined && { requiresAuth: input.requires_auth }),
      ...(input.async !== undefined && { async: input.async }),
      ...(input.rate_limit !== undefined && { rateLimit: input.rate_limit }),
      verification,
      ...(verification === "none" && { secretCiphertext: null }),
      ...(secret && { secretCiphertext: secret.ciphertext }),
      apiKeyId: triggerApiKeyId(principal, current.userId, current.apiKeyId),
    })
    .where(eq(webhooks.id, current.id))
    .returning();
  if (!updated) throw new AppError("NOT_FOUND", `Webhook '${current.path}' not found`);
  return { webhook: updated, secret: secret?.secret ?? null };
}

export async function deleteWebhook(db: Database, webhook: Webhook): Promise<void> {
  await db.delete(webhooks).where(eq(webhooks.id, webhook.id));
}
