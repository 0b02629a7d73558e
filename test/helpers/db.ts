/**
 * @module SQL access to a test stack's own database, for assertions the API cannot show (ciphertext at
 * rest, rows a failed request must not have written). Same driver and proxy as the Worker.
 */

import { openNodeDb } from "../../scripts/lib/migrate";
import type { StackInfo } from "../../scripts/lib/stack";
import type { DbHandle } from "../../workers/db/client";

export function openStackDb(stack: Pick<StackInfo, "database">): DbHandle {
  return openNodeDb({ databaseUrl: stack.database.url, wsProxy: stack.database.wsProxy }, 4);
}
