/**
 * @module /api/v1/packages: approved pip packages (sinas-spec §1.12).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { approvePackage, listPackages, removePackage } from "../services/packages";
import { authenticate, recordPermission, requirePermission } from "./auth";
import { createRouter, errorResponse } from "./router";
import { jsonBody, jsonResponse, MessageSchema, UuidSchema } from "./schemas";

const security = [{ bearerAuth: [] }];

/** A PEP 508 name, as the executor's spec pattern (REQUIREMENT_SPEC) accepts it. */
const PACKAGE_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;
/**
 * A locked version becomes the spec `name==version` of every run needing the package: it must be a version
 * the executor accepts there (`>=2.0` or `^1.2` would give `name==>=2.0`, refused by every run).
 */
const LOCKED_VERSION = /^[A-Za-z0-9][A-Za-z0-9.*+!_-]*$/;
const LOCKED_VERSION_DESCRIPTION =
  "must be one exact version such as 2.31.0 or 1.0.0rc1 (no operators: it is installed as name==version)";
const tags = ["Packages"];

const PackageSchema = z
  .object({
    id: z.uuid(),
    package_name: z.string(),
    version: z.string().nullable(),
    installed_at: z.string(),
    installed_by: z.string().nullable(),
  })
  .openapi("PackageResponse");

const approveRoute = createRoute({
  method: "post",
  path: "/packages",
  tags,
  security,
  summary: "Approve a pip package for function requirements (sinas.packages.install:all)",
  request: {
    body: jsonBody(
      z
        .object({
          package_name: z
            .string()
            .min(1)
            .max(255)
            .regex(PACKAGE_NAME, "must be a pip package name (letters, digits, . _ - inside)"),
          version: z
            .string()
            .min(1)
            .max(50)
            .regex(LOCKED_VERSION, LOCKED_VERSION_DESCRIPTION)
            .nullable()
            .optional(),
        })
        .strict()
        .openapi("PackageCreate"),
    ),
  },
  responses: {
    200: jsonResponse(PackageSchema, "Approved"),
    400: errorResponse("Already approved"),
    403: errorResponse("Not allowed, disabled or not whitelisted"),
  },
});
const listRoute = createRoute({
  method: "get",
  path: "/packages",
  tags,
  security,
  summary: "Approved packages",
  responses: { 200: jsonResponse(z.array(PackageSchema), "Packages") },
});
const removeRoute = createRoute({
  method: "delete",
  path: "/packages/{package_id}",
  tags,
  security,
  summary: "Withdraw an approval (sinas.packages.delete:all)",
  request: { params: z.object({ package_id: UuidSchema }) },
  responses: {
    200: jsonResponse(MessageSchema, "Removed"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
  },
});

export const packagesRouter = createRouter();
packagesRouter.use("/packages", authenticate);
packagesRouter.use("/packages/*", authenticate);

packagesRouter
  .openapi(approveRoute, async (c) => {
    const permission = "sinas.packages.install:all";
    const principal = requirePermission(c, permission, `Permission denied: ${permission}`);
    const services = c.get("services");
    return c.json(await approvePackage(services.db(), services.config, principal, c.req.valid("json")), 200);
  })
  .openapi(listRoute, async (c) => {
    recordPermission(c, "sinas.packages.get:own");
    return c.json(await listPackages(c.get("services").db()), 200);
  })
  .openapi(removeRoute, async (c) => {
    requirePermission(c, "sinas.packages.delete:all", "Permission denied: sinas.packages.delete:all");
    const name = await removePackage(c.get("services").db(), c.req.valid("param").package_id);
    return c.json(
      { message: `Package '${name}' approval removed. Existing containers will keep it until recreated.` },
      200,
    );
  });
