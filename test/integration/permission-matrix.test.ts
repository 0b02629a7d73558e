import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL } from "../helpers/auth";
import { startTestStack, type TestStack } from "../helpers/stack";

// Every endpoint of the identity issue, called as each kind of caller, with the exact status expected.
// "owner" is alice: a regular user who owns the resources in play (her user, her API key, her state)
// and is a member of the group "Team". "other" is bob, another regular user. "limited" is an API key of
// alice's holding only `sinas.states.get:own`.
const ACTORS = ["anonymous", "other", "limited", "owner", "admin"] as const;
type Actor = (typeof ACTORS)[number];

interface Fixtures {
  stack: TestStack;
  caller: Record<Actor, { headers: Record<string, string> } | null>;
  admin: Session;
  alice: Session;
  bob: Session;
  unique: () => string;
}

interface Case {
  name: string;
  method: string;
  /** Builds the request for one actor; may create what the request consumes (a key to revoke, a user to delete). */
  request(actor: Actor, f: Fixtures): Promise<{ path: string; body?: unknown }>;
  expected: Record<Actor, number>;
}

const all = (status: number) =>
  Object.fromEntries(ACTORS.map((actor) => [actor, status])) as Record<Actor, number>;
const adminOnly = (status: number) => ({
  anonymous: 401,
  other: 403,
  limited: 403,
  owner: 403,
  admin: status,
});

async function createThrowawayUser(f: Fixtures): Promise<string> {
  const created = await api(f.stack, f.admin, "POST", "/api/v1/users", { email: `${f.unique()}@acme.io` });
  return (created.body as { id: string }).id;
}

async function createAliceState(f: Fixtures): Promise<string> {
  const created = await api(f.stack, f.alice, "POST", "/states", {
    namespace: "matrix",
    key: f.unique(),
    value: { a: 1 },
  });
  return (created.body as { id: string }).id;
}

async function createAliceKey(f: Fixtures): Promise<string> {
  const created = await api(f.stack, f.alice, "POST", "/api/v1/api-keys", {
    name: f.unique(),
    permissions: {},
  });
  return (created.body as { id: string }).id;
}

