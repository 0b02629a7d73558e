import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ExecutorEventSchema,
  type ResultEvent,
  ResultEventSchema,
  type Step,
  StepSchema,
} from "../../workers/lib/executor-protocol";

// The resident Python runtime (executor-node/runtime/sinas_runtime.py) against a real Unix socket, as the
// executor drives it: PROTOCOL.md section 4.
const RUNTIME = fileURLToPath(new URL("../../executor-node/runtime/sinas_runtime.py", import.meta.url));
const PYTHON = "/usr/bin/python3";
/** ISO UTC with microseconds: nested calls within one millisecond must keep their order. */
const ISO_US = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const CONTEXT = {
  user_id: "user-1",
  user_email: "u@example.com",
  access_token: "token",
  execution_id: "exec",
  trigger_type: "WEBHOOK",
  chat_id: null,
};

type Message = { type: string; job_id?: string; [key: string]: unknown };
type Fn = { namespace: string; name: string; code: string; code_hash: string };
type Outcome = { events: Message[]; logs: Message[]; steps: Step[]; result: ResultEvent };

/** Python source from lines (keeps indentation visible in TypeScript). */
const py = (...lines: string[]) => `${lines.join("\n")}\n`;
const fn = (namespace: string, name: string, code: string): Fn => ({
  namespace,
  name,
  code,
  code_hash: createHash("sha256").update(code).digest("hex"),
});
/** The callable scope of a job: namespace -> name -> code. */
const scope = (...fns: Fn[]) => {
  const callable: Record<string, Record<string, { code: string; code_hash: string }>> = {};
  for (const f of fns) callable[f.namespace] = { ...callable[f.namespace], [f.name]: f };
  return callable;
};
/** The item at `index` (negative counts from the end); throws rather than returning undefined. */
function nth<T>(items: T[], index: number): T {
  const item = items.at(index);
  if (item === undefined) throw new Error(`no item at ${index} of ${items.length}`);
  return item;
}
/** The final state of a step by "namespace/name" (the last message about it wins). */
const finalStep = (steps: Step[]) => (key: string) =>
  nth(
    steps.filter((s) => `${s.namespace}/${s.name}` === key),
    -1,
  );

/** A runtime process connected to a test-owned socket server; messages are queued as they arrive. */
class Runtime {
  readonly output = { stdout: "", stderr: "" };
  private queue: Message[] = [];
  private waiters: Array<(m: Message) => void> = [];
  private partial = "";

  private constructor(
    readonly child: ChildProcess,
    private readonly socket: Socket,
    private readonly dir: string,
  ) {
    child.stdout?.on("data", (d) => (this.output.stdout += d));
    child.stderr?.on("data", (d) => (this.output.stderr += d));
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      const lines = (this.partial + chunk).split("\n");
      this.partial = lines.pop() ?? "";
      for (const line of lines.filter(Boolean)) this.push(JSON.parse(line) as Message);
    });
  }

  static async start(env: Record<string, string> = {}) {
    const dir = mkdtempSync(join(tmpdir(), "sinas-rt-"));
    const socketPath = join(dir, "runtime.sock");
    const server = createServer();
    const connected = new Promise<Socket>((resolve) => server.once("connection", resolve));
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    const child = spawn(PYTHON, ["-u", RUNTIME], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", SINAS_RUNTIME_SOCKET: socketPath, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const socket = await connected;
    server.close();
    return new Runtime(child, socket, dir);
  }

  send(message: Message) {
    this.socket.write(`${JSON.stringify(message)}\n`);
  }

  next(timeoutMs = 20_000): Promise<Message> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const waiter = (m: Message) => {
        clearTimeout(timer);
        resolve(m);
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error("no message from the runtime"));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Closes the socket (as the executor does) and resolves with the runtime's exit code. */
  async close(): Promise<number | null> {
    const exited = new Promise<number | null>((resolve) => {
      if (this.child.exitCode !== null) resolve(this.child.exitCode);
      else this.child.once("exit", (code) => resolve(code));
    });
    this.socket.end();
    const code = await exited;
    rmSync(this.dir, { recursive: true, force: true });
    return code;
  }

  private push(message: Message) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(message);
    else this.queue.push(message);
  }
}

