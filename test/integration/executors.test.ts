/**
 * Several executors behind one EXECUTOR_URL (a balancer that knows nothing of runs): a paused generator lives in
 * the memory of the executor that ran it, so its resume must reach that executor, by the URL its started event
 * named (EXECUTOR_PUBLIC_URL), not through the balancer.
 */
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../executor-node/src/config";
import { type RunningExecutor, startExecutor } from "../../executor-node/src/executor";
import { findPort } from "../../scripts/lib/ports";
import { api, IDENTITY_VARS, login, type Session } from "../helpers/auth";
import { createFunction, execute, pythonFunction } from "../helpers/functions";
import { stackSecrets } from "../helpers/secrets";
import { startTestStack, type TestStack } from "../helpers/stack";

/**
 * Forwards everything to the stack's executor, but resume jobs and cancels to the other one: what a round-robin
 * balancer does to a run's second job half of the time, here every time.
 */
class Balancer {
  readonly seen: { path: string; kind: string | null; target: "first" | "second" }[] = [];
  first = "";
  second = "";
  #server: Server | undefined;

  async start(): Promise<string> {
    this.#server = createServer((incoming, outgoing) => {
      const chunks: Buffer[] = [];
      incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
      incoming.on("end", () => {
        const body = Buffer.concat(chunks);
        const path = incoming.url ?? "/";
        let kind: string | null = null;
        try {
          kind = (JSON.parse(body.toString("utf8")) as { kind?: string }).kind ?? null;
        } catch {
          // Not JSON (GET /health): routed as any other request.
        }
        const target = kind === "resume" || path.endsWith("/cancel") ? "second" : "first";
        const base = target === "first" ? this.first : this.second;
        // The stack's health checks come before its executor's URL is known here.
        if (!base) return void outgoing.writeHead(503).end();
        this.seen.push({ path, kind, target });
        const forwarded = httpRequest(
          new URL(path, base),
          { method: incoming.method, headers: incoming.headers },
          (answer) => {
            outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(outgoing);
          },
        );
        forwarded.on("error", () => outgoing.destroy());
        forwarded.end(body);
      });
    });
    await new Promise<void>((resolve) => this.#server?.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.#server?.closeAllConnections();
    return new Promise((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }
}

let stack: TestStack;
let alice: Session;
let second: RunningExecutor;
const balancer = new Balancer();

beforeAll(async () => {
  const balancerUrl = await balancer.start();
  stack = await startTestStack({ workerVars: { ...IDENTITY_VARS, EXECUTOR_URL: balancerUrl } });
  balancer.first = stack.executorUrl;
  const secrets = stackSecrets(stack);
  const port = await findPort(0);
  second = await startExecutor(
    loadConfig({
      EXECUTOR_PORT: String(port),
      EXECUTOR_JOB_PUBLIC_KEY: secrets.EXECUTOR_JOB_PUBLIC_KEY,
      EXECUTOR_CALLBACK_PRIVATE_KEY: secrets.EXECUTOR_CALLBACK_PRIVATE_KEY,
      EXECUTOR_PUBLIC_URL: `http://127.0.0.1:${port}`,
      SANDBOX_DRIVER: "process",
      POOL_WARM_PER_USER: "0",
    }),
    { log: () => undefined },
  );
  balancer.second = `http://127.0.0.1:${port}`;
  alice = await login(stack, "alice@acme.io");
});
afterAll(async () => {
  await stack?.stop();
  await second?.close();
  await balancer.close();
});

describe("several executors behind one EXECUTOR_URL", () => {
  it("resumes a paused generator on the executor holding it, not where the balancer sends jobs", async () => {
    await createFunction(
      stack,
      alice,
      pythonFunction(
        "interview",
        '    name = yield {"prompt": "Your name?", "schema": {"type": "object"}}\n    return {"hello": name["name"]}',
      ),
    );
    const run = await execute(stack, alice, { name: "interview" });
    expect(run.body).toMatchObject({ status: "awaiting_input", prompt: "Your name?" });
    const executionId = (run.body as { execution_id: string }).execution_id;

    const resumed = await api(stack, alice, "POST", `/executions/${executionId}/continue`, {
      input: { name: "Ada" },
    });
    expect(resumed.status, JSON.stringify(resumed.body)).toBe(200);
    expect(resumed.body).toMatchObject({ status: "COMPLETED", output_data: { hello: "Ada" } });
    // The run's job went through the balancer (to the first executor); its resume went to that executor directly.
    const jobs = balancer.seen.filter((request) => request.path === "/v1/jobs");
    expect(jobs.map((job) => job.kind)).toEqual(["run"]);
    expect((await api(stack, alice, "GET", `/executions/${executionId}`)).body).toMatchObject({
      status: "COMPLETED",
      output_data: { hello: "Ada" },
    });
  });

  it("knows the executor from a started event posted long before the pause", async () => {
    // The started event goes out with the first log line; the pause comes in a later post, after the held answer.
    await createFunction(
      stack,
      alice,
      pythonFunction(
        "slow_interview",
        '    import time\n    print("thinking")\n    time.sleep(1.5)\n    answer = yield {"prompt": "Go on?", "schema": {"type": "object"}}\n    return answer',
      ),
    );
    const run = await execute(stack, alice, { name: "slow_interview" }, {}, "?async=true");
    const executionId = (run.body as { execution_id: string }).execution_id;
    let status = "RUNNING";
    for (let attempt = 0; attempt < 100 && status === "RUNNING"; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      status = ((await api(stack, alice, "GET", `/executions/${executionId}`)).body as { status: string })
        .status;
    }
    expect(status).toBe("AWAITING_INPUT");
    const resumed = await api(stack, alice, "POST", `/executions/${executionId}/continue`, {
      input: { go: true },
    });
    expect(resumed.body).toMatchObject({ status: "COMPLETED", output_data: { go: true } });
    expect(balancer.seen.filter((request) => request.kind === "resume")).toEqual([]);
  });
});
