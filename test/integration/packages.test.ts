import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { functions, installedPackages } from "../../workers/db/schema";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL } from "../helpers/auth";
import { openStackDb } from "../helpers/db";
import { createFunction, execute, pythonFunction } from "../helpers/functions";
import { startTestStack, type TestStack } from "../helpers/stack";
import { buildWheel } from "../helpers/wheel";

// Packages through the real stack (§1.12, §6.3, §10.2): an admin approves a package, a function requiring it
// imports it; the executor installs it from PIP_FIND_LINKS (a folder holding wheels built here: no network).

let stack: TestStack;
let db: ReturnType<typeof openStackDb>;
let admin: Session;
let alice: Session;
const wheels = mkdtempSync(join(tmpdir(), "sinas-wheels-"));

beforeAll(async () => {
  buildWheel(wheels);
  buildWheel(wheels, { name: "sinas_lockedpkg", version: "1.0", init: "VALUE = 1\n" });
  buildWheel(wheels, { name: "sinas_specpkg", version: "1.0", init: 'NAME = "spec"\n' });
  buildWheel(wheels, { name: "sinas_normpkg", version: "1.0", init: 'NAME = "norm"\n' });
  stack = await startTestStack({ workerVars: IDENTITY_VARS, env: { PIP_FIND_LINKS: wheels } });
  db = openStackDb(stack);
  [admin, alice] = await Promise.all([login(stack, SUPERADMIN_EMAIL), login(stack, "alice@acme.io")]);
});
afterAll(async () => {
  await db?.close();
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

type FieldIssue = { loc: unknown[]; msg: string };

async function approve(body: Row) {
  const response = await api(stack, admin, "POST", "/api/v1/packages", body);
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body as Row & { id: string };
}

describe("requirement specs", () => {
  // What the executor refuses would fail every run whose callable scope holds the function (its namespace).
  const refusedSpecs = [
    "sinas_specpkg; python_version >= '3.8'",
    "sinas_specpkg (>=1.0)",
    "sinas_specpkg @ https://example.com/sinas_specpkg-1.0-py3-none-any.whl",
    "sinas_specpkg>=1.0 --hash=sha256:0123abcd",
  ];

  it("refuses a spec the executor would refuse, naming the item (422), on create and update", async () => {
    await approve({ package_name: "sinas_specpkg" });
    for (const spec of refusedSpecs) {
      const refused = await api(stack, alice, "POST", "/api/v1/functions", {
        ...pythonFunction("bad_spec", "    return {}"),
        namespace: "specspace",
        requirements: ["sinas_specpkg", spec],
      });
      expect(refused.status, `${spec}: ${JSON.stringify(refused.body)}`).toBe(422);
      const [issue] = (refused.body as { detail: FieldIssue[] }).detail;
      expect(issue?.loc).toEqual(["body", "requirements", 1]);
      expect(issue?.msg).toContain("package name with optional [extras] and version clauses");
    }

    // Spaces are fine (the executor drops them), and the function runs with its package.
    const imports = '    import sinas_specpkg\n    return {"v": sinas_specpkg.NAME}';
    await createFunction(stack, alice, {
      ...pythonFunction("good_spec", imports),
      namespace: "specspace",
      requirements: ["sinas_specpkg >= 1.0, < 2"],
    });
    const updated = await api(stack, alice, "PUT", "/api/v1/functions/specspace/good_spec", {
      requirements: [refusedSpecs[0]],
    });
    expect(updated.status, JSON.stringify(updated.body)).toBe(422);
    expect((updated.body as { detail: FieldIssue[] }).detail[0]?.loc).toEqual(["body", "requirements", 0]);
    const run = await execute(stack, alice, { namespace: "specspace", name: "good_spec" });
    expect(run.status, JSON.stringify(run.body)).toBe(200);
    expect((run.body as Row).result).toEqual({ v: "spec" });
  });

  it("keeps a spec saved before specs were checked from failing the runs of its namespace", async () => {
    const imports = '    import sinas_specpkg\n    return {"v": sinas_specpkg.NAME}';
    await createFunction(stack, alice, {
      ...pythonFunction("uses_spec", imports),
      namespace: "legacyspace",
      requirements: ["sinas_specpkg"],
    });
    await createFunction(stack, alice, {
      ...pythonFunction("legacy", "    return {}"),
      namespace: "legacyspace",
    });
    // Stored as an older release let it be: runs install the bare approved package instead.
    await db.db
      .update(functions)
      .set({ requirements: [refusedSpecs[1] as string] })
      .where(eq(functions.name, "uses_spec"));
    const run = await execute(stack, alice, { namespace: "legacyspace", name: "uses_spec" });
    expect(run.status, JSON.stringify(run.body)).toBe(200);
    expect((run.body as Row).result).toEqual({ v: "spec" });
    expect((await execute(stack, alice, { namespace: "legacyspace", name: "legacy" })).status).toBe(200);

    // A malformed legacy lock (`sinas_specpkg==>=1.0`) leaves the package out rather than failing every run.
    await db.db
      .update(installedPackages)
      .set({ version: ">=1.0" })
      .where(eq(installedPackages.packageName, "sinas_specpkg"));
    const plain = await execute(stack, alice, { namespace: "legacyspace", name: "legacy" });
    expect(plain.status, JSON.stringify(plain.body)).toBe(200);
  });

  it("checks the package a spec installs: spaces inside its name are dropped as the executor drops them", async () => {
    await approve({ package_name: "sinas_bypass" });
    const refused = await api(stack, alice, "POST", "/api/v1/functions", {
      ...pythonFunction("spaced", "    return {}"),
      requirements: ["sinas_bypass pkg"], // installed as sinas_bypasspkg, which is not approved
    });
    expect(refused.status, JSON.stringify(refused.body)).toBe(400);
    expect((refused.body as Row).detail).toBe(
      "Unapproved packages in requirements: sinas_bypasspkg. Contact admin to approve these packages first.",
    );
  });

  it("refuses a locked version that is not one exact version (422 naming version)", async () => {
    for (const version of [">=2.0", "^1.2", "1.0, <2", "1.0 ; python_version>'3'"]) {
      const refused = await api(stack, admin, "POST", "/api/v1/packages", {
        package_name: "sinas_verpkg",
        version,
      });
      expect(refused.status, `${version}: ${JSON.stringify(refused.body)}`).toBe(422);
      const [issue] = (refused.body as { detail: FieldIssue[] }).detail;
      expect(issue?.loc).toEqual(["body", "version"]);
      expect(issue?.msg).toContain("one exact version");
    }
    const badName = await api(stack, admin, "POST", "/api/v1/packages", { package_name: "sinas_verpkg-" });
    expect(badName.status).toBe(422);
    expect((badName.body as { detail: FieldIssue[] }).detail[0]?.loc).toEqual(["body", "package_name"]);
    expect((await approve({ package_name: "sinas_verpkg", version: "1.0rc1+local.2" })).version).toBe(
      "1.0rc1+local.2",
    );
  });
});

describe("package names as pip compares them (PEP 503)", () => {
  it("matches a requirement to the approval of another spelling, and installs it", async () => {
    await approve({ package_name: "sinas_normpkg" });
    await createFunction(stack, alice, {
      ...pythonFunction("norm", '    import sinas_normpkg\n    return {"v": sinas_normpkg.NAME}'),
      namespace: "normspace",
      requirements: ["Sinas.NormPkg>=1.0"],
    });
    const run = await execute(stack, alice, { namespace: "normspace", name: "norm" });
    expect(run.status, JSON.stringify(run.body)).toBe(200);
    expect((run.body as Row).result).toEqual({ v: "norm" });

    // Unapproved names are reported as written.
    const refused = await api(stack, alice, "POST", "/api/v1/functions", {
      ...pythonFunction("norm2", "    return {}"),
      requirements: ["Sinas_Other_Pkg>=1"],
    });
    expect(refused.status).toBe(400);
    expect((refused.body as Row).detail).toBe(
      "Unapproved packages in requirements: Sinas_Other_Pkg. Contact admin to approve these packages first.",
    );
  });

  it("approves one spelling per package, so a lock cannot be bypassed by another", async () => {
    await approve({ package_name: "Sinas_Locked_Norm", version: "1.0" });
    for (const spelling of ["sinas-locked-norm", "SINAS.LOCKED__NORM"]) {
      const again = await api(stack, admin, "POST", "/api/v1/packages", { package_name: spelling });
      expect(again.status, JSON.stringify(again.body)).toBe(400);
      expect((again.body as Row).detail).toBe(`Package '${spelling}' already approved`);
    }
    const listed = (await api(stack, alice, "GET", "/api/v1/packages")).body as Row[];
    expect(listed.filter((row) => /locked.*norm/i.test(String(row.package_name)))).toEqual([
      expect.objectContaining({ package_name: "Sinas_Locked_Norm", version: "1.0" }),
    ]);
  });
});
