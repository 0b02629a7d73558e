/**
 * @module The permission engine (sinas-spec §3.1-3.3): pure functions over permission strings.
 *
 * A permission is `segment(.segment)*:scope`. Patterns may use `*` for one segment, a trailing `*` for any
 * number of trailing segments, and `*` as scope. Scopes nest: `all` grants `group` grants `own`. There are
 * no deny rules: a `false` entry never removes a grant.
 */
import type { PermissionMap } from "../db/schema";

export const SCOPES = ["own", "group", "all"] as const;
export type Scope = (typeof SCOPES)[number];

const SCOPES_GRANTED: Record<string, readonly string[]> = {
  all: ["all", "group", "own"],
  "*": ["all", "group", "own"],
  group: ["group", "own"],
  own: ["own"],
};

function splitScope(permission: string): [string, string] | null {
  const colon = permission.lastIndexOf(":");
  if (colon < 0) return null;
  return [permission.slice(0, colon), permission.slice(colon + 1)];
}

/** Does `pattern` (which may hold wildcards) grant the concrete permission `concrete`? (§3.2) */
export function matchesPermissionPattern(pattern: string, concrete: string): boolean {
  const patternParts = splitScope(pattern);
  const concreteParts = splitScope(concrete);
  if (!patternParts || !concreteParts) return false;
  const [patternPath, patternScope] = patternParts;
  const [concretePath, concreteScope] = concreteParts;
  // Own keys only: a scope named like an Object property (`constructor`) must not find the prototype's.
  const allowed = Object.hasOwn(SCOPES_GRANTED, patternScope)
    ? (SCOPES_GRANTED[patternScope] as readonly string[])
    : [patternScope];
  if (!allowed.includes(concreteScope)) return false;

  const patternSegments = patternPath.split(".");
  const concreteSegments = concretePath.split(".");
  if (patternSegments.at(-1) === "*") {
    const prefix = patternSegments.slice(0, -1);
    if (concreteSegments.length < prefix.length) return false;
    return prefix.every((segment, index) => segment === "*" || segment === concreteSegments[index]);
  }
  if (patternSegments.length !== concreteSegments.length) return false;
  return patternSegments.every((segment, index) => segment === "*" || segment === concreteSegments[index]);
}

/** Does the permission set grant `required`? Exact key first, then any true pattern (§3.3). */
export function checkPermission(permissions: PermissionMap, required: string): boolean {
  if (permissions[required] === true) return true;
  for (const [pattern, granted] of Object.entries(permissions)) {
    if (granted === true && matchesPermissionPattern(pattern, required)) return true;
  }
  return false;
}

/** Every true key of `subset` must be granted by `superset` (API-key creation, D-12). */
export function validatePermissionSubset(
  subset: PermissionMap,
  superset: PermissionMap,
): { ok: boolean; violations: string[] } {
  const violations = Object.entries(subset)
    .filter(([key, granted]) => granted === true && !checkPermission(superset, key))
    .map(([key]) => key);
  return { ok: violations.length === 0, violations };
}

/** Union of group grants: for the same key across groups, true wins (§3.4). */
export function mergeGrants(grants: Iterable<{ key: string; value: boolean }>): PermissionMap {
  const merged: PermissionMap = {};
  for (const { key, value } of grants) merged[key] = merged[key] === true || value;
  return merged;
}
