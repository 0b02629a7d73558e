import { generateKeyPairSync, type KeyObject, randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createSigner } from "../../executor-node/src/auth";
import { MAX_FIELD_BYTES, TOO_DEEP_PREVIEW, TRUNCATED_MARKER } from "../../executor-node/src/event-limits";
import { JobRunner } from "../../executor-node/src/jobs";
import type { PackageInstaller } from "../../executor-node/src/packages";
import type { Pool } from "../../executor-node/src/pool";
import { createMemoryReplayCache } from "../../executor-node/src/replay-cache";
import type { JobEvent } from "../../executor-node/src/sandbox-session";
import {
  CallbackBodySchema,
  type ExecutorEvent,
  type Job,
  type ResultEvent,
  type Step,
} from "../../workers/lib/executor-protocol";

// The job runner between a runtime that sends huge steps and results (user code can write to its socket
// itself) and an API that refuses callbacks over 4 MiB: what it forwards stays within bounds, whatever it got.

/** workers/http/internal.ts MAX_CALLBACK_BYTES: larger posts are answered 413 and dropped. */
const API_BODY_LIMIT = 4 * 1024 * 1024;
const BIG = "x".repeat(5_000_000);

type Script = (emit: (event: JobEvent) => void) => ResultEvent;

interface Outcome {
  events: ExecutorEvent[];
  postSizes: number[];
  refused: number;
  pausedExecution: string | undefined;
  /** How often the sandbox was handed back to the pool. */
  released: number;
  elapsedMs: number;
}

const jwk = (key: KeyObject) => JSON.stringify(key.export({ format: "jwk" }));

