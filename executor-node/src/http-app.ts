/**
 * @module The executor's HTTP API (PROTOCOL.md §2) as a Hono app. Every route but `GET /health` needs a
 * request signed by the API: its token is checked before the body is read, then the exact body bytes against
 * the token's hash, before any parsing.
 */
import type { IncomingMessage } from "node:http";
import type { HttpBindings } from "@hono/node-server";
import { Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { z } from "zod";
import { JobSchema } from "../../workers/lib/executor-protocol";
import { AuthError, type Signer, type VerifiedHead } from "./auth";
import { JobReplyChannel } from "./job-reply";
import { type JobRunner, NoCapacityError } from "./jobs";
import type { Pool } from "./pool";
import { ReplayCacheUnavailableError } from "./replay-cache";
import { ScaleError } from "./shared-pool";
import { checkSyntax } from "./syntax-check";

export const EXECUTOR_VERSION = "0.2.0";
/** Largest request body (a job carries the code of its whole callable scope). */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface HttpAppDeps {
  signer: Signer;
  pool: Pool;
  runner: JobRunner;
  pythonBin: string;
}

type Env = { Bindings: Partial<HttpBindings>; Variables: { body: Uint8Array } };

/**
 * The body's bytes straight from Node's request, or null past `limit`. Asking Hono's request for them built
 * a WHATWG Request and stream per call in @hono/node-server: ~0.1 ms of the executor's CPU per job.
 */
function readBody(incoming: IncomingMessage, limit: number): Promise<Uint8Array | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    incoming.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    incoming.on("end", () => resolve(size > limit ? null : Buffer.concat(chunks)));
    incoming.on("error", reject);
  });
}

const ScaleBodySchema = z.object({
  target_count: z.number().int({ error: "target_count must be an integer" }),
});
const SyntaxBodySchema = z.object({ code: z.string() });

function problem(code: string, message: string) {
  return { code, message, detail: message };
}

export function createHttpApp(deps: HttpAppDeps): Hono<Env> {
  const app = new Hono<Env>();

  app.get("/health", (c) =>
    c.json({
      status: "ok",
      driver: deps.pool.driverName,
      version: EXECUTOR_VERSION,
      pools: deps.pool.stats(),
      jobs: deps.runner.activeCount,
    }),
  );

  app.use("/v1/*", async (c, next) => {
    const tooLarge = () =>
      c.json(problem("PAYLOAD_TOO_LARGE", `request body exceeds ${MAX_BODY_BYTES} bytes`), 413);
    const refused = (error: unknown) => {
      if (error instanceof AuthError) return c.json(problem("UNAUTHORIZED", error.message), 401);
      if (error instanceof ReplayCacheUnavailableError)
        return c.json(problem("UNAVAILABLE", error.message), 503);
      throw error;
    };
    if (Number(c.req.header("content-length") ?? 0) > MAX_BODY_BYTES) return tooLarge();
    // The token first: a request that is not the API's is refused before its body is read, so nobody
    // reaching the port can make the executor hold megabytes per connection. The connection is then closed
    // (its unread body is not waited for).
    let head: VerifiedHead;
    try {
      head = deps.signer.verifyHead({
        authorization: c.req.header("authorization"),
        method: c.req.method,
        path: new URL(c.req.url).pathname,
      });
    } catch (error) {
      c.header("connection", "close");
      return refused(error);
    }
    const incoming = c.env?.incoming;
    const body = incoming
      ? await readBody(incoming, MAX_BODY_BYTES)
      : new Uint8Array(await c.req.arrayBuffer()); // not served by Node (tests calling `app.fetch`)
    if (!body || body.byteLength > MAX_BODY_BYTES) return tooLarge();
    try {
      await deps.signer.verifyBody(head, body);
    } catch (error) {
      return refused(error);
    }
    c.set("body", body);
    await next();
  });

  const readJson = (body: Uint8Array): unknown => {
    try {
      return JSON.parse(new TextDecoder().decode(body));
    } catch {
      return undefined;
    }
  };

  const invalid = (message: string) => problem("BAD_REQUEST", message);

  app.post("/v1/jobs", (c) => {
    const parsed = JobSchema.safeParse(readJson(c.get("body")));
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return c.json(
        invalid(`invalid job: ${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`),
        400,
      );
    }
    const job = parsed.data;
    const reply = job.reply_within_ms
      ? new JobReplyChannel(job.execution_id, job.reply_within_ms)
      : undefined;
    try {
      deps.runner.submit(job, reply);
    } catch (error) {
      reply?.close();
      if (error instanceof NoCapacityError) return c.json(problem("UNAVAILABLE", error.message), 503);
      throw error;
    }
    if (reply) return c.body(reply.body, 200, { "content-type": "application/json" });
    return c.json({ accepted: true, execution_id: job.execution_id }, 202);
  });

  app.post("/v1/jobs/:execution_id/cancel", (c) =>
    c.json({ cancelled: deps.runner.cancel(c.req.param("execution_id")) }),
  );

  app.post("/v1/syntax-check", async (c) => {
    const parsed = SyntaxBodySchema.safeParse(readJson(c.get("body")));
    if (!parsed.success) return c.json(invalid('body must be {"code": "..."}'), 400);
    return c.json(await checkSyntax(deps.pythonBin, parsed.data.code));
  });

  app.get("/v1/pools", (c) => c.json(deps.pool.report()));

  app.post("/v1/pools/shared/scale", async (c) => {
    const parsed = ScaleBodySchema.safeParse(readJson(c.get("body")));
    if (!parsed.success) return c.json(invalid('body must be {"target_count": integer}'), 400);
    try {
      return c.json(await deps.pool.scaleShared(parsed.data.target_count));
    } catch (error) {
      if (error instanceof ScaleError) return c.json(invalid(error.message), 400);
      throw error;
    }
  });

  app.post("/v1/pools/users/:user_id/reload", (c) => {
    const userId = c.req.param("user_id");
    deps.pool.reloadUser(userId);
    return c.json({ status: "reloaded", user_id: userId });
  });

  app.delete("/v1/pools/users/:user_id", async (c) => {
    const userId = c.req.param("user_id");
    await deps.pool.stopUser(userId);
    return c.json({ status: "stopped", user_id: userId });
  });

  app.notFound((c) => c.json(problem("NOT_FOUND", "Not Found"), 404));
  app.onError((error, c) => {
    console.error(`executor: ${c.req.method} ${c.req.path} failed:`, error);
    return c.json(problem("INTERNAL", "internal executor error"), 500 as ContentfulStatusCode);
  });

  return app;
}
