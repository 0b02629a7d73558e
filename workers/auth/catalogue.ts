/**
 * @module The catalogue of checked permission strings (sinas-spec §3.7), as typed builders.
 *
 * Routers build a permission here and hand it to the access checks; nobody concatenates permission
 * strings by hand, so a typo is a compile error rather than a silently denied request.
 */
import type { Scope } from "./permissions";

type Crud = "get" | "post" | "put" | "delete";

export const permissions = {
  users: (action: Crud, scope: Scope) => `sinas.users.${action}:${scope}`,
  groups: (action: Crud | "manage_members" | "manage_permissions", scope: Scope) =>
    `sinas.groups.${action}:${scope}`,
  /** Logged only: API keys are always the caller's own. */
  apiKeys: (action: "create" | "read" | "delete") => `sinas.api_keys.${action}:own`,
  states: (action: Crud | "search", scope: Scope) => `sinas.states.${action}:${scope}`,
  logs: (scope: Scope) => `sinas.logs.get:${scope}`,
  functionsNamespace: (namespace: string, action: Crud, scope: Scope) =>
    `sinas.functions.${namespace}.${action}:${scope}`,
  functionExecute: (namespace: string, name: string, scope: Scope) =>
    `sinas.functions.${namespace}.${name}.execute:${scope}`,
  webhooks: (action: Crud, scope: Scope) => `sinas.webhooks.${action}:${scope}`,
  /** Logged only: the label of a call to a webhook without auth (sinas-spec §7.1, D-1). */
  webhookPublic: (path: string) => `webhook.public:${path}`,
  /** LLM provider management is admin-only: always the `all` scope (sinas-spec §1.16). */
  llmProviders: (action: Crud) => `sinas.llm_providers.${action}:all`,
  agentRead: (namespace: string, name: string, scope: Scope) =>
    `sinas.agents.${namespace}.${name}.read:${scope}`,
  /** Agent management; `namespace` `*` for the list check (`sinas.agents.*.get:all`). */
  agentsNamespace: (namespace: string, action: Crud, scope: Scope) =>
    `sinas.agents.${namespace}.${action}:${scope}`,
  /** Logged only: chats are always the caller's own (sinas-spec §3.7). */
  chats: (action: "write" | "get" | "put" | "delete") => `sinas.chats.${action}:own`,
} as const;

/** A builder fixed on everything but the scope, for checks that try `all`, then `group`, then `own`. */
export type ScopedPermission = (scope: Scope) => string;
