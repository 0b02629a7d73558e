import { describe, expect, it } from "vitest";
import {
  checkPermission,
  matchesPermissionPattern,
  mergeGrants,
  validatePermissionSubset,
} from "../../workers/auth/permissions";
import type { PermissionMap } from "../../workers/db/schema";

// The permission engine against sinas-spec §3: every worked example of §3.8, then a few edge cases.

/** Expands one `{a,b,c}` group, the shorthand §3.5 uses: `x.{get,put}:own` -> `x.get:own`, `x.put:own`. */
function expand(spec: string): string[] {
  const match = spec.match(/^(.*)\{([^}]+)\}(.*)$/);
  if (!match) return [spec];
  const [, head = "", alternatives = "", tail = ""] = match;
  return alternatives.split(",").map((alternative) => `${head}${alternative}${tail}`);
}

/** A permission map granting every (expanded) key, then the listed overrides. */
function grants(keys: string[], overrides: PermissionMap = {}): PermissionMap {
  const map: PermissionMap = {};
  for (const key of keys.flatMap(expand)) map[key] = true;
  return { ...map, ...overrides };
}

// §3.5 `Users`, without the D-2 additions (the reference's defaults). All true unless noted.
const USERS_DEFAULTS = grants(
  [
    "sinas.chats.{post,get,put,delete}:own",
    "sinas.chats.get:group",
    "sinas.messages.{post,get}:own",
    "sinas.messages.get:group",
    "sinas.agents.*.{post,get,put,delete}:own",
    "sinas.functions.*.{post,get,put,delete,execute}:own",
    "sinas.webhooks.{post,get,put,delete}:own",
    "sinas.schedules.{post,get,put,delete}:own",
    "sinas.executions.get:own",
    "sinas.packages.{post,get,delete}:own",
    "sinas.users.{get,put}:own",
    "sinas.api_keys.{post,get,delete}:own",
    "sinas.states.{post,get,put,delete,search}:own",
    "sinas.states.get:group",
    "sinas.templates.*.*.{post,get,put,delete,render,send}:own",
    "sinas.templates.default.*.{render,send}:group",
    "sinas.logs.get:own",
  ],
  { "sinas.users.post:all": false },
);

// SINAS Edge adopts D-2: Users also get the 5-segment runtime strings.
const USERS_DEFAULTS_D2: PermissionMap = {
  ...USERS_DEFAULTS,
  "sinas.functions.*.*.execute:own": true,
  "sinas.agents.*.*.read:own": true,
};

// §3.5 `GuestUsers`.
const GUEST_USERS_DEFAULTS: PermissionMap = {
  "sinas.*:own": false,
  "sinas.users.get:own": true,
  "sinas.users.put:own": true,
};

describe("default group permission sets (§3.5)", () => {
  it("builds the Users map from the spec text", () => {
    expect(Object.keys(USERS_DEFAULTS)).toHaveLength(50);
    expect(USERS_DEFAULTS["sinas.templates.default.*.send:group"]).toBe(true);
    expect(USERS_DEFAULTS["sinas.users.post:all"]).toBe(false);
    expect(Object.entries(USERS_DEFAULTS).filter(([, granted]) => !granted)).toEqual([
      ["sinas.users.post:all", false],
    ]);
  });
});

type CheckRow = [number, string, PermissionMap, string, boolean];

const SET_NAMES = new Map<PermissionMap, string>([
  [USERS_DEFAULTS, "Users defaults"],
  [USERS_DEFAULTS_D2, "Users defaults + D-2"],
  [GUEST_USERS_DEFAULTS, "GuestUsers defaults"],
]);

/** Adds a short name for the permission set, so test names stay readable. */
function named(rows: CheckRow[]) {
  return rows.map(([number, why, permissions, requested, expected]) => {
    const name = SET_NAMES.get(permissions) ?? JSON.stringify(permissions);
    return [number, why, name, requested, expected, permissions] as const;
  });
}

