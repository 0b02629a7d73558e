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
  apiKeyId: string | null;
}
