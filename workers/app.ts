/**
 * @module The Hono app: middleware, routers, OpenAPI documents and docs pages.
 *
 * Runtime API at `/` (docs at /docs, /openapi.json), management API at `/api/v1` (its own docs), as in
 * SINAS (sinas-spec §0.1).
 */

import { requestId } from "hono/request-id";
import { agentsRouter } from "./http/agents";
import { apiKeysRouter } from "./http/api-keys";
import { authRouter } from "./http/auth-routes";
import { chatTurnsRouter } from "./http/chat-turns";
import { chatsRouter } from "./http/chats";
import { corsHeaders } from "./http/cors";
import { renderDocsPage } from "./http/docs";
import { executionsRouter } from "./http/executions";
import { installFallbacks } from "./http/fallbacks";
import { functionsRouter } from "./http/functions";
import { groupsRouter } from "./http/groups";
import { healthRouter } from "./http/health";
import { internalRouter } from "./http/internal";
import { jsonBodyGuard } from "./http/json-body-guard";
import { llmProvidersRouter } from "./http/llm-providers";
import {
  completeOpenApiDocument,
  type OpenApiDocument,
  withOperationIds,
  withoutPathsUnder,
  withoutUnreferencedSchemas,
  withTemplateResponses,
} from "./http/openapi-completion";
import { packagesRouter } from "./http/packages";
import { poolsRouter } from "./http/pools";
import { requestLog } from "./http/request-log";
import { requestLogsRouter } from "./http/request-logs";
import { createRouter, ERROR_SCHEMA_NAME, ErrorResponseSchema } from "./http/router";
import { schedulerStatusRouter, schedulesRouter } from "./http/schedules";
import { statesRouter } from "./http/states";
import { usersRouter } from "./http/users";
import { webhookTriggerRouter } from "./http/webhook-trigger";
import { webhooksRouter } from "./http/webhooks";
import { AppError } from "./lib/errors";
import { dynamicOpenApiPaths } from "./services/openapi-dynamic";
import { createServices } from "./services/services";

export const API_VERSION = "0.1.0";

/** Where the management API is mounted (sinas-spec §0.1). */
export const MANAGEMENT_PREFIX = "/api/v1";

type Router = ReturnType<typeof createRouter>;

/** Routers of the runtime API, mounted at `/`. */
export const runtimeRouters = [
  healthRouter,
  authRouter,
  statesRouter,
  executionsRouter,
  internalRouter,
  webhookTriggerRouter,
  schedulerStatusRouter,
  chatsRouter,
  chatTurnsRouter,
];

/** Routers of the management API, mounted at MANAGEMENT_PREFIX. */
export const managementRouters = [
  usersRouter,
  groupsRouter,
  apiKeysRouter,
  functionsRouter,
  packagesRouter,
  poolsRouter,
  requestLogsRouter,
  webhooksRouter,
  schedulesRouter,
  llmProvidersRouter,
  agentsRouter,
];

/** Components every document has: the bearer scheme, and the error shape the completion step refers to. */
function registerSharedComponents(app: Router) {
  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", {
    type: "http",
    scheme: "bearer",
    description: "An access token from /auth/verify-otp, or an API key (also accepted as X-API-Key).",
  });
  app.openAPIRegistry.register(ERROR_SCHEMA_NAME, ErrorResponseSchema);
}

/**
 * A document built on first use and kept for the isolate (hono's `doc31` regenerates it per request):
 * turning every route's zod schemas into JSON Schema costs tens of milliseconds of CPU, and the routes never
 * change after start-up.
 */
/** The static route a dynamic path of the runtime document is an instance of, if any. */
function dynamicPathTemplate(path: string): string | null {
  if (path.startsWith("/webhooks/")) return "/webhooks/{path}";
  if (/^\/agents\/[^/]+\/[^/]+\/chats$/.test(path)) return "/agents/{namespace}/{agent_name}/chats";
  return null;
}

function documentOnce(build: () => OpenApiDocument) {
  let document: OpenApiDocument | undefined;
  return (): OpenApiDocument => {
    document ??= build();
    return document;
  };
}

function createManagementApp() {
  const management = createRouter();
  const document = documentOnce(() => {
    const generated = management.getOpenAPI31Document({
      openapi: "3.1.0",
      info: { title: "SINAS Edge management API", version: API_VERSION },
      servers: [{ url: MANAGEMENT_PREFIX }],
    });
    return completeOpenApiDocument(generated, MANAGEMENT_PREFIX);
  });
  management.get("/openapi.json", (c) => c.json(document()));
  for (const router of managementRouters) management.route("/", router);
  registerSharedComponents(management);
  management.get("/docs", (c) =>
    c.html(
      renderDocsPage({ title: "SINAS Edge management API", specUrl: `${MANAGEMENT_PREFIX}/openapi.json` }),
    ),
  );
  return management;
}

export function createApp() {
  const app = createRouter();
  app.use(requestId());
  app.use(corsHeaders);
  app.use(async (c, next) => {
    const services = createServices(c.env);
    c.set("services", services);
    try {
      await next();
    } finally {
      c.executionCtx.waitUntil(services.dispose());
    }
  });
  app.use(requestLog());
  // No resource has a NUL in its name, and Postgres text refuses one (a path parameter would be a 500).
  app.use(async (c, next) => {
    if (c.req.path.includes("\u0000")) throw new AppError("NOT_FOUND", "Not Found");
    await next();
  });
  app.use(jsonBodyGuard);

  for (const router of runtimeRouters) app.route("/", router);
  app.route(MANAGEMENT_PREFIX, createManagementApp());

  registerSharedComponents(app);
  // Mounting the management app copied its routes into this registry: they are left out (with the schemas
  // only they use), as they have their own document (sinas-spec §1.7).
  const staticDocument = documentOnce(() => {
    const generated = app.getOpenAPI31Document({
      openapi: "3.1.0",
      info: {
        title: "SINAS Edge API",
        version: API_VERSION,
        description: `Runtime API of SINAS Edge. The management API is documented at ${MANAGEMENT_PREFIX}/docs.`,
      },
    });
    const runtimeOnly = withoutPathsUnder(generated, MANAGEMENT_PREFIX);
    return withoutUnreferencedSchemas(completeOpenApiDocument(runtimeOnly));
  });
  // Static routes plus one path per active webhook and agent (sinas-spec §1.7); static only if the database
  // cannot be read, so the docs never go down with it. The dynamic operations get operationIds and the error
  // responses of the static route they are instances of (`/webhooks/{path}`, an agent's chat creation).
  app.get("/openapi.json", async (c) => {
    const document = { ...staticDocument() };
    try {
      const staticPaths = document.paths ?? {};
      const dynamicPaths = withTemplateResponses(
        (await dynamicOpenApiPaths(c.var.services.db())) as typeof staticPaths,
        staticPaths,
        dynamicPathTemplate,
      );
      document.paths = withOperationIds({ ...staticPaths, ...dynamicPaths });
    } catch (error) {
      console.error(`OpenAPI: dynamic paths left out: ${String(error)}`);
    }
    return c.json(document);
  });
  app.get("/docs", (c) => c.html(renderDocsPage({ title: "SINAS Edge API", specUrl: "/openapi.json" })));

  installFallbacks(app);
  return app;
}

export type App = ReturnType<typeof createApp>;
