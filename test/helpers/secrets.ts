/**
 * @module The dev secrets a test stack's Worker runs with (generated into its data folder by the launcher),
 * for tests that must sign or decrypt exactly as the Worker does.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { DevSecrets } from "../../scripts/lib/worker-vars";

export function stackSecrets(stack: { dataDir: string }): DevSecrets {
  return JSON.parse(readFileSync(join(stack.dataDir, "dev-secrets.json"), "utf8")) as DevSecrets;
}
