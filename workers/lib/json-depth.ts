/**
 * @module How deeply a JSON value nests, measured without recursion. A 10 KB body can nest thousands of levels,
 * and whatever walks it recursively later fails on it: the structured clone into a Durable Object (a 500), the
 * Python runtime's json parser (a RecursionError that kills the user's warm sandbox). Inputs are refused first.
 */

/** Deepest nesting of arrays and objects a run's input may have: `{}` is 1 level, `{"a": [1]}` is 2. */
export const MAX_JSON_DEPTH = 256;

/** The 422 message for a value nested deeper than MAX_JSON_DEPTH. */
export const JSON_DEPTH_MESSAGE = `must not nest arrays and objects more than ${MAX_JSON_DEPTH} levels deep`;

/**
 * Whether `value` nests arrays and objects more than `maxDepth` levels deep. Iterative (an explicit stack),
 * so any depth is measured safely; stops at the first path found too deep.
 *
 * @example exceedsJsonDepth({ a: [[1]] }, 2) // true: the object, its array and the inner array are 3 levels
 */
export function exceedsJsonDepth(value: unknown, maxDepth = MAX_JSON_DEPTH): boolean {
  const pending: { node: unknown; depth: number }[] = [{ node: value, depth: 1 }];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const { node, depth } = next;
    if (node === null || typeof node !== "object") continue;
    if (depth > maxDepth) return true;
    for (const child of Object.values(node)) pending.push({ node: child, depth: depth + 1 });
  }
  return false;
}
