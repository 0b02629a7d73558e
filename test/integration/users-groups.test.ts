import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL } from "../helpers/auth";
import { openStackDb } from "../helpers/db";
import { startTestStack, type TestStack } from "../helpers/stack";

let stack: TestStack;
let admin: Session;
let alice: Session;
let bob: Session;

beforeAll(async () => {
  stack = await startTestStack({ workerVars: IDENTITY_VARS });
  admin = await login(stack, SUPERADMIN_EMAIL);
  alice = await login(stack, "alice@acme.io");
  bob = await login(stack, "bob@acme.io");
});
afterAll(() => stack?.stop());

type Row = Record<string, unknown>;
const keysOf = (body: unknown) =>
  Object.fromEntries((body as Row[]).map((row) => [row.permission_key, row.permission_value]));

describe("bootstrap (S1)", () => {
  it("creates the default groups and makes SUPERADMIN_EMAIL the only Admin", async () => {
    const me = await api(stack, admin, "GET", `/api/v1/users/${admin.user.id}`);
    expect(me.body).toMatchObject({ email: SUPERADMIN_EMAIL, groups: ["Admins"] });
    const groups = await api(stack, admin, "GET", "/api/v1/groups");
    expect((groups.body as Row[]).map((group) => group.name)).toEqual(
      expect.arrayContaining(["GuestUsers", "Users", "Admins"]),
    );
    const adminPermissions = await api(stack, admin, "GET", "/api/v1/groups/Admins/permissions");
    expect(keysOf(adminPermissions.body)).toEqual({ "sinas.*:all": true });
  });

  it("grants Users the §3.5 defaults plus D-2, and GuestUsers almost nothing", async () => {
    const users = keysOf((await api(stack, admin, "GET", "/api/v1/groups/Users/permissions")).body);
    expect(users).toMatchObject({
      "sinas.chats.post:own": true,
      "sinas.users.post:all": false,
      "sinas.functions.*.post:own": true,
      "sinas.functions.*.*.execute:own": true,
      "sinas.agents.*.*.read:own": true,
      "sinas.states.post:own": true,
    });
    const guests = keysOf((await api(stack, admin, "GET", "/api/v1/groups/GuestUsers/permissions")).body);
    expect(guests).toEqual({
      "sinas.*:own": false,
      "sinas.users.get:own": true,
      "sinas.users.put:own": true,
    });
  });
});

