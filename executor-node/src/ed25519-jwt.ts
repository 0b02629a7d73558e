/**
 * @module Compact EdDSA (Ed25519) JWTs with `node:crypto`, for the executor's side of the signed requests
 * (PROTOCOL.md §1). The API signs and checks with jose on WebCrypto; in Node, WebCrypto runs every digest,
 * signature and verification as an async job on the thread pool, which made a quarter of the executor's CPU
 * per run. These are the same tokens, made and checked synchronously.
 *
 * Only what the protocol uses is accepted: header `{"alg":"EdDSA"}` (no `crit`), a JSON object payload.
 */
import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from "node:crypto";

export class TokenError extends Error {
  override readonly name = "TokenError";
}

export type Claims = Record<string, unknown>;

const HEADER = Buffer.from(JSON.stringify({ alg: "EdDSA", typ: "JWT" })).toString("base64url");

/** The base64url SHA-256 of the body, as `bsh` carries it (workers/lib/signed-request.ts `bodyHash`). */
export function bodyHashOf(body: string | Uint8Array): string {
  return createHash("sha256").update(body).digest("base64url");
}

export function ed25519PublicKey(jwkJson: string): KeyObject {
  return createPublicKey({ key: JSON.parse(jwkJson), format: "jwk" });
}

export function ed25519PrivateKey(jwkJson: string): KeyObject {
  return createPrivateKey({ key: JSON.parse(jwkJson), format: "jwk" });
}

export function signToken(claims: Claims, privateKey: KeyObject): string {
  const input = `${HEADER}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
  return `${input}.${sign(null, Buffer.from(input), privateKey).toString("base64url")}`;
}

function decodeObject(part: string, what: string): Claims {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    throw new TokenError(`${what} is not JSON`);
  }
  if (!value || typeof value !== "object" || Array.isArray(value))
    throw new TokenError(`${what} is not an object`);
  return value as Claims;
}

export interface ExpectedClaims {
  issuer: string;
  audience: string;
  /** Seconds of clock difference allowed either way. */
  clockTolerance: number;
  /** Epoch seconds. */
  now: number;
}

/**
 * Verifies the signature, then the claims: `iss` and `aud` as expected, numeric `iat` (not in the future)
 * and `exp` (not past), `nbf` if present, string `jti` and `sub`. Throws TokenError naming what failed.
 */
export function verifyToken(token: string, publicKey: KeyObject, expected: ExpectedClaims): Claims {
  const parts = token.split(".");
  if (parts.length !== 3) throw new TokenError("not a compact JWT");
  const [header, payload, signature] = parts as [string, string, string];
  const protectedHeader = decodeObject(header, "header");
  if (protectedHeader.alg !== "EdDSA") throw new TokenError("alg must be EdDSA");
  if (protectedHeader.crit !== undefined) throw new TokenError("crit is not supported");
  if (!verify(null, Buffer.from(`${header}.${payload}`), publicKey, Buffer.from(signature, "base64url"))) {
    throw new TokenError("signature verification failed");
  }
  const claims = decodeObject(payload, "payload");
  const { iss, aud, iat, exp, nbf, jti, sub } = claims;
  const { now, clockTolerance } = expected;
  if (iss !== expected.issuer) throw new TokenError('unexpected "iss" claim value');
  const audiences = Array.isArray(aud) ? aud : [aud];
  if (!audiences.includes(expected.audience)) throw new TokenError('unexpected "aud" claim value');
  if (typeof iat !== "number" || typeof exp !== "number") throw new TokenError("iat and exp required");
  if (typeof jti !== "string" || typeof sub !== "string") throw new TokenError("jti and sub required");
  if (iat > now + clockTolerance) throw new TokenError('"iat" claim timestamp check failed');
  if (exp <= now - clockTolerance) throw new TokenError('"exp" claim timestamp check failed');
  if (nbf !== undefined && (typeof nbf !== "number" || nbf > now + clockTolerance)) {
    throw new TokenError('"nbf" claim timestamp check failed');
  }
  return claims;
}
