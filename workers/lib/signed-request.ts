/**
 * @module Signed requests between the API and the executor (executor-node/PROTOCOL.md §1): Ed25519 JWTs
 * bound to the method, path and body bytes. Runs in Workers and in Node (WebCrypto + jose only).
 */
import { importJWK, type JWK, type JWTPayload, jwtVerify, SignJWT } from "jose";
import { SIGNED_REQUEST_TTL_SECONDS } from "./executor-protocol";

const encoder = new TextEncoder();

export async function bodyHash(body: string | Uint8Array): Promise<string> {
  // A copy into a plain ArrayBuffer: WebCrypto's types refuse views of a SharedArrayBuffer.
  const bytes = typeof body === "string" ? encoder.encode(body) : new Uint8Array(body);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  let binary = "";
  for (const byte of digest) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

type KeyLike = Awaited<ReturnType<typeof importJWK>>;
const keyCache = new Map<string, Promise<KeyLike>>();

/** Imports an Ed25519 JWK given as JSON text; cached per isolate. */
export function importEd25519Key(jwkJson: string): Promise<KeyLike> {
  let key = keyCache.get(jwkJson);
  if (!key) {
    key = importJWK(JSON.parse(jwkJson) as JWK, "EdDSA");
    keyCache.set(jwkJson, key);
  }
  return key;
}

export interface SignedRequestClaims {
  issuer: string;
  audience: string;
  method: string;
  /** Path only, e.g. `/v1/jobs`. */
  path: string;
  body: string;
  /** The execution id the request is about, or `-`. */
  subject: string;
}

export async function signRequest(privateJwkJson: string, claims: SignedRequestClaims): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ htm: claims.method.toUpperCase(), htu: claims.path, bsh: await bodyHash(claims.body) })
    .setProtectedHeader({ alg: "EdDSA", typ: "JWT" })
    .setIssuer(claims.issuer)
    .setAudience(claims.audience)
    .setSubject(claims.subject)
    .setJti(crypto.randomUUID())
    .setIssuedAt(now)
    .setExpirationTime(now + SIGNED_REQUEST_TTL_SECONDS)
    .sign(await importEd25519Key(privateJwkJson));
}

export class SignatureError extends Error {
  override readonly name = "SignatureError";
}

/** Verifies a signed request; throws SignatureError naming what failed. The caller checks `jti` reuse. */
export async function verifySignedRequest(
  publicJwkJson: string,
  token: string,
  expected: Omit<SignedRequestClaims, "subject">,
): Promise<JWTPayload & { jti: string; sub: string }> {
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, await importEd25519Key(publicJwkJson), {
      algorithms: ["EdDSA"],
      issuer: expected.issuer,
      audience: expected.audience,
      clockTolerance: 30,
      maxTokenAge: SIGNED_REQUEST_TTL_SECONDS + 30,
    }));
  } catch (error) {
    throw new SignatureError(
      `invalid signature or claims: ${error instanceof Error ? error.message : error}`,
    );
  }
  if (payload.htm !== expected.method.toUpperCase() || payload.htu !== expected.path) {
    throw new SignatureError("token was signed for another request");
  }
  if (payload.bsh !== (await bodyHash(expected.body)))
    throw new SignatureError("body does not match its signature");
  if (typeof payload.jti !== "string" || typeof payload.sub !== "string")
    throw new SignatureError("jti and sub required");
  return payload as JWTPayload & { jti: string; sub: string };
}
