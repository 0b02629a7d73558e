/**
 * @module /api/v1/schedules: schedule management (sinas-spec §1.11, §7.2), and the runtime
 * GET /scheduler/status (§1.7).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { permissions } from "../auth/catalogue";
import { validateCron, validateTimeZone } from "../lib/cron";
import { readLastCronTick } from "../services/scheduler";
import {
  createSchedule,
  deleteSchedule,
  findManagedSchedule,
  listActiveSchedules,
  listSchedules,
  toScheduleResponse,
  updateSchedule,
} from "../services/schedules";
import { authenticate, principalOf, recordPermission, requirePermission } from "./auth";
import { IdentifierSchema } from "./functions";
import { createRouter, errorResponse } from "./router";
import { jsonBody, jsonResponse, MessageSchema, PageQuerySchema } from "./schemas";

const security = [{ bearerAuth: [] }];
const tags = ["Schedules"];

/**
 * Any text but `/` (the name is a path segment), control characters and `.` / `..` (URLs resolve those away).
 * The control characters (Unicode Cc) are spelled as ranges: the OpenAPI `pattern` cannot carry the `u` flag
 * that `\p{Cc}` needs (the generator would write it into the pattern).
 */
const ScheduleNameSchema = z
  .string()
  .min(1)
  .max(255)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point.
  .regex(/^[^/\x00-\x1f\x7f-\x9f]+$/, "must not contain / or control characters")
  .refine((name) => name !== "." && name !== "..", { message: "must not be . or .." })
  .openapi({ example: "nightly-report" });

/** 5-field standard cron, 0 or 7 = Sunday (D-37); stored with single spaces. */
const CronSchema = z
  .string()
  .max(255)
  .superRefine((expression, ctx) => {
    const check = validateCron(expression);
    if (!check.ok) ctx.addIssue({ code: "custom", message: check.message });
  })
  .transform((expression) => expression.trim().split(/\s+/).join(" "))
  .openapi({
    type: "string",
    example: "30 2 * * *",
    description: "minute hour day-of-month month day-of-week",
  });

const TimeZoneSchema = z
  .string()
  .transform((zone, ctx) => {
    const check = validateTimeZone(zone);
    if (check.ok) return check.timeZone;
    ctx.addIssue({ code: "custom", message: check.message });
    return z.NEVER;
  })
  .openapi({ type: "string", example: "America/New_York", description: "IANA time zone name" });

const InputDataSchema = z.record(z.string(), z.unknown()).openapi({ type: "object", example: { n: 1 } });

const ScheduleCreateSchema = z
  .object({
    name: ScheduleNameSchema,
    function_namespace: IdentifierSchema.default("default"),
    function_name: IdentifierSchema,
    description: z.string().max(10_000).nullable().optional(),
    cron_expression: CronSchema,
    timezone: TimeZoneSchema.default("UTC"),
    input_data: InputDataSchema,
    is_active: z.boolean().default(true),
  })
  .strict()
  .openapi("ScheduleCreate");

const ScheduleUpdateSchema = z
  .object({
    function_namespace: IdentifierSchema.optional(),
    function_name: IdentifierSchema.optional(),
    description: z.string().max(10_000).nullable().optional(),
    cron_expression: CronSchema.optional(),
    timezone: TimeZoneSchema.optional(),
    input_data: InputDataSchema.optional(),
    is_active: z.boolean().optional(),
  })
  .strict()
  .openapi("ScheduleUpdate");