describe("API keys (S6, D-12, D-14)", () => {
  it("creates a key shown once, usable as X-API-Key and Bearer, limited to its permissions", async () => {
    const created = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "ci",
      permissions: { "sinas.users.get:own": true },
    });
    expect(created.status).toBe(201);
    const key = created.body as { id: string; key: string; api_key: string; key_prefix: string };
    expect(key.key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(key.api_key).toBe(key.key);
    expect(key.key_prefix).toBe(key.key.slice(0, 8));

    const viaHeader = await api(stack, { headers: { "x-api-key": key.key } }, "GET", "/auth/me");
    expect(viaHeader.body).toMatchObject({ email: "alice@acme.io" });
    const viaBearer = await api(
      stack,
      { headers: { authorization: `Bearer ${key.key}` } },
      "GET",
      "/auth/me",
    );
    expect(viaBearer.status).toBe(200);
    // The key's permissions replace the user's group permissions.
    const check = await api(stack, { headers: { "x-api-key": key.key } }, "POST", "/auth/check-permissions", {
      permissions: ["sinas.users.get:own", "sinas.chats.post:own"],
    });
    expect(check.body).toMatchObject({ checks: [{ has_permission: true }, { has_permission: false }] });

    // The key acts in its owner's groups (group-scoped access): it lists the same groups as her token.
    const groupNames = async (session: Pick<Session, "headers">) =>
      ((await api(stack, session, "GET", "/api/v1/groups")).body as Row[]).map((group) => group.name);
    const ownGroups = await groupNames(alice);
    expect(ownGroups.length).toBeGreaterThan(0);
    expect(await groupNames({ headers: { "x-api-key": key.key } })).toEqual(ownGroups);

    // Its use is recorded after the response (at most once a minute per Worker isolate).
    const lastUsed = async () =>
      ((await api(stack, alice, "GET", `/api/v1/api-keys/${key.id}`)).body as Row).last_used_at;
    await expect.poll(lastUsed).toMatch(/^\d{4}-/);

    const listed = await api(stack, alice, "GET", "/api/v1/api-keys");
    expect(JSON.stringify(listed.body)).not.toContain(key.key);
    expect((listed.body as Row[]).find((row) => row.id === key.id)).toMatchObject({ is_active: true });

    const handle = openStackDb(stack);
    try {
      const stored = await handle.db.execute(sql`select * from api_keys where id = ${key.id}`);
      expect(JSON.stringify(stored.rows)).not.toContain(key.key);
    } finally {
      await handle.close();
    }

    expect((await api(stack, alice, "DELETE", `/api/v1/api-keys/${key.id}`)).status).toBe(204);
    const revoked = await api(stack, { headers: { "x-api-key": key.key } }, "GET", "/auth/me");
    expect(revoked.status).toBe(401);
    expect(revoked.body).toMatchObject({ detail: "Invalid or expired credentials" });
    const after = (await api(stack, alice, "GET", `/api/v1/api-keys/${key.id}`)).body as Row;
    expect(after.is_active).toBe(false);
    expect(after.revoked_at).not.toBeNull();
  });

  it("limits a key made with a key to its creator's expiry", async () => {
    const soon = new Date(Date.now() + 3_600_000).toISOString();
    const parent = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "hour",
      permissions: { "sinas.api_keys.post:own": true },
      expires_at: soon,
    });
    expect(parent.status).toBe(201);
    const viaKey = { headers: { "x-api-key": (parent.body as { key: string }).key } };
    const child = await api(stack, viaKey, "POST", "/api/v1/api-keys", { name: "child", permissions: {} });
    expect(child.status).toBe(201);
    expect((child.body as Row).expires_at).toBe(new Date(soon).toISOString());
    const later = await api(stack, viaKey, "POST", "/api/v1/api-keys", {
      name: "forever",
      permissions: {},
      expires_at: new Date(Date.now() + 7_200_000).toISOString(),
    });
    expect(later.status).toBe(400);
    expect(String((later.body as Row).detail)).toContain("expires_at must not be later than");
    // With her login, Alice sets any expiry.
    const own = await api(stack, alice, "POST", "/api/v1/api-keys", { name: "mine", permissions: {} });
    expect((own.body as Row).expires_at).toBeNull();
  });

  it("refuses a key wider than its creator, listing the violations; an admin may", async () => {
    const evil = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "evil",
      permissions: { "sinas.*:all": true, "sinas.users.get:own": true },
    });
    expect(evil.status).toBe(400);
    expect(String((evil.body as Row).detail)).toContain("Violations: sinas.*:all");
    expect(String((evil.body as Row).detail)).not.toContain("sinas.users.get:own");
    expect(
      (
        await api(stack, admin, "POST", "/api/v1/api-keys", {
          name: "root",
          permissions: { "sinas.*:all": true },
        })
      ).status,
    ).toBe(201);
  });

  it("cannot widen access through a key created with a key", async () => {
    const narrow = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "narrow",
      permissions: { "sinas.users.get:own": true },
    });
    const key = (narrow.body as { key: string }).key;
    const wider = await api(stack, { headers: { "x-api-key": key } }, "POST", "/api/v1/api-keys", {
      name: "wider",
      permissions: { "sinas.chats.post:own": true },
    });
    expect(wider.status).toBe(400);
    expect(String((wider.body as Row).detail)).toContain("Violations: sinas.chats.post:own");
  });

  it("keeps keys private to their owner and honours expiry", async () => {
    const mine = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "soon",
      permissions: {},
      expires_at: new Date(Date.now() + 2_000).toISOString(),
    });
    const key = mine.body as { id: string; key: string };
    expect((await api(stack, bob, "GET", `/api/v1/api-keys/${key.id}`)).status).toBe(404);
    expect((await api(stack, bob, "DELETE", `/api/v1/api-keys/${key.id}`)).status).toBe(404);
    expect((await api(stack, { headers: { "x-api-key": key.key } }, "GET", "/auth/me")).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect((await api(stack, { headers: { "x-api-key": key.key } }, "GET", "/auth/me")).status).toBe(401);
    const past = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "past",
      expires_at: "2000-01-01T00:00:00Z",
    });
    expect(past.status).toBe(400);
  });
  it("reads an expires_at without a zone as UTC (D-20)", async () => {
    const naive = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "naive",
      expires_at: "2030-01-01T00:00:00",
    });
    expect(naive.status).toBe(201);
    expect((naive.body as Row).expires_at).toBe("2030-01-01T00:00:00.000Z");
  });

  it("takes permission keys by the group grants' rule, spaces in agent names included", async () => {
    const spaced = await api(stack, admin, "POST", "/api/v1/api-keys", {
      name: "bot",
      permissions: { "sinas.agents.default.Support Bot.read:group": true },
    });
    expect(spaced.status).toBe(201);
    const bad = await api(stack, admin, "POST", "/api/v1/api-keys", {
      name: "bad",
      permissions: { "sinas.agents..read:all": true },
    });
    expect(bad.status).toBe(422);
    expect((bad.body as Row).message).toContain("permissions");
  });
});

