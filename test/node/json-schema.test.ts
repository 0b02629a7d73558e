/**
 * Schemas the validator would trip on are found when saved (schemaDefect), and one saved before that check is
 * reported as a problem by validateAgainstSchema instead of throwing (a 500).
 */
import { describe, expect, it } from "vitest";
import { schemaDefect, validateAgainstSchema } from "../../workers/lib/json-schema";

const badPattern = { type: "object", properties: { a: { type: "string", pattern: "(" } } };

describe("schemaDefect", () => {
  it("finds bad patterns, pattern property names and unresolvable local refs", () => {
    expect(schemaDefect(badPattern)).toContain(
      "/properties/a: pattern '(' is not a valid regular expression",
    );
    expect(schemaDefect({ type: "object", patternProperties: { "[": {} } })).toContain("'['");
    expect(schemaDefect({ type: "object", $ref: "#/$defs/x" })).toContain("does not resolve");
    expect(schemaDefect({ type: "object", $ref: "https://example.com/s.json" })).toContain("only local refs");
  });

  it("accepts good schemas, resolvable refs, and data that only looks like keywords", () => {
    expect(
      schemaDefect({ type: "object", properties: { a: { type: "string", pattern: "^[a-z]+$" } } }),
    ).toBeNull();
    expect(
      schemaDefect({
        type: "object",
        $defs: { x: { type: "string" } },
        properties: { a: { $ref: "#/$defs/x" } },
      }),
    ).toBeNull();
    expect(
      schemaDefect({ type: "object", default: { pattern: "(" }, enum: [{ $ref: "#/nowhere" }] }),
    ).toBeNull();
  });
});

describe("validateAgainstSchema", () => {
  it("reports a schema it cannot apply as a problem instead of throwing", () => {
    expect(validateAgainstSchema(badPattern, { a: "x" })).toEqual([
      { location: "#", message: expect.stringContaining("The schema cannot be applied") },
    ]);
  });
});
