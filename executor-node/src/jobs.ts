/**
 * @module Running jobs (PROTOCOL.md §2-§3): install the run's `requirements` (once per distinct set), take a
 * sandbox with those packages from the pool (a `resume` goes to the sandbox holding the paused generator),
 * send `execute`/`resume`, forward logs and steps as callbacks (within per-job budgets, each event cut to the
 * bounds of event-limits.ts), and post exactly one `result`. The job's `timeout_seconds` counts from
 * acceptance (package install, queueing and cold start included), so the API always hears back within the
 * timeout; on expiry the sandbox is killed (the pool replaces it). A sandbox that dies mid-job gives
 * `memory` (OOM kill) or `killed`. Cancel and a 409 from the API stop the job the same way. A failed install
 * fails the job as `internal` with pip's message.
 */
import { randomUUID } from "node:crypto";
import { messageOf } from "../../workers/lib/errors";
import type { ErrorType, ExecutorEvent, Job, ResultEvent } from "../../workers/lib/executor-protocol";
import type { Signer } from "./auth";
import { CallbackPoster } from "./callbacks";
import {
  boundResult,
  boundStep,
  chunkUtf8,
  completedResultProblem,
  jsonBytes,
  schemaSizeProblem,
} from "./event-limits";
import type { PostText } from "./http-post";
import type { JobReplyChannel } from "./job-reply";
import { NO_PACKAGES, PackageInstallError, type PackageInstaller, type PackageSet } from "./packages";
import { type Pool, PoolClosedError } from "./pool";
import type { JobMessage } from "./runtime-protocol";
import { type JobEvent, SandboxDiedError, type SandboxSession } from "./sandbox-session";
import { NoWorkersError } from "./shared-pool";
import { PausedExecutionLostError, PoolStoppedError } from "./user-pool";

/** Jobs accepted at once (queued or running); beyond that POST /v1/jobs answers 503. */
const MAX_ACTIVE_JOBS = 2000;
/**
 * Log forwarded per job, counted as text + `at` + LOG_EVENT_OVERHEAD_BYTES per event (what each queued event
 * costs in memory and in the API's rows, however short its text); past it, or past MAX_LOG_EVENTS_PER_JOB
 * events, the rest is dropped with one final notice.
 */
const MAX_LOG_BYTES_PER_JOB = 4 * 1024 * 1024;
const MAX_LOG_EVENTS_PER_JOB = 20_000;
const LOG_EVENT_OVERHEAD_BYTES = 64;
/** A log's `at` as the runtime writes it (ISO 8601, UTC or with an offset); anything else gets the executor's time. */
const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
/** Step events forwarded per job (two per tracked call). */
const MAX_STEP_EVENTS_PER_JOB = 20_000;
/** JSON of step events forwarded per job (each cut to its bounds first, event-limits.ts). */
const MAX_STEP_BYTES_PER_JOB = 4 * 1024 * 1024;
const LOG_CHUNK_BYTES = 8 * 1024;
/** setTimeout's ceiling (about 24.8 days); longer delays would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class NoCapacityError extends Error {
  override readonly name = "NoCapacityError";
}

type StopReason = "timeout" | "cancelled" | "conflict" | "shutdown";

interface ActiveJob {
  job: Job;
  poster: CallbackPoster;
  abort: AbortController;
  session: SandboxSession | null;
  stopReason: StopReason | null;
  /** The result was handed to the poster (it may still be posting). */
  finished: boolean;
  startedAt: number;
  logBytes: number;
  logEvents: number;
  stepEvents: number;
  stepBytes: number;
  logNoticeSent: boolean;
  stepNoticeSent: boolean;
  timer: NodeJS.Timeout | null;
}

export interface JobRunnerOptions {
  pool: Pool;
  signer: Signer;
  packages: PackageInstaller;
  memoryLimitMb: number;
  /** Sent in every started event (EXECUTOR_PUBLIC_URL): the API resumes and cancels the run there. */
  publicUrl?: string;
  log?: (line: string) => void;
  /** How callbacks are posted (tests); `node:http` by default. */
  post?: PostText;
}

export class JobRunner {
  private readonly active = new Map<string, ActiveJob>();
  private closing = false;
  private readonly log: (line: string) => void;

