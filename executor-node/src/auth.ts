/**
 * @module Request signing (PROTOCOL.md §1): verifies the API's signed requests (the token first, then the exact
 * body bytes received against it), refuses replayed `jti`s, and signs the executor's callbacks.
 */
import { randomUUID } from "node:crypto";
import {
  API_AUDIENCE,
  CALLBACK_ISSUER,
  EXECUTOR_AUDIENCE,
  JOB_ISSUER,
  SIGNED_REQUEST_TTL_SECONDS,
} from "../../workers/lib/executor-protocol";
import {
  bodyHashOf,
  type Claims,
  ed25519PrivateKey,
  ed25519PublicKey,
  signToken,
  verifyToken,
} from "./ed25519-jwt";
import type { ReplayCache } from "./replay-cache";

/** Any reason to refuse a request; the HTTP layer answers 401 with its message. */
export class AuthError extends Error {
  override readonly name = "AuthError";
}

const CLOCK_TOLERANCE_SECONDS = 30;

export interface VerifiedRequest {
  jti: string;
  /** The execution id the request is about, or `-`. */
  sub: string;
}

/** What a request shows before its body: its bearer token, method and path (e.g. `/v1/jobs`). */
export interface RequestHead {
  authorization: string | undefined;
  method: string;
  path: string;
}

/** A request whose token passed every check but the body's: its hash, and the jti to claim once it matches. */
export interface VerifiedHead extends VerifiedRequest {
  /** `bsh`: base64url SHA-256 of the body the token was signed for. */
  bodyHash: string;
  /** Epoch seconds. */
  exp: number;
}

export interface Signer {
  /**
   * Checks what needs no body: signature, iss, aud, lifetime, method and path. Throws AuthError, so a forged
   * request is refused before its body is read (a slow body of megabytes costs the sender, not the executor).
   */
  verifyHead(request: RequestHead): VerifiedHead;
  /** Checks the body against the verified token's hash, then claims its jti (a replay is refused). */
  verifyBody(head: VerifiedHead, body: Uint8Array): Promise<VerifiedRequest>;
  /** Signs a callback POST of `body` to `url` about execution `executionId`. */
  signCallback(url: string, body: string, executionId: string): Promise<string>;
}

export async function createSigner(options: {
  jobPublicKey: string;
  callbackPrivateKey: string;
  replayCache: ReplayCache;
}): Promise<Signer> {
  const publicKey = ed25519PublicKey(options.jobPublicKey);
  const callbackKey = ed25519PrivateKey(options.callbackPrivateKey);
  const verifyHead = (request: RequestHead): VerifiedHead => {
    const match = /^Bearer\s+(\S+)$/i.exec(request.authorization ?? "");
    if (!match?.[1]) throw new AuthError("missing bearer token");
    let payload: Claims;
    try {
      payload = verifyToken(match[1], publicKey, {
        issuer: JOB_ISSUER,
        audience: EXECUTOR_AUDIENCE,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        now: Math.floor(Date.now() / 1000),
      });
    } catch (error) {
      throw new AuthError(`invalid token: ${error instanceof Error ? error.message : String(error)}`);
    }
    const { iat, exp, jti, sub } = payload;
    if (typeof iat !== "number" || typeof exp !== "number" || exp - iat > SIGNED_REQUEST_TTL_SECONDS) {
      throw new AuthError(`token lifetime exceeds ${SIGNED_REQUEST_TTL_SECONDS} s`);
    }
    if (typeof jti !== "string" || jti.length === 0 || jti.length > 200 || typeof sub !== "string") {
      throw new AuthError("token lacks jti or sub");
    }
    if (payload.htm !== request.method.toUpperCase())
      throw new AuthError("token was signed for another method");
    if (payload.htu !== request.path) throw new AuthError("token was signed for another path");
    if (typeof payload.bsh !== "string") throw new AuthError("token lacks the body's hash");
    return { jti, sub, exp, bodyHash: payload.bsh };
  };
  const verifyBody = async (head: VerifiedHead, body: Uint8Array): Promise<VerifiedRequest> => {
    if (head.bodyHash !== bodyHashOf(body)) throw new AuthError("body does not match its signature");
    // Remember the jti until the token can no longer pass the exp check anywhere.
    const ttl = Math.max(1, head.exp + CLOCK_TOLERANCE_SECONDS - Math.floor(Date.now() / 1000));
    if (!(await options.replayCache.claim(head.jti, ttl)))
      throw new AuthError("token was already used (replay)");
    return { jti: head.jti, sub: head.sub };
  };
  return {
    verifyHead,
    verifyBody,
    async signCallback(url, body, executionId) {
      const now = Math.floor(Date.now() / 1000);
      return signToken(
        {
          htm: "POST",
          htu: new URL(url).pathname,
          bsh: bodyHashOf(body),
          iss: CALLBACK_ISSUER,
          aud: API_AUDIENCE,
          sub: executionId,
          jti: randomUUID(),
          iat: now,
          exp: now + SIGNED_REQUEST_TTL_SECONDS,
        },
        callbackKey,
      );
    },
  };
}
