/**
 * @module Picks the sandbox driver from SANDBOX_DRIVER: an explicit choice must work or the executor
 * stops with the reason; `auto` takes docker when a Docker Engine API answers (DOCKER_HOST,
 * /var/run/docker.sock, /run/podman/podman.sock) and has the runtime image, else bwrap when a bubblewrap
 * sandbox can start here, else process, which is refused when NODE_ENV=production.
 */
import type { ExecutorConfig } from "../config";
import { ConfigError } from "../config";
import { createBwrapDriver } from "./bwrap";
import { DockerDriver } from "./docker";
import { createProcessDriver } from "./process";
import type { SandboxDriver } from "./types";

const PROCESS_REFUSED =
  "SANDBOX_DRIVER=process runs user code without isolation and is refused when NODE_ENV=production; " +
  "install Docker (or podman) with the runtime image, or bubblewrap";

export async function selectDriver(
  config: ExecutorConfig,
  log: (line: string) => void = console.log,
  workDir?: string,
): Promise<SandboxDriver> {
  const choice = config.driver;
  if (choice === "docker" || choice === "auto") {
    const docker = new DockerDriver({ image: config.runtimeImage, executorId: config.executorId });
    if (await docker.available()) {
      const removed = await docker.removeOrphans().catch(() => []);
      if (removed.length > 0) log(`removed ${removed.length} orphaned sandbox containers`);
      return docker;
    }
    if (choice === "docker")
      throw new ConfigError(`SANDBOX_DRIVER=docker: ${docker.unavailableReason ?? "unavailable"}`);
    log(`sandbox driver auto: docker not used (${docker.unavailableReason ?? "unavailable"})`);
  }
  if (choice === "bwrap" || choice === "auto") {
    const bwrap = createBwrapDriver({ pythonBin: config.pythonBin, workDir });
    if (await bwrap.available()) {
      if (config.sandbox.network === "bridge") {
        log(
          "WARNING: SANDBOX_NETWORK=bridge with bwrap shares the host's network namespace: sandboxes can reach " +
            "services on the host's loopback. Use docker for isolated bridged networking.",
        );
      }
      return bwrap;
    }
    if (choice === "bwrap") {
      throw new ConfigError(
        `SANDBOX_DRIVER=bwrap: bubblewrap cannot start a sandbox running ${config.pythonBin} here ` +
          "(is bwrap installed and are user namespaces allowed?)",
      );
    }
    log("sandbox driver auto: bwrap not used (bubblewrap missing or not usable)");
  }
  if (config.production) throw new ConfigError(PROCESS_REFUSED);
  return createProcessDriver({ pythonBin: config.pythonBin });
}
