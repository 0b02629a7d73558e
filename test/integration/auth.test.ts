import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { decodeJwt, jwtVerify, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  api,
  IDENTITY_VARS,
  login,
  requestOtp,
  type Session,
  SUPERADMIN_EMAIL,
  verifyOtp,
} from "../helpers/auth";
import { openStackDb } from "../helpers/db";
import { stackSecrets } from "../helpers/secrets";
import { startTestStack, type TestStack } from "../helpers/stack";

let stack: TestStack;
let admin: Session;

beforeAll(async () => {
  // Rate limits are generous here; test/integration/auth-limits.test.ts covers them.
  stack = await startTestStack({
    workerVars: {
      ...IDENTITY_VARS,
      RATE_LIMIT_LOGIN_PER_IP: "1000/1m",
      RATE_LIMIT_VERIFY_PER_IP: "1000/1m",
      RATE_LIMIT_VERIFY_PER_EMAIL: "1000/1m",
    },
  });
  admin = await login(stack, SUPERADMIN_EMAIL);
});
afterAll(() => stack?.stop());

const secretKey = () => new TextEncoder().encode(stackSecrets(stack).SECRET_KEY);
const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

describe("OTP login", () => {
  it("mails a code over SMTP and exchanges it for tokens with the documented claims", async () => {
    const { sessionId, code } = await requestOtp(stack, "Alice@ACME.io");
    expect(stack.logs().join("\n")).toContain(`OTP CODE FOR alice@acme.io: ${code}`);
    const response = await verifyOtp(stack, sessionId, code);
    expect(response.status).toBe(200);
    const body = (await response.json()) as Record<string, unknown> & { user: { id: string; email: string } };
    expect(body).toMatchObject({ token_type: "bearer", expires_in: 900 });
    expect(body.user.email).toBe("alice@acme.io");
    expect(String(body.refresh_token)).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const { payload } = await jwtVerify(String(body.access_token), secretKey());
    expect(payload.sub).toBe(body.user.id);
    expect(payload.email).toBe("alice@acme.io");
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(900);
    expect(Object.keys(payload).sort()).toEqual(["email", "exp", "iat", "sub"]);

    const me = await api(
      stack,
      { headers: { authorization: `Bearer ${body.access_token}` } },
      "GET",
      "/auth/me",
    );
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ id: body.user.id, email: "alice@acme.io" });
    const user = await api(stack, admin, "GET", `/api/v1/users/${body.user.id}`);
    expect(user.body).toMatchObject({ groups: ["Users"] });
  });

  it("rejects a wrong code, and a used code", async () => {
    const { sessionId, code } = await requestOtp(stack, "bob@acme.io");
    const wrong = await verifyOtp(stack, sessionId, code === "000000" ? "111111" : "000000");
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toMatchObject({ code: "BAD_REQUEST", detail: "Invalid or expired OTP" });
    expect((await verifyOtp(stack, sessionId, code)).status).toBe(200);
    expect((await verifyOtp(stack, sessionId, code)).status).toBe(400);
  });

  it("keeps only the newest code of an e-mail valid", async () => {
    const first = await requestOtp(stack, "bob@acme.io");
    const second = await requestOtp(stack, "bob@acme.io");
    expect((await verifyOtp(stack, first.sessionId, first.code)).status).toBe(400);
    expect((await verifyOtp(stack, second.sessionId, second.code)).status).toBe(200);
  });

  it("ends the session after 5 wrong codes: the 6th attempt fails even with the right code", async () => {
    const { sessionId, code } = await requestOtp(stack, "carol@acme.io");
    const wrongCode = code === "999999" ? "888888" : "999999";
    for (let attempt = 1; attempt <= 5; attempt++) {
      expect((await verifyOtp(stack, sessionId, wrongCode)).status).toBe(400);
    }
    expect((await verifyOtp(stack, sessionId, code)).status).toBe(400);
  });

  it("lets 50 parallel wrong guesses burn only the budget of 5; the right code then fails", async () => {
    const { sessionId, code } = await requestOtp(stack, "dave@acme.io");
    const guesses = Array.from({ length: 50 }, (_, index) =>
      String((Number(code) + 1 + index) % 1_000_000).padStart(6, "0"),
    );
    const statuses = await Promise.all(
      guesses.map(async (guess) => (await verifyOtp(stack, sessionId, guess)).status),
    );
    expect(statuses.every((status) => status === 400)).toBe(true);
    expect((await verifyOtp(stack, sessionId, code)).status).toBe(400);

    const handle = openStackDb(stack);
    try {
      const rows = await handle.db.execute(
        sql`select attempts, verified from otp_sessions where id = ${sessionId}`,
      );
      expect(rows.rows).toEqual([{ attempts: 5, verified: false }]);
    } finally {
      await handle.close();
    }
  });

  it("never stores the code itself", async () => {
    const { sessionId, code } = await requestOtp(stack, "erin@acme.io");
    const handle = openStackDb(stack);
    try {
      const rows = await handle.db.execute(sql`select * from otp_sessions where id = ${sessionId}`);
      expect(rows.rows).toHaveLength(1);
      expect(JSON.stringify(rows.rows)).not.toContain(code);
    } finally {
      await handle.close();
    }
  });

  it("refuses malformed input with the field named", async () => {
    const badEmail = await api(stack, null, "POST", "/auth/login", { email: "nope" });
    expect(badEmail.status).toBe(422);
    expect(badEmail.body).toMatchObject({ detail: [{ loc: ["body", "email"] }] });
    const extra = await api(stack, null, "POST", "/auth/login", { email: "a@acme.io", admin: true });
    expect(extra.status).toBe(422);
    expect(JSON.stringify(extra.body)).toContain("admin");
    const badSession = await api(stack, null, "POST", "/auth/verify-otp", {
      session_id: "not-a-uuid",
      otp_code: "1",
    });
    expect(badSession.status).toBe(422);
    expect(badSession.body).toMatchObject({ detail: [{ loc: ["body", "session_id"] }] });
    const unknown = await api(stack, null, "POST", "/auth/verify-otp", {
      session_id: randomUUID(),
      otp_code: "123456",
    });
    expect(unknown.status).toBe(400);
    const tooLong = await api(stack, null, "POST", "/auth/login", { email: `${"a".repeat(250)}@acme.io` });
    expect(tooLong.status).toBe(422);
  });
});

