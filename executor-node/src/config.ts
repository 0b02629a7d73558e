/**
 * @module The executor's configuration: every environment variable it reads, parsed once with zod.
 * `loadConfig` throws a ConfigError naming each bad variable; the entry point prints it and exits.
 */
import { z } from "zod";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const integer = (fallback: number, min: number, max: number) =>
  z.coerce
    .number({ error: "must be a number" })
    .int({ error: "must be an integer" })
    .min(min, { error: `must be >= ${min}` })
    .max(max, { error: `must be <= ${max}` })
    .default(fallback);

const ed25519Jwk = (needPrivate: boolean) =>
  z
    .string({ error: "is required (an Ed25519 JWK as JSON)" })
    .min(1, { error: "is required (an Ed25519 JWK as JSON)" })
    .superRefine((text, ctx) => {
      let jwk: unknown;
      try {
        jwk = JSON.parse(text);
      } catch {
        ctx.addIssue({ code: "custom", message: "is not valid JSON" });
        return;
      }
      const fields = jwk as Record<string, unknown> | null;
      if (!fields || typeof fields !== "object" || fields.kty !== "OKP" || fields.crv !== "Ed25519") {
        ctx.addIssue({
          code: "custom",
          message: 'must be an Ed25519 JWK ({"kty":"OKP","crv":"Ed25519",...})',
        });
        return;
      }
      if (needPrivate && typeof fields.d !== "string") {
        ctx.addIssue({ code: "custom", message: "must be a private key (the JWK has no `d`)" });
      }
      if (!needPrivate && "d" in fields) {
        ctx.addIssue({ code: "custom", message: "must be the public key only (remove `d`)" });
      }
    });

const optionalText = z
  .string()
  .optional()
  .transform((value) => (value?.trim() ? value.trim() : undefined));

const EnvSchema = z.object({
  EXECUTOR_PORT: integer(8788, 0, 65535),
  EXECUTOR_HOST: z.string().min(1).default("127.0.0.1"),
  EXECUTOR_JOB_PUBLIC_KEY: ed25519Jwk(false),
  EXECUTOR_CALLBACK_PRIVATE_KEY: ed25519Jwk(true),
  SANDBOX_DRIVER: z
    .enum(["auto", "docker", "bwrap", "process"], { error: "must be auto, docker, bwrap or process" })
    .default("auto"),
  NODE_ENV: z.string().default("development"),
  SANDBOX_NETWORK: z.enum(["none", "bridge"], { error: "must be none or bridge" }).default("none"),
  SANDBOX_MEMORY_MB: integer(512, 32, 1_048_576),
  SANDBOX_CPUS: z.coerce.number({ error: "must be a number" }).positive({ error: "must be > 0" }).default(1),
  SANDBOX_PIDS: integer(64, 8, 65_536),
  SANDBOX_TMPFS_MB: integer(64, 1, 1_048_576),
  SANDBOX_FILE_MB: integer(16, 1, 1_048_576),
  POOL_WARM_PER_USER: integer(1, 0, 64),
  POOL_MAX_PER_USER: integer(4, 1, 256),
  POOL_IDLE_SECONDS: integer(600, 1, 86_400 * 7),
  /** How often idle local sandboxes are checked for CPU use (a job's leftover thread or process); 0: never. */
  SANDBOX_IDLE_CHECK_MS: integer(5000, 0, 3_600_000),
  SHARED_POOL_SIZE: integer(0, 0, 10),
  EXECUTOR_REDIS_URL: optionalText.pipe(
    z.url({ protocol: /^rediss?$/, error: "must be a redis:// or rediss:// URL" }).optional(),
  ),
  PYTHON_BIN: z.string().min(1).default("/usr/bin/python3"),
  RUNTIME_IMAGE: z.string().min(1).default("localhost/sinas-runtime:latest"),
  /**
   * Names this executor's containers (label sinas.executor); at start-up it removes only its own orphans.
   * Default: the host name. Executors sharing one engine must differ (the launcher sets one per data folder).
   */
  EXECUTOR_ID: optionalText,
  /**
   * The URL at which the API reaches this executor itself, when several answer behind one EXECUTOR_URL: a
   * paused run's resume and a cancel must reach the executor holding the run (its started event names it).
   */
  EXECUTOR_PUBLIC_URL: optionalText.pipe(
    z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }).optional(),
  ),
  PIP_INDEX_URL: optionalText,
  PIP_FIND_LINKS: optionalText,
  PIP_PYTHON: optionalText,
  PIP_ALLOW_SOURCE_BUILDS: z.enum(["true", "false"], { error: "must be true or false" }).default("false"),
});

