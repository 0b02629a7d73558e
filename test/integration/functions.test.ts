import {
  createServer as createHttpServer,
  type Server as HttpServer,
  request as httpRequest,
} from "node:http";
import { type AddressInfo, connect, createServer as createNetServer } from "node:net";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL } from "../helpers/auth";
import { openStackDb } from "../helpers/db";
import { createFunction, execute, GREET, pythonFunction, waitForFinalStatus } from "../helpers/functions";
import { startTestStack, type TestStack } from "../helpers/stack";

let stack: TestStack;
let admin: Session;
let alice: Session;
let bob: Session;

beforeAll(async () => {
  stack = await startTestStack({ workerVars: IDENTITY_VARS });
  [admin, alice, bob] = await Promise.all([
    login(stack, SUPERADMIN_EMAIL),
    login(stack, "alice@acme.io"),
    login(stack, "bob@acme.io"),
  ]);
});
afterAll(() => stack?.stop());

type Row = Record<string, unknown>;

describe("function management (S10, S11)", () => {
  it("creates, refuses duplicates and bad definitions, and records versions", async () => {
    const created = await api(stack, alice, "POST", "/api/v1/functions", GREET);
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({
      namespace: "default",
      is_active: true,
      shared_pool: false,
      requires_approval: false,
      requirements: [],
    });
    const again = await api(stack, alice, "POST", "/api/v1/functions", GREET);
    expect(again.body).toMatchObject({
      code: "BAD_REQUEST",
      detail: "Function 'default/greet' already exists",
    });

    const broken = await api(
      stack,
      alice,
      "POST",
      "/api/v1/functions",
      pythonFunction("broken", "    return (("),
    );
    expect(broken.status).toBe(422);
    expect((broken.body as Row).message).toContain("Invalid Python syntax");
    const noType = await api(stack, alice, "POST", "/api/v1/functions", {
      ...pythonFunction("typeless", "    return {}"),
      input_schema: { properties: {} },
    });
    expect(noType.status).toBe(422);
    expect((noType.body as Row).message).toContain("Schema must have a 'type' field");
    // What validating would trip on is refused when saved: a bad pattern, a $ref that resolves nowhere.
    for (const [schema, words] of [
      [
        { type: "object", properties: { a: { type: "string", pattern: "(" } } },
        "not a valid regular expression",
      ],
      [{ type: "object", $ref: "#/$defs/missing" }, "does not resolve"],
      // A broken %-escape in the pointer was a URIError: 500.
      [{ type: "object", $ref: "#/%" }, "does not resolve"],
      // Saved, then every run failed: "The schema cannot be applied: required2 is not iterable".
      [{ type: "object", dependentRequired: { a: 5 } }, "'dependentRequired' must map property names"],
      [{ type: -1 }, "'type' must be a JSON type name"],
    ] as const) {
      const refused = await api(stack, alice, "POST", "/api/v1/functions", {
        ...pythonFunction("unusable", "    return {}"),
        input_schema: schema,
      });
      expect(refused.status, JSON.stringify(refused.body)).toBe(422);
      expect((refused.body as Row).message).toContain(words);
    }
    expect(
      (await api(stack, alice, "POST", "/api/v1/functions", { ...GREET, name: "bad-name" })).status,
    ).toBe(422);
    const shared = await api(stack, alice, "POST", "/api/v1/functions", {
      ...GREET,
      name: "shared",
      shared_pool: true,
    });
    expect(shared.body).toMatchObject({
      detail: "Not authorized to create shared pool functions (admin only)",
    });
    // A function an admin put in the shared pool: its owner may not swap what runs there (admin only).
    expect((await api(stack, alice, "POST", "/api/v1/functions", { ...GREET, name: "pooled" })).status).toBe(
      200,
    );
    const pooled = await api(stack, admin, "PUT", "/api/v1/functions/default/pooled", { shared_pool: true });
    expect(pooled.status, JSON.stringify(pooled.body)).toBe(200);
    const swapped = await api(stack, alice, "PUT", "/api/v1/functions/default/pooled", { code: GREET.code });
    expect(swapped.status).toBe(403);
    expect((swapped.body as Row).detail).toContain("shared pool function (admin only)");
    const described = await api(stack, alice, "PUT", "/api/v1/functions/default/pooled", {
      description: "d",
    });
    expect(described.status).toBe(200);
    // Moving it widens what it may call (its own namespace), renaming it swaps what the admin vetted: admin only.
    for (const change of [{ namespace: "elsewhere" }, { name: "pooled_renamed" }]) {
      const moved = await api(stack, alice, "PUT", "/api/v1/functions/default/pooled", change);
      expect(moved.status, JSON.stringify(moved.body)).toBe(403);
      expect((moved.body as Row).detail).toBe(
        "Not authorized to change the code, requirements, enabled namespaces, namespace or name of a shared pool function (admin only)",
      );
    }
    expect((await api(stack, alice, "GET", "/api/v1/functions/default/pooled")).status).toBe(200);
    const restated = await api(stack, alice, "PUT", "/api/v1/functions/default/pooled", {
      namespace: "default",
      name: "pooled",
      description: "e",
    });
    expect(restated.status, JSON.stringify(restated.body)).toBe(200);
    const unpooled = await api(stack, alice, "PUT", "/api/v1/functions/default/pooled", {
      shared_pool: false,
      code: GREET.code,
    });
    expect(unpooled.body).toMatchObject({ shared_pool: false });
    const numpy = await api(stack, alice, "POST", "/api/v1/functions", {
      ...GREET,
      name: "np",
      requirements: ["numpy"],
    });
    expect(numpy.body).toMatchObject({
      detail: "Unapproved packages in requirements: numpy. Contact admin to approve these packages first.",
    });

    const updated = await api(stack, alice, "PUT", "/api/v1/functions/default/greet", {
      description: "v2",
      code: GREET.code,
    });
    expect(updated.body).toMatchObject({ description: "v2" });
    const versions = (await api(stack, alice, "GET", "/api/v1/functions/default/greet/versions"))
      .body as Row[];
    expect(versions.map((version) => version.version)).toEqual([2, 1]);
    expect(versions.every((version) => version.created_by === alice.user.id)).toBe(true);

    expect((await api(stack, bob, "GET", "/api/v1/functions/default/greet")).body).toMatchObject({
      detail: "Function 'default/greet' not found",
    });
    const mine = (await api(stack, alice, "GET", "/api/v1/functions")).body as Row[];
    expect(mine.map((fn) => fn.name)).toContain("greet");
    expect(
      ((await api(stack, bob, "GET", "/api/v1/functions")).body as Row[]).map((fn) => fn.name),
    ).not.toContain("greet");
    expect(
      (await api(stack, alice, "POST", "/api/v1/functions", { ...GREET, namespace: "analytics" })).status,
    ).toBe(200);
    // D-50: an admin manages anyone's function.
    expect((await api(stack, admin, "GET", "/api/v1/functions/default/greet")).status).toBe(200);
  });

  it("moves a function only into a namespace the caller may create functions in", async () => {
    const created = await api(stack, admin, "POST", "/api/v1/users", { email: "sandboxer@acme.io" });
    expect(created.status, JSON.stringify(created.body)).toBeLessThan(300);
    const userId = (created.body as Row).id;
    expect((await api(stack, admin, "POST", "/api/v1/groups", { name: "Sandboxers" })).status).toBeLessThan(
      300,
    );
    const granted = await api(stack, admin, "POST", "/api/v1/groups/Sandboxers/permissions", {
      permission_key: "sinas.functions.sandbox.*:own",
      permission_value: true,
    });
    expect(granted.status, JSON.stringify(granted.body)).toBe(200);
    expect(
      (await api(stack, admin, "POST", "/api/v1/groups/Sandboxers/members", { user_id: userId })).status,
    ).toBe(200);
    const sandboxer = await login(stack, "sandboxer@acme.io");
    const fn = { ...pythonFunction("boxed", "    return input"), namespace: "sandbox" };
    expect((await api(stack, sandboxer, "POST", "/api/v1/functions", fn)).status).toBe(200);
    expect(
      (await api(stack, sandboxer, "POST", "/api/v1/functions", { ...fn, namespace: "prod" })).status,
    ).toBe(403);

    const moved = await api(stack, sandboxer, "PUT", "/api/v1/functions/sandbox/boxed", {
      namespace: "prod",
    });
    expect(moved.status).toBe(403);
    expect((moved.body as Row).detail).toBe("Not authorized to create functions in namespace 'prod'");
    expect((await api(stack, sandboxer, "GET", "/api/v1/functions/sandbox/boxed")).status).toBe(200);
    expect((await api(stack, admin, "GET", "/api/v1/functions/prod/boxed")).status).toBe(404);
    const renamed = await api(stack, sandboxer, "PUT", "/api/v1/functions/sandbox/boxed", { name: "boxed2" });
    expect(renamed.status, JSON.stringify(renamed.body)).toBe(200);
  });

  it("approves packages that requirements may then name (S11)", async () => {
    const approved = await api(stack, admin, "POST", "/api/v1/packages", {
      package_name: "requests",
      version: "2.31.0",
    });
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ installed_by: admin.user.id });
    expect((approved.body as Row).installed_at).toBeTruthy();
    expect(
      (await api(stack, admin, "POST", "/api/v1/packages", { package_name: "requests" })).body,
    ).toMatchObject({
      detail: "Package 'requests' already approved",
    });
    expect((await api(stack, alice, "POST", "/api/v1/packages", { package_name: "x" })).status).toBe(403);
    const withPackage = await api(stack, alice, "POST", "/api/v1/functions", {
      ...pythonFunction("req_user", "    return input"),
      requirements: ["requests>=2.0"],
    });
    expect(withPackage.status).toBe(200);
    const id = (approved.body as Row).id as string;
    expect((await api(stack, admin, "DELETE", `/api/v1/packages/${id}`)).body).toEqual({
      message: "Package 'requests' approval removed. Existing containers will keep it until recreated.",
    });
    expect((await api(stack, admin, "DELETE", `/api/v1/packages/${id}`)).status).toBe(404);
  });
});

