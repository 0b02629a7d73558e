/**
 * @module LoginSession Durable Object (SQLite storage), one per login session: issues and verifies the OTP with a race-free attempt budget.
 *
 * Declared now so the binding and its storage class exist from the first migration; a later issue fills it.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../workers/env";

export class LoginSession extends DurableObject<Env> {
  override async fetch(_request: Request): Promise<Response> {
    return Response.json(
      {
        code: "NOT_IMPLEMENTED",
        message: "LoginSession is not implemented yet",
        detail: "LoginSession is not implemented yet",
      },
      { status: 501 },
    );
  }
}
