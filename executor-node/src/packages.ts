/**
 * @module Python packages for sandboxes (sinas-spec §6.3, §10.2): a job's `requirements` (pip specs, approved
 * and version-locked by the API) are installed once per distinct set with `pip install --target` into a
 * content-addressed folder `<root>/<sha256 of the sorted specs>`, from PIP_INDEX_URL and/or PIP_FIND_LINKS.
 * Sandboxes get that folder read-only (SandboxSpec.packagesDir) and the runtime puts it on sys.path after
 * the standard library. Concurrent jobs needing the same set wait for one install; a failed install is
 * remembered for FAILURE_TTL_MS so a broken spec does not start pip for every job. At most
 * MAX_RUNNING_INSTALLS pip runs at once (the rest queue, first come first served), and a user may have
 * at most MAX_PENDING_PER_USER installs of distinct sets queued or running: a job starting another fails
 * at once (a burst of jobs with varied requirements would otherwise run one pip per set on this host).
 *
 * pip runs on the executor's host, with a clean environment (never the executor's: it holds the callback
 * key), `--only-binary=:all:` unless PIP_ALLOW_SOURCE_BUILDS=true (building an sdist runs its build scripts
 * here, outside any sandbox), and specs restricted to `name[extras] op version, ...` (no URLs, paths,
 * markers or options). The wheels must suit the sandbox's interpreter: pure-Python wheels always do;
 * binary wheels only when PIP_PYTHON has the sandbox's Python version and platform (docker: the image's
 * Python 3.11; bwrap/process: PYTHON_BIN).
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { compactRequirement, REQUIREMENT_SPEC } from "../../workers/lib/executor-protocol";

/** A sandbox's package set: `key` "" and `dir` null for none. */
export interface PackageSet {
  key: string;
  dir: string | null;
}

export const NO_PACKAGES: PackageSet = { key: "", dir: null };

export interface PackageInstallerOptions {
  /** Parent of the package folders (the executor's work folder + `/packages`). */
  root: string;
  /** PIP_PYTHON: the interpreter running pip; unset: the first of `candidates` that has pip. */
  pipPython?: string;
  /** Interpreters tried when `pipPython` is unset (PYTHON_BIN, then `python3` on PATH). */
  candidates: string[];
  indexUrl?: string;
  findLinks?: string;
  allowSourceBuilds?: boolean;
  timeoutMs?: number;
  log?: (line: string) => void;
}

/** The install failed (pip's message) or the specs were refused; jobs report it as `internal`. */
export class PackageInstallError extends Error {
  override readonly name = "PackageInstallError";
}

const INSTALL_TIMEOUT_MS = 300_000;
const MAX_RUNNING_INSTALLS = 2;
const MAX_PENDING_PER_USER = 4;
const FAILURE_TTL_MS = 30_000;
const OUTPUT_TAIL_CHARS = 16 * 1024;
const ERROR_LINES = 15;
const ERROR_CHARS = 2000;
/** Host variables pip may need to reach an index (proxies, CA bundles); nothing of the executor's own. */
const PASSED_ENV = [
  "HOME",
  "LANG",
  "TMPDIR",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "PIP_CERT",
  "PIP_TRUSTED_HOST",
  "PIP_CACHE_DIR",
];

export class PackageInstaller {
  private readonly installs = new Map<string, Promise<string>>();
  /** Per user, the keys of the installs they started that are queued or running. */
  private readonly pending = new Map<string, Set<string>>();
  /** Installs waiting for one of the MAX_RUNNING_INSTALLS turns, oldest first. */
  private readonly queue: Array<() => void> = [];
  private running = 0;
  private pipPython: Promise<string> | null = null;

  constructor(private readonly options: PackageInstallerOptions) {}

  /**
   * The folder holding `requirements`, installed if needed; NO_PACKAGES for an empty list. Joining an
   * install already under way is always allowed; starting one counts against `userId`'s pending installs.
   */
  async ensure(requirements: readonly string[], userId: string): Promise<PackageSet> {
    const specs = normalize(requirements);
    if (specs.length === 0) return NO_PACKAGES;
    const invalid = specs.find((spec) => !REQUIREMENT_SPEC.test(spec));
    if (invalid !== undefined) {
      throw new PackageInstallError(
        `Package installation failed: invalid requirement ${JSON.stringify(invalid)}`,
      );
    }
    const key = createHash("sha256").update(specs.join("\n")).digest("hex");
    let install = this.installs.get(key);
    if (!install) {
      // Installed already (by an earlier run of this executor: folders appear only complete, by rename): no pip
      // runs, so nothing counts against the user's pending installs.
      const installed = join(this.options.root, key);
      if (existsSync(installed)) return { key, dir: installed };
      const mine = this.pending.get(userId) ?? new Set<string>();
      if (mine.size >= MAX_PENDING_PER_USER) {
        throw new PackageInstallError(
          `Too many package installs pending for this user (${mine.size} requirement sets are queued or installing); retry when they finish`,
        );
      }
      install = this.install(key, specs);
      this.installs.set(key, install);
      mine.add(key);
      this.pending.set(userId, mine);
      const settled = () => {
        mine.delete(key);
        if (mine.size === 0 && this.pending.get(userId) === mine) this.pending.delete(userId);
      };
      install.then(settled, settled);
      install.catch(() => {
        setTimeout(() => {
          if (this.installs.get(key) === install) this.installs.delete(key);
        }, FAILURE_TTL_MS).unref();
      });
    }
    return { key, dir: await install };
  }

