/**
 * @module CORS for browser clients: any origin, with credentials (the caller's origin is reflected), as
 * `hono/cors` with a reflecting origin function answers. Written out because that middleware touches
 * `c.res` before the handler runs, which made Hono rebuild every response twice (a new Response and a copy
 * of its headers each time), a measurable share of a short request's CPU. Here the headers go onto the
 * final response, rebuilt only when its headers are immutable (a response passed through from `fetch`).
 */
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "./app-env";

const ALLOWED_METHODS = "GET,HEAD,PUT,POST,DELETE,PATCH";

function originHeaders(c: Context<AppEnv>): [string, string][] {
  return [
    ["Access-Control-Allow-Origin", c.req.header("origin") || "*"],
    ["Access-Control-Allow-Credentials", "true"],
  ];
}

/** A preflight (any OPTIONS request) is answered here: 204 with what the browser asked to send. */
function preflight(c: Context<AppEnv>): Response {
  const headers = new Headers(originHeaders(c));
  headers.set("Access-Control-Allow-Methods", ALLOWED_METHODS);
  headers.set("Vary", "Origin");
  const requested = c.req.header("access-control-request-headers");
  if (requested) {
    headers.set(
      "Access-Control-Allow-Headers",
      requested
        .split(",")
        .map((name) => name.trim())
        .join(","),
    );
    headers.append("Vary", "Access-Control-Request-Headers");
  }
  const requestId = c.get("requestId");
  if (requestId) headers.set("X-Request-Id", requestId);
  return new Response(null, { status: 204, headers });
}

export const corsHeaders = createMiddleware<AppEnv>(async (c, next) => {
  if (c.req.method === "OPTIONS") return preflight(c);
  await next();
  const add = (headers: Headers) => {
    for (const [name, value] of originHeaders(c)) headers.set(name, value);
    headers.append("Vary", "Origin");
  };
  try {
    add(c.res.headers);
  } catch {
    // Immutable headers (a fetched response): rebuild it once, as Hono's own `c.header` would.
    const rebuilt = new Response(c.res.body, c.res);
    add(rebuilt.headers);
    c.res = undefined;
    c.res = rebuilt;
  }
});
