/**
 * @module The per-job callback poster (PROTOCOL.md §3): batches events for at most 50 ms (a `result` goes
 * at once; `started` alone waits for the next event, the API needs nothing from it), numbers posts with
 * `seq` from 1, posts them one at a time in order, retries failures with backoff for up to 30 s, and stops
 * for good on 409 (the execution finished elsewhere). The callback with the result goes in the job's held
 * answer instead when that is still open (job-reply.ts).
 */
import {
  CALLBACK_RETRY_MS,
  type CallbackBody,
  callbackRetryDelayMs,
  type ExecutorEvent,
} from "../../workers/lib/executor-protocol";
import type { Signer } from "./auth";
import { type PostText, postText } from "./http-post";
import type { JobReplyChannel } from "./job-reply";

export interface CallbackPosterOptions {
  url: string;
  executionId: string;
  signer: Signer;
  /** The API answered 409: the job must stop. */
  onConflict(): void;
  log(line: string): void;
  batchMs?: number;
  retryForMs?: number;
  post?: PostText;
  /** The job's held answer, when the API asked for one (`reply_within_ms`). */
  reply?: JobReplyChannel;
  /** The seq of the first callback (the job's `first_seq`); default 1. */
  firstSeq?: number;
}

const MAX_EVENTS_PER_POST = 1000;
const MAX_BYTES_PER_POST = 1024 * 1024;
const REQUEST_TIMEOUT_MS = 10_000;
/** Client errors that may pass on retry; any other 4xx is final. */
const RETRYABLE_4XX = new Set([408, 425, 429]);

export class CallbackPoster {
  private queue: ExecutorEvent[] = [];
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  private seq = 0;
  private stoppedFlag = false;
  private readonly batchMs: number;
  private readonly retryForMs: number;
  private readonly postText: PostText;

  constructor(private readonly options: CallbackPosterOptions) {
    this.batchMs = options.batchMs ?? 50;
    this.retryForMs = options.retryForMs ?? CALLBACK_RETRY_MS;
    this.postText = options.post ?? postText;
    this.seq = (options.firstSeq ?? 1) - 1;
  }

  /** True after a 409 or stop(): nothing more is posted. */
  get stopped(): boolean {
    return this.stoppedFlag;
  }

  push(event: ExecutorEvent): void {
    if (this.stoppedFlag) return;
    this.queue.push(event);
    if (event.type === "result") this.flush();
    else if (!this.timer && event.type !== "started") {
      this.timer = setTimeout(() => this.flush(), this.batchMs);
    }
  }

  /** Resolves once every event pushed so far was posted or given up. */
  async drain(): Promise<void> {
    this.flush();
    await this.chain;
  }

  stop(): void {
    this.stoppedFlag = true;
    this.queue = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.queue.length > 0) {
      const batch = this.takeBatch();
      this.chain = this.chain.then(() => this.post(batch));
    }
  }

  private takeBatch(): ExecutorEvent[] {
    const batch: ExecutorEvent[] = [];
    let bytes = 0;
    while (this.queue.length > 0 && batch.length < MAX_EVENTS_PER_POST) {
      const size = JSON.stringify(this.queue[0]).length;
      if (batch.length > 0 && bytes + size > MAX_BYTES_PER_POST) break;
      batch.push(this.queue.shift() as ExecutorEvent);
      bytes += size;
    }
    return batch;
  }

  private async post(events: ExecutorEvent[]): Promise<void> {
    if (this.stoppedFlag) return;
    this.seq += 1;
    const body: CallbackBody = { execution_id: this.options.executionId, seq: this.seq, events };
    const text = JSON.stringify(body);
    const reply = this.options.reply;
    if (reply?.open && events.some((event) => event.type === "result")) {
      const token = await this.options.signer.signCallback(this.options.url, text, this.options.executionId);
      if (reply.offer({ token, body: text })) return;
    }
    const deadline = Date.now() + this.retryForMs;
    let lastProblem = "";
    for (let attempt = 0; ; attempt++) {
      if (this.stoppedFlag) return;
      try {
        const token = await this.options.signer.signCallback(
          this.options.url,
          text,
          this.options.executionId,
        );
        // The answer is a few bytes: asking for it uncompressed spares both sides a gzip stream per post.
        const response = await this.postText(
          this.options.url,
          {
            authorization: `Bearer ${token}`,
            "content-type": "application/json",
            "accept-encoding": "identity",
          },
          text,
          Math.max(1000, Math.min(REQUEST_TIMEOUT_MS, deadline - Date.now())),
        );
        if (response.status >= 200 && response.status < 300) return;
        if (response.status === 409) {
          this.stop();
          this.options.onConflict();
          return;
        }
        lastProblem = `HTTP ${response.status}`;
        if (response.status < 500 && !RETRYABLE_4XX.has(response.status)) break;
      } catch (error) {
        lastProblem = error instanceof Error ? error.message : String(error);
      }
      const wait = callbackRetryDelayMs(attempt);
      if (Date.now() + wait >= deadline) break;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    this.options.log(
      `callback seq ${this.seq} for execution ${this.options.executionId} dropped (${events.length} events): ${lastProblem}`,
    );
  }
}
