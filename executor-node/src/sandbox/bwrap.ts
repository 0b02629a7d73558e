/**
 * @module The `bwrap` driver: each sandbox is a bubblewrap container around the runtime.
 *
 * What the sandbox sees: a read-only root (bwrap's own tmpfs, remounted read-only) holding read-only
 * /usr (and the /lib*, /bin symlinks or dirs), /etc/ssl and a few /etc files (resolver files only with
 * network `bridge`; no passwd, no shadow), a staged read-only copy of the runtime at /opt/sinas/runtime
 * (copied into the executor's work folder, so no executor folder is mounted), its package folder (if
 * any) read-only at /opt/sinas/packages, its socket folder read-only at /run/sinas (connecting to a socket
 * needs no write access to the mount), a private tmpfs /tmp (size-capped where bwrap supports `--size`), a
 * minimal read-only /dev with a /dev/shm capped like /tmp, and its own /proc. Not the host's `/`,
 * not the executor's cwd, not the executor's environment (`--clearenv`, then only the spec's variables).
 * Namespaces: user, pid, ipc, uts, cgroup, and net when the network policy is `none` (a loopback of its
 * own: nothing on the host is reachable). No capabilities, no nested user namespaces (`--disable-userns`
 * where supported), its own session (no TIOCSTI), and it dies with the executor (`--die-with-parent`;
 * verified with kill -9 of the executor). User code runs as uid/gid 65534 inside.
 *
 * Limits actually enforced (measured on Linux 6.18, bwrap 0.8, executor running as root):
 * - memory: RLIMIT_AS (prlimit before exec, re-applied by the runtime), PER PROCESS: allocations fail
 *   with MemoryError (the runtime reports error_type `memory`); there is no cgroup, so no OOM kill and
 *   `oomKilled` is never true here. RLIMIT_AS counts address space, not resident memory. A job that forks
 *   N children can use up to N + 1 times the limit (N < pids).
 * - file size: RLIMIT_FSIZE; /tmp and /dev/shm size: tmpfs `size=` each; open files: RLIMIT_NOFILE 1024;
 *   no core dumps.
 * - pids (processes and threads): RLIMIT_NPROC. The kernel exempts processes whose real uid is root of
 *   the *initial* user namespace, and `--unshare-user --uid 65534` alone maps the sandbox's 65534 to host
 *   uid 0: a fork loop ran unbounded (200 of 200 forks succeeded under RLIMIT_NPROC=16). Therefore, when
 *   the executor is root, bwrap itself runs as a distinct unprivileged host uid per live sandbox (200000 +
 *   n, no passwd entry needed). Then RLIMIT_NPROC binds, and the kernel counts it per (user namespace,
 *   uid), i.e. per sandbox: with RLIMIT_NPROC=16 a fork loop got 14 children (16 minus bwrap's init and the
 *   runtime), two such sandboxes at once got 14 each; with SANDBOX_PIDS=64 `while True: os.fork()` stops
 *   at 63 processes in the sandbox, and the timeout's kill of bwrap takes the whole pid namespace down.
 *   When the executor is not root, bwrap runs as the executor's uid and RLIMIT_NPROC binds as well (it
 *   then also counts that uid's other processes on the host).
 * - CPU share: not enforced (no cgroup); a job's timeout kills the whole sandbox. What a job leaves running
 *   when it returns is bounded by neither the timeout nor (added up) the memory limit, so the pool ends such
 *   a sandbox (pool.ts): at the job's release when processes remain under bwrap (process-tree.ts), at the
 *   next idle check (SANDBOX_IDLE_CHECK_MS) when its idle runtime uses CPU (a thread left spinning). A thread
 *   that sleeps is left: it costs memory only, within the runtime's own RLIMIT_AS.
 * - network `bridge` shares the host's network namespace: the sandbox can reach the host's loopback
 *   services. Use docker for real bridged networking.
 */
import { spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  cpSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { RUNTIME_DIR, RUNTIME_SCRIPT } from "../runtime-files";
import { spawnChildSandbox } from "./child-handle";
import { findPrlimit, limitEnv, prlimitPrefix } from "./limits";
import { PACKAGES_MOUNT, type SandboxDriver, type SandboxHandle, type SandboxSpec } from "./types";

export interface BwrapDriverOptions {
  pythonBin: string;
  runtimeDir?: string;
  bwrapBin?: string;
  /** Where the runtime copy is staged (default: the system temp folder). */
  workDir?: string;
}

interface BwrapFeatures {
  size: boolean;
  disableUserns: boolean;
}

const SANDBOX_RUNTIME_DIR = "/opt/sinas/runtime";
const SANDBOX_SOCKET_DIR = "/run/sinas";
/** Host uids for sandboxes when the executor is root: one per live sandbox, never a real account's. */
const SANDBOX_UID_BASE = 200_000;
const SANDBOX_UID_COUNT = 50_000;
/** The uid/gid user code sees inside the sandbox. */
const INNER_ID = "65534";

const SYSTEM_PATHS = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];
const ETC_ALWAYS = ["/etc/ssl", "/etc/ca-certificates", "/etc/localtime"];
const ETC_NETWORK = [
  "/etc/resolv.conf",
  "/etc/hosts",
  "/etc/nsswitch.conf",
  "/etc/gai.conf",
  "/etc/host.conf",
];

