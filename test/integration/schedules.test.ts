import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nextRunAfter } from "../../workers/lib/cron";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL, tokenHolds } from "../helpers/auth";
import { openStackDb } from "../helpers/db";
import { createFunction, pythonFunction, waitForFinalStatus } from "../helpers/functions";
import { descendants } from "../helpers/processes";
import { startTestStack, type TestStack } from "../helpers/stack";

let stack: TestStack;
let admin: Session;
let alice: Session;
let bob: Session;
let handle: ReturnType<typeof openStackDb>;

type Row = Record<string, unknown>;

const ECHO = "    return input";
/** A cron that is never due during a test run unless a test makes it due. */
const YEARLY = "0 0 1 1 *";

beforeAll(async () => {
  stack = await startTestStack({ workerVars: IDENTITY_VARS });
  handle = openStackDb(stack);
  [admin, alice, bob] = await Promise.all([
    login(stack, SUPERADMIN_EMAIL),
    login(stack, "alice@acme.io"),
    login(stack, "bob@acme.io"),
  ]);
  await createFunction(stack, alice, pythonFunction("ticker", ECHO));
  await createFunction(stack, alice, pythonFunction("counter", ECHO));
});
afterAll(async () => {
  await handle?.close();
  await stack?.stop();
});

async function rows(query: ReturnType<typeof sql>): Promise<Row[]> {
  return (await handle.db.execute(query)).rows as Row[];
}

async function count(query: ReturnType<typeof sql>): Promise<number> {
  return Number((await rows(query))[0]?.n);
}

const executionsOf = (scheduleId: string) =>
  count(sql`select count(*)::int as n from executions where trigger_id = ${scheduleId}`);

let forced = 0;

/**
 * Makes a schedule due: next_run `minutesAgo` minutes before this minute. Each call picks a minute no
 * earlier call picked, because a scheduled minute runs at most once (its Redis idempotency key).
 */
async function makeDue(name: string, minutesAgo = 1 + 1000 * forced++): Promise<string> {
  const [row] = await rows(
    sql`update scheduled_jobs set next_run = date_trunc('minute', now()) - ${minutesAgo} * interval '1 minute'
        where name = ${name} returning next_run`,
  );
  return String(row?.next_run);
}