const ScheduleSchema = z
  .object({
    id: z.uuid(),
    user_id: z.uuid(),
    name: z.string(),
    function_namespace: z.string(),
    function_name: z.string(),
    description: z.string().nullable(),
    cron_expression: z.string(),
    timezone: z.string(),
    input_data: z.record(z.string(), z.unknown()),
    is_active: z.boolean(),
    last_run: z.string().nullable(),
    next_run: z.string().nullable().openapi({ description: "Next due time (UTC); null while inactive" }),
    last_status: z.enum(["STARTED", "FAILED"]).nullable().openapi({
      description:
        "STARTED: the last run was dispatched (see its execution); FAILED: it could not start; null: never run, or the run of `last_run` is being dispatched",
    }),
    last_execution_id: z.string().nullable(),
    last_error: z.string().nullable(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("ScheduleResponse");

const SchedulerStatusSchema = z
  .object({
    status: z.enum(["running", "stopped"]),
    jobs: z.array(
      z.object({
        id: z.uuid(),
        name: z.string(),
        next_run: z.string().nullable(),
        trigger: z.string().openapi({ example: "cron[30 2 * * *] tz=America/New_York" }),
      }),
    ),
    total_jobs: z.number().int(),
    last_tick: z.string().nullable().openapi({ description: "When the Cron Trigger last ran (ISO)" }),
  })
  .openapi("SchedulerStatus");

const NameParams = z.object({ name: ScheduleNameSchema });

const createScheduleRoute = createRoute({
  method: "post",
  path: "/schedules",
  tags,
  security,
  summary: "Schedule one of your functions (sinas.functions.{function_namespace}.post:own)",
  description: "The first run is the next cron occurrence after now, in `timezone`.",
  request: { body: jsonBody(ScheduleCreateSchema) },
  responses: {
    200: jsonResponse(ScheduleSchema, "Created"),
    400: errorResponse("The name is taken"),
    403: errorResponse("Not allowed"),
    404: errorResponse("No such active function of yours"),
    422: errorResponse("Invalid fields: cron expression, time zone, input_data against the input schema"),
  },
});
const listRoute = createRoute({
  method: "get",
  path: "/schedules",
  tags,
  security,
  summary: "Your schedules (all with sinas.schedules.get:all)",
  request: { query: PageQuerySchema },
  responses: { 200: jsonResponse(z.array(ScheduleSchema), "Schedules") },
});
const getRoute = createRoute({
  method: "get",
  path: "/schedules/{name}",
  tags,
  security,
  summary: "A schedule of yours, active or not (anyone's with sinas.schedules.get:all)",
  request: { params: NameParams },
  responses: { 200: jsonResponse(ScheduleSchema, "Schedule"), 404: errorResponse("Unknown") },
});
const updateRoute = createRoute({
  method: "patch",
  path: "/schedules/{name}",
  tags,
  security,
  summary: "Change a schedule; live on the next tick",
  description:
    "A new cron expression, time zone or reactivation recomputes next_run from now; deactivation clears it.",
  request: { params: NameParams, body: jsonBody(ScheduleUpdateSchema) },
  responses: {
    200: jsonResponse(ScheduleSchema, "Updated"),
    403: errorResponse("Not allowed in the new function namespace"),
    404: errorResponse("Unknown schedule, or no such active function of yours"),
    422: errorResponse("Invalid fields"),
  },
});
const deleteRoute = createRoute({
  method: "delete",
  path: "/schedules/{name}",
  tags,
  security,
  summary: "Delete a schedule (its executions stay)",
  request: { params: NameParams },
  responses: { 200: jsonResponse(MessageSchema, "Deleted"), 404: errorResponse("Unknown") },
});

export const schedulesRouter = createRouter();
schedulesRouter.use("/schedules", authenticate);
schedulesRouter.use("/schedules/*", authenticate);

schedulesRouter
  .openapi(createScheduleRoute, async (c) => {
    const body = c.req.valid("json");
    const namespace = body.function_namespace;
    const principal = requirePermission(
      c,
      permissions.functionsNamespace(namespace, "post", "own"),
      `Not authorized to schedule functions in namespace '${namespace}'`,
    );
    return c.json(toScheduleResponse(await createSchedule(c.get("services").db(), principal, body)), 200);
  })
  .openapi(listRoute, async (c) => {
    recordPermission(c, "sinas.schedules.get:own");
    const rows = await listSchedules(c.get("services").db(), principalOf(c), c.req.valid("query"));
    return c.json(rows.map(toScheduleResponse), 200);
  })
  .openapi(getRoute, async (c) => {
    const { name } = c.req.valid("param");
    recordPermission(c, "sinas.schedules.get:own");
    const job = await findManagedSchedule(c.get("services").db(), principalOf(c), "get", name);
    return c.json(toScheduleResponse(job), 200);
  })
  .openapi(updateRoute, async (c) => {
    const { name } = c.req.valid("param");
    recordPermission(c, "sinas.schedules.put:own");
    const db = c.get("services").db();
    const principal = principalOf(c);
    const current = await findManagedSchedule(db, principal, "put", name);
    const updated = await updateSchedule(db, principal, current, c.req.valid("json"));
    return c.json(toScheduleResponse(updated), 200);
  })
  .openapi(deleteRoute, async (c) => {
    const { name } = c.req.valid("param");
    recordPermission(c, "sinas.schedules.delete:own");
    const db = c.get("services").db();
    await deleteSchedule(db, await findManagedSchedule(db, principalOf(c), "delete", name));
    return c.json({ message: `Schedule '${name}' deleted successfully` }, 200);
  });

const statusRoute = createRoute({
  method: "get",
  path: "/scheduler/status",
  tags: ["System"],
  summary: "Active schedules and their next runs (no auth)",
  description:
    "The Cron Trigger runs every minute and takes every due schedule; `last_tick` is when it last ran.",
  responses: { 200: jsonResponse(SchedulerStatusSchema, "Scheduler status") },
});

export const schedulerStatusRouter = createRouter().openapi(statusRoute, async (c) => {
  const services = c.get("services");
  const [jobs, lastTick] = await Promise.all([
    listActiveSchedules(services.db()),
    readLastCronTick(services).catch(() => null),
  ]);
  return c.json({ status: "running" as const, jobs, total_jobs: jobs.length, last_tick: lastTick }, 200);
});
