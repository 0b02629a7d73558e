/**
 * @module Access tokens (HS256 JWTs, sinas-spec §4.2) and opaque refresh tokens / API keys (§4.3-4.4).
 *
 * Access tokens carry `sub`, `email`, `iat`, `exp` and nothing else: permissions are loaded from the
 * database on every request, so a grant or a revocation applies at once. A function run started with an API
 * key gets a context token that also names the key (`akid`): it acts with that key's permissions, and only
 * while the key is active, never as the user's login.
 */
import { errors, jwtVerify, SignJWT } from "jose";
import { randomToken, sha256Hex } from "../lib/crypto";

const encoder = new TextEncoder();

/**
 * The HMAC key of a secret, imported once per isolate: jose imports a raw key on every call otherwise, and
 * every authenticated request verifies a token.
 */
const hmacKeys = new Map<string, Promise<CryptoKey>>();

function hmacKeyOf(secret: string): Promise<CryptoKey> {
  let key = hmacKeys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
      "verify",
    ]);
    hmacKeys.set(secret, key);
  }
  return key;
}

export interface AccessClaims {
  sub: string;
  email: string;
  /** The API key the token acts for (a function run's context token of a run started with that key). */
  apiKeyId?: string;
}

export async function signAccessToken(
  claims: AccessClaims,
  secret: string,
  ttlSeconds: number,
  now = Math.floor(Date.now() / 1000),
): Promise<string> {
  return new SignJWT(
    claims.apiKeyId ? { email: claims.email, akid: claims.apiKeyId } : { email: claims.email },
  )
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(claims.sub)
    .setIssuedAt(now)
    .setExpirationTime(now + ttlSeconds)
    .sign(await hmacKeyOf(secret));
}

export type AccessTokenCheck =
  | {
      kind: "valid";
      claims: AccessClaims /** When the token expires (ms since the epoch). */;
      expiresAt: number;
    }
  /** Signed by us and unexpired, but without `sub` or `email`. */
  | { kind: "bad_payload" }
  /** Not a JWT, wrong signature, expired, wrong algorithm: may still be an API key. */
  | { kind: "not_a_valid_jwt" };

export async function verifyAccessToken(token: string, secret: string): Promise<AccessTokenCheck> {
  try {
    const { payload } = await jwtVerify(token, await hmacKeyOf(secret), { algorithms: ["HS256"] });
    const { sub, email, akid } = payload;
    if (typeof sub !== "string" || typeof email !== "string") return { kind: "bad_payload" };
    if (akid !== undefined && typeof akid !== "string") return { kind: "bad_payload" };
    const expiresAt = typeof payload.exp === "number" ? payload.exp * 1000 : Number.POSITIVE_INFINITY;
    return { kind: "valid", claims: akid ? { sub, email, apiKeyId: akid } : { sub, email }, expiresAt };
  } catch (error) {
    if (error instanceof errors.JOSEError || error instanceof TypeError) return { kind: "not_a_valid_jwt" };
    throw error;
  }
}

/** A new opaque secret (refresh token or API key): 43 URL-safe characters, with its stored hash and prefix. */
export async function newOpaqueSecret(): Promise<{ plain: string; hash: string; prefix: string }> {
  const plain = randomToken(32);
  return { plain, hash: await sha256Hex(plain), prefix: plain.slice(0, 8) };
}
