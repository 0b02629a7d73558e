import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL } from "../helpers/auth";
import { createFunction, execute, pythonFunction } from "../helpers/functions";
import { startTestStack, type TestStack } from "../helpers/stack";
import { buildWheel } from "../helpers/wheel";

// Packages through the real stack (§1.12, §6.3, §10.2): an admin approves a package, a function requiring it
// imports it; the executor installs it from PIP_FIND_LINKS (a folder holding wheels built here: no network).

let stack: TestStack;
let admin: Session;
let alice: Session;
const wheels = mkdtempSync(join(tmpdir(), "sinas-wheels-"));

beforeAll(async () => {
  buildWheel(wheels);
  buildWheel(wheels, { name: "sinas_lockedpkg", version: "1.0", init: "VALUE = 1\n" });
  stack = await startTestStack({ workerVars: IDENTITY_VARS, env: { PIP_FIND_LINKS: wheels } });
  [admin, alice] = await Promise.all([login(stack, SUPERADMIN_EMAIL), login(stack, "alice@acme.io")]);
});
afterAll(async () => {
  await stack?.stop();
  rmSync(wheels, { recursive: true, force: true });
});

type Row = Record<string, unknown>;

const IMPORTS = '    import sinas_testpkg\n    return {"v": sinas_testpkg.hello()}';

describe("approved packages in functions", () => {
  it("refuses an unapproved requirement, then runs a function importing the approved package", async () => {
    const refused = await api(stack, alice, "POST", "/api/v1/functions", {
      ...pythonFunction("uses_pkg", IMPORTS),
      requirements: ["sinas_testpkg"],
    });
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({
      detail:
        "Unapproved packages in requirements: sinas_testpkg. Contact admin to approve these packages first.",
    });

    const approved = await api(stack, admin, "POST", "/api/v1/packages", { package_name: "sinas_testpkg" });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    await createFunction(stack, alice, {
      ...pythonFunction("uses_pkg", IMPORTS),
      requirements: ["sinas_testpkg"],
    });
    const run = await execute(stack, alice, { name: "uses_pkg" });
    expect(run.status, JSON.stringify(run.body)).toBe(200);
    expect((run.body as Row).result).toEqual({ v: "hi from wheel" });
  });

  it("gives the packages only to sandboxes of functions whose scope requires them", async () => {
    // Another namespace: nothing in its callable scope requires the package.
    await createFunction(stack, alice, { ...pythonFunction("plain", IMPORTS), namespace: "plainspace" });
    const failed = await execute(stack, alice, { namespace: "plainspace", name: "plain" });
    expect(failed.status).toBe(500);
    expect(failed.body).toMatchObject({ code: "FUNCTION_FAILED", error_type: "exception" });
    expect(String((failed.body as Row).detail)).toContain("No module named 'sinas_testpkg'");
  });

  it("installs an admin-locked version instead of the function's spec", async () => {
    // The wheel folder holds sinas_lockedpkg 1.0 only: the locked 2.0 cannot be installed.
    expect(
      (
        await api(stack, admin, "POST", "/api/v1/packages", {
          package_name: "sinas_lockedpkg",
          version: "2.0",
        })
      ).status,
    ).toBe(200);
    await createFunction(stack, alice, {
      ...pythonFunction("locked", "    import sinas_lockedpkg\n    return {}"),
      namespace: "lockedspace",
      requirements: ["sinas_lockedpkg>=1.0"],
    });
    const failed = await execute(stack, alice, { namespace: "lockedspace", name: "locked" });
    expect(failed.status).toBe(500);
    expect(failed.body).toMatchObject({ error_type: "internal" });
    const detail = String((failed.body as Row).detail);
    expect(detail).toContain("Package installation failed");
    expect(detail).toContain("No matching distribution found for sinas_lockedpkg==2.0");
  });
});
