/**
 * Black-box tests of /states through the real stack: spec scenario S31 (with D-6), encrypted states
 * (ciphertext at rest, plaintext through the API), TTL with the cron purge (D-38), and bad input.
 */
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DbHandle } from "../../workers/db/client";
import { groupMembers, groups, states } from "../../workers/db/schema";
import { encryptText } from "../../workers/lib/crypto";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL } from "../helpers/auth";
import { openStackDb } from "../helpers/db";
import { startTestStack, type TestStack } from "../helpers/stack";

interface StateBody {
  id: string;
  user_id: string;
  group_id: string | null;
  namespace: string;
  key: string;
  value: Record<string, unknown>;
  visibility: string;
  description: string | null;
  tags: string[];
  relevance_score: number;
  expires_at: string | null;
  created_at: string;
  updated_at: string;
  encrypted: boolean;
}

interface ErrorBody {
  code: string;
  message: string;
  detail: string | { loc: (string | number)[]; msg: string; type: string }[];
}

let stack: TestStack;
let database: DbHandle;
let admin: Session;
let userU: Session;
let userV: Session;

beforeAll(async () => {
  stack = await startTestStack({ workerVars: IDENTITY_VARS });
  database = openStackDb(stack);
  admin = await login(stack, SUPERADMIN_EMAIL);
  userU = await login(stack, "u@states.test");
  userV = await login(stack, "v@states.test");
});
afterAll(async () => {
  await database?.close();
  await stack?.stop();
});

const call = (session: Session | null, method: string, path: string, body?: unknown) =>
  api(stack, session, method, path, body);

async function createState(session: Session, body: Record<string, unknown>): Promise<StateBody> {
  const response = await call(session, "POST", "/states", body);
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body as StateBody;
}

async function listStates(session: Session, query = ""): Promise<StateBody[]> {
  const response = await call(session, "GET", `/states${query}`);
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body as StateBody[];
}

function expectError(response: { status: number; body: unknown }, status: number, detail: string): void {
  expect(response.status, JSON.stringify(response.body)).toBe(status);
  expect((response.body as ErrorBody).detail).toBe(detail);
}

/** Asserts a 422 whose field issues point at `loc` (e.g. `["body", "value"]`). */
function expectFieldError(response: { status: number; body: unknown }, loc: (string | number)[]): ErrorBody {
  expect(response.status, JSON.stringify(response.body)).toBe(422);
  const body = response.body as ErrorBody;
  expect(body.code).toBe("VALIDATION_FAILED");
  expect(Array.isArray(body.detail)).toBe(true);
  expect((body.detail as { loc: unknown }[]).map((issue) => issue.loc)).toContainEqual(loc);
  return body;
}

async function countStates(): Promise<number> {
  const result = await database.db.execute(sql`select count(*)::int as count from states`);
  return (result.rows[0] as { count: number }).count;
}

async function storedState(id: string) {
  const [row] = await database.db
    .select({
      value: sql<string>`${states.value}::text`,
      ciphertext: states.valueCiphertext,
      encrypted: states.encrypted,
    })
    .from(states)
    .where(eq(states.id, id));
  return row;
}

/** Group `Team` with A, U and V as active members: through the groups API when it exists, else SQL. */
async function createTeam(): Promise<string> {
  const created = await call(admin, "POST", "/api/v1/groups", { name: "Team" });
  if (created.status === 200 || created.status === 201) {
    for (const member of [userU, userV]) {
      const added = await call(admin, "POST", "/api/v1/groups/Team/members", { user_id: member.user.id });
      expect(added.status, JSON.stringify(added.body)).toBe(200);
    }
    return (created.body as { id: string }).id;
  }
  expect(created.status, "groups API neither absent nor working").toBe(404);
  const [team] = await database.db.insert(groups).values({ name: "Team" }).returning({ id: groups.id });
  if (!team) throw new Error("group not inserted");
  await database.db.insert(groupMembers).values([
    { groupId: team.id, userId: admin.user.id, role: "admin", active: true },
    { groupId: team.id, userId: userU.user.id, role: "member", active: true },
    { groupId: team.id, userId: userV.user.id, role: "member", active: true },
  ]);
  return team.id;
}

