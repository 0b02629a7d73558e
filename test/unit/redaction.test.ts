import { describe, expect, it } from "vitest";
import {
  isAuthPath,
  isSecretKey,
  jsonbSafe,
  MAX_REDACTION_DEPTH,
  parseQueryParams,
  REDACTED,
  redactSecrets,
  redactUrlQuery,
  TRUNCATED,
} from "../../workers/lib/redaction";

describe("isSecretKey", () => {
  it.each([
    "password",
    "otp",
    "otp_code",
    "token",
    "refresh_token",
    "access_token",
    "api_key",
    "apikey",
    "x-api-key",
    "authorization",
    "secret",
    "key",
    "cookie",
  ])("treats %s as secret", (key) => {
    expect(isSecretKey(key)).toBe(true);
  });

  it.each(["PASSWORD", "Authorization", "X-API-Key", "apiKey", "refreshToken", "OTP_CODE", "Cookie"])(
    "ignores case and separators: %s",
    (key) => {
      expect(isSecretKey(key)).toBe(true);
    },
  );

  it.each(["name", "keys", "key_id", "monkey", "tokens_used", "passwords_policy", "description", ""])(
    "leaves %s alone (only the exact names match)",
    (key) => {
      expect(isSecretKey(key)).toBe(false);
    },
  );
});

describe("redactSecrets", () => {
  it("redacts secret keys at the top level and keeps the rest", () => {
    expect(redactSecrets({ name: "t", permissions: {}, token: "abc", password: "p" })).toEqual({
      name: "t",
      permissions: {},
      token: REDACTED,
      password: REDACTED,
    });
  });

  it("redacts at any depth, inside objects and arrays", () => {
    const body = {
      outer: { inner: { api_key: "k1", keep: 1 } },
      list: [{ Authorization: "Bearer x" }, [{ refresh_token: "r" }], "plain"],
    };
    expect(redactSecrets(body)).toEqual({
      outer: { inner: { api_key: REDACTED, keep: 1 } },
      list: [{ Authorization: REDACTED }, [{ refresh_token: REDACTED }], "plain"],
    });
  });

  it("redacts a secret key whatever its value is, objects included", () => {
    expect(redactSecrets({ secret: { nested: "v" }, otp: 123456, key: null })).toEqual({
      secret: REDACTED,
      otp: REDACTED,
      key: REDACTED,
    });
  });

  it("does not change its input", () => {
    const body = { token: "abc", nested: { password: "p" } };
    redactSecrets(body);
    expect(body).toEqual({ token: "abc", nested: { password: "p" } });
  });

  it("returns scalars and null unchanged", () => {
    expect(redactSecrets("token")).toBe("token");
    expect(redactSecrets(42)).toBe(42);
    expect(redactSecrets(null)).toBeNull();
    expect(redactSecrets([1, "a"])).toEqual([1, "a"]);
  });

  it("cuts off nesting deeper than the limit instead of overflowing the stack", () => {
    const depth = 50_000;
    const deep = JSON.parse(`${"[".repeat(depth)}{"token":"abc"}${"]".repeat(depth)}`) as unknown;
    const redacted = JSON.stringify(redactSecrets(deep));
    expect(redacted).not.toContain("abc");
    expect(redacted).toContain(TRUNCATED);
    expect(redacted.split("[").length - 1).toBe(MAX_REDACTION_DEPTH + 1);
  });
});

describe("jsonbSafe", () => {
  it("removes U+0000 from strings and keys, which Postgres refuses", () => {
    expect(jsonbSafe({ "a\u0000b": ["x\u0000y", 1], c: "d" })).toEqual({ ab: ["xy", 1], c: "d" });
  });

  it("replaces lone surrogates, which jsonb refuses, and keeps pairs", () => {
    const parsed = JSON.parse('{"k\\udc00":"x\\ud800y","emoji":"\\ud83d\\ude00"}');
    expect(jsonbSafe(parsed)).toEqual({ "k\uFFFD": "x\uFFFDy", emoji: "😀" });
  });
});

describe("parseQueryParams", () => {
  it("splits on & and the first =, without URL-decoding", () => {
    expect(parseQueryParams("?a=1&b=x%20y&c=d=e&flag")).toEqual({ a: "1", b: "x%20y", c: "d=e", flag: "" });
  });

  it("accepts the query with or without its leading ?", () => {
    expect(parseQueryParams("a=1")).toEqual({ a: "1" });
  });

  it("is null when there is no parameter", () => {
    expect(parseQueryParams("")).toBeNull();
    expect(parseQueryParams("?")).toBeNull();
    expect(parseQueryParams("?&&")).toBeNull();
  });

  it("lets a later duplicate win", () => {
    expect(parseQueryParams("a=1&a=2")).toEqual({ a: "2" });
  });

  it("redacts secret keys, also when the key is percent-encoded", () => {
    expect(parseQueryParams("?token=abc&API_KEY=k&api%5Fkey=k2&x-api-key=k3&limit=5")).toEqual({
      token: REDACTED,
      API_KEY: REDACTED,
      "api%5Fkey": REDACTED,
      "x-api-key": REDACTED,
      limit: "5",
    });
  });
});

describe("redactUrlQuery", () => {
  it("redacts secret parameters and keeps everything else as it was", () => {
    expect(redactUrlQuery("https://app.test/p?x=1&token=abc&flag&e=#frag?token=z")).toBe(
      `https://app.test/p?x=1&token=${REDACTED}&flag&e=#frag?token=z`,
    );
  });

  it("leaves a URL without a query alone", () => {
    expect(redactUrlQuery("https://app.test/p#token=1")).toBe("https://app.test/p#token=1");
  });
});

describe("isAuthPath", () => {
  it.each([
    "/auth/login",
    "/auth/verify-otp",
    "/auth/refresh",
    "/auth/logout",
    "/auth/me",
    "/auth/anything-new",
    "/api/auth/login",
    "/api/v1/auth/api-keys",
    "/something/login",
    "/x/verify-otp",
    "/x/refresh",
    "/x/logout",
  ])("%s is an auth path", (path) => {
    expect(isAuthPath(path)).toBe(true);
  });

  it.each(["/api/v1/api-keys", "/states", "/authors", "/api/v1/request-logs", "/health"])(
    "%s is not",
    (path) => {
      expect(isAuthPath(path)).toBe(false);
    },
  );
});
