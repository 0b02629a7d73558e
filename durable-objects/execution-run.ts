/**
 * @module ExecutionRun Durable Object: one shard of the executions (workers/services/execution-shards.ts).
 * For each execution it creates the row, sends the signed job, applies the executor's callbacks (steps,
 * logs, result) exactly once, wakes waiters, streams logs, and keeps a watchdog so that an execution never
 * hangs: no result by timeout + grace means FAILED. One alarm serves the shard: it fires at the earliest
 * deadline (or retention sweep) and is set again after each change.
 *
 * Its SQLite tables (execution-run-store.ts) hold each run's plan and state, its log lines (with a sequence
 * for SSE resume) and the callback sequence numbers already applied (a retried post is applied once).
 */
import { DurableObject } from "cloudflare:workers";
import { type Env, loadConfig } from "../workers/env";
import {
  CALLBACK_RETRY_MS,
  type CallbackBody,
  callbackRetryDelayMs,
  type Job,
  type SignedCallback,
  type Step,
} from "../workers/lib/executor-protocol";
import { contextToken } from "../workers/services/context-token";
import { cancelJob, postJob, verifyCallback } from "../workers/services/execution-dispatch";
import {
  type ExecutionOutcome,
  findExecution,
  insertExecution,
  recordOutcome,
  resumeRecord,
  upsertSteps,
} from "../workers/services/execution-records";
import { createServices, type Services } from "../workers/services/services";
import { outcomeOf } from "./execution-outcome";
import { newRunState, type RunPlan, type RunState, RunStore } from "./execution-run-store";

export type { RunPlan, RunState, RunStatus } from "./execution-run-store";

/** Postgres connections one shard may hold while its runs start and finish side by side. */
const SHARD_DB_CONNECTIONS = 3;
/**
 * Job answers one shard holds open at once (execution-dispatch.ts, `postJob`); further jobs get 202 and
 * callbacks. An object may keep only 6 outgoing connections open on Cloudflare; the rest stay for its queries.
 */
const MAX_HELD_ANSWERS = 4;
/** How soon the watchdog tries again when Postgres refused to record an overdue run's failure. */
const WATCHDOG_RETRY_MS = 15_000;
/** Callback seqs each job of a run may use: a resume's first seq is its predecessor's plus this. */
const SEQ_SPAN_PER_JOB = 1_000_000;

