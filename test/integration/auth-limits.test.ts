import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, IDENTITY_VARS, login, requestOtp, verifyOtp } from "../helpers/auth";
import { startTestStack, type TestStack } from "../helpers/stack";

// Short lifetimes and small rate limits, in a stack of their own. The tests run in order and count on
// each other's requests from the one test IP: 2 logins, then 3 + 1 refused, then 3 more + 1 refused.
let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack({
    workerVars: {
      ...IDENTITY_VARS,
      OTP_EXPIRE_MINUTES: "0.03",
      ACCESS_TOKEN_EXPIRE_MINUTES: "0.03",
      RATE_LIMIT_LOGIN_PER_EMAIL: "3/10m",
      RATE_LIMIT_LOGIN_PER_IP: "8/10m",
    },
  });
});
afterAll(() => stack?.stop());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const startLogin = (email: string) => api(stack, null, "POST", "/auth/login", { email });

describe("lifetimes", () => {
  it("refuses an expired code", async () => {
    const { sessionId, code } = await requestOtp(stack, "late@acme.io");
    await sleep(2_500);
    const response = await verifyOtp(stack, sessionId, code);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ detail: "Invalid or expired OTP" });
  });

  it("refuses an expired access token; a refresh gets a working one", async () => {
    const session = await login(stack, "short@acme.io");
    expect((await api(stack, session, "GET", "/auth/me")).status).toBe(200);
    await sleep(2_500);
    const expired = await api(stack, session, "GET", "/auth/me");
    expect(expired.status).toBe(401);
    expect(expired.body).toMatchObject({ detail: "Invalid or expired credentials" });
    const refreshed = await api(stack, null, "POST", "/auth/refresh", {
      refresh_token: session.refreshToken,
    });
    expect(refreshed.status).toBe(200);
    const token = (refreshed.body as { access_token: string }).access_token;
    expect(
      (await api(stack, { headers: { authorization: `Bearer ${token}` } }, "GET", "/auth/me")).status,
    ).toBe(200);
  });
});

describe("rate limits", () => {
  it("limits logins per e-mail with 429 and Retry-After", async () => {
    for (let attempt = 0; attempt < 3; attempt++) expect((await startLogin("busy@acme.io")).status).toBe(200);
    const refused = await startLogin("busy@acme.io");
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ code: "RATE_LIMITED" });
    // When a call passes again: once this window's 3 calls weigh at most 2 in the next one, so within two windows.
    const retryAfter = Number(refused.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(1200);
  });

  it("limits logins per client IP across e-mails", async () => {
    for (const name of ["ip1", "ip2", "ip3"]) expect((await startLogin(`${name}@acme.io`)).status).toBe(200);
    const refused = await startLogin("ip4@acme.io");
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
  });
});
