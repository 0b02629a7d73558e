/**
 * @module The state tools' definitions as the model sees them (sinas-spec §5.5.1, §8.2) and the namespace rules
 * they follow (D-39): pure, so they are tested without a database. `state-tools.ts` runs them.
 */
import type { JsonObject } from "../db/schema";
import type { ToolDefinition } from "../llm/types";

export const STATE_TOOL_NAMES = [
  "retrieve_context",
  "save_context",
  "update_context",
  "delete_context",
] as const;
export type StateToolName = (typeof STATE_TOOL_NAMES)[number];

export interface StateNamespaces {
  readonly: string[];
  readwrite: string[];
}

export interface StateKey {
  namespace: string;
  key: string;
}

export const DEFAULT_RETRIEVE_LIMIT = 10;
export const MAX_RETRIEVE_LIMIT = 100;
/** Keys listed in `retrieve_context`'s description, so a user with very many states does not flood the prompt. */
export const MAX_LISTED_KEYS = 1000;

const quoted = (names: string[]) => names.map((name) => `'${name}'`).join(", ");

/** `Currently available context:` with one `  • ns: 'k1', 'k2'` line per namespace; empty without keys. */
export function describeAvailableContext(keys: StateKey[]): string {
  if (keys.length === 0) return "";
  const byNamespace = new Map<string, string[]>();
  for (const { namespace, key } of keys)
    byNamespace.set(namespace, [...(byNamespace.get(namespace) ?? []), key]);
  const lines = ["Currently available context:"];
  // Code-point order, as Python's sorted() gives (a SQL ORDER BY would follow the database collation).
  for (const namespace of [...byNamespace.keys()].sort()) {
    lines.push(`  • ${namespace}: ${quoted((byNamespace.get(namespace) ?? []).sort())}`);
  }
  return lines.join("\n");
}

/** The state tools for these namespaces (none without any); `available` feeds retrieve_context's description. */
export function stateToolDefinitions(namespaces: StateNamespaces, available: StateKey[]): ToolDefinition[] {
  const { readonly, readwrite } = namespaces;
  if (readonly.length === 0 && readwrite.length === 0) return [];
  const availableInfo = describeAvailableContext(available);
  let namespaceInfo = "";
  if (readwrite.length > 0)
    namespaceInfo += `\n\nRead-write namespaces: ${quoted(readwrite)}. You can save/update/delete context in these namespaces.`;
  if (readonly.length > 0)
    namespaceInfo += `\n\nRead-only namespaces: ${quoted(readonly)}. You can only retrieve context from these namespaces.`;
  const tool = (name: string, description: string, parameters: JsonObject): ToolDefinition => ({
    type: "function",
    function: { name, description, parameters },
  });
  const tools = [
    tool(
      "retrieve_context",
      "Retrieve saved context by namespace and/or key. Use this to recall previously saved information, " +
        "preferences, or facts about the user or project." +
        (availableInfo ? `\n\n${availableInfo}` : ""),
      {
        type: "object",
        properties: {
          namespace: { type: "string", description: "Filter by namespace (e.g., 'preferences', 'facts')" },
          key: {
            type: "string",
            description: "Specific key to retrieve (optional, omit to get all in namespace)",
          },
          search: { type: "string", description: "Search term to find in keys and descriptions" },
          tags: { type: "string", description: "Comma-separated tags to filter by" },
          limit: { type: "integer", description: "Maximum number of results to return", default: 10 },
        },
      },
    ),
  ];
  if (readwrite.length === 0) return tools;
  tools.push(
    tool(
      "save_context",
      "Save information to context store for future recall. Use this to remember user preferences, facts " +
        "learned during conversation, important decisions, or any information that should persist across " +
        "conversations. Examples: user's timezone, preferred communication style, project details, etc." +
        namespaceInfo,
      {
        type: "object",
        properties: {
          namespace: {
            type: "string",
            description: "Category/namespace for organization. Use one of the read-write namespaces.",
            enum: [...readwrite],
          },
          key: {
            type: "string",
            description: "Unique identifier within the namespace (e.g., 'timezone', 'favorite_language')",
          },
          value: { type: "object", description: "Data to store (as JSON object)" },
          description: {
            type: "string",
            description: "Human-readable description of what this context contains",
          },
          tags: {
            type: "array",
            items: { type: "string" },
            description: "Tags for categorization and search",
          },
          visibility: {
            type: "string",
            enum: ["private", "group"],
            description: "Who can access this context: 'private' (user only) or 'group' (team members)",
            default: "private",
          },
        },
        required: ["namespace", "key", "value"],
      },
    ),
    tool(
      "update_context",
      "Update existing context entry. Use this to modify previously saved information when new details are " +
        "learned or preferences change.",
      {
        type: "object",
        properties: {
          namespace: {
            type: "string",
            description: "Namespace of the context to update",
            enum: [...readwrite],
          },
          key: { type: "string", description: "Key of the context to update" },
          value: { type: "object", description: "New value to store (replaces existing)" },
          description: { type: "string", description: "Updated description" },
          tags: { type: "array", items: { type: "string" }, description: "Updated tags" },
        },
        required: ["namespace", "key"],
      },
    ),
    tool("delete_context", "Delete a context entry when it's no longer needed or is outdated.", {
      type: "object",
      properties: {
        namespace: {
          type: "string",
          description: "Namespace of the context to delete",
          enum: [...readwrite],
        },
        key: { type: "string", description: "Key of the context to delete" },
      },
      required: ["namespace", "key"],
    }),
  );
  return tools;
}

export function agentNamespaces(agent: {
  stateNamespacesReadonly: string[];
  stateNamespacesReadwrite: string[];
}): StateNamespaces {
  return { readonly: agent.stateNamespacesReadonly, readwrite: agent.stateNamespacesReadwrite };
}

/** Namespaces the agent may read: read-only plus read-write, each once. */
export function readableNamespaces(namespaces: StateNamespaces): string[] {
  return [...new Set([...namespaces.readonly, ...namespaces.readwrite])];
}

/**
 * The refusal of a call outside the agent's namespaces (§8.2 with D-39), or null when it may proceed: writes and
 * deletes need a read-write namespace, a retrieve filtered by namespace a readable one.
 */
export function namespaceDenial(
  tool: string,
  args: JsonObject,
  namespaces: StateNamespaces,
): JsonObject | null {
  const namespace = args.namespace;
  // SINAS formats a missing namespace as Python's None.
  const shown = typeof namespace === "string" ? namespace : "None";
  if (tool === "retrieve_context") {
    if (typeof namespace !== "string" || namespace === "") return null;
    const readable = readableNamespaces(namespaces);
    if (readable.includes(namespace)) return null;
    return { error: `Agent not authorized to read namespace '${shown}'`, allowed_namespaces: readable };
  }
  if (typeof namespace === "string" && namespaces.readwrite.includes(namespace)) return null;
  return {
    error: `Agent not authorized to write to namespace '${shown}'`,
    allowed_namespaces: [...namespaces.readwrite],
  };
}