  constructor(private readonly options: JobRunnerOptions) {
    this.log = options.log ?? ((line) => console.log(line));
  }

  get activeCount(): number {
    return this.active.size;
  }

  /**
   * Accepts a verified job and runs it in the background; a duplicate of an active job is a no-op (its
   * `reply` is closed empty). The result's callback goes in `reply` while that is open. A resume is taken while
   * the paused job is still posting its last callbacks (it has finished: the API already saw the pause, or it
   * would not resume), and replaces it here.
   */
  submit(job: Job, reply?: JobReplyChannel): void {
    const current = this.active.get(job.execution_id);
    if (current && !(current.finished && job.kind === "resume")) {
      reply?.close();
      return;
    }
    // The API saw the pause (it resumes): what the paused job's poster still retries is not needed.
    current?.poster.stop();
    if (this.closing) throw new NoCapacityError("The executor is shutting down");
    if (this.active.size >= MAX_ACTIVE_JOBS) throw new NoCapacityError("The executor has too many jobs");
    const active: ActiveJob = {
      job,
      poster: new CallbackPoster({
        url: job.callback_url,
        executionId: job.execution_id,
        signer: this.options.signer,
        onConflict: () => this.stop(active, "conflict"),
        log: this.log,
        post: this.options.post,
        reply,
        firstSeq: job.first_seq,
      }),
      abort: new AbortController(),
      session: null,
      stopReason: null,
      finished: false,
      startedAt: performance.now(),
      logBytes: 0,
      logEvents: 0,
      stepEvents: 0,
      stepBytes: 0,
      logNoticeSent: false,
      stepNoticeSent: false,
      timer: null,
    };
    this.active.set(job.execution_id, active);
    const timeoutMs = Math.min(job.function.timeout_seconds * 1000, MAX_TIMER_MS);
    active.timer = setTimeout(() => this.stop(active, "timeout"), timeoutMs);
    void this.run(active)
      .catch((error: unknown) => {
        this.log(`job ${job.execution_id} failed inside the executor: ${messageOf(error)}`);
        this.finish(active, failed("internal", `Executor error: ${messageOf(error)}`, this.elapsed(active)));
      })
      .finally(async () => {
        if (active.timer) clearTimeout(active.timer);
        await active.poster.drain();
        reply?.close();
        if (this.active.get(job.execution_id) === active) this.active.delete(job.execution_id);
      });
  }

  /** Cancels a queued or running job, or forgets a paused one; false when nothing here matched. */
  cancel(executionId: string): boolean {
    const active = this.active.get(executionId);
    if (active) {
      if (active.finished) return false;
      if (active.stopReason) return active.stopReason === "cancelled";
      this.stop(active, "cancelled");
      return true;
    }
    return this.options.pool.forgetPaused(executionId);
  }

  /** Stops every job (their results say the executor shut down) and waits for their callbacks. */
  async close(): Promise<void> {
    this.closing = true;
    const jobs = [...this.active.values()];
    for (const active of jobs) this.stop(active, "shutdown");
    await Promise.race([
      Promise.all(jobs.map((active) => active.poster.drain())),
      new Promise((resolve) => setTimeout(resolve, 3000).unref()),
    ]);
  }

