/**
 * @module Which provider and model a chat uses (sinas-spec §5.3 step B, §5.10), and the adapter for a stored
 * provider row (its API key decrypted, §10.6).
 */
import { and, asc, desc, eq, type SQL } from "drizzle-orm";
import type { Database } from "../db/client";
import {
  LLM_PROVIDER_TYPES,
  type LlmProvider as LlmProviderRow,
  type LlmProviderType,
  llmProviders,
} from "../db/schema";
import { decryptText } from "../lib/crypto";
import { AppError } from "../lib/errors";
import { createAnthropicProvider } from "./anthropic";
import { createOpenAiProvider } from "./openai";
import { LlmError, type LlmProvider } from "./types";

export type { LlmProviderRow };

export interface ResolvedProvider {
  provider: LlmProvider;
  providerName: string;
  providerType: LlmProviderType;
}

export interface ResolvedChatModel extends ResolvedProvider {
  model: string;
}

/**
 * What selection needs from `Services` (which satisfies it): the database and the encryption key. Narrow, so this
 * module stays free of Worker bindings and Node tests can import it.
 */
export interface ProviderServices {
  db(): Database;
  readonly config: { readonly ENCRYPTION_KEY?: string | undefined };
}

export interface CreateProviderOptions {
  /** Replaces the global `fetch` (tests). */
  fetch?: typeof fetch;
}

/**
 * `config.timeout` (seconds), when the row sets a positive number; else undefined, and the adapter uses its
 * type's default (120 s; 300 s for Ollama, sinas-spec §5.10).
 */
function timeoutOf(row: LlmProviderRow): number | undefined {
  const seconds = row.config?.timeout;
  return typeof seconds === "number" && seconds > 0 ? seconds * 1000 : undefined;
}

async function apiKeyOf(row: LlmProviderRow, encryptionKey: string | undefined): Promise<string | null> {
  // Empty strings are stored as they are (§10.6).
  if (!row.apiKey) return null;
  if (!encryptionKey) {
    throw new LlmError(
      `ENCRYPTION_KEY is not configured, so the API key of LLM provider '${row.name}' cannot be read`,
    );
  }
  try {
    return await decryptText(row.apiKey, encryptionKey);
  } catch (error) {
    throw new LlmError(
      `The API key of LLM provider '${row.name}' cannot be decrypted (was ENCRYPTION_KEY changed?): ${
        error instanceof Error ? error.message : String(error)
      }`,
    );
  }
}

/**
 * The adapter for a provider row, by its `provider_type` (case-insensitive).
 *
 * @example
 * const provider = await createProvider(row, services.config.ENCRYPTION_KEY);
 */
export async function createProvider(
  row: LlmProviderRow,
  encryptionKey: string | undefined,
  options: CreateProviderOptions = {},
): Promise<LlmProvider> {
  const type = row.providerType.toLowerCase();
  if (!(LLM_PROVIDER_TYPES as readonly string[]).includes(type)) {
    throw new AppError("BAD_REQUEST", `Unknown provider type: ${row.providerType}`);
  }
  const timeoutMs = timeoutOf(row);
  const common = {
    apiKey: await apiKeyOf(row, encryptionKey),
    apiEndpoint: row.apiEndpoint,
    ...(timeoutMs !== undefined && { timeoutMs }),
    ...(options.fetch && { fetch: options.fetch }),
  };
  return type === "anthropic"
    ? createAnthropicProvider(common)
    : createOpenAiProvider({ ...common, type: type as Exclude<LlmProviderType, "anthropic"> });
}

/**
 * The provider type a model name suggests (§5.10), or null: `gpt-`/`o1-` openai; `mistral-`/`pixtral-`/`codestral-`
 * mistral; a `/` or `llama`/`codellama` ollama; and (SINAS Edge) `claude-` anthropic.
 */
