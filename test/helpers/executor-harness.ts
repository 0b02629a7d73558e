/**
 * @module The executor for real, for node tests: Ed25519 key pairs, a callback receiver that verifies posts as
 * the API does, and `startHarness(env)`, which starts the executor with that environment and signs jobs and
 * requests for it.
 */
import { createHash, randomUUID } from "node:crypto";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair } from "jose";
import { expect } from "vitest";
import { loadConfig } from "../../executor-node/src/config";
import { type RunningExecutor, startExecutor } from "../../executor-node/src/executor";
import {
  API_AUDIENCE,
  CALLBACK_ISSUER,
  CallbackBodySchema,
  EXECUTOR_AUDIENCE,
  type ExecutorEvent,
  JOB_ISSUER,
  type Job,
  type ResultEvent,
} from "../../workers/lib/executor-protocol";
import { signRequest, verifySignedRequest } from "../../workers/lib/signed-request";

export interface Keys {
  jobPrivate: string;
  jobPublic: string;
  callbackPrivate: string;
  callbackPublic: string;
}

export async function makeKeys(): Promise<Keys> {
  const job = await generateKeyPair("EdDSA", { extractable: true });
  const callback = await generateKeyPair("EdDSA", { extractable: true });
  const json = async (key: CryptoKey) => JSON.stringify(await exportJWK(key));
  return {
    jobPrivate: await json(job.privateKey),
    jobPublic: await json(job.publicKey),
    callbackPrivate: await json(callback.privateKey),
    callbackPublic: await json(callback.publicKey),
  };
}

/** The API's side of callbacks: verifies each post, drops duplicate seqs, keeps events per execution. */
export class CallbackReceiver {
  readonly events = new Map<string, ExecutorEvent[]>();
  readonly posts = new Map<string, number[]>();
  readonly rejected: string[] = [];
  readonly conflictFor = new Set<string>();
  /** Executions whose posts are answered this many ms late (after their events are kept). */
  readonly slowReplies = new Map<string, number>();
  private waiters: Array<() => void> = [];
  private server!: HttpServer;
  base = "";

  constructor(private readonly publicKey: string) {}