  private async run(active: ActiveJob): Promise<void> {
    const { job } = active;
    let packages: PackageSet = NO_PACKAGES;
    if (job.kind === "run" && job.requirements.length > 0) {
      try {
        // The install goes on when this job stops waiting (timeout, cancel): the next job with the set gains.
        packages = await untilAborted(
          this.options.packages.ensure(job.requirements, job.user.id),
          active.abort.signal,
        );
      } catch (error) {
        this.finish(active, this.stoppedResult(active) ?? installFailure(error, this.elapsed(active)));
        return;
      }
    }
    let session: SandboxSession;
    try {
      session =
        job.kind === "resume"
          ? await this.options.pool.acquireForResume(job.execution_id, active.abort.signal)
          : await this.options.pool.acquire(
              { userId: job.user.id, shared: job.function.shared_pool, packages },
              active.abort.signal,
            );
    } catch (error) {
      this.finish(active, this.stoppedResult(active) ?? acquireFailure(error, this.elapsed(active)));
      return;
    }
    if (active.stopReason) {
      this.options.pool.release(session);
      this.finish(active, this.stoppedResult(active));
      return;
    }
    active.session = session;
    const { publicUrl } = this.options;
    active.poster.push({
      type: "started",
      at: new Date().toISOString(),
      sandbox: session.id,
      ...(publicUrl ? { executor_url: publicUrl } : {}),
    });
    const jobId = randomUUID();
    const message: JobMessage =
      job.kind === "resume"
        ? { type: "resume", job_id: jobId, execution_id: job.execution_id, input: job.input }
        : {
            type: "execute",
            job_id: jobId,
            execution_id: job.execution_id,
            function: {
              namespace: job.function.namespace,
              name: job.function.name,
              code: job.function.code,
              code_hash: job.function.code_hash,
            },
            callable: job.callable,
            input: job.input,
            context: job.context,
          };
    let result: ResultEvent;
    try {
      result = await session.run(message, (event) => this.forward(active, event));
    } catch (error) {
      active.session = null;
      this.options.pool.release(session);
      this.finish(active, this.stoppedResult(active) ?? deathResult(error, this.elapsed(active)));
      return;
    }
    active.session = null;
    if (result.status === "failed" && result.error_type === "memory") {
      session.retire = true; // an interpreter that hit MemoryError is not trusted with the next job
      result = {
        ...result,
        error: `Function exceeded the memory limit (${this.options.memoryLimitMb} MB): ${result.error ?? "MemoryError"}`,
      };
    }
    if (result.status === "completed") session.executions++;
    let normalized: ResultEvent;
    let paused: string | undefined;
    let pauseKept = true;
    try {
      normalized = normalize(result, this.elapsed(active));
      // A pause refused here (schema too large) is no pause: its generator is not kept for a resume.
      paused = normalized.status === "awaiting_input" ? job.execution_id : undefined;
    } finally {
      // Should normalize throw (the job then fails as internal), the sandbox still goes back: else busy for good.
      pauseKept = this.options.pool.release(session, paused);
    }
    // A sandbox retired as the job paused (a reload, a memory error, a shrunk shared pool) takes the generator
    // with it: asking for input nobody could resume would only fail the continue later.
    if (!pauseKept) {
      normalized = failed(
        "killed",
        "The sandbox holding the paused generator was replaced",
        this.elapsed(active),
      );
    }
    this.finish(active, this.stoppedResult(active) ?? normalized);
  }

  /** Ends the job for `reason`: the waiter leaves the queue, or the sandbox is killed. */
  private stop(active: ActiveJob, reason: StopReason): void {
    if (reason === "conflict") active.poster.stop();
    if (active.stopReason || active.finished) return;
    active.stopReason = reason;
    active.abort.abort(new Error(reason));
    void active.session?.kill(reason === "timeout" ? "the job timed out" : `the job was ${reason}`);
  }

  private stoppedResult(active: ActiveJob): ResultEvent | null {
    const elapsed = this.elapsed(active);
    switch (active.stopReason) {
      case null:
        return null;
      case "timeout":
        return failed("timeout", `Function timed out after ${active.job.function.timeout_seconds}s`, elapsed);
      case "cancelled":
        return failed("cancelled", "Execution cancelled", elapsed);
      case "shutdown":
        return failed("internal", "The executor shut down during the execution", elapsed);
      case "conflict":
        return failed("cancelled", "The execution already finished elsewhere", elapsed);
    }
  }

  private finish(active: ActiveJob, result: ResultEvent | null): void {
    if (active.finished) return;
    active.finished = true;
    if (active.timer) clearTimeout(active.timer);
    active.timer = null;
    if (result) active.poster.push(result);
  }

