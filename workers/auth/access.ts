/**
 * @module The one place that decides access. Pure functions over a Principal; routers and services call
 * them and never compare scopes by hand.
 */
import { AppError } from "../lib/errors";
import type { ScopedPermission } from "./catalogue";
import { checkPermission, type Scope } from "./permissions";
import type { Principal } from "./principal";

export function can(principal: Principal, permission: string): boolean {
  return checkPermission(principal.permissions, permission);
}

/** Throws 403 with `message` unless the principal holds `permission`. */
export function authorize(principal: Principal, permission: string, message: string): void {
  if (!can(principal, permission)) throw new AppError("FORBIDDEN", message);
}

export interface OwnedResource {
  userId: string | null;
  groupId: string | null;
}

export function isGroupMember(principal: Principal, groupId: string | null): boolean {
  return groupId !== null && principal.groupIds.includes(groupId);
}

/**
 * The widest scope under which the principal may act on `resource` (sinas-spec §3.6 with D-3, D-5):
 * `all` needs the `:all` grant; `group` needs the `:group` grant and active membership of the resource's
 * group; `own` needs the `:own` grant and ownership. Null when none applies.
 */
export function accessScope(
  principal: Principal,
  permission: ScopedPermission,
  resource: OwnedResource,
): Scope | null {
  if (can(principal, permission("all"))) return "all";
  if (isGroupMember(principal, resource.groupId) && can(principal, permission("group"))) return "group";
  if (resource.userId === principal.user.id && can(principal, permission("own"))) return "own";
  return null;
}
