/**
 * @module The vars the local stack hands to `wrangler dev`, written as an env file (values may contain
 * colons, which `--var` cannot carry).
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { exportJWK, generateKeyPair } from "jose";

/** Variables copied from the launcher's environment into the Worker when set. */
export const PASS_THROUGH_VARS = [
  "SECRET_KEY",
  "ENCRYPTION_KEY",
  "SUPERADMIN_EMAIL",
  "AUTO_PROVISION_USERS",
  "ACCESS_TOKEN_EXPIRE_MINUTES",
  "REFRESH_TOKEN_EXPIRE_DAYS",
  "OTP_EXPIRE_MINUTES",
  "FUNCTION_TIMEOUT",
  "REQUEST_LOG_RETENTION_DAYS",
  "CONFIG_FILE",
  "AUTO_APPLY_CONFIG",
  "DEV_PRINT_OTP",
  "EXECUTION_WATCHDOG_GRACE_SECONDS",
  "EXECUTOR_REPLY_WITHIN_MS",
  "LLM_STREAM_IDLE_SECONDS",
  "CHAT_STREAM_COALESCE_MS",
  "CHAT_STREAM_BUSY_COALESCE_MS",
  "CHAT_STREAM_BUSY_TURNS",
  "ALLOW_PACKAGE_INSTALLATION",
  "ALLOWED_PACKAGES",
  "RATE_LIMIT_LOGIN_PER_EMAIL",
  "RATE_LIMIT_LOGIN_PER_IP",
  "RATE_LIMIT_VERIFY_PER_EMAIL",
  "RATE_LIMIT_VERIFY_PER_IP",
  "WEBHOOK_MAX_BODY_BYTES",
  "WEBHOOK_RATE_LIMIT",
] as const;

export interface DevSecrets {
  SECRET_KEY: string;
  ENCRYPTION_KEY: string;
  /** Ed25519 JWKs (JSON): the API signs jobs, the executor signs callbacks (executor-node/PROTOCOL.md §1). */
  EXECUTOR_JOB_PRIVATE_KEY: string;
  EXECUTOR_JOB_PUBLIC_KEY: string;
  EXECUTOR_CALLBACK_PRIVATE_KEY: string;
  EXECUTOR_CALLBACK_PUBLIC_KEY: string;
}

async function ed25519Pair(): Promise<{ privateJwk: string; publicJwk: string }> {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  return {
    privateJwk: JSON.stringify(await exportJWK(privateKey)),
    publicJwk: JSON.stringify(await exportJWK(publicKey)),
  };
}

/**
 * Development secrets, generated once per data folder and kept there, so tokens and encrypted values
 * survive a restart of `npm start`. Production sets them with `wrangler secret put`.
 */
export async function loadDevSecrets(dataDir: string): Promise<DevSecrets> {
  const file = join(dataDir, "dev-secrets.json");
  const existing = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Partial<DevSecrets>) : {};
  if (existing.SECRET_KEY && existing.EXECUTOR_JOB_PRIVATE_KEY) return existing as DevSecrets;
  const job = await ed25519Pair();
  const callback = await ed25519Pair();
  // Keys added by later versions are generated without replacing the ones a data folder already has.
  const secrets: DevSecrets = {
    SECRET_KEY: randomBytes(32).toString("base64url"),
    ENCRYPTION_KEY: randomBytes(32).toString("base64"),
    EXECUTOR_JOB_PRIVATE_KEY: job.privateJwk,
    EXECUTOR_JOB_PUBLIC_KEY: job.publicJwk,
    EXECUTOR_CALLBACK_PRIVATE_KEY: callback.privateJwk,
    EXECUTOR_CALLBACK_PUBLIC_KEY: callback.publicJwk,
    ...existing,
  };
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  return secrets;
}

/**
 * dotenv (which wrangler uses) does not unescape anything: single quotes keep a value verbatim (JSON keys
 * included), double quotes serve values holding a single quote; a value needing both is refused.
 */
function quote(name: string, value: string): string {
  if (/[\n\r]/.test(value)) throw new Error(`${name} must not contain line breaks`);
  if (!value.includes("'")) return `'${value}'`;
  if (!value.includes('"')) return `"${value}"`;
  throw new Error(`${name} must not contain both kinds of quotes`);
}

/** Writes `vars` as a dotenv file (quoted values) and returns its path. */
export function writeEnvFile(file: string, vars: Record<string, string>): string {
  mkdirSync(dirname(file), { recursive: true });
  const lines = Object.entries(vars).map(([name, value]) => `${name}=${quote(name, value)}`);
  writeFileSync(file, `${lines.join("\n")}\n`, { mode: 0o600 });
  return file;
}
