import { runInDurableObject, env as testEnv } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import {
  FINISHED_RUN_RETENTION_MS,
  newRunState,
  PLAN_PART_CHARS,
  partsOf,
  type RunPlan,
  type RunState,
  RunStore,
} from "../../durable-objects/execution-run-store";
import type { Env } from "../../workers/env";
import { EXECUTION_RUN_SHARDS, executionShardOf } from "../../workers/services/execution-shards";

const env = testEnv as unknown as Env;
/** A watchdog deadline no test reaches. */
const LATER = Date.now() + 3_600_000;

function stateOf(executionId: string, status: RunState["status"] = "running"): RunState {
  return { ...newRunState(executionId), status };
}

function planOf(executionId: string): RunPlan {
  return {
    record: {
      executionId,
      userId: "u",
      functionNamespace: "default",
      functionName: "f",
      triggerType: "API",
      triggerId: "manual",
      chatId: null,
      input: { big: "x".repeat(10) },
    },
    outputSchema: {},
    job: { execution_id: executionId, input: { big: "x".repeat(10) } } as unknown as RunPlan["job"],
  };
}

/** How long a paused run waits for its input in these stores. */
const PAUSE_TTL_MS = 600_000;

/** A store over `sql` (a new one over the same storage is a restarted object's). */
function storeOver(sql: SqlStorage): RunStore {
  return new RunStore(sql, PAUSE_TTL_MS);
}

/** A fresh shard object per test, with the store over its SQLite storage. */
async function withStore(test: (store: RunStore) => void | Promise<void>): Promise<void> {
  const stub = env.EXECUTION_RUN.get(env.EXECUTION_RUN.newUniqueId());
  await runInDurableObject(stub, (_instance, state) => test(storeOver(state.storage.sql)));
}

describe("execution shards", () => {
  it("maps an id to the same shard every time, and spreads ids over all shards", () => {
    const ids = Array.from({ length: 2000 }, () => crypto.randomUUID());
    expect(ids.map(executionShardOf)).toEqual(ids.map(executionShardOf));
    const used = new Set(ids.map(executionShardOf));
    expect(used.size).toBe(EXECUTION_RUN_SHARDS);
    expect(Math.max(...used)).toBe(EXECUTION_RUN_SHARDS - 1);
    expect(Math.min(...used)).toBe(0);
  });
});

