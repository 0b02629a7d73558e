/**
 * @module Logging in through the real OTP flow: `POST /auth/login`, the code from the SMTP sink,
 * `POST /auth/verify-otp`. Start the stack with `AUTO_PROVISION_USERS: "true"` (see `IDENTITY_VARS`).
 */
import { expect } from "vitest";
import { extractOtp, listMails, waitForMail } from "./mail";
import type { TestStack } from "./stack";

/** Worker vars most identity tests want: auto-provisioned users and a known superadmin. */
export const SUPERADMIN_EMAIL = "admin@acme.io";
export const IDENTITY_VARS = { AUTO_PROVISION_USERS: "true", SUPERADMIN_EMAIL } as const;

export interface Session {
  accessToken: string;
  refreshToken: string;
  user: { id: string; email: string };
  /** Headers for an authenticated request. */
  headers: Record<string, string>;
}

/** Starts a login and returns the session id and the code the sink received. */
export async function requestOtp(
  stack: TestStack,
  email: string,
): Promise<{ sessionId: string; code: string }> {
  const before = (await listMails(stack, email)).at(-1)?.id ?? 0;
  const response = await stack.fetch("/auth/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email }),
  });
  expect(response.status, await response.clone().text()).toBe(200);
  const { session_id: sessionId } = (await response.json()) as { session_id: string };
  const mail = await waitForMail(stack, email.trim().toLowerCase(), { after: before });
  return { sessionId, code: extractOtp(mail) };
}

export async function verifyOtp(stack: TestStack, sessionId: string, code: string): Promise<Response> {
  return stack.fetch("/auth/verify-otp", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ session_id: sessionId, otp_code: code }),
  });
}

export async function login(stack: TestStack, email: string): Promise<Session> {
  const { sessionId, code } = await requestOtp(stack, email);
  const response = await verifyOtp(stack, sessionId, code);
  expect(response.status, await response.clone().text()).toBe(200);
  const body = (await response.json()) as {
    access_token: string;
    refresh_token: string;
    user: { id: string; email: string };
  };
  return {
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    user: body.user,
    headers: { authorization: `Bearer ${body.access_token}`, "content-type": "application/json" },
  };
}

/** JSON request helper: `api(stack, session, "POST", "/states", body)`. */
export async function api(
  stack: TestStack,
  session: Pick<Session, "headers"> | null,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: unknown; headers: Headers }> {
  const response = await stack.fetch(path, {
    method,
    headers: { "content-type": "application/json", ...(session?.headers ?? {}) },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: keep the text.
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

/** Whether a bearer `token` (a run's context token, say) holds `permission`, as POST /auth/check-permissions says. */
export async function tokenHolds(stack: TestStack, token: string, permission: string): Promise<boolean> {
  const bearer = { headers: { authorization: `Bearer ${token}` } };
  const check = await api(stack, bearer, "POST", "/auth/check-permissions", { permissions: [permission] });
  if (check.status !== 200)
    throw new Error(`check-permissions answered ${check.status}: ${JSON.stringify(check.body)}`);
  return (check.body as { checks: { has_permission: boolean }[] }).checks[0]?.has_permission === true;
}
