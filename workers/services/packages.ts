/**
 * @module Package approvals (sinas-spec §1.12, §10.2, D-10): the list of pip packages functions may require.
 */
import { asc, eq } from "drizzle-orm";
import type { Principal } from "../auth/principal";
import type { Database } from "../db/client";
import { isUniqueViolation } from "../db/errors";
import { type InstalledPackage, installedPackages } from "../db/schema";
import type { AppConfig } from "../env";
import { AppError } from "../lib/errors";

export function toPackageResponse(row: InstalledPackage) {
  return {
    id: row.id,
    package_name: row.packageName,
    version: row.version,
    installed_at: row.installedAt.toISOString(),
    installed_by: row.installedBy,
  };
}

export async function approvePackage(
  db: Database,
  config: AppConfig,
  principal: Principal,
  input: { package_name: string; version?: string | null },
) {
  if (!config.ALLOW_PACKAGE_INSTALLATION) throw new AppError("FORBIDDEN", "Package installation is disabled");
  const whitelist = config.ALLOWED_PACKAGES;
  if (whitelist && !whitelist.includes(input.package_name)) {
    throw new AppError(
      "FORBIDDEN",
      `Package '${input.package_name}' not in whitelist. Allowed packages: ${whitelist.join(", ")}`,
    );
  }
  // Stored as spelled; the unique index is on the PEP 503 name, so `pyyaml` after `PyYAML` is already approved.
  try {
    const [row] = await db
      .insert(installedPackages)
      .values({
        packageName: input.package_name,
        version: input.version ?? null,
        installedBy: principal.user.id,
      })
      .returning();
    if (!row) throw new Error("insert returned no row");
    return toPackageResponse(row);
  } catch (error) {
    if (isUniqueViolation(error))
      throw new AppError("BAD_REQUEST", `Package '${input.package_name}' already approved`);
    throw error;
  }
}

export async function listPackages(db: Database) {
  const rows = await db.select().from(installedPackages).orderBy(asc(installedPackages.packageName));
  return rows.map(toPackageResponse);
}

export async function removePackage(db: Database, packageId: string): Promise<string> {
  const [row] = await db.delete(installedPackages).where(eq(installedPackages.id, packageId)).returning();
  if (!row) throw new AppError("NOT_FOUND", "Package not found");
  return row.packageName;
}
