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
import type { RateLimitSetting } from "./lib/rate-limit";

export interface Env {
  CHAT_SESSION: DurableObjectNamespace<ChatSession>;
  EXECUTION_RUN: DurableObjectNamespace<ExecutionRun>;
  LOGIN_SESSION: DurableObjectNamespace<LoginSession>;
  ASSETS?: Fetcher;
  ENVIRONMENT?: string;
  DATABASE_URL?: string;
  /** Local stack only: `host:port` of the WebSocket-to-TCP proxy in front of Postgres/PGlite. */
  DB_WS_PROXY?: string;
  DB_HTTP_QUERIES?: string;
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
  SUPERADMIN_EMAIL?: string;
  AUTO_PROVISION_USERS?: string;
  ACCESS_TOKEN_EXPIRE_MINUTES?: string;
  REFRESH_TOKEN_EXPIRE_DAYS?: string;
  OTP_EXPIRE_MINUTES?: string;
  DEV_PRINT_OTP?: string;
  RATE_LIMIT_LOGIN_PER_EMAIL?: string;
  RATE_LIMIT_LOGIN_PER_IP?: string;
  RATE_LIMIT_VERIFY_PER_EMAIL?: string;
  RATE_LIMIT_VERIFY_PER_IP?: string;
  EXECUTOR_JOB_PRIVATE_KEY?: string;
  EXECUTOR_CALLBACK_PUBLIC_KEY?: string;
  API_PUBLIC_URL?: string;
  FUNCTION_TIMEOUT?: string;
  REQUEST_LOG_RETENTION_DAYS?: string;
  EXECUTION_WATCHDOG_GRACE_SECONDS?: string;
  EXECUTION_PAUSE_TTL_SECONDS?: string;
  EXECUTOR_REPLY_WITHIN_MS?: string;
  LLM_STREAM_IDLE_SECONDS?: string;
  CHAT_STREAM_COALESCE_MS?: string;
  CHAT_STREAM_BUSY_COALESCE_MS?: string;
  CHAT_STREAM_BUSY_TURNS?: string;
  ALLOW_PACKAGE_INSTALLATION?: string;
  ALLOWED_PACKAGES?: string;
  WEBHOOK_MAX_BODY_BYTES?: string;
  WEBHOOK_RATE_LIMIT?: string;
}

const booleanVar = z
  .enum(["true", "false", "1", "0", ""])
  .default("false")
  .transform((value) => value === "true" || value === "1");

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);
/** Minutes may be fractional (tests use seconds-long lifetimes). */
const positiveMinutes = (fallback: number) => z.coerce.number().positive().default(fallback);

/** Reads `N/WINDOW`, e.g. `5/10m`: at most N requests per sliding window (s, m or h); null when malformed. */
/** The longest window a rate limit may have (a day): Redis refuses key lifetimes far beyond any sane one. */
const MAX_RATE_WINDOW_SECONDS = 24 * 60 * 60;

export function parseRateLimit(value: string): RateLimitSetting | null {
  const match = /^(\d+)\/(\d+)(s|m|h)$/.exec(value.trim());
  if (!match || Number(match[2]) < 1) return null;
  const unitSeconds = { s: 1, m: 60, h: 3600 }[match[3] as "s" | "m" | "h"];
  const limit = Number(match[1]);
  const windowSeconds = Number(match[2]) * unitSeconds;
  if (!Number.isSafeInteger(limit) || windowSeconds > MAX_RATE_WINDOW_SECONDS) return null;
  return { limit, windowSeconds };
}

export const RATE_LIMIT_FORMAT_MESSAGE =
  "must look like 5/10m (requests per window in s, m or h; the window at most 24h)";

const rateLimitVar = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value, context) => {
      const setting = parseRateLimit(value);
      if (!setting) {
        context.addIssue({ code: "custom", message: RATE_LIMIT_FORMAT_MESSAGE });
        return z.NEVER;
      }
      return setting;
    });

/** `FROM-FULL`, e.g. `20-60`: two turn counts, FULL above FROM (CHAT_STREAM_BUSY_TURNS). */
const turnRangeVar = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value, context) => {
      const match = /^(\d+)-(\d+)$/.exec(value.trim());
      if (!match || Number(match[2]) <= Number(match[1])) {
        context.addIssue({
          code: "custom",
          message: "must look like 20-60 (two turn counts, the second larger)",
        });
        return z.NEVER;
      }
      return { from: Number(match[1]), full: Number(match[2]) };
    });

const optionalString = z
  .string()
  .optional()
  .transform((value) => (value ? value : undefined));

