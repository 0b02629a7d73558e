/**
 * @module Request signing (PROTOCOL.md §1): verifies the API's signed requests against the exact body bytes
 * received, refuses replayed `jti`s, and signs the executor's callbacks.
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

export interface RequestToVerify {
  authorization: string | undefined;
  method: string;
  /** The request path, e.g. `/v1/jobs`. */
  path: string;
  body: Uint8Array;
}

export interface Signer {
  verify(request: RequestToVerify): Promise<VerifiedRequest>;
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
  return {
    async verify(request) {
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
      if (payload.bsh !== bodyHashOf(request.body)) throw new AuthError("body does not match its signature");
      // Remember the jti until the token can no longer pass the exp check anywhere.
      const ttl = Math.max(1, exp + CLOCK_TOLERANCE_SECONDS - Math.floor(Date.now() / 1000));
      if (!(await options.replayCache.claim(jti, ttl)))
        throw new AuthError("token was already used (replay)");
      return { jti, sub };
    },
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