describe("checkPermission: worked examples §3.8", () => {
  const rows: CheckRow[] = [
    [1, "exact", { "sinas.users.post:all": true }, "sinas.users.post:all", true],
    [2, "trailing wildcard + all grants own", { "sinas.*:all": true }, "sinas.users.post:own", true],
    [3, "trailing wildcard + all grants group", { "sinas.*:all": true }, "sinas.chats.get:group", true],
    [4, "trailing * matches zero segments", { "sinas.*:all": true }, "sinas:all", true],
    [5, "prefix differs", { "sinas.*:all": true }, "custom.x.get:own", false],
    [
      6,
      "middle * = one segment",
      { "sinas.functions.*.execute:own": true },
      "sinas.functions.analytics.execute:own",
      true,
    ],
    [
      7,
      "length differs",
      { "sinas.functions.*.execute:own": true },
      "sinas.functions.analytics.run_report.execute:own",
      false,
    ],
    [
      8,
      "trailing *",
      { "sinas.functions.*:own": true },
      "sinas.functions.analytics.run_report.execute:own",
      true,
    ],
    [
      9,
      "two middle wildcards",
      { "sinas.functions.*.*.execute:own": true },
      "sinas.functions.analytics.run_report.execute:own",
      true,
    ],
    [10, "custom prefix", { "custom.*.get:own": true }, "custom.content.get:own", true],
    [11, "action mismatch", { "custom.*.get:own": true }, "custom.content.post:own", false],
    [12, "all grants own", { "sinas.chats.get:all": true }, "sinas.chats.get:own", true],
    [13, "group grants own", { "sinas.chats.get:group": true }, "sinas.chats.get:own", true],
    [14, "no elevation", { "sinas.chats.get:group": true }, "sinas.chats.get:all", false],
    [15, "own does not grant group", { "sinas.chats.get:own": true }, "sinas.chats.get:group", false],
    [16, "* scope", { "sinas.chats.get:*": true }, "sinas.chats.get:all", true],
    [17, "false ignored", { "sinas.chats.get:own": false }, "sinas.chats.get:own", false],
    [
      18,
      "no deny rules (GuestUsers)",
      { "sinas.*:own": false, "sinas.users.get:own": true },
      "sinas.users.get:own",
      true,
    ],
    [19, "a false pattern grants nothing", { "sinas.*:own": false }, "sinas.chats.get:own", false],
    [
      20,
      "* matches literal *",
      { "sinas.templates.*.*.post:own": true },
      "sinas.templates.default.*.post:own",
      true,
    ],
    [
      21,
      "action and length differ",
      { "sinas.agents.*.get:own": true },
      "sinas.agents.default.bot.read:own",
      false,
    ],
    [22, "middle * matches the resource", { "sinas.*.get:own": true }, "sinas.users.get:own", true],
    [23, "middle * = one segment", { "sinas.*.get:own": true }, "sinas.functions.ns.get:own", false],
    [24, "scope", { "sinas.*:group": true }, "sinas.states.get:all", false],
    [25, "pattern without : never matches", { "sinas.*": true }, "sinas.x:all", false],
    [26, "exact-key shortcut", { "sinas.users.get": true }, "sinas.users.get", true],
    [27, "namespace-level post", USERS_DEFAULTS, "sinas.functions.default.post:own", true],
    [
      28,
      "without D-2, 4-segment execute pattern misses 5-segment check",
      USERS_DEFAULTS,
      "sinas.functions.default.hello.execute:own",
      false,
    ],
    [
      29,
      "without D-2, agents hold get, chat checks read",
      USERS_DEFAULTS,
      "sinas.agents.default.bot.read:own",
      false,
    ],
    [30, "states vs contexts", USERS_DEFAULTS, "sinas.contexts.post:own", false],
    [31, "default namespace render:group", USERS_DEFAULTS, "sinas.templates.default.x.render:group", true],
    [32, "other namespace only :own", USERS_DEFAULTS, "sinas.templates.other.x.render:group", false],
    [33, "shared pool", USERS_DEFAULTS, "sinas.functions.shared_pool:all", false],
    [33, "users get all", USERS_DEFAULTS, "sinas.users.get:all", false],
    [33, "create groups", USERS_DEFAULTS, "sinas.groups.post:own", false],
    [33, "config apply", USERS_DEFAULTS, "sinas.config.apply:all", false],
    [34, "own profile", GUEST_USERS_DEFAULTS, "sinas.users.get:own", true],
    [34, "sinas.*:own is false", GUEST_USERS_DEFAULTS, "sinas.chats.post:own", false],
  ];

  it.each(named(rows))(
    "#%i %s: %s grants %s -> %s",
    (_number, _why, _name, requested, expected, permissions) => {
      expect(checkPermission(permissions, requested)).toBe(expected);
    },
  );
});