describe("RunStore (one ExecutionRun shard's tables)", () => {
  it("keeps each run's plan, with the input stored once, and state apart", () =>
    withStore((store) => {
      store.insertNew(planOf("a"), stateOf("a"), LATER);
      store.insertNew(planOf("b"), stateOf("b"), LATER);
      store.save({ ...stateOf("b"), status: "completed", result: 42 });
      expect(store.state("a")?.status).toBe("running");
      expect(store.state("b")).toMatchObject({ status: "completed", result: 42 });
      expect(store.plan("a")?.job.input).toEqual({ big: "xxxxxxxxxx" });
      expect(store.state("missing")).toBeNull();
    }));

  it("keeps a plan larger than a SQLite value holds in parts, read back whole, also after a restart", async () => {
    const stub = env.EXECUTION_RUN.get(env.EXECUTION_RUN.newUniqueId());
    await runInDurableObject(stub, (_instance, state) => {
      const store = storeOver(state.storage.sql);
      // A part never ends between the two halves of a surrogate pair.
      expect(partsOf("ab😀c😀", 3)).toEqual(["ab", "😀c", "😀"]);
      // Over 2 MB in UTF-8 (3 bytes a character), with characters outside the BMP here and there.
      const text = `${"€".repeat(PLAN_PART_CHARS - 1)}😀${"€".repeat(PLAN_PART_CHARS)}😀x`;
      const plan = planOf("big");
      plan.record.input = { text };
      plan.job.function = { code: "x".repeat(PLAN_PART_CHARS) } as RunPlan["job"]["function"];
      expect(store.insertNew(plan, stateOf("big"), LATER)).toBe(true);
      store.save({ ...stateOf("big"), status: "awaiting_input" });
      const read = storeOver(state.storage.sql).plan("big");
      expect(read?.record.input).toEqual({ text });
      expect(read?.job.input).toEqual({ text });
      expect(read?.job.function.code).toHaveLength(PLAN_PART_CHARS);
      store.remove("big");
      expect(storeOver(state.storage.sql).plan("big")).toBeNull();
      expect(state.storage.sql.exec("select count(*) as n from plan_parts").one().n).toBe(0);
    });
  });

  it("stores a run once: a second insert of its id changes nothing", () =>
    withStore((store) => {
      expect(store.insertNew(planOf("a"), stateOf("a"), LATER)).toBe(true);
      store.save({ ...stateOf("a"), status: "completed", result: 1 });
      expect(store.insertNew(planOf("a"), stateOf("a"), LATER)).toBe(false);
      expect(store.state("a")).toMatchObject({ status: "completed", result: 1 });
    }));

  it("reads what it saved, also through a new store over the same storage (a restarted object)", async () => {
    const stub = env.EXECUTION_RUN.get(env.EXECUTION_RUN.newUniqueId());
    await runInDurableObject(stub, (_instance, state) => {
      const store = storeOver(state.storage.sql);
      store.insertNew(planOf("a"), stateOf("a"), LATER);
      store.save({ ...stateOf("a"), dispatchedAt: 7 });
      store.insertNew(planOf("b"), stateOf("b"), LATER);
      store.save({ ...stateOf("b"), status: "awaiting_input", prompt: "name?" });
      store.insertNew(planOf("c"), stateOf("c"), LATER);
      store.save({ ...stateOf("c"), status: "failed", error: "boom" });
      const returned = store.state("a") as RunState;
      returned.status = "failed"; // a caller's change to what it read is not a save
      for (const reader of [store, storeOver(state.storage.sql)]) {
        expect(reader.state("a")).toMatchObject({ status: "running", dispatchedAt: 7 });
        expect(reader.state("b")).toMatchObject({ status: "awaiting_input", prompt: "name?" });
        expect(reader.state("c")).toMatchObject({ status: "failed", error: "boom" });
      }
      store.remove("a");
      expect(store.state("a")).toBeNull();
      // When a job went out is kept in memory only (it feeds Server-Timing): a new store does not know it.
      store.insertNew(planOf("d"), stateOf("d"), LATER);
      store.noteDispatch("d", 9);
      expect(store.state("d")?.dispatchedAt).toBe(9);
      expect(storeOver(state.storage.sql).state("d")?.dispatchedAt).toBeNull();
    });
  });

  it("notes a run's executor in memory for its next save, also in a restarted object; never for an over run", async () => {
    const stub = env.EXECUTION_RUN.get(env.EXECUTION_RUN.newUniqueId());
    await runInDurableObject(stub, (_instance, state) => {
      const store = storeOver(state.storage.sql);
      store.insertNew(planOf("a"), stateOf("a"), LATER);
      store.insertNew(planOf("b"), stateOf("b"), LATER);
      store.save({ ...stateOf("b"), status: "completed", result: 1 });
      const restarted = storeOver(state.storage.sql);
      expect(restarted.noteExecutor("a", "http://10.0.0.5:8788")).toBe(true);
      expect(restarted.noteExecutor("a", "http://10.0.0.5:8788")).toBe(false);
      expect(restarted.state("a")?.executorUrl).toBe("http://10.0.0.5:8788");
      restarted.save({ ...(restarted.state("a") as RunState), status: "awaiting_input" });
      expect(storeOver(state.storage.sql).state("a")?.executorUrl).toBe("http://10.0.0.5:8788");
      expect(restarted.noteExecutor("b", "http://10.0.0.5:8788")).toBe(false);
    });
  });

  it("applies a callback sequence number once per execution, and its log lines once", () =>
    withStore((store) => {
      expect(store.callbackApplied("a", 1)).toBe(false);
      expect(store.markCallback("a", 1)).toBe(true);
      expect(store.callbackApplied("a", 1)).toBe(true);
      expect(store.markCallback("a", 1)).toBe(false);
      expect(store.markCallback("b", 1)).toBe(true);
      // A post applied again (its Postgres writes failed) adds its lines only the first time.
      const lines = [{ stream: "stdout", text: "hi", at: "t" }];
      expect(store.appendCallbackLogs("a", 2, lines)).toBe(true);
      expect(store.appendCallbackLogs("a", 2, lines)).toBe(false);
      expect(store.logsAfter("a", 0).map((line) => line.text)).toEqual(["hi"]);
    }));

  it("numbers log lines per execution, for resuming a stream", () =>
    withStore((store) => {
      for (const text of ["one", "two"]) store.appendLog("a", { stream: "stdout", text, at: "t" });
      store.appendLog("b", { stream: "stderr", text: "other", at: "t" });
      expect(store.logsAfter("a", 0).map((line) => [line.seq, line.text])).toEqual([
        [1, "one"],
        [2, "two"],
      ]);
      expect(store.logsAfter("a", 1).map((line) => line.text)).toEqual(["two"]);
      expect(store.logsAfter("b", 0).map((line) => line.seq)).toEqual([1]);
    }));

  it("wakes at the earliest watchdog deadline; a run that stops loses its deadline", () =>
    withStore((store) => {
      const now = Date.now();
      store.insertNew(planOf("a"), stateOf("a"), now + 5_000);
      store.insertNew(planOf("b"), stateOf("b"), now + 3_000);
      expect(store.nextWakeUp()).toBe(now + 3_000); // the deadline a run starts with
      store.save(stateOf("b"), now + 1_000); // a resume sets a new one
      expect(store.nextWakeUp()).toBe(now + 1_000);
      expect(store.overdue(now + 2_000)).toEqual(["b"]);
      store.save({ ...stateOf("b"), status: "failed" });
      expect(store.overdue(now + 10_000)).toEqual(["a"]);
      store.save({ ...stateOf("a"), status: "completed" });
      expect(store.overdue(now + 10_000)).toEqual([]);
      // Only finished runs are left: the retention sweep is the next wake-up.
      const wake = store.nextWakeUp() as number;
      expect(wake - FINISHED_RUN_RETENTION_MS).toBeGreaterThanOrEqual(now);
      expect(wake - FINISHED_RUN_RETENTION_MS).toBeLessThanOrEqual(Date.now());
    }));

  it("gives a paused run its pause's end as deadline, kept while it stays paused: overdue after it", async () => {
    const stub = env.EXECUTION_RUN.get(env.EXECUTION_RUN.newUniqueId());
    await runInDurableObject(stub, (_instance, state) => {
      const store = storeOver(state.storage.sql);
      const before = Date.now();
      store.insertNew(planOf("p"), stateOf("p"), before + 5_000);
      const paused = { ...stateOf("p"), status: "awaiting_input" as const, prompt: "name?" };
      const end = store.save(paused) as number;
      expect(end).toBeGreaterThanOrEqual(before + PAUSE_TTL_MS);
      expect(end).toBeLessThanOrEqual(Date.now() + PAUSE_TTL_MS);
      expect(store.nextWakeUp()).toBe(end);
      expect(store.overdue(end - 1)).toEqual([]);
      expect(store.overdue(end)).toEqual(["p"]);
      // Saved again while paused (its executor noted), it keeps its end; a restarted object sees it too.
      expect(store.save({ ...paused, executorUrl: "http://10.0.0.5:8788" })).toBe(end);
      expect(storeOver(state.storage.sql).overdue(end)).toEqual(["p"]);
      // Resumed, it has the run's deadline; failed by the watchdog, none, and it is swept as finished runs are.
      expect(store.save(stateOf("p"), before + 1_000)).toBe(before + 1_000);
      expect(store.save({ ...stateOf("p"), status: "failed", error: "expired" })).toBeNull();
      expect(store.overdue(end + 1)).toEqual([]);
      store.sweep(Date.now() + FINISHED_RUN_RETENTION_MS + 1_000);
      expect(store.state("p")).toBeNull();
    });
  });

  it("gives runs paused before pauses expired a deadline once, when the shard starts", async () => {
    const stub = env.EXECUTION_RUN.get(env.EXECUTION_RUN.newUniqueId());
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      const store = storeOver(sql);
      store.insertNew(planOf("old"), stateOf("old"), LATER);
      store.save({ ...stateOf("old"), status: "awaiting_input" });
      // As such a shard's row was: paused, no deadline, the change not yet made.
      sql.exec("update runs set deadline = null");
      sql.exec("delete from store_changes");
      expect(store.nextWakeUp()).toBeNull();
      const before = Date.now();
      storeOver(sql);
      expect(store.overdue(before + PAUSE_TTL_MS - 1_000)).toEqual([]);
      expect(store.overdue(Date.now() + PAUSE_TTL_MS)).toEqual(["old"]);
      // Once: a later start leaves deadlines alone.
      sql.exec("update runs set deadline = null");
      storeOver(sql);
      expect(store.nextWakeUp()).toBeNull();
    });
  });

  it("sweeps runs finished longer ago than the retention, with their logs and callbacks", () =>
    withStore((store) => {
      store.insertNew(planOf("old"), stateOf("old"), LATER);
      store.appendLog("old", { stream: "stdout", text: "x", at: "t" });
      store.markCallback("old", 1);
      store.save({ ...stateOf("old"), status: "completed" });
      store.insertNew(planOf("paused"), stateOf("paused"), LATER);
      store.save({ ...stateOf("paused"), status: "awaiting_input" });
      store.insertNew(planOf("live"), stateOf("live"), LATER);
      store.sweep(Date.now());
      expect(store.state("old")).not.toBeNull();
      store.sweep(Date.now() + FINISHED_RUN_RETENTION_MS + 1_000);
      expect(store.state("old")).toBeNull();
      expect(store.logsAfter("old", 0)).toEqual([]);
      expect(store.markCallback("old", 1)).toBe(true);
      expect(store.state("paused")?.status).toBe("awaiting_input");
      expect(store.state("live")?.status).toBe("running");
    }));
});

describe("ExecutionRun.start", () => {
  it("keeps a run whose row write failed unless the row is surely absent: its watchdog ends it", async () => {
    // Unit tests reach no database: the INSERT fails, and so does the look-up telling whether it committed anyway.
    const stub = env.EXECUTION_RUN.get(env.EXECUTION_RUN.newUniqueId());
    await runInDurableObject(stub, async (instance, state) => {
      const plan = planOf("unknown");
      plan.job.function = { timeout_seconds: 1 } as RunPlan["job"]["function"];
      await expect(instance.start(plan)).rejects.toThrow();
      const store = storeOver(state.storage.sql);
      expect(store.state("unknown")?.status).toBe("running");
      expect(store.overdue(Date.now() + 60_000)).toEqual(["unknown"]);
      await state.storage.deleteAlarm();
    });
  });
});