/** Fires the Cron Trigger as the platform would. */
async function tick() {
  const response = await stack.fetch("/__scheduled?cron=*+*+*+*+*");
  expect(response.status, await response.clone().text()).toBe(200);
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false>,
  timeoutMs = 20_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function scheduleRow(name: string): Promise<Row> {
  const [row] = await rows(sql`select * from scheduled_jobs where name = ${name}`);
  if (!row) throw new Error(`no schedule '${name}'`);
  return row;
}

const outcomeOf = (row: Row) => JSON.stringify([row.last_status, row.last_execution_id, row.last_error]);

/** Waits until a tick has recorded a new outcome for `name` (a new execution id or error). */
async function waitForOutcome(name: string, previous?: Row) {
  const before = previous ? outcomeOf(previous) : outcomeOf({});
  return waitFor(`a run of '${name}'`, async () => {
    const row = await scheduleRow(name);
    return row.last_status && outcomeOf(row) !== before ? row : undefined;
  });
}

/** Lets any tick still in flight finish before counting what did not happen. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 1500));

async function createSchedule(session: Session, body: Record<string, unknown>) {
  const response = await api(stack, session, "POST", "/api/v1/schedules", body);
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body as Row & { id: string };
}

describe("S18 schedules", () => {
  let schedule: Row & { id: string };

  it("creates a schedule and refuses duplicates, bad cron and unknown functions", async () => {
    const before = Date.now();
    schedule = await createSchedule(alice, {
      name: "tick",
      function_name: "ticker",
      cron_expression: "* * * * *",
      input_data: { n: 1 },
    });
    expect(schedule).toMatchObject({
      name: "tick",
      function_namespace: "default",
      function_name: "ticker",
      timezone: "UTC",
      is_active: true,
      last_run: null,
      last_status: null,
      input_data: { n: 1 },
      user_id: alice.user.id,
    });
    // D-9: live at once; the first run is the next minute.
    const nextRun = Date.parse(String(schedule.next_run));
    expect(nextRun).toBeGreaterThan(before);
    expect(nextRun).toBeLessThanOrEqual(Date.now() + 60_000);
    expect(nextRun % 60_000).toBe(0);

    const again = await api(stack, alice, "POST", "/api/v1/schedules", {
      name: "tick",
      function_name: "ticker",
      cron_expression: "* * * * *",
      input_data: {},
    });
    expect(again.status).toBe(400);
    expect(again.body).toMatchObject({ detail: "Schedule 'tick' already exists" });
    // A name a URL resolves away could never be read, changed or deleted again.
    for (const name of [".", ".."]) {
      const dots = await api(stack, alice, "POST", "/api/v1/schedules", {
        name,
        function_name: "ticker",
        cron_expression: "* * * * *",
        input_data: {},
      });
      expect(dots.status).toBe(422);
    }
    // Names are global: another user's duplicate is the same 400, not a 500.
    await createFunction(stack, bob, pythonFunction("bobfn", ECHO));
    const bobs = await api(stack, bob, "POST", "/api/v1/schedules", {
      name: "tick",
      function_name: "bobfn",
      cron_expression: "* * * * *",
      input_data: {},
    });
    expect(bobs.status).toBe(400);
    expect(bobs.body).toMatchObject({ detail: "Schedule 'tick' already exists" });
  });

  it("runs on a tick: execution with trigger SCHEDULE, trigger_id, input_data, COMPLETED", async () => {
    await makeDue("tick");
    await tick();
    const dispatched = await waitForOutcome("tick");
    expect(dispatched.last_status).toBe("STARTED");
    const executionId = String(dispatched.last_execution_id);
    const execution = await waitForFinalStatus(stack, alice, executionId);
    expect(execution).toMatchObject({
      status: "COMPLETED",
      trigger_type: "SCHEDULE",
      trigger_id: schedule.id,
      input_data: { n: 1 },
      output_data: { n: 1 },
      function_name: "ticker",
    });
    const listed = await api(stack, alice, "GET", "/executions?function_name=ticker");
    expect(listed.body as Row[]).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          execution_id: executionId,
          trigger_type: "SCHEDULE",
          trigger_id: schedule.id,
        }),
      ]),
    );

    const read = await api(stack, alice, "GET", "/api/v1/schedules/tick");
    expect(read.status).toBe(200); // D-5: the owner reads their schedule
    const body = read.body as Row;
    expect(body.last_run).not.toBeNull();
    expect(Date.parse(String(body.next_run))).toBeGreaterThan(Date.parse(String(body.last_run)));
    expect(body).toMatchObject({ last_status: "STARTED", last_execution_id: executionId, last_error: null });

    const status = await api(stack, null, "GET", "/scheduler/status");
    expect(status.status).toBe(200);
    const report = status.body as {
      status: string;
      jobs: Row[];
      total_jobs: number;
      last_tick: string | null;
    };
    expect(report.status).toBe("running");
    expect(report.last_tick).not.toBeNull();
    expect(report.total_jobs).toBe(report.jobs.length);
    expect(report.jobs).toContainEqual({
      id: schedule.id,
      name: "tick",
      next_run: body.next_run,
      trigger: "cron[* * * * *] tz=UTC",
    });
  });

  it("documents the routes", async () => {
    const management = (await (await stack.fetch("/api/v1/openapi.json")).json()) as { paths: Row };
    expect(Object.keys(management.paths)).toEqual(
      expect.arrayContaining(["/schedules", "/schedules/{name}"]),
    );
    const runtime = (await (await stack.fetch("/openapi.json")).json()) as { paths: Row };
    expect(runtime.paths["/scheduler/status"]).toBeDefined();
  });

  it("hides schedules from other users; admins see them", async () => {
    expect((await api(stack, bob, "GET", "/api/v1/schedules/tick")).body).toMatchObject({
      detail: "Schedule 'tick' not found",
    });
    expect((await api(stack, bob, "PATCH", "/api/v1/schedules/tick", { is_active: false })).status).toBe(404);
    expect((await api(stack, bob, "DELETE", "/api/v1/schedules/tick")).status).toBe(404);
    const bobsList = (await api(stack, bob, "GET", "/api/v1/schedules")).body as Row[];
    expect(bobsList.map((row) => row.name)).not.toContain("tick");
    expect((await api(stack, admin, "GET", "/api/v1/schedules/tick")).status).toBe(200);
    const adminList = (await api(stack, admin, "GET", "/api/v1/schedules")).body as Row[];
    expect(adminList.map((row) => row.name)).toContain("tick");
    // An admin's edit checks the target against the owner's functions (the admin has none of that name).
    const current = (await api(stack, admin, "GET", "/api/v1/schedules/tick")).body as Row;
    const edited = await api(stack, admin, "PATCH", "/api/v1/schedules/tick", {
      input_data: current.input_data,
    });
    expect(edited.status, JSON.stringify(edited.body)).toBe(200);
    // The owner's API key without schedule grants neither lists nor changes them.
    const created = await api(stack, alice, "POST", "/api/v1/api-keys", { name: "bare", permissions: {} });
    const bare = { headers: { "x-api-key": (created.body as { key: string }).key } };
    expect((await api(stack, bare, "GET", "/api/v1/schedules")).body).toEqual([]);
    expect((await api(stack, bare, "DELETE", "/api/v1/schedules/tick")).status).toBe(403);
  });

  it("deactivated: no run on the next tick, gone from status; reactivated (D-8): runs again; deleted", async () => {
    const control = await createSchedule(alice, {
      name: "control",
      function_name: "counter",
      cron_expression: YEARLY,
      input_data: {},
    });
    // A PATCH with nothing to change changes nothing (only the fields a PATCH names are written).
    const before = (await api(stack, alice, "GET", "/api/v1/schedules/control")).body;
    const empty = await api(stack, alice, "PATCH", "/api/v1/schedules/control", {});
    expect(empty.status, JSON.stringify(empty.body)).toBe(200);
    expect(empty.body).toEqual(before);
    const off = await api(stack, alice, "PATCH", "/api/v1/schedules/tick", { is_active: false });
    expect(off.status).toBe(200);
    expect(off.body).toMatchObject({ is_active: false, next_run: null });
    // D-8: an inactive schedule can still be read.
    expect((await api(stack, alice, "GET", "/api/v1/schedules/tick")).body).toMatchObject({
      is_active: false,
    });
    const status = (await api(stack, null, "GET", "/scheduler/status")).body as { jobs: Row[] };
    expect(status.jobs.map((job) => job.id)).not.toContain(schedule.id);
    expect(status.jobs.map((job) => job.id)).toContain(control.id);

    const runsBefore = await executionsOf(schedule.id);
    await makeDue("tick"); // even a past next_run does not make an inactive schedule run
    await makeDue("control");
    await tick();
    await waitForOutcome("control");
    await settle();
    expect(await executionsOf(control.id)).toBe(1);
    expect(await executionsOf(schedule.id)).toBe(runsBefore);

    const on = await api(stack, alice, "PATCH", "/api/v1/schedules/tick", { is_active: true });
    expect(on.status).toBe(200);
    const nextRun = Date.parse(String((on.body as Row).next_run));
    expect(nextRun).toBeGreaterThan(Date.now() - 1000);
    expect(nextRun).toBeLessThanOrEqual(Date.now() + 60_000);
    const previous = await scheduleRow("tick");
    await makeDue("tick");
    await tick();
    expect((await waitForOutcome("tick", previous)).last_status).toBe("STARTED");
    expect(await executionsOf(schedule.id)).toBe(runsBefore + 1);

    const deleted = await api(stack, alice, "DELETE", "/api/v1/schedules/tick");
    expect(deleted.status).toBe(200);
    expect(deleted.body).toEqual({ message: "Schedule 'tick' deleted successfully" });
    expect((await api(stack, alice, "GET", "/api/v1/schedules/tick")).status).toBe(404);
    const after = (await api(stack, null, "GET", "/scheduler/status")).body as { jobs: Row[] };
    expect(after.jobs.map((job) => job.id)).not.toContain(schedule.id);
    expect((await api(stack, alice, "DELETE", "/api/v1/schedules/control")).status).toBe(200);
  });
});

describe("the credential a schedule's runs act with", () => {
  it("is the owner's API key the schedule was saved with", async () => {
    await createFunction(
      stack,
      alice,
      pythonFunction("whoami_tick", '    return {"token": context["access_token"]}'),
    );
    const created = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "scheduler",
      permissions: { "sinas.schedules.post:own": true, "sinas.functions.*.post:own": true },
    });
    const key = { headers: { "x-api-key": (created.body as { key: string }).key } };
    const saved = await api(stack, key, "POST", "/api/v1/schedules", {
      name: "keyed-tick",
      function_name: "whoami_tick",
      cron_expression: YEARLY,
      input_data: {},
    });
    expect(saved.status, JSON.stringify(saved.body)).toBe(200);
    await makeDue("keyed-tick");
    await tick();
    const dispatched = await waitForOutcome("keyed-tick");
    const execution = await waitForFinalStatus(stack, alice, String(dispatched.last_execution_id));
    const token = (execution.output_data as { token: string }).token;
    // Alice's login may start chats; the key that saved the schedule may not, nor may its runs.
    expect(await tokenHolds(stack, token, "sinas.chats.post:own")).toBe(false);

    // The key revoked, its runs would get a dead token: the occurrence fails, saying why, and nothing runs.
    const keyId = (created.body as { id: string }).id;
    expect((await api(stack, alice, "DELETE", `/api/v1/api-keys/${keyId}`)).status).toBe(204);
    const runsBefore = await executionsOf(String((saved.body as Row).id));
    await makeDue("keyed-tick");
    await tick();
    const refused = await waitForOutcome("keyed-tick", dispatched);
    expect(refused.last_status).toBe("FAILED");
    expect(String(refused.last_error)).toMatch(/API key this schedule runs with .* revoked or expired/);
    expect(await executionsOf(String((saved.body as Row).id))).toBe(runsBefore);
  });
});

describe("claiming", () => {
  it("runs a due schedule exactly once under concurrent ticks", async () => {
    const once = await createSchedule(alice, {
      name: "once",
      function_name: "counter",
      cron_expression: YEARLY,
      input_data: { k: "once" },
    });
    let dueAt = "";
    for (let round = 0; round < 3; round++) {
      const before = await executionsOf(once.id);
      const previous = await scheduleRow("once");
      dueAt = await makeDue("once");
      await Promise.all([tick(), tick(), tick(), tick()]);
      await waitForOutcome("once", previous);
      await settle();
      expect(await executionsOf(once.id)).toBe(before + 1);
    }
    // The same occurrence claimed again (as a replayed claim would): its idempotency key stops it.
    const before = await executionsOf(once.id);
    const lastRun = (await scheduleRow("once")).last_run;
    await handle.db.execute(
      sql`update scheduled_jobs set next_run = ${dueAt}::timestamptz where name = 'once'`,
    );
    await tick();
    await waitFor("the claim", async () => String((await scheduleRow("once")).last_run) !== String(lastRun));
    await settle();
    expect(await executionsOf(once.id)).toBe(before);
    expect((await api(stack, alice, "DELETE", "/api/v1/schedules/once")).status).toBe(200);
  });

  it("catches a missed hour up once, then continues at the next regular time", async () => {
    const missed = await createSchedule(alice, {
      name: "missed",
      function_name: "counter",
      cron_expression: "* * * * *",
      input_data: {},
    });
    await makeDue("missed", 60);
    await tick();
    const row = await waitForOutcome("missed");
    await settle();
    expect(await executionsOf(missed.id)).toBe(1);
    // The next run is the next minute after the tick, not one of the 59 missed minutes.
    expect(Date.parse(String(row.next_run))).toBeGreaterThan(Date.parse(String(row.last_run)));
    expect(Date.parse(String(row.next_run)) - Date.parse(String(row.last_run))).toBeLessThanOrEqual(60_000);
    expect((await api(stack, alice, "DELETE", "/api/v1/schedules/missed")).status).toBe(200);
  });

  it("records a run that cannot start and goes on with the other due schedules", async () => {
    await createFunction(stack, alice, pythonFunction("strict", ECHO));
    const broken = await createSchedule(alice, {
      name: "broken",
      function_name: "strict",
      cron_expression: YEARLY,
      input_data: {},
    });
    const fine = await createSchedule(alice, {
      name: "fine",
      function_name: "counter",
      cron_expression: YEARLY,
      input_data: {},
    });
    // The function's schema changes after the schedule was created: the input no longer fits.
    const changed = await api(stack, alice, "PUT", "/api/v1/functions/default/strict", {
      input_schema: { type: "object", required: ["x"] },
    });
    expect(changed.status).toBe(200);
    await makeDue("broken");
    await makeDue("fine");
    await tick();
    const failed = await waitForOutcome("broken");
    expect(failed.last_status).toBe("FAILED");
    expect(String(failed.last_error)).toContain("Schema validation failed");
    const execution = await api(stack, alice, "GET", `/executions/${failed.last_execution_id}`);
    expect(execution.body).toMatchObject({
      status: "FAILED",
      trigger_type: "SCHEDULE",
      trigger_id: broken.id,
    });
    expect((await waitForOutcome("fine")).last_status).toBe("STARTED");
    expect(await executionsOf(fine.id)).toBe(1);

    // A deleted target is recorded too, as a FAILED execution of its own.
    expect((await api(stack, alice, "DELETE", "/api/v1/functions/default/strict")).status).toBe(200);
    await makeDue("broken");
    await tick();
    const gone = await waitForOutcome("broken", failed);
    expect(gone).toMatchObject({ last_status: "FAILED" });
    expect(gone.last_error).toBe("Function execution failed: Function 'default/strict' not found");
    expect(gone.last_execution_id).not.toBe(failed.last_execution_id);
    const missing = await api(stack, alice, "GET", `/executions/${gone.last_execution_id}`);
    expect(missing.body).toMatchObject({
      status: "FAILED",
      function_name: "strict",
      trigger_type: "SCHEDULE",
      trigger_id: broken.id,
      error: "Function 'default/strict' not found",
    });
    for (const name of ["broken", "fine"]) {
      expect((await api(stack, alice, "DELETE", `/api/v1/schedules/${name}`)).status).toBe(200);
    }
  });
});

/**
 * Runs `body` with the executor stopped (SIGSTOP): a job posted meanwhile waits unanswered, so the tick
 * that claimed it stays between its claim and its outcome until the executor continues.
 */
async function withExecutorPaused(body: () => Promise<void>) {
  const executor = descendants(stack.pid).find((child) =>
    child.command.includes("executor-node/src/server.ts"),
  );
  if (!executor) throw new Error("no executor process");
  process.kill(executor.pid, "SIGSTOP");
  try {
    await body();
  } finally {
    process.kill(executor.pid, "SIGCONT");
  }
}

describe("outcomes", () => {
  it("records a job the executor refuses as FAILED, with its FAILED execution", async () => {
    await createFunction(stack, alice, pythonFunction("refused", ECHO));
    const refused = await createSchedule(alice, {
      name: "refused",
      function_name: "refused",
      cron_expression: YEARLY,
      input_data: {},
    });
    // A timeout the API never saves: the executor answers 400 to the job (a refusal, nothing thrown).
    await handle.db.execute(sql`update functions set timeout_seconds = 0 where name = 'refused'`);
    await makeDue("refused");
    await tick();
    const failed = await waitForOutcome("refused");
    expect(failed.last_status).toBe("FAILED");
    expect(String(failed.last_error)).toMatch(
      /^Function execution failed: The executor refused the job \(400\): invalid job: function\.timeout_seconds/,
    );
    const execution = await api(stack, alice, "GET", `/executions/${failed.last_execution_id}`);
    expect(execution.body).toMatchObject({
      status: "FAILED",
      trigger_type: "SCHEDULE",
      trigger_id: refused.id,
      error: String(failed.last_error).replace(/^Function execution failed: /, ""),
    });
    expect((await api(stack, alice, "DELETE", "/api/v1/schedules/refused")).status).toBe(200);
  });

  it("a tick leaves updated_at alone (it says when the schedule was saved)", async () => {
    await createSchedule(alice, {
      name: "untouched",
      function_name: "counter",
      cron_expression: YEARLY,
      input_data: {},
    });
    const saved = await scheduleRow("untouched");
    await makeDue("untouched");
    await tick();
    expect((await waitForOutcome("untouched")).last_status).toBe("STARTED");
    expect((await scheduleRow("untouched")).updated_at).toEqual(saved.updated_at);
    // A row written without next_run is given one, also without changing updated_at.
    await handle.db.execute(sql`update scheduled_jobs set next_run = null where name = 'untouched'`);
    await tick();
    const rescheduled = await waitFor("the next run", async () => {
      const row = await scheduleRow("untouched");
      return row.next_run ? row : undefined;
    });
    expect(rescheduled.updated_at).toEqual(saved.updated_at);
    expect((await api(stack, alice, "DELETE", "/api/v1/schedules/untouched")).status).toBe(200);
  });

  it("a claim clears the last outcome; a slow dispatch never overwrites a later claim's", async () => {
    const overlap = await createSchedule(alice, {
      name: "overlap",
      function_name: "counter",
      cron_expression: YEARLY,
      input_data: {},
    });
    await handle.db.execute(
      sql`update scheduled_jobs set last_status = 'FAILED', last_execution_id = 'earlier', last_error = 'earlier'
          where name = 'overlap'`,
    );
    await withExecutorPaused(async () => {
      await makeDue("overlap");
      await tick();
      // The job waits for the paused executor: the claim is in, its outcome not yet.
      const claimed = await waitFor("the claim", async () => {
        const row = await scheduleRow("overlap");
        return row.last_run ? row : undefined;
      });
      expect(claimed).toMatchObject({ last_status: null, last_execution_id: null, last_error: null });
      // Meanwhile a later tick claims the next occurrence and records its outcome.
      await handle.db.execute(
        sql`update scheduled_jobs set last_run = last_run + interval '1 minute', last_status = 'STARTED',
            last_execution_id = 'newer', last_error = null where name = 'overlap'`,
      );
    });
    // The paused run goes ahead; its outcome, written once the executor took the job, is dropped.
    const run = await waitFor("the paused run", async () => {
      const [row] = await rows(sql`select execution_id from executions where trigger_id = ${overlap.id}`);
      return row?.execution_id;
    });
    expect((await waitForFinalStatus(stack, alice, String(run))).status).toBe("COMPLETED");
    await settle();
    expect(await scheduleRow("overlap")).toMatchObject({
      last_status: "STARTED",
      last_execution_id: "newer",
      last_error: null,
    });
    expect((await api(stack, alice, "DELETE", "/api/v1/schedules/overlap")).status).toBe(200);
  });
});

describe("changes (D-9)", () => {
  it("a changed cron takes effect on the next tick", { timeout: 150_000 }, async () => {
    const created = await createSchedule(alice, {
      name: "changer",
      function_name: "counter",
      cron_expression: YEARLY,
      input_data: {},
    });
    expect(created.next_run).toBe(nextRunAfter(YEARLY, "UTC", new Date()).toISOString());
    // A new zone alone reschedules, in that zone.
    const zoned = await api(stack, alice, "PATCH", "/api/v1/schedules/changer", {
      cron_expression: "0 9 * * 1",
      timezone: "america/new_york",
    });
    expect(zoned.body).toMatchObject({ timezone: "America/New_York", cron_expression: "0 9 * * 1" });
    expect((zoned.body as Row).next_run).toBe(
      nextRunAfter("0 9 * * 1", "America/New_York", new Date()).toISOString(),
    );
    // Only the description: the pending run stays.
    const described = await api(stack, alice, "PATCH", "/api/v1/schedules/changer", { description: "d" });
    expect((described.body as Row).next_run).toBe((zoned.body as Row).next_run);

    // Every minute, without touching the database: the next real minute's tick runs it.
    const everyMinute = await api(stack, alice, "PATCH", "/api/v1/schedules/changer", {
      cron_expression: "*  *  * * *",
      timezone: "UTC",
    });
    expect(everyMinute.status).toBe(200);
    expect((everyMinute.body as Row).cron_expression).toBe("* * * * *");
    const due = Date.parse(String((everyMinute.body as Row).next_run));
    expect(due - Date.now()).toBeLessThanOrEqual(60_000);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now()) + 500));
    await tick();
    const row = await waitForOutcome("changer");
    expect(row.last_status).toBe("STARTED");
    expect(await executionsOf(created.id)).toBe(1);
    expect((await api(stack, alice, "DELETE", "/api/v1/schedules/changer")).status).toBe(200);
  });
});

