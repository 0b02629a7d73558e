/**
 * @module The access token a function run gets in its context (sinas-spec §6.5), to call the API as its user.
 * A run started with an API key gets a token naming that key: it acts within the key's permissions while the
 * key is active (services/authentication.ts), so a key cannot turn into its user's full login by running code.
 */
import { signAccessToken } from "../auth/tokens";
import type { User } from "../db/schema";
import { requireSecret } from "../env";
import type { Services } from "./services";

/** The context token is always short-lived, whatever ACCESS_TOKEN_EXPIRE_MINUTES says (sinas-spec §6.5). */
const CONTEXT_TOKEN_SECONDS = 15 * 60;

export async function contextToken(
  services: Services,
  user: Pick<User, "id" | "email">,
  apiKeyId: string | null,
): Promise<string> {
  return signAccessToken(
    apiKeyId ? { sub: user.id, email: user.email, apiKeyId } : { sub: user.id, email: user.email },
    requireSecret(services.config, "SECRET_KEY"),
    CONTEXT_TOKEN_SECONDS,
  );
}
