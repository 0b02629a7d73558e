import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signRequest } from "../../workers/lib/signed-request";
import { api, IDENTITY_VARS, login, type Session } from "../helpers/auth";
import { createFunction, execute, pythonFunction } from "../helpers/functions";
import { stackSecrets } from "../helpers/secrets";
import { startTestStack, type TestStack } from "../helpers/stack";

let stack: TestStack;
let alice: Session;
let driver: string;

beforeAll(async () => {
  stack = await startTestStack({ workerVars: IDENTITY_VARS });
  alice = await login(stack, "alice@acme.io");
  driver = ((await (await fetch(`${stack.executorUrl}/health`)).json()) as { driver: string }).driver;
});
afterAll(() => stack?.stop());

type Row = Record<string, unknown>;
const isolated = () => driver === "docker" || driver === "bwrap";

describe("bad input runs nothing", () => {
  it("refuses oversized code and oversized input", async () => {
    const huge = `def big(input, context):\n    return {}\n# ${"x".repeat(300 * 1024)}\n`;
    const code = await api(stack, alice, "POST", "/api/v1/functions", {
      ...pythonFunction("big", "    return {}"),
      code: huge,
    });
    expect(code.status).toBe(422);
    expect((code.body as Row).message).toContain("body.code");
    await createFunction(stack, alice, pythonFunction("sink", "    return {}"));
    const input = await execute(stack, alice, { name: "sink" }, { blob: "y".repeat(2 * 1024 * 1024) });
    expect(input.status).toBe(413);
    expect(input.body).toMatchObject({ code: "PAYLOAD_TOO_LARGE" });
  });
});

describe("input nested past MAX_JSON_DEPTH (256 levels) is refused before it reaches anything recursive", () => {
  /** `depth` levels of arrays: `[[...]]`. */
  const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;
  const TOO_DEEP = {
    loc: ["body", "input"],
    msg: "must not nest arrays and objects more than 256 levels deep",
  };

  it("answers 422 naming body.input to execute, running and recording nothing; 256 levels run", async () => {
    await createFunction(stack, alice, pythonFunction("nested", "    return {}"));
    // The input object is level 1, so `{"a": <n - 1 levels>}` is n levels deep.
    for (const depth of [257, 5_000, 100_000]) {
      const response = await api(
        stack,
        alice,
        "POST",
        "/functions/default/nested/execute",
        `{"input": {"a": ${nested(depth - 1)}}}`,
      );
      expect(response.status, `${depth}: ${JSON.stringify(response.body).slice(0, 300)}`).toBe(422);
      expect((response.body as { detail: unknown[] }).detail).toEqual([expect.objectContaining(TOO_DEEP)]);
    }
    const fits = await api(
      stack,
      alice,
      "POST",
      "/functions/default/nested/execute",
      `{"input": {"a": ${nested(255)}}}`,
    );
    expect(fits.status, JSON.stringify(fits.body).slice(0, 300)).toBe(200);
    expect(fits.body).toMatchObject({ success: true, result: {} });
    const rows = (await api(stack, alice, "GET", "/executions?function_name=nested")).body as Row[];
    expect(rows).toHaveLength(1);
  });

  it("answers 422 naming body.input to continue, leaving the run paused", async () => {
    await createFunction(
      stack,
      alice,
      pythonFunction(
        "nested_gen",
        '    answer = yield {"prompt": "More?", "schema": {}}\n    return {"ok": True}',
      ),
    );
    const run = await execute(stack, alice, { name: "nested_gen" });
    expect(run.body).toMatchObject({ status: "awaiting_input" });
    const id = (run.body as { execution_id: string }).execution_id;
    for (const depth of [257, 5_000]) {
      const response = await api(
        stack,
        alice,
        "POST",
        `/executions/${id}/continue`,
        `{"input": ${nested(depth)}}`,
      );
      expect(response.status, `${depth}: ${JSON.stringify(response.body).slice(0, 300)}`).toBe(422);
      expect((response.body as { detail: unknown[] }).detail).toEqual([expect.objectContaining(TOO_DEEP)]);
    }
    expect((await api(stack, alice, "GET", `/executions/${id}`)).body).toMatchObject({
      status: "AWAITING_INPUT",
    });
    const resumed = await api(
      stack,
      alice,
      "POST",
      `/executions/${id}/continue`,
      `{"input": ${nested(256)}}`,
    );
    expect(resumed.body).toMatchObject({ status: "COMPLETED", output_data: { ok: true } });
  });
});

