/**
 * @module The default groups (sinas-spec §3.5) with decision D-2, upserted at every start.
 */
export const GUEST_USERS = "GuestUsers";
export const USERS = "Users";
export const ADMINS = "Admins";

const crud = (prefix: string, actions: string[], scope = "own") =>
  actions.map((action) => [`${prefix}.${action}:${scope}`, true] as const);

/** Each listed key is upserted to its value on every start; extra keys an admin added are left alone. */
export const DEFAULT_GROUP_PERMISSIONS: Record<string, Record<string, boolean>> = {
  [GUEST_USERS]: {
    "sinas.*:own": false,
    "sinas.users.get:own": true,
    "sinas.users.put:own": true,
  },
  [USERS]: Object.fromEntries([
    ...crud("sinas.chats", ["post", "get", "put", "delete"]),
    ["sinas.chats.get:group", true],
    ...crud("sinas.messages", ["post", "get"]),
    ["sinas.messages.get:group", true],
    ...crud("sinas.agents.*", ["post", "get", "put", "delete"]),
    ...crud("sinas.functions.*", ["post", "get", "put", "delete", "execute"]),
    ...crud("sinas.webhooks", ["post", "get", "put", "delete"]),
    ...crud("sinas.schedules", ["post", "get", "put", "delete"]),
    ["sinas.executions.get:own", true],
    ...crud("sinas.packages", ["post", "get", "delete"]),
    ["sinas.users.get:own", true],
    ["sinas.users.put:own", true],
    ["sinas.users.post:all", false],
    ...crud("sinas.api_keys", ["post", "get", "delete"]),
    ...crud("sinas.states", ["post", "get", "put", "delete", "search"]),
    ["sinas.states.get:group", true],
    ...crud("sinas.templates.*.*", ["post", "get", "put", "delete", "render", "send"]),
    ["sinas.templates.default.*.render:group", true],
    ["sinas.templates.default.*.send:group", true],
    ["sinas.logs.get:own", true],
    // D-2: the 5-segment strings the runtime checks, so regular users can run their own functions and chat.
    ["sinas.functions.*.*.execute:own", true],
    ["sinas.agents.*.*.read:own", true],
  ]),
  [ADMINS]: { "sinas.*:all": true },
};

export const DEFAULT_GROUP_NAMES = [GUEST_USERS, USERS, ADMINS] as const;