describe("groups (S8)", () => {
  it("applies grants immediately, soft-removes and reactivates members, protects Admins", async () => {
    const created = await api(stack, admin, "POST", "/api/v1/groups", { name: "Auditors", description: "d" });
    expect(created.status).toBe(200);
    const members = await api(stack, admin, "GET", "/api/v1/groups/Auditors/members");
    expect(members.body).toEqual([expect.objectContaining({ user_id: admin.user.id, role: "admin" })]);

    const added = await api(stack, admin, "POST", "/api/v1/groups/Auditors/members", {
      user_id: alice.user.id,
    });
    expect(added.status).toBe(200);
    expect(added.body).toMatchObject({ role: "member", active: true, user_email: "alice@acme.io" });
    const again = await api(stack, admin, "POST", "/api/v1/groups/Auditors/members", {
      user_id: alice.user.id,
    });
    expect(again.status).toBe(400);
    expect(again.body).toMatchObject({ detail: "User is already a member of this group" });

    expect((await api(stack, alice, "GET", "/api/v1/users")).status).toBe(403);
    const grant = await api(stack, admin, "POST", "/api/v1/groups/Auditors/permissions", {
      permission_key: "sinas.users.get:all",
      permission_value: true,
    });
    expect(grant.status).toBe(200);
    const list = await api(stack, alice, "GET", "/api/v1/users");
    expect(list.status).toBe(200);
    expect((list.body as Row[]).map((user) => user.email)).toEqual(
      expect.arrayContaining([SUPERADMIN_EMAIL, "alice@acme.io"]),
    );

    const revoked = await api(
      stack,
      admin,
      "DELETE",
      "/api/v1/groups/Auditors/permissions/sinas.users.get%3Aall",
    );
    expect(revoked.body).toEqual({ message: "Permission deleted successfully" });
    expect((await api(stack, alice, "GET", "/api/v1/users")).status).toBe(403);

    expect(
      (await api(stack, admin, "DELETE", `/api/v1/groups/Auditors/members/${alice.user.id}`)).status,
    ).toBe(200);
    const readded = await api(stack, admin, "POST", "/api/v1/groups/Auditors/members", {
      user_id: alice.user.id,
    });
    expect((readded.body as Row).id).toBe((added.body as Row).id);

    const adminsGrant = await api(stack, admin, "POST", "/api/v1/groups/Admins/permissions", {
      permission_key: "x:all",
      permission_value: true,
    });
    expect(adminsGrant.status).toBe(403);
    expect(adminsGrant.body).toMatchObject({ detail: "Cannot modify Admins group permissions" });
    const removeAdmin = await api(stack, admin, "DELETE", `/api/v1/groups/Admins/members/${admin.user.id}`);
    expect(removeAdmin.body).toMatchObject({ detail: "Cannot remove members from Admins group" });
  });

  it("lets members read their group but not others; deletes cascade memberships", async () => {
    await api(stack, admin, "POST", "/api/v1/groups", { name: "Temp" });
    await api(stack, admin, "POST", "/api/v1/groups/Temp/members", { user_id: bob.user.id });
    expect((await api(stack, bob, "GET", "/api/v1/groups/Temp")).status).toBe(200);
    expect((await api(stack, alice, "GET", "/api/v1/groups/Temp")).body).toMatchObject({
      detail: "Not authorized to view this group",
    });
    expect((await api(stack, bob, "GET", "/api/v1/groups/Users")).status).toBe(200);
    expect((await api(stack, bob, "GET", "/api/v1/groups/Admins")).status).toBe(403);

    const deleted = await api(stack, admin, "DELETE", "/api/v1/groups/Temp");
    expect(deleted.body).toEqual({ message: "Group 'Temp' deleted successfully" });
    expect(((await api(stack, bob, "GET", `/api/v1/users/${bob.user.id}`)).body as Row).groups).toEqual([
      "Users",
    ]);
    expect((await api(stack, admin, "DELETE", "/api/v1/groups/Users")).status).toBe(403);
    expect((await api(stack, admin, "GET", "/api/v1/groups/Temp")).status).toBe(404);

    // The default groups keep their names, and no group takes one: the start-up grants find Admins by name.
    const renamed = await api(stack, admin, "PATCH", "/api/v1/groups/Admins", { name: "Old" });
    expect(renamed).toMatchObject({ status: 403, body: { detail: "Cannot rename default group 'Admins'" } });
    await api(stack, admin, "POST", "/api/v1/groups", { name: "Crew" });
    const taken = await api(stack, admin, "PATCH", "/api/v1/groups/Crew", { name: "Admins" });
    expect(taken).toMatchObject({ status: 403, body: { detail: "'Admins' is the name of a default group" } });
    const described = await api(stack, admin, "PATCH", "/api/v1/groups/Users", { description: "everyone" });
    expect(described).toMatchObject({ status: 200, body: { name: "Users", description: "everyone" } });
  });

  it("refuses bad input with the field named and writes nothing", async () => {
    const handle = openStackDb(stack);
    const count = async () =>
      Number(
        ((await handle.db.execute(sql`select count(*)::int as n from groups`)).rows[0] as { n: number }).n,
      );
    try {
      const before = await count();
      const cases: [unknown, string][] = [
        [{}, "name"],
        [{ name: "" }, "name"],
        [{ name: "x".repeat(256) }, "name"],
        [{ name: "Ok", extra: 1 }, "extra"],
        [{ name: 7 }, "name"],
      ];
      for (const [body, field] of cases) {
        const response = await api(stack, admin, "POST", "/api/v1/groups", body);
        expect(response.status, JSON.stringify(body)).toBe(422);
        expect((response.body as Row).message).toContain(field);
      }
      const badKey = await api(stack, admin, "POST", "/api/v1/groups/Users/permissions", {
        permission_key: "no scope",
        permission_value: true,
      });
      expect(badKey.status).toBe(422);
      expect(
        (await api(stack, admin, "POST", "/api/v1/groups/Users/members", { user_id: "nope" })).status,
      ).toBe(422);
      const unknownUser = await api(stack, admin, "POST", "/api/v1/groups/Users/members", {
        user_id: "00000000-0000-4000-8000-000000000000",
      });
      expect(unknownUser.status).toBe(404);
      expect(await count()).toBe(before);
    } finally {
      await handle.close();
    }
  });

  it("grants agents whose names hold spaces; refuses blank segments, no scope, control characters", async () => {
    expect((await api(stack, admin, "POST", "/api/v1/groups", { name: "Support" })).status).toBe(200);
    const grant = await api(stack, admin, "POST", "/api/v1/groups/Support/permissions", {
      permission_key: "sinas.agents.default.Support Bot.read:group",
      permission_value: true,
    });
    expect(grant.status).toBe(200);
    expect(grant.body).toMatchObject({ permission_key: "sinas.agents.default.Support Bot.read:group" });
    // The last one would backtrack exponentially under a careless pattern; it must answer at once.
    for (const key of [
      "sinas.agents. .read:all",
      "sinas..read:all",
      "sinas.agents.default.Support Bot.read",
      "sinas.agents.Support\tBot.read:all",
      "sinas.agents.default.Support Bot.read: group",
      `sinas${".a a".repeat(60)}!`,
    ]) {
      const refused = await api(stack, admin, "POST", "/api/v1/groups/Support/permissions", {
        permission_key: key,
        permission_value: true,
      });
      expect(refused.status, key).toBe(422);
      expect((refused.body as Row).message, key).toContain("permission_key");
    }
  });

  it("names external_group_id, not the name, when that is what is taken", async () => {
    const first = await api(stack, admin, "POST", "/api/v1/groups", {
      name: "Ext1",
      external_group_id: "ext1",
    });
    expect(first.status).toBe(200);
    const created = await api(stack, admin, "POST", "/api/v1/groups", {
      name: "Ext2",
      external_group_id: "ext1",
    });
    expect(created).toMatchObject({
      status: 400,
      body: { detail: "Group with external_group_id 'ext1' already exists" },
    });
    expect((await api(stack, admin, "POST", "/api/v1/groups", { name: "Ext2" })).status).toBe(200);
    const patched = await api(stack, admin, "PATCH", "/api/v1/groups/Ext2", { external_group_id: "ext1" });
    expect(patched).toMatchObject({
      status: 400,
      body: { detail: "Group with external_group_id 'ext1' already exists" },
    });
    const renamed = await api(stack, admin, "PATCH", "/api/v1/groups/Ext2", { name: "Ext1" });
    expect(renamed).toMatchObject({ status: 400, body: { detail: "Group name 'Ext1' already exists" } });
    const dupName = await api(stack, admin, "POST", "/api/v1/groups", { name: "Ext1" });
    expect(dupName).toMatchObject({ status: 400, body: { detail: "Group 'Ext1' already exists" } });
  });
});

