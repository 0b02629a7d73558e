/**
 * @module Small WebCrypto helpers: hashes, random tokens, HMAC, and AES-256-GCM for secrets at rest.
 */
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function toHex(bytes: ArrayBuffer): string {
  return [...new Uint8Array(bytes)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export function toBase64Url(bytes: Uint8Array): string {
  return toBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const normalized = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(normalized + "=".repeat((4 - (normalized.length % 4)) % 4));
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

export async function sha256Hex(text: string): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/** HMAC-SHA256 of `message` (text as UTF-8, or raw bytes such as a request body) as lower-case hex. */
export async function hmacSha256Hex(key: string, message: string | Uint8Array): Promise<string> {
  const cryptoKey = await crypto.subtle.importKey(
    "raw",
    encoder.encode(key),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  // A copy into a plain ArrayBuffer: WebCrypto's types refuse views of a SharedArrayBuffer.
  const bytes = typeof message === "string" ? encoder.encode(message) : new Uint8Array(message);
  return toHex(await crypto.subtle.sign("HMAC", cryptoKey, bytes));
}

/** `byteLength` random bytes as URL-safe base64 without padding (32 bytes give 43 characters). */
export function randomToken(byteLength = 32): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(byteLength)));
}

/** A uniformly random string of `length` decimal digits (leading zeros kept). */
export function randomDigits(length: number): string {
  let digits = "";
  while (digits.length < length) {
    // Rejection sampling over 0..249 keeps every digit equally likely.
    for (const byte of crypto.getRandomValues(new Uint8Array(length * 2))) {
      if (byte < 250 && digits.length < length) digits += String(byte % 10);
    }
  }
  return digits;
}

/** Compares two strings in time independent of where they differ. */
export function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let index = 0; index < a.length; index++) difference |= a.charCodeAt(index) ^ b.charCodeAt(index);
  return difference === 0;
}

const CIPHERTEXT_VERSION = "v1";

async function importAesKey(keyBase64: string): Promise<CryptoKey> {
  const raw = fromBase64(keyBase64);
  if (raw.length !== 32) throw new Error("ENCRYPTION_KEY must be 32 bytes, base64-encoded");
  return crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

/** AES-256-GCM with a random 96-bit IV: `v1.<iv>.<ciphertext+tag>` in base64url. */
export async function encryptText(plaintext: string, keyBase64: string): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const key = await importAesKey(keyBase64);
  const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, encoder.encode(plaintext));
  return `${CIPHERTEXT_VERSION}.${toBase64Url(iv)}.${toBase64Url(new Uint8Array(sealed))}`;
}

export async function decryptText(ciphertext: string, keyBase64: string): Promise<string> {
  const [version, iv, sealed] = ciphertext.split(".");
  if (version !== CIPHERTEXT_VERSION || !iv || !sealed) throw new Error("unknown ciphertext format");
  const key = await importAesKey(keyBase64);
  const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: fromBase64(iv) }, key, fromBase64(sealed));
  return decoder.decode(plain);
}