describe("running functions", () => {
  it("runs a function and records the execution with its step", async () => {
    const run = await execute(stack, alice, { name: "greet" }, { body: { name: "Ada" } });
    expect(run.status, JSON.stringify(run.body)).toBe(200);
    const { execution_id: executionId, result } = run.body as { execution_id: string; result: Row };
    expect(result).toEqual({ greeting: "Hello Ada", user: "alice@acme.io", trigger: "API" });
    // What the platform added around the call, and the call itself (the ExecutionRun object's timing).
    expect(run.headers.get("server-timing")).toMatch(/^dispatch;dur=\d+\.\d, run;dur=\d+\.\d$/);
    const execution = (await api(stack, alice, "GET", `/executions/${executionId}`)).body as Row;
    expect(execution).toMatchObject({
      status: "COMPLETED",
      trigger_type: "API",
      function_name: "greet",
      output_data: result,
    });
    expect(execution.completed_at).toBeTruthy();
    expect(execution.duration_ms).toBeGreaterThanOrEqual(0);
    const steps = (await api(stack, alice, "GET", `/executions/${executionId}/steps`)).body as Row[];
    expect(steps).toEqual([
      expect.objectContaining({ function_name: "greet", status: "COMPLETED", parent_step_id: null }),
    ]);
    const listed = (await api(stack, alice, "GET", "/executions?function_name=greet")).body as Row[];
    expect(listed.map((row) => row.execution_id)).toContain(executionId);
  });

  it("refuses input that breaks the input schema with 422 naming the field, running nothing", async () => {
    const handle = openStackDb(stack);
    const count = async () =>
      ((await handle.db.execute(sql`select count(*)::int as n from executions`)).rows[0] as { n: number }).n;
    try {
      const before = await count();
      const refused = await execute(stack, alice, { name: "greet" }, { body: {} });
      expect(refused.status).toBe(422);
      expect((refused.body as Row).message).toContain("body.input.body");
      expect((await execute(stack, alice, { name: "nope" })).status).toBe(404);
      expect(await count()).toBe(before);
    } finally {
      await handle.close();
    }
  });

  it("records failures with the error and traceback (S15)", async () => {
    await createFunction(stack, alice, pythonFunction("boom", '    raise ValueError("kaput")'));
    const failed = await execute(stack, alice, { name: "boom" });
    expect(failed.status).toBe(500);
    expect(failed.body).toMatchObject({ code: "FUNCTION_FAILED", error_type: "exception" });
    expect(String((failed.body as Row).detail)).toMatch(/^Function execution failed: .*kaput/);
    const execution = (await api(stack, alice, "GET", `/executions/${(failed.body as Row).execution_id}`))
      .body as Row;
    expect(execution).toMatchObject({ status: "FAILED", error_type: "exception" });
    expect(String(execution.error)).toContain("kaput");
    expect(String(execution.traceback)).toContain("line 2");

    await createFunction(stack, alice, {
      ...pythonFunction("badout", '    return {"x": 1}'),
      output_schema: { type: "object", required: ["greeting"] },
    });
    const badOut = await execute(stack, alice, { name: "badout" });
    expect(badOut.status).toBe(500);
    expect(String((badOut.body as Row).detail)).toContain("Schema validation failed");
  });

  it("always runs the current code (D-33)", async () => {
    await api(stack, alice, "PUT", "/api/v1/functions/default/greet", {
      code: 'def greet(input, context):\n    return {"greeting": "v3"}\n',
    });
    const run = await execute(stack, alice, { name: "greet" }, { body: { name: "a" } });
    expect((run.body as { result: Row }).result).toEqual({ greeting: "v3" });
  });

  it("answers 202 for async runs, which then complete", async () => {
    await createFunction(
      stack,
      alice,
      pythonFunction("slow_echo", "    import time\n    time.sleep(0.3)\n    return input"),
    );
    const started = await execute(stack, alice, { name: "slow_echo" }, { n: 7 }, "?async=true");
    expect(started.status).toBe(202);
    const final = await waitForFinalStatus(
      stack,
      alice,
      (started.body as { execution_id: string }).execution_id,
    );
    expect(final).toMatchObject({ status: "COMPLETED", output_data: { n: 7 } });
  });

  it("keeps a result through a database hiccup: its outcome is written when Postgres answers again", async () => {
    // The first two attempts to record each probe's outcome fail (a sequence is not rolled back by the error).
    const handle = openStackDb(stack);
    await handle.db.execute(
      sql.raw(`
      create sequence if not exists test_outcome_failures;
      create or replace function test_fail_outcome() returns trigger language plpgsql as $$
      begin
        if new.function_name like 'db_hiccup_%' and nextval('test_outcome_failures') % 3 <> 0 then
          raise exception 'injected failure';
        end if;
        return new;
      end $$;
      create trigger test_fail_outcome before update on executions for each row
        when (new.status = 'COMPLETED') execute function test_fail_outcome();`),
    );
    try {
      // A fast run's result comes in the executor's answer (the object retries); a slow one's as a callback
      // post (the executor retries it).
      for (const [name, body] of [
        ["db_hiccup_fast", "    return {'ok': input['n']}"],
        ["db_hiccup_slow", "    import time\n    time.sleep(1.3)\n    return {'ok': input['n']}"],
      ] as const) {
        await createFunction(stack, alice, pythonFunction(name, body));
        const started = await execute(stack, alice, { name }, { n: 5 }, "?async=true");
        expect(started.status).toBe(202);
        const executionId = (started.body as { execution_id: string }).execution_id;
        const final = await waitForFinalStatus(stack, alice, executionId, 15_000);
        expect(final, name).toMatchObject({ status: "COMPLETED", output_data: { ok: 5 } });
        const steps = (await api(stack, alice, "GET", `/executions/${executionId}/steps`)).body as Row[];
        expect(steps.map((step) => step.status)).toEqual(["COMPLETED"]);
      }
    } finally {
      await handle.db.execute(sql.raw("drop trigger if exists test_fail_outcome on executions"));
      await handle.close();
    }
  });

  it("keeps executions private; admins see all; filters validate (S16)", async () => {
    const run = await execute(stack, alice, { name: "greet" }, { body: { name: "x" } });
    const executionId = (run.body as { execution_id: string }).execution_id;
    expect(
      ((await api(stack, bob, "GET", "/executions")).body as Row[]).map((row) => row.execution_id),
    ).not.toContain(executionId);
    expect((await api(stack, bob, "GET", `/executions/${executionId}`)).body).toMatchObject({
      detail: "Not authorized to view this execution",
    });
    expect(
      ((await api(stack, admin, "GET", "/executions")).body as Row[]).map((row) => row.execution_id),
    ).toContain(executionId);
    const failedOnly = (await api(stack, admin, "GET", "/executions?status=FAILED")).body as Row[];
    expect(failedOnly.every((row) => row.status === "FAILED")).toBe(true);
    expect((await api(stack, admin, "GET", "/executions?status=BOGUS")).status).toBe(422);
    // A NUL, which Postgres text cannot hold, is the caller's mistake (422), not a server failure.
    expect((await api(stack, admin, "GET", "/executions?function_name=%00")).status).toBe(422);
    expect(
      (await api(stack, alice, "POST", `/executions/${executionId}/continue`, { input: {} })).body,
    ).toMatchObject({
      detail: "Execution is not awaiting input",
    });
    expect((await api(stack, alice, "GET", "/executions/nope")).body).toMatchObject({
      detail: "Execution not found",
    });
    expect((await execute(stack, bob, { name: "greet" }, { body: { name: "x" } })).status).toBe(404);
  });

  it("answers a function the caller may neither run nor see with the 404 of a missing one", async () => {
    await createFunction(stack, alice, pythonFunction("secret_fn", "    return {}"));
    const other = await execute(stack, bob, { name: "secret_fn" });
    expect(other.status).toBe(404);
    expect(other.body).toMatchObject({ code: "NOT_FOUND", detail: "Function 'default/secret_fn' not found" });
    expect((await execute(stack, bob, { name: "no_such_fn" })).body).toMatchObject({
      code: "NOT_FOUND",
      detail: "Function 'default/no_such_fn' not found",
    });
    // Who may see it (its owner, here through a key that may not run it) learns why: 403.
    const created = await api(stack, alice, "POST", "/api/v1/api-keys", { name: "no_run", permissions: {} });
    const bare = { headers: { "x-api-key": (created.body as { key: string }).key } };
    const mine = await execute(stack, bare, { name: "secret_fn" });
    expect(mine.status).toBe(403);
    expect(mine.body).toMatchObject({ detail: "Not authorized to execute function 'default/secret_fn'" });
  });

  it("tracks nested calls as a step tree; a failing callee fails its callers (S17, D-34)", async () => {
    await createFunction(stack, alice, pythonFunction("double", '    return {"v": input["v"] * 2}'));
    await createFunction(
      stack,
      alice,
      pythonFunction(
        "quad",
        '    r = double({"v": input["v"]}, context)\n    return {"v": double(r, context)["v"]}',
      ),
    );
    const run = await execute(stack, alice, { name: "quad" }, { v: 3 });
    expect((run.body as { result: Row }).result).toEqual({ v: 12 });
    const executionId = (run.body as { execution_id: string }).execution_id;
    const steps = (await api(stack, alice, "GET", `/executions/${executionId}/steps`)).body as Row[];
    const doubles = steps.filter((step) => step.function_name === "double");
    expect(doubles.map((step) => [step.input_data, step.output_data, step.status])).toEqual([
      [{ v: 3 }, { v: 6 }, "COMPLETED"],
      [{ v: 6 }, { v: 12 }, "COMPLETED"],
    ]);

    await createFunction(stack, alice, {
      ...pythonFunction("c_fn", '    raise RuntimeError("deep failure")'),
      namespace: "lvl",
    });
    await createFunction(stack, alice, {
      ...pythonFunction("b_fn", "    return lvl.c_fn(input, context)"),
      namespace: "lvl",
    });
    await createFunction(stack, alice, {
      ...pythonFunction("a_fn", "    return lvl.b_fn(input, context)"),
      enabled_namespaces: ["lvl"],
    });
    const failed = await execute(stack, alice, { name: "a_fn" }, { depth: 1 });
    expect(failed.status).toBe(500);
    const failedId = (failed.body as { execution_id: string }).execution_id;
    const tree = (await api(stack, alice, "GET", `/executions/${failedId}/steps?format=tree`)).body as Row[];
    expect(tree).toHaveLength(1);
    const [a] = tree as { function_name: string; status: string; children: Row[] }[];
    expect(a?.function_name).toBe("a_fn");
    const b = a?.children[0] as { function_name: string; status: string; children: Row[] };
    const c = b.children[0] as Row;
    expect([a?.status, b.status, c.status]).toEqual(["FAILED", "FAILED", "FAILED"]);
    expect([b.function_name, c.function_name]).toEqual(["b_fn", "c_fn"]);
    expect(String(c.traceback)).toContain("deep failure");
    expect(typeof c.duration_ms).toBe("number");
  });

  it("gives the function a context token with exactly the run-as user's permissions", async () => {
    await createFunction(
      stack,
      alice,
      pythonFunction("whoami", '    return {"token": context["access_token"], "user": context["user_id"]}'),
    );
    const run = await execute(stack, alice, { name: "whoami" });
    const { token, user } = (run.body as { result: { token: string; user: string } }).result;
    expect(user).toBe(alice.user.id);
    const headers = { headers: { authorization: `Bearer ${token}` } };
    expect((await api(stack, headers, "GET", "/auth/me")).body).toMatchObject({ email: "alice@acme.io" });
    expect((await api(stack, headers, "GET", "/api/v1/users")).status).toBe(403);
  });

  it("gives a run started with an API key a context token that acts as that key, while it is active", async () => {
    // The key may run functions and nothing else: its runs' tokens must not act as Alice's login.
    const created = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "runner",
      permissions: { "sinas.functions.*.*.execute:own": true },
    });
    expect(created.status).toBe(201);
    const { id: keyId, key } = created.body as { id: string; key: string };
    const keyCaller = { headers: { "x-api-key": key } };
    const run = await execute(stack, keyCaller, { name: "whoami" });
    expect(run.status, JSON.stringify(run.body)).toBe(200);
    const { token } = (run.body as { result: { token: string } }).result;
    const headers = { headers: { authorization: `Bearer ${token}` } };
    // Alice's own grants allow both; the key allows neither.
    expect((await api(stack, headers, "GET", "/api/v1/functions")).body).toEqual([]);
    const made = await api(
      stack,
      headers,
      "POST",
      "/api/v1/functions",
      pythonFunction("sneaky", "    return {}"),
    );
    expect(made.status).toBe(403);
    const escalation = await api(stack, headers, "POST", "/api/v1/api-keys", {
      name: "forever",
      permissions: { "sinas.functions.*.get:own": true },
    });
    expect(escalation.status).toBe(400);
    expect((await execute(stack, headers, { name: "whoami" })).status).toBe(200);
    // A Bearer token naming a key lives no longer than the key.
    expect((await api(stack, alice, "DELETE", `/api/v1/api-keys/${keyId}`)).status).toBe(204);
    expect((await api(stack, headers, "GET", "/auth/me")).status).toBe(401);
  });

  it("shows an API key made with {} none of its owner's executions", async () => {
    const run = await execute(stack, alice, { name: "whoami" });
    const executionId = (run.body as { execution_id: string }).execution_id;
    const created = await api(stack, alice, "POST", "/api/v1/api-keys", { name: "bare", permissions: {} });
    const bare = { headers: { "x-api-key": (created.body as { key: string }).key } };
    expect(await api(stack, bare, "GET", "/executions")).toMatchObject({ status: 200, body: [] });
    for (const path of [`/executions/${executionId}`, `/executions/${executionId}/steps`]) {
      expect((await api(stack, bare, "GET", path)).status).toBe(403);
    }
    const resumed = await api(stack, bare, "POST", `/executions/${executionId}/continue`, { input: {} });
    expect(resumed.status).toBe(403);
    // Her login, and a key given sinas.executions.get:own, see it.
    expect((await api(stack, alice, "GET", `/executions/${executionId}`)).status).toBe(200);
    const reader = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "reader",
      permissions: { "sinas.executions.get:own": true },
    });
    const readerKey = { headers: { "x-api-key": (reader.body as { key: string }).key } };
    expect((await api(stack, readerKey, "GET", `/executions/${executionId}`)).status).toBe(200);
  });

  it("pauses a generator for input and resumes it through continue (D-35)", async () => {
    await createFunction(
      stack,
      alice,
      pythonFunction(
        "interview",
        '    name = yield {"prompt": "Your name?", "schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}\n    return {"hello": name["name"]}',
      ),
    );
    const run = await execute(stack, alice, { name: "interview" });
    expect(run.status).toBe(200);
    expect(run.body).toMatchObject({ status: "awaiting_input", prompt: "Your name?" });
    const executionId = (run.body as { execution_id: string }).execution_id;
    expect((await api(stack, alice, "GET", `/executions/${executionId}`)).body).toMatchObject({
      status: "AWAITING_INPUT",
      input_prompt: "Your name?",
    });
    expect(
      (await api(stack, alice, "POST", `/executions/${executionId}/continue`, { input: {} })).status,
    ).toBe(422);
    const noInput = await api(stack, alice, "POST", `/executions/${executionId}/continue`, {});
    expect(noInput.status).toBe(422);
    expect((noInput.body as { detail: { loc: unknown[] }[] }).detail[0]?.loc).toEqual(["body", "input"]);
    const badName = await api(stack, alice, "POST", `/executions/${executionId}/continue`, {
      input: { name: 5 },
    });
    expect(badName.status).toBe(422);
    expect((badName.body as { detail: { loc: unknown[] }[] }).detail[0]?.loc).toEqual([
      "body",
      "input",
      "name",
    ]);
    // A resume whose database write fails is a 500 (sinas-spec 1.4) and leaves the run paused, resumable later.
    const handle = openStackDb(stack);
    await handle.db.execute(
      sql.raw(`
      create or replace function test_fail_resume() returns trigger language plpgsql as $$
      begin raise exception 'injected failure'; end $$;
      create trigger test_fail_resume before update on executions for each row
        when (old.status = 'AWAITING_INPUT' and new.status = 'RUNNING') execute function test_fail_resume();`),
    );
    try {
      const failed = await api(stack, alice, "POST", `/executions/${executionId}/continue`, {
        input: { name: "Ada" },
      });
      expect(failed.status).toBe(500);
      expect(failed.body).toMatchObject({ detail: expect.stringContaining("Failed to continue execution") });
    } finally {
      await handle.db.execute(sql.raw("drop trigger if exists test_fail_resume on executions"));
      await handle.close();
    }
    const resumed = await api(stack, alice, "POST", `/executions/${executionId}/continue`, {
      input: { name: "Ada" },
    });
    expect(resumed.body).toMatchObject({ status: "COMPLETED", output_data: { hello: "Ada" } });
  });

  it("refuses to continue a paused run whose function is inactive, deleted or created anew (§6.2 step 3)", async () => {
    const GEN =
      '    answer = yield {"prompt": "Go on?", "schema": {"type": "object"}}\n    return {"resumed": True}';
    const paused = async (name: string) => {
      const run = await execute(stack, alice, { name });
      expect(run.body).toMatchObject({ status: "awaiting_input" });
      return (run.body as { execution_id: string }).execution_id;
    };
    const gone = (name: string) => ({
      code: "NOT_FOUND",
      detail: `Function 'default/${name}' not found or inactive`,
    });

    await createFunction(stack, alice, pythonFunction("gen_off", GEN));
    const offId = await paused("gen_off");
    const off = await api(stack, alice, "PUT", "/api/v1/functions/default/gen_off", { is_active: false });
    expect(off.body).toMatchObject({ is_active: false });
    const refused = await api(stack, alice, "POST", `/executions/${offId}/continue`, { input: {} });
    expect(refused.status).toBe(404);
    expect(refused.body).toMatchObject(gone("gen_off"));
    // Nothing ran: the run is still paused, and continues once its function is active again.
    expect((await api(stack, alice, "GET", `/executions/${offId}`)).body).toMatchObject({
      status: "AWAITING_INPUT",
    });
    await api(stack, alice, "PUT", "/api/v1/functions/default/gen_off", { is_active: true });
    const resumed = await api(stack, alice, "POST", `/executions/${offId}/continue`, { input: {} });
    expect(resumed.body).toMatchObject({ status: "COMPLETED", output_data: { resumed: true } });

    await createFunction(stack, alice, pythonFunction("gen_del", GEN));
    const delId = await paused("gen_del");
    expect((await api(stack, alice, "DELETE", "/api/v1/functions/default/gen_del")).status).toBe(200);
    const deleted = await api(stack, alice, "POST", `/executions/${delId}/continue`, { input: {} });
    expect(deleted.status).toBe(404);
    expect(deleted.body).toMatchObject(gone("gen_del"));
    // A function created anew under the name is another function (here another user's): still refused.
    await createFunction(stack, bob, pythonFunction("gen_del", GEN));
    const recreated = await api(stack, alice, "POST", `/executions/${delId}/continue`, { input: {} });
    expect(recreated.status).toBe(404);
    expect(recreated.body).toMatchObject(gone("gen_del"));
  });

  it("streams the function's output as SSE with resumable ids", async () => {
    await createFunction(
      stack,
      alice,
      pythonFunction("chatty", '    for i in range(3):\n        print("line", i)\n    return {}'),
    );
    const run = await execute(stack, alice, { name: "chatty" });
    const executionId = (run.body as { execution_id: string }).execution_id;
    const full = await (
      await stack.fetch(`/executions/${executionId}/logs`, { headers: alice.headers })
    ).text();
    expect(full).toContain("line 0");
    expect(full).toContain("line 2");
    expect(full).toContain("event: end");
    const ids = [...full.matchAll(/^id: (\d+)$/gm)].map((match) => Number(match[1]));
    expect(ids.length).toBeGreaterThan(0);
    const rest = await (
      await stack.fetch(`/executions/${executionId}/logs`, {
        headers: { ...alice.headers, "last-event-id": String(ids[0]) },
      })
    ).text();
    expect([...rest.matchAll(/^id: (\d+)$/gm)].map((match) => Number(match[1]))).toEqual(ids.slice(1));
  });

  it("returns a 2 MB result whole; fails one over 3 MiB clearly (invalid_result), recorded the same everywhere", async () => {
    await createFunction(stack, alice, pythonFunction("big", '    return {"s": "y" * 2_000_000}'));
    const big = await execute(stack, alice, { name: "big" });
    expect(big.status).toBe(200);
    expect(((big.body as { result: { s: string } }).result.s as string).length).toBe(2_000_000);
    const bigId = (big.body as { execution_id: string }).execution_id;
    const stored = (await api(stack, alice, "GET", `/executions/${bigId}`)).body as Row;
    expect(((stored.output_data as { s: string }).s as string).length).toBe(2_000_000);

    await createFunction(stack, alice, pythonFunction("huge", '    return {"s": "x" * 3_200_000}'));
    const run = await execute(stack, alice, { name: "huge" });
    expect(run.status).toBe(500);
    expect(run.body).toMatchObject({ error_type: "invalid_result" });
    expect(JSON.stringify(run.body)).toContain("at most 3145728");
    const executionId = (run.body as { execution_id: string }).execution_id;
    const row = (await api(stack, alice, "GET", `/executions/${executionId}`)).body as Row;
    expect(row).toMatchObject({ status: "FAILED", error_type: "invalid_result", output_data: null });
  });

  it("records an error holding a NUL character (Postgres text refuses it) as the error it is", async () => {
    await createFunction(stack, alice, {
      ...pythonFunction("nul", '    raise ValueError("a\\x00b")'),
      timeout: 5,
    });
    const run = await execute(stack, alice, { name: "nul" });
    expect(run.status).toBe(500);
    expect(run.body).toMatchObject({ error_type: "exception" });
    const executionId = (run.body as { execution_id: string }).execution_id;
    const row = (await api(stack, alice, "GET", `/executions/${executionId}`)).body as Row;
    expect(row).toMatchObject({ status: "FAILED" });
    expect(String(row.error)).toContain("a\uFFFDb");
  });

  it("fails a run past its timeout, and the next run succeeds", async () => {
    await createFunction(stack, alice, {
      ...pythonFunction("sleepy", "    import time\n    time.sleep(30)\n    return {}"),
      timeout: 2,
    });
    const slow = await execute(stack, alice, { name: "sleepy" });
    expect(slow.status).toBe(500);
    expect(slow.body).toMatchObject({ error_type: "timeout" });
    const next = await execute(stack, alice, { name: "greet" }, { body: { name: "again" } });
    expect(next.status).toBe(200);
  });

  it("runs 50 concurrent executions for two users without cross-talk", async () => {
    await createFunction(
      stack,
      alice,
      pythonFunction(
        "square",
        '    return {"n": input["n"], "sq": input["n"] ** 2, "user": context["user_email"]}',
      ),
    );
    await createFunction(stack, bob, {
      ...pythonFunction(
        "square",
        '    return {"n": input["n"], "sq": input["n"] ** 2, "user": context["user_email"]}',
      ),
      namespace: "bobs",
    });
    const runs = await Promise.all(
      Array.from({ length: 50 }, (_, n) =>
        n % 2 === 0
          ? execute(stack, alice, { name: "square" }, { n })
          : execute(stack, bob, { namespace: "bobs", name: "square" }, { n }),
      ),
    );
    runs.forEach((run, n) => {
      expect(run.status, JSON.stringify(run.body)).toBe(200);
      expect((run.body as { result: Row }).result).toEqual({
        n,
        sq: n * n,
        user: n % 2 === 0 ? "alice@acme.io" : "bob@acme.io",
      });
    });
  });
});

