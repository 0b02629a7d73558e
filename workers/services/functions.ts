/**
 * @module Functions management (sinas-spec §1.9, §6.1, D-32, D-33, D-50, D-51): CRUD with a version per
 * code change, Python syntax checked by the executor, JSON schemas checked, packages approved.
 */
import { and, asc, desc, eq, inArray, max } from "drizzle-orm";
import { can } from "../auth/access";
import { permissions } from "../auth/catalogue";
import type { Principal } from "../auth/principal";
import type { Database, DbOrTx } from "../db/client";
import { isUniqueViolation } from "../db/errors";
import {
  type FunctionVersion,
  functions,
  functionVersions,
  installedPackages,
  type JsonSchema,
  normalizedPackageNameOf,
  type StoredFunction,
} from "../db/schema";
import type { AppConfig } from "../env";
import { AppError, validationError } from "../lib/errors";
import { compactRequirement } from "../lib/executor-protocol";
import { checkPythonSyntax } from "./executor-client";

export interface FunctionFields {
  namespace: string;
  name: string;
  description?: string | null;
  code: string;
  input_schema: JsonSchema;
  output_schema: JsonSchema;
  requirements: string[];
  enabled_namespaces: string[];
  shared_pool: boolean;
  requires_approval: boolean;
  timeout?: number | null;
}

export type FunctionUpdate = Partial<FunctionFields> & { is_active?: boolean };

export function toFunctionResponse(fn: StoredFunction) {
  return {
    id: fn.id,
    namespace: fn.namespace,
    name: fn.name,
    description: fn.description,
    code: fn.code,
    input_schema: fn.inputSchema,
    output_schema: fn.outputSchema,
    requirements: fn.requirements,
    enabled_namespaces: fn.enabledNamespaces,
    shared_pool: fn.sharedPool,
    requires_approval: fn.requiresApproval,
    timeout: fn.timeoutSeconds,
    is_active: fn.isActive,
    created_at: fn.createdAt.toISOString(),
    updated_at: fn.updatedAt.toISOString(),
  };
}

export function toVersionResponse(version: FunctionVersion) {
  return {
    id: version.id,
    function_id: version.functionId,
    version: version.version,
    code: version.code,
    input_schema: version.inputSchema,
    output_schema: version.outputSchema,
    created_at: version.createdAt.toISOString(),
    created_by: version.createdBy,
  };
}

/**
 * A package name as PEP 503 compares it: `PyYAML`, `typing_extensions` and `Typing.Extensions` are the same
 * package as `pyyaml`, `typing-extensions`. Approvals and requirements are matched by this name (and the
 * database's unique index on installed_packages.package_name normalizes the same way).
 */
export function normalizedPackageName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, "-");
}

/** normalizedPackageName of installed_packages.package_name, in SQL (the expression of its unique index). */
export function normalizedPackageNameSql() {
  return normalizedPackageNameOf(installedPackages.packageName);
}

