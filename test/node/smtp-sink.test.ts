import { createServer } from "node:net";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type SinkMail, type SmtpSink, startSmtpSink } from "../../scripts/smtp-sink";

// Real mails over real SMTP with AUTH (as worker-mailer sends them), read back through the sink's HTTP API.
describe("smtp sink", () => {
  let sink: SmtpSink;
  const printed: string[] = [];
  const otpLines = () => printed.filter((line) => line.startsWith("OTP CODE FOR"));

  const send = async (mail: { to: string | string[]; subject: string; text: string; html?: string }) => {
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port: sink.smtpPort,
      secure: false,
      ignoreTLS: true,
      auth: { user: "anyone", pass: "anything" },
    });
    try {
      await transport.sendMail({ from: '"SINAS" <no-reply@sinas.local>', ...mail });
    } finally {
      transport.close();
    }
  };
  const getJson = async (path: string) => {
    const response = await fetch(`${sink.httpUrl}${path}`);
    return { status: response.status, body: (await response.json()) as unknown };
  };

  beforeAll(async () => {
    sink = await startSmtpSink({ smtpPort: 0, httpPort: 0, print: (line) => printed.push(line) });
  });
  afterAll(() => sink.close());
  beforeEach(async () => {
    await fetch(`${sink.httpUrl}/mails`, { method: "DELETE" });
    printed.length = 0;
  });

  it("answers /health", async () => {
    expect(await getJson("/health")).toEqual({ status: 200, body: { status: "ok" } });
  });

  it("stores a received mail with its fields", async () => {
    await send({
      to: "ada@example.com",
      subject: "Welcome",
      text: "Hello Ada",
      html: "<p>Hello <b>Ada</b></p>",
    });
    const { body } = await getJson("/mails");
    expect(body).toEqual([
      {
        id: expect.any(Number),
        from: "no-reply@sinas.local",
        to: ["ada@example.com"],
        subject: "Welcome",
        text: "Hello Ada",
        html: "<p>Hello <b>Ada</b></p>",
        receivedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      },
    ]);
    expect(sink.mails()).toEqual(body);
    expect(printed[0]).toMatch(/^--- mail #\d+ to ada@example\.com from no-reply@sinas\.local: Welcome$/);
    expect(printed).toContain("Hello Ada");
  });

  it("filters by recipient, case-insensitively, and serves the latest", async () => {
    await send({ to: "ada@example.com", subject: "first for ada", text: "1" });
    await send({ to: "bob@example.com", subject: "for bob", text: "2" });
    await send({ to: ["carol@example.com", "Ada@Example.com"], subject: "second for ada", text: "3" });

    const forAda = (await getJson("/mails?to=ADA@example.com")).body as SinkMail[];
    expect(forAda.map((mail) => mail.subject)).toEqual(["first for ada", "second for ada"]);
    expect(forAda[0]?.html).toBeNull();
    expect((await getJson("/mails")).body).toHaveLength(3);

    const latest = await getJson("/mails/latest?to=ada@example.com");
    expect(latest.status).toBe(200);
    expect((latest.body as SinkMail).subject).toBe("second for ada");
    expect((await getJson("/mails/latest?to=nobody@example.com")).status).toBe(404);
  });

  it("prints the OTP line exactly once for a mail carrying a login code", async () => {
    await send({ to: "ada@example.com", subject: "Sign in to SINAS", text: "Your login code is 123456" });
    expect(otpLines()).toEqual(["OTP CODE FOR ada@example.com: 123456"]);
  });

  it("prints no OTP line for a mail without a code", async () => {
    await send({ to: "ada@example.com", subject: "Invoice 654321", text: "Your invoice number is 654321." });
    await send({ to: "ada@example.com", subject: "Your code", text: "There is no code here, only 12345." });
    expect(printed.filter((line) => line.startsWith("--- mail"))).toHaveLength(2);
    expect(printed.some((line) => /OTP/i.test(line))).toBe(false);
  });

  it("clears mails on DELETE", async () => {
    await send({ to: "ada@example.com", subject: "to delete", text: "x" });
    expect((await getJson("/mails")).body).toHaveLength(1);
    const response = await fetch(`${sink.httpUrl}/mails`, { method: "DELETE" });
    expect(response.status).toBe(200);
    expect((await getJson("/mails")).body).toEqual([]);
  });

  it("frees both ports when closed", async () => {
    const extra = await startSmtpSink({ smtpPort: 0, httpPort: 0, print: () => {} });
    await extra.close();
    for (const port of [extra.smtpPort, extra.httpPort]) {
      const probe = createServer();
      await new Promise<void>((resolve, reject) => {
        probe.once("error", reject);
        probe.listen(port, "127.0.0.1", resolve);
      });
      await new Promise((resolve) => probe.close(resolve));
    }
  });
});