/** Runs one job whose sandbox plays `script`, and collects what the API received. */
async function runScripted(script: Script): Promise<Outcome> {
  const jobKeys = generateKeyPairSync("ed25519");
  const callbackKeys = generateKeyPairSync("ed25519");
  const signer = await createSigner({
    jobPublicKey: jwk(jobKeys.publicKey),
    callbackPrivateKey: jwk(callbackKeys.privateKey),
    replayCache: createMemoryReplayCache(),
  });
  const outcome: Outcome = {
    events: [],
    postSizes: [],
    refused: 0,
    pausedExecution: undefined,
    released: 0,
    elapsedMs: 0,
  };
  const session = {
    id: "scripted",
    retire: false,
    executions: 0,
    alive: true,
    async kill() {},
    async run(_message: unknown, onEvent: (event: JobEvent) => void) {
      return script(onEvent);
    },
  };
  const pool = {
    acquire: async () => session,
    // As Pool.release: true, the pause (if any) kept.
    release: (_session: unknown, pausedExecution?: string): boolean => {
      outcome.released++;
      outcome.pausedExecution = pausedExecution;
      return true;
    },
    forgetPaused: () => false,
  };
  const runner = new JobRunner({
    pool: pool as unknown as Pool,
    signer,
    packages: {} as PackageInstaller,
    memoryLimitMb: 512,
    log: () => undefined,
    post: async (_url, _headers, body) => {
      outcome.postSizes.push(Buffer.byteLength(body));
      if (Buffer.byteLength(body) > API_BODY_LIMIT) {
        outcome.refused++;
        return { status: 413 };
      }
      outcome.events.push(...CallbackBodySchema.parse(JSON.parse(body)).events);
      return { status: 200 };
    },
  });
  const executionId = randomUUID();
  const started = Date.now();
  runner.submit(job(executionId));
  while (runner.activeCount > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  outcome.elapsedMs = Date.now() - started;
  return outcome;
}

function job(executionId: string): Job {
  return {
    execution_id: executionId,
    kind: "run",
    user: { id: "user", email: "user@example.com" },
    function: {
      namespace: "default",
      name: "f",
      code: "",
      code_hash: "",
      timeout_seconds: 60,
      shared_pool: false,
    },
    callable: {},
    requirements: [],
    input: {},
    context: {
      user_id: "user",
      user_email: "user@example.com",
      access_token: "token",
      execution_id: executionId,
      trigger_type: "WEBHOOK",
      chat_id: null,
    },
    callback_url: `http://api.invalid/internal/executions/${executionId}/events`,
  };
}

const resultOf = (outcome: Outcome) => outcome.events.find((event) => event.type === "result");
const bytesOf = (value: unknown) => Buffer.byteLength(JSON.stringify(value));

describe("job runner: step events", () => {
  it("cuts each step's fields to 64 KiB and stops forwarding steps past the job's byte budget", async () => {
    const outcome = await runScripted((emit) => {
      for (let index = 0; index < 200; index++) {
        const step: Step = {
          id: `step-${index}`,
          parent_id: null,
          namespace: BIG,
          name: "f",
          status: "FAILED",
          input: BIG,
          output: { text: BIG },
          error: `ValueError: ${BIG}`,
          traceback: BIG,
          started_at: "2026-01-01T00:00:00.000000Z",
        };
        emit({ type: "step", step });
      }
      return { type: "result", status: "completed", result: { ok: true }, duration_ms: 1 };
    });
    expect(outcome.refused).toBe(0);
    expect(resultOf(outcome)).toMatchObject({ status: "completed", result: { ok: true } });
    const steps = outcome.events.flatMap((event) => (event.type === "step" ? [event.step] : []));
    expect(steps.length).toBeGreaterThan(0);
    for (const step of steps) {
      expect(bytesOf(step)).toBeLessThanOrEqual(4 * MAX_FIELD_BYTES + 4096);
      expect(step.input).toMatchObject({ truncated: true, bytes: BIG.length + 2 });
      expect((step.input as { preview: string }).preview.startsWith('"xxx')).toBe(true);
      expect(bytesOf(step.input)).toBeLessThanOrEqual(MAX_FIELD_BYTES);
      expect(step.output).toMatchObject({ truncated: true });
      expect(step.error?.endsWith(TRUNCATED_MARKER)).toBe(true);
      expect(step.error?.startsWith("ValueError: xxx")).toBe(true);
      expect(Buffer.byteLength(step.traceback ?? "")).toBeLessThanOrEqual(MAX_FIELD_BYTES);
      expect(Buffer.byteLength(step.namespace)).toBeLessThanOrEqual(1024);
    }
    // The job's step budget (4 MiB of JSON) ends forwarding, with one notice.
    expect(steps.length).toBeLessThan(200);
    expect(steps.reduce((sum, step) => sum + bytesOf({ type: "step", step }), 0)).toBeLessThanOrEqual(
      4 * 1024 * 1024,
    );
    const notices = outcome.events.filter((event) => event.type === "log" && event.text.includes("steps"));
    expect(notices).toHaveLength(1);
  });
});

describe("job runner: results", () => {
  it("delivers a failure with a huge error at once, its error and traceback cut to 64 KiB", async () => {
    const outcome = await runScripted(() => ({
      type: "result",
      status: "failed",
      error: `ValueError: ${BIG}`,
      error_type: "exception",
      traceback: `Traceback (most recent call last):\nValueError: ${BIG}`,
      duration_ms: 1,
    }));
    expect(outcome.refused).toBe(0);
    expect(outcome.elapsedMs).toBeLessThan(5000);
    const result = resultOf(outcome) as ResultEvent;
    expect(result).toMatchObject({ status: "failed", error_type: "exception" });
    expect(result.error?.startsWith("ValueError: xxx")).toBe(true);
    expect(result.error?.endsWith(TRUNCATED_MARKER)).toBe(true);
    expect(Buffer.byteLength(result.error ?? "")).toBeLessThanOrEqual(MAX_FIELD_BYTES);
    expect(result.traceback?.startsWith("Traceback")).toBe(true);
    expect(Buffer.byteLength(result.traceback ?? "")).toBeLessThanOrEqual(MAX_FIELD_BYTES);
  });

  it("cuts a pause's prompt to 64 KiB, and fails a pause whose schema is too large (no pause kept)", async () => {
    const prompted = await runScripted(() => ({
      type: "result",
      status: "awaiting_input",
      prompt: BIG,
      schema: { type: "object" },
      duration_ms: 1,
    }));
    expect(prompted.refused).toBe(0);
    const pause = resultOf(prompted) as ResultEvent;
    expect(pause).toMatchObject({ status: "awaiting_input", schema: { type: "object" } });
    expect(pause.prompt?.endsWith(TRUNCATED_MARKER)).toBe(true);
    expect(Buffer.byteLength(pause.prompt ?? "")).toBeLessThanOrEqual(MAX_FIELD_BYTES);
    expect(prompted.pausedExecution).toBeDefined();

    const schemaTooLarge = await runScripted(() => ({
      type: "result",
      status: "awaiting_input",
      prompt: "Your name?",
      schema: { type: "object", description: BIG },
      duration_ms: 1,
    }));
    expect(schemaTooLarge.refused).toBe(0);
    expect(resultOf(schemaTooLarge)).toMatchObject({ status: "failed", error_type: "invalid_result" });
    expect((resultOf(schemaTooLarge) as ResultEvent).error).toContain("schema");
    expect(schemaTooLarge.pausedExecution).toBeUndefined();
  });

  it("sends only the fields of the result's status", async () => {
    const outcome = await runScripted(() => ({
      type: "result",
      status: "failed",
      error: "ValueError: small",
      error_type: "exception",
      result: BIG,
      schema: { description: BIG },
      duration_ms: 1,
    }));
    expect(outcome.refused).toBe(0);
    expect(resultOf(outcome)).toEqual({
      type: "result",
      status: "failed",
      error: "ValueError: small",
      error_type: "exception",
      duration_ms: 1,
    });
  });
});

/** A JSON value nested `depth` arrays deep: JSON.stringify overflows V8's stack on it (about 4000 levels). */
function nested(depth: number): unknown {
  let value: unknown = [];
  for (let level = 0; level < depth; level++) value = [value];
  return value;
}

describe("job runner: values nested too deeply to write as JSON", () => {
  const DEEP = nested(200_000);

  it("fails a result or a pause's schema as invalid_result and hands the sandbox back", async () => {
    const completed = await runScripted(() => ({
      type: "result",
      status: "completed",
      result: DEEP,
      duration_ms: 1,
    }));
    expect(resultOf(completed)).toMatchObject({ status: "failed", error_type: "invalid_result" });
    expect((resultOf(completed) as ResultEvent).error).toContain("nested too deeply");
    expect(completed.released).toBe(1);

    const paused = await runScripted(() => ({
      type: "result",
      status: "awaiting_input",
      prompt: "?",
      schema: { type: "object", properties: DEEP },
      duration_ms: 1,
    }));
    expect(resultOf(paused)).toMatchObject({ status: "failed", error_type: "invalid_result" });
    expect((resultOf(paused) as ResultEvent).error).toContain("nested too deeply");
    expect(paused.released).toBe(1);
    expect(paused.pausedExecution).toBeUndefined();
  });

  it("replaces a step's deep input or output by a marker", async () => {
    const outcome = await runScripted((emit) => {
      const step: Step = {
        id: "s",
        parent_id: null,
        namespace: "default",
        name: "f",
        status: "COMPLETED",
        input: DEEP,
        output: { value: DEEP },
        started_at: "2026-01-01T00:00:00.000000Z",
      };
      emit({ type: "step", step });
      return { type: "result", status: "completed", result: 1, duration_ms: 1 };
    });
    expect(resultOf(outcome)).toMatchObject({ status: "completed", result: 1 });
    const step = outcome.events.find((event) => event.type === "step");
    const marker = { truncated: true, bytes: null, preview: TOO_DEEP_PREVIEW };
    expect(step).toMatchObject({ step: { input: marker, output: marker } });
  });
});

describe("job runner: log events", () => {
  const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

  it("drops empty texts, counts each event's `at` and overhead, and caps the events, with one last notice", async () => {
    const outcome = await runScripted((emit) => {
      for (let index = 0; index < 60_000; index++) {
        emit({ type: "log", stream: "stdout", text: "", at: "2026-01-01T00:00:00.000000Z" });
      }
      emit({ type: "log", stream: "stdout", text: "first\n", at: "a".repeat(1000) });
      for (let index = 0; index < 30_000; index++) {
        emit({ type: "log", stream: "stdout", text: "x", at: "2026-01-01T00:00:00.000000Z" });
      }
      emit({ type: "log", stream: "stderr", text: "late\n", at: "2026-01-01T00:00:00.000000Z" });
      return { type: "result", status: "completed", result: 1, duration_ms: 1 };
    });
    expect(resultOf(outcome)).toMatchObject({ status: "completed", result: 1 });
    const logs = outcome.events.flatMap((event) => (event.type === "log" ? [event] : []));
    expect(logs.every((log) => log.text !== "")).toBe(true);
    expect(logs.every((log) => ISO.test(log.at) && log.at.length <= 40)).toBe(true);
    expect(logs[0]?.text).toBe("first\n");
    expect(logs.length).toBeLessThanOrEqual(20_001);
    expect(logs.at(-1)?.text).toContain("the rest was dropped");
    expect(logs.filter((log) => log.text.includes("the rest was dropped"))).toHaveLength(1);
  });

  it("counts 1 KiB timestamps against the byte budget", async () => {
    const stamp = `2026-01-01T00:00:00.000000Z${" ".repeat(1000)}`;
    const outcome = await runScripted((emit) => {
      for (let index = 0; index < 20_000; index++) {
        emit({ type: "log", stream: "stdout", text: "y".repeat(200), at: stamp });
      }
      return { type: "result", status: "completed", result: 1, duration_ms: 1 };
    });
    const logs = outcome.events.flatMap((event) => (event.type === "log" ? [event] : []));
    // A replaced timestamp is the executor's own (24 bytes): 200 + 24 + 64 bytes per event, 4 MiB in all.
    expect(logs.every((log) => log.at.length <= 40)).toBe(true);
    const forwarded = logs.reduce((sum, log) => sum + Buffer.byteLength(log.text) + log.at.length + 64, 0);
    expect(forwarded).toBeLessThanOrEqual(4 * 1024 * 1024 + 200);
  });
});