export class ExecutionRun extends DurableObject<Env> {
  readonly #store: RunStore;
  #waiters = new Map<string, Set<(state: RunState) => void>>();
  #logListeners = new Map<string, Set<() => void>>();
  #services: Services | undefined;
  /** The alarm as this instance last set it; undefined until then, and once it fired. */
  #alarmAt: number | null | undefined;
  #heldAnswers = 0;
  /** Each run's outcome being applied (see `#finish`). */
  #finishing = new Map<string, Promise<void>>();
  /** Callback posts (`execution/seq`) being applied now: a duplicate meanwhile gets 503. */
  readonly #applying = new Set<string>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#store = new RunStore(ctx.storage.sql);
  }

  /**
   * Runs `work` with this shard's services. Unlike a Worker request, a Durable Object may keep I/O objects
   * across calls, so its DB pool is opened once and kept: a new WebSocket connection per start and per
   * callback was a large part of the dispatch overhead. The pool itself closes connections idle for 2 s, so
   * an idle shard holds none, and the shards are few (EXECUTION_RUN_SHARDS).
   */
  async #withServices<T>(work: (services: Services) => Promise<T>): Promise<T> {
    this.#services ??= createServices(this.env, { maxConnections: SHARD_DB_CONNECTIONS });
    return work(this.#services);
  }

  /** Sets the alarm to the next wake-up, as the tables say; a write only when that changed. */
  async #scheduleAlarm(): Promise<void> {
    const next = this.#store.nextWakeUp();
    if (next === this.#alarmAt) return;
    if (next === null) await this.ctx.storage.deleteAlarm();
    else await this.ctx.storage.setAlarm(next);
    this.#alarmAt = next;
  }

  /**
   * Makes sure the alarm fires by `at`. An alarm set earlier stays: it may wake for a run that is over by
   * then, and `alarm()` sets the next one from the tables. This spares a query per start and per end.
   */
  async #alarmBy(at: number): Promise<void> {
    if (typeof this.#alarmAt === "number" && this.#alarmAt <= at) return;
    if (this.#alarmAt === undefined) return this.#scheduleAlarm();
    await this.ctx.storage.setAlarm(at);
    this.#alarmAt = at;
  }

  /** Seconds past the function's timeout the watchdog waits for the executor (EXECUTION_WATCHDOG_GRACE_SECONDS). */
  #graceSeconds(): number {
    return loadConfig(this.env).EXECUTION_WATCHDOG_GRACE_SECONDS;
  }

  /** Starts the run once; a repeated call returns the current state. */
  async start(plan: RunPlan): Promise<RunState> {
    const executionId = plan.record.executionId;
    const state = newRunState(executionId);
    const deadline = this.#deadlineOf(plan.job);
    if (!this.#store.insertNew(plan, state, deadline)) return this.#store.state(executionId) as RunState;
    try {
      await this.#alarmBy(deadline);
      await this.#withServices((services) => insertExecution(services.statementDb(), plan.record));
    } catch (error) {
      // Nothing was recorded: the caller's retry starts afresh.
      this.#store.remove(executionId);
      throw error;
    }
    await this.#post(executionId, plan.job);
    return this.#store.state(executionId) ?? state;
  }

  /** When the watchdog fails a run of `job` that sends no result: its timeout plus the grace, from now. */
  #deadlineOf(job: Job): number {
    return Date.now() + (job.function.timeout_seconds + this.#graceSeconds()) * 1000;
  }

  /** Posts the job (its answer held for the result while this shard holds few) and handles a refusal. */
  async #post(executionId: string, job: Job): Promise<void> {
    this.#store.noteDispatch(executionId, Date.now());
    const hold = this.#heldAnswers < MAX_HELD_ANSWERS;
    if (hold) this.#heldAnswers++;
    // A resume goes to the executor holding the paused generator (several may answer at EXECUTOR_URL).
    const executorUrl = job.kind === "resume" ? this.#store.state(executionId)?.executorUrl : undefined;
    const posting = await this.#withServices((services) =>
      postJob(services.config, job, { holdAnswer: hold, executorUrl }),
    );
    if (hold) {
      // A held answer counts until its reply settles; a refusal or a 202 holds nothing.
      const release = () => {
        this.#heldAnswers--;
      };
      void (posting.accepted && posting.reply ? posting.reply.then(release, release) : release());
    }
    if (!posting.accepted)
      await this.#finish(executionId, {
        status: "FAILED",
        error: posting.problem,
        errorType: "internal",
        traceback: null,
        durationMs: null,
      });
    else if (posting.reply) this.ctx.waitUntil(this.#applyReply(job, posting.reply));
  }

  /**
   * Applies the callback the executor put in its answer to `job`, checked exactly like a posted one. The
   * executor posts whatever it could not put in the answer; a reply lost in between ends as the watchdog says.
   */
  async #applyReply(job: Job, reply: Promise<SignedCallback | null>): Promise<void> {
    const executionId = job.execution_id;
    try {
      const callback = await reply;
      if (!callback) return;
      const body = await this.#withServices((services) =>
        verifyCallback(services.config, {
          token: callback.token,
          executionId,
          path: new URL(job.callback_url).pathname,
          body: callback.body,
        }),
      );
      await this.#applyUntilDone(body);
    } catch (error) {
      console.error(`execution ${executionId}: the executor's answer could not be applied:`, error);
    }
  }

  /**
   * Applies one callback post once: 409 once the run is over (the executor then stops the job), 503 while
   * the same post is being applied (the executor retries). A post is marked applied only after its Postgres
   * writes: one that failed (a database hiccup) is applied again when the executor retries it, its log lines
   * only once.
   */
  async applyCallback(body: CallbackBody): Promise<{ status: 200 | 409 | 503 }> {
    const executionId = body.execution_id;
    const state = this.#store.state(executionId);
    if (!state || state.status === "completed" || state.status === "failed") return { status: 409 };
    // A post of a job before the latest resume (a retry whose answer was lost): that job is over.
    if (body.seq < (state.firstSeq ?? 1)) return { status: 200 };
    const key = `${executionId}/${body.seq}`;
    if (this.#applying.has(key)) return { status: 503 };
    if (this.#store.callbackApplied(executionId, body.seq)) return { status: 200 };
    this.#applying.add(key);
    try {
      const plan = this.#store.plan(executionId) as RunPlan;
      await this.#withServices((services) => this.#applyEvents(services, plan, body));
      this.#store.markCallback(executionId, body.seq);
    } finally {
      this.#applying.delete(key);
    }
    return { status: 200 };
  }

  /**
   * Log lines first (SQLite, once per post), then in order the steps up to a result (or the end), written
   * together with the result's outcome when there is one: a fast run's whole callback is one statement.
   */
  async #applyEvents(services: Services, plan: RunPlan, body: CallbackBody): Promise<void> {
    const executionId = plan.record.executionId;
    this.#noteExecutor(executionId, body.events);
    const lines = body.events.flatMap((event) =>
      event.type === "log" ? [{ stream: event.stream, text: event.text, at: event.at }] : [],
    );
    if (lines.length > 0 && this.#store.appendCallbackLogs(executionId, body.seq, lines)) {
      this.#notifyLogListeners(executionId);
    }
    let steps: Step[] = [];
    for (const event of body.events) {
      if (event.type === "step") steps.push(event.step);
      if (event.type !== "result") continue;
      await this.#finish(executionId, outcomeOf(event, plan.outputSchema), event.result, steps);
      steps = [];
    }
    await upsertSteps(services.statementDb(), executionId, steps);
  }

  /**
   * Keeps the executor a started event names (EXECUTOR_PUBLIC_URL), where the run's resume and cancel go. With
   * a result in the same post (a fast run) the outcome's save stores it; alone, it is saved now, so that a
   * restarted object still knows it.
   */
  #noteExecutor(executionId: string, events: CallbackBody["events"]): void {
    let executorUrl: string | undefined;
    let hasResult = false;
    for (const event of events) {
      if (event.type === "started" && event.executor_url) executorUrl = event.executor_url;
      if (event.type === "result") hasResult = true;
    }
    if (!executorUrl || !this.#store.noteExecutor(executionId, executorUrl) || hasResult) return;
    const state = this.#store.state(executionId);
    if (state) this.#store.save(state);
  }

  /**
   * Applies a callback that came in the executor's answer. The executor does not retry those, so this object
   * does, as the executor would for a post: with backoff, for up to `CALLBACK_RETRY_MS`.
   */
  async #applyUntilDone(body: CallbackBody): Promise<void> {
    const giveUpAt = Date.now() + CALLBACK_RETRY_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        if ((await this.applyCallback(body)).status !== 503) return;
      } catch (error) {
        if (Date.now() >= giveUpAt) throw error;
      }
      if (Date.now() >= giveUpAt) return;
      await new Promise((resolve) => setTimeout(resolve, callbackRetryDelayMs(attempt)));
    }
  }

  #notifyLogListeners(executionId: string): void {
    const listeners = this.#logListeners.get(executionId);
    this.#logListeners.delete(executionId);
    for (const listener of listeners ?? []) listener();
  }

  /**
   * Records the outcome (with `steps` reported alongside it), then wakes waiters and listeners. One run's outcomes
   * are applied one at a time: of two arriving together (the watchdog's and a late result), the second finds the
   * run ended by the first instead of writing its own status over it in this object only.
   */
  #finish(executionId: string, outcome: ExecutionOutcome, result?: unknown, steps?: Step[]): Promise<void> {
    const previous = this.#finishing.get(executionId) ?? Promise.resolve();
    const next = previous.then(() => this.#finishNow(executionId, outcome, result, steps));
    const settled = next.catch(() => {});
    this.#finishing.set(executionId, settled);
    void settled.then(() => {
      if (this.#finishing.get(executionId) === settled) this.#finishing.delete(executionId);
    });
    return next;
  }

  async #finishNow(
    executionId: string,
    outcome: ExecutionOutcome,
    result: unknown = null,
    steps: Step[] = [],
  ): Promise<void> {
    const state = this.#store.state(executionId);
    // Only a running run takes an outcome: a late pause after the watchdog's failure must not reopen it.
    if (state?.status !== "running") {
      await this.#withServices((services) => upsertSteps(services.statementDb(), executionId, steps));
      return;
    }
    await this.#withServices((services) =>
      recordOutcome(services.statementDb(), executionId, outcome, steps),
    );
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
    this.#store.save(next);
    // A finished run's sweep is due much later than any set alarm; only a shard without one needs a query.
    if (typeof this.#alarmAt !== "number") await this.#scheduleAlarm();
    const waiters = this.#waiters.get(executionId);
    this.#waiters.delete(executionId);
    for (const wake of waiters ?? []) wake(next);
    this.#notifyLogListeners(executionId);
  }

  /** The state once the run stops running (result, failure or pause), or the running state after `timeoutMs`. */
  async waitForResult(executionId: string, timeoutMs: number): Promise<RunState | null> {
    const state = this.#store.state(executionId);
    if (state?.status !== "running") return state;
    return new Promise((resolve) => {
      const waiters = this.#waiters.get(executionId) ?? new Set();
      this.#waiters.set(executionId, waiters);
      const timer = setTimeout(() => {
        waiters.delete(wake);
        if (waiters.size === 0 && this.#waiters.get(executionId) === waiters)
          this.#waiters.delete(executionId);
        resolve(this.#store.state(executionId));
      }, timeoutMs);
      const wake = (next: RunState) => {
        clearTimeout(timer);
        resolve(next);
      };
      waiters.add(wake);
    });
  }

  async currentState(executionId: string): Promise<RunState | null> {
    return this.#store.state(executionId);
  }

  /**
   * Sends `input` into the paused generator (sinas-spec §6.7) with a new context token: for the API key it was
   * continued with (`continuedWithKey`, one of the run's user's), else for the credential that started it.
   */
  async resume(executionId: string, input: unknown, continuedWithKey: string | null): Promise<RunState> {
    const state = this.#store.state(executionId);
    const plan = this.#store.plan(executionId);
    if (!state || !plan || state.status !== "awaiting_input")
      throw new Error("Execution is not awaiting input");
    const accessToken = await this.#withServices((services) =>
      contextToken(services, plan.job.user, continuedWithKey ?? plan.apiKeyId ?? null),
    );
    // The resume's callbacks number from far above the paused job's, whose late posts are then told apart.
    const firstSeq = (state.firstSeq ?? 1) + SEQ_SPAN_PER_JOB;
    const job: Job = {
      ...plan.job,
      kind: "resume",
      input,
      context: { ...plan.job.context, access_token: accessToken },
      first_seq: firstSeq,
    };
    // The run is running here, with its watchdog, before the database says so: an object that dies after the
    // database's flip leaves a run the watchdog fails in both places (a FAILED outcome also ends a paused row).
    const deadline = this.#deadlineOf(job);
    this.#store.save({ ...state, status: "running", prompt: null, schema: null, firstSeq }, deadline);
    await this.#alarmBy(deadline);
    let resumed: boolean;
    try {
      resumed = await this.#withServices((services) => resumeRecord(services.db(), executionId));
    } catch (error) {
      // The write may have committed with its answer lost: the row tells. Unknown: the run stays running here,
      // and its watchdog fails it in both places.
      const row = await this.#withServices((services) => findExecution(services.db(), executionId)).catch(
        () => null,
      );
      if (row?.status === "AWAITING_INPUT") this.#store.save(state);
      if (row?.status !== "RUNNING") throw error;
      resumed = true;
    }
    if (!resumed) {
      this.#store.save(state);
      throw new Error("Execution is not awaiting input");
    }
    await this.#post(executionId, job);
    return this.#store.state(executionId) as RunState;
  }

  /** The watchdog: runs whose executor never reported a result in time fail; old finished runs go. */
  override async alarm(): Promise<void> {
    this.#alarmAt = undefined;
    const now = Date.now();
    const grace = this.#graceSeconds();
    let unrecorded = 0;
    for (const executionId of this.#store.overdue(now)) {
      const plan = this.#store.plan(executionId);
      if (!plan) continue;
      const timeout = plan.job.function.timeout_seconds;
      try {
        await this.#finish(executionId, {
          status: "FAILED",
          error: `No result from the executor within ${timeout + grace} s (timeout ${timeout} s + ${grace} s grace); the executor may have crashed`,
          errorType: "timeout",
          traceback: null,
          durationMs: null,
        });
      } catch (error) {
        // Postgres failed: the run stays overdue here, and the next alarm tries again. The other runs go on.
        unrecorded++;
        console.error(`execution ${executionId}: the watchdog could not record its failure:`, error);
        continue;
      }
      const executorUrl = this.#store.state(executionId)?.executorUrl;
      await this.#withServices((services) => cancelJob(services.config, executionId, executorUrl));
    }
    this.#store.sweep(now);
    if (unrecorded === 0) return this.#scheduleAlarm();
    // Not the platform's alarm retries, which give up after a few: this object keeps trying while it must.
    this.#alarmAt = now + WATCHDOG_RETRY_MS;
    await this.ctx.storage.setAlarm(this.#alarmAt);
  }

  /**
   * `GET /logs/{execution_id}` streams that run's log as SSE: every line after `Last-Event-ID` / `?after=`,
   * then live until the run stops running. A run this shard does not know ends at once.
   */
  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const executionId = decodeURIComponent(url.pathname.replace(/^\/logs\//, ""));
    let after = Number(request.headers.get("last-event-id") ?? url.searchParams.get("after") ?? 0) || 0;
    const encoder = new TextEncoder();
    const stream = new TransformStream<Uint8Array, Uint8Array>();
    const writer = stream.writable.getWriter();
    const flush = async (): Promise<boolean> => {
      // The state before the lines: a callback appends its lines before it ends the run, so a run read as
      // ended has every line in the snapshot below (read after, the last lines could follow the `end`).
      const state = this.#store.state(executionId);
      for (const line of this.#store.logsAfter(executionId, after)) {
        after = line.seq;
        const data = JSON.stringify({ stream: line.stream, text: line.text, at: line.at });
        await writer.write(encoder.encode(`id: ${line.seq}\nevent: log\ndata: ${data}\n\n`));
      }
      if (state?.status === "running") return false;
      const status = state?.status ?? "unknown";
      await writer.write(encoder.encode(`event: end\ndata: ${JSON.stringify({ status })}\n\n`));
      return true;
    };
    let listener = () => {};
    const nextLine = () =>
      new Promise<void>((resolve) => {
        const listeners = this.#logListeners.get(executionId) ?? new Set();
        this.#logListeners.set(executionId, listeners);
        listener = resolve;
        listeners.add(resolve);
      });
    const pump = async () => {
      try {
        // Listening starts before each flush: lines appended while it writes to a slow client wake the next one.
        for (;;) {
          const appended = nextLine();
          if (await flush()) break;
          await appended;
        }
        await writer.close();
      } catch {
        // The client went away.
      } finally {
        this.#logListeners.get(executionId)?.delete(listener);
      }
    };
    void pump();
    return new Response(stream.readable, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" },
    });
  }
}