describe("checkPermission: Users defaults with D-2 (SINAS Edge)", () => {
  const rows: CheckRow[] = [
    [
      28,
      "D-2 adds sinas.functions.*.*.execute:own",
      USERS_DEFAULTS_D2,
      "sinas.functions.default.hello.execute:own",
      true,
    ],
    [29, "D-2 adds sinas.agents.*.*.read:own", USERS_DEFAULTS_D2, "sinas.agents.default.bot.read:own", true],
  ];

  it.each(named(rows))(
    "#%i %s: %s grants %s -> %s",
    (_number, _why, _name, requested, expected, permissions) => {
      expect(checkPermission(permissions, requested)).toBe(expected);
    },
  );

  it("D-2 grants only :own, not group or all", () => {
    expect(checkPermission(USERS_DEFAULTS_D2, "sinas.functions.default.hello.execute:group")).toBe(false);
    expect(checkPermission(USERS_DEFAULTS_D2, "sinas.agents.default.bot.read:all")).toBe(false);
  });

  it("treats a scope named like an Object property as an unknown scope, not a crash", () => {
    const odd: PermissionMap = { "sinas.x.y:constructor": true, "sinas.x.z:toString": true };
    expect(checkPermission(odd, "sinas.x.y:own")).toBe(false);
    expect(checkPermission(odd, "sinas.x.y:constructor")).toBe(true);
  });
});

type SubsetRow = [number, string, PermissionMap, PermissionMap, { ok: boolean; violations: string[] }];

describe("validatePermissionSubset: worked examples §3.8", () => {
  const rows: SubsetRow[] = [
    [
      35,
      "superset wildcard covers the key",
      { "sinas.users.get:own": true },
      { "sinas.*:all": true },
      { ok: true, violations: [] },
    ],
    [
      36,
      "no scope elevation",
      { "sinas.users.post:all": true },
      { "sinas.users.post:own": true },
      { ok: false, violations: ["sinas.users.post:all"] },
    ],
    [
      37,
      "custom prefix with middle wildcard",
      { "titan.content.get:own": true, "titan.analytics.get:own": true },
      { "titan.*.get:own": true },
      { ok: true, violations: [] },
    ],
  ];

  it.each(rows)("#%i %s: %j within %j", (_number, _why, subset, superset, expected) => {
    expect(validatePermissionSubset(subset, superset)).toEqual(expected);
  });

  it("ignores false keys in the subset", () => {
    expect(validatePermissionSubset({ "sinas.*:all": false }, {})).toEqual({ ok: true, violations: [] });
  });

  it("lists every violation", () => {
    const subset = { "sinas.users.get:own": true, "sinas.a:all": true, "sinas.b:own": true };
    expect(validatePermissionSubset(subset, { "sinas.users.*:own": true })).toEqual({
      ok: false,
      violations: ["sinas.a:all", "sinas.b:own"],
    });
  });
});