  private forward(active: ActiveJob, event: JobEvent): void {
    if (active.stopReason) return;
    if (event.type === "step") {
      if (active.stepNoticeSent) return;
      const step = boundStep(event.step);
      const bytes = jsonBytes(step);
      if (active.stepEvents >= MAX_STEP_EVENTS_PER_JOB || active.stepBytes + bytes > MAX_STEP_BYTES_PER_JOB) {
        active.stepNoticeSent = true;
        this.push(
          active,
          notice(
            `[sinas] more than ${MAX_STEP_EVENTS_PER_JOB} step events or ${MAX_STEP_BYTES_PER_JOB} bytes of steps; further steps not recorded`,
          ),
        );
        return;
      }
      active.stepEvents++;
      active.stepBytes += bytes;
      this.push(active, { type: "step", step });
      return;
    }
    if (active.logNoticeSent || !event.text) return; // an empty text shows nothing: not worth a row
    const at = event.at.length <= 40 && ISO_TIMESTAMP.test(event.at) ? event.at : new Date().toISOString();
    const perEvent = at.length + LOG_EVENT_OVERHEAD_BYTES;
    const bytes = Buffer.byteLength(event.text);
    // A text that cannot fit is not cut into chunks first.
    const chunks =
      active.logBytes + bytes + perEvent <= MAX_LOG_BYTES_PER_JOB
        ? chunkUtf8(event.text, LOG_CHUNK_BYTES)
        : [];
    const cost = bytes + chunks.length * perEvent;
    const fits =
      chunks.length > 0 &&
      active.logEvents + chunks.length <= MAX_LOG_EVENTS_PER_JOB &&
      active.logBytes + cost <= MAX_LOG_BYTES_PER_JOB;
    if (!fits) {
      active.logNoticeSent = true; // the last log line: nothing is forwarded after it
      const limits = `${MAX_LOG_BYTES_PER_JOB} bytes or ${MAX_LOG_EVENTS_PER_JOB} log events`;
      this.push(active, notice(`[sinas] output exceeded ${limits}; the rest was dropped`));
      return;
    }
    active.logBytes += cost;
    active.logEvents += chunks.length;
    for (const text of chunks) this.push(active, { ...event, at, text });
  }

  private push(active: ActiveJob, event: ExecutorEvent): void {
    active.poster.push(event);
  }

  private elapsed(active: ActiveJob): number {
    return Math.round(performance.now() - active.startedAt);
  }
}

function failed(errorType: ErrorType, error: string, durationMs: number): ResultEvent {
  return { type: "result", status: "failed", error, error_type: errorType, duration_ms: durationMs };
}

function notice(text: string): ExecutorEvent {
  return { type: "log", stream: "stderr", text: `${text}\n`, at: new Date().toISOString() };
}

/**
 * The runtime's result as the API gets it: a completed result or a pause's schema too large to deliver
 * fails the job (`invalid_result`); errors, tracebacks and prompts are cut to their bound (event-limits.ts).
 */
function normalize(result: ResultEvent, elapsed: number): ResultEvent {
  const duration_ms = typeof result.duration_ms === "number" ? result.duration_ms : elapsed;
  let tooLarge: string | null = null;
  if (result.status === "completed") tooLarge = completedResultProblem(result.result);
  if (result.status === "awaiting_input") tooLarge = schemaSizeProblem(result.schema);
  if (tooLarge) return failed("invalid_result", tooLarge, duration_ms);
  return boundResult({ ...result, duration_ms });
}

function acquireFailure(error: unknown, elapsed: number): ResultEvent {
  if (error instanceof PausedExecutionLostError) return failed("not_found", error.message, elapsed);
  if (
    error instanceof NoWorkersError ||
    error instanceof PoolClosedError ||
    error instanceof PoolStoppedError
  ) {
    return failed("internal", error.message, elapsed);
  }
  if (error instanceof SandboxDiedError)
    return failed("internal", `Could not start a sandbox: ${error.exit.reason}`, elapsed);
  return failed("internal", `Could not get a sandbox: ${messageOf(error)}`, elapsed);
}

function installFailure(error: unknown, elapsed: number): ResultEvent {
  if (error instanceof PackageInstallError) return failed("internal", error.message, elapsed);
  return failed("internal", `Package installation failed: ${messageOf(error)}`, elapsed);
}

/** The promise's outcome, or the signal's reason once it fires first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

function deathResult(error: unknown, elapsed: number): ResultEvent {
  if (error instanceof SandboxDiedError) {
    if (error.exit.oomKilled)
      return failed("memory", "Function ran out of memory (the sandbox was killed)", elapsed);
    return failed("killed", `The sandbox died during the execution: ${error.exit.reason}`, elapsed);
  }
  return failed("internal", messageOf(error), elapsed);
}