describe("refresh tokens", () => {
  it("rotates on every use and revokes the whole family when a retired token comes back", async () => {
    const session = await login(stack, "frank@acme.io");
    const first = await api(stack, null, "POST", "/auth/refresh", { refresh_token: session.refreshToken });
    expect(first.status).toBe(200);
    const rotated = first.body as { access_token: string; refresh_token: string; expires_in: number };
    expect(rotated.refresh_token).not.toBe(session.refreshToken);
    expect(rotated.expires_in).toBe(900);
    expect((await api(stack, bearer(rotated.access_token), "GET", "/auth/me")).status).toBe(200);

    const second = await api(stack, null, "POST", "/auth/refresh", { refresh_token: rotated.refresh_token });
    expect(second.status).toBe(200);
    const latest = (second.body as { refresh_token: string }).refresh_token;

    const reuse = await api(stack, null, "POST", "/auth/refresh", { refresh_token: session.refreshToken });
    expect(reuse.status).toBe(401);
    expect(reuse.body).toMatchObject({ detail: "Invalid or expired refresh token" });
    // The reuse revoked the family: the newest token is dead too.
    expect((await api(stack, null, "POST", "/auth/refresh", { refresh_token: latest })).status).toBe(401);
  });

  it("logout revokes; unknown tokens are 404", async () => {
    const session = await login(stack, "grace@acme.io");
    expect(
      (await api(stack, null, "POST", "/auth/logout", { refresh_token: session.refreshToken })).status,
    ).toBe(204);
    expect(
      (await api(stack, null, "POST", "/auth/refresh", { refresh_token: session.refreshToken })).status,
    ).toBe(401);
    expect(
      (await api(stack, null, "POST", "/auth/logout", { refresh_token: session.refreshToken })).status,
    ).toBe(204);
    const unknown = await api(stack, null, "POST", "/auth/logout", { refresh_token: "unknown" });
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ detail: "Refresh token not found" });
  });
});

describe("credentials", () => {
  it("answers each bad credential with the documented 401", async () => {
    const missing = await api(stack, null, "GET", "/auth/me");
    expect(missing.status).toBe(401);
    expect(missing.body).toMatchObject({ code: "UNAUTHORIZED", detail: "Missing authorization header" });
    const garbage = await api(stack, bearer("garbage"), "GET", "/auth/me");
    expect(garbage.body).toMatchObject({ detail: "Invalid or expired credentials" });

    const now = Math.floor(Date.now() / 1000);
    const forged = await new SignJWT({ email: SUPERADMIN_EMAIL })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(admin.user.id)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(new TextEncoder().encode("another-secret-entirely"));
    expect((await api(stack, bearer(forged), "GET", "/auth/me")).body).toMatchObject({
      detail: "Invalid or expired credentials",
    });
    const expired = await new SignJWT({ email: SUPERADMIN_EMAIL })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(admin.user.id)
      .setIssuedAt(now - 1200)
      .setExpirationTime(now - 300)
      .sign(secretKey());
    expect((await api(stack, bearer(expired), "GET", "/auth/me")).status).toBe(401);
    const ghost = await new SignJWT({ email: "ghost@acme.io" })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(randomUUID())
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(secretKey());
    expect((await api(stack, bearer(ghost), "GET", "/auth/me")).body).toMatchObject({
      detail: "User not found",
    });
    expect(decodeJwt(admin.accessToken).sub).toBe(admin.user.id);
  });

  it("refuses an inactive user's token, refresh and login; reactivation restores access", async () => {
    const henry = await login(stack, "henry@acme.io");
    const deactivate = await api(stack, admin, "PATCH", `/api/v1/users/${henry.user.id}`, {
      is_active: false,
    });
    expect(deactivate.status).toBe(200);
    expect(deactivate.body).toMatchObject({ is_active: false });

    const me = await api(stack, henry, "GET", "/auth/me");
    expect(me.status).toBe(401);
    expect(me.body).toMatchObject({ detail: "User is inactive" });
    expect(
      (await api(stack, null, "POST", "/auth/refresh", { refresh_token: henry.refreshToken })).status,
    ).toBe(401);
    const { sessionId, code } = await requestOtp(stack, "henry@acme.io");
    expect((await verifyOtp(stack, sessionId, code)).status).toBe(401);

    expect(
      (await api(stack, admin, "PATCH", `/api/v1/users/${henry.user.id}`, { is_active: true })).status,
    ).toBe(200);
    expect((await api(stack, henry, "GET", "/auth/me")).status).toBe(200);
  });
});

