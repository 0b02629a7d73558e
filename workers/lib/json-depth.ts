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
 * Whether `value` nests arrays and objects more than `maxDepth` levels deep. Iterative (an explicit stack of
 * containers only: scalars are never pushed, so a large flat array costs one pass), so any depth is measured
 * safely; stops at the first container found too deep. It runs on every webhook body and run input.
 *
 * @example exceedsJsonDepth({ a: [[1]] }, 2) // true: the object, its array and the inner array are 3 levels
 */
export function exceedsJsonDepth(value: unknown, maxDepth = MAX_JSON_DEPTH): boolean {
  if (value === null || typeof value !== "object") return false;
  const nodes: object[] = [value];
  const depths: number[] = [1];
  while (nodes.length > 0) {
    const node = nodes.pop() as object;
    const depth = depths.pop() as number;
    if (depth > maxDepth) return true;
    if (Array.isArray(node)) {
      for (let index = 0; index < node.length; index++) {
        const child: unknown = node[index];
        if (child !== null && typeof child === "object") {
          nodes.push(child);
          depths.push(depth + 1);
        }
      }
      continue;
    }
    for (const key in node) {
      const child: unknown = (node as Record<string, unknown>)[key];
      if (child !== null && typeof child === "object") {
        nodes.push(child);
        depths.push(depth + 1);
      }
    }
  }
  return false;
}
