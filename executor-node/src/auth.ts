/**
 * @module Request signing (PROTOCOL.md §1): verifies the API's signed requests against the exact body bytes
 * received, refuses replayed `jti`s, and signs the executor's callbacks.
 */
import { importJWK, type JWK, type JWTPayload, jwtVerify } from "jose";
import {
  API_AUDIENCE,
  CALLBACK_ISSUER,
  EXECUTOR_AUDIENCE,
  JOB_ISSUER,
  SIGNED_REQUEST_TTL_SECONDS,
} from "../../workers/lib/executor-protocol";
import { bodyHash, signRequest } from "../../workers/lib/signed-request";
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
  const publicKey = await importJWK(JSON.parse(options.jobPublicKey) as JWK, "EdDSA");
  return {
    async verify(request) {
      const match = /^Bearer\s+(\S+)$/i.exec(request.authorization ?? "");
      if (!match?.[1]) throw new AuthError("missing bearer token");
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(match[1], publicKey, {
          algorithms: ["EdDSA"],
          issuer: JOB_ISSUER,
          audience: EXECUTOR_AUDIENCE,
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          requiredClaims: ["iat", "exp", "jti", "sub"],
        }));
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
      if (payload.bsh !== (await bodyHash(request.body)))
        throw new AuthError("body does not match its signature");
      // Remember the jti until the token can no longer pass the exp check anywhere.
      const ttl = Math.max(1, exp + CLOCK_TOLERANCE_SECONDS - Math.floor(Date.now() / 1000));
      if (!(await options.replayCache.claim(jti, ttl)))
        throw new AuthError("token was already used (replay)");
      return { jti, sub };
    },
    signCallback(url, body, executionId) {
      return signRequest(options.callbackPrivateKey, {
        issuer: CALLBACK_ISSUER,
        audience: API_AUDIENCE,
        method: "POST",
        path: new URL(url).pathname,
        body,
        subject: executionId,
      });
    },
  };
}
