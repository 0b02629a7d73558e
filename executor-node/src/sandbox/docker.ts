/**
 * @module The `docker` sandbox driver: one container per sandbox through any Docker Engine API (Docker,
 * or podman's compatible service; see scripts/setup-podman.sh), with dockerode.
 *
 * Each sandbox is a container `sinas-sbx-<id>` of the runtime image (default
 * `localhost/sinas-runtime:latest`, built by scripts/build-runtime-image.sh; production:
 * executor-node/Dockerfile) running the resident runtime as uid 10001, with:
 * - cgroup limits: Memory = MemorySwap = `memoryMb` (no swap; exceeding it is an OOM kill), NanoCpus,
 *   PidsLimit; explicit ulimits nofile, nproc, fsize (= `fileSizeMb`) and core 0 (the OCI runtime
 *   refuses podman's defaults on some hosts, so they are always given);
 * - read-only root file system, a size-limited tmpfs at /tmp (`nosuid,nodev,noexec`: Python code runs,
 *   dropped native binaries do not), all capabilities dropped, no-new-privileges, network `none` or
 *   `bridge` per spec;
 * - the only host folders visible are `spec.socketDir`, bind-mounted read-write at /run/sinas, and the
 *   sandbox's package folder `spec.packagesDir` (if any), read-only at /opt/sinas/packages;
 * - the container log (its real stdout/stderr, writable by user code) capped at LOG_MAX_SIZE by the engine,
 *   and read back only as a bounded tail;
 * - labels `sinas.sandbox=<id>`, `sinas.pool=user|shared`, `sinas.user_id` or `sinas.worker_index`,
 *   and `sinas.executor=<executorId>` (whose sandboxes `removeOrphans` may delete).
 *
 * Containers are created with AutoRemove off so their exit state (exit code, OOMKilled) can be read;
 * the driver removes each container itself once it has ended. `kill()` force-removes.
 *
 * Socket folder permissions: the executor creates `socketDir` with mode 0700 (owner: the executor's uid)
 * and listens on `runtime.sock` in it, but the runtime connects as uid/gid 10001. `start()` therefore
 * hands the folder to group 10001 with mode 0710 (search only: the sandbox cannot list it, create,
 * rename or delete files in it, so it can neither replace the socket nor fill the host's disk) and, when
 * `runtime.sock` already exists, the socket to group 10001 with mode 0660. So listen BEFORE `start()`
 * (or listen with `writableAll: true`: the 0710 folder still keeps other host users out). Changing the
 * group needs root or membership of gid 10001; without either the driver falls back to 0711/0666 and
 * warns once, because then any local user who learns the folder's name could connect to the socket.
 * This assumes a rootful engine without user-namespace remapping (uid 10001 in the container is uid
 * 10001 on the host), which is what Docker and rootful podman do by default.
 *
 * Start-up: call `removeOrphans()` once before creating sandboxes, so containers left by a previous run
 * of this executor (crash, kill -9) do not keep memory and pids. It removes only containers labelled
 * with this driver's `executorId` (default: the host name), so several executors can share one engine.
 */
import { chmod, chown, stat } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import {
  type DriverName,
  PACKAGES_MOUNT,
  type SandboxDriver,
  type SandboxExit,
  type SandboxHandle,
  type SandboxSpec,
} from "./types";

export const DEFAULT_RUNTIME_IMAGE = "localhost/sinas-runtime:latest";
/** Container-side folder holding `runtime.sock` (PROTOCOL.md §4). */
export const SANDBOX_SOCKET_DIR = "/run/sinas";
/** uid/gid the runtime runs as inside the image (both images create user `sinas` with it). */
export const SANDBOX_UID = 10001;
export const CONTAINER_PREFIX = "sinas-sbx-";
export const LABEL_SANDBOX = "sinas.sandbox";
export const LABEL_POOL = "sinas.pool";
export const LABEL_USER = "sinas.user_id";
export const LABEL_WORKER = "sinas.worker_index";
export const LABEL_EXECUTOR = "sinas.executor";

