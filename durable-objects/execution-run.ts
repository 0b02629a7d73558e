/**
 * @module ExecutionRun Durable Object: one shard of the executions (workers/services/execution-shards.ts).
 * For each execution it creates the row, sends the signed job, applies the executor's callbacks (steps,
 * logs, result) exactly once, wakes waiters, streams logs, and keeps a watchdog so that an execution never
 * hangs: no result by timeout + grace means FAILED, and so does no input for a paused one within
 * EXECUTION_PAUSE_TTL_SECONDS. One alarm serves the shard: it fires at the earliest deadline (or retention
 * sweep) and is set again after each change.
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
  resumeRecord,
  upsertSteps,
} from "../workers/services/execution-records";
import { createServices, type Services } from "../workers/services/services";
import { outcomeOf } from "./execution-outcome";
import { LogFeed } from "./execution-run-logs";
import {
  COULD_NOT_START,
  type FinishOptions,
  recordRunOutcome,
  watchdogOutcome,
} from "./execution-run-outcomes";
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
  readonly #logs: LogFeed;
  #waiters = new Map<string, Set<(state: RunState) => void>>();
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
    this.#store = new RunStore(ctx.storage.sql, loadConfig(env).EXECUTION_PAUSE_TTL_SECONDS * 1000);
    this.#logs = new LogFeed(this.#store);
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
      await this.#startFailed(executionId);
      throw error;
    }
    await this.#post(executionId, plan.job);
    return this.#store.state(executionId) ?? state;
  }

  /**
   * After a start whose row write failed. The INSERT may have committed with its answer lost (a connection
   * reset, a 5xx after the commit): only a row surely absent lets the run go, so that the caller's retry starts
   * afresh. Else the run ends FAILED now, or, when even that fails, by its watchdog: never a row left RUNNING.
   */
  async #startFailed(executionId: string): Promise<void> {
    const row = await this.#withServices((services) =>
      findExecution(services.statementDb(), executionId),
    ).then(
      (found) => found ?? null,
      () => undefined,
    );
    if (row === null) return this.#store.remove(executionId);
    await this.#finish(executionId, COULD_NOT_START).catch((error) => {
      console.error(`execution ${executionId}: a start that failed is left to the watchdog:`, error);
    });
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
      this.#logs.notify(executionId);
    }
    let steps: Step[] = [];
    for (const event of body.events) {
      if (event.type === "step") steps.push(event.step);
      if (event.type !== "result") continue;
      await this.#finish(executionId, outcomeOf(event, plan.outputSchema), { result: event.result, steps });
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

  /**
   * Records the outcome (with `steps` reported alongside it) of a run in status `from` (default running), then
   * wakes waiters and listeners; true when the run was in that status. One run's outcomes are applied one at a
   * time: of two arriving together (the watchdog's and a late result), the second finds the run ended by the
   * first instead of writing its own status over it in this object only.
   */
  #finish(executionId: string, outcome: ExecutionOutcome, options: FinishOptions = {}): Promise<boolean> {
    const previous = this.#finishing.get(executionId) ?? Promise.resolve();
    const next = previous.then(() => this.#finishNow(executionId, outcome, options));
    const settled = next.then(
      () => {},
      () => {},
    );
    this.#finishing.set(executionId, settled);
    void settled.then(() => {
      if (this.#finishing.get(executionId) === settled) this.#finishing.delete(executionId);
    });
    return next;
  }

  async #finishNow(
    executionId: string,
    outcome: ExecutionOutcome,
    { result = null, steps = [], from = "running" }: FinishOptions,
  ): Promise<boolean> {
    const state = this.#store.state(executionId);
    // Only a run in `from` takes the outcome: a late pause after the watchdog's failure must not reopen a run,
    // nor a pause's expiry end one that a continue resumed meanwhile.
    if (state?.status !== from) {
      await this.#withServices((services) => upsertSteps(services.statementDb(), executionId, steps));
      return false;
    }
    const timed = { ...state, roundTripMs: state.dispatchedAt ? Date.now() - state.dispatchedAt : null };
    // The state Postgres took: this outcome, or the row's when another was recorded first (recordRunOutcome).
    const next = await this.#withServices((services) =>
      recordRunOutcome(services.statementDb(), timed, outcome, result, steps),
    );
    const deadline = this.#store.save(next);
    // A paused run's end may come before any set alarm. A finished run's sweep is due much later than any set
    // alarm; only a shard without one needs a query.
    if (deadline !== null) await this.#alarmBy(deadline);
    else if (typeof this.#alarmAt !== "number") await this.#scheduleAlarm();
    const waiters = this.#waiters.get(executionId);
    this.#waiters.delete(executionId);
    for (const wake of waiters ?? []) wake(next);
    this.#logs.notify(executionId);
    return true;
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
      if (row?.status === "AWAITING_INPUT") await this.#stillPaused(state);
      if (row?.status !== "RUNNING") throw error;
      resumed = true;
    }
    if (!resumed) {
      await this.#stillPaused(state);
      throw new Error("Execution is not awaiting input");
    }
    await this.#post(executionId, job);
    return this.#store.state(executionId) as RunState;
  }

  /**
   * A resume that did not happen leaves the run paused again (with a new pause lifetime), unless it ended
   * meanwhile (its pause expired): that end stays.
   */
  async #stillPaused(paused: RunState): Promise<void> {
    if (this.#store.state(paused.executionId)?.status !== "running") return;
    const deadline = this.#store.save(paused);
    if (deadline !== null) await this.#alarmBy(deadline);
  }

  /**
   * The watchdog: runs whose executor never reported a result in time fail, and so do paused runs whose pause
   * expired (the executor is told to forget them); old finished runs go.
   */
  override async alarm(): Promise<void> {
    this.#alarmAt = undefined;
    const now = Date.now();
    const { EXECUTION_WATCHDOG_GRACE_SECONDS: graceSeconds, EXECUTION_PAUSE_TTL_SECONDS: pauseTtlSeconds } =
      loadConfig(this.env);
    let unrecorded = 0;
    for (const executionId of this.#store.overdue(now)) {
      const state = this.#store.state(executionId);
      const plan = this.#store.plan(executionId);
      if (!state || !plan) continue;
      const timeout = plan.job.function.timeout_seconds;
      const outcome = watchdogOutcome(state, timeout, { graceSeconds, pauseTtlSeconds });
      try {
        // A run that changed meanwhile (a paused one resumed) is not this outcome's: it is left alone.
        if (!(await this.#finish(executionId, outcome, { from: state.status }))) continue;
      } catch (error) {
        // Postgres failed: the run stays overdue here, and the next alarm tries again. The other runs go on.
        unrecorded++;
        console.error(`execution ${executionId}: the watchdog could not record its failure:`, error);
        continue;
      }
      // A running job is stopped; a paused one is forgotten (its generator would wait for a resume forever).
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
   * then live until the run stops running (execution-run-logs.ts).
   */
  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const executionId = decodeURIComponent(url.pathname.replace(/^\/logs\//, ""));
    const after = Number(request.headers.get("last-event-id") ?? url.searchParams.get("after") ?? 0) || 0;
    return this.#logs.stream(executionId, after);
  }
}
