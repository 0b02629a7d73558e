/**
 * @module Proof that an anonymous webhook caller holds the webhook's secret (SINAS Edge; README "Webhooks").
 *
 * - `secret`: the caller sends the secret itself in `X-Webhook-Secret`.
 * - `hmac_sha256` (GitHub style, plus a timestamp against replays): the caller sends
 *   `X-Signature-Timestamp: <unix seconds>` and `X-Signature-256: sha256=<hex>`, the hex being
 *   HMAC-SHA256(secret, `<timestamp>.` followed by the raw body bytes). The timestamp must be within
 *   5 minutes of the server's clock.
 *
 * Pure functions over WebCrypto, shared by the Worker and the tests/bench that sign requests.
 */
import type { WebhookVerification } from "../db/schema";
import { constantTimeEqual, hmacSha256Hex, sha256Hex } from "./crypto";

export const SECRET_HEADER = "x-webhook-secret";
export const SIGNATURE_HEADER = "x-signature-256";
export const TIMESTAMP_HEADER = "x-signature-timestamp";
/** How far the signed timestamp may be from the server's clock, either way. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

const encoder = new TextEncoder();

/** The signed bytes: `<timestamp>.` then the body exactly as sent. */
function signedBytes(timestamp: string, body: Uint8Array): Uint8Array {
  const prefix = encoder.encode(`${timestamp}.`);
  const bytes = new Uint8Array(prefix.length + body.length);
  bytes.set(prefix);
  bytes.set(body, prefix.length);
  return bytes;
}

/**
 * The `X-Signature-256` value for `body` sent at `timestamp` (unix seconds).
 *
 * @example
 * const timestamp = String(Math.floor(Date.now() / 1000));
 * headers["x-signature-timestamp"] = timestamp;
 * headers["x-signature-256"] = await signWebhookBody(secret, timestamp, new TextEncoder().encode(body));
 */
export async function signWebhookBody(secret: string, timestamp: string, body: Uint8Array): Promise<string> {
  return `sha256=${await hmacSha256Hex(secret, signedBytes(timestamp, body))}`;
}

/**
 * Checks a request against the webhook's verification. Null when it passes, else why not (the 401 message).
 * `nowSeconds` is the server's clock in unix seconds.
 */
export async function verifyWebhookRequest(
  verification: WebhookVerification,
  secret: string,
  request: { header(name: string): string | undefined; body: Uint8Array },
  nowSeconds: number,
): Promise<string | null> {
  if (verification === "none") return null;
  if (verification === "secret") {
    const sent = request.header(SECRET_HEADER);
    if (!sent) return "Missing X-Webhook-Secret header";
    // Digests have one length, so the comparison reveals neither the secret's length nor a prefix of it.
    return constantTimeEqual(await sha256Hex(sent), await sha256Hex(secret))
      ? null
      : "Invalid webhook secret";
  }
  const signature = request.header(SIGNATURE_HEADER);
  const timestamp = request.header(TIMESTAMP_HEADER);
  if (!signature || !timestamp) return "Missing X-Signature-256 or X-Signature-Timestamp header";
  if (
    !/^\d{1,12}$/.test(timestamp) ||
    Math.abs(nowSeconds - Number(timestamp)) > SIGNATURE_TOLERANCE_SECONDS
  ) {
    return `Webhook signature timestamp is not within ${SIGNATURE_TOLERANCE_SECONDS} s of the server's clock`;
  }
  const expected = await signWebhookBody(secret, timestamp, request.body);
  return constantTimeEqual(signature.trim().toLowerCase(), expected) ? null : "Invalid webhook signature";
}
