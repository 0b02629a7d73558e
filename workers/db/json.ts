/**
 * @module Reading a `json` value a query builds with SQL (`json_agg`, ...): the driver parses `json` columns, but
 * a value may still arrive as text (raw-text query paths), so both are accepted.
 */
export function jsonColumn<T>(value: unknown): T {
  return (typeof value === "string" ? JSON.parse(value) : value) as T;
}