export function providerTypeForModel(model: string): LlmProviderType | null {
  const name = model.toLowerCase();
  if (name.startsWith("gpt-") || name.startsWith("o1-")) return "openai";
  if (["mistral-", "pixtral-", "codestral-"].some((prefix) => name.startsWith(prefix))) return "mistral";
  if (name.startsWith("claude-")) return "anthropic";
  if (name.includes("/") || name === "llama" || name === "codellama") return "ollama";
  return null;
}

function noActiveProvider(name: string | null): AppError {
  return new AppError("BAD_REQUEST", `No active LLM provider found for: ${name ?? "default"}`);
}

async function activeProvider(db: Database, condition: SQL): Promise<LlmProviderRow | null> {
  const [row] = await db
    .select()
    .from(llmProviders)
    .where(and(condition, eq(llmProviders.isActive, true)))
    .orderBy(desc(llmProviders.isDefault), asc(llmProviders.createdAt))
    .limit(1);
  return row ?? null;
}

/** The row an agent's chat uses: its own provider, else one matching its model's type, else the default. */
async function providerRowFor(
  db: Database,
  agent: { llmProviderId: string | null; model: string | null },
  known: LlmProviderRow | null,
): Promise<LlmProviderRow> {
  if (agent.llmProviderId) {
    const [row] =
      known?.id === agent.llmProviderId
        ? [known]
        : await db.select().from(llmProviders).where(eq(llmProviders.id, agent.llmProviderId)).limit(1);
    if (row) {
      if (!row.isActive) throw noActiveProvider(row.name);
      return row;
    }
  }
  const type = agent.model ? providerTypeForModel(agent.model) : null;
  const byType = type ? await activeProvider(db, eq(llmProviders.providerType, type)) : null;
  const row = byType ?? (await activeProvider(db, eq(llmProviders.isDefault, true)));
  if (!row) throw noActiveProvider(null);
  return row;
}

/**
 * Providers made from a row, per isolate: decrypting the key and building an SDK client cost more CPU than a
 * turn's own work. A row's `updated_at` is in the key, so an edited provider is built again.
 */
const providerCache = new Map<string, LlmProvider>();
const PROVIDER_CACHE_SIZE = 64;

async function cachedProvider(row: LlmProviderRow, encryptionKey: string | undefined): Promise<LlmProvider> {
  const key = `${row.id}:${row.updatedAt.getTime()}`;
  const cached = providerCache.get(key);
  if (cached) return cached;
  const provider = await createProvider(row, encryptionKey);
  if (providerCache.size >= PROVIDER_CACHE_SIZE) providerCache.clear();
  providerCache.set(key, provider);
  return provider;
}

async function resolved(services: ProviderServices, row: LlmProviderRow): Promise<ResolvedProvider> {
  return {
    provider: await cachedProvider(row, services.config.ENCRYPTION_KEY),
    providerName: row.name,
    providerType: row.providerType.toLowerCase() as LlmProviderType,
  };
}

/**
 * The provider and model for an agent's chat turn (§5.3 step B): the agent's provider if set (it must be active),
 * otherwise the provider matching the model's type, otherwise the default one; the model is the agent's, else the
 * provider's `default_model`. Fails with 400 `No active LLM provider found for: <name|default>` or
 * `No model configured for agent or provider '<name>'`. `agentProvider`: the agent's provider row when the
 * caller has read it already.
 */
export async function resolveChatModel(
  services: ProviderServices,
  agent: { llmProviderId: string | null; model: string | null },
  agentProvider: LlmProviderRow | null = null,
): Promise<ResolvedChatModel> {
  const row = await providerRowFor(services.db(), agent, agentProvider);
  const model = agent.model || row.defaultModel;
  if (!model) throw new AppError("BAD_REQUEST", `No model configured for agent or provider '${row.name}'`);
  return { ...(await resolved(services, row)), model };
}

/** The active provider named `name` (a paused turn resumes on the provider it started with). */
export async function providerByName(services: ProviderServices, name: string): Promise<ResolvedProvider> {
  const row = await activeProvider(services.db(), eq(llmProviders.name, name));
  if (!row) throw noActiveProvider(name);
  return resolved(services, row);
}
