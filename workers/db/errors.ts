/**
 * @module Reads Postgres error codes through drizzle's wrapper, so services need not know driver details.
 */

function postgresCode(error: unknown): string | undefined {
  let current: unknown = error;
  // drizzle wraps the driver error in DrizzleQueryError (`cause`); walk a few levels.
  for (let depth = 0; depth < 4 && current; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** 23505: a unique index refused the row. */
export function isUniqueViolation(error: unknown): boolean {
  return postgresCode(error) === "23505";
}

/** 23503: a foreign key refused the change. */
export function isForeignKeyViolation(error: unknown): boolean {
  return postgresCode(error) === "23503";
}

/**
 * 22021 / 22P05: a NUL character, which Postgres text (22021) and jsonb (22P05) cannot hold, in a value the
 * request carried: the caller's input, not a server failure.
 */
export function isNulCharacterError(error: unknown): boolean {
  const code = postgresCode(error);
  return code === "22021" || code === "22P05";
}

/**
 * Class 22 (data exception) or 23 (integrity constraint): the statement's values were refused, not the
 * connection or the server; the same rows sent again fail again.
 */
export function isDataError(error: unknown): boolean {
  const code = postgresCode(error);
  return code !== undefined && (code.startsWith("22") || code.startsWith("23"));
}

/** 23502: a NOT NULL column got null. */
export function isNotNullViolation(error: unknown): boolean {
  return postgresCode(error) === "23502";
}
