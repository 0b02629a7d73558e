import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXECUTOR_AUDIENCE, JOB_ISSUER } from "../../workers/lib/executor-protocol";
import { signRequest } from "../../workers/lib/signed-request";
import { type Harness, makeKeys, startHarness } from "../helpers/executor-harness";

// Requests that are not the API's are refused from their token alone, before their body is read: a sender
// of slow or endless bodies must not make the executor wait on (and buffer) them.

/** What a raw HTTP/1.1 client saw: the status line's code (or null), and whether the server closed. */
interface RawOutcome {
  status: number | null;
  closed: boolean;
}

/**
 * Sends the head and the start of a body that never ends; resolves with the answer's status once the server
 * closes the connection, or with what it saw after `waitMs`.
 */
function sendUnfinished(url: string, head: string[], bodyStart: string, waitMs: number): Promise<RawOutcome> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket: Socket = connect(Number(port), hostname);
    let received = "";
    const outcome = (closed: boolean): RawOutcome => ({
      status: Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1]) || null,
      closed,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(outcome(false));
    }, waitMs);
    socket.on("data", (data: Buffer) => {
      received += data.toString("latin1");
    });
    socket.on("error", () => undefined); // the server may reset a connection whose body it does not read
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(outcome(true));
    });
    socket.write(`${head.join("\r\n")}\r\n\r\n${bodyStart}`);
  });
}

describe("executor: signed requests, checked before the body", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ SANDBOX_DRIVER: "process", POOL_WARM_PER_USER: "0" });
  });
  afterAll(() => h.close());

  const head = (authorization: string, framing: string) => [
    "POST /v1/jobs HTTP/1.1",
    "Host: 127.0.0.1",
    "Content-Type: application/json",
    `Authorization: ${authorization}`,
    framing,
  ];

  it("answers 401 at once and closes the connection when a body that never ends comes with a bad token", async () => {
    const declared = await sendUnfinished(
      h.executor.url,
      head("Bearer not-a-jwt", `Content-Length: ${15 * 1024 * 1024}`),
      "x".repeat(64 * 1024),
      3000,
    );
    expect(declared).toEqual({ status: 401, closed: true });

    // A well-formed token signed by another key, over a chunked body.
    const forger = await makeKeys();
    const forged = await signRequest(forger.jobPrivate, {
      issuer: JOB_ISSUER,
      audience: EXECUTOR_AUDIENCE,
      method: "POST",
      path: "/v1/jobs",
      body: "{}",
      subject: "-",
    });
    const chunked = await sendUnfinished(
      h.executor.url,
      head(`Bearer ${forged}`, "Transfer-Encoding: chunked"),
      `10000\r\n${"x".repeat(0x10000)}\r\n`,
      3000,
    );
    expect(chunked).toEqual({ status: 401, closed: true });

    // The API's own token, but for another path.
    const misdirected = await h.sign("POST", "/v1/syntax-check", "{}");
    const elsewhere = await sendUnfinished(
      h.executor.url,
      head(`Bearer ${misdirected}`, "Content-Length: 1000000"),
      "{",
      3000,
    );
    expect(elsewhere).toEqual({ status: 401, closed: true });

    expect((await fetch(`${h.executor.url}/health`)).status).toBe(200);
  });

  it("still reads the body of a request with a good token, and refuses it when the body does not match", async () => {
    const token = await h.sign("POST", "/v1/syntax-check", JSON.stringify({ code: "x = 1" }));
    const signed = await h.send("POST", "/v1/syntax-check", { code: "x = 1" }, token);
    expect(signed).toEqual({ status: 200, body: { ok: true } });
    const other = await h.sign("POST", "/v1/syntax-check", JSON.stringify({ code: "x = 1" }));
    const tampered = await h.send("POST", "/v1/syntax-check", { code: "x = 2" }, other);
    expect(tampered.status).toBe(401);
    expect((tampered.body as { message: string }).message).toContain("body");
  });
});
