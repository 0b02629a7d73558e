/**
 * The docker sandbox driver against a real Docker Engine API (podman's on CI: scripts/setup-podman.sh).
 * Skipped, with the reason printed, when no engine answers. Builds the runtime image when it is missing or
 * stale (scripts/build-runtime-image.sh is a no-op otherwise).
 *
 * Sandboxes run either the image's own command (the real runtime, executor-node/runtime/sinas_runtime.py)
 * or, through a test-only subclass hook, the stand-in below: it connects like the runtime, says `ready`,
 * and then evaluates probe snippets, so isolation is checked from inside a sandbox built exactly like
 * production ones (no `docker exec`).
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import type Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DockerDriver,
  type DockerSandboxHandle,
  LABEL_EXECUTOR,
  LABEL_POOL,
  LABEL_SANDBOX,
  LABEL_USER,
  LOG_MAX_SIZE,
  type LogTailLimits,
  readLogTail,
  SANDBOX_UID,
} from "../../executor-node/src/sandbox/docker";
import type { SandboxLimits, SandboxSpec } from "../../executor-node/src/sandbox/types";
import { ROOT_DIR } from "../../scripts/lib/stack";

/** Connects like the runtime, says ready, then runs `{"type":"probe","code"}` and answers pings. */
const STAND_IN = String.raw`
import json, os, signal, socket, sys, time, traceback
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path = os.environ.get("SINAS_RUNTIME_SOCKET", "/run/sinas/runtime.sock")
deadline = time.monotonic() + 10
while True:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        break
    except OSError:
        s.close()
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
def send(message):
    s.sendall((json.dumps(message) + "\n").encode())
send({"type": "ready", "pid": os.getpid(), "python": sys.version.split()[0], "stand_in": True})
for line in s.makefile("rb"):
    message = json.loads(line)
    if message["type"] == "ping":
        send({"type": "pong"})
    elif message["type"] == "probe":
        scope = {}
        try:
            exec(message["code"], scope)
            send({"type": "probe_result", "result": scope.get("result")})
        except BaseException:
            send({"type": "probe_result", "error": traceback.format_exc()})
`;

const LIMITS: SandboxLimits = {
  memoryMb: 128,
  cpus: 0.5,
  pids: 32,
  tmpfsMb: 8,
  fileSizeMb: 4,
  network: "none",
};

const REAL_RUNTIME = existsSync(join(ROOT_DIR, "executor-node/runtime/sinas_runtime.py"));
const EXECUTOR_ID = `sinas-test-${process.pid}-${randomBytes(3).toString("hex")}`;

/**
 * Test-only: replaces the command of chosen sandboxes (the production API has no such option), and reads a
 * container's log tail as the driver does for exit reasons, with other limits.
 */
class ProbeDriver extends DockerDriver {
  readonly commands = new Map<string, string[]>();
  protected override createOptions(spec: SandboxSpec): Docker.ContainerCreateOptions {
    const options = super.createOptions(spec);
    const command = this.commands.get(spec.id);
    if (command) options.Cmd = command;
    return options;
  }
  tail(container: Docker.Container, limits: LogTailLimits): Promise<string> {
    return this.logTail(container, limits);
  }
}

/** A container whose engine answers are counted: bytes of buffered answers and of streamed ones. */
function countingContainer(docker: Docker, id: string): { container: Docker.Container; bytes: () => number } {
  let bytes = 0;
  const container = docker.getContainer(id);
  const modem = container.modem as {
    dial(options: unknown, callback: (error: unknown, data: unknown) => void): void;
  };
  container.modem = Object.create(modem, {
    dial: {
      value: (options: unknown, callback: (error: unknown, data: unknown) => void) =>
        modem.dial(options, (error, data) => {
          if (Buffer.isBuffer(data)) bytes += data.length;
          else if (data && typeof (data as NodeJS.ReadableStream).on === "function") {
            (data as NodeJS.ReadableStream).on("data", (chunk: Buffer) => {
              bytes += chunk.length;
            });
          }
          callback(error, data);
        }),
    },
  });
  return { container, bytes: () => bytes };
}

