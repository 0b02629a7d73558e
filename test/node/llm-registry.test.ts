/**
 * Provider and model selection for a chat (sinas-spec §5.3 step B, §5.10) over the real schema in an in-process
 * PGlite: the agent's provider, the model-prefix match, the default provider, and the errors when none fits.
 */
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Database } from "../../workers/db/client";
import * as schema from "../../workers/db/schema";
import { llmProviders, type NewLlmProvider } from "../../workers/db/schema";
import { encryptText } from "../../workers/lib/crypto";
import { AppError } from "../../workers/lib/errors";
import { type ProviderServices, providerByName, resolveChatModel } from "../../workers/llm/registry";
import { type FakeLlm, startFakeLlm } from "../fixtures/fake-llm";

const MIGRATIONS_FOLDER = fileURLToPath(new URL("../../migrations", import.meta.url));
const ENCRYPTION_KEY = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));

let client: PGlite;
let services: ProviderServices;
let fake: FakeLlm;

beforeAll(async () => {
  client = new PGlite();
  const db = drizzle(client, { schema });
  await migrate(db, { migrationsFolder: MIGRATIONS_FOLDER });
  // The PGlite driver has the query API the services use; only the driver type differs.
  services = { db: () => db as unknown as Database, config: { ENCRYPTION_KEY } };
  fake = await startFakeLlm();
});
afterAll(async () => {
  await fake?.close();
  await client?.close();
});
beforeEach(async () => {
  await services.db().delete(llmProviders);
  fake.reset();
});

async function provider(values: Partial<NewLlmProvider> & { name: string }) {
  const [row] = await services
    .db()
    .insert(llmProviders)
    .values({ providerType: "openai", apiEndpoint: fake.openaiUrl, ...values })
    .returning();
  if (!row) throw new Error("not inserted");
  return row;
}

async function failureOf(promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    return error as AppError;
  }
  throw new Error("expected a failure");
}

describe("resolveChatModel", () => {
  it("uses the agent's provider and model, with the stored key decrypted", async () => {
    await provider({ name: "default", isDefault: true, defaultModel: "d" });
    const own = await provider({
      name: "own",
      defaultModel: "own-default",
      apiKey: await encryptText("sk-own", ENCRYPTION_KEY),
    });
    const resolved = await resolveChatModel(services, { llmProviderId: own.id, model: "fake-model" });
    expect(resolved).toMatchObject({ providerName: "own", providerType: "openai", model: "fake-model" });
    await resolved.provider.complete({
      model: resolved.model,
      messages: [],
      temperature: null,
      maxTokens: null,
    });
    expect(fake.requests[0]?.headers.authorization).toBe("Bearer sk-own");

    const byDefaultModel = await resolveChatModel(services, { llmProviderId: own.id, model: null });
    expect(byDefaultModel.model).toBe("own-default");
  });

  it("refuses an agent's provider that was deactivated, naming it", async () => {
    await provider({ name: "default", isDefault: true, defaultModel: "d" });
    const gone = await provider({ name: "gone", isActive: false });
    const error = await failureOf(resolveChatModel(services, { llmProviderId: gone.id, model: "m" }));
    expect(error.code).toBe("BAD_REQUEST");
    expect(error.message).toBe("No active LLM provider found for: gone");
  });

  it("picks a provider of the model's type, preferring the default one, else the default provider", async () => {
    await provider({ name: "mistral-a", providerType: "mistral" });
    await provider({ name: "mistral-b", providerType: "mistral", isDefault: true });
    await provider({ name: "claude", providerType: "anthropic", apiEndpoint: fake.url });
    expect(
      (await resolveChatModel(services, { llmProviderId: null, model: "mistral-large" })).providerName,
    ).toBe("mistral-b");
    const claude = await resolveChatModel(services, { llmProviderId: null, model: "claude-sonnet-4-5" });
    expect(claude).toMatchObject({ providerName: "claude", providerType: "anthropic" });
    expect(claude.provider.type).toBe("anthropic");
    // No openai provider: the default one serves; an unknown model name does too.
    expect((await resolveChatModel(services, { llmProviderId: null, model: "gpt-4o" })).providerName).toBe(
      "mistral-b",
    );
    expect(
      (await resolveChatModel(services, { llmProviderId: null, model: "fake-model" })).providerName,
    ).toBe("mistral-b");
  });

  it("fails without a default provider or without any model", async () => {
    await provider({ name: "plain" });
    const none = await failureOf(resolveChatModel(services, { llmProviderId: null, model: "fake-model" }));
    expect(none.message).toBe("No active LLM provider found for: default");

    await provider({ name: "modelless", isDefault: true });
    const noModel = await failureOf(resolveChatModel(services, { llmProviderId: null, model: null }));
    expect(noModel.code).toBe("BAD_REQUEST");
    expect(noModel.message).toBe("No model configured for agent or provider 'modelless'");
  });
});

describe("providerByName", () => {
  it("finds active providers only", async () => {
    await provider({ name: "live", providerType: "ollama", apiEndpoint: fake.url });
    await provider({ name: "retired", isActive: false });
    const live = await providerByName(services, "live");
    expect(live).toMatchObject({ providerName: "live", providerType: "ollama" });
    expect(
      (await live.provider.complete({ model: "m", messages: [], temperature: null, maxTokens: null }))
        .content,
    ).toBe("You said: ");
    const retired = await failureOf(providerByName(services, "retired"));
    expect(retired.message).toBe("No active LLM provider found for: retired");
  });
});
