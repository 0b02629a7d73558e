/**
 * @module Who is calling: the authenticated user with the permissions that apply to this request.
 */
import type { PermissionMap, User } from "../db/schema";

export interface Principal {
  user: User;
  /** Group grants for a JWT; the key's own set for an API key (sinas-spec §3.4). */
  permissions: PermissionMap;
  /** The user's active group memberships, for `:group` scope checks (D-3). */
  groupIds: string[];
  method: "jwt" | "api_key";
  /** The key of an API-key caller (work it starts carries it on); null for a JWT. */
  apiKeyId: string | null;
}

/**
 * The API key a request came with, as work started by it carries it on (a chat turn's tools, a function run's
 * context token): that work acts within the key's own permissions (sinas-spec §3.4), never as the user's login.
 */
export interface ApiKeyCredential {
  id: string;
  permissions: PermissionMap;
}

/**
 * The API key an owner's trigger (a webhook without auth, a schedule) is saved with: the editing owner's key,
 * or null for their login; another editor (an admin) leaves `current` as it was.
 */
export function triggerApiKeyId(
  principal: Principal,
  ownerId: string,
  current: string | null,
): string | null {
  if (principal.user.id !== ownerId) return current;
  return principal.apiKeyId;
}

/** The principal's API key, or undefined for a JWT caller. */
export function apiKeyCredentialOf(principal: Principal): ApiKeyCredential | undefined {
  if (principal.method !== "api_key" || !principal.apiKeyId) return undefined;
  return { id: principal.apiKeyId, permissions: principal.permissions };
}