describe("S31: the state API", () => {
  let k1: StateBody;
  let old: StateBody;

  it("1. creates a private state with defaults and refuses a duplicate namespace/key", async () => {
    const body = {
      namespace: "notes",
      key: "k1",
      value: { a: 1 },
      tags: ["x", "y"],
      description: "First Note",
    };
    k1 = await createState(userU, body);
    expect(k1).toMatchObject({
      namespace: "notes",
      key: "k1",
      value: { a: 1 },
      visibility: "private",
      relevance_score: 1,
      group_id: null,
      user_id: userU.user.id,
      tags: ["x", "y"],
      description: "First Note",
      expires_at: null,
      encrypted: false,
    });
    expect(new Date(k1.created_at).toISOString()).toBe(k1.created_at);
    expectError(
      await call(userU, "POST", "/states", body),
      400,
      "Context with namespace 'notes' and key 'k1' already exists",
    );
  });

  it("lets two users hold the same namespace/key, and rejects parallel duplicates race-free", async () => {
    const body = { namespace: "race", key: "same", value: {} };
    const attempts = await Promise.all(Array.from({ length: 5 }, () => call(userU, "POST", "/states", body)));
    expect(attempts.filter((attempt) => attempt.status === 200)).toHaveLength(1);
    expect(attempts.filter((attempt) => attempt.status === 400)).toHaveLength(4);
    await createState(userV, body);
  });

  it("2. filters by tags (all must be present), search (case-insensitive) and namespace", async () => {
    expect(await listStates(userU, "?tags=x,y")).toHaveLength(1);
    expect(await listStates(userU, "?tags=x,z")).toHaveLength(0);
    expect(await listStates(userU, "?search=FIRST")).toHaveLength(1);
    expect(await listStates(userU, "?search=k1")).toHaveLength(1);
    expect(await listStates(userU, "?search=%25")).toHaveLength(0);
    expect(await listStates(userU, "?namespace=other")).toHaveLength(0);
    expect((await listStates(userU, "?namespace=notes&visibility=private")).map((state) => state.id)).toEqual(
      [k1.id],
    );
  });

  it("3. updates value and score, validates the score and value, and refuses group visibility without a group", async () => {
    const updated = await call(userU, "PUT", `/states/${k1.id}`, { value: { a: 2 }, relevance_score: 0.5 });
    expect(updated.status, JSON.stringify(updated.body)).toBe(200);
    expect(updated.body).toMatchObject({
      value: { a: 2 },
      relevance_score: 0.5,
      tags: ["x", "y"],
      description: "First Note",
    });
    expectFieldError(await call(userU, "PUT", `/states/${k1.id}`, { relevance_score: 2 }), [
      "body",
      "relevance_score",
    ]);
    expectFieldError(await call(userU, "POST", "/states", { namespace: "n", key: "arr", value: [1] }), [
      "body",
      "value",
    ]);
    expectError(
      await call(userU, "PUT", `/states/${k1.id}`, { visibility: "group" }),
      400,
      "Cannot change to group visibility without a group_id",
    );
    const unchanged = await call(userU, "PUT", `/states/${k1.id}`, { description: null, tags: null });
    expect(unchanged.body).toMatchObject({
      description: "First Note",
      tags: ["x", "y"],
      visibility: "private",
    });
  });

  it("4. hides a private state from another user", async () => {
    expectError(await call(userV, "GET", `/states/${k1.id}`), 403, "Not authorized to view this context");
    expect((await listStates(userV)).map((state) => state.id)).not.toContain(k1.id);
    expectError(
      await call(userV, "PUT", `/states/${k1.id}`, { value: {} }),
      403,
      "Not authorized to update this context",
    );
    expectError(
      await call(userV, "DELETE", `/states/${k1.id}`),
      403,
      "Not authorized to delete this context",
    );
  });

  it("5. requires post:group and then a group_id for group visibility", async () => {
    const body = { namespace: "team", key: "nogroup", value: {}, visibility: "group" };
    expectError(await call(admin, "POST", "/states", body), 400, "group_id is required for group visibility");
    expectError(await call(userU, "POST", "/states", body), 403, "Not authorized to create group contexts");
  });

  it("6. accepts an expiry with any offset and hides the expired state", async () => {
    old = await createState(userU, {
      namespace: "notes",
      key: "old",
      value: {},
      expires_at: "2000-01-01T00:00:00Z",
    });
    expect(old.expires_at).toBe("2000-01-01T00:00:00.000Z");
    expectError(await call(userU, "GET", `/states/${old.id}`), 404, "Context has expired");
    expect((await listStates(userU)).map((state) => state.id)).not.toContain(old.id);
    const offset = await createState(userU, {
      namespace: "notes",
      key: "offset",
      value: {},
      expires_at: "2999-06-01T12:00:00+02:00",
    });
    expect(offset.expires_at).toBe("2999-06-01T10:00:00.000Z");
  });

  it("7. shares a group-visible state with the group's members, read-only for Users", async () => {
    const teamId = await createTeam();
    const plan = await createState(admin, {
      namespace: "team",
      key: "plan",
      value: { p: 1 },
      visibility: "group",
      group_id: teamId,
    });
    expect(plan).toMatchObject({ visibility: "group", group_id: teamId });
    expect((await listStates(userV, "?namespace=team")).map((state) => state.id)).toContain(plan.id);
    const read = await call(userV, "GET", `/states/${plan.id}`);
    expect(read.status, JSON.stringify(read.body)).toBe(200);
    expect(read.body).toMatchObject({ value: { p: 1 } });
    expectError(
      await call(userV, "DELETE", `/states/${plan.id}`),
      403,
      "Not authorized to delete this context",
    );
    expectError(
      await call(userV, "POST", "/states", {
        namespace: "n",
        key: "k",
        value: {},
        group_id: crypto.randomUUID(),
      }),
      403,
      "Not a member of the specified group",
    );
    // A private state filed under the group cannot be turned group-visible without post:group either.
    const quiet = await createState(userU, { namespace: "team", key: "quiet", value: {}, group_id: teamId });
    expectError(
      await call(userU, "PUT", `/states/${quiet.id}`, { visibility: "group" }),
      403,
      "Not authorized to create group contexts",
    );
    expectError(await call(userV, "GET", `/states/${quiet.id}`), 403, "Not authorized to view this context");
  });

  it("8. deletes a state", async () => {
    const deleted = await call(userU, "DELETE", `/states/${k1.id}`);
    expect(deleted.status).toBe(200);
    expect(deleted.body).toEqual({ message: "Context 'notes/k1' deleted successfully" });
    expectError(await call(userU, "GET", `/states/${k1.id}`), 404, "Context not found");
  });

  it("lets the superadmin (get:all) read any user's state", async () => {
    const mine = await createState(userV, { namespace: "v", key: "private", value: { v: true } });
    expect((await call(admin, "GET", `/states/${mine.id}`)).status).toBe(200);
    expect((await listStates(admin, "?namespace=v")).map((state) => state.id)).toContain(mine.id);
  });

  it("lists nothing for an API key made with no permissions (it holds not even get:own)", async () => {
    await createState(userU, { namespace: "keyed", key: "k", value: { v: 1 } });
    const created = await call(userU, "POST", "/api/v1/api-keys", { name: "nothing", permissions: {} });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const response = await stack.fetch("/states?namespace=keyed", {
      headers: { "x-api-key": (created.body as { key: string }).key },
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual([]);
    expect(await listStates(userU, "?namespace=keyed")).toHaveLength(1);
  });

  it("needs authentication on every route", async () => {
    expect((await call(null, "GET", "/states")).status).toBe(401);
    expect((await call(null, "POST", "/states", { namespace: "n", key: "k", value: {} })).status).toBe(401);
    expect((await call(null, "GET", `/states/${crypto.randomUUID()}`)).status).toBe(401);
  });
});

describe("encrypted states", () => {
  it("stores ciphertext at rest and returns plaintext through the API, also after an update", async () => {
    const secret = "s3cret-plaintext-value";
    const created = await createState(userU, {
      namespace: "secrets",
      key: "api",
      value: { token: secret },
      tags: ["vault"],
      encrypted: true,
    });
    expect(created).toMatchObject({ value: { token: secret }, encrypted: true });

    const stored = await storedState(created.id);
    expect(stored?.encrypted).toBe(true);
    expect(JSON.parse(stored?.value ?? "null")).toEqual({});
    expect(stored?.ciphertext).toMatch(/^v1\./);
    expect(stored?.ciphertext).not.toContain(secret);

    const read = await call(userU, "GET", `/states/${created.id}`);
    expect(read.body).toMatchObject({ value: { token: secret }, encrypted: true });
    expect((await listStates(userU, "?namespace=secrets"))[0]?.value).toEqual({ token: secret });
    expect(await listStates(userU, `?search=${secret}`)).toHaveLength(0);

    const rotated = "rotated-secret-value";
    const updated = await call(userU, "PUT", `/states/${created.id}`, { value: { token: rotated } });
    expect(updated.status, JSON.stringify(updated.body)).toBe(200);
    expect(updated.body).toMatchObject({ value: { token: rotated }, encrypted: true });
    const restored = await storedState(created.id);
    expect(JSON.parse(restored?.value ?? "null")).toEqual({});
    expect(restored?.ciphertext).not.toBe(stored?.ciphertext);
    expect(restored?.ciphertext).not.toContain(rotated);
    expect((await call(userU, "GET", `/states/${created.id}`)).body).toMatchObject({
      value: { token: rotated },
    });
    // The request log keeps no encrypted value, whatever its keys are called (`token` is redacted anyway).
    const note = "plain-looking-note-4711";
    await createState(userU, { namespace: "secrets", key: "note", value: { note }, encrypted: true });
    const logged = async () =>
      (
        await database.db.execute(
          sql`select request_body::text as body from request_logs where path like '/states%' and method in ('POST', 'PUT')`,
        )
      ).rows as { body: string | null }[];
    for (let attempt = 0; attempt < 50 && (await logged()).length < 3; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const bodies = (await logged()).map((row) => row.body ?? "").join("\n");
    expect(bodies).toContain("***REDACTED***");
    expect(bodies).not.toContain(secret);
    expect(bodies).not.toContain(rotated);
    expect(bodies).not.toContain(note);
  });

  it("shows a value it cannot decrypt (another key) marked and empty, and every other state as usual", async () => {
    const vault = await createGroup("Vault", [userU, userV], ["sinas.states.post:group"]);
    const sealed = await createState(userU, {
      namespace: "rotated",
      key: "sealed",
      value: { pin: "1234" },
      visibility: "group",
      group_id: vault,
      encrypted: true,
    });
    const readable = await createState(userU, {
      namespace: "rotated",
      key: "readable",
      value: { pin: "5678" },
      encrypted: true,
    });
    // Sealed under a key the stack does not hold, as a key rotation leaves older rows.
    const otherKey = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64");
    const foreign = await encryptText(JSON.stringify({ pin: "1234" }), otherKey);
    await database.db.update(states).set({ valueCiphertext: foreign }).where(eq(states.id, sealed.id));
    try {
      const marked = { id: sealed.id, value: {}, encrypted: true, decryption_failed: true };
      for (const session of [userU, userV, admin]) {
        const listed = await listStates(session, "?namespace=rotated");
        expect(listed.find((state) => state.id === sealed.id)).toMatchObject(marked);
      }
      const own = await listStates(userU, "?namespace=rotated");
      const intact = own.find((state) => state.id === readable.id);
      expect(intact).toMatchObject({ value: { pin: "5678" } });
      expect(intact).not.toHaveProperty("decryption_failed");
      const read = await call(userV, "GET", `/states/${sealed.id}`);
      expect(read.status, JSON.stringify(read.body)).toBe(200);
      expect(read.body).toMatchObject(marked);
      // A new value is sealed under the current key, which reads it again.
      const rewritten = await call(userU, "PUT", `/states/${sealed.id}`, { value: { pin: "9999" } });
      expect(rewritten.body).toMatchObject({ value: { pin: "9999" } });
      expect(rewritten.body).not.toHaveProperty("decryption_failed");
    } finally {
      await database.db.delete(states).where(eq(states.namespace, "rotated"));
    }
  });
});

describe("TTL", () => {
  it("keeps expired states reachable by PUT, and the cron tick purges only expired rows", async () => {
    const expired = await createState(userU, {
      namespace: "ttl",
      key: "gone",
      value: {},
      expires_at: "2001-01-01T00:00:00+01:00",
    });
    const alive = await createState(userU, {
      namespace: "ttl",
      key: "kept",
      value: {},
      expires_at: "2999-01-01T00:00:00Z",
    });
    expectError(await call(userU, "GET", `/states/${expired.id}`), 404, "Context has expired");
    expect((await call(userU, "PUT", `/states/${expired.id}`, { description: "still here" })).status).toBe(
      200,
    );

    expect((await stack.fetch("/__scheduled?cron=*+*+*+*+*")).status).toBe(200);
    // The tick runs in waitUntil, after the trigger has answered.
    const present = async (id: string) =>
      (await database.db.select().from(states).where(eq(states.id, id))).length > 0;
    for (let attempt = 0; attempt < 100 && (await present(expired.id)); attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await present(expired.id)).toBe(false);
    expect(await present(alive.id)).toBe(true);
    expectError(await call(userU, "GET", `/states/${expired.id}`), 404, "Context not found");
  });
});

describe("bad input", () => {
  it("answers 422 naming the field and writes nothing", async () => {
    const before = await countStates();
    const valid = { namespace: "bad", key: "k", value: {} };
    expectFieldError(await call(userU, "POST", "/states", { ...valid, value: [1, 2] }), ["body", "value"]);
    expectFieldError(await call(userU, "POST", "/states", { ...valid, value: "text" }), ["body", "value"]);
    expectFieldError(await call(userU, "POST", "/states", { ...valid, relevance_score: 2 }), [
      "body",
      "relevance_score",
    ]);
    const extra = expectFieldError(await call(userU, "POST", "/states", { ...valid, colour: "red" }), [
      "body",
    ]);
    expect(extra.message).toContain("colour");
    expectFieldError(await call(userU, "POST", "/states", { ...valid, namespace: "n".repeat(101) }), [
      "body",
      "namespace",
    ]);
    expectFieldError(await call(userU, "POST", "/states", { ...valid, key: "" }), ["body", "key"]);
    expectFieldError(await call(userU, "POST", "/states", { ...valid, expires_at: "tomorrow" }), [
      "body",
      "expires_at",
    ]);
    expectFieldError(await call(userU, "POST", "/states", { namespace: "bad", key: "k" }), ["body", "value"]);
    expectFieldError(await call(userU, "GET", "/states/not-a-uuid"), ["path", "id"]);
    expectFieldError(await call(userU, "PUT", "/states/not-a-uuid", { value: {} }), ["path", "id"]);
    expectFieldError(await call(userU, "DELETE", "/states/not-a-uuid"), ["path", "id"]);
    expectFieldError(await call(userU, "GET", "/states?limit=0"), ["query", "limit"]);
    expectFieldError(await call(userU, "GET", "/states?limit=1001"), ["query", "limit"]);
    // NUL characters, which Postgres text refuses (a 500 before).
    expectFieldError(await call(userU, "POST", "/states", { ...valid, namespace: "a\u0000" }), [
      "body",
      "namespace",
    ]);
    expectFieldError(await call(userU, "POST", "/states", { ...valid, tags: ["\u0000"] }), [
      "body",
      "tags",
      0,
    ]);
    expectFieldError(await call(userU, "GET", "/states?search=%00"), ["query", "search"]);
    expect((await call(userU, "GET", "/api/v1/groups/%00")).status).toBe(404);
    expect(await countStates()).toBe(before);
  });

  it("refuses a value nested past 256 levels, unpaired surrogates, NUL and 1e309 anywhere in the body (422)", async () => {
    const before = await countStates();
    const raw = async (body: string) => {
      const response = await stack.fetch("/states", {
        method: "POST",
        headers: { ...userU.headers, "content-type": "application/json" },
        body,
      });
      return { status: response.status, body: (await response.json()) as unknown };
    };
    const deep = (depth: number) => `${'{"a":'.repeat(depth - 1)}{}${"}".repeat(depth - 1)}`;
    // 10,000 levels stored in a json column hung embedded PGlite for every request after it.
    for (const depth of [257, 10_000]) {
      const refused = expectFieldError(
        await raw(`{"namespace":"d","key":"k${depth}","value":${deep(depth)}}`),
        ["body", "value"],
      );
      expect(refused.message).toContain("more than 256 levels deep");
    }
    expect((await raw(`{"namespace":"d","key":"fits","value":${deep(256)}}`)).status).toBe(200);
    // A tag with an unpaired surrogate was stored, then broke every `tags=` search (a cast to jsonb) with 500s.
    expectFieldError(await raw('{"namespace":"d","key":"t","value":{},"tags":["a\\ud800b"]}'), [
      "body",
      "tags",
      0,
    ]);
    expectFieldError(await raw('{"namespace":"d","key":"s","value":{"x":{"\\udc00":1}}}'), [
      "body",
      "value",
      "x",
    ]);
    expectFieldError(await raw('{"namespace":"d","key":"n","value":{"x":["a\\u0000"]}}'), [
      "body",
      "value",
      "x",
      0,
    ]);
    expectFieldError(await raw('{"namespace":"d","key":"i","value":{"x":1e309}}'), ["body", "value", "x"]);
    // A valid pair (an emoji) is fine.
    expect((await raw('{"namespace":"d","key":"e","value":{"x":"\\ud83d\\ude00"}}')).status).toBe(200);
    // Sent in chunks (no Content-Length): the same check; above 4 MiB, 413 before any route reads it.
    const chunked = (text: string) =>
      stack.fetch("/states", {
        method: "POST",
        headers: { ...userU.headers, "content-type": "application/json" },
        body: new Blob([text]).stream(),
        duplex: "half",
      } as RequestInit);
    expect((await chunked(`{"namespace":"d","key":"c","value":${deep(10_000)}}`)).status).toBe(422);
    expect((await chunked(`{"namespace":"d","key":"c","value":{}}`)).status).toBe(200);
    expect(
      (await chunked(`{"namespace":"d","key":"big","value":{"s":"${"x".repeat(4 * 1024 * 1024)}"}}`)).status,
    ).toBe(413);
    expect(await countStates()).toBe(before + 3);
    expect((await call(userU, "GET", "/states?tags=x")).status).toBe(200);
    // Without credentials the route's 401 comes first: the body is not read for nothing.
    const anonymous = await stack.fetch("/states", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: `{"namespace":"d","key":"x","value":${deep(10_000)}}`,
    });
    expect(anonymous.status).toBe(401);
  });

  it("refuses an expires_at whose UTC year is outside 1..9999, which Postgres cannot store", async () => {
    const before = await countStates();
    const valid = { namespace: "bad", key: "year", value: {} };
    for (const expiresAt of [
      "9999-12-31T23:59:59-05:00",
      "0000-06-01T00:00:00Z",
      "0001-01-01T00:30:00+01:00",
    ]) {
      const refused = expectFieldError(
        await call(userU, "POST", "/states", { ...valid, expires_at: expiresAt }),
        ["body", "expires_at"],
      );
      expect(refused.message).toContain("between the years 0001 and 9999");
    }
    expect(await countStates()).toBe(before);
    const state = await createState(userU, { ...valid, expires_at: "9999-12-31T23:59:59Z" });
    expect(state.expires_at).toBe("9999-12-31T23:59:59.000Z");
    expectFieldError(
      await call(userU, "PUT", `/states/${state.id}`, { expires_at: "10000-01-01T00:00:00Z" }),
      ["body", "expires_at"],
    );
    expectFieldError(
      await call(userU, "PUT", `/states/${state.id}`, { expires_at: "9999-12-31T23:59:59-00:01" }),
      ["body", "expires_at"],
    );
  });

  it("keeps a `__proto__` key of a value, as sent", async () => {
    const send = async (method: string, path: string, raw?: string) => {
      const response = await stack.fetch(path, {
        method,
        headers: { ...userU.headers, "content-type": "application/json" },
        body: raw,
      });
      return { status: response.status, text: await response.text() };
    };
    const created = await send(
      "POST",
      "/states",
      '{"namespace":"bad","key":"proto","value":{"__proto__":{"x":1},"b":2}}',
    );
    expect(created.status, created.text).toBe(200);
    expect(created.text).toContain('"value":{"__proto__":{"x":1},"b":2}');
    const id = (JSON.parse(created.text) as StateBody).id;
    expect((await storedState(id))?.value).toContain('"__proto__"');
    const updated = await send("PUT", `/states/${id}`, '{"value":{"__proto__":{"y":2}}}');
    expect(updated.status, updated.text).toBe(200);
    expect((await send("GET", `/states/${id}`)).text).toContain('"value":{"__proto__":{"y":2}}');
  });

  it("refuses unknown fields on update, including group_id, and leaves the row unchanged", async () => {
    const state = await createState(userU, { namespace: "bad", key: "update", value: { a: 1 } });
    const response = await call(userU, "PUT", `/states/${state.id}`, {
      value: { a: 2 },
      group_id: crypto.randomUUID(),
    });
    expect(expectFieldError(response, ["body"]).message).toContain("group_id");
    expectFieldError(await call(userU, "PUT", `/states/${state.id}`, { value: [1] }), ["body", "value"]);
    expect((await call(userU, "GET", `/states/${state.id}`)).body).toMatchObject({ value: { a: 1 } });
  });

  it("documents the routes in the OpenAPI document", async () => {
    const document = (await (await stack.fetch("/openapi.json")).json()) as {
      paths: Record<string, unknown>;
      components: { schemas: Record<string, unknown> };
    };
    expect(Object.keys(document.paths)).toEqual(expect.arrayContaining(["/states", "/states/{id}"]));
    expect(Object.keys(document.components.schemas)).toEqual(
      expect.arrayContaining(["StateCreate", "StateUpdate", "StateResponse"]),
    );
    const create = document.components.schemas.StateCreate as { properties: Record<string, unknown> };
    expect(create.properties.value).toMatchObject({ type: "object" });
  });
});

/** A group made through the groups API (its creator, the superadmin, joins it) with `members` and `grants`. */
async function createGroup(name: string, members: Session[], grants: string[] = []): Promise<string> {
  const created = await call(admin, "POST", "/api/v1/groups", { name });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  for (const member of members) {
    const added = await call(admin, "POST", `/api/v1/groups/${name}/members`, { user_id: member.user.id });
    expect(added.status, JSON.stringify(added.body)).toBe(200);
  }
  for (const grant of grants) {
    const set = await call(admin, "POST", `/api/v1/groups/${name}/permissions`, {
      permission_key: grant,
      permission_value: true,
    });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
  }
  return (created.body as { id: string }).id;
}

describe("publishing a state into its group", () => {
  it("refuses a user who has left the group, though another group still grants post:group", async () => {
    const former = await createGroup("Former", [userU, userV]);
    await createGroup("Publishers", [userU, userV], ["sinas.states.post:group"]);
    const left = await createState(userU, {
      namespace: "pub",
      key: "left",
      value: { s: 1 },
      group_id: former,
    });
    const stayed = await createState(userV, { namespace: "pub", key: "stayed", value: {}, group_id: former });
    const removed = await call(admin, "DELETE", `/api/v1/groups/Former/members/${userU.user.id}`);
    expect(removed.status, JSON.stringify(removed.body)).toBe(200);

    expectError(
      await call(userU, "PUT", `/states/${left.id}`, { visibility: "group" }),
      403,
      "Not a member of the specified group",
    );
    expectError(await call(userV, "GET", `/states/${left.id}`), 403, "Not authorized to view this context");
    expect((await listStates(userV, "?namespace=pub")).map((state) => state.id)).not.toContain(left.id);
    // A member holding post:group still publishes; put:all (the superadmin) needs no membership.
    const published = await call(userV, "PUT", `/states/${stayed.id}`, { visibility: "group" });
    expect(published.body).toMatchObject({ visibility: "group", group_id: former });
    const selfRemoved = await call(admin, "DELETE", `/api/v1/groups/Former/members/${admin.user.id}`);
    expect(selfRemoved.status, JSON.stringify(selfRemoved.body)).toBe(200);
    const byAdmin = await call(admin, "PUT", `/states/${left.id}`, { visibility: "group" });
    expect(byAdmin.status, JSON.stringify(byAdmin.body)).toBe(200);
  });
});

describe("an expired state's key", () => {
  it("is free for a new state, which replaces the expired row", async () => {
    const expired = await createState(userU, {
      namespace: "reuse",
      key: "k",
      value: { old: true },
      expires_at: "2000-01-01T00:00:00Z",
    });
    expect(await listStates(userU, "?namespace=reuse")).toEqual([]);
    const fresh = await createState(userU, { namespace: "reuse", key: "k", value: { new: true } });
    expect(fresh).toMatchObject({ value: { new: true }, expires_at: null });
    expect(fresh.id).not.toBe(expired.id);
    expect((await listStates(userU, "?namespace=reuse")).map((state) => state.id)).toEqual([fresh.id]);
    expectError(await call(userU, "GET", `/states/${expired.id}`), 404, "Context not found");
    expectError(
      await call(userU, "POST", "/states", { namespace: "reuse", key: "k", value: {} }),
      400,
      "Context with namespace 'reuse' and key 'k' already exists",
    );
  });

  it("goes to exactly one of several parallel creates", async () => {
    await createState(userU, {
      namespace: "reuse",
      key: "race",
      value: {},
      expires_at: "2000-01-01T00:00:00Z",
    });
    const body = { namespace: "reuse", key: "race", value: { n: 1 } };
    const attempts = await Promise.all(Array.from({ length: 5 }, () => call(userU, "POST", "/states", body)));
    expect(attempts.filter((attempt) => attempt.status === 200)).toHaveLength(1);
    expect(attempts.filter((attempt) => attempt.status === 400)).toHaveLength(4);
  });

  it("stays reachable by PUT until replaced, while GET answers 404 Context has expired", async () => {
    const expired = await createState(userU, { namespace: "reuse", key: "put", value: { v: 1 } });
    await database.db
      .update(states)
      .set({ expiresAt: sql`now() - interval '1 minute'` })
      .where(eq(states.id, expired.id));
    expectError(await call(userU, "GET", `/states/${expired.id}`), 404, "Context has expired");
    const updated = await call(userU, "PUT", `/states/${expired.id}`, { value: { v: 2 } });
    expect(updated.status, JSON.stringify(updated.body)).toBe(200);
    expectError(await call(userU, "GET", `/states/${expired.id}`), 404, "Context has expired");
  });
});
