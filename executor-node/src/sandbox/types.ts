/**
 * @module The sandbox driver interface: one implementation per isolation technology (docker, bwrap,
 * process), chosen by config or auto-detected. A driver only starts and kills sandboxes; pooling, the
 * runtime connection and job dispatch live above it (executor-node/src/pool).
 *
 * A sandbox runs the resident Python runtime (executor-node/runtime/sinas_runtime.py), which connects
 * back to the executor over the Unix socket `runtime.sock` in `socketDir`; the driver makes that host
 * folder visible inside the sandbox at `/run/sinas` and sets `SINAS_RUNTIME_SOCKET=/run/sinas/runtime.sock`.
 */

export type DriverName = "docker" | "bwrap" | "process";

export interface SandboxLimits {
  /**
   * Memory ceiling. docker: the whole sandbox (cgroup; exceeding it kills the sandbox). bwrap/process: each
   * process on its own (RLIMIT_AS; an allocation beyond it fails with MemoryError).
   */
  memoryMb: number;
  /** CPU share (docker NanoCpus); ignored where unsupported. */
  cpus: number;
  /** Maximum processes/threads inside the sandbox (docker PidsLimit; bwrap: best effort). */
  pids: number;
  /** Size of the writable tmpfs at /tmp. */
  tmpfsMb: number;
  /** Largest file user code may write (RLIMIT_FSIZE). */
  fileSizeMb: number;
  /** `none`: no network at all; `bridge`: outbound allowed. */
  network: "none" | "bridge";
}

export interface SandboxSpec {
  /** Unique id, also used in container names: `sinas-sbx-<id>`. */
  id: string;
  pool: { kind: "user"; userId: string } | { kind: "shared"; workerIndex: number };
  /** Host folder holding `runtime.sock`; mounted read-write at /run/sinas. Nothing else of the host is writable. */
  socketDir: string;
  /**
   * Host folder of the sandbox's Python packages (`pip install --target` layout; executor-node/src/packages.ts),
   * or none. Drivers make it visible read-only at PACKAGES_MOUNT (process: the host path) and set
   * SINAS_PACKAGES_DIR to where the sandbox sees it; the runtime adds it to sys.path after the standard library.
   */
  packagesDir?: string | null;
  /** Extra environment for the runtime (never the executor's own environment). */
  env: Record<string, string>;
  limits: SandboxLimits;
}

/** Where docker and bwrap sandboxes see `SandboxSpec.packagesDir`. */
export const PACKAGES_MOUNT = "/opt/sinas/packages";

export interface SandboxExit {
  /** Exit code when known. */
  code: number | null;
  /** Why it ended, for error messages: "exited with code 137", "killed (out of memory)", ... */
  reason: string;
  /** True when the kernel/cgroup killed it for memory. */
  oomKilled: boolean;
}

export interface SandboxHandle {
  readonly id: string;
  /** Resolves once the sandbox has ended, for whatever reason. */
  readonly exited: Promise<SandboxExit>;
  /** Kills the sandbox and everything in it; resolves when it is gone. Idempotent. */
  kill(): Promise<void>;
  /**
   * The pid of the sandbox's own host process while it runs (bwrap, process): what a job leaves running under
   * it is found there (process-tree.ts). Docker's containers have none here: their cgroup bounds leftovers.
   */
  localPid?(): number | null;
}

export interface SandboxDriver {
  readonly name: DriverName;
  /** Whether this driver can run here (Docker API answers, bwrap works, ...). */
  available(): Promise<boolean>;
  /** Starts a sandbox running the runtime; resolves once started (not once the runtime connected). */
  start(spec: SandboxSpec): Promise<SandboxHandle>;
  /** Releases driver resources (docker client, ...). */
  close(): Promise<void>;
}
