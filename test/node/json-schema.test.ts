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

  it("finds keyword values of the wrong shape where a schema sits, not in maps of names", () => {
    expect(schemaDefect({ type: "object", dependentRequired: { a: 5 } })).toContain("'dependentRequired'");
    expect(schemaDefect({ type: -1 })).toContain("'type' must be a JSON type name");
    expect(schemaDefect({ type: "object", properties: { a: { type: "string", minLength: -1 } } })).toContain(
      "/properties/a: 'minLength' must be a whole number",
    );
    expect(schemaDefect({ type: "array", items: [{ type: "strin" }] })).toContain("/items/0: 'type'");
    expect(schemaDefect({ type: "object", allOf: { type: "object" } })).toContain("/allOf: must be a list");
    expect(schemaDefect({ type: "object", required: "a" })).toContain("'required' must be a list");
    // Property names that are keyword names are names: their schemas are what is checked.
    expect(
      schemaDefect({
        type: "object",
        properties: { type: { type: "string" }, required: { type: "boolean" }, enum: { type: "array" } },
        required: ["type"],
        dependentRequired: { type: ["enum"] },
      }),
    ).toBeNull();
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