  /** Waits for one of the MAX_RUNNING_INSTALLS turns; the caller must call the returned release once. */
  private async turn(): Promise<() => void> {
    if (this.running >= MAX_RUNNING_INSTALLS) {
      await new Promise<void>((resolve) => this.queue.push(resolve));
    } else {
      this.running++;
    }
    return () => {
      const next = this.queue.shift();
      if (next)
        next(); // the turn passes on: `running` stays
      else this.running--;
    };
  }

  private async install(key: string, specs: string[]): Promise<string> {
    const final = join(this.options.root, key);
    if (await exists(final)) return final;
    const release = await this.turn();
    try {
      await this.pipInstall(key, specs, final);
    } finally {
      release();
    }
    return final;
  }

  private async pipInstall(key: string, specs: string[], final: string): Promise<void> {
    const { root } = this.options;
    await mkdir(root, { recursive: true, mode: 0o711 });
    const python = await this.python();
    const tmp = join(root, `.tmp-${key.slice(0, 16)}-${randomBytes(4).toString("hex")}`);
    const started = performance.now();
    try {
      await runPip(python, this.pipArgs(tmp, specs), this.options.timeoutMs ?? INSTALL_TIMEOUT_MS);
      await mkdir(tmp, { recursive: true }); // pip makes no folder when nothing was installed
      await makeReadable(tmp);
      await rename(tmp, final);
    } catch (error) {
      await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      throw error;
    }
    this.options.log?.(
      `installed packages ${specs.join(" ")} in ${Math.round(performance.now() - started)} ms (${key.slice(0, 12)})`,
    );
  }

  private pipArgs(target: string, specs: string[]): string[] {
    const { indexUrl, findLinks, allowSourceBuilds } = this.options;
    const args = [
      "-m",
      "pip",
      "install",
      "--no-input",
      "--disable-pip-version-check",
      "--no-warn-script-location",
      "--target",
      target,
    ];
    if (!allowSourceBuilds) args.push("--only-binary=:all:");
    if (indexUrl) args.push("--index-url", indexUrl);
    if (findLinks) args.push("--find-links", findLinks);
    if (findLinks && !indexUrl) args.push("--no-index");
    return [...args, "--", ...specs];
  }

  private python(): Promise<string> {
    this.pipPython ??= findPipPython(
      this.options.pipPython ? [this.options.pipPython] : this.options.candidates,
    ).catch((error: unknown) => {
      this.pipPython = null; // maybe pip gets installed later
      throw error;
    });
    return this.pipPython;
  }
}

/** Without whitespace (`a >= 1` is `a>=1`), deduplicated, sorted: the same set always hashes the same. */
export function normalize(requirements: readonly string[]): string[] {
  return [...new Set(requirements.map(compactRequirement).filter(Boolean))].sort();
}

async function findPipPython(candidates: string[]): Promise<string> {
  const tried: string[] = [];
  for (const python of [...new Set(candidates)]) {
    const probe = await run(python, ["-m", "pip", "--version"], 30_000);
    if (probe.code === 0) return python;
    tried.push(`${python}: ${lastLines(probe.output, 1) || `exit ${probe.code}`}`);
  }
  throw new PackageInstallError(
    `Package installation failed: no Python with pip found (${tried.join("; ")}); set PIP_PYTHON`,
  );
}

async function runPip(python: string, args: string[], timeoutMs: number): Promise<void> {
  const { code, output, timedOut } = await run(python, args, timeoutMs);
  if (timedOut) {
    throw new PackageInstallError(
      `Package installation failed: pip did not finish within ${Math.round(timeoutMs / 1000)} s`,
    );
  }
  if (code !== 0) {
    throw new PackageInstallError(
      `Package installation failed: ${lastLines(output, ERROR_LINES) || `pip exited with code ${code}`}`,
    );
  }
}

function run(
  command: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; output: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin" };
    for (const name of PASSED_ENV) {
      const value = process.env[name];
      if (value) env[name] = value;
    }
    const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let timedOut = false;
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-OUTPUT_TAIL_CHARS);
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      resolve({ code: null, output: error.message, timedOut: false });
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output, timedOut });
    });
  });
}

/** The last `count` non-empty lines, at most ERROR_CHARS characters. */
function lastLines(text: string, count: number): string {
  const lines = text
    .split("\n")
    .map((line) => line.trimEnd())
    .filter((line) => line.trim() !== "");
  const tail = lines.slice(-count).join("\n");
  return tail.length > ERROR_CHARS ? `...${tail.slice(-ERROR_CHARS)}` : tail;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Folders 0755 and files 0644 (or 0755 when executable): every sandbox uid reads them, none writes. */
async function makeReadable(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const path = join(entry.parentPath, entry.name);
    if (entry.isDirectory()) await chmod(path, 0o755);
    else if (entry.isFile()) await chmod(path, (await stat(path)).mode & 0o111 ? 0o755 : 0o644);
  }
}