describe("users (S9, D-18)", () => {
  it("makes admin-created users guests, lets users see only themselves, and guards deletes", async () => {
    const created = await api(stack, admin, "POST", "/api/v1/users", { email: "Guest@Acme.io" });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ email: "guest@acme.io" });
    expect((await api(stack, admin, "POST", "/api/v1/users", { email: "guest@acme.io" })).status).toBe(409);
    const guest = await login(stack, "guest@acme.io");
    expect(guest.user.id).toBe((created.body as Row).id);
    expect((await api(stack, guest, "GET", `/api/v1/users/${guest.user.id}`)).body).toMatchObject({
      groups: ["GuestUsers"],
    });

    expect((await api(stack, bob, "GET", `/api/v1/users/${alice.user.id}`)).body).toMatchObject({
      detail: "Not authorized to view this user",
    });
    expect((await api(stack, admin, "DELETE", `/api/v1/users/${admin.user.id}`)).body).toMatchObject({
      detail: "Cannot delete your own user account",
    });
    // The same id in upper case is the same user (Postgres ignores the case, and so do the checks).
    const shouting = admin.user.id.toUpperCase();
    expect((await api(stack, admin, "DELETE", `/api/v1/users/${shouting}`)).body).toMatchObject({
      detail: "Cannot delete your own user account",
    });
    expect((await api(stack, guest, "GET", `/api/v1/users/${guest.user.id.toUpperCase()}`)).status).toBe(200);
    expect(
      (await api(stack, bob, "PATCH", `/api/v1/users/${bob.user.id}`, { is_active: false })).status,
    ).toBe(403);

    // D-18: a user who still owns a function is refused until it is gone.
    const handle = openStackDb(stack);
    try {
      await handle.db.execute(
        sql`insert into functions (user_id, name, code, input_schema, output_schema)
            values (${guest.user.id}, 'owned', 'def owned(input, context): pass', '{}', '{}')`,
      );
      const refused = await api(stack, admin, "DELETE", `/api/v1/users/${guest.user.id}`);
      expect(refused.status).toBe(409);
      expect(String((refused.body as Row).detail)).toContain("1 functions");
      await handle.db.execute(sql`delete from functions where user_id = ${guest.user.id}`);
      // A version they saved of someone else's function names them as its author: refused too (it was a 500).
      await handle.db.execute(
        sql`with fn as (insert into functions (user_id, name, code, input_schema, output_schema)
              values (${admin.user.id}, 'edited_by_guest', 'def f(input, context): pass', '{}', '{}') returning id)
            insert into function_versions (function_id, version, code, input_schema, output_schema, created_by)
            select id, 2, 'def f(input, context): pass', '{}', '{}', ${guest.user.id} from fn`,
      );
      const authored = await api(stack, admin, "DELETE", `/api/v1/users/${guest.user.id}`);
      expect(authored.status).toBe(409);
      expect(String((authored.body as Row).detail)).toContain("authored 1 versions");
      await handle.db.execute(sql`delete from functions where name = 'edited_by_guest'`);
    } finally {
      await handle.close();
    }

    const deleted = await api(stack, admin, "DELETE", `/api/v1/users/${guest.user.id}`);
    expect(deleted.body).toEqual({ message: "User 'guest@acme.io' deleted successfully" });
    expect((await api(stack, guest, "GET", "/auth/me")).status).toBe(401);
    expect((await api(stack, admin, "GET", `/api/v1/users/${guest.user.id}`)).status).toBe(404);
  });
});
