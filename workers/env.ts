/**
 * @module Worker bindings and the configuration parsed from them.
 *
 * Bindings arrive per request (`c.env`, the DO's `this.env`), never as globals. `loadConfig` parses the
 * string vars once per isolate with zod and fails with a message naming every bad variable.
 */
import { z } from "zod";
import type { ChatSession } from "../durable-objects/chat-session";
import type { ExecutionRun } from "../durable-objects/execution-run";
import type { LoginSession } from "../durable-objects/login-session";

export interface Env {
  CHAT_SESSION: DurableObjectNamespace<ChatSession>;
  EXECUTION_RUN: DurableObjectNamespace<ExecutionRun>;
  LOGIN_SESSION: DurableObjectNamespace<LoginSession>;
  ASSETS?: Fetcher;
  ENVIRONMENT?: string;
  DATABASE_URL?: string;
  /** Local stack only: `host:port` of the WebSocket-to-TCP proxy in front of Postgres/PGlite. */
  DB_WS_PROXY?: string;
  UPSTASH_REDIS_REST_URL?: string;
  UPSTASH_REDIS_REST_TOKEN?: string;
  EXECUTOR_URL?: string;
  SECRET_KEY?: string;
  ENCRYPTION_KEY?: string;
  SMTP_HOST?: string;
  SMTP_PORT?: string;
  SMTP_USER?: string;
  SMTP_PASSWORD?: string;
  SMTP_DOMAIN?: string;
}

const configSchema = z.object({
  ENVIRONMENT: z.enum(["development", "test", "staging", "production"]).default("development"),
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: "must be a postgres:// or postgresql:// URL" }),
  DB_WS_PROXY: z
    .string()
    .regex(/^[\w.-]+:\d+$/, "must be host:port")
    .optional(),
  UPSTASH_REDIS_REST_URL: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }),
  UPSTASH_REDIS_REST_TOKEN: z.string().min(1, "must not be empty"),
  EXECUTOR_URL: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).optional(),
});

export type AppConfig = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const cache = new WeakMap<object, AppConfig>();

/** Parses the Worker's vars. Throws `ConfigError` naming each missing or malformed variable. */
export function loadConfig(env: Env): AppConfig {
  const cached = cache.get(env);
  if (cached) return cached;
  const parsed = configSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join(".")} ${issue.message}`);
    throw new ConfigError(`Invalid Worker configuration: ${problems.join("; ")}`);
  }
  cache.set(env, parsed.data);
  return parsed.data;
}
