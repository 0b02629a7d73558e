/**
 * @module ExecutionRun Durable Object: one per execution. Creates the execution row, sends the signed job,
 * applies the executor's callbacks (steps, logs, result) exactly once, wakes waiters, streams logs, and
 * keeps a watchdog alarm so that an execution never hangs: no result by timeout + grace means FAILED.
 *
 * Its SQLite storage holds the run (plan and status), the log lines (with a sequence for SSE resume)
 * and the callback sequence numbers already applied (a retried post is applied once).
 */
import { DurableObject } from "cloudflare:workers";
import type { JsonObject, JsonSchema } from "../workers/db/schema";
import { type Env, loadConfig } from "../workers/env";
import type { CallbackBody, ExecutorEvent, Job, ResultEvent } from "../workers/lib/executor-protocol";
import { describeSchemaProblems, validateAgainstSchema } from "../workers/lib/json-schema";
import { cancelJob, postJob } from "../workers/services/execution-dispatch";
import {
  type ExecutionOutcome,
  insertExecution,
  type NewExecutionRecord,
  recordOutcome,
  resumeRecord,
  upsertStep,
} from "../workers/services/execution-records";
import { createServices, type Services } from "../workers/services/services";

export interface RunPlan {
  record: NewExecutionRecord;
  job: Job;
  outputSchema: JsonSchema;
}

export type RunStatus = "running" | "awaiting_input" | "completed" | "failed";

export interface RunState {
  executionId: string;
  status: RunStatus;
  /** When the job was sent (epoch ms) and how long until its result was applied: the API-observed run. */
  dispatchedAt: number | null;
  roundTripMs: number | null;
  /** The runtime's own measurement of the function call. */
  durationMs: number | null;
  result: unknown;
  error: string | null;
  errorType: string | null;
  prompt: string | null;
  schema: JsonObject | null;
}

/**
 * The plan as stored: the job's input is the record's input, kept once. SQLite rows of a Durable Object hold
 * at most 2 MB, and an input near the 1 MiB request limit stored twice would not fit.
 */
function serializePlan(plan: RunPlan): string {
  return JSON.stringify({ ...plan, job: { ...plan.job, input: undefined } });
}

function parsePlan(text: string): RunPlan {
  const plan = JSON.parse(text) as RunPlan;
  return { ...plan, job: { ...plan.job, input: plan.record.input } };
}

interface RunRow extends Record<string, SqlStorageValue> {
  plan: string;
  status: string;
  state: string;
}