const configSchema = z.object({
  ENVIRONMENT: z.enum(["development", "test", "staging", "production"]).default("development"),
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: "must be a postgres:// or postgresql:// URL" }),
  DB_WS_PROXY: z
    .string()
    .regex(/^[\w.-]+:\d+$/, "must be host:port")
    .optional(),
  /**
   * Queries outside transactions go over HTTP (Neon's `/sql` endpoint, or DB_WS_PROXY's), saving each
   * request a WebSocket and a Postgres connection start-up. Turn off for a Postgres behind a plain
   * WebSocket proxy without `/sql`.
   */
  DB_HTTP_QUERIES: z
    .enum(["true", "false", "1", "0", ""])
    .default("true")
    .transform((value) => value !== "false" && value !== "0"),
  UPSTASH_REDIS_REST_URL: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }),
  UPSTASH_REDIS_REST_TOKEN: z.string().min(1, "must not be empty"),
  EXECUTOR_URL: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).optional(),
  /** Required by everything that signs or verifies tokens; checked where used (see `requireSecret`). */
  SECRET_KEY: optionalString,
  ENCRYPTION_KEY: optionalString,
  SMTP_HOST: optionalString,
  SMTP_PORT: positiveInt(587),
  SMTP_USER: optionalString,
  SMTP_PASSWORD: optionalString,
  SMTP_DOMAIN: optionalString,
  SUPERADMIN_EMAIL: optionalString,
  AUTO_PROVISION_USERS: booleanVar,
  ACCESS_TOKEN_EXPIRE_MINUTES: positiveMinutes(15),
  REFRESH_TOKEN_EXPIRE_DAYS: positiveInt(30),
  OTP_EXPIRE_MINUTES: positiveMinutes(10),
  DEV_PRINT_OTP: booleanVar,
  RATE_LIMIT_LOGIN_PER_EMAIL: rateLimitVar("5/10m"),
  RATE_LIMIT_LOGIN_PER_IP: rateLimitVar("30/10m"),
  RATE_LIMIT_VERIFY_PER_EMAIL: rateLimitVar("10/10m"),
  RATE_LIMIT_VERIFY_PER_IP: rateLimitVar("60/10m"),
  /** Ed25519 JWK (JSON) signing jobs for the executor. */
  EXECUTOR_JOB_PRIVATE_KEY: optionalString,
  /** Ed25519 JWK (JSON) verifying the executor's callbacks. */
  EXECUTOR_CALLBACK_PUBLIC_KEY: optionalString,
  /** Base URL the executor posts callbacks to (this API as the executor reaches it). */
  API_PUBLIC_URL: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).optional(),
  /** Days a request-log row is kept; the cron tick deletes older ones (0: kept forever). */
  REQUEST_LOG_RETENTION_DAYS: z.coerce.number().min(0).max(36_500).default(30),
  /** Default seconds a function may run (sinas-spec §0.3). */
  FUNCTION_TIMEOUT: positiveInt(300),
  /**
   * How long past a function's timeout the ExecutionRun watchdog waits for the executor's result; more than
   * the executor's 30 s of callback retries, so a slow network never loses a result the executor has.
   */
  EXECUTION_WATCHDOG_GRACE_SECONDS: positiveInt(35),
  /**
   * How long a paused generator waits for its input: then the ExecutionRun watchdog fails it (`timeout`) and the
   * executor forgets it. A little above the executor's POOL_IDLE_SECONDS (600), past which it may drop the pause.
   */
  EXECUTION_PAUSE_TTL_SECONDS: positiveInt(900),
  /**
   * How long the executor holds a job's answer so that a run ending sooner returns its result in it (one
   * request instead of a job post and a callback); 0 turns that off (202 at once, results as callbacks).
   */
  EXECUTOR_REPLY_WITHIN_MS: z.coerce.number().int().min(0).max(5000).default(1000),
  /** A provider stream that sends nothing for this long fails the turn (a clear error, never a hung stream). */
  LLM_STREAM_IDLE_SECONDS: positiveInt(60),
  /** Text a model streams within this many ms of the last text sent is joined into one event (0: never). */
  CHAT_STREAM_COALESCE_MS: z.coerce.number().int().min(0).max(1000).default(100),
  /**
   * The coalescing window when many turns stream in one isolate (durable-objects/chat-stream-load.ts): it grows
   * from CHAT_STREAM_COALESCE_MS above CHAT_STREAM_BUSY_TURNS' first count of streaming turns to this at its
   * second; at or below the base: no growth.
   */
  CHAT_STREAM_BUSY_COALESCE_MS: z.coerce.number().int().min(0).max(2000).default(300),
  CHAT_STREAM_BUSY_TURNS: turnRangeVar("20-60"),
  ALLOW_PACKAGE_INSTALLATION: z
    .enum(["true", "false", "1", "0", ""])
    .default("true")
    .transform((value) => value !== "false" && value !== "0"),
  /** Comma-separated whitelist for package approval; unset allows any name. */
  ALLOWED_PACKAGES: z
    .string()
    .optional()
    .transform((value) =>
      value
        ? value
            .split(",")
            .map((name) => name.trim())
            .filter(Boolean)
        : null,
    ),
  /** Largest webhook request body; larger ones get 413 before anything runs. */
  WEBHOOK_MAX_BODY_BYTES: positiveInt(1024 * 1024),
  /** Calls per webhook (all callers together) unless the webhook sets its own `rate_limit`. */
  WEBHOOK_RATE_LIMIT: rateLimitVar("600/1m"),
});

export type AppConfig = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** A secret that only some features need: fails with a message naming the variable when it is unset. */
export function requireSecret(
  config: AppConfig,
  name:
    | "SECRET_KEY"
    | "ENCRYPTION_KEY"
    | "EXECUTOR_JOB_PRIVATE_KEY"
    | "EXECUTOR_CALLBACK_PUBLIC_KEY"
    | "API_PUBLIC_URL",
): string {
  const value = config[name];
  if (!value) throw new ConfigError(`${name} is not configured`);
  return value;
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