describe("matchesPermissionPattern: edge cases", () => {
  it("scope * in the pattern grants every scope", () => {
    for (const scope of ["own", "group", "all"]) {
      expect(matchesPermissionPattern("sinas.chats.get:*", `sinas.chats.get:${scope}`)).toBe(true);
    }
    expect(matchesPermissionPattern("sinas.*:*", "sinas.users.post:all")).toBe(true);
  });

  it("any other pattern scope grants only itself", () => {
    expect(matchesPermissionPattern("sinas.x:custom", "sinas.x:custom")).toBe(true);
    expect(matchesPermissionPattern("sinas.x:custom", "sinas.x:own")).toBe(false);
    expect(matchesPermissionPattern("sinas.x:all", "sinas.x:custom")).toBe(false);
  });

  it("a concrete permission without ':' never matches a pattern", () => {
    expect(matchesPermissionPattern("sinas.*:all", "sinas.users.get")).toBe(false);
    expect(matchesPermissionPattern("sinas.users.get:all", "sinas.users.get")).toBe(false);
    expect(checkPermission({ "sinas.*:all": true }, "sinas.users.get")).toBe(false);
  });

  it("a scope-less string is granted only by the exact key (#26)", () => {
    expect(checkPermission({ "sinas.users.get": true }, "sinas.users.get")).toBe(true);
    expect(checkPermission({ "sinas.users.get": false }, "sinas.users.get")).toBe(false);
    expect(checkPermission({ "sinas.users.*": true }, "sinas.users.get")).toBe(false);
    expect(matchesPermissionPattern("sinas.users.get", "sinas.users.get")).toBe(false);
  });

  it("a trailing * matches zero or more trailing segments (#4)", () => {
    expect(matchesPermissionPattern("sinas.*:all", "sinas:all")).toBe(true);
    expect(matchesPermissionPattern("sinas.users.*:all", "sinas.users:own")).toBe(true);
    expect(matchesPermissionPattern("sinas.users.*:all", "sinas.users.get.extra.deep:own")).toBe(true);
    expect(matchesPermissionPattern("sinas.users.*:all", "sinas:all")).toBe(false);
  });

  it("a middle * matches exactly one segment, including a literal * (#20)", () => {
    expect(matchesPermissionPattern("sinas.templates.*.*.post:own", "sinas.templates.*.*.post:own")).toBe(
      true,
    );
    expect(matchesPermissionPattern("sinas.templates.*.x.post:own", "sinas.templates.ns.*.post:own")).toBe(
      false,
    );
    expect(matchesPermissionPattern("sinas.*.get:own", "sinas.get:own")).toBe(false);
  });

  it("splits on the last ':'", () => {
    expect(matchesPermissionPattern("webhook.public:a/b:all", "webhook.public:a/b:own")).toBe(true);
    expect(matchesPermissionPattern("webhook.public:*", "webhook.public:a/b:own")).toBe(false);
  });
});

describe("mergeGrants (§3.4)", () => {
  it("true wins across groups, whatever the order", () => {
    expect(
      mergeGrants([
        { key: "sinas.chats.get:own", value: false },
        { key: "sinas.chats.get:own", value: true },
        { key: "sinas.users.get:own", value: true },
        { key: "sinas.users.get:own", value: false },
      ]),
    ).toEqual({ "sinas.chats.get:own": true, "sinas.users.get:own": true });
  });

  it("keeps false only when no group says true", () => {
    expect(
      mergeGrants([
        { key: "sinas.*:own", value: false },
        { key: "sinas.*:own", value: false },
        { key: "sinas.users.get:own", value: true },
      ]),
    ).toEqual({ "sinas.*:own": false, "sinas.users.get:own": true });
  });

  it("merges nothing into an empty map", () => {
    expect(mergeGrants([])).toEqual({});
  });

  it("GuestUsers + Users: the false sinas.*:own stays and denies nothing Users grants", () => {
    const toGrants = (map: PermissionMap) => Object.entries(map).map(([key, value]) => ({ key, value }));
    const merged = mergeGrants([...toGrants(GUEST_USERS_DEFAULTS), ...toGrants(USERS_DEFAULTS)]);
    expect(merged["sinas.*:own"]).toBe(false);
    expect(checkPermission(merged, "sinas.chats.post:own")).toBe(true);
  });
});