const MIB = 1024 * 1024;
const PING_TIMEOUT_MS = 2_000;
/** Largest container log the engine keeps (LogConfig max-size: json-file/k8s-file, one file). */
export const LOG_MAX_SIZE = "1m";
/**
 * How `logTail` reads a container's log: at most `maxBytes` (well above the engine's cap, so only an engine
 * that ignored it gets there), keeping the last `keepBytes`, for at most `timeoutMs`.
 */
export const LOG_TAIL_LIMITS: LogTailLimits = { maxBytes: 4 * MIB, keepBytes: 64 * 1024, timeoutMs: 5_000 };
/** Lines asked for when a log turned out larger than `LOG_TAIL_LIMITS.maxBytes`. */
const LOG_FALLBACK_LINES = 100;
/** Fallback engine sockets when DOCKER_HOST is unset, in order. */
const DEFAULT_SOCKETS = ["/var/run/docker.sock", "/run/podman/podman.sock"];

export interface DockerDriverOptions {
  /** Runtime image (config RUNTIME_IMAGE). */
  image?: string;
  /**
   * Engine endpoint. Default: DOCKER_HOST (with DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, as the docker CLI),
   * else the first of /var/run/docker.sock and /run/podman/podman.sock that answers a ping.
   */
  socketPath?: string;
  /** Ready-made client (tests); overrides `socketPath`. */
  docker?: Docker;
  /** Identifies this executor's containers for `removeOrphans` (label sinas.executor). Default: host name. */
  executorId?: string;
  /** Open files per process (RLIMIT_NOFILE). Default 1024. */
  nofile?: number;
  /**
   * RLIMIT_NPROC. It counts every process of uid 10001 on the whole host, i.e. across ALL sandboxes, so it
   * is only a host-wide backstop; PidsLimit is the per-sandbox limit. Default 8192.
   */
  nproc?: number;
  /**
   * Treat a SIGKILL (exit 137) that this driver did not send as an OOM kill when the engine reports none.
   * Default: only under podman, whose conmon misses OOM kills on cgroup v1/hybrid hosts (the kernel kills
   * in the container's memcg, but State.OOMKilled stays false). Under Docker the engine's flag is exact.
   */
  inferOom?: boolean;
  /** Warnings (default console.warn). */
  warn?: (message: string) => void;
}

/** A started container. `exited` never rejects. */
export interface DockerSandboxHandle extends SandboxHandle {
  readonly containerId: string;
  readonly containerName: string;
}

type ContainerCreateOptions = Docker.ContainerCreateOptions;

/** Docker/podman API errors carry the HTTP status in `statusCode`. */
function statusOf(error: unknown): number | undefined {
  const code = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === "number" ? code : undefined;
}

function messageOf(error: unknown): string {
  const json = (error as { json?: { message?: unknown } } | null)?.json;
  if (json && typeof json.message === "string") return json.message;
  return error instanceof Error ? error.message : String(error);
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Container names allow [a-zA-Z0-9][a-zA-Z0-9_.-]*. */
const SANDBOX_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}$/;

export interface LogTailLimits {
  /** Stop reading after this many bytes of the stream. */
  maxBytes: number;
  /** Keep this many bytes of text from the end of what was read. */
  keepBytes: number;
  /** Stop reading after this long (a followed log of a running container never ends). */
  timeoutMs: number;
}

export interface LogTail {
  /** The end of the text read (log frames removed), at most `keepBytes`. */
  text: string;
  /** The stream ended before a limit was reached: `text` is the log's real end. */
  complete: boolean;
  /** Bytes of the stream read. */
  bytesRead: number;
}

/**
 * Reads a container log stream (Docker log frames: 8-byte header stream, 0, 0, 0, size BE; raw text when
 * not multiplexed) into its last `keepBytes` of text, never holding much more than that, and stops (and
 * destroys the stream) after `maxBytes` or `timeoutMs`. Never rejects.
 */