describe("containers and workers (S37, D-44)", () => {
  it("reports and scales the executor's pools for admins only", async () => {
    expect((await api(stack, alice, "GET", "/api/v1/workers")).body).toMatchObject({
      detail: "Not authorized to view workers",
    });
    expect((await api(stack, admin, "GET", "/api/v1/workers/count")).body).toEqual({ count: 0 });
    expect(
      (await api(stack, admin, "POST", "/api/v1/workers/scale", { target_count: 11 })).body,
    ).toMatchObject({
      detail: "Maximum 10 workers allowed",
    });
    expect(
      (await api(stack, admin, "POST", "/api/v1/workers/scale", { target_count: -1 })).body,
    ).toMatchObject({
      detail: "Target count must be >= 0",
    });
    expect((await api(stack, admin, "POST", "/api/v1/workers/scale", { target_count: 0 })).body).toEqual({
      action: "no_change",
      previous_count: 0,
      current_count: 0,
      added: 0,
      removed: 0,
    });
    const stats = (await api(stack, admin, "GET", "/api/v1/containers/stats")).body as Row[];
    expect(stats.map((row) => row.user_id)).toContain(alice.user.id);
    expect(String(stats[0]?.container_id)).toHaveLength(12);
    expect((await api(stack, alice, "GET", "/api/v1/containers/stats")).status).toBe(403);
    expect((await api(stack, admin, "DELETE", `/api/v1/containers/${alice.user.id}`)).body).toEqual({
      status: "stopped",
      user_id: alice.user.id,
    });
    // The next run starts a fresh sandbox.
    expect((await execute(stack, alice, { name: "greet" }, { body: { name: "after stop" } })).status).toBe(
      200,
    );
  });
});

