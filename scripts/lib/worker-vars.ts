/**
 * @module The vars the local stack hands to `wrangler dev`, written as an env file (values may contain
 * colons, which `--var` cannot carry).
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

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
  "CONFIG_FILE",
  "AUTO_APPLY_CONFIG",
  "DEV_PRINT_OTP",
  "RATE_LIMIT_LOGIN_PER_EMAIL",
  "RATE_LIMIT_LOGIN_PER_IP",
  "RATE_LIMIT_VERIFY_PER_EMAIL",
  "RATE_LIMIT_VERIFY_PER_IP",
] as const;

export interface DevSecrets {
  SECRET_KEY: string;
  ENCRYPTION_KEY: string;
}

/**
 * Development secrets, generated once per data folder and kept there, so tokens and encrypted values
 * survive a restart of `npm start`. Production sets them with `wrangler secret put`.
 */
export function loadDevSecrets(dataDir: string): DevSecrets {
  const file = join(dataDir, "dev-secrets.json");
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8")) as DevSecrets;
  const secrets: DevSecrets = {
    SECRET_KEY: randomBytes(32).toString("base64url"),
    ENCRYPTION_KEY: randomBytes(32).toString("base64"),
  };
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  return secrets;
}

/** dotenv (which wrangler uses) does not unescape quotes, so values holding them are refused. */
function quote(name: string, value: string): string {
  if (/["\n\r]/.test(value)) throw new Error(`${name} must not contain quotes or line breaks`);
  return `"${value}"`;
}

/** Writes `vars` as a dotenv file (double-quoted values) and returns its path. */
export function writeEnvFile(file: string, vars: Record<string, string>): string {
  mkdirSync(dirname(file), { recursive: true });
  const lines = Object.entries(vars).map(([name, value]) => `${name}=${quote(name, value)}`);
  writeFileSync(file, `${lines.join("\n")}\n`, { mode: 0o600 });
  return file;
}
