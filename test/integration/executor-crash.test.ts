import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IDENTITY_VARS, login, type Session } from "../helpers/auth";
import { createFunction, execute, pythonFunction, waitForFinalStatus } from "../helpers/functions";
import { descendants } from "../helpers/processes";
import { startTestStack, type TestStack } from "../helpers/stack";

// A short watchdog grace so the test waits seconds, not the production default of 15 s.
let stack: TestStack;
let alice: Session;

beforeAll(async () => {
  stack = await startTestStack({ workerVars: { ...IDENTITY_VARS, EXECUTION_WATCHDOG_GRACE_SECONDS: "3" } });
  alice = await login(stack, "alice@acme.io");
});
afterAll(() => stack?.stop());

const executorProcess = () =>
  descendants(stack.pid).find((child) => child.command.includes("executor-node/src/server.ts"));

describe("an executor that dies mid-run", () => {
  it("leaves the execution FAILED within timeout + grace, and the restarted executor runs new work", async () => {
    await createFunction(stack, alice, {
      ...pythonFunction("stuck", "    import time\n    time.sleep(60)\n    return {}"),
      timeout: 2,
    });
    await createFunction(stack, alice, pythonFunction("echo", "    return input"));
    expect((await execute(stack, alice, { name: "echo" }, { warm: true })).status).toBe(200);

    const started = await execute(stack, alice, { name: "stuck" }, {}, "?async=true");
    expect(started.status).toBe(202);
    const executionId = (started.body as { execution_id: string }).execution_id;
    await new Promise((resolve) => setTimeout(resolve, 500));
    const executor = executorProcess();
    expect(executor).toBeDefined();
    process.kill(executor?.pid as number, "SIGKILL");

    const began = Date.now();
    const final = await waitForFinalStatus(stack, alice, executionId, 20_000);
    expect(final.status).toBe("FAILED");
    expect(String(final.error)).toMatch(/No result from the executor|timed out/);
    expect(Date.now() - began).toBeLessThan(12_000);

    let rerun = await execute(stack, alice, { name: "echo" }, { after: "restart" });
    for (let attempt = 0; attempt < 30 && rerun.status !== 200; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      rerun = await execute(stack, alice, { name: "echo" }, { after: "restart" });
    }
    expect(rerun.status, JSON.stringify(rerun.body)).toBe(200);
    expect((rerun.body as { result: unknown }).result).toEqual({ after: "restart" });
  });
});
