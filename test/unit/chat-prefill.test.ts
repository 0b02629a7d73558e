/**
 * Function-parameter prefill (sinas-spec §5.5.3, D-24): locked values rendered from the chat input must fit the
 * function's input schema, since the model cannot override them. A sole `{{ expression }}` keeps its value,
 * templates are rendered at any depth, and text becomes the number or boolean the schema declares.
 */
import { describe, expect, it } from "vitest";
import { prefillFor, renderPrefill } from "../../workers/chat/prefill";
import { MAX_RANGE_ITEMS } from "../../workers/lib/jinja";

const INPUT = {
  offset: 5,
  ratio: 0.5,
  flag: true,
  items: [1, { label: "a" }],
  filter: { city: "London" },
  nothing: null,
  n: 5,
  home_city: "London",
};

describe("function-parameter prefill", () => {
  it("keeps the value of a template that is one expression, and renders other templates as text", () => {
    expect(
      renderPrefill(
        {
          offset: "{{ offset }}",
          ratio: "{{ratio}}",
          trimmed: "{{- offset -}}",
          flag: "{{ flag }}",
          test: "{{ offset > 3 }}",
          items: "{{ items }}",
          filter: "{{ filter }}",
          made: "{{ [offset, home_city] }}",
          sum: "{{ offset + 1 }}",
          city: "{{ home_city }}",
          braces: '{{ "}}" }}',
          nothing: "{{ nothing }}",
          // Undefined renders empty, as it does in text.
          missing: "{{ missing }}",
          id: "id-{{ n }}",
          spaced: " {{ n }}",
          twice: "{{ n }}{{ n }}",
          plain: "metric",
        },
        INPUT,
      ),
    ).toEqual({
      offset: 5,
      ratio: 0.5,
      trimmed: 5,
      flag: true,
      test: true,
      items: [1, { label: "a" }],
      filter: { city: "London" },
      made: [5, "London"],
      sum: 6,
      city: "London",
      braces: "}}",
      nothing: null,
      missing: "",
      id: "id-5",
      spaced: " 5",
      twice: "55",
      plain: "metric",
    });
    // The value is rendered as any template is: within the render bounds and the `namespace` rule.
    expect(() => renderPrefill({ b: `{{ range(${MAX_RANGE_ITEMS + 1}) }}` }, INPUT)).toThrow("range()");
    expect(() => renderPrefill({ b: "{{ namespace }}" }, { namespace: 1 })).toThrow("reserved");
    expect(() => prefillFor({ "a/b": { b: "{{ offset | upper }}" } }, "a/b", INPUT)).toThrow(
      "function_parameters for 'a/b'",
    );
  });

  it("renders templates at any depth of lists and objects", () => {
    expect(
      renderPrefill(
        {
          filters: [{ city: "{{ home_city }}", radius: "{{ offset }}" }, "{{ flag }}", 7],
          nested: { rows: [[{ label: "in {{ home_city }}" }]], deeper: { count: "{{ n }}" } },
        },
        INPUT,
      ),
    ).toEqual({
      filters: [{ city: "London", radius: 5 }, true, 7],
      nested: { rows: [[{ label: "in London" }]], deeper: { count: 5 } },
    });
    expect(
      prefillFor({ "default/search": { filters: [{ city: "{{ home_city }}" }] } }, "default/search", INPUT),
    ).toEqual({ filters: [{ city: "London" }] });
  });

  it("turns text into the number or boolean the function's schema declares, when it reads as one", () => {
    const schema = {
      type: "object",
      properties: {
        a: { type: "integer" },
        b: { type: "integer" },
        c: { type: "number" },
        d: { type: "boolean" },
        e: { type: "boolean" },
        text: { type: "string" },
        loose: { type: "integer" },
        fraction: { type: "integer" },
        huge: { type: "number" },
        either: { type: ["integer", "string"] },
        list: { type: "array", items: { type: "integer" } },
        object: { type: "object", properties: { limit: { type: "integer" } } },
      },
    };
    const parameters = {
      a: "{{ offset }}{{ n }}",
      b: " {{ offset }} ",
      c: "{{ ratio }}{{ n }}",
      d: "{% if flag %}true{% else %}false{% endif %}",
      e: "{{ 'False' }}",
      text: "{{ offset }}{{ n }}",
      loose: "{{ offset }} items",
      fraction: "{{ ratio }}",
      huge: "1e999",
      either: "{{ offset }}{{ n }}",
      list: ["{{ offset }}{{ n }}", "x{{ n }}"],
      object: { limit: "{{ n }}0" },
      undeclared: "{{ offset }}{{ n }}",
    };
    const expected = {
      a: 55,
      b: 5,
      c: 0.55,
      d: true,
      e: false,
      text: "55",
      loose: "5 items",
      fraction: 0.5,
      huge: "1e999",
      either: "55",
      list: [55, "x5"],
      object: { limit: 50 },
      undeclared: "55",
    };
    expect(renderPrefill(parameters, INPUT, schema)).toEqual(expected);
    expect(prefillFor({ "default/add": parameters }, "default/add", INPUT, schema)).toEqual(expected);
    // Without an input the values stay as written, fitted to the schema all the same.
    expect(
      prefillFor({ "default/add": { a: "5", b: "{{ offset }}", d: "true" } }, "default/add", null, schema),
    ).toEqual({ a: 5, b: "{{ offset }}", d: true });
  });

  it('gives a string parameter its text, whatever the expression\'s value (42 is "42")', () => {
    const text = { type: "string" };
    const schema = {
      type: "object",
      properties: {
        id: text,
        flag: text,
        list: text,
        none: text,
        count: text,
        either: { type: ["integer", "string"] },
      },
    };
    const parameters = {
      id: "{{ offset }}",
      flag: "{{ flag }}",
      list: "{{ items | length }}",
      none: "{{ nothing }}",
      count: "{{ home_city }}",
      either: "{{ offset }}",
    };
    expect(renderPrefill(parameters, INPUT, schema)).toEqual({
      id: "5",
      flag: "true",
      list: "2",
      none: "",
      count: "London",
      either: 5,
    });
  });
});