export type DriverChoice = z.infer<typeof EnvSchema>["SANDBOX_DRIVER"];

export interface ExecutorConfig {
  port: number;
  host: string;
  jobPublicKey: string;
  callbackPrivateKey: string;
  driver: DriverChoice;
  production: boolean;
  sandbox: {
    network: "none" | "bridge";
    memoryMb: number;
    cpus: number;
    pids: number;
    tmpfsMb: number;
    fileSizeMb: number;
  };
  pool: {
    warmPerUser: number;
    maxPerUser: number;
    idleSeconds: number;
    sharedSize: number;
    idleCheckMs: number;
  };
  redisUrl: string | undefined;
  pythonBin: string;
  runtimeImage: string;
  /** Label of this executor's containers; undefined means the host name. */
  executorId: string | undefined;
  /** Where the API reaches this executor itself (EXECUTOR_PUBLIC_URL), sent in every job's started event. */
  publicUrl: string | undefined;
  /**
   * Package installs (executor-node/src/packages.ts): pip index, find-links folder or URL, the interpreter
   * running pip (unset: PYTHON_BIN, else `python3` on PATH, whichever has pip), and whether sdists may be
   * built on this host.
   */
  pip: {
    indexUrl: string | undefined;
    findLinks: string | undefined;
    python: string | undefined;
    allowSourceBuilds: boolean;
  };
}

/** Parses the environment; throws ConfigError listing every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): ExecutorConfig {
  // Empty strings mean "unset" (launchers pass VAR= to clear a value).
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ""));
  const parsed = EnvSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `  ${issue.path.join(".") || "(env)"} ${issue.message}`);
    throw new ConfigError(`invalid executor configuration:\n${lines.join("\n")}`);
  }
  const e = parsed.data;
  if (e.POOL_WARM_PER_USER > e.POOL_MAX_PER_USER) {
    throw new ConfigError(
      `invalid executor configuration:\n  POOL_WARM_PER_USER must be <= POOL_MAX_PER_USER (${e.POOL_MAX_PER_USER})`,
    );
  }
  return {
    port: e.EXECUTOR_PORT,
    host: e.EXECUTOR_HOST,
    jobPublicKey: e.EXECUTOR_JOB_PUBLIC_KEY,
    callbackPrivateKey: e.EXECUTOR_CALLBACK_PRIVATE_KEY,
    driver: e.SANDBOX_DRIVER,
    production: e.NODE_ENV === "production",
    sandbox: {
      network: e.SANDBOX_NETWORK,
      memoryMb: e.SANDBOX_MEMORY_MB,
      cpus: e.SANDBOX_CPUS,
      pids: e.SANDBOX_PIDS,
      tmpfsMb: e.SANDBOX_TMPFS_MB,
      fileSizeMb: e.SANDBOX_FILE_MB,
    },
    pool: {
      warmPerUser: e.POOL_WARM_PER_USER,
      maxPerUser: e.POOL_MAX_PER_USER,
      idleSeconds: e.POOL_IDLE_SECONDS,
      sharedSize: e.SHARED_POOL_SIZE,
      idleCheckMs: e.SANDBOX_IDLE_CHECK_MS,
    },
    redisUrl: e.EXECUTOR_REDIS_URL,
    pythonBin: e.PYTHON_BIN,
    runtimeImage: e.RUNTIME_IMAGE,
    executorId: e.EXECUTOR_ID,
    publicUrl: e.EXECUTOR_PUBLIC_URL,
    pip: {
      indexUrl: e.PIP_INDEX_URL,
      findLinks: e.PIP_FIND_LINKS,
      python: e.PIP_PYTHON,
      allowSourceBuilds: e.PIP_ALLOW_SOURCE_BUILDS === "true",
    },
  };
}
