/**
 * @module /internal: endpoints only the executor calls, authenticated by its signature, not by a user.
 * Kept out of the OpenAPI documents.
 */
import { AppError } from "../lib/errors";
import { SignatureError } from "../lib/signed-request";
import { callbackPath, verifyCallback } from "../services/execution-dispatch";
import { executionRunFor } from "../services/execution-shards";
import { createRouter } from "./router";

const MAX_CALLBACK_BYTES = 4 * 1024 * 1024;

export const internalRouter = createRouter();

internalRouter.post("/internal/executions/:execution_id/events", async (c) => {
  const executionId = c.req.param("execution_id");
  const body = await c.req.text();
  if (body.length > MAX_CALLBACK_BYTES) throw new AppError("PAYLOAD_TOO_LARGE", "Callback body too large");
  const services = c.get("services");
  const authorization = c.req.header("authorization");
  let callback: Awaited<ReturnType<typeof verifyCallback>>;
  try {
    callback = await verifyCallback(services.config, {
      token: authorization?.replace(/^Bearer\s+/i, "") ?? null,
      executionId,
      path: callbackPath(executionId),
      body,
    });
  } catch (error) {
    if (error instanceof SignatureError || error instanceof SyntaxError) {
      throw new AppError("UNAUTHORIZED", `Callback rejected: ${error.message}`);
    }
    throw error;
  }
  const { status } = await executionRunFor(services.env, executionId).applyCallback(callback);
  if (status === 503) return c.json({ ok: false, reason: "this callback is being applied; retry" }, 503);
  return status === 200
    ? c.json({ ok: true }, 200)
    : c.json({ ok: false, reason: "execution already finished" }, 409);
});
