/**
 * @module ExecutionRun Durable Object (SQLite storage), one per execution: dispatches the signed job to the executor, receives its callbacks, streams logs, wakes waiters, watchdog alarm.
 *
 * Declared now so the binding and its storage class exist from the first migration; a later issue fills it.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../workers/env";

export class ExecutionRun extends DurableObject<Env> {
  override async fetch(_request: Request): Promise<Response> {
    return Response.json(
      {
        code: "NOT_IMPLEMENTED",
        message: "ExecutionRun is not implemented yet",
        detail: "ExecutionRun is not implemented yet",
      },
      { status: 501 },
    );
  }
}
