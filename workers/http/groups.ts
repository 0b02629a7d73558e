/**
 * @module /api/v1/groups: groups, memberships and group permissions (sinas-spec §1.14).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { permissions } from "../auth/catalogue";
import {
  addMember,
  createGroup,
  deleteGroup,
  deleteGroupPermission,
  findGroup,
  findReadableGroup,
  listGroupPermissions,
  listGroups,
  listMembers,
  removeMember,
  setGroupPermission,
  toGroupResponse,
  updateGroup,
} from "../services/groups";
import { authenticate, principalOf, requirePermission } from "./auth";
import { createRouter, errorResponse } from "./router";
import { jsonBody, jsonResponse, MessageSchema, PageQuerySchema, UuidSchema } from "./schemas";

const security = [{ bearerAuth: [] }];
const tags = ["Groups"];
const NameParams = z.object({ name: z.string().min(1).max(255) });

const GroupSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    description: z.string().nullable(),
    email_domain: z.string().nullable(),
    external_group_id: z.string().nullable(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("GroupResponse");

const GroupFields = {
  description: z.string().max(10_000).nullable().optional(),
  email_domain: z.string().max(255).nullable().optional(),
  external_group_id: z.string().max(255).nullable().optional(),
};
const GroupCreateSchema = z
  .object({ name: z.string().trim().min(1).max(255), ...GroupFields })
  .strict()
  .openapi("GroupCreate");
const GroupUpdateSchema = z
  .object({ name: z.string().trim().min(1).max(255).optional(), ...GroupFields })
  .strict()
  .openapi("GroupUpdate");

const MemberSchema = z
  .object({
    id: z.uuid(),
    group_id: z.uuid(),
    user_id: z.uuid(),
    user_email: z.string(),
    role: z.string().nullable(),
    active: z.boolean(),
    added_at: z.string(),
  })
  .openapi("GroupMember");

const GroupPermissionSchema = z
  .object({
    id: z.uuid(),
    group_id: z.uuid(),
    permission_key: z.string(),
    permission_value: z.boolean(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("GroupPermission");

/**
 * A segment after the prefix: agent names hold spaces (`Support Bot`), so spaces are allowed, a blank segment
 * not. Written so that a string matches one way only: overlapping classes would backtrack exponentially.
 */
const WORD = "[A-Za-z0-9_*{}/-]+";
const SEGMENT = ` *${WORD}(?: +${WORD})* *`;
const PERMISSION_KEY = new RegExp(`^[A-Za-z0-9_*-]+(\\.${SEGMENT})*:[A-Za-z0-9_*-]+$`);

/**
 * `prefix.segment...:scope`, for group grants and API keys alike; the engine treats anything else as never
 * matching, so refuse it early.
 */
export const PermissionKeySchema = z
  .string()
  .min(3)
  .max(255)
  .regex(
    PERMISSION_KEY,
    "must look like sinas.resource.action:scope (no empty segment, no control characters)",
  );

const route = <T extends Parameters<typeof createRoute>[0]>(config: T) =>
  createRoute({ ...config, tags, security });