export function readLogTail(stream: NodeJS.ReadableStream, limits: LogTailLimits): Promise<LogTail> {
  return new Promise((resolve) => {
    const kept: Buffer[] = [];
    let keptBytes = 0;
    let bytesRead = 0;
    let mode: "unknown" | "frames" | "raw" = "unknown";
    let header = Buffer.alloc(0);
    let remaining = 0; // payload bytes left in the current frame
    let done = false;

    const keep = (data: Buffer) => {
      if (data.length === 0) return;
      kept.push(data);
      keptBytes += data.length;
      while (kept.length > 1 && keptBytes - (kept[0] as Buffer).length >= limits.keepBytes) {
        keptBytes -= (kept.shift() as Buffer).length;
      }
    };
    const onData = (chunk: Buffer | string) => {
      if (done) return;
      let data = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      bytesRead += data.length;
      if (mode === "unknown" && data.length > 0) {
        const framed = (data[0] as number) <= 2 && data.subarray(1, 4).every((byte) => byte === 0);
        mode = framed ? "frames" : "raw";
      }
      if (mode === "raw") keep(data);
      while (mode === "frames" && data.length > 0) {
        if (remaining > 0) {
          const payload = data.subarray(0, remaining);
          keep(payload);
          remaining -= payload.length;
          data = data.subarray(payload.length);
          continue;
        }
        const needed = 8 - header.length;
        header = Buffer.concat([header, data.subarray(0, needed)]);
        data = data.subarray(needed);
        if (header.length < 8) break;
        remaining = header.readUInt32BE(4);
        header = Buffer.alloc(0);
      }
      if (bytesRead >= limits.maxBytes) finish(false);
    };
    const finish = (complete: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.removeListener("data", onData);
      (stream as { destroy?: () => void }).destroy?.();
      const text = Buffer.concat(kept);
      resolve({
        text: text.subarray(Math.max(0, text.length - limits.keepBytes)).toString("utf8"),
        complete,
        bytesRead,
      });
    };
    const timer = setTimeout(() => finish(false), limits.timeoutMs);
    stream.on("data", onData);
    stream.once("end", () => finish(true));
    stream.once("close", () => finish(false));
    stream.on("error", () => finish(false));
  });
}

/**
 * A container's log as a stream, without following it (the engine ends it at the log's current end);
 * `timeoutMs` aborts the request, answered or not.
 */
function logStream(
  container: Docker.Container,
  timeoutMs: number,
  tail?: number,
): Promise<NodeJS.ReadableStream> {
  // container.logs() buffers the whole log unless it follows; dial the same request as a stream instead.
  return new Promise((resolve, reject) => {
    container.modem.dial(
      {
        path: `/containers/${container.id}/logs?`,
        method: "GET",
        isStream: true,
        abortSignal: AbortSignal.timeout(timeoutMs),
        statusCodes: { 200: true, 404: "no such container", 500: "server error" },
        options: { stdout: true, stderr: true, follow: false, ...(tail === undefined ? {} : { tail }) },
      },
      (error: unknown, stream: NodeJS.ReadableStream) => (error ? reject(error) : resolve(stream)),
    );
  });
}

export class DockerDriver implements SandboxDriver {
  readonly name: DriverName = "docker";
  readonly image: string;
  readonly executorId: string;
  /** Why `available()` last said no, for start-up logs. */
  unavailableReason: string | undefined;

  private docker: Docker | undefined;
  private readonly options: DockerDriverOptions;
  private readonly handles = new Set<DockerSandboxHandle>();
  private connecting: Promise<Docker> | undefined;
  private warnedPermissions = false;
  private inferOom: Promise<boolean> | undefined;

  constructor(options: DockerDriverOptions = {}) {
    this.options = options;
    this.image = options.image ?? DEFAULT_RUNTIME_IMAGE;
    this.executorId = options.executorId ?? hostname();
    this.docker = options.docker;
  }