/** Docker log frames (8-byte header: stream, 0, 0, 0, size BE) to text. */
function demux(buffer: Buffer): string {
  const parts: Buffer[] = [];
  for (let offset = 0; offset + 8 <= buffer.length; ) {
    const size = buffer.readUInt32BE(offset + 4);
    parts.push(buffer.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return Buffer.concat(parts).toString("utf8");
}

type Message = Record<string, unknown> & { type: string };

/** The executor's end of one sandbox's socket: listens before the sandbox starts, like the pool does. */
class RuntimeEnd {
  readonly server: Server;
  private socket: Socket | undefined;
  private buffered = "";
  private readonly queue: Message[] = [];
  private waiters: Array<(message: Message) => void> = [];

  private constructor(server: Server) {
    this.server = server;
    server.on("connection", (socket) => {
      this.socket = socket;
      socket.setEncoding("utf8");
      socket.on("data", (chunk: string) => {
        this.buffered += chunk;
        let newline = this.buffered.indexOf("\n");
        while (newline >= 0) {
          const line = this.buffered.slice(0, newline);
          this.buffered = this.buffered.slice(newline + 1);
          if (line.trim()) this.push(JSON.parse(line) as Message);
          newline = this.buffered.indexOf("\n");
        }
      });
      socket.on("error", () => {});
    });
  }

  static async listen(socketDir: string): Promise<RuntimeEnd> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(join(socketDir, "runtime.sock"), resolve);
    });
    return new RuntimeEnd(server);
  }

  private push(message: Message): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(message);
    else this.queue.push(message);
  }

  next(timeoutMs = 15_000): Promise<Message> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((waiter) => waiter !== deliver);
        reject(new Error(`no message from the sandbox within ${timeoutMs} ms`));
      }, timeoutMs);
      const deliver = (message: Message) => {
        clearTimeout(timer);
        resolve(message);
      };
      this.waiters.push(deliver);
    });
  }

  send(message: Message): void {
    if (!this.socket) throw new Error("the sandbox has not connected");
    this.socket.write(`${JSON.stringify(message)}\n`);
  }

  /** Runs Python in the stand-in; `result` is whatever the snippet assigned to `result`. */
  async probe<T = unknown>(code: string): Promise<T> {
    this.send({ type: "probe", code });
    const answer = await this.next();
    if (answer.error) throw new Error(`probe failed:\n${String(answer.error)}`);
    return answer.result as T;
  }

  close(): Promise<void> {
    this.socket?.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const probeDriver = new ProbeDriver({ executorId: EXECUTOR_ID });
const apiProblem = await probeDriver.client().then(
  () => undefined,
  (error: unknown) => (error instanceof Error ? error.message : String(error)),
);
if (apiProblem) {
  console.warn(
    `[docker-driver.test] SKIPPED: ${apiProblem}. Run scripts/setup-podman.sh (as root) to enable.`,
  );
}

function percentile(sorted: number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] as number;
}

