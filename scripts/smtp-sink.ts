/**
 * @module
 * A local SMTP server that accepts every mail, prints it, and serves it over HTTP, so login codes and
 * notifications can be read in dev (from the console) and in tests (from `GET /mails`).
 *
 * @example
 * ```sh
 * tsx scripts/smtp-sink.ts --smtp-port 2525 --http-port 8025
 * ```
 */

import type { EventEmitter } from "node:events";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Server as NetServer } from "node:net";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { simpleParser } from "mailparser";
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from "smtp-server";

export interface SinkMail {
  id: number;
  from: string;
  /** Envelope recipients, so Bcc ones are listed too. */
  to: string[];
  subject: string;
  text: string;
  html: string | null;
  receivedAt: string;
}

export interface SmtpSinkOptions {
  /** SMTP port; 0 picks a free one (read it back from `SmtpSink.smtpPort`). */
  smtpPort: number;
  httpPort: number;
  host?: string;
  /** Receives every output line; defaults to `console.log`. */
  print?: (line: string) => void;
}

export interface SmtpSink {
  smtpPort: number;
  httpPort: number;
  httpUrl: string;
  mails(): SinkMail[];
  close(): Promise<void>;
}

const MAX_STORED_MAILS = 500;
const LOGIN_CODE = /\b(\d{6})\b/;

/** The login code a mail carries, if it mentions a code at all; the same rule tests use to read it. */
export function findLoginCode(mail: Pick<SinkMail, "subject" | "text">): string | null {
  const content = `${mail.subject}\n${mail.text}`;
  if (!/code/i.test(content)) return null;
  return LOGIN_CODE.exec(content)?.[1] ?? null;
}

async function parseMail(
  id: number,
  stream: SMTPServerDataStream,
  session: SMTPServerSession,
): Promise<SinkMail> {
  const parsed = await simpleParser(stream);
  const envelopeFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
  return {
    id,
    from: parsed.from?.value[0]?.address ?? envelopeFrom,
    to: session.envelope.rcptTo.map((recipient) => recipient.address),
    subject: parsed.subject ?? "",
    text: parsed.text ?? "",
    html: typeof parsed.html === "string" ? parsed.html : null,
    receivedAt: new Date().toISOString(),
  };
}

function printMail(mail: SinkMail, print: (line: string) => void): void {
  print(`--- mail #${mail.id} to ${mail.to.join(", ")} from ${mail.from}: ${mail.subject}`);
  for (const line of mail.text.trimEnd().split("\n")) print(line);
  const code = findLoginCode(mail);
  // This exact line is a contract: humans and tests grep the console for it.
  if (code) for (const recipient of mail.to) print(`OTP CODE FOR ${recipient}: ${code}`);
}

/**
 * Listens and resolves the bound port. `errors` is where a listen failure shows up: an SMTPServer re-emits
 * its socket's errors and throws if nobody listens there.
 */
function listen(
  server: NetServer,
  port: number,
  host: string,
  errors: EventEmitter = server,
): Promise<number> {
  return new Promise((resolve, reject) => {
    errors.once("error", reject);
    server.listen(port, host, () => {
      errors.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify(body));
}

function createMailApi(store: SinkMail[]): Server {
  return createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://sink");
    const to = url.searchParams.get("to")?.toLowerCase();
    const forRecipient = to
      ? store.filter((mail) => mail.to.some((address) => address.toLowerCase() === to))
      : store;
    const route = `${request.method} ${url.pathname}`;
    if (route === "GET /health") return sendJson(response, 200, { status: "ok" });
    if (route === "GET /mails") return sendJson(response, 200, forRecipient);
    if (route === "GET /mails/latest") {
      const latest = forRecipient.at(-1);
      return latest ? sendJson(response, 200, latest) : sendJson(response, 404, { error: "No mail" });
    }
    if (route === "DELETE /mails") return sendJson(response, 200, { deleted: store.splice(0).length });
    sendJson(response, 404, { error: "Not found" });
  });
}

/** Starts the SMTP server and its HTTP API; resolves once both listen. */
export async function startSmtpSink(options: SmtpSinkOptions): Promise<SmtpSink> {
  const { smtpPort, httpPort, host = "127.0.0.1", print = console.log } = options;
  const store: SinkMail[] = [];
  let nextId = 1; // never reset, so a client can wait for ids above one it has seen, even across DELETE
  const smtp = new SMTPServer({
    // worker-mailer refuses a server that does not offer AUTH, so AUTH is offered and anything passes.
    authOptional: true,
    authMethods: ["PLAIN", "LOGIN"],
    allowInsecureAuth: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    closeTimeout: 1_000,
    onAuth: (auth, _session, callback) => callback(null, { user: auth.username ?? "anonymous" }),
    onData: (stream, session, callback) => {
      parseMail(nextId++, stream, session).then((mail) => {
        store.push(mail);
        if (store.length > MAX_STORED_MAILS) store.splice(0, store.length - MAX_STORED_MAILS);
        printMail(mail, print);
        callback();
      }, callback);
    },
  });
  const mailApi = createMailApi(store);
  const boundSmtpPort = await listen(smtp.server, smtpPort, host, smtp);
  // A client dropping mid-session emits "error"; without a listener that would end the process.
  smtp.on("error", (error: Error) => print(`--- smtp sink error: ${error.message}`));
  const boundHttpPort = await listen(mailApi, httpPort, host).catch(async (error: unknown) => {
    await new Promise<void>((resolve) => smtp.close(resolve));
    throw error;
  });
  return {
    smtpPort: boundSmtpPort,
    httpPort: boundHttpPort,
    httpUrl: `http://${host}:${boundHttpPort}`,
    mails: () => [...store],
    close: async () => {
      const httpClosed = new Promise<void>((resolve) => mailApi.close(() => resolve()));
      mailApi.closeAllConnections();
      await Promise.all([httpClosed, new Promise<void>((resolve) => smtp.close(resolve))]);
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "smtp-port": { type: "string", default: "2525" },
      "http-port": { type: "string", default: "8025" },
      host: { type: "string" },
    },
  });
  const sink = await startSmtpSink({
    smtpPort: Number(values["smtp-port"]),
    httpPort: Number(values["http-port"]),
    host: values.host,
  });
  console.log(
    `SMTP sink on smtp://${values.host ?? "127.0.0.1"}:${sink.smtpPort}, mails at ${sink.httpUrl}/mails`,
  );
  const stop = () => void sink.close().then(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