/** Reads the messages of one job up to its result, validating each against the protocol schemas. */
async function collect(rt: Runtime, jobId: string): Promise<Outcome> {
  const outcome: Omit<Outcome, "result"> = { events: [], logs: [], steps: [] };
  for (;;) {
    const message = await rt.next();
    expect(message.job_id).toBe(jobId);
    expect(ExecutorEventSchema.safeParse(message).success).toBe(true);
    outcome.events.push(message);
    if (message.type === "log") {
      expect(message.at).toMatch(ISO_US);
      outcome.logs.push(message);
    } else if (message.type === "step") {
      outcome.steps.push(StepSchema.parse(message.step));
    } else {
      return { ...outcome, result: ResultEventSchema.parse(message) };
    }
  }
}

async function execute(
  rt: Runtime,
  f: Fn,
  input: unknown,
  options: { callable?: ReturnType<typeof scope>; executionId?: string } = {},
) {
  const jobId = randomUUID();
  const { callable = scope(f), executionId = randomUUID() } = options;
  const { code, code_hash, namespace, name } = f;
  rt.send({
    type: "execute",
    job_id: jobId,
    execution_id: executionId,
    function: { namespace, name, code, code_hash },
    callable,
    input,
    context: CONTEXT,
  });
  return collect(rt, jobId);
}

async function resume(rt: Runtime, executionId: string, input: unknown) {
  const jobId = randomUUID();
  rt.send({ type: "resume", job_id: jobId, execution_id: executionId, input });
  return collect(rt, jobId);
}

async function ping(rt: Runtime) {
  rt.send({ type: "ping" });
  expect(await rt.next()).toEqual({ type: "pong" });
}