const CASES: Case[] = [
  {
    name: "GET /auth/me",
    method: "GET",
    request: async () => ({ path: "/auth/me" }),
    expected: { ...all(200), anonymous: 401 },
  },
  {
    name: "POST /auth/check-permissions",
    method: "POST",
    request: async () => ({
      path: "/auth/check-permissions",
      body: { permissions: ["sinas.users.get:all"] },
    }),
    expected: { ...all(200), anonymous: 401 },
  },
  {
    name: "GET /api/v1/users",
    method: "GET",
    request: async () => ({ path: "/api/v1/users" }),
    expected: adminOnly(200),
  },
  {
    name: "POST /api/v1/users",
    method: "POST",
    request: async (_actor, f) => ({ path: "/api/v1/users", body: { email: `${f.unique()}@acme.io` } }),
    expected: adminOnly(201),
  },
  {
    name: "GET /api/v1/users/{alice}",
    method: "GET",
    request: async (_actor, f) => ({ path: `/api/v1/users/${f.alice.user.id}` }),
    expected: { anonymous: 401, other: 403, limited: 200, owner: 200, admin: 200 },
  },
  {
    name: "PATCH /api/v1/users/{alice}",
    method: "PATCH",
    request: async (_actor, f) => ({ path: `/api/v1/users/${f.alice.user.id}`, body: {} }),
    expected: { anonymous: 401, other: 403, limited: 200, owner: 200, admin: 200 },
  },
  {
    name: "DELETE /api/v1/users/{user}",
    method: "DELETE",
    request: async (_actor, f) => ({ path: `/api/v1/users/${await createThrowawayUser(f)}` }),
    expected: adminOnly(200),
  },
  {
    name: "GET /api/v1/groups",
    method: "GET",
    request: async () => ({ path: "/api/v1/groups" }),
    expected: { ...all(200), anonymous: 401 },
  },
  {
    name: "POST /api/v1/groups",
    method: "POST",
    request: async (_actor, f) => ({ path: "/api/v1/groups", body: { name: f.unique() } }),
    expected: adminOnly(200),
  },
  {
    name: "GET /api/v1/groups/Team",
    method: "GET",
    request: async () => ({ path: "/api/v1/groups/Team" }),
    expected: { anonymous: 401, other: 403, limited: 200, owner: 200, admin: 200 },
  },
  {
    name: "PATCH /api/v1/groups/Team",
    method: "PATCH",
    request: async () => ({ path: "/api/v1/groups/Team", body: { description: "matrix" } }),
    expected: adminOnly(200),
  },
  {
    name: "DELETE /api/v1/groups/{group}",
    method: "DELETE",
    request: async (_actor, f) => {
      const name = f.unique();
      await api(f.stack, f.admin, "POST", "/api/v1/groups", { name });
      return { path: `/api/v1/groups/${name}` };
    },
    expected: adminOnly(200),
  },
  {
    name: "GET /api/v1/groups/Team/members",
    method: "GET",
    request: async () => ({ path: "/api/v1/groups/Team/members" }),
    expected: { anonymous: 401, other: 403, limited: 200, owner: 200, admin: 200 },
  },
  {
    name: "POST /api/v1/groups/Team/members",
    method: "POST",
    request: async (_actor, f) => ({
      path: "/api/v1/groups/Team/members",
      body: { user_id: await createThrowawayUser(f) },
    }),
    expected: adminOnly(200),
  },
  {
    name: "DELETE /api/v1/groups/Team/members/{user}",
    method: "DELETE",
    request: async (_actor, f) => {
      const userId = await createThrowawayUser(f);
      await api(f.stack, f.admin, "POST", "/api/v1/groups/Team/members", { user_id: userId });
      return { path: `/api/v1/groups/Team/members/${userId}` };
    },
    expected: adminOnly(200),
  },
  {
    name: "GET /api/v1/groups/Team/permissions",
    method: "GET",
    request: async () => ({ path: "/api/v1/groups/Team/permissions" }),
    expected: adminOnly(200),
  },
  {
    name: "POST /api/v1/groups/Team/permissions",
    method: "POST",
    request: async () => ({
      path: "/api/v1/groups/Team/permissions",
      body: { permission_key: "acme.reports.get:own", permission_value: true },
    }),
    expected: adminOnly(200),
  },
  {
    name: "DELETE /api/v1/groups/Team/permissions/{key}",
    method: "DELETE",
    request: async (_actor, f) => {
      const key = `acme.${f.unique()}.get:own`;
      await api(f.stack, f.admin, "POST", "/api/v1/groups/Team/permissions", {
        permission_key: key,
        permission_value: true,
      });
      return { path: `/api/v1/groups/Team/permissions/${encodeURIComponent(key)}` };
    },
    expected: adminOnly(200),
  },
  {
    name: "POST /api/v1/api-keys",
    method: "POST",
    request: async (_actor, f) => ({ path: "/api/v1/api-keys", body: { name: f.unique(), permissions: {} } }),
    expected: { ...all(201), anonymous: 401 },
  },
  {
    name: "GET /api/v1/api-keys",
    method: "GET",
    request: async () => ({ path: "/api/v1/api-keys" }),
    expected: { ...all(200), anonymous: 401 },
  },
  {
    name: "GET /api/v1/api-keys/{alice's key}",
    method: "GET",
    request: async (_actor, f) => ({ path: `/api/v1/api-keys/${await createAliceKey(f)}` }),
    expected: { anonymous: 401, other: 404, limited: 200, owner: 200, admin: 404 },
  },
  {
    name: "DELETE /api/v1/api-keys/{alice's key}",
    method: "DELETE",
    request: async (_actor, f) => ({ path: `/api/v1/api-keys/${await createAliceKey(f)}` }),
    expected: { anonymous: 401, other: 404, limited: 204, owner: 204, admin: 404 },
  },
  {
    name: "POST /states",
    method: "POST",
    request: async (_actor, f) => ({
      path: "/states",
      body: { namespace: "matrix", key: f.unique(), value: {} },
    }),
    expected: { anonymous: 401, other: 200, limited: 403, owner: 200, admin: 200 },
  },
  {
    name: "GET /states",
    method: "GET",
    request: async () => ({ path: "/states" }),
    expected: { ...all(200), anonymous: 401 },
  },
  {
    name: "GET /states/{alice's state}",
    method: "GET",
    request: async (_actor, f) => ({ path: `/states/${await createAliceState(f)}` }),
    expected: { anonymous: 401, other: 403, limited: 200, owner: 200, admin: 200 },
  },
  {
    name: "PUT /states/{alice's state}",
    method: "PUT",
    request: async (_actor, f) => ({
      path: `/states/${await createAliceState(f)}`,
      body: { value: { b: 2 } },
    }),
    expected: { anonymous: 401, other: 403, limited: 403, owner: 200, admin: 200 },
  },
  {
    name: "DELETE /states/{alice's state}",
    method: "DELETE",
    request: async (_actor, f) => ({ path: `/states/${await createAliceState(f)}` }),
    expected: { anonymous: 401, other: 403, limited: 403, owner: 200, admin: 200 },
  },
  {
    name: "GET /api/v1/request-logs",
    method: "GET",
    request: async () => ({ path: "/api/v1/request-logs" }),
    // The key holds no sinas.logs.get:own: not even its owner's own rows.
    expected: { ...all(200), anonymous: 401, limited: 403 },
  },
  {
    name: "GET /api/v1/request-logs?user_id={alice}",
    method: "GET",
    request: async (_actor, f) => ({ path: `/api/v1/request-logs?user_id=${f.alice.user.id}` }),
    expected: { anonymous: 401, other: 403, limited: 403, owner: 200, admin: 200 },
  },
  {
    name: "GET /api/v1/request-logs/stats?user_id={alice}",
    method: "GET",
    request: async (_actor, f) => ({ path: `/api/v1/request-logs/stats?user_id=${f.alice.user.id}` }),
    expected: { anonymous: 401, other: 403, limited: 403, owner: 200, admin: 200 },
  },
];

