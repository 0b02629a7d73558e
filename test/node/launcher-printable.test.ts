import { describe, expect, it } from "vitest";
import { runMigrations } from "../../scripts/lib/migrate";
import { describeError, withoutPassword } from "../../scripts/lib/printable";
import { startWsProxy } from "../../scripts/ws-proxy";

// What the launcher and `npm run db:migrate` print when the database refuses: the reason, not only the query.
describe("what the launcher prints", () => {
  it("names the cause of a failed migration (a database that does not exist)", async () => {
    const missing = `postgresql://postgres@127.0.0.1:5432/sinas_missing_${Date.now()}?sslmode=disable`;
    // As `npm run db:migrate` reaches a local server: through the WebSocket proxy.
    const proxy = await startWsProxy({ port: 0 });
    const failure = await runMigrations({ databaseUrl: missing, wsProxy: proxy.address })
      .then(
        () => null,
        (error: unknown) => error,
      )
      .finally(() => proxy.close());
    expect(failure).not.toBeNull();
    // No server there (a fresh machine's first pass) refuses the connection; a server names the database.
    expect(describeError(failure)).toMatch(/^Failed query: .*: (.*does not exist|.*ECONNREFUSED.*)/s);
  });

  it("joins an error's message with its causes', each once", () => {
    const root = new Error("connection refused");
    const wrapped = new Error("Failed query: select 1", {
      cause: new Error("connection refused", { cause: root }),
    });
    expect(describeError(wrapped)).toBe("Failed query: select 1: connection refused");
    expect(describeError("plain")).toBe("plain");
  });

  it("prints a Redis URL without its password", () => {
    expect(withoutPassword("redis://default:S3cret@127.0.0.1:6379/0")).toBe(
      "redis://default:***@127.0.0.1:6379/0",
    );
    expect(withoutPassword("redis://127.0.0.1:6379")).toBe("redis://127.0.0.1:6379");
    expect(withoutPassword("not a url")).toBe("(unparsable URL)");
  });
});
