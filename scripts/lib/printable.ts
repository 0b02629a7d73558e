/**
 * @module What the launcher prints: errors with their causes, URLs without their passwords.
 */

/**
 * An error's message and its causes'. A failed query's message (drizzle) names only the query; why it failed
 * (no such database, connection refused, bad password) is in its cause, which need not be an Error (the
 * driver's WebSocket gives an ErrorEvent with a message).
 */
export function describeError(error: unknown): string {
  const messages: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    const message =
      typeof current === "object" && typeof (current as { message?: unknown }).message === "string"
        ? (current as { message: string }).message
        : String(current);
    if (message && !messages.includes(message)) messages.push(message);
    current = typeof current === "object" ? (current as { cause?: unknown }).cause : undefined;
  }
  return messages.join(": ");
}

/** A URL as it may be printed: its password (REDIS_URL's `redis://user:password@host`) blanked. */
export function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(unparsable URL)";
  }
}
