/**
 * @module LLM provider management (sinas-spec §1.16, §10.6): CRUD of the provider rows, with the API key encrypted
 * at rest and never returned, at most one default provider, and soft deletion.
 */
import { and, desc, eq, ne } from "drizzle-orm";
import type { Database, DbOrTx } from "../db/client";
import { isUniqueViolation } from "../db/errors";
import { type JsonObject, type LlmProvider, type LlmProviderType, llmProviders } from "../db/schema";
import { requireSecret } from "../env";
import { encryptText } from "../lib/crypto";
import { AppError } from "../lib/errors";
import type { Services } from "./services";

export interface LlmProviderFields {
  name: string;
  provider_type: LlmProviderType;
  api_key?: string | null | undefined;
  api_endpoint?: string | null | undefined;
  default_model?: string | null | undefined;
  config?: JsonObject | undefined;
  is_default?: boolean | undefined;
}

export interface LlmProviderUpdate extends Partial<LlmProviderFields> {
  is_active?: boolean | undefined;
}

/** `LLMProviderResponse`: every column but the API key. */
export function toLlmProviderResponse(provider: LlmProvider) {
  return {
    id: provider.id,
    name: provider.name,
    provider_type: provider.providerType,
    api_endpoint: provider.apiEndpoint,
    default_model: provider.defaultModel,
    config: provider.config ?? {},
    is_default: provider.isDefault,
    is_active: provider.isActive,
    created_at: provider.createdAt.toISOString(),
    updated_at: provider.updatedAt.toISOString(),
  };
}

/** The stored form of an API key: AES-GCM ciphertext; empty or absent keys are stored as they are (§10.6). */
async function storedApiKey(services: Services, apiKey: string | null | undefined): Promise<string | null> {
  if (apiKey === null || apiKey === undefined) return null;
  if (apiKey === "") return "";
  return encryptText(apiKey, requireSecret(services.config, "ENCRYPTION_KEY"));
}

async function clearDefault(db: DbOrTx, exceptId?: string): Promise<void> {
  await db
    .update(llmProviders)
    .set({ isDefault: false })
    .where(
      exceptId
        ? and(eq(llmProviders.isDefault, true), ne(llmProviders.id, exceptId))
        : eq(llmProviders.isDefault, true),
    );
}

/**
 * A unique violation is either the name (400, as SINAS) or, when two requests make a default at once, the
 * single-default index (409).
 */
async function uniqueViolation(
  db: Database,
  name: string | undefined,
  error: unknown,
  ownId?: string,
): Promise<AppError> {
  if (name !== undefined) {
    const sameName = eq(llmProviders.name, name);
    const [taken] = await db
      .select({ id: llmProviders.id })
      .from(llmProviders)
      .where(ownId ? and(sameName, ne(llmProviders.id, ownId)) : sameName)
      .limit(1);
    if (taken)
      return new AppError("BAD_REQUEST", `Provider with name '${name}' already exists`, { cause: error });
  }
  return new AppError("CONFLICT", "Another provider was made the default at the same time; retry", {
    cause: error,
  });
}

export async function createLlmProvider(services: Services, input: LlmProviderFields): Promise<LlmProvider> {
  const db = services.db();
  const apiKey = await storedApiKey(services, input.api_key);
  try {
    return await db.transaction(async (tx) => {
      if (input.is_default) await clearDefault(tx);
      const [provider] = await tx
        .insert(llmProviders)
        .values({
          name: input.name,
          providerType: input.provider_type,
          apiKey,
          apiEndpoint: input.api_endpoint ?? null,
          defaultModel: input.default_model ?? null,
          config: input.config ?? {},
          isDefault: input.is_default ?? false,
        })
        .returning();
      if (!provider) throw new Error("insert returned no row");
      return provider;
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw await uniqueViolation(db, input.name, error);
    throw error;
  }
}

/** Active providers, newest first. */
export async function listLlmProviders(db: Database): Promise<LlmProvider[]> {
  return db
    .select()
    .from(llmProviders)
    .where(eq(llmProviders.isActive, true))
    .orderBy(desc(llmProviders.createdAt));
}

export async function findLlmProviderByName(db: Database, name: string): Promise<LlmProvider> {
  const [provider] = await db
    .select()
    .from(llmProviders)
    .where(and(eq(llmProviders.name, name), eq(llmProviders.isActive, true)))
    .limit(1);
  if (!provider) throw new AppError("NOT_FOUND", `Provider '${name}' not found`);
  return provider;
}

/** Any provider by id, active or not, so an inactive one can be reactivated with `is_active: true`. */
async function findLlmProviderById(db: DbOrTx, id: string): Promise<LlmProvider> {
  const [provider] = await db.select().from(llmProviders).where(eq(llmProviders.id, id)).limit(1);
  if (!provider) throw new AppError("NOT_FOUND", `Provider '${id}' not found`);
  return provider;
}

export async function updateLlmProvider(
  services: Services,
  id: string,
  input: LlmProviderUpdate,
): Promise<LlmProvider> {
  const db = services.db();
  await findLlmProviderById(db, id);
  const apiKey = input.api_key === undefined ? undefined : await storedApiKey(services, input.api_key);
  try {
    return await db.transaction(async (tx) => {
      if (input.is_default === true) await clearDefault(tx, id);
      const [provider] = await tx
        .update(llmProviders)
        .set({
          ...(input.name !== undefined && { name: input.name }),
          ...(input.provider_type !== undefined && { providerType: input.provider_type }),
          ...(apiKey !== undefined && { apiKey }),
          ...(input.api_endpoint !== undefined && { apiEndpoint: input.api_endpoint }),
          ...(input.default_model !== undefined && { defaultModel: input.default_model }),
          ...(input.config !== undefined && { config: input.config }),
          ...(input.is_default !== undefined && { isDefault: input.is_default }),
          ...(input.is_active !== undefined && { isActive: input.is_active }),
          updatedAt: new Date(),
        })
        .where(eq(llmProviders.id, id))
        .returning();
      if (!provider) throw new AppError("NOT_FOUND", `Provider '${id}' not found`);
      return provider;
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw await uniqueViolation(db, input.name, error, id);
    throw error;
  }
}

/** Soft delete: the row stays (agents keep their reference) but is invisible to lookups and selection. */
export async function deleteLlmProvider(db: Database, id: string): Promise<void> {
  await findLlmProviderById(db, id);
  await db
    .update(llmProviders)
    .set({ isActive: false, updatedAt: new Date() })
    .where(eq(llmProviders.id, id));
}