  async start(): Promise<void> {
    this.server = createHttpServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on(
        "end",
        () => void this.handle(request.url ?? "/", request.headers.authorization, chunks, response),
      );
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The API restarts `seq` tracking for each job it sends (a resume is a new job: its seq starts at 1). */
  newJob(executionId: string): void {
    this.posts.delete(executionId);
  }

  url(executionId: string): string {
    return `${this.base}/internal/executions/${executionId}/events`;
  }

  private async handle(
    path: string,
    authorization: string | undefined,
    chunks: Buffer[],
    response: import("node:http").ServerResponse,
  ): Promise<void> {
    const text = Buffer.concat(chunks).toString("utf8");
    try {
      await verifySignedRequest(this.publicKey, (authorization ?? "").replace(/^Bearer /, ""), {
        issuer: CALLBACK_ISSUER,
        audience: API_AUDIENCE,
        method: "POST",
        path,
        body: text,
      });
    } catch (error) {
      this.rejected.push(String(error));
      response.writeHead(401).end();
      return;
    }
    const body = CallbackBodySchema.parse(JSON.parse(text));
    const seqs = this.posts.get(body.execution_id) ?? [];
    if (this.conflictFor.has(body.execution_id)) {
      seqs.push(body.seq);
      this.posts.set(body.execution_id, seqs);
      response.writeHead(409, { "content-type": "application/json" }).end('{"ok":false}');
      return;
    }
    if (!seqs.includes(body.seq)) {
      seqs.push(body.seq);
      this.posts.set(body.execution_id, seqs);
      const list = this.events.get(body.execution_id) ?? [];
      list.push(...body.events);
      this.events.set(body.execution_id, list);
      for (const wake of this.waiters.splice(0)) wake();
    }
    const delay = this.slowReplies.get(body.execution_id);
    if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
    response.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
  }

  async waitFor(executionId: string, predicate: (events: ExecutorEvent[]) => boolean, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const events = this.events.get(executionId) ?? [];
      if (predicate(events)) return events;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`timed out waiting on ${executionId}: ${JSON.stringify(events).slice(0, 2000)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async result(executionId: string, timeoutMs?: number): Promise<ResultEvent> {
    const events = await this.waitFor(
      executionId,
      (list) => list.some((event) => event.type === "result"),
      timeoutMs,
    );
    const results = events.filter((event) => event.type === "result");
    return results[results.length - 1] as ResultEvent;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export interface Harness {
  keys: Keys;
  receiver: CallbackReceiver;
  executor: RunningExecutor;
  /** Lines the executor logged. */
  logs: string[];
  job(code: string, options?: Partial<JobOptions>): Job;
  send(
    method: string,
    path: string,
    body?: unknown,
    token?: string,
  ): Promise<{ status: number; body: unknown }>;
  sign(method: string, path: string, body: string, subject?: string): Promise<string>;
  run(job: Job): Promise<ResultEvent>;
  close(): Promise<void>;
}

export interface JobOptions {
  name: string;
  namespace: string;
  input: unknown;
  userId: string;
  timeout: number;
  shared: boolean;
  kind: "run" | "resume";
  executionId: string;
  requirements: string[];
}

export const SECRET_ENV = "SINAS_TEST_EXECUTOR_SECRET";
export const SECRET_VALUE = `do-not-leak-${randomUUID()}`;

export async function startHarness(env: Record<string, string>): Promise<Harness> {
  const keys = await makeKeys();
  const receiver = new CallbackReceiver(keys.callbackPublic);
  await receiver.start();
  process.env[SECRET_ENV] = SECRET_VALUE; // the executor's own environment must never reach user code
  const config = loadConfig({
    EXECUTOR_PORT: "0",
    EXECUTOR_JOB_PUBLIC_KEY: keys.jobPublic,
    EXECUTOR_CALLBACK_PRIVATE_KEY: keys.callbackPrivate,
    ...env,
  });
  const lines: string[] = [];
  const executor = await startExecutor(config, { log: (line) => lines.push(line) });
  const sign = (method: string, path: string, body: string, subject = "-") =>
    signRequest(keys.jobPrivate, {
      issuer: JOB_ISSUER,
      audience: EXECUTOR_AUDIENCE,
      method,
      path,
      body,
      subject,
    });
  const send = async (method: string, path: string, body?: unknown, token?: string) => {
    const text = body === undefined ? "" : JSON.stringify(body);
    const response = await fetch(`${executor.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token ?? (await sign(method, path, text))}`,
        "content-type": "application/json",
      },
      body: method === "GET" || method === "DELETE" ? undefined : text,
    });
    return { status: response.status, body: (await response.json()) as unknown };
  };
  const job = (code: string, options: Partial<JobOptions> = {}): Job => {
    const executionId = options.executionId ?? randomUUID();
    const userId = options.userId ?? "user-a";
    const name = options.name ?? /def (\w+)/.exec(code)?.[1] ?? "main";
    return {
      execution_id: executionId,
      kind: options.kind ?? "run",
      user: { id: userId, email: `${userId}@example.com` },
      function: {
        namespace: options.namespace ?? "default",
        name,
        code,
        code_hash: createHash("sha256").update(code).digest("hex"),
        timeout_seconds: options.timeout ?? 20,
        shared_pool: options.shared ?? false,
      },
      callable: {},
      requirements: options.requirements ?? [],
      input: options.input ?? {},
      context: {
        user_id: userId,
        user_email: `${userId}@example.com`,
        access_token: "token",
        execution_id: executionId,
        trigger_type: "WEBHOOK",
        chat_id: null,
      },
      callback_url: receiver.url(executionId),
    };
  };
  const run = async (value: Job) => {
    const answer = await send("POST", "/v1/jobs", value);
    expect(answer).toEqual({ status: 202, body: { accepted: true, execution_id: value.execution_id } });
    return receiver.result(value.execution_id);
  };
  return {
    keys,
    receiver,
    executor,
    logs: lines,
    job,
    send,
    sign,
    run,
    async close() {
      await executor.close();
      await receiver.close();
    },
  };
}
