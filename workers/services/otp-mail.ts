/**
 * @module The OTP mail (sinas-spec §4.1 built-in fallback: subject `Your Login Code`, text and HTML).
 * The templates issue may replace it with the `default/otp_email` template.
 */
const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);

export function renderOtpMail(input: { code: string; email: string; expiryMinutes: number }) {
  const text = [
    `Your SINAS login code is ${input.code}`,
    "",
    `It expires in ${input.expiryMinutes} minutes. If you did not try to sign in as ${input.email}, ignore this mail.`,
  ].join("\n");
  const html = [
    "<p>Your SINAS login code is</p>",
    `<p style="font-size:24px;font-weight:bold;letter-spacing:4px">${escapeHtml(input.code)}</p>`,
    `<p>It expires in ${input.expiryMinutes} minutes. If you did not try to sign in as ${escapeHtml(input.email)},`,
    " ignore this mail.</p>",
  ].join("");
  return { subject: "Your Login Code", text, html };
}
