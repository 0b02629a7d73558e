/**
 * @module OTP login (sinas-spec §4.1, with D-22 required): a 6-digit code mailed to the user, checked by
 * the session's LoginSession Durable Object, which allows at most 5 wrong attempts.
 *
 * Postgres keeps one `otp_sessions` row per live session (a new login deletes the older ones, so only
 * the newest code works); the Durable Object keeps the code's HMAC and the attempt budget.
 */
import { and, eq, ne, sql } from "drizzle-orm";
import { USERS } from "../auth/default-groups";
import { otpSessions, users } from "../db/schema";
import { requireSecret } from "../env";
import { hmacSha256Hex, randomDigits } from "../lib/crypto";
import { AppError } from "../lib/errors";
import { sendMail, smtpConfigured } from "../lib/mailer";
import { enforceRateLimit } from "../lib/rate-limit";
import { ensureBootstrapped } from "./bootstrap";
import { renderOtpMail } from "./otp-mail";
import type { Services } from "./services";
import { type IssuedTokens, issueSession } from "./sessions";
import { findUserByEmail, getOrCreateUser, normalizeEmail, toUserResponse, type UserResponse } from "./users";

const INVALID_OTP = "Invalid or expired OTP";

/** The HMAC binds the code to its session, so a stolen hash is useless for any other session. */
function otpHash(services: Services, sessionId: string, code: string): Promise<string> {
  return hmacSha256Hex(requireSecret(services.config, "SECRET_KEY"), `otp:${sessionId}:${code}`);
}

function loginSession(services: Services, sessionId: string) {
  return services.env.LOGIN_SESSION.get(services.env.LOGIN_SESSION.idFromName(sessionId));
}

export async function startLogin(
  services: Services,
  input: { email: string; ip: string | null },
): Promise<{ message: string; session_id: string }> {
  const { config } = services;
  await ensureBootstrapped(services);
  const email = normalizeEmail(input.email);
  const redis = services.redis();
  await enforceRateLimit(redis, "login:email", config.RATE_LIMIT_LOGIN_PER_EMAIL, email);
  if (input.ip) await enforceRateLimit(redis, "login:ip", config.RATE_LIMIT_LOGIN_PER_IP, input.ip);

  const db = services.db();
  if (!config.AUTO_PROVISION_USERS && !(await findUserByEmail(db, email))) {
    throw new AppError("FORBIDDEN", "User not found and auto-provisioning is disabled");
  }
  const sessionId = crypto.randomUUID();
  const code = randomDigits(6);
  const codeHash = await otpHash(services, sessionId, code);
  const expiresAt = new Date(Date.now() + config.OTP_EXPIRE_MINUTES * 60_000);

  await db.transaction(async (tx) => {
    await tx.delete(otpSessions).where(eq(otpSessions.email, email));
    await tx.insert(otpSessions).values({ id: sessionId, email, codeHash, expiresAt });
  });
  await loginSession(services, sessionId).start({ email, codeHash, expiresAt: expiresAt.getTime() });

  if (smtpConfigured(config)) {
    const mail = renderOtpMail({ code, email, expiryMinutes: config.OTP_EXPIRE_MINUTES });
    try {
      await sendMail(config, { to: email, fromLocalPart: "login", ...mail });
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new AppError("UNAVAILABLE", `Failed to send OTP email: ${reason}`, { cause: error });
    }
  } else if (config.DEV_PRINT_OTP && config.ENVIRONMENT !== "production") {
    // A warning (no mail goes out): shown at every log level of the local stack, also with request logs off.
    console.warn(`${"=".repeat(60)}\nOTP CODE FOR ${email}: ${code}\n${"=".repeat(60)}`);
  }
  return { message: "OTP sent to your email", session_id: sessionId };
}

export async function verifyLogin(
  services: Services,
  input: { sessionId: string; code: string; ip: string | null },
): Promise<IssuedTokens & { user: UserResponse }> {
  const { config } = services;
  await ensureBootstrapped(services);
  const redis = services.redis();
  if (input.ip) await enforceRateLimit(redis, "verify:ip", config.RATE_LIMIT_VERIFY_PER_IP, input.ip);
  const db = services.db();
  const [session] = await db.select().from(otpSessions).where(eq(otpSessions.id, input.sessionId)).limit(1);
  if (!session || session.verified) throw new AppError("BAD_REQUEST", INVALID_OTP);
  await enforceRateLimit(redis, "verify:email", config.RATE_LIMIT_VERIFY_PER_EMAIL, session.email);

  const verdict = await loginSession(services, input.sessionId).verify(
    await otpHash(services, input.sessionId, input.code),
  );
  if (!verdict.ok) {
    await db
      .update(otpSessions)
      .set({ attempts: verdict.attempts })
      .where(and(eq(otpSessions.id, session.id), ne(otpSessions.attempts, verdict.attempts)));
    throw new AppError("BAD_REQUEST", INVALID_OTP);
  }
  // A newer login for this e-mail deletes this row: the update then matches nothing and the code is void.
  const marked = await db
    .update(otpSessions)
    .set({ verified: true, attempts: verdict.attempts })
    .where(and(eq(otpSessions.id, session.id), eq(otpSessions.verified, false)))
    .returning({ id: otpSessions.id });
  if (marked.length === 0) throw new AppError("BAD_REQUEST", INVALID_OTP);

  const existing = await findUserByEmail(db, session.email);
  if (!existing && !config.AUTO_PROVISION_USERS) {
    throw new AppError("FORBIDDEN", "User not found and auto-provisioning is disabled");
  }
  const user = existing ?? (await getOrCreateUser(db, session.email, USERS));
  if (!user.isActive) throw new AppError("UNAUTHORIZED", "User is inactive");
  const [updated] = await db
    .update(users)
    .set({ lastLoginAt: sql`now()` })
    .where(eq(users.id, user.id))
    .returning();
  const tokens = await issueSession(db, config, user);
  return { ...tokens, user: toUserResponse(updated ?? user) };
}
