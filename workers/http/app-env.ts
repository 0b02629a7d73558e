/**
 * @module The one Hono environment type: bindings from the Worker, per-request variables.
 */
import type { Env } from "../env";
import type { Services } from "../services/services";

export interface AppEnv {
  Bindings: Env;
  Variables: {
    requestId: string;
    services: Services;
  };
}