/** `Requests >= 2.0` -> `Requests`: the name as written; whitespace goes first, as the executor drops it. */
function writtenPackageNameOf(requirement: string): string {
  return compactRequirement(requirement).split(/[[<>=!~;@(,]/, 1)[0] ?? "";
}

/**
 * `Requests >= 2.0` -> `requests`: the normalized name of the package a spec installs (`req uests` installs
 * `requests`); extras, markers and URLs are cut too.
 */
export function packageNameOf(requirement: string): string {
  return normalizedPackageName(writtenPackageNameOf(requirement));
}

async function ensureApprovedPackages(db: DbOrTx, requirements: string[]): Promise<void> {
  // normalized name -> the name as the first spec naming it wrote it (for the message)
  const written = new Map<string, string>();
  for (const spec of requirements) {
    const name = packageNameOf(spec);
    if (name && !written.has(name)) written.set(name, writtenPackageNameOf(spec));
  }
  if (written.size === 0) return;
  const approved = await db
    .select({ name: installedPackages.packageName })
    .from(installedPackages)
    .where(inArray(normalizedPackageNameSql(), [...written.keys()]));
  const approvedNames = new Set(approved.map((row) => normalizedPackageName(row.name)));
  const missing = [...written].filter(([name]) => !approvedNames.has(name)).map(([, asWritten]) => asWritten);
  if (missing.length > 0) {
    throw new AppError(
      "BAD_REQUEST",
      `Unapproved packages in requirements: ${missing.join(", ")}. Contact admin to approve these packages first.`,
    );
  }
}

async function ensureValidCode(config: AppConfig, code: string): Promise<void> {
  const syntaxError = await checkPythonSyntax(config, code);
  if (syntaxError) {
    throw validationError([
      { loc: ["body", "code"], msg: `Invalid Python syntax: ${syntaxError}`, type: "python_syntax" },
    ]);
  }
}

/** Loads a function for management: the owner's, or anyone's with the namespace's `:all` grant (D-50). */
export async function findManagedFunction(
  db: Database,
  principal: Principal,
  action: "get" | "put" | "delete",
  namespace: string,
  name: string,
): Promise<StoredFunction> {
  const [fn] = await db
    .select()
    .from(functions)
    .where(and(eq(functions.namespace, namespace), eq(functions.name, name)))
    .limit(1);
  const visible =
    fn &&
    (fn.userId === principal.user.id ||
      can(principal, permissions.functionsNamespace(namespace, action, "all")));
  if (!fn || !visible) throw new AppError("NOT_FOUND", `Function '${namespace}/${name}' not found`);
  const messages = { get: "view", put: "update", delete: "delete" } as const;
  if (!can(principal, permissions.functionsNamespace(namespace, action, "own"))) {
    throw new AppError("FORBIDDEN", `Not authorized to ${messages[action]} this function`);
  }
  return fn;
}

function ensureSharedPoolAllowed(principal: Principal, message: string): void {
  if (!can(principal, "sinas.functions.shared_pool:all")) throw new AppError("FORBIDDEN", message);
}

export async function createFunction(
  db: Database,
  config: AppConfig,
  principal: Principal,
  input: FunctionFields,
) {
  if (input.shared_pool)
    ensureSharedPoolAllowed(principal, "Not authorized to create shared pool functions (admin only)");
  await ensureApprovedPackages(db, input.requirements);
  await ensureValidCode(config, input.code);
  try {
    return await db.transaction(async (tx) => {
      const [fn] = await tx
        .insert(functions)
        .values({
          userId: principal.user.id,
          namespace: input.namespace,
          name: input.name,
          description: input.description ?? null,
          code: input.code,
          inputSchema: input.input_schema,
          outputSchema: input.output_schema,
          requirements: input.requirements,
          enabledNamespaces: input.enabled_namespaces,
          sharedPool: input.shared_pool,
          requiresApproval: input.requires_approval,
          timeoutSeconds: input.timeout ?? null,
        })
        .returning();
      if (!fn) throw new Error("insert returned no row");
      await tx.insert(functionVersions).values({
        functionId: fn.id,
        version: 1,
        code: fn.code,
        inputSchema: fn.inputSchema,
        outputSchema: fn.outputSchema,
        createdBy: principal.user.id,
      });
      return fn;
    });
  } catch (error) {
    if (isUniqueViolation(error)) {
      throw new AppError("BAD_REQUEST", `Function '${input.namespace}/${input.name}' already exists`);
    }
    throw error;
  }
}

export async function listFunctions(
  db: Database,
  principal: Principal,
  page: { skip: number; limit: number },
) {
  const query = db.select().from(functions).orderBy(asc(functions.namespace), asc(functions.name));
  if (can(principal, "sinas.functions.*.get:all")) return query.offset(page.skip).limit(page.limit);
  const mine = eq(functions.userId, principal.user.id);
  // Own rows need their `get:own` grant too, as each row's own route (an API key made with `{}` lists none).
  // Decided per namespace before paging: filtering a page afterwards left pages short or empty.
  const namespaces = await db.selectDistinct({ namespace: functions.namespace }).from(functions).where(mine);
  const allowed = namespaces
    .map((row) => row.namespace)
    .filter((namespace) => can(principal, permissions.functionsNamespace(namespace, "get", "own")));
  if (allowed.length === 0) return [];
  return query
    .where(and(mine, inArray(functions.namespace, allowed)))
    .offset(page.skip)
    .limit(page.limit);
}

export async function updateFunction(
  db: Database,
  config: AppConfig,
  principal: Principal,
  current: StoredFunction,
  input: FunctionUpdate,
) {
  if (input.shared_pool && !current.sharedPool) {
    ensureSharedPoolAllowed(principal, "Not authorized to enable shared pool (admin only)");
  }
  const namespace = input.namespace ?? current.namespace;
  const name = input.name ?? current.name;
  // An admin vetted what runs in the shared pool, beside other users' runs: its code and what it may install or
  // call change only with the same right (sinas-spec §6.6 checks the flag only; its owner could swap the code).
  // Its namespace is part of what it may call (callable-scope.ts); its name is what the admin vetted.
  const changesWhatRuns =
    input.code !== undefined ||
    input.requirements !== undefined ||
    input.enabled_namespaces !== undefined ||
    namespace !== current.namespace ||
    name !== current.name;
  if (current.sharedPool && input.shared_pool !== false && changesWhatRuns) {
    ensureSharedPoolAllowed(
      principal,
      "Not authorized to change the code, requirements, enabled namespaces, namespace or name of a shared pool function (admin only)",
    );
  }
  // Moving a function creates it in the new namespace (as for agents and webhooks).
  if (
    namespace !== current.namespace &&
    !can(principal, permissions.functionsNamespace(namespace, "post", "own"))
  ) {
    throw new AppError("FORBIDDEN", `Not authorized to create functions in namespace '${namespace}'`);
  }
  if (input.requirements) await ensureApprovedPackages(db, input.requirements);
  if (input.code !== undefined) await ensureValidCode(config, input.code);
  try {
    return await db.transaction(async (tx) => {
      const [updated] = await tx
        .update(functions)
        .set({
          // Keeps the set non-empty for a body naming no field (drizzle refuses an empty one).
          updatedAt: new Date(),
          // Written only when asked for: a concurrent update of other fields, which read the function before
          // a rename committed, must not write the old namespace and name back.
          ...(input.namespace !== undefined && { namespace: input.namespace }),
          ...(input.name !== undefined && { name: input.name }),
          ...(input.description !== undefined && { description: input.description }),
          ...(input.code !== undefined && { code: input.code }),
          ...(input.input_schema !== undefined && { inputSchema: input.input_schema }),
          ...(input.output_schema !== undefined && { outputSchema: input.output_schema }),
          ...(input.requirements !== undefined && { requirements: input.requirements }),
          ...(input.enabled_namespaces !== undefined && { enabledNamespaces: input.enabled_namespaces }),
          ...(input.shared_pool !== undefined && { sharedPool: input.shared_pool }),
          ...(input.requires_approval !== undefined && { requiresApproval: input.requires_approval }),
          ...(input.timeout !== undefined && { timeoutSeconds: input.timeout }),
          ...(input.is_active !== undefined && { isActive: input.is_active }),
        })
        .where(eq(functions.id, current.id))
        .returning();
      if (!updated)
        throw new AppError("NOT_FOUND", `Function '${current.namespace}/${current.name}' not found`);
      // Every update carrying code is a new version, even when the code is unchanged (sinas-spec §6.1).
      if (input.code !== undefined) {
        const [latest] = await tx
          .select({ version: max(functionVersions.version) })
          .from(functionVersions)
          .where(eq(functionVersions.functionId, current.id));
        await tx.insert(functionVersions).values({
          functionId: current.id,
          version: (latest?.version ?? 0) + 1,
          code: updated.code,
          inputSchema: updated.inputSchema,
          outputSchema: updated.outputSchema,
          createdBy: principal.user.id,
        });
      }
      return updated;
    });
  } catch (error) {
    if (isUniqueViolation(error))
      throw new AppError("BAD_REQUEST", `Function '${namespace}/${name}' already exists`);
    throw error;
  }
}

export async function deleteFunction(db: Database, fn: StoredFunction): Promise<void> {
  await db.delete(functions).where(eq(functions.id, fn.id));
}

export async function listVersions(db: Database, fn: StoredFunction) {
  const rows = await db
    .select()
    .from(functionVersions)
    .where(eq(functionVersions.functionId, fn.id))
    .orderBy(desc(functionVersions.version));
  return rows.map(toVersionResponse);
}
