/**
 * @module Outgoing mail over SMTP with worker-mailer (TCP via `cloudflare:sockets`).
 */
import { WorkerMailer } from "worker-mailer";
import type { AppConfig } from "../env";

export interface OutgoingMail {
  to: string;
  subject: string;
  text: string;
  html: string;
  fromLocalPart: string;
  fromName?: string;
}

export function smtpConfigured(config: AppConfig): boolean {
  return Boolean(config.SMTP_HOST && config.SMTP_DOMAIN);
}

/** Sends one mail; rejects with the SMTP error (callers map it to 503). 10 s per step, as SINAS. */
export async function sendMail(config: AppConfig, mail: OutgoingMail): Promise<void> {
  const host = config.SMTP_HOST;
  if (!host || !config.SMTP_DOMAIN) throw new Error("SMTP is not configured");
  const credentials =
    config.SMTP_USER && config.SMTP_PASSWORD
      ? { username: config.SMTP_USER, password: config.SMTP_PASSWORD }
      : undefined;
  await WorkerMailer.send(
    {
      host,
      port: config.SMTP_PORT,
      secure: config.SMTP_PORT === 465,
      startTls: config.SMTP_PORT !== 465,
      credentials,
      authType: ["plain", "login"],
      socketTimeoutMs: 10_000,
      responseTimeoutMs: 10_000,
    },
    {
      from: { name: mail.fromName ?? "SINAS", email: `${mail.fromLocalPart}@${config.SMTP_DOMAIN}` },
      to: mail.to,
      subject: mail.subject,
      text: mail.text,
      html: mail.html,
    },
  );
}