async function gone(docker: Docker, id: string, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const exists = await docker
      .getContainer(id)
      .inspect()
      .then(
        () => true,
        (error: { statusCode?: number }) => error.statusCode !== 404,
      );
    if (!exists) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

describe.skipIf(apiProblem !== undefined)(
  `docker driver${apiProblem ? ` (skipped: ${apiProblem})` : ""}`,
  () => {
    const driver = probeDriver;
    let docker: Docker;
    const dirs: string[] = [];
    const ends: RuntimeEnd[] = [];
    const handles: DockerSandboxHandle[] = [];
    let counter = 0;

    /** A sandbox with its socket folder and listening end; `command` swaps in a probe command. */
    async function sandbox(
      options: { limits?: Partial<SandboxLimits>; command?: string[]; env?: Record<string, string> } = {},
    ): Promise<{ spec: SandboxSpec; end: RuntimeEnd; handle: DockerSandboxHandle }> {
      const socketDir = mkdtempSync(join(tmpdir(), "sinas-sbx-test-"));
      dirs.push(socketDir);
      const end = await RuntimeEnd.listen(socketDir);
      ends.push(end);
      const spec: SandboxSpec = {
        id: `${EXECUTOR_ID}-${++counter}`,
        pool: { kind: "user", userId: "user-1" },
        socketDir,
        env: options.env ?? {},
        limits: { ...LIMITS, ...options.limits },
      };
      if (options.command) driver.commands.set(spec.id, options.command);
      const handle = await driver.start(spec);
      handles.push(handle);
      return { spec, end, handle };
    }

    const standIn = ["python3", "-u", "-c", STAND_IN];

    beforeAll(() => {
      const build = spawnSync("bash", [join(ROOT_DIR, "scripts/build-runtime-image.sh")], {
        encoding: "utf8",
        timeout: 300_000,
      });
      if (build.status !== 0) {
        throw new Error(`scripts/build-runtime-image.sh failed:\n${build.stdout}\n${build.stderr}`);
      }
      console.log(build.stdout.trim());
    }, 300_000);

    beforeAll(async () => {
      docker = await driver.client();
      expect(await driver.available()).toBe(true);
    });

    afterAll(async () => {
      await Promise.all(handles.map((handle) => handle.kill().catch(() => {})));
      await driver.removeOrphans().catch(() => {});
      await Promise.all(ends.map((end) => end.close()));
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    });

    it(`starts the ${REAL_RUNTIME ? "real runtime" : "stand-in runtime"}, which connects and says ready`, async () => {
      const { end, handle, spec } = await sandbox(REAL_RUNTIME ? {} : { command: standIn });
      const ready = await end.next();
      expect(ready).toMatchObject({ type: "ready", python: expect.stringMatching(/^3\.11\./) });
      end.send({ type: "ping" });
      expect(await end.next()).toEqual({ type: "pong" });

      // the socket folder is reachable for gid 10001 only, and not writable for it
      const dirInfo = statSync(spec.socketDir);
      expect(dirInfo.mode & 0o777).toBe(0o710);
      expect(dirInfo.gid).toBe(SANDBOX_UID);
      const sockInfo = statSync(join(spec.socketDir, "runtime.sock"));
      expect(sockInfo.mode & 0o777).toBe(0o660);
      expect(sockInfo.gid).toBe(SANDBOX_UID);

      await handle.kill();
      expect(await handle.exited).toMatchObject({ reason: "killed by the executor", oomKilled: false });
      expect(await gone(docker, handle.containerId)).toBe(true);
      await handle.kill(); // idempotent
    });

    it("creates the container with the limits, labels and mounts asked for", async () => {
      const { end, handle, spec } = await sandbox({ command: standIn, env: { SINAS_EXTRA: "1" } });
      await end.next();
      const info = await docker.getContainer(handle.containerId).inspect();
      const host = info.HostConfig;
      expect(info.Name.replace(/^\//, "")).toBe(`sinas-sbx-${spec.id}`);
      expect(host.ReadonlyRootfs).toBe(true);
      expect(host.Memory).toBe(LIMITS.memoryMb * 1024 * 1024);
      expect(host.MemorySwap).toBe(LIMITS.memoryMb * 1024 * 1024);
      expect(host.PidsLimit).toBe(LIMITS.pids);
      expect(host.NanoCpus).toBe(LIMITS.cpus * 1e9);
      expect(host.NetworkMode).toBe("none");
      expect(host.AutoRemove).toBe(false);
      expect(host.Privileged).toBe(false);
      // podman reports the dropped capabilities one by one instead of "ALL"
      const capDrop = ((host.CapDrop ?? []) as string[]).map((cap) => cap.toUpperCase().replace(/^CAP_/, ""));
      const dropsDefaults = ["CHOWN", "DAC_OVERRIDE", "NET_RAW", "SETUID", "SYS_CHROOT"].every((c) =>
        capDrop.includes(c),
      );
      expect(capDrop.includes("ALL") || dropsDefaults).toBe(true); // CapBnd = 0 is checked from inside
      expect(host.CapAdd ?? []).toEqual([]);
      expect((host.SecurityOpt ?? []).join(",")).toMatch(/no-new-privileges/);
      expect(host.Tmpfs?.["/tmp"]).toMatch(/size=8m/);
      expect(host.Tmpfs?.["/tmp"]).toMatch(/noexec/);
      // podman appends its defaults: "<dir>:/run/sinas:rw,rprivate,rbind"
      expect(host.Binds).toEqual([
        expect.stringMatching(new RegExp(`^${spec.socketDir}:/run/sinas:rw(,|$)`)),
      ]);
      // podman reports them as RLIMIT_NOFILE, ...
      const ulimits = Object.fromEntries(
        (host.Ulimits ?? []).map((u) => [(u.Name ?? "").replace(/^RLIMIT_/, "").toLowerCase(), u.Hard]),
      );
      expect(ulimits).toMatchObject({ nofile: 1024, fsize: LIMITS.fileSizeMb * 1024 * 1024, core: 0 });
      expect(info.Config.User).toBe(`${SANDBOX_UID}:${SANDBOX_UID}`);
      expect(info.Config.Labels).toMatchObject({
        [LABEL_SANDBOX]: spec.id,
        [LABEL_POOL]: "user",
        [LABEL_USER]: "user-1",
        [LABEL_EXECUTOR]: EXECUTOR_ID,
      });
      expect(info.Config.Env).toEqual(
        expect.arrayContaining(["SINAS_RUNTIME_SOCKET=/run/sinas/runtime.sock", "SINAS_EXTRA=1"]),
      );
      await handle.kill();
    });

    it("caps the container log, so output on the real stderr cannot fill the host's disk", async () => {
      const flood = `import os, time
line = b"x" * 99 + b"\\n"
for _ in range(80_000):  # 8 MB
    os.write(2, line)
os.write(2, b"flood-done\\n")
time.sleep(600)`;
      const { handle } = await sandbox({ command: ["python3", "-c", flood] });
      const container = docker.getContainer(handle.containerId);
      const logConfig = (await container.inspect()).HostConfig.LogConfig;
      expect(logConfig?.Type).toBe("json-file");
      if (logConfig?.Config && Object.keys(logConfig.Config).length > 0) {
        expect(logConfig.Config).toMatchObject({ "max-size": LOG_MAX_SIZE, "max-file": "1" }); // Docker
      } else {
        // podman's compatible inspect leaves Config empty; its own API reports the size conmon enforces
        type Native = { HostConfig: { LogConfig: { Size?: string } } };
        const native = await new Promise<Native>((resolve, reject) =>
          docker.modem.dial(
            {
              path: `/v4.0.0/libpod/containers/${handle.containerId}/json?`, // podman >= 4
              method: "GET",
              statusCodes: { 200: true, 404: "no such container" },
              options: {},
            },
            (error, data) => (error ? reject(error) : resolve(data as Native)),
          ),
        );
        expect(native.HostConfig.LogConfig.Size).toBe("1MB");
      }
      let kept = 0;
      await expect
        .poll(
          async () => {
            const log = demux(await container.logs({ stdout: true, stderr: true, follow: false }));
            kept = log.length;
            return log.endsWith("flood-done\n");
          },
          { timeout: 30_000, interval: 250 },
        )
        .toBe(true);
      expect(kept).toBeLessThanOrEqual(1024 * 1024); // of 8 MB written
      await handle.kill();
    });

    it("reads a container's log only as a bounded tail", async () => {
      // 500 kB of numbered lines (with the engine's own framing still under its cap), an end marker;
      // then the container keeps running
      const writer = `import os, time
for i in range(5000):
    os.write(2, b"%05d" % i + b"y" * 94 + b"\\n")
os.write(2, b"tail-done\\n")
time.sleep(600)`;
      const { handle } = await sandbox({ command: ["python3", "-c", writer] });
      const container = docker.getContainer(handle.containerId);
      await expect
        .poll(async () => demux(await container.logs({ stdout: true, stderr: true, follow: false })), {
          timeout: 30_000,
          interval: 250,
        })
        .toMatch(/tail-done\n$/);

      // the reader stops after maxBytes and holds at most keepBytes, frames removed
      const limits = { maxBytes: 128 * 1024, keepBytes: 8 * 1024, timeoutMs: 10_000 };
      const stream = await container.logs({ stdout: true, stderr: true, follow: true });
      const read = await readLogTail(stream, limits);
      expect(read.complete).toBe(false);
      expect(read.bytesRead).toBeGreaterThanOrEqual(limits.maxBytes);
      expect(read.bytesRead).toBeLessThan(limits.maxBytes + 128 * 1024); // one more chunk at most
      expect(Buffer.byteLength(read.text)).toBeLessThanOrEqual(limits.keepBytes);
      expect(read.text).toMatch(/^[\dy\n]+$/); // frame headers removed
      const numbers = [...read.text.matchAll(/^(\d{5})y+$/gm)].map((match) => Number(match[1]));
      expect(numbers.length).toBeGreaterThan(50);
      expect(numbers).toEqual([...numbers].sort((a, b) => a - b)); // the end of what was read, in order

      // a followed log of a running container that says nothing more: the time limit ends the read
      const began = Date.now();
      const quiet = await readLogTail(await container.logs({ stdout: true, stderr: true, follow: true }), {
        maxBytes: 4 * 1024 * 1024,
        keepBytes: 64,
        timeoutMs: 1000,
      });
      expect(quiet).toMatchObject({ complete: false, text: expect.stringMatching(/tail-done\n$/) });
      expect(Date.now() - began).toBeLessThan(5000);

      // the driver's own tail, with a read limit the log exceeds: it reads no further, and asks for the
      // last lines instead
      const counted = countingContainer(docker, handle.containerId);
      const tail = await driver.tail(counted.container, limits);
      // What podman's `tail` gives back varies (it drops or reorders partial lines, so it may be the marker line
      // alone, and under load the request may time out, leaving ""); that the driver reads no further than its
      // limit does not.
      expect(tail).toMatch(/^(|(\.\.\.)?.*tail-done)$/s);
      expect(tail.length).toBeLessThanOrEqual(1024 + 3);
      expect(counted.bytes()).toBeLessThan(limits.maxBytes + 256 * 1024); // of the 500 kB log
      await handle.kill();

      // and as it does for an exit reason: a crash after a flood of output reports the output's end
      const { handle: crashed } = await sandbox({
        command: [
          "python3",
          "-c",
          "import os, sys\nfor _ in range(30_000): os.write(2, b'z' * 99 + b'\\n')\nprint('runtime broke', file=sys.stderr); sys.exit(3)",
        ],
      });
      const exit = await crashed.exited;
      expect(exit.code).toBe(3);
      expect(exit.reason).toMatch(/^exited with code 3: \.\.\.[z\n]+runtime broke$/);
      expect(exit.reason.length).toBeLessThanOrEqual(1100);
    });

    describe("inside a sandbox", () => {
      let end: RuntimeEnd;
      const secret = `sinas-secret-${randomBytes(8).toString("hex")}`;
      const hostMarker = join(tmpdir(), `sinas-host-marker-${randomBytes(4).toString("hex")}`);
      let tcpServer: Server | undefined;

      beforeAll(async () => {
        process.env.SINAS_DOCKER_TEST_SECRET = secret;
        writeFileSync(hostMarker, secret);
        ({ end } = await sandbox({ command: standIn }));
        expect(await end.next()).toMatchObject({ type: "ready", stand_in: true });
      });

      afterAll(() => {
        delete process.env.SINAS_DOCKER_TEST_SECRET;
        rmSync(hostMarker, { force: true });
        tcpServer?.close();
      });

      it("runs as uid 10001 without capabilities and with no-new-privileges", async () => {
        const status = await end.probe<Record<string, string>>(
          `import os
result = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
result["uid"] = os.getuid(); result["gid"] = os.getgid(); result["pid"] = os.getpid()`,
        );
        expect(status.uid).toBe(SANDBOX_UID);
        expect(status.gid).toBe(SANDBOX_UID);
        expect(status.CapEff).toBe("0000000000000000");
        expect(status.CapPrm).toBe("0000000000000000");
        expect(status.CapBnd).toBe("0000000000000000");
        expect(status.NoNewPrivs?.trim()).toBe("1");
        expect(status.pid).toBe(1); // own pid namespace
      });

      it("cannot write outside /tmp; /tmp is size-limited and noexec; rlimits hold", async () => {
        const result = await end.probe<Record<string, string>>(String.raw`
import errno, os, resource, shutil, subprocess
result = {}
for path in ["/x", "/usr/x", "/etc/x", "/opt/sinas/runtime/x", "/run/sinas/x", "/root/x", "/home"]:
    try:
        with open(path if path != "/home" else "/home/x", "w") as f:
            f.write("x")
        result[path] = "written"
    except OSError as e:
        result[path] = errno.errorcode.get(e.errno, str(e.errno))
# /tmp works, one file is capped by RLIMIT_FSIZE, the folder by the tmpfs size
with open("/tmp/ok", "w") as f:
    f.write("ok")
result["/tmp"] = "written"
try:
    with open("/tmp/big", "wb") as f:
        f.write(b"x" * (5 * 1024 * 1024))
    result["fsize"] = "written"
except OSError as e:
    result["fsize"] = errno.errorcode[e.errno]
os.remove("/tmp/big")
try:
    for i in range(4):
        with open(f"/tmp/fill{i}", "wb") as f:
            f.write(b"x" * (3 * 1024 * 1024))
    result["tmpfs"] = "written"
except OSError as e:
    result["tmpfs"] = errno.errorcode[e.errno]
for i in range(4):
    try: os.remove(f"/tmp/fill{i}")
    except OSError: pass
with open("/tmp/script", "w") as f:
    f.write("#!/usr/bin/python3\nprint(1)\n")
os.chmod("/tmp/script", 0o755)
try:
    subprocess.run(["/tmp/script"], check=True, capture_output=True)
    result["exec"] = "ran"
except OSError as e:
    result["exec"] = errno.errorcode[e.errno]
os.remove("/tmp/script")
result["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
result["core"] = resource.getrlimit(resource.RLIMIT_CORE)[1]
# every mount point the sandbox user can create a file in
writable = []
for line in open("/proc/mounts"):
    mount = line.split()[1]
    try:
        with open(os.path.join(mount, ".probe"), "w"):
            pass
        os.remove(os.path.join(mount, ".probe"))
        writable.append(mount)
    except OSError:
        pass
result["writable"] = writable
`);
        for (const path of ["/x", "/usr/x", "/etc/x", "/opt/sinas/runtime/x", "/root/x", "/home"]) {
          expect([path, result[path]]).toEqual([path, expect.stringMatching(/^(EROFS|EACCES|ENOENT)$/)]);
        }
        expect(result["/run/sinas/x"]).toBe("EACCES"); // the socket folder: search only
        expect(result["/tmp"]).toBe("written");
        expect(result.fsize).toBe("EFBIG");
        expect(result.tmpfs).toBe("ENOSPC");
        expect(result.exec).toBe("EACCES");
        expect(result.nofile).toBe(1024);
        expect(result.core).toBe(0);
        expect(result.writable).toContain("/tmp");
        for (const mount of result.writable as unknown as string[]) {
          expect(["/tmp", "/dev/shm", "/dev/mqueue"]).toContain(mount);
        }
      });

      it("sees neither the executor's environment nor host files nor host processes", async () => {
        const result = await end.probe<Record<string, unknown>>(`import os
result = {
  "env": dict(os.environ),
  "marker": os.path.exists(${JSON.stringify(hostMarker)}),
  "tmp": sorted(os.listdir("/tmp")),
  "run_sinas": None,
  "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
}
try:
    result["run_sinas"] = os.listdir("/run/sinas")
except OSError as e:
    result["run_sinas"] = type(e).__name__
`);
        const env = result.env as Record<string, string>;
        expect(JSON.stringify(env)).not.toContain(secret);
        expect(Object.keys(env).filter((key) => /proxy/i.test(key))).toEqual([]);
        expect(result.marker).toBe(false);
        expect(result.run_sinas).toBe("PermissionError"); // cannot list the socket folder
        expect((result.pids as number[]).length).toBeLessThan(5);
      });

      it("has no network with network=none", async () => {
        tcpServer = createServer((socket) => socket.end("hello\n"));
        await new Promise<void>((resolve) => tcpServer?.listen(0, "0.0.0.0", resolve));
        const port = (tcpServer.address() as { port: number }).port;
        const hostIp =
          Object.values(networkInterfaces())
            .flat()
            .find((nic) => nic && nic.family === "IPv4" && !nic.internal)?.address ?? "10.0.2.2";
        const result = await end.probe<Record<string, string>>(`import errno, socket
result = {"interfaces": ",".join(name for _, name in socket.if_nameindex())}
for name, addr in [("host", (${JSON.stringify(hostIp)}, ${port})), ("internet", ("1.1.1.1", 53))]:
    try:
        socket.create_connection(addr, timeout=3).close()
        result[name] = "connected"
    except OSError as e:
        result[name] = errno.errorcode.get(e.errno, type(e).__name__) if e.errno else type(e).__name__
try:
    socket.getaddrinfo("example.com", 443)
    result["dns"] = "resolved"
except OSError as e:
    result["dns"] = type(e).__name__
`);
        expect(result.interfaces).toBe("lo");
        expect(result.host).toMatch(/^(ENETUNREACH|EHOSTUNREACH|ECONNREFUSED|timeout|TimeoutError)$/);
        expect(result.host).not.toBe("connected");
        expect(result.internet).not.toBe("connected");
        expect(result.dns).toBe("gaierror");
      });

      it("caps processes/threads at PidsLimit", async () => {
        const result = await end.probe<{ started: number; error: string }>(`import threading, time
stop = threading.Event()
started, error = 0, ""
threads = []
try:
    for _ in range(200):
        t = threading.Thread(target=stop.wait)
        t.start()
        threads.append(t)
        started += 1
except RuntimeError as e:
    error = str(e)
stop.set()
for t in threads:
    t.join()
result = {"started": started, "error": error}
`);
        expect(result.error).toMatch(/can't start new thread/);
        expect(result.started).toBeLessThan(LIMITS.pids);
      });
    });

    it("network=bridge gives the sandbox an interface besides lo", async () => {
      const { end, handle } = await sandbox({ command: standIn, limits: { network: "bridge" } });
      await end.next();
      const names = await end.probe<string[]>(
        "import socket\nresult = [n for _, n in socket.if_nameindex()]",
      );
      expect(names).toContain("lo");
      expect(names.length).toBeGreaterThan(1);
      expect((await docker.getContainer(handle.containerId).inspect()).HostConfig.NetworkMode).toBe("bridge");
      await handle.kill();
    });

    it("available() says why not: no engine, or no image", async () => {
      const noEngine = new DockerDriver({ socketPath: join(tmpdir(), "sinas-no-such-engine.sock") });
      expect(await noEngine.available()).toBe(false);
      expect(noEngine.unavailableReason).toMatch(/no Docker Engine API answered/);
      const noImage = new DockerDriver({ image: "localhost/sinas-no-such-image:latest" });
      expect(await noImage.available()).toBe(false);
      expect(noImage.unavailableReason).toMatch(/not found .*build-runtime-image\.sh/);
    });

    it("a memory bomb ends the sandbox with oomKilled", async () => {
      const { handle } = await sandbox({
        limits: { memoryMb: 64 },
        command: ["python3", "-c", "x = []\nwhile True:\n    x.append(b'x' * (8 * 1024 * 1024))"],
      });
      const exit = await handle.exited;
      expect(exit).toMatchObject({
        oomKilled: true,
        reason: expect.stringMatching(/^killed \(out of memory/),
      });
      expect(await gone(docker, handle.containerId)).toBe(true); // removed by the driver
    });

    it("reports a crash with its exit code and last output, and removes the container", async () => {
      const { handle } = await sandbox({
        command: ["python3", "-c", "import sys; print('runtime broke', file=sys.stderr); sys.exit(3)"],
      });
      const exit = await handle.exited;
      expect(exit.code).toBe(3);
      expect(exit.oomKilled).toBe(false);
      expect(exit.reason).toMatch(/^exited with code 3: .*runtime broke/);
      expect(await gone(docker, handle.containerId)).toBe(true);
    });

    it("removeOrphans removes this executor's leftovers only", async () => {
      const { handle: mine } = await sandbox({ command: ["python3", "-c", "import time; time.sleep(600)"] });
      const otherDriver = new ProbeDriver({ executorId: `${EXECUTOR_ID}-other` });
      const otherDir = mkdtempSync(join(tmpdir(), "sinas-sbx-test-"));
      dirs.push(otherDir);
      otherDriver.commands.set(`${EXECUTOR_ID}-other`, ["python3", "-c", "import time; time.sleep(600)"]);
      const other = await otherDriver.start({
        id: `${EXECUTOR_ID}-other`,
        pool: { kind: "shared", workerIndex: 0 },
        socketDir: otherDir,
        env: {},
        limits: LIMITS,
      });
      try {
        // A new driver with the same executor id = this executor after a restart.
        const restarted = new DockerDriver({ executorId: EXECUTOR_ID });
        const removed = await restarted.removeOrphans();
        expect(removed).toContain(mine.containerName);
        expect(removed).not.toContain(other.containerName);
        expect(await gone(docker, mine.containerId)).toBe(true);
        // removed behind the handle's back: not mistaken for an OOM kill
        expect(await mine.exited).toMatchObject({
          oomKilled: false,
          reason: expect.stringMatching(/removed/),
        });
        expect((await docker.getContainer(other.containerId).inspect()).State.Running).toBe(true);
      } finally {
        await other.kill();
        await otherDriver.close();
      }
    });

    it("measures cold start: create + start until the runtime says ready", async () => {
      const runs = 10;
      const times: number[] = [];
      const startOnly: number[] = [];
      for (let i = 0; i < runs; i++) {
        const socketDir = mkdtempSync(join(tmpdir(), "sinas-sbx-test-"));
        dirs.push(socketDir);
        const end = await RuntimeEnd.listen(socketDir);
        ends.push(end);
        const spec: SandboxSpec = {
          id: `${EXECUTOR_ID}-cold-${i}`,
          pool: { kind: "shared", workerIndex: i },
          socketDir,
          env: {},
          limits: LIMITS,
        };
        if (!REAL_RUNTIME) driver.commands.set(spec.id, standIn);
        const t0 = performance.now();
        const handle = await driver.start(spec);
        startOnly.push(performance.now() - t0);
        handles.push(handle);
        expect((await end.next()).type).toBe("ready");
        times.push(performance.now() - t0);
        await handle.kill();
      }
      times.sort((a, b) => a - b);
      startOnly.sort((a, b) => a - b);
      const fmt = (ms: number) => `${ms.toFixed(0)} ms`;
      console.log(
        `[docker-driver.test] cold start (${REAL_RUNTIME ? "real runtime" : "stand-in"}, ${runs} runs): ` +
          `ready p50 ${fmt(percentile(times, 50))}, p95 ${fmt(percentile(times, 95))}; ` +
          `start() alone p50 ${fmt(percentile(startOnly, 50))}, p95 ${fmt(percentile(startOnly, 95))}`,
      );
    });
  },
);
