/**
 * @module Assembles the executor: replay cache, signer, sandbox driver, pools, job runner and HTTP server.
 * `startExecutor` is what the entry point (server.ts) and the tests call; `close()` stops accepting,
 * fails running jobs with a clear result, kills every sandbox and removes their socket folders.
 */
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { createSigner } from "./auth";
import type { ExecutorConfig } from "./config";
import { createHttpApp } from "./http-app";
import { JobRunner } from "./jobs";
import { PackageInstaller } from "./packages";
import { Pool } from "./pool";
import { createMemoryReplayCache, createRedisReplayCache } from "./replay-cache";
import { selectDriver } from "./sandbox/select-driver";
import type { SandboxDriver } from "./sandbox/types";
import { createWorkDir, removeWorkDir } from "./work-dir";

export interface RunningExecutor {
  url: string;
  port: number;
  driver: SandboxDriver["name"];
  pool: Pool;
  close(): Promise<void>;
}

export interface StartOptions {
  /** Use this driver instead of selecting one from the configuration (tests). */
  driver?: SandboxDriver;
  log?: (line: string) => void;
}

export async function startExecutor(
  config: ExecutorConfig,
  options: StartOptions = {},
): Promise<RunningExecutor> {
  const log = options.log ?? ((line: string) => console.log(line));
  const replayCache = config.redisUrl ? createRedisReplayCache(config.redisUrl) : createMemoryReplayCache();
  const signer = await createSigner({
    jobPublicKey: config.jobPublicKey,
    callbackPrivateKey: config.callbackPrivateKey,
    replayCache,
  });
  const workDir = await createWorkDir(log);
  const driver = options.driver ?? (await selectDriver(config, log, workDir));
  const pool = new Pool({
    driver,
    limits: { ...config.sandbox },
    warmPerUser: config.pool.warmPerUser,
    maxPerUser: config.pool.maxPerUser,
    idleSeconds: config.pool.idleSeconds,
    sharedSize: config.pool.sharedSize,
    idleCheckMs: config.pool.idleCheckMs,
    workDir,
    log,
  });
  await pool.init();
  const packages = new PackageInstaller({
    root: join(workDir, "packages"),
    pipPython: config.pip.python,
    candidates: [config.pythonBin, "python3"],
    indexUrl: config.pip.indexUrl,
    findLinks: config.pip.findLinks,
    allowSourceBuilds: config.pip.allowSourceBuilds,
    log,
  });
  const runner = new JobRunner({
    pool,
    signer,
    packages,
    memoryLimitMb: config.sandbox.memoryMb,
    publicUrl: config.publicUrl,
    log,
  });
  const app = createHttpApp({ signer, pool, runner, pythonBin: config.pythonBin });

  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const started = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, () =>
      resolve(started),
    );
    started.once("error", reject);
  });
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | null = null;
  return {
    url: `http://${config.host}:${port}`,
    port,
    driver: driver.name,
    pool,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        await runner.close();
        await pool.close();
        await driver.close();
        await replayCache.close();
        removeWorkDir(workDir);
        await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
      })();
      return closing;
    },
  };
}
