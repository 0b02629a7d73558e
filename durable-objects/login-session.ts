/**
 * @module LoginSession Durable Object: one per login session id. Holds the HMAC of the OTP, its expiry
 * and the attempt count, and decides each verification.
 *
 * Race-free by construction: `verify` touches only synchronous SQLite storage, so no other call can
 * interleave between reading the attempt count and writing it; 50 parallel guesses are 50 serialized
 * decisions, and the budget of 5 cannot be exceeded.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../workers/env";
import { constantTimeEqual } from "../workers/lib/crypto";

export const MAX_OTP_ATTEMPTS = 5;
/** The session is forgotten this long after expiry. */
const CLEANUP_AFTER_MS = 60 * 60 * 1000;

export type OtpVerdict =
  | { ok: true; email: string; attempts: number }
  | { ok: false; reason: "unknown" | "expired" | "used" | "locked" | "wrong_code"; attempts: number };

interface SessionRow extends Record<string, SqlStorageValue> {
  email: string;
  code_hash: string;
  expires_at: number;
  attempts: number;
  state: string;
}

export class LoginSession extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      `create table if not exists session (
        id integer primary key check (id = 1),
        email text not null, code_hash text not null, expires_at integer not null,
        attempts integer not null default 0, state text not null default 'pending')`,
    );
  }

  #row(): SessionRow | undefined {
    return this.ctx.storage.sql.exec<SessionRow>("select * from session where id = 1").toArray()[0];
  }

  /** Stores a fresh session; a session id is never reused, so an existing row means a replayed call. */
  async start(input: { email: string; codeHash: string; expiresAt: number }): Promise<void> {
    if (this.#row()) throw new Error("login session already started");
    this.ctx.storage.sql.exec(
      "insert into session (id, email, code_hash, expires_at) values (1, ?, ?, ?)",
      input.email,
      input.codeHash,
      input.expiresAt,
    );
    await this.ctx.storage.setAlarm(input.expiresAt + CLEANUP_AFTER_MS);
  }

  /** Decides one attempt. A wrong code costs one attempt; the fifth wrong one locks the session for good. */
  verify(candidateHash: string, now = Date.now()): OtpVerdict {
    const row = this.#row();
    if (!row) return { ok: false, reason: "unknown", attempts: 0 };
    if (row.state === "verified") return { ok: false, reason: "used", attempts: row.attempts };
    if (row.state === "locked" || row.attempts >= MAX_OTP_ATTEMPTS) {
      return { ok: false, reason: "locked", attempts: row.attempts };
    }
    if (now > row.expires_at) return { ok: false, reason: "expired", attempts: row.attempts };
    if (constantTimeEqual(candidateHash, row.code_hash)) {
      this.ctx.storage.sql.exec("update session set state = 'verified' where id = 1");
      return { ok: true, email: row.email, attempts: row.attempts };
    }
    const attempts = row.attempts + 1;
    const state = attempts >= MAX_OTP_ATTEMPTS ? "locked" : "pending";
    this.ctx.storage.sql.exec("update session set attempts = ?, state = ? where id = 1", attempts, state);
    return { ok: false, reason: "wrong_code", attempts };
  }

  override async alarm(): Promise<void> {
    this.ctx.storage.sql.exec("delete from session");
  }
}