  /** The engine answers a ping and the runtime image exists. */
  async available(): Promise<boolean> {
    const docker = await this.client().catch((error: unknown) => {
      this.unavailableReason = messageOf(error);
      return undefined;
    });
    if (!docker) return false;
    try {
      await withTimeout(docker.getImage(this.image).inspect(), PING_TIMEOUT_MS, "image inspect");
    } catch (error) {
      this.unavailableReason =
        statusOf(error) === 404
          ? `image ${this.image} not found (build it: scripts/build-runtime-image.sh)`
          : `image ${this.image}: ${messageOf(error)}`;
      return false;
    }
    this.unavailableReason = undefined;
    return true;
  }

  /** The dockerode client, after finding an engine that answers `/_ping`; throws when none does. */
  client(): Promise<Docker> {
    if (this.docker) return Promise.resolve(this.docker);
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connect(): Promise<Docker> {
    const candidates: Array<{ label: string; make: () => Docker }> = [];
    if (this.options.socketPath) {
      const socketPath = this.options.socketPath;
      candidates.push({ label: socketPath, make: () => new Docker({ socketPath }) });
    } else if (process.env.DOCKER_HOST) {
      // docker-modem reads DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH itself.
      candidates.push({ label: `DOCKER_HOST=${process.env.DOCKER_HOST}`, make: () => new Docker() });
    } else {
      for (const socketPath of DEFAULT_SOCKETS) {
        candidates.push({ label: socketPath, make: () => new Docker({ socketPath }) });
      }
    }
    const failures: string[] = [];
    for (const candidate of candidates) {
      try {
        const docker = candidate.make();
        await withTimeout(docker.ping(), PING_TIMEOUT_MS, "ping");
        this.docker = docker;
        return docker;
      } catch (error) {
        failures.push(`${candidate.label}: ${messageOf(error)}`);
      }
    }
    throw new Error(`no Docker Engine API answered (${failures.join("; ")})`);
  }

  async start(spec: SandboxSpec): Promise<DockerSandboxHandle> {
    if (!SANDBOX_ID.test(spec.id)) throw new Error(`invalid sandbox id ${JSON.stringify(spec.id)}`);
    const docker = await this.client();
    await this.prepareSocketDir(spec.socketDir);
    const options = this.createOptions(spec);
    const name = options.name ?? `${CONTAINER_PREFIX}${spec.id}`;

    let container: Docker.Container;
    try {
      container = await docker.createContainer(options);
    } catch (error) {
      if (statusOf(error) === 409) {
        // A leftover with the same name (ids are unique, so it is an orphan): replace it once.
        await this.removeContainer(docker.getContainer(name));
        container = await docker.createContainer(options).catch((retry: unknown) => {
          throw this.startError(spec, retry);
        });
      } else {
        throw this.startError(spec, error);
      }
    }
    try {
      await container.start();
    } catch (error) {
      await this.removeContainer(container);
      throw this.startError(spec, error);
    }
    const handle = this.track(spec.id, name, container);
    return handle;
  }

  /**
   * The container definition for a sandbox. Protected so tests can run a probe command in an otherwise
   * identical sandbox; production code never overrides it.
   */
  protected createOptions(spec: SandboxSpec): ContainerCreateOptions {
    const { limits } = spec;
    const nofile = this.options.nofile ?? 1024;
    const nproc = this.options.nproc ?? 8192;
    const fsize = limits.fileSizeMb * MIB;
    const labels: Record<string, string> = {
      [LABEL_SANDBOX]: spec.id,
      [LABEL_POOL]: spec.pool.kind,
      [LABEL_EXECUTOR]: this.executorId,
    };
    if (spec.pool.kind === "user") labels[LABEL_USER] = spec.pool.userId;
    else labels[LABEL_WORKER] = String(spec.pool.workerIndex);
    const env: Record<string, string> = {
      // The runtime ignores SIGXFSZ when told the file limit, so an oversized write is an OSError
      // (EFBIG) for the user's code instead of a dead sandbox.
      SINAS_LIMIT_FILE_MB: String(limits.fileSizeMb),
      ...spec.env,
      ...(spec.packagesDir ? { SINAS_PACKAGES_DIR: PACKAGES_MOUNT } : {}),
      SINAS_RUNTIME_SOCKET: `${SANDBOX_SOCKET_DIR}/runtime.sock`,
    };
    const binds = [`${spec.socketDir}:${SANDBOX_SOCKET_DIR}:rw`];
    if (spec.packagesDir) binds.push(`${spec.packagesDir}:${PACKAGES_MOUNT}:ro`);
    return {
      name: `${CONTAINER_PREFIX}${spec.id}`,
      Image: this.image,
      User: `${SANDBOX_UID}:${SANDBOX_UID}`,
      WorkingDir: "/tmp",
      Env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
      Labels: labels,
      Tty: false,
      OpenStdin: false,
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      StopSignal: "SIGKILL",
      HostConfig: {
        AutoRemove: false,
        Binds: binds,
        Memory: limits.memoryMb * MIB,
        MemorySwap: limits.memoryMb * MIB,
        NanoCpus: Math.round(limits.cpus * 1e9),
        PidsLimit: limits.pids,
        Ulimits: [
          { Name: "nofile", Soft: nofile, Hard: nofile },
          { Name: "nproc", Soft: nproc, Hard: nproc },
          { Name: "fsize", Soft: fsize, Hard: fsize },
          { Name: "core", Soft: 0, Hard: 0 },
        ],
        ReadonlyRootfs: true,
        Tmpfs: {
          "/tmp": `rw,nosuid,nodev,noexec,size=${limits.tmpfsMb}m,mode=1777`,
          // podman mounts unsized writable tmpfs on /run and /var/tmp of read-only containers; root-owned
          // 0755 tmpfs there keep them unwritable for uid 10001 (and are harmless under Docker).
          "/run": "rw,nosuid,nodev,noexec,size=64k,mode=755",
          "/var/tmp": "rw,nosuid,nodev,noexec,size=64k,mode=755",
        },
        // /dev/shm (multiprocessing needs it) is the only other writable place: as small as /tmp.
        ShmSize: limits.tmpfsMb * MIB,
        CapDrop: ["ALL"],
        SecurityOpt: ["no-new-privileges"],
        // User code can write to the container's real stderr (the runtime keeps a copy of it for its own
        // failures): without a cap the engine's log file grows until the host's disk is full. json-file
        // with max-size is honoured by Docker and by podman (its k8s-file: conmon truncates the file).
        LogConfig: { Type: "json-file", Config: { "max-size": LOG_MAX_SIZE, "max-file": "1" } },
        NetworkMode: limits.network,
        Privileged: false,
        RestartPolicy: { Name: "no" },
      },
    };
  }

  /**
   * Removes containers left by a previous run of this executor (label sinas.executor = executorId), or of
   * any executor with `{ allExecutors: true }`. Call once at start-up, before the pools start sandboxes.
   * Returns the names removed.
   */
  async removeOrphans(options: { allExecutors?: boolean } = {}): Promise<string[]> {
    const docker = await this.client();
    const filters: Record<string, string[]> = {
      label: options.allExecutors ? [LABEL_SANDBOX] : [LABEL_SANDBOX, `${LABEL_EXECUTOR}=${this.executorId}`],
    };
    const found = await docker.listContainers({ all: true, filters });
    const live = new Set([...this.handles].map((handle) => handle.containerId));
    const removed: string[] = [];
    await Promise.all(
      found
        .filter((info) => !live.has(info.Id))
        .map(async (info) => {
          await this.removeContainer(docker.getContainer(info.Id));
          removed.push((info.Names[0] ?? info.Id).replace(/^\//, ""));
        }),
    );
    return removed;
  }

  /** Kills every sandbox this driver started and drops the client. */
  async close(): Promise<void> {
    await Promise.all([...this.handles].map((handle) => handle.kill().catch(() => {})));
    this.docker = this.options.docker;
  }

  /**
   * Lets uid/gid 10001 reach `runtime.sock` in the executor's folder without giving it anything else
   * there (see the module comment).
   */
  async prepareSocketDir(socketDir: string): Promise<void> {
    const info = await stat(socketDir);
    if (!info.isDirectory()) throw new Error(`socket folder ${socketDir} is not a directory`);
    const socketPath = join(socketDir, "runtime.sock");
    const socket = await stat(socketPath).catch(() => undefined);
    try {
      if (info.gid !== SANDBOX_UID) await chown(socketDir, info.uid, SANDBOX_UID);
      await chmod(socketDir, 0o710);
      if (socket) {
        if (socket.gid !== SANDBOX_UID) await chown(socketPath, socket.uid, SANDBOX_UID);
        await chmod(socketPath, 0o660);
      }
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EPERM" && code !== "EACCES") throw error;
      if (!this.warnedPermissions) {
        this.warnedPermissions = true;
        this.warn(
          `docker driver: cannot give socket folders to gid ${SANDBOX_UID} (${code}); using mode 0711 and a ` +
            "0666 socket instead, so any local user who learns a folder's name can connect to it. Run the " +
            `executor as root or as a member of group ${SANDBOX_UID}.`,
        );
      }
      await chmod(socketDir, 0o711);
      if (socket) await chmod(socketPath, 0o666);
    }
  }

  private warn(message: string): void {
    (this.options.warn ?? console.warn)(message);
  }

  private startError(spec: SandboxSpec, error: unknown): Error {
    const detail = messageOf(error);
    if (statusOf(error) === 404 && /image/i.test(detail)) {
      return new Error(
        `docker sandbox ${spec.id}: image ${this.image} not found (build it: scripts/build-runtime-image.sh)`,
      );
    }
    return new Error(`docker sandbox ${spec.id} failed to start: ${detail}`);
  }

  /** Force-removes a container; a container already gone (404) or being removed (409) is fine. */
  private async removeContainer(container: Docker.Container): Promise<void> {
    try {
      await container.remove({ force: true, v: true });
    } catch (error) {
      const status = statusOf(error);
      if (status === 404) return;
      if (status === 409) {
        // "removal already in progress": wait until it is gone.
        for (let i = 0; i < 50; i++) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          const exists = await container.inspect().then(
            () => true,
            (inspectError: unknown) => statusOf(inspectError) !== 404,
          );
          if (!exists) return;
        }
      }
      throw error;
    }
  }

  private track(id: string, name: string, container: Docker.Container): DockerSandboxHandle {
    let killing: Promise<void> | undefined;
    let killed = false;
    let settle!: (exit: SandboxExit) => void;
    const exited = new Promise<SandboxExit>((resolve) => {
      settle = resolve;
    });

    const describeExit = async (): Promise<SandboxExit> => {
      let code: number | null = null;
      try {
        const result = (await container.wait({ condition: "not-running" })) as { StatusCode?: number };
        code = typeof result.StatusCode === "number" && result.StatusCode >= 0 ? result.StatusCode : null;
      } catch {
        // removed while waiting, or the engine went away: the inspect below tells what it can
      }
      if (killed) return { code, reason: "killed by the executor", oomKilled: false };
      let oomKilled = false;
      let engineError = "";
      try {
        const info = await container.inspect();
        oomKilled = info.State.OOMKilled === true;
        if (code === null && typeof info.State.ExitCode === "number") code = info.State.ExitCode;
        engineError = info.State.Error ?? "";
      } catch (error) {
        if (killed) return { code, reason: "killed by the executor", oomKilled: false };
        if (statusOf(error) === 404) {
          // Someone else removed it (another executor's removeOrphans, an operator): not an OOM kill.
          return { code, reason: `killed (container ${name} was removed by someone else)`, oomKilled: false };
        }
        engineError = messageOf(error);
      }
      let reason: string;
      let inferred = false;
      if (!oomKilled && code === 137 && !killed && (await this.infersOom())) {
        // A `rm -f` by someone else also ends in SIGKILL; that container disappears right after.
        await new Promise((resolve) => setTimeout(resolve, 250));
        const stillThere = await container.inspect().then(
          () => true,
          (error: unknown) => statusOf(error) !== 404,
        );
        if (!stillThere && !killed) {
          return { code, reason: `killed (container ${name} was removed by someone else)`, oomKilled: false };
        }
        oomKilled = !killed;
        inferred = oomKilled;
      }
      if (inferred) reason = "killed (out of memory: SIGKILL the engine did not report)";
      else if (oomKilled) reason = "killed (out of memory)";
      else if (code === 137) reason = "killed (SIGKILL, exit code 137)";
      else if (code === null) reason = `ended (exit state unknown${engineError ? `: ${engineError}` : ""})`;
      else reason = `exited with code ${code}`;
      if (!oomKilled && code !== 0) {
        // the engine may still be writing the last lines when wait returns: one retry
        let tail = await this.logTail(container);
        if (!tail) {
          await new Promise((resolve) => setTimeout(resolve, 200));
          tail = await this.logTail(container);
        }
        if (tail) reason += `: ${tail}`;
      }
      return { code, reason, oomKilled };
    };

    const handle = {
      id,
      containerId: container.id,
      containerName: name,
      exited,
      kill: (): Promise<void> => {
        if (!killing) {
          killed = true;
          killing = this.removeContainer(container).then(() => {
            this.handles.delete(handle);
            settle({ code: null, reason: "killed by the executor", oomKilled: false });
          });
          killing.catch(() => {
            killing = undefined; // let a later kill() retry
          });
        }
        return killing;
      },
    };
    this.handles.add(handle);

    describeExit()
      .then(settle, (error: unknown) =>
        settle({ code: null, reason: `ended (${messageOf(error)})`, oomKilled: false }),
      )
      .finally(() => {
        this.handles.delete(handle);
        if (!killing) {
          this.removeContainer(container).catch((error: unknown) => {
            this.warn(`docker driver: could not remove container ${name}: ${messageOf(error)}`);
          });
        }
      });
    return handle;
  }

  /** Whether a SIGKILL not sent by this driver counts as an OOM kill (see `inferOom`). */
  private infersOom(): Promise<boolean> {
    if (this.options.inferOom !== undefined) return Promise.resolve(this.options.inferOom);
    this.inferOom ??= this.client()
      .then((docker) => docker.version())
      .then((version) => {
        const components = (version as { Components?: Array<{ Name?: string }> }).Components ?? [];
        return components.some((component) => /podman/i.test(component.Name ?? ""));
      })
      .catch(() => false);
    return this.inferOom;
  }

  /**
   * The container's last output (runtime start-up failures print there), at most 1 KiB. User code can write
   * there too, so the log is read as a stream, bounded (LOG_TAIL_LIMITS), never as one buffer.
   */
  protected async logTail(container: Docker.Container, limits = LOG_TAIL_LIMITS): Promise<string> {
    try {
      // No `tail` at first: podman's compat endpoint then drops or reorders partial-line records (print()
      // to an unbuffered stderr writes the text and the newline separately). LogConfig keeps the whole log
      // far below maxBytes.
      let read = await readLogTail(await logStream(container, limits.timeoutMs), limits);
      if (!read.complete && read.bytesRead >= limits.maxBytes) {
        // An engine that ignored the log cap: its last lines only (possibly garbled by podman, see above).
        const stream = await logStream(container, limits.timeoutMs, LOG_FALLBACK_LINES);
        read = await readLogTail(stream, limits);
      }
      const text = read.text.trim();
      return text.length > 1024 ? `...${text.slice(-1024)}` : text;
    } catch {
      return "";
    }
  }
}
