/**
 * @module Reading mails the stack sent, from the local SMTP sink's HTTP API.
 */

import type { StackInfo } from "../../scripts/lib/stack";
import type { SinkMail } from "../../scripts/smtp-sink";

function mailApi(stack: Pick<StackInfo, "mailUrl">): string {
  if (!stack.mailUrl) throw new Error("this stack uses an external SMTP server; there is no sink to read");
  return stack.mailUrl;
}

export async function listMails(stack: Pick<StackInfo, "mailUrl">, to?: string): Promise<SinkMail[]> {
  const url = new URL("/mails", mailApi(stack));
  if (to) url.searchParams.set("to", to);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`mail sink answered ${response.status}`);
  return (await response.json()) as SinkMail[];
}

/** Waits for a mail to `to` that is newer than the `after`-th one (default: any mail). */
export async function waitForMail(
  stack: Pick<StackInfo, "mailUrl">,
  to: string,
  options: { timeoutMs?: number; after?: number } = {},
): Promise<SinkMail> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  while (Date.now() < deadline) {
    const mails = await listMails(stack, to);
    const fresh = mails.filter((mail) => mail.id > (options.after ?? 0));
    const newest = fresh.at(-1);
    if (newest) return newest;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no mail to ${to} within ${options.timeoutMs ?? 10_000} ms`);
}

/** The 6-digit login code in a mail, as the sink's `OTP CODE FOR` line would print it. */
export function extractOtp(mail: SinkMail): string {
  const match = /\b(\d{6})\b/.exec(`${mail.subject}\n${mail.text}`);
  if (!match?.[1]) throw new Error(`no 6-digit code in mail "${mail.subject}"`);
  return match[1];
}