/**
 * A proxy in front of the stack's database proxy, forwarding its HTTP queries and WebSockets, that drops the
 * answer to the queries `lose` picks once they ran: the connection is reset, as a network failure after a commit
 * would leave it.
 */
async function lossyDbProxy(
  upstreamPort: number,
  lose: (query: { query?: string; params?: unknown[] }) => boolean,
) {
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      let dropAnswer = false;
      try {
        dropAnswer = req.url?.startsWith("/sql") === true && lose(JSON.parse(body.toString("utf8")));
      } catch {
        // Not a query.
      }
      const forward = httpRequest(
        { host: "127.0.0.1", port: upstreamPort, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          if (dropAnswer) {
            answer.resume();
            answer.on("end", () => req.socket.destroy());
            return;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      forward.on("error", () => req.socket.destroy());
      forward.end(body);
    });
  });
  server.on("upgrade", (req, socket, head) => {
    const upstream = connect(upstreamPort, "127.0.0.1");
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let index = 0; index < req.rawHeaders.length; index += 2) {
      lines.push(`${req.rawHeaders[index]}: ${req.rawHeaders[index + 1]}`);
    }
    upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
    upstream.write(head);
    socket.pipe(upstream).pipe(socket);
    upstream.on("error", () => socket.destroy());
    socket.on("error", () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("executions whose record and run could part", () => {
  let lossy: TestStack;
  let carol: Session;
  let proxy: HttpServer;

  beforeAll(async () => {
    const upstreamPort = await freePort();
    // The INSERT recording an execution of `lost_answer` commits, and its answer is lost.
    proxy = await lossyDbProxy(
      upstreamPort,
      (query) =>
        /^insert into "executions"/.test(query.query ?? "") && !!query.params?.includes("lost_answer"),
    );
    lossy = await startTestStack({
      workerVars: {
        ...IDENTITY_VARS,
        EXECUTION_PAUSE_TTL_SECONDS: "2",
        DB_WS_PROXY: `127.0.0.1:${(proxy.address() as AddressInfo).port}`,
      },
      env: { DB_PROXY_PORT: String(upstreamPort) },
    });
    carol = await login(lossy, "carol@acme.io");
  });
  afterAll(async () => {
    await lossy?.stop();
    proxy?.close();
  });

  it("fails a paused generator whose input does not come within EXECUTION_PAUSE_TTL_SECONDS; continue is refused", async () => {
    await createFunction(
      lossy,
      carol,
      pythonFunction(
        "waits",
        '    answer = yield {"prompt": "Go on?", "schema": {"type": "object"}}\n    return answer',
      ),
    );
    const run = await execute(lossy, carol, { name: "waits" });
    expect(run.body).toMatchObject({ status: "awaiting_input", prompt: "Go on?" });
    const executionId = (run.body as { execution_id: string }).execution_id;
    let row: Row = {};
    for (const deadline = Date.now() + 15_000; Date.now() < deadline; ) {
      row = (await api(lossy, carol, "GET", `/executions/${executionId}`)).body as Row;
      if (row.status !== "AWAITING_INPUT") break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(row).toMatchObject({ status: "FAILED", error_type: "timeout" });
    expect(String(row.error)).toContain("The paused execution expired: no input within 2 s");
    const late = await api(lossy, carol, "POST", `/executions/${executionId}/continue`, { input: {} });
    expect(late.status).toBe(400);
    expect(late.body).toMatchObject({ detail: "Execution is not awaiting input" });
    const log = await (
      await lossy.fetch(`/executions/${executionId}/logs`, { headers: carol.headers })
    ).text();
    expect(log).toContain('event: end\ndata: {"status":"failed"}');
  });

  it("never leaves RUNNING a row whose INSERT committed with its answer lost", async () => {
    await createFunction(lossy, carol, pythonFunction("lost_answer", "    return {}"));
    const run = await execute(lossy, carol, { name: "lost_answer" });
    expect(run.status).toBe(500);
    const handle = openStackDb(lossy);
    try {
      const rows = await handle.db.execute(
        sql`select status, error, error_type from executions where function_name = 'lost_answer'`,
      );
      expect(rows.rows).toEqual([
        {
          status: "FAILED",
          error: "The execution could not be started: recording it failed",
          error_type: "internal",
        },
      ]);
    } finally {
      await handle.close();
    }
  });

  it("takes the outcome Postgres recorded first when its own is refused (the object lost its save)", async () => {
    await createFunction(
      lossy,
      carol,
      pythonFunction("refused", "    import time\n    time.sleep(1.5)\n    raise ValueError('late')"),
    );
    const started = await execute(lossy, carol, { name: "refused" }, {}, "?async=true");
    const executionId = (started.body as { execution_id: string }).execution_id;
    // As if this object recorded COMPLETED and restarted before saving it: Postgres says so, the object not.
    const handle = openStackDb(lossy);
    try {
      await handle.db.execute(
        sql`update executions set status = 'COMPLETED', output_data = '{"from": "postgres"}', completed_at = now()
            where execution_id = ${executionId} and status = 'RUNNING'`,
      );
    } finally {
      await handle.close();
    }
    const log = await (
      await lossy.fetch(`/executions/${executionId}/logs`, { headers: carol.headers })
    ).text();
    expect(log).toContain('event: end\ndata: {"status":"completed"}');
    expect((await api(lossy, carol, "GET", `/executions/${executionId}`)).body).toMatchObject({
      status: "COMPLETED",
      output_data: { from: "postgres" },
    });
  });
});