const listRoute = route({
  method: "get",
  path: "/groups",
  summary: "Groups: all with sinas.groups.get:all, else the caller's own",
  request: { query: PageQuerySchema },
  responses: { 200: jsonResponse(z.array(GroupSchema), "Groups") },
});
const createGroupRoute = route({
  method: "post",
  path: "/groups",
  summary: "Create a group; the creator joins it as admin (sinas.groups.post:own)",
  request: { body: jsonBody(GroupCreateSchema) },
  responses: {
    200: jsonResponse(GroupSchema, "Created"),
    400: errorResponse("Name taken"),
    403: errorResponse("Not allowed"),
  },
});
const getRoute = route({
  method: "get",
  path: "/groups/{name}",
  summary: "A group (sinas.groups.get:all or member)",
  request: { params: NameParams },
  responses: {
    200: jsonResponse(GroupSchema, "Group"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
  },
});
const updateRoute = route({
  method: "patch",
  path: "/groups/{name}",
  summary: "Update a group (sinas.groups.put:all)",
  request: { params: NameParams, body: jsonBody(GroupUpdateSchema) },
  responses: {
    200: jsonResponse(GroupSchema, "Updated"),
    400: errorResponse("Name taken"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
  },
});
const deleteRoute = route({
  method: "delete",
  path: "/groups/{name}",
  summary: "Delete a group with its members, permissions and group states (sinas.groups.delete:all)",
  request: { params: NameParams },
  responses: {
    200: jsonResponse(MessageSchema, "Deleted"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
  },
});
const membersRoute = route({
  method: "get",
  path: "/groups/{name}/members",
  summary: "Active members (sinas.groups.get:all or member)",
  request: { params: NameParams },
  responses: {
    200: jsonResponse(z.array(MemberSchema), "Members"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
  },
});
const addMemberRoute = route({
  method: "post",
  path: "/groups/{name}/members",
  summary: "Add or reactivate a member (sinas.groups.manage_members:all)",
  request: {
    params: NameParams,
    body: jsonBody(
      z
        .object({ user_id: UuidSchema, role: z.string().min(1).max(100).default("member") })
        .strict()
        .openapi("GroupMemberAdd"),
    ),
  },
  responses: {
    200: jsonResponse(MemberSchema, "Member"),
    400: errorResponse("Already a member"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown group or user"),
  },
});
const removeMemberRoute = route({
  method: "delete",
  path: "/groups/{name}/members/{user_id}",
  summary: "Remove a member (soft) (sinas.groups.manage_members:all)",
  request: { params: NameParams.extend({ user_id: UuidSchema }) },
  responses: {
    200: jsonResponse(MessageSchema, "Removed"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
  },
});
const permissionsRoute = route({
  method: "get",
  path: "/groups/{name}/permissions",
  summary: "The group's permissions (sinas.groups.manage_permissions:all)",
  request: { params: NameParams },
  responses: {
    200: jsonResponse(z.array(GroupPermissionSchema), "Permissions"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
  },
});
const setPermissionRoute = route({
  method: "post",
  path: "/groups/{name}/permissions",
  summary: "Grant or set a permission (upsert by key) (sinas.groups.manage_permissions:all)",
  request: {
    params: NameParams,
    body: jsonBody(
      z
        .object({ permission_key: PermissionKeySchema, permission_value: z.boolean() })
        .strict()
        .openapi("GroupPermissionSet"),
    ),
  },
  responses: {
    200: jsonResponse(GroupPermissionSchema, "Permission"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
  },
});
const deletePermissionRoute = route({
  method: "delete",
  path: "/groups/{name}/permissions/{permission_key}",
  summary: "Remove a permission; URL-encode the key (sinas.groups.manage_permissions:all)",
  request: { params: NameParams.extend({ permission_key: z.string().min(1).max(255) }) },
  responses: {
    200: jsonResponse(MessageSchema, "Deleted"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
  },
});

const MANAGE_MEMBERS = "Not authorized to manage group members";
const MANAGE_PERMISSIONS = "Not authorized to manage group permissions";

export const groupsRouter = createRouter();
groupsRouter.use("/groups", authenticate);
groupsRouter.use("/groups/*", authenticate);

groupsRouter
  .openapi(listRoute, async (c) => {
    const rows = await listGroups(c.get("services").db(), principalOf(c), c.req.valid("query"));
    return c.json(rows.map(toGroupResponse), 200);
  })
  .openapi(createGroupRoute, async (c) => {
    const permission = permissions.groups("post", "own");
    const principal = requirePermission(c, permission, `Permission denied: ${permission}`);
    return c.json(
      toGroupResponse(await createGroup(c.get("services").db(), principal, c.req.valid("json"))),
      200,
    );
  })
  .openapi(getRoute, async (c) => {
    const group = await findReadableGroup(c.get("services").db(), principalOf(c), c.req.valid("param").name);
    return c.json(toGroupResponse(group), 200);
  })
  .openapi(updateRoute, async (c) => {
    const db = c.get("services").db();
    const { name } = c.req.valid("param");
    await findGroup(db, name);
    requirePermission(c, permissions.groups("put", "all"), "Not authorized to update groups");
    return c.json(toGroupResponse(await updateGroup(db, name, c.req.valid("json"))), 200);
  })
  .openapi(deleteRoute, async (c) => {
    const db = c.get("services").db();
    const { name } = c.req.valid("param");
    await findGroup(db, name);
    requirePermission(c, permissions.groups("delete", "all"), "Not authorized to delete groups");
    await deleteGroup(db, name);
    return c.json({ message: `Group '${name}' deleted successfully` }, 200);
  })
  .openapi(membersRoute, async (c) => {
    const db = c.get("services").db();
    const group = await findReadableGroup(db, principalOf(c), c.req.valid("param").name);
    return c.json(await listMembers(db, group.id), 200);
  })
  .openapi(addMemberRoute, async (c) => {
    const principal = requirePermission(c, permissions.groups("manage_members", "all"), MANAGE_MEMBERS);
    const db = c.get("services").db();
    const group = await findGroup(db, c.req.valid("param").name);
    return c.json(await addMember(db, principal, group, c.req.valid("json")), 200);
  })
  .openapi(removeMemberRoute, async (c) => {
    const principal = requirePermission(c, permissions.groups("manage_members", "all"), MANAGE_MEMBERS);
    const db = c.get("services").db();
    const { name, user_id: userId } = c.req.valid("param");
    await removeMember(db, principal, await findGroup(db, name), userId);
    return c.json({ message: "Member removed from group successfully" }, 200);
  })
  .openapi(permissionsRoute, async (c) => {
    const permission = permissions.groups("manage_permissions", "all");
    requirePermission(c, permission, "Not authorized to view group permissions");
    const db = c.get("services").db();
    const group = await findGroup(db, c.req.valid("param").name);
    return c.json(await listGroupPermissions(db, group.id), 200);
  })
  .openapi(setPermissionRoute, async (c) => {
    requirePermission(c, permissions.groups("manage_permissions", "all"), MANAGE_PERMISSIONS);
    const db = c.get("services").db();
    const group = await findGroup(db, c.req.valid("param").name);
    return c.json(await setGroupPermission(db, group, c.req.valid("json")), 200);
  })
  .openapi(deletePermissionRoute, async (c) => {
    requirePermission(c, permissions.groups("manage_permissions", "all"), MANAGE_PERMISSIONS);
    const db = c.get("services").db();
    const { name, permission_key: key } = c.req.valid("param");
    await deleteGroupPermission(db, await findGroup(db, name), key);
    return c.json({ message: "Permission deleted successfully" }, 200);
  });
