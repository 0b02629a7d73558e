/**
 * @module The one Hono environment type: bindings from the Worker, per-request variables.
 */
import type { Principal } from "../auth/principal";
import type { Env } from "../env";
import type { Services } from "../services/services";

export interface AppEnv {
  Bindings: Env;
  Variables: {
    requestId: string;
    services: Services;
    /** Set by the `authenticate` middleware on routes that need a caller. */
    principal: Principal | undefined;
    /** Set instead of `principal` by `authenticateSender` on a verified token (the service checks the user). */
    sender: { userId: string; email: string; expiresAt: number } | undefined;
    /** The permission string the handler checked, for the request log (sinas-spec §10.5). */
    permissionUsed: { permission: string; granted: boolean } | undefined;
  };
}