const isRoot = () => process.getuid?.() === 0;

export function createBwrapDriver(options: BwrapDriverOptions): SandboxDriver {
  const bwrap = options.bwrapBin ?? "bwrap";
  const sourceRuntimeDir = options.runtimeDir ?? RUNTIME_DIR;
  const prlimit = findPrlimit();
  let features: BwrapFeatures | null = null;
  let stagedRuntime: string | null = null;
  const usedUids = new Set<number>();
  let nextUid = 0;

  const detectFeatures = (): BwrapFeatures => {
    if (features) return features;
    const help = spawnSync(bwrap, ["--help"], { encoding: "utf8", timeout: 5000 });
    const text = `${help.stdout ?? ""}${help.stderr ?? ""}`;
    features = { size: text.includes("--size"), disableUserns: text.includes("--disable-userns") };
    return features;
  };

  // A copy of the runtime that any sandbox uid can read, so no executor folder is mounted.
  const stageRuntime = (): string => {
    if (stagedRuntime) return stagedRuntime;
    const dir = mkdtempSync(join(options.workDir ?? tmpdir(), "runtime-"));
    cpSync(sourceRuntimeDir, dir, {
      recursive: true,
      filter: (source) => !source.includes("__pycache__"),
    });
    chmodTree(dir);
    stagedRuntime = dir;
    return dir;
  };

  const allocateUid = (): number => {
    for (let tries = 0; tries < SANDBOX_UID_COUNT; tries++) {
      const uid = SANDBOX_UID_BASE + ((nextUid + tries) % SANDBOX_UID_COUNT);
      if (!usedUids.has(uid)) {
        nextUid = (uid - SANDBOX_UID_BASE + 1) % SANDBOX_UID_COUNT;
        usedUids.add(uid);
        return uid;
      }
    }
    throw new Error("no free sandbox uid");
  };

  const buildCommand = (spec: SandboxSpec, runtimeDir: string): string[] => {
    const found = detectFeatures();
    const args = [
      bwrap,
      "--unshare-user",
      "--unshare-pid",
      "--unshare-ipc",
      "--unshare-uts",
      "--unshare-cgroup-try",
      ...(spec.limits.network === "none" ? ["--unshare-net"] : []),
      "--uid",
      INNER_ID,
      "--gid",
      INNER_ID,
      "--hostname",
      "sinas-sandbox",
      "--die-with-parent",
      "--new-session",
      ...(found.disableUserns ? ["--disable-userns"] : []),
      "--cap-drop",
      "ALL",
      "--clearenv",
    ];
    const env: Record<string, string> = {
      PATH: "/usr/local/bin:/usr/bin:/bin",
      HOME: "/tmp",
      TMPDIR: "/tmp",
      LANG: "C.UTF-8",
      ...spec.env,
      ...limitEnv(spec.limits, true),
      ...(spec.packagesDir ? { SINAS_PACKAGES_DIR: PACKAGES_MOUNT } : {}),
      SINAS_RUNTIME_SOCKET: `${SANDBOX_SOCKET_DIR}/runtime.sock`,
    };
    for (const [name, value] of Object.entries(env)) args.push("--setenv", name, value);
    args.push("--ro-bind", "/usr", "/usr");
    for (const path of SYSTEM_PATHS) args.push(...systemPathArgs(path));
    const python = pythonPrefix(options.pythonBin);
    if (python) args.push("--ro-bind", python, python);
    const etc = spec.limits.network === "none" ? ETC_ALWAYS : [...ETC_ALWAYS, ...ETC_NETWORK];
    for (const path of etc) args.push("--ro-bind-try", path, path);
    const tmpfsBytes = String(spec.limits.tmpfsMb * 1024 * 1024);
    // bwrap's /dev and /dev/shm are tmpfs without a size: writable, they would let user code fill the host's
    // memory. /dev/shm gets the /tmp cap and /dev is remounted read-only (its device nodes still work:
    // read-only applies to the folder, not the devices).
    args.push("--dev", "/dev");
    // Without `--size` (bwrap < 0.5) /tmp is uncapped as well, so a read-only /dev would only break what needs
    // a writable /dev/shm (Python's multiprocessing locks) and bound nothing.
    if (found.size) args.push("--size", tmpfsBytes, "--tmpfs", "/dev/shm", "--remount-ro", "/dev");
    args.push("--proc", "/proc");
    if (found.size) args.push("--size", tmpfsBytes);
    args.push("--tmpfs", "/tmp");
    args.push("--ro-bind", runtimeDir, SANDBOX_RUNTIME_DIR);
    if (spec.packagesDir) args.push("--ro-bind", spec.packagesDir, PACKAGES_MOUNT);
    args.push("--ro-bind", spec.socketDir, SANDBOX_SOCKET_DIR);
    // The root itself is a tmpfs bwrap made; read-only, or user code could fill the host's memory through it.
    args.push("--remount-ro", "/");
    args.push("--chdir", "/tmp");
    args.push(options.pythonBin, "-u", `${SANDBOX_RUNTIME_DIR}/${RUNTIME_SCRIPT}`);
    return prlimit ? [...prlimitPrefix(prlimit, spec.limits, true), ...args] : args;
  };

  const start = async (spec: SandboxSpec): Promise<SandboxHandle> => {
    const runtimeDir = stageRuntime();
    let uid: number | undefined;
    if (isRoot()) {
      uid = allocateUid();
      // Traversable but not listable or writable by the sandbox; the socket is the sandbox uid's alone.
      chmodSync(spec.socketDir, 0o711);
      for (const entry of ["runtime.sock"]) {
        try {
          chownSync(join(spec.socketDir, entry), uid, uid);
          chmodSync(join(spec.socketDir, entry), 0o600);
        } catch {
          // Not listening yet: the runtime will fail to connect and the pool reports it.
        }
      }
    }
    const command = buildCommand(spec, runtimeDir);
    try {
      const handle = await spawnChildSandbox({
        id: spec.id,
        command: command[0] as string,
        args: command.slice(1),
        cwd: "/",
        env: { PATH: "/usr/local/bin:/usr/bin:/bin" },
        uid,
        gid: uid,
      });
      if (uid !== undefined) {
        const used = uid;
        void handle.exited.then(() => usedUids.delete(used));
      }
      return handle;
    } catch (error) {
      if (uid !== undefined) usedUids.delete(uid);
      throw error;
    }
  };

  return {
    name: "bwrap",
    async available() {
      try {
        detectFeatures();
        const probeDir = mkdtempSync(join(tmpdir(), "sinas-bwrap-probe-"));
        try {
          const command = buildCommand(
            {
              id: "probe",
              pool: { kind: "shared", workerIndex: 0 },
              socketDir: probeDir,
              env: {},
              limits: { memoryMb: 256, cpus: 1, pids: 32, tmpfsMb: 1, fileSizeMb: 1, network: "none" },
            },
            probeDir,
          );
          // Run the interpreter instead of the runtime: proves bwrap, namespaces and Python all work.
          const pythonAt = command.lastIndexOf(options.pythonBin);
          const probe = [...command.slice(0, pythonAt), options.pythonBin, "-c", "pass"];
          const ok = await runProbe(probe, isRoot() ? SANDBOX_UID_BASE + SANDBOX_UID_COUNT : undefined);
          return ok;
        } finally {
          rmSync(probeDir, { recursive: true, force: true });
        }
      } catch {
        return false;
      }
    },
    start,
    async close() {
      if (stagedRuntime) rmSync(stagedRuntime, { recursive: true, force: true });
      stagedRuntime = null;
    },
  };
}

