/**
 * @module /api/v1/users (sinas-spec §1.13, D-15, D-18, D-48).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { can } from "../auth/access";
import { permissions } from "../auth/catalogue";
import { GUEST_USERS } from "../auth/default-groups";
import { AppError } from "../lib/errors";
import {
  activeGroupNames,
  createUser,
  deleteUser,
  getUser,
  listUsers,
  setUserActive,
  toUserResponse,
} from "../services/users";
import { authenticate, principalOf, recordPermission, requirePermission } from "./auth";
import { createRouter, errorResponse } from "./router";
import {
  EmailSchema,
  jsonBody,
  jsonResponse,
  MessageSchema,
  PageQuerySchema,
  UserResponseSchema,
  UuidSchema,
} from "./schemas";

const UserIdParams = z.object({ user_id: UuidSchema });
const security = [{ bearerAuth: [] }];
const tags = ["Users"];

const listRoute = createRoute({
  method: "get",
  path: "/users",
  tags,
  security,
  summary: "List users (sinas.users.get:all)",
  request: { query: PageQuerySchema },
  responses: { 200: jsonResponse(z.array(UserResponseSchema), "Users"), 403: errorResponse("Not allowed") },
});

const createUserRoute = createRoute({
  method: "post",
  path: "/users",
  tags,
  security,
  summary: "Create a user; they join GuestUsers (sinas.users.post:all)",
  request: { body: jsonBody(z.object({ email: EmailSchema }).strict().openapi("UserCreate")) },
  responses: {
    201: jsonResponse(UserResponseSchema, "Created"),
    403: errorResponse("Not allowed"),
    409: errorResponse("E-mail taken"),
  },
});

const getRoute = createRoute({
  method: "get",
  path: "/users/{user_id}",
  tags,
  security,
  summary: "A user with their active group names (self, or sinas.users.get:all)",
  request: { params: UserIdParams },
  responses: {
    200: jsonResponse(
      UserResponseSchema.extend({ groups: z.array(z.string()) }).openapi("UserWithGroups"),
      "User",
    ),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown user"),
  },
});

const updateRoute = createRoute({
  method: "patch",
  path: "/users/{user_id}",
  tags,
  security,
  summary: "Update a user: `is_active` needs sinas.users.put:all and cannot be changed on yourself",
  request: {
    params: UserIdParams,
    body: jsonBody(z.object({ is_active: z.boolean().optional() }).strict().openapi("UserUpdate")),
  },
  responses: {
    200: jsonResponse(UserResponseSchema, "Updated"),
    400: errorResponse("Refused"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown user"),
  },
});

const deleteRoute = createRoute({
  method: "delete",
  path: "/users/{user_id}",
  tags,
  security,
  summary:
    "Delete a user (sinas.users.delete:all); 409 while they own functions, agents, webhooks or schedules",
  request: { params: UserIdParams },
  responses: {
    200: jsonResponse(MessageSchema, "Deleted"),
    400: errorResponse("Cannot delete yourself"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown user"),
    409: errorResponse("User still owns resources"),
  },
});

/** Self-service or the `:all` grant; records which applied. */
function requireSelfOrAll(
  c: Parameters<typeof principalOf>[0],
  userId: string,
  action: "get" | "put",
  message: string,
) {
  const principal = principalOf(c);
  if (principal.user.id === userId) {
    recordPermission(c, permissions.users(action, "own"));
    return principal;
  }
  return requirePermission(c, permissions.users(action, "all"), message);
}

export const usersRouter = createRouter();
usersRouter.use("/users", authenticate);
usersRouter.use("/users/*", authenticate);

usersRouter
  .openapi(listRoute, async (c) => {
    requirePermission(c, permissions.users("get", "all"), "Not authorized to list users");
    const rows = await listUsers(c.get("services").db(), c.req.valid("query"));
    return c.json(rows.map(toUserResponse), 200);
  })
  .openapi(createUserRoute, async (c) => {
    const principal = requirePermission(
      c,
      permissions.users("post", "all"),
      "Not authorized to create users",
    );
    const { email } = c.req.valid("json");
    const user = await createUser(c.get("services").db(), {
      email,
      groupName: GUEST_USERS,
      addedBy: principal.user.id,
    });
    return c.json(toUserResponse(user), 201);
  })
  .openapi(getRoute, async (c) => {
    const { user_id: userId } = c.req.valid("param");
    requireSelfOrAll(c, userId, "get", "Not authorized to view this user");
    const db = c.get("services").db();
    const user = await getUser(db, userId);
    return c.json({ ...toUserResponse(user), groups: await activeGroupNames(db, userId) }, 200);
  })
  .openapi(updateRoute, async (c) => {
    const { user_id: userId } = c.req.valid("param");
    const body = c.req.valid("json");
    const principal = requireSelfOrAll(c, userId, "put", "Not authorized to update this user");
    const db = c.get("services").db();
    if (body.is_active === undefined) return c.json(toUserResponse(await getUser(db, userId)), 200);
    if (!can(principal, permissions.users("put", "all"))) {
      throw new AppError("FORBIDDEN", "Not authorized to change is_active");
    }
    if (userId === principal.user.id)
      throw new AppError("BAD_REQUEST", "Cannot change is_active of your own account");
    return c.json(toUserResponse(await setUserActive(db, userId, body.is_active)), 200);
  })
  .openapi(deleteRoute, async (c) => {
    const principal = requirePermission(
      c,
      permissions.users("delete", "all"),
      "Not authorized to delete users",
    );
    const user = await deleteUser(c.get("services").db(), c.req.valid("param").user_id, principal.user.id);
    return c.json({ message: `User '${user.email}' deleted successfully` }, 200);
  });