describe("check-permissions", () => {
  it("evaluates AND and OR over the caller's permissions", async () => {
    const alice = await login(stack, "alice@acme.io");
    const permissions = ["sinas.chats.post:own", "sinas.users.get:all"];
    const or = await api(stack, alice, "POST", "/auth/check-permissions", { permissions, logic: "OR" });
    expect(or.body).toEqual({
      result: true,
      logic: "OR",
      checks: [
        { permission: "sinas.chats.post:own", has_permission: true },
        { permission: "sinas.users.get:all", has_permission: false },
      ],
    });
    const and = await api(stack, alice, "POST", "/auth/check-permissions", { permissions, logic: "AND" });
    expect(and.body).toMatchObject({ result: false });
    const empty = await api(stack, alice, "POST", "/auth/check-permissions", { permissions: [] });
    expect(empty.body).toMatchObject({ result: true, logic: "AND" });
    const badLogic = await api(stack, alice, "POST", "/auth/check-permissions", {
      permissions: [],
      logic: "XOR",
    });
    expect(badLogic.status).toBe(422);
  });
});

describe("API key revocation", () => {
  it("revokes the keys a key made, at any depth, also those made with a run's context token naming it", async () => {
    const owner = await login(stack, "keys@acme.io");
    const viaKey = (key: string) => ({ headers: { "x-api-key": key } });
    const permissions = { "sinas.users.get:own": true };
    const create = async (session: Pick<Session, "headers">, name: string) => {
      const created = await api(stack, session, "POST", "/api/v1/api-keys", { name, permissions });
      expect(created.status).toBe(201);
      return created.body as { id: string; key: string };
    };
    const works = async (key: string) => (await api(stack, viaKey(key), "GET", "/auth/me")).status === 200;

    const k1 = await create(owner, "k1");
    const k2 = await create(viaKey(k1.key), "k2");
    const k3 = await create(viaKey(k2.key), "k3");
    // A run started with k1 gets a context token naming k1 (workers/auth/tokens.ts); it may mint keys too.
    const now = Math.floor(Date.now() / 1000);
    const contextToken = await new SignJWT({ email: owner.user.email, akid: k1.id })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(owner.user.id)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(secretKey());
    const fromRun = await create(bearer(contextToken), "from-run");
    const sibling = await create(owner, "sibling");

    // Revoking k2 takes k3 with it, not its parent k1.
    expect((await api(stack, owner, "DELETE", `/api/v1/api-keys/${k2.id}`)).status).toBe(204);
    expect([await works(k1.key), await works(k2.key), await works(k3.key)]).toEqual([true, false, false]);

    expect((await api(stack, owner, "DELETE", `/api/v1/api-keys/${k1.id}`)).status).toBe(204);
    expect([await works(k1.key), await works(fromRun.key), await works(sibling.key)]).toEqual([
      false,
      false,
      true,
    ]);
    const listed = (await api(stack, owner, "GET", "/api/v1/api-keys")).body as {
      name: string;
      is_active: boolean;
      revoked_at: string | null;
    }[];
    expect(Object.fromEntries(listed.map((key) => [key.name, key.is_active]))).toEqual({
      k1: false,
      k2: false,
      k3: false,
      "from-run": false,
      sibling: true,
    });
    expect((await api(stack, bearer(contextToken), "GET", "/auth/me")).status).toBe(401);
  });
});

describe("external auth", () => {
  it("answers 503 as SINAS does with OIDC disabled, and is documented", async () => {
    const response = await api(stack, null, "POST", "/auth/external-auth", { token: "x" });
    expect(response.status).toBe(503);
    expect(response.body).toMatchObject({ detail: "External authentication not configured" });
    const document = (await api(stack, null, "GET", "/openapi.json")).body as {
      paths: Record<string, unknown>;
    };
    expect(document.paths).toHaveProperty(["/auth/external-auth", "post"]);
  });
});