describe("python runtime", () => {
  let rt: Runtime;
  let ready: Message;

  beforeAll(async () => {
    rt = await Runtime.start();
    ready = await rt.next();
  });

  afterAll(async () => {
    expect(await rt.close()).toBe(0);
    expect(rt.output).toEqual({ stdout: "", stderr: "" });
  });

  it("announces itself with ready and answers ping", async () => {
    expect(ready).toEqual({
      type: "ready",
      pid: rt.child.pid,
      python: expect.stringMatching(/^3\.11\.\d+$/),
    });
    await ping(rt);
  });

  it("runs a function as one top-level step", async () => {
    const add = fn("default", "add", py("def add(input, context):", "    return input['a'] + input['b']"));
    const { steps, result, logs } = await execute(rt, add, { a: 2, b: 3 });
    expect(result).toMatchObject({ status: "completed", result: 5 });
    expect(result.duration_ms).toBeGreaterThanOrEqual(0);
    expect(logs).toEqual([]);
    expect(steps.map((s) => s.status)).toEqual(["RUNNING", "COMPLETED"]);
    const [running, done] = [nth(steps, 0), nth(steps, 1)];
    expect(done).toMatchObject({ id: running.id, parent_id: null, namespace: "default", name: "add" });
    expect(done).toMatchObject({ input: { a: 2, b: 3 }, output: 5 });
    expect(done.started_at).toMatch(ISO_US);
    expect(done.completed_at).toMatch(ISO_US);
    expect(done.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it("captures print, stream writes, threads and subprocess output as log events", async () => {
    const chatty = fn(
      "default",
      "chatty",
      py(
        "import os, sys, threading",
        "def chatty(input, context):",
        "    print('hello', input['who'])",
        "    print('oops', file=sys.stderr)",
        "    sys.stdout.write('partial')",
        "    t = threading.Thread(target=lambda: print('from thread'))",
        "    t.start()",
        "    t.join()",
        "    os.system('echo from subprocess')",
        "    print('é' * 5000)",
        "    return 'done'",
      ),
    );
    const { events, logs, result } = await execute(rt, chatty, { who: "ada" });
    expect(result).toMatchObject({ status: "completed", result: "done" });
    const text = (stream: string) =>
      logs
        .filter((l) => l.stream === stream)
        .map((l) => l.text)
        .join("");
    expect(text("stdout")).toBe(`hello ada\npartialfrom thread\nfrom subprocess\n${"é".repeat(5000)}\n`);
    expect(text("stderr")).toBe("oops\n");
    for (const log of logs) expect(Buffer.byteLength(String(log.text))).toBeLessThanOrEqual(8192);
    // Logs come between the RUNNING and the final step, and nothing reaches the runtime's own stdout/stderr.
    expect(events.at(-2)).toMatchObject({ type: "step", step: { status: "COMPLETED" } });
    expect(rt.output).toEqual({ stdout: "", stderr: "" });
  });

  const chain = (cCode: string) => {
    const a = fn(
      "default",
      "a",
      py("def a(input, context):", "    return {'a': tools.b({'n': input['n'] + 1})}"),
    );
    const b = fn(
      "tools",
      "b",
      py("def b(input, context):", "    return {'b': c({'n': input['n'] * 10}, context)}"),
    );
    const c = fn("tools", "c", cCode);
    return { a, callable: scope(a, b, c) };
  };

  it("tracks A -> B -> C as a step tree with parent links, inputs, outputs and durations", async () => {
    const { a, callable } = chain(
      py("def c(input, context):", "    return {'c': input['n'] + 1, 'user': context['user_id']}"),
    );
    const { steps, result } = await execute(rt, a, { n: 1 }, { callable });
    expect(result).toMatchObject({ status: "completed", result: { a: { b: { c: 21, user: "user-1" } } } });
    expect(steps.map((s) => `${s.name}:${s.status}`)).toEqual([
      "a:RUNNING",
      "b:RUNNING",
      "c:RUNNING",
      "c:COMPLETED",
      "b:COMPLETED",
      "a:COMPLETED",
    ]);
    const step = finalStep(steps);
    const [sa, sb, sc] = [step("default/a"), step("tools/b"), step("tools/c")];
    expect(sa).toMatchObject({
      parent_id: null,
      input: { n: 1 },
      output: { a: { b: { c: 21, user: "user-1" } } },
    });
    expect(sb).toMatchObject({ parent_id: sa.id, input: { n: 2 }, output: { b: { c: 21, user: "user-1" } } });
    expect(sc).toMatchObject({ parent_id: sb.id, input: { n: 20 }, output: { c: 21, user: "user-1" } });
    for (const s of [sa, sb, sc]) expect(s.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it("tracks bare-name calls of the own namespace (spec S17)", async () => {
    const double = fn(
      "default",
      "double",
      py("def double(input, context):", '    return {"v": input["v"] * 2}'),
    );
    const quad = fn(
      "default",
      "quad",
      py(
        "def quad(input, context):",
        '    r = double({"v": input["body"]["v"]}, context)',
        '    return {"v": double(r, context)["v"]}',
      ),
    );
    const { steps, result } = await execute(rt, quad, { body: { v: 3 } }, { callable: scope(quad, double) });
    expect(result.result).toEqual({ v: 12 });
    const doubles = steps.filter((s) => s.name === "double" && s.status === "COMPLETED");
    expect(doubles.map((s) => [s.input, s.output])).toEqual([
      [{ v: 3 }, { v: 6 }],
      [{ v: 6 }, { v: 12 }],
    ]);
  });

  it("marks C, B and A failed when C raises, with tracebacks of user lines only", async () => {
    const { a, callable } = chain(
      py("def c(input, context):", "    x = input['n']", "    raise ValueError(f'boom {x}')"),
    );
    const { steps, result } = await execute(rt, a, { n: 1 }, { callable });
    expect(result).toMatchObject({ status: "failed", error: "ValueError: boom 20", error_type: "exception" });
    for (const step of ["default/a", "tools/b", "tools/c"].map(finalStep(steps))) {
      expect(step).toMatchObject({ status: "FAILED", error: "ValueError: boom 20" });
      expect(step.traceback).toContain('File "<tools/c>", line 3, in c');
    }
    expect(result.traceback).toContain('File "<default/a>", line 2, in a');
    expect(result.traceback).toContain("raise ValueError(f'boom {x}')");
    expect(result.traceback).not.toContain("sinas_");
  });

  it("reports a function its code does not define as not_found", async () => {
    const f = fn("default", "add", py("def other(input, context):", "    return 1"));
    const { steps, result } = await execute(rt, f, {});
    expect(steps).toEqual([]);
    expect(result).toMatchObject({
      status: "failed",
      error_type: "not_found",
      error: "Function 'default/add' not found: its code defines no function 'add'",
    });
  });

  it("fails results that are not JSON and returns None as null", async () => {
    const bad = fn("default", "bad", py("def bad(input, context):", "    return {'s': {1, 2}}"));
    const { steps, result } = await execute(rt, bad, {});
    expect(result).toMatchObject({ status: "failed", error_type: "invalid_result" });
    expect(result.error).toContain("not JSON-serializable");
    expect(steps.at(-1)?.status).toBe("FAILED");
    const nan = fn("default", "nan", py("def nan(input, context):", "    return float('nan')"));
    expect((await execute(rt, nan, {})).result.error_type).toBe("invalid_result");
    const none = fn("default", "none", py("def none(input, context):", "    pass"));
    expect((await execute(rt, none, {})).result).toMatchObject({ status: "completed", result: null });
  });

  it("reports exceptions as type and message with the user's traceback", async () => {
    const f = fn("default", "f", py("def f(input, context):", "    return {}['missing']"));
    const { result } = await execute(rt, f, {});
    expect(result).toMatchObject({ status: "failed", error: "KeyError: 'missing'", error_type: "exception" });
    expect(result.traceback).toMatch(/File "<default\/f>", line 2, in f\n {4}return \{\}\['missing'\]/);
  });

  it("compiles once per code_hash and leaks no globals between jobs", async () => {
    const code = py(
      "import sys",
      "def probe(input, context):",
      "    global marker",
      "    leaked = 'marker' in globals()",
      "    marker = input['v']",
      "    seen = sys.__dict__.setdefault('_sinas_test_codes', [])",
      "    seen.append(sys._getframe().f_code)",
      "    return {'leaked': leaked, 'compiled_once': all(c is seen[0] for c in seen)}",
    );
    const probe = fn("default", "probe", code);
    expect((await execute(rt, probe, { v: 1 })).result.result).toEqual({
      leaked: false,
      compiled_once: true,
    });
    expect((await execute(rt, probe, { v: 2 })).result.result).toEqual({
      leaked: false,
      compiled_once: true,
    });
    const rehashed = { ...probe, code_hash: "another-hash" };
    expect((await execute(rt, rehashed, { v: 3 })).result.result).toEqual({
      leaked: false,
      compiled_once: false,
    });
  });

  it("exposes callable namespaces as objects, keyword names through `namespaces`", async () => {
    const charge = fn(
      "payments",
      "charge",
      py("def charge(input, context):", "    return {'charged': input['amount']}"),
    );
    const hello = fn(
      "class",
      "hello",
      py("def hello(input, context):", "    return 'hi ' + context['user_id']"),
    );
    const main = fn(
      "default",
      "main",
      py(
        "def main(input, context):",
        "    out = {'one': payments.charge({'amount': 3}), 'kw': payments.charge(amount=4)}",
        "    out['hello'] = namespaces['class'].hello()",
        "    try:",
        "        payments.refund({})",
        "    except AttributeError as exc:",
        "        out['missing'] = str(exc)",
        "    return out",
      ),
    );
    const { steps, result } = await execute(rt, main, {}, { callable: scope(main, charge, hello) });
    expect(result.result).toEqual({
      one: { charged: 3 },
      kw: { charged: 4 },
      hello: "hi user-1",
      missing: "Namespace 'payments' has no function 'refund' callable from here (available: charge)",
    });
    const top = nth(steps, 0);
    const children = steps.filter((s) => s.status === "COMPLETED" && s.parent_id === top.id);
    expect(children.map((s) => `${s.namespace}/${s.name}`)).toEqual([
      "payments/charge",
      "payments/charge",
      "class/hello",
    ]);
  });

  it("pauses generators at yield and resumes them until they return", async () => {
    const greet = fn(
      "tools",
      "greet",
      py("def greet(input, context):", "    return 'hello ' + input['name']"),
    );
    const survey = fn(
      "default",
      "survey",
      py(
        "def survey(input, context):",
        "    name = yield {'prompt': 'Name?', 'schema': {'type': 'object'}}",
        "    greeting = tools.greet(name)",
        "    age = yield {'prompt': f'{greeting}, age?', 'schema': {'type': 'integer'}}",
        "    return {'greeting': greeting, 'age': age, 'start': input['start']}",
      ),
    );
    const executionId = randomUUID();
    const first = await execute(rt, survey, { start: 1 }, { callable: scope(survey, greet), executionId });
    expect(first.result).toMatchObject({
      status: "awaiting_input",
      prompt: "Name?",
      schema: { type: "object" },
    });
    expect(first.steps.map((s) => s.status)).toEqual(["RUNNING"]);
    const top = nth(first.steps, 0);

    const second = await resume(rt, executionId, { name: "ada" });
    expect(second.result).toMatchObject({ status: "awaiting_input", prompt: "hello ada, age?" });
    expect(second.steps.at(-1)).toMatchObject({ name: "greet", status: "COMPLETED", parent_id: top.id });

    const last = await resume(rt, executionId, 36);
    expect(last.result).toMatchObject({
      status: "completed",
      result: { greeting: "hello ada", age: 36, start: 1 },
    });
    expect(last.steps).toEqual([
      expect.objectContaining({
        id: top.id,
        status: "COMPLETED",
        output: { greeting: "hello ada", age: 36, start: 1 },
      }),
    ]);

    const again = await resume(rt, executionId, {});
    expect(again.result).toMatchObject({
      status: "failed",
      error_type: "not_found",
      error: `No paused execution '${executionId}' in this sandbox`,
    });
  });

  it("completes a generator returning None with {} and refuses unknown executions", async () => {
    const ask = fn(
      "default",
      "ask",
      py("def ask(input, context):", "    yield {'prompt': 'ok?', 'schema': {}}"),
    );
    const executionId = randomUUID();
    expect((await execute(rt, ask, {}, { executionId })).result.status).toBe("awaiting_input");
    expect((await resume(rt, executionId, true)).result).toMatchObject({ status: "completed", result: {} });
    expect((await resume(rt, "nope", {})).result).toMatchObject({
      status: "failed",
      error_type: "not_found",
      error: "No paused execution 'nope' in this sandbox",
    });
  });

  it("turns sys.exit() in user code into a failed job and keeps serving", async () => {
    const quit = fn("default", "quit", py("import sys", "def quit(input, context):", "    sys.exit(3)"));
    const { steps, result } = await execute(rt, quit, {});
    expect(result).toMatchObject({ status: "failed", error: "SystemExit: 3", error_type: "exception" });
    expect(steps.at(-1)?.status).toBe("FAILED");
    await ping(rt);
  });
});

describe("python runtime with SINAS_LIMIT_MEMORY_MB", () => {
  it("reports a MemoryError as error_type memory, survives it and exits when the socket closes", async () => {
    const rt = await Runtime.start({ SINAS_LIMIT_MEMORY_MB: "200" });
    expect((await rt.next()).type).toBe("ready");
    const hog = fn(
      "default",
      "hog",
      py("def hog(input, context):", "    data = bytearray(1024 ** 3)", "    return len(data)"),
    );
    const { result } = await execute(rt, hog, {});
    expect(result).toMatchObject({ status: "failed", error: "MemoryError", error_type: "memory" });
    const small = fn(
      "default",
      "small",
      py("def small(input, context):", "    return len(bytearray(10 ** 6))"),
    );
    expect((await execute(rt, small, {})).result.result).toBe(1_000_000);
    expect(await rt.close()).toBe(0);
    expect(rt.output).toEqual({ stdout: "", stderr: "" });
  });
});