describe("validation: 4xx naming the field, nothing stored", () => {
  const base = { name: "bad", function_name: "ticker", cron_expression: "* * * * *", input_data: {} };
  const stored = () => count(sql`select count(*)::int as n from scheduled_jobs where name = 'bad'`);

  it.each([
    ["61 * * * *", "Invalid cron expression: minute value 61 is out of range 0-59"],
    ["* * * * * *", "Invalid cron expression: expected 5 fields"],
    ["@hourly", "Invalid cron expression: macros such as '@hourly' are not supported"],
    ["0 0 31 2 *", "Invalid cron expression: it never fires"],
  ])("rejects cron %j", async (cron, message) => {
    const response = await api(stack, alice, "POST", "/api/v1/schedules", { ...base, cron_expression: cron });
    expect(response.status).toBe(422);
    const detail = (response.body as { detail: { loc: string[]; msg: string }[] }).detail;
    expect(detail[0]?.loc).toEqual(["body", "cron_expression"]);
    expect(detail[0]?.msg).toContain(message);
    expect(await stored()).toBe(0);
  });

  it("rejects a bad time zone", async () => {
    const response = await api(stack, alice, "POST", "/api/v1/schedules", {
      ...base,
      timezone: "Mars/Olympus",
    });
    expect(response.status).toBe(422);
    expect((response.body as { detail: unknown }).detail).toEqual([
      {
        loc: ["body", "timezone"],
        msg: "Invalid time zone: 'Mars/Olympus' is not an IANA time zone name",
        type: "custom",
      },
    ]);
    expect(await stored()).toBe(0);
  });

  it("rejects an unknown function, or one that is not the caller's", async () => {
    const unknown = await api(stack, alice, "POST", "/api/v1/schedules", { ...base, function_name: "nope" });
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ detail: "Function 'default/nope' not found" });
    const others = await api(stack, alice, "POST", "/api/v1/schedules", { ...base, function_name: "bobfn" });
    expect(others.body).toMatchObject({ detail: "Function 'default/bobfn' not found" });
    expect(await stored()).toBe(0);
  });

  it("rejects input_data that breaks the function's input schema", async () => {
    await createFunction(
      stack,
      alice,
      pythonFunction("typed", ECHO, {
        input_schema: { type: "object", properties: { n: { type: "integer" } }, required: ["n"] },
      }),
    );
    const response = await api(stack, alice, "POST", "/api/v1/schedules", {
      ...base,
      function_name: "typed",
      input_data: { n: "one" },
    });
    expect(response.status).toBe(422);
    expect((response.body as { detail: { loc: string[] }[] }).detail[0]?.loc).toEqual([
      "body",
      "input_data",
      "n",
    ]);
    expect(await stored()).toBe(0);
  });

  it("rejects input_data nested more than 256 levels deep, naming it", async () => {
    const nested = (depth: number): unknown => (depth <= 1 ? {} : { a: nested(depth - 1) });
    const response = await api(stack, alice, "POST", "/api/v1/schedules", {
      ...base,
      input_data: nested(257),
    });
    expect(response.status).toBe(422);
    expect((response.body as { detail: { loc: string[]; msg: string }[] }).detail[0]).toMatchObject({
      loc: ["body", "input_data"],
      msg: "must not nest arrays and objects more than 256 levels deep",
    });
    expect(await stored()).toBe(0);
  });

  it("treats an unknown namespace as an unknown function; a bad PATCH changes nothing", async () => {
    const guest = await api(stack, alice, "POST", "/api/v1/schedules", {
      ...base,
      function_namespace: "other",
    });
    // Users hold sinas.functions.*.post:own, so an unknown namespace is a 404 for the function.
    expect(guest.status).toBe(404);
    await createSchedule(alice, { ...base, name: "kept", cron_expression: YEARLY });
    const before = await scheduleRow("kept");
    for (const patch of [
      { cron_expression: "61 * * * *" },
      { timezone: "Nowhere/Land" },
      { function_name: "nope" },
      { input_data: { n: 1 }, function_name: "typed", cron_expression: "* * * * *", extra: 1 },
    ]) {
      const response = await api(stack, alice, "PATCH", "/api/v1/schedules/kept", patch);
      expect(response.status, JSON.stringify(patch)).toBeGreaterThanOrEqual(400);
      expect(response.status).toBeLessThan(500);
    }
    expect(await scheduleRow("kept")).toEqual(before);
    expect(
      (await api(stack, alice, "PATCH", "/api/v1/schedules/kept", { function_name: "nope" })).body,
    ).toMatchObject({
      detail: "Function 'default/nope' not found",
    });
  });
});