export class ExecutionRun extends DurableObject<Env> {
  #waiters = new Set<(state: RunState) => void>();
  #logListeners = new Set<() => void>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(`
      create table if not exists run (id integer primary key check (id = 1), plan text not null,
        status text not null, state text not null);
      create table if not exists logs (seq integer primary key autoincrement, stream text not null,
        text text not null, at text not null);
      create table if not exists callbacks (seq integer primary key);`);
  }

  #row(): RunRow | undefined {
    return this.ctx.storage.sql.exec<RunRow>("select plan, status, state from run where id = 1").toArray()[0];
  }

  #state(): RunState | null {
    const row = this.#row();
    return row ? (JSON.parse(row.state) as RunState) : null;
  }

  #saveState(state: RunState): void {
    this.ctx.storage.sql.exec(
      "update run set status = ?, state = ? where id = 1",
      state.status,
      JSON.stringify(state),
    );
  }

  #services: Services | undefined;

  /**
   * Runs `work` with this object's services. Unlike a Worker request, a Durable Object may keep I/O
   * objects across calls, so its DB pool is opened once and reused: a new WebSocket connection per
   * callback was the largest part of the dispatch overhead.
   */
  async #withServices<T>(work: (services: Services) => Promise<T>): Promise<T> {
    this.#services ??= createServices(this.env);
    return work(this.#services);
  }

  /**
   * Closes the pool once the run stopped running (finished or waiting for input): the object may stay in
   * memory long after, and thousands of idle objects each holding a database connection exhaust the
   * server's connections (and, in `wrangler dev`, cost CPU on every later request). A resume reopens it.
   */
  async #releaseServicesUnlessRunning(): Promise<void> {
    if (this.#state()?.status === "running") return;
    const services = this.#services;
    this.#services = undefined;
    await services?.dispose();
  }

  /** Starts the run once; a repeated call returns the current state. */
  async start(plan: RunPlan): Promise<RunState> {
    const existing = this.#state();
    if (existing) return existing;
    const state: RunState = {
      executionId: plan.record.executionId,
      status: "running",
      dispatchedAt: null,
      roundTripMs: null,
      durationMs: null,
      result: null,
      error: null,
      errorType: null,
      prompt: null,
      schema: null,
    };
    this.ctx.storage.sql.exec(
      "insert into run (id, plan, status, state) values (1, ?, ?, ?)",
      serializePlan(plan),
      state.status,
      JSON.stringify(state),
    );
    await this.#withServices((services) => insertExecution(services.db(), plan.record));
    await this.#dispatch(plan.job);
    await this.#releaseServicesUnlessRunning();
    return this.#state() ?? state;
  }

  /** Seconds past the function's timeout the watchdog waits for the executor (EXECUTION_WATCHDOG_GRACE_SECONDS). */
  #graceSeconds(): number {
    return loadConfig(this.env).EXECUTION_WATCHDOG_GRACE_SECONDS;
  }

  async #dispatch(job: Job): Promise<void> {
    await this.ctx.storage.setAlarm(
      Date.now() + (job.function.timeout_seconds + this.#graceSeconds()) * 1000,
    );
    const state = this.#state();
    if (state) this.#saveState({ ...state, dispatchedAt: Date.now(), roundTripMs: null });
    const refused = await this.#withServices((services) => postJob(services.config, job));
    if (refused)
      await this.#finish({
        status: "FAILED",
        error: refused,
        errorType: "internal",
        traceback: null,
        durationMs: null,
      });
  }

  /** Applies one callback post. 409 once the run is over (the executor then stops the job). */
  async applyCallback(body: CallbackBody): Promise<{ status: 200 | 409 }> {
    const state = this.#state();
    if (!state || state.status === "completed" || state.status === "failed") return { status: 409 };
    const seen = this.ctx.storage.sql.exec("select seq from callbacks where seq = ?", body.seq).toArray();
    if (seen.length > 0) return { status: 200 };
    this.ctx.storage.sql.exec("insert into callbacks (seq) values (?)", body.seq);
    const plan = parsePlan((this.#row() as RunRow).plan);
    await this.#withServices(async (services) => {
      for (const event of body.events) await this.#applyEvent(services, plan, event);
    });
    await this.#releaseServicesUnlessRunning();
    return { status: 200 };
  }

  async #applyEvent(services: Services, plan: RunPlan, event: ExecutorEvent): Promise<void> {
    switch (event.type) {
      case "started":
        return;
      case "log":
        this.ctx.storage.sql.exec(
          "insert into logs (stream, text, at) values (?, ?, ?)",
          event.stream,
          event.text,
          event.at,
        );
        for (const listener of this.#logListeners) listener();
        return;
      case "step":
        await upsertStep(services.db(), plan.record.executionId, event.step);
        return;
      case "result":
        await this.#finish(outcomeOf(event, plan.outputSchema), event.result);
        return;
    }
  }

  async #finish(outcome: ExecutionOutcome, result: unknown = null): Promise<void> {
    const state = this.#state();
    if (!state || (state.status !== "running" && outcome.status !== "AWAITING_INPUT")) return;
    await this.#withServices((services) => recordOutcome(services.db(), state.executionId, outcome));
    const timing = {
      roundTripMs: state.dispatchedAt ? Date.now() - state.dispatchedAt : null,
      durationMs: outcome.status === "AWAITING_INPUT" ? null : outcome.durationMs,
    };
    const next: RunState =
      outcome.status === "COMPLETED"
        ? { ...state, ...timing, status: "completed", result }
        : outcome.status === "AWAITING_INPUT"
          ? { ...state, ...timing, status: "awaiting_input", prompt: outcome.prompt, schema: outcome.schema }
          : { ...state, ...timing, status: "failed", error: outcome.error, errorType: outcome.errorType };
    this.#saveState(next);
    await this.ctx.storage.deleteAlarm();
    for (const wake of this.#waiters) wake(next);
    this.#waiters.clear();
    for (const listener of this.#logListeners) listener();
  }

  /** The state once the run stops running (result, failure or pause), or the running state after `timeoutMs`. */
  async waitForResult(timeoutMs: number): Promise<RunState | null> {
    const state = this.#state();
    if (state?.status !== "running") return state;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(wake);
        resolve(this.#state());
      }, timeoutMs);
      const wake = (next: RunState) => {
        clearTimeout(timer);
        resolve(next);
      };
      this.#waiters.add(wake);
    });
  }

  async currentState(): Promise<RunState | null> {
    return this.#state();
  }

  /** Sends `input` into the paused generator (sinas-spec §6.7). */
  async resume(input: unknown, accessToken: string): Promise<RunState> {
    const state = this.#state();
    const row = this.#row();
    if (!state || !row || state.status !== "awaiting_input")
      throw new Error("Execution is not awaiting input");
    const plan = parsePlan(row.plan);
    const resumed = await this.#withServices((services) => resumeRecord(services.db(), state.executionId));
    if (!resumed) throw new Error("Execution is not awaiting input");
    this.#saveState({ ...state, status: "running", prompt: null, schema: null });
    // A resume is a new job whose callbacks number from 1 again; the previous job ended with its result.
    this.ctx.storage.sql.exec("delete from callbacks");
    const job: Job = {
      ...plan.job,
      kind: "resume",
      input,
      context: { ...plan.job.context, access_token: accessToken },
    };
    await this.#dispatch(job);
    return this.#state() as RunState;
  }

  /** The watchdog: the executor never reported a result in time. */
  override async alarm(): Promise<void> {
    const state = this.#state();
    const row = this.#row();
    if (!state || !row || state.status !== "running") return;
    const plan = parsePlan(row.plan);
    const grace = this.#graceSeconds();
    const limit = plan.job.function.timeout_seconds + grace;
    await this.#finish({
      status: "FAILED",
      error: `No result from the executor within ${limit} s (timeout ${plan.job.function.timeout_seconds} s + ${grace} s grace); the executor may have crashed`,
      errorType: "timeout",
      traceback: null,
      durationMs: null,
    });
    await this.#withServices((services) => cancelJob(services.config, state.executionId));
    await this.#releaseServicesUnlessRunning();
  }

  /** `GET` streams the log as SSE: every line after `Last-Event-ID` / `?after=`, then live until the end. */
  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    let after = Number(request.headers.get("last-event-id") ?? url.searchParams.get("after") ?? 0) || 0;
    const encoder = new TextEncoder();
    const stream = new TransformStream<Uint8Array, Uint8Array>();
    const writer = stream.writable.getWriter();
    const flush = async (): Promise<boolean> => {
      const lines = this.ctx.storage.sql
        .exec<{ seq: number; stream: string; text: string; at: string }>(
          "select seq, stream, text, at from logs where seq > ? order by seq",
          after,
        )
        .toArray();
      for (const line of lines) {
        after = line.seq;
        const data = JSON.stringify({ stream: line.stream, text: line.text, at: line.at });
        await writer.write(encoder.encode(`id: ${line.seq}\nevent: log\ndata: ${data}\n\n`));
      }
      const state = this.#state();
      if (state && state.status !== "running") {
        await writer.write(
          encoder.encode(`event: end\ndata: ${JSON.stringify({ status: state.status })}\n\n`),
        );
        return true;
      }
      return false;
    };
    const pump = async () => {
      try {
        let done = await flush();
        while (!done) {
          await new Promise<void>((resolve) => {
            const listener = () => {
              this.#logListeners.delete(listener);
              resolve();
            };
            this.#logListeners.add(listener);
          });
          done = await flush();
        }
        await writer.close();
      } catch {
        // The client went away.
      }
    };
    void pump();
    return new Response(stream.readable, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" },
    });
  }
}

/** Maps the executor's result to the recorded outcome, checking the output against the function's schema. */
function outcomeOf(event: ResultEvent, outputSchema: JsonSchema): ExecutionOutcome {
  if (event.status === "awaiting_input") {
    const schema = event.schema && typeof event.schema === "object" ? (event.schema as JsonObject) : null;
    return { status: "AWAITING_INPUT", prompt: event.prompt ?? null, schema };
  }
  if (event.status === "failed") {
    return {
      status: "FAILED",
      error: event.error ?? "The function failed",
      errorType: event.error_type ?? "internal",
      traceback: event.traceback ?? null,
      durationMs: event.duration_ms ?? null,
    };
  }
  const problems = validateAgainstSchema(outputSchema, event.result ?? null);
  if (problems.length > 0) {
    return {
      status: "FAILED",
      error: describeSchemaProblems(problems),
      errorType: "invalid_result",
      traceback: null,
      durationMs: event.duration_ms ?? null,
    };
  }
  return { status: "COMPLETED", output: event.result ?? null, durationMs: event.duration_ms ?? null };
}
