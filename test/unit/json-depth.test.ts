import { describe, expect, it } from "vitest";
import { exceedsJsonDepth, MAX_JSON_DEPTH } from "../../workers/lib/json-depth";

/** `depth` levels of arrays, parsed: `[[...]]`. */
const nested = (depth: number): unknown => JSON.parse(`${"[".repeat(depth)}${"]".repeat(depth)}`);

describe("exceedsJsonDepth", () => {
  it("counts each array or object as a level; scalars add none", () => {
    expect(exceedsJsonDepth("text", 0)).toBe(false);
    expect(exceedsJsonDepth(null, 0)).toBe(false);
    expect(exceedsJsonDepth({}, 1)).toBe(false);
    expect(exceedsJsonDepth({}, 0)).toBe(true);
    expect(exceedsJsonDepth({ a: [1, "x", null] }, 2)).toBe(false);
    expect(exceedsJsonDepth({ a: [1, { b: true }] }, 2)).toBe(true);
    // The deepest branch counts, wherever it is.
    expect(exceedsJsonDepth([1, [], { a: {}, b: { c: [[]] } }], 4)).toBe(true);
    expect(exceedsJsonDepth([1, [], { a: {}, b: { c: [[]] } }], 5)).toBe(false);
  });

  it("allows MAX_JSON_DEPTH levels, not one more", () => {
    expect(exceedsJsonDepth(nested(MAX_JSON_DEPTH))).toBe(false);
    expect(exceedsJsonDepth(nested(MAX_JSON_DEPTH + 1))).toBe(true);
  });

  it("measures a value far deeper than recursion could walk", () => {
    const deep = nested(200_000);
    expect(exceedsJsonDepth(deep)).toBe(true);
    expect(exceedsJsonDepth(deep, 200_000)).toBe(false);
  });
});