function runProbe(command: string[], uid: number | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(command[0] as string, command.slice(1), {
      env: { PATH: "/usr/local/bin:/usr/bin:/bin" },
      cwd: "/",
      uid,
      gid: uid,
      stdio: "ignore",
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("error", () => {
      clearTimeout(timer);
      resolve(false);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code === 0);
    });
  });
}

/** `/lib` and friends: a symlink (merged-/usr systems), a real folder to mount, or absent. */
function systemPathArgs(path: string): string[] {
  try {
    const stat = lstatSync(path);
    if (stat.isSymbolicLink()) return ["--symlink", readlinkSync(path), path];
    if (stat.isDirectory()) return ["--ro-bind", path, path];
  } catch {
    // absent
  }
  return [];
}

/** The installation prefix to mount when PYTHON_BIN lives outside /usr (e.g. /opt/python/bin/python3). */
function pythonPrefix(pythonBin: string): string | null {
  let real: string;
  try {
    real = realpathSync(pythonBin);
  } catch {
    return null;
  }
  if (real.startsWith("/usr/")) return null;
  const prefix = dirname(dirname(real));
  return prefix === "/" ? null : prefix;
}

function chmodTree(dir: string): void {
  chmodSync(dir, 0o755);
  const stack = [dir];
  while (stack.length > 0) {
    const current = stack.pop() as string;
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      if (entry.isDirectory()) {
        chmodSync(path, 0o755);
        stack.push(path);
      } else if (entry.isFile()) {
        chmodSync(path, 0o644);
      }
    }
  }
}