let fixtures: Fixtures;

beforeAll(async () => {
  const stack = await startTestStack({ workerVars: IDENTITY_VARS });
  const admin = await login(stack, SUPERADMIN_EMAIL);
  const alice = await login(stack, "alice@acme.io");
  const bob = await login(stack, "bob@acme.io");
  await api(stack, admin, "POST", "/api/v1/groups", { name: "Team" });
  await api(stack, admin, "POST", "/api/v1/groups/Team/members", { user_id: alice.user.id });
  const key = await api(stack, alice, "POST", "/api/v1/api-keys", {
    name: "limited",
    permissions: { "sinas.states.get:own": true },
  });
  let counter = 0;
  fixtures = {
    stack,
    admin,
    alice,
    bob,
    unique: () => `matrix${++counter}x${Date.now().toString(36)}`,
    caller: {
      anonymous: null,
      other: bob,
      limited: { headers: { "x-api-key": (key.body as { key: string }).key } },
      owner: alice,
      admin,
    },
  };
});
afterAll(() => fixtures?.stack.stop());

describe("permission matrix", () => {
  for (const testCase of CASES) {
    it(testCase.name, async () => {
      const actual: Partial<Record<Actor, number>> = {};
      for (const actor of ACTORS) {
        const { path, body } = await testCase.request(actor, fixtures);
        actual[actor] = (
          await api(fixtures.stack, fixtures.caller[actor], testCase.method, path, body)
        ).status;
      }
      expect(actual).toEqual(testCase.expected);
    });
  }
});