describe("containment (docker and bwrap drivers)", () => {
  it("fails a memory bomb with a clear reason; the next run works", async (context) => {
    if (!isolated()) context.skip(`the ${driver} driver does not contain memory`);
    await createFunction(
      stack,
      alice,
      pythonFunction(
        "hog",
        "    blocks = []\n    while True:\n        blocks.append(bytearray(64 * 1024 * 1024))",
      ),
    );
    const bomb = await execute(stack, alice, { name: "hog" });
    expect(bomb.status).toBe(500);
    expect(["memory", "killed"]).toContain((bomb.body as Row).error_type);
    expect(String((bomb.body as Row).detail)).toMatch(/memory|killed|died/i);
    expect((await execute(stack, alice, { name: "sink" })).status).toBe(200);
  });

  it("contains a fork bomb; the executor stays alive", async (context) => {
    // Never on the process driver: there a fork bomb would hit this machine itself.
    if (!isolated()) context.skip(`the ${driver} driver does not contain processes`);
    await createFunction(stack, alice, {
      ...pythonFunction("forker", "    import os\n    while True:\n        os.fork()"),
      timeout: 10,
    });
    const bomb = await execute(stack, alice, { name: "forker" });
    expect(bomb.status).toBe(500);
    expect(String((bomb.body as Row).detail)).toMatch(
      /BlockingIOError|Resource temporarily unavailable|killed|timed out/,
    );
    expect((await fetch(`${stack.executorUrl}/health`)).status).toBe(200);
    expect((await execute(stack, alice, { name: "sink" })).status).toBe(200);
  });
});

/** A callback post for `executionId` carrying one `result` event, and what the executor signs for it. */
function resultCallback(executionId: string, seq: number, result: unknown) {
  const path = `/internal/executions/${executionId}/events`;
  const body = JSON.stringify({
    execution_id: executionId,
    seq,
    events: [{ type: "result", status: "completed", result, duration_ms: 1 }],
  });
  const claims = {
    issuer: "sinas-executor",
    audience: "sinas-api",
    method: "POST",
    path,
    body,
    subject: executionId,
  };
  const post = async (token: string, payload = body) =>
    (
      await stack.fetch(path, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
        body: payload,
      })
    ).status;
  return { body, claims, post };
}

describe("callbacks to the API are authenticated", () => {
  it("rejects forged, tampered, misaddressed and malformed callbacks; a replay changes nothing", async () => {
    await createFunction(stack, alice, pythonFunction("plain", '    return {"ok": True}'));
    const run = await execute(stack, alice, { name: "plain" });
    const executionId = (run.body as { execution_id: string }).execution_id;
    const before = (await api(stack, alice, "GET", `/executions/${executionId}`)).body as Row;
    const { body, claims, post } = resultCallback(executionId, 99, { ok: "forged" });

    const { privateKey } = await import("jose").then((jose) =>
      jose.generateKeyPair("EdDSA", { extractable: true }),
    );
    const strangerKey = JSON.stringify(await import("jose").then((jose) => jose.exportJWK(privateKey)));
    expect(await post(await signRequest(strangerKey, claims))).toBe(401);

    const realKey = stackSecrets(stack).EXECUTOR_CALLBACK_PRIVATE_KEY;
    const valid = await signRequest(realKey, claims);
    expect(await post(valid, body.replace("forged", "tampered"))).toBe(401);
    expect(
      await post(
        await signRequest(realKey, { ...claims, path: `/internal/executions/${crypto.randomUUID()}/events` }),
      ),
    ).toBe(401);
    expect(await post("not-a-token")).toBe(401);
    // A correctly signed callback for a finished run is refused with 409 and changes nothing.
    expect(await post(valid)).toBe(409);
    expect(await post(valid)).toBe(409);
    expect((await api(stack, alice, "GET", `/executions/${executionId}`)).body).toEqual(before);
  });
});

describe("a resumed run ignores its paused job's late posts", () => {
  it("applies no callback numbered below the resume's first_seq, even a validly signed one", async () => {
    await createFunction(
      stack,
      alice,
      pythonFunction(
        "slow_after_answer",
        '    import time\n    answer = yield {"prompt": "Go?"}\n    time.sleep(2)\n    return {"answer": answer}',
      ),
    );
    const run = await execute(stack, alice, { name: "slow_after_answer" });
    expect(run.body).toMatchObject({ status: "awaiting_input" });
    const executionId = (run.body as { execution_id: string }).execution_id;
    const resumed = api(stack, alice, "POST", `/executions/${executionId}/continue`, { input: { go: 1 } });
    let status = "AWAITING_INPUT";
    while (status === "AWAITING_INPUT") {
      await new Promise((resolve) => setTimeout(resolve, 50));
      status = ((await api(stack, alice, "GET", `/executions/${executionId}`)).body as Row).status as string;
    }
    expect(status).toBe("RUNNING");
    // What a retry of the paused job could post late: numbered below the resume's first_seq (PROTOCOL.md §3).
    const stale = resultCallback(executionId, 500, { answer: "stale" });
    const key = stackSecrets(stack).EXECUTOR_CALLBACK_PRIVATE_KEY;
    expect(await stale.post(await signRequest(key, stale.claims))).toBe(200);
    expect(((await api(stack, alice, "GET", `/executions/${executionId}`)).body as Row).status).toBe(
      "RUNNING",
    );
    expect((await resumed).body).toMatchObject({ status: "COMPLETED", output_data: { answer: { go: 1 } } });
  });
});
