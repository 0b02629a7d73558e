/**
 * @module SQL conditions drizzle has no builder for.
 */
import { type SQL, type SQLWrapper, sql } from "drizzle-orm";

/**
 * `column = any(array(subquery))`: what `column in (subquery)` means, in the form Postgres plans as index
 * lookups of the subquery's few values when it sits under an OR beside another condition; the `in` form made
 * it scan the whole table there (functions on every webhook call, states on every chat turn).
 */
export function inArrayOf(column: SQLWrapper, subquery: SQLWrapper): SQL {
  return sql`${column} = any(array(${subquery}))`;
}
