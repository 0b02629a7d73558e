/**
 * @module ChatSession Durable Object (SQLite storage), one per chat: runs agent turns, owns the live stream and its replay log, stop and tool approvals.
 *
 * Declared now so the binding and its storage class exist from the first migration; a later issue fills it.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../workers/env";

export class ChatSession extends DurableObject<Env> {
  override async fetch(_request: Request): Promise<Response> {
    return Response.json(
      {
        code: "NOT_IMPLEMENTED",
        message: "ChatSession is not implemented yet",
        detail: "ChatSession is not implemented yet",
      },
      { status: 501 },
    );
  }
}
