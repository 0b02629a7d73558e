import { describe, expect, it } from "vitest";
import { signWebhookBody, verifyWebhookRequest } from "../../workers/lib/webhook-signature";
import { parseWebhookBody, webhookHeaders, webhookInput } from "../../workers/services/webhook-envelope";

const encoder = new TextEncoder();

describe("webhook signatures", () => {
  const secret = "whsec_test";
  const body = encoder.encode('{"event":"push"}');
  const request = (headers: Record<string, string>) => ({ header: (name: string) => headers[name], body });

  it("is HMAC-SHA256 of `<timestamp>.<body>` as sha256=<hex>", async () => {
    // printf '1700000000.{"event":"push"}' | openssl dgst -sha256 -hmac whsec_test
    expect(await signWebhookBody(secret, "1700000000", body)).toBe(
      "sha256=3edeb13e5fdf779bcece62fe5747c3d70999fa5cb98dd99cf36d2bbb5e95ab46",
    );
  });

  it("accepts a fresh valid signature and refuses a wrong, stale or missing one", async () => {
    const now = 1_700_000_000;
    const signature = await signWebhookBody(secret, String(now), body);
    const ok = request({ "x-signature-256": signature, "x-signature-timestamp": String(now) });
    expect(await verifyWebhookRequest("hmac_sha256", secret, ok, now + 299)).toBeNull();
    expect(await verifyWebhookRequest("hmac_sha256", secret, ok, now - 299)).toBeNull();
    expect(await verifyWebhookRequest("hmac_sha256", secret, ok, now + 301)).toContain("timestamp");
    expect(await verifyWebhookRequest("hmac_sha256", "whsec_other", ok, now)).toBe(
      "Invalid webhook signature",
    );
    const otherTime = request({ "x-signature-256": signature, "x-signature-timestamp": String(now + 1) });
    expect(await verifyWebhookRequest("hmac_sha256", secret, otherTime, now)).toBe(
      "Invalid webhook signature",
    );
    expect(await verifyWebhookRequest("hmac_sha256", secret, request({}), now)).toContain("Missing");
    const notNumber = request({ "x-signature-256": signature, "x-signature-timestamp": "soon" });
    expect(await verifyWebhookRequest("hmac_sha256", secret, notNumber, now)).toContain("timestamp");
  });

  it("compares a shared secret header", async () => {
    expect(
      await verifyWebhookRequest("secret", secret, request({ "x-webhook-secret": secret }), 0),
    ).toBeNull();
    expect(await verifyWebhookRequest("secret", secret, request({ "x-webhook-secret": "x" }), 0)).toBe(
      "Invalid webhook secret",
    );
    expect(await verifyWebhookRequest("secret", secret, request({}), 0)).toContain("Missing");
    expect(await verifyWebhookRequest("none", secret, request({}), 0)).toBeNull();
  });
});

describe("webhook envelope (sinas-spec §7.1)", () => {
  it("parses the body by content type", () => {
    expect(parseWebhookBody("application/json; charset=utf-8", encoder.encode('{"a":1}'))).toEqual({ a: 1 });
    expect(parseWebhookBody("application/json", encoder.encode("{bad"))).toEqual({});
    expect(parseWebhookBody("application/json", new Uint8Array())).toEqual({});
    expect(parseWebhookBody("application/x-www-form-urlencoded", encoder.encode("a=1&a=2&b=%20"))).toEqual({
      a: "2",
      b: " ",
    });
    expect(parseWebhookBody("text/plain", encoder.encode("hi"))).toEqual({ raw: "hi" });
    expect(parseWebhookBody(null, new Uint8Array())).toEqual({});
  });

  it("drops credentials, proofs and host/user-agent/accept-encoding headers", () => {
    const headers = new Headers({
      Authorization: "Bearer t",
      "X-API-Key": "k",
      Cookie: "c=1",
      "Proxy-Authorization": "Basic x",
      "X-Webhook-Secret": "s",
      "X-Signature-256": "sha256=x",
      "X-Signature-Timestamp": "1",
      Host: "api",
      "Host-Extra": "x",
      "User-Agent": "ua",
      "Accept-Encoding": "gzip",
      "X-Trace": "1",
    });
    expect(webhookHeaders(headers)).toEqual({ "x-trace": "1" });
  });

  it("merges the envelope over the default values", () => {
    const input = webhookInput(
      {
        method: "POST",
        url: "https://api.test/webhooks/a/b?x=1&x=2",
        path: "a/b",
        headers: new Headers({ "content-type": "application/json" }),
        body: encoder.encode('{"n":1}'),
      },
      { body: "shadowed", k: 1 },
    );
    expect(input).toEqual({
      k: 1,
      body: { n: 1 },
      headers: { "content-type": "application/json" },
      query: { x: "2" },
      path_params: { path: "a/b" },
      method: "POST",
      url: "https://api.test/webhooks/a/b?x=1&x=2",
      path: "/webhooks/a/b",
    });
  });
});
