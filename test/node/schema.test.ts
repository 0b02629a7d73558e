/**
 * The generated migrations, applied to a fresh in-process PGlite, enforce what workers/db/schema.ts promises:
 * uniqueness, cascades (D-18), enums, time-zone-aware timestamps (D-20), message ordering (D-17), and no drift
 * between the schema module and migrations/.
 *
 * PGlite only: no plain Postgres client (`pg`, `postgres`) is installed, and this suite adds no dependency,
 * so TEST_DATABASE_URL is not used here.
 */
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { eq, getTableColumns, is, sql } from "drizzle-orm";
import { getTableConfig, PgTable } from "drizzle-orm/pg-core";
import { drizzle, type PgliteDatabase } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as schema from "../../workers/db/schema";
import {
  agents,
  apiKeys,
  chats,
  executions,
  functions,
  groupMembers,
  groupPermissions,
  groups,
  installedPackages,
  llmProviders,
  messages,
  otpSessions,
  pendingToolApprovals,
  refreshTokens,
  states,
  stepExecutions,
  templates,
  users,
  webhooks,
} from "../../workers/db/schema";

const MIGRATIONS_FOLDER = fileURLToPath(new URL("../../migrations", import.meta.url));
const UNIQUE_VIOLATION = "23505";
const FOREIGN_KEY_VIOLATION = "23503";
const INVALID_TEXT_REPRESENTATION = "22P02";

type Db = PgliteDatabase<typeof schema>;

let client: PGlite;
let db: Db;

beforeAll(async () => {
  client = new PGlite();
  db = drizzle(client, { schema });
  await migrate(db, { migrationsFolder: MIGRATIONS_FOLDER });
});

afterAll(async () => {
  await client?.close();
});

/** The SQLSTATE of the failure, looked up through drizzle's DrizzleQueryError wrapper. */
async function sqlStateOf(statement: PromiseLike<unknown>): Promise<string | undefined> {
  try {
    await statement;
  } catch (error) {
    for (let e: unknown = error; e instanceof Object; e = "cause" in e ? e.cause : undefined) {
      if ("code" in e && typeof e.code === "string") return e.code;
    }
    throw error;
  }
  throw new Error("expected the statement to fail");
}

const unique = (label: string) => `${label}-${crypto.randomUUID()}`;

async function createUser(email = `${unique("user")}@example.com`) {
  const [user] = await db.insert(users).values({ email }).returning();
  if (!user) throw new Error("user not inserted");
  return user;
}

async function createGroup() {
  const [group] = await db
    .insert(groups)
    .values({ name: unique("group") })
    .returning();
  if (!group) throw new Error("group not inserted");
  return group;
}

async function createChat(userId: string) {
  const [chat] = await db.insert(chats).values({ userId, title: "A chat" }).returning();
  if (!chat) throw new Error("chat not inserted");
  return chat;
}

async function createExecution(userId: string, chatId: string | null = null) {
  const [execution] = await db
    .insert(executions)
    .values({
      userId,
      chatId,
      executionId: crypto.randomUUID(),
      functionName: "hello",
      triggerType: "AGENT",
      triggerId: chatId ?? "unknown",
      inputData: {},
    })
    .returning();
  if (!execution) throw new Error("execution not inserted");
  return execution;
}

async function countWhere(table: PgTable, condition: ReturnType<typeof eq>): Promise<number> {
  const rows = await db.select({ n: sql<number>`count(*)::int` }).from(table).where(condition);
  return rows[0]?.n ?? 0;
}

describe("migrations", () => {
  const tables: PgTable[] = Object.values(schema).flatMap((value) => (is(value, PgTable) ? [value] : []));

  it("create every table, column and index of the schema module (no drift)", async () => {
    expect(tables.length).toBe(23);
    const columns = await db.execute<{ table_name: string; column_name: string; is_nullable: "YES" | "NO" }>(
      sql`select table_name, column_name, is_nullable from information_schema.columns where table_schema = 'public'`,
    );
    const indexes = await db.execute<{ indexname: string }>(
      sql`select indexname from pg_indexes where schemaname = 'public'`,
    );
    const actualColumns = new Set(
      columns.rows.map((c) => `${c.table_name}.${c.column_name} ${c.is_nullable}`),
    );
    const actualIndexes = new Set(indexes.rows.map((i) => i.indexname));

    for (const table of tables) {
      const config = getTableConfig(table);
      for (const column of Object.values(getTableColumns(table))) {
        expect(actualColumns).toContain(`${config.name}.${column.name} ${column.notNull ? "NO" : "YES"}`);
      }
      for (const index of config.indexes) {
        expect(actualIndexes).toContain(index.config.name);
      }
    }
    expect(columns.rows.length).toBe(
      tables.reduce((sum, table) => sum + Object.keys(getTableColumns(table)).length, 0),
    );
  });

  it("make every timestamp column timestamp with time zone", async () => {
    const result = await db.execute<{ table_name: string; column_name: string; data_type: string }>(
      sql`select table_name, column_name, data_type from information_schema.columns
          where table_schema = 'public' and data_type like 'timestamp%'`,
    );
    expect(result.rows.length).toBeGreaterThan(40);
    expect(result.rows).toContainEqual({
      table_name: "states",
      column_name: "expires_at",
      data_type: "timestamp with time zone",
    });
    const naive = result.rows.filter((row) => row.data_type !== "timestamp with time zone");
    expect(naive).toEqual([]);
  });
});

describe("defaults", () => {
  it("fill in the spec and §11 defaults", async () => {
    const user = await createUser();
    expect(user.isActive).toBe(true);
    expect(user.createdAt).toBeInstanceOf(Date);

    const [otp] = await db
      .insert(otpSessions)
      .values({ email: user.email, codeHash: "0".repeat(64), expiresAt: new Date(Date.now() + 600_000) })
      .returning();
    expect(otp?.attempts).toBe(0);
    expect(otp?.verified).toBe(false);

    const [pkg] = await db
      .insert(installedPackages)
      .values({ packageName: unique("pkg") })
      .returning();
    expect(pkg?.installedAt).toBeInstanceOf(Date);

    const [agent] = await db
      .insert(agents)
      .values({ userId: user.id, name: unique("agent") })
      .returning();
    expect(agent).toMatchObject({
      namespace: "default",
      temperature: 0.7,
      inputSchema: {},
      enabledFunctions: [],
      enabledAgents: [],
      functionParameters: {},
      isActive: true,
    });

    const [state] = await db
      .insert(states)
      .values({ userId: user.id, namespace: "prefs", key: "k", value: { a: 1 } })
      .returning();
    expect(state).toMatchObject({ visibility: "private", tags: [], relevanceScore: 1, value: { a: 1 } });

    const execution = await createExecution(user.id);
    expect(execution).toMatchObject({ status: "RUNNING", functionNamespace: "default" });
  });

  it("refresh updated_at on update", async () => {
    const user = await createUser();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const [updated] = await db
      .update(users)
      .set({ lastLoginAt: new Date() })
      .where(eq(users.id, user.id))
      .returning();
    expect(updated?.updatedAt.getTime()).toBeGreaterThan(user.updatedAt.getTime());
  });

  it("round-trips bytea generator state", async () => {
    const user = await createUser();
    const execution = await createExecution(user.id);
    const state = Uint8Array.from([0, 1, 127, 128, 255]);
    await db
      .update(executions)
      .set({ generatorState: state, status: "AWAITING_INPUT" })
      .where(eq(executions.id, execution.id));
    const [row] = await db.select().from(executions).where(eq(executions.id, execution.id));
    expect(Array.from(row?.generatorState ?? [])).toEqual([0, 1, 127, 128, 255]);
  });
});

describe("uniqueness", () => {
  it("rejects a second user with the same email", async () => {
    const user = await createUser();
    expect(await sqlStateOf(db.insert(users).values({ email: user.email }))).toBe(UNIQUE_VIOLATION);
  });

  it("rejects duplicate (namespace, name) for agents, functions and templates, per namespace only", async () => {
    const owner = await createUser();
    const name = unique("thing");
    const fn = { userId: owner.id, name, code: "def f(i, c): pass", inputSchema: {}, outputSchema: {} };
    const inserts = [
      (namespace: string) => db.insert(agents).values({ userId: owner.id, namespace, name }),
      (namespace: string) => db.insert(functions).values({ ...fn, namespace }),
      (namespace: string) => db.insert(templates).values({ namespace, name, htmlContent: "<p/>" }),
    ];
    for (const insert of inserts) {
      await insert("default");
      await insert("other");
      expect(await sqlStateOf(insert("default"))).toBe(UNIQUE_VIOLATION);
    }
  });

  it("allows one row per (group, user) membership and per (group, permission key)", async () => {
    const user = await createUser();
    const group = await createGroup();
    await db.insert(groupMembers).values({ groupId: group.id, userId: user.id });
    expect(await sqlStateOf(db.insert(groupMembers).values({ groupId: group.id, userId: user.id }))).toBe(
      UNIQUE_VIOLATION,
    );
    const permission = {
      groupId: group.id,
      permissionKey: "sinas.agents.*.*.read:own",
      permissionValue: true,
    };
    await db.insert(groupPermissions).values(permission);
    expect(await sqlStateOf(db.insert(groupPermissions).values(permission))).toBe(UNIQUE_VIOLATION);
  });

  it("allows one method per webhook path", async () => {
    const owner = await createUser();
    const path = unique("hooks/p");
    await db.insert(webhooks).values({ userId: owner.id, path, functionName: "f", httpMethod: "POST" });
    expect(
      await sqlStateOf(
        db.insert(webhooks).values({ userId: owner.id, path, functionName: "f", httpMethod: "GET" }),
      ),
    ).toBe(UNIQUE_VIOLATION);
  });

  it("allows at most one default LLM provider", async () => {
    await db.insert(llmProviders).values({ name: unique("p"), providerType: "openai", isDefault: true });
    await db.insert(llmProviders).values({ name: unique("p"), providerType: "openai", isDefault: false });
    expect(
      await sqlStateOf(
        db.insert(llmProviders).values({ name: unique("p"), providerType: "anthropic", isDefault: true }),
      ),
    ).toBe(UNIQUE_VIOLATION);
  });
});

describe("enums", () => {
  it("accept API and MANUAL trigger types and reject unknown ones", async () => {
    const user = await createUser();
    for (const triggerType of ["API", "MANUAL"] as const) {
      await db.insert(executions).values({
        userId: user.id,
        executionId: crypto.randomUUID(),
        functionName: "f",
        triggerType,
        triggerId: "t",
        inputData: {},
      });
    }
    const bogus = db.execute(
      sql`insert into executions (user_id, execution_id, function_name, trigger_type, trigger_id, input_data)
          values (${user.id}, ${crypto.randomUUID()}, 'f', 'BOGUS', 't', '{}')`,
    );
    expect(await sqlStateOf(bogus)).toBe(INVALID_TEXT_REPRESENTATION);
  });
});

describe("states.expires_at", () => {
  it("keeps the time zone of an ISO-8601 value whatever the session time zone (D-20)", async () => {
    const user = await createUser();
    const epoch = await db.transaction(async (tx) => {
      await tx.execute(sql`set local time zone 'Asia/Tokyo'`);
      await tx.execute(
        sql`insert into states (user_id, namespace, key, value, expires_at)
            values (${user.id}, 'tz', 'k', '{}', '2030-01-01T12:00:00+05:00')`,
      );
      const result = await tx.execute<{ epoch: string }>(
        sql`select extract(epoch from expires_at)::text as epoch from states where user_id = ${user.id}`,
      );
      return Number(result.rows[0]?.epoch);
    });
    expect(epoch * 1000).toBe(Date.parse("2030-01-01T07:00:00Z"));

    const [read] = await db.select().from(states).where(eq(states.userId, user.id));
    expect(read?.expiresAt?.toISOString()).toBe("2030-01-01T07:00:00.000Z");
  });
});

describe("messages.sequence", () => {
  it("strictly increases in insert order within one transaction, where created_at ties (D-17)", async () => {
    const user = await createUser();
    const chat = await createChat(user.id);
    const contents = ["first", "second", "third", "fourth", "fifth"];
    await db.transaction(async (tx) => {
      for (const content of contents.slice(0, 3)) {
        await tx.insert(messages).values({ chatId: chat.id, role: "user", content });
      }
      await tx
        .insert(messages)
        .values(
          contents.slice(3).map((content) => ({ chatId: chat.id, role: "assistant" as const, content })),
        );
    });

    const rows = await db
      .select()
      .from(messages)
      .where(eq(messages.chatId, chat.id))
      .orderBy(messages.sequence);
    expect(rows.map((row) => row.content)).toEqual(contents);
    expect(new Set(rows.map((row) => row.createdAt.getTime())).size).toBe(1);
    for (let i = 1; i < rows.length; i++) {
      expect(rows[i]?.sequence).toBeGreaterThan(rows[i - 1]?.sequence ?? Number.POSITIVE_INFINITY);
    }
  });

  it("cannot be set by the caller", async () => {
    const user = await createUser();
    const chat = await createChat(user.id);
    const explicit = db.execute(
      sql`insert into messages (chat_id, role, content, sequence) values (${chat.id}, 'user', 'x', 1)`,
    );
    expect(await sqlStateOf(explicit)).toBe("428C9");
  });
});

describe("deletes (D-18)", () => {
  it("deleting a user cascades memberships, API keys, refresh tokens, states, chats and executions", async () => {
    const admin = await createUser();
    const user = await createUser();
    const group = await createGroup();
    await db.insert(groupMembers).values({ groupId: group.id, userId: user.id, addedBy: admin.id });
    // The admin's own membership was added by the user; it survives with added_by nulled.
    await db.insert(groupMembers).values({ groupId: group.id, userId: admin.id, addedBy: user.id });
    await db.insert(apiKeys).values({
      userId: user.id,
      name: "k",
      keyHash: unique("hash"),
      keyPrefix: "abcdefgh",
      permissions: {},
    });
    const familyId = crypto.randomUUID();
    const [older] = await db
      .insert(refreshTokens)
      .values({
        userId: user.id,
        tokenHash: unique("t1"),
        tokenPrefix: "t1",
        familyId,
        expiresAt: new Date(Date.now() + 86_400_000),
      })
      .returning();
    const [newer] = await db
      .insert(refreshTokens)
      .values({
        userId: user.id,
        tokenHash: unique("t2"),
        tokenPrefix: "t2",
        familyId,
        expiresAt: new Date(Date.now() + 86_400_000),
      })
      .returning();
    if (!older || !newer) throw new Error("refresh tokens not inserted");
    await db.update(refreshTokens).set({ replacedBy: newer.id }).where(eq(refreshTokens.id, older.id));
    await db.insert(states).values({ userId: user.id, namespace: "n", key: "k", value: {} });
    const chat = await createChat(user.id);
    await db.insert(messages).values({ chatId: chat.id, role: "user", content: "hi" });
    await createExecution(user.id, chat.id);

    await db.delete(users).where(eq(users.id, user.id));

    expect(await countWhere(groupMembers, eq(groupMembers.userId, user.id))).toBe(0);
    expect(await countWhere(apiKeys, eq(apiKeys.userId, user.id))).toBe(0);
    expect(await countWhere(refreshTokens, eq(refreshTokens.userId, user.id))).toBe(0);
    expect(await countWhere(states, eq(states.userId, user.id))).toBe(0);
    expect(await countWhere(chats, eq(chats.userId, user.id))).toBe(0);
    expect(await countWhere(messages, eq(messages.chatId, chat.id))).toBe(0);
    expect(await countWhere(executions, eq(executions.userId, user.id))).toBe(0);
    const [adminMembership] = await db.select().from(groupMembers).where(eq(groupMembers.userId, admin.id));
    expect(adminMembership?.addedBy).toBeNull();
    expect(await countWhere(groups, eq(groups.id, group.id))).toBe(1);
  });

  it("refuses to delete a user who still owns functions, agents, webhooks or schedules", async () => {
    const owners = await Promise.all([createUser(), createUser(), createUser()]);
    const [fnOwner, agentOwner, webhookOwner] = owners;
    if (!fnOwner || !agentOwner || !webhookOwner) throw new Error("users not inserted");
    await db.insert(functions).values({
      userId: fnOwner.id,
      name: unique("fn"),
      code: "def f(i, c): pass",
      inputSchema: {},
      outputSchema: {},
    });
    await db.insert(agents).values({ userId: agentOwner.id, name: unique("agent") });
    await db.insert(webhooks).values({ userId: webhookOwner.id, path: unique("p"), functionName: "f" });
    for (const owner of owners) {
      expect(await sqlStateOf(db.delete(users).where(eq(users.id, owner.id)))).toBe(FOREIGN_KEY_VIOLATION);
    }
  });

  it("deleting a group cascades members, permissions and group states, and ungroups resources", async () => {
    const user = await createUser();
    const group = await createGroup();
    await db.insert(groupMembers).values({ groupId: group.id, userId: user.id });
    await db
      .insert(groupPermissions)
      .values({ groupId: group.id, permissionKey: "p", permissionValue: true });
    await db
      .insert(states)
      .values({ userId: user.id, groupId: group.id, namespace: "g", key: "k", value: {} });
    const [agent] = await db
      .insert(agents)
      .values({ userId: user.id, groupId: group.id, name: unique("agent") })
      .returning();

    await db.delete(groups).where(eq(groups.id, group.id));

    expect(await countWhere(groupMembers, eq(groupMembers.groupId, group.id))).toBe(0);
    expect(await countWhere(groupPermissions, eq(groupPermissions.groupId, group.id))).toBe(0);
    expect(await countWhere(states, eq(states.userId, user.id))).toBe(0);
    const [ungrouped] = await db
      .select()
      .from(agents)
      .where(eq(agents.id, agent?.id ?? ""));
    expect(ungrouped?.groupId).toBeNull();
  });

  it("deleting a chat cascades messages and pending approvals and nulls executions.chat_id", async () => {
    const user = await createUser();
    const chat = await createChat(user.id);
    const toolCall = {
      id: unique("call"),
      type: "function" as const,
      function: { name: "f", arguments: "{}" },
    };
    const [assistant] = await db
      .insert(messages)
      .values({ chatId: chat.id, role: "assistant", toolCalls: [toolCall] })
      .returning();
    if (!assistant) throw new Error("message not inserted");
    await db.insert(pendingToolApprovals).values({
      chatId: chat.id,
      messageId: assistant.id,
      userId: user.id,
      toolCallId: toolCall.id,
      functionNamespace: "default",
      functionName: "f",
      arguments: {},
      allToolCalls: [toolCall],
      conversationContext: {
        provider: null,
        model: null,
        temperature: 0,
        max_tokens: null,
        messages: [],
        tools: [],
      },
    });
    const execution = await createExecution(user.id, chat.id);

    await db.delete(chats).where(eq(chats.id, chat.id));

    expect(await countWhere(messages, eq(messages.chatId, chat.id))).toBe(0);
    expect(await countWhere(pendingToolApprovals, eq(pendingToolApprovals.chatId, chat.id))).toBe(0);
    const [kept] = await db.select().from(executions).where(eq(executions.id, execution.id));
    expect(kept).toBeDefined();
    expect(kept?.chatId).toBeNull();
  });

  it("deleting an execution cascades its step tree", async () => {
    const user = await createUser();
    const execution = await createExecution(user.id);
    const [root] = await db
      .insert(stepExecutions)
      .values({
        executionId: execution.executionId,
        functionName: "outer",
        inputData: {},
        startedAt: new Date(),
      })
      .returning();
    await db.insert(stepExecutions).values({
      executionId: execution.executionId,
      parentStepId: root?.id,
      functionNamespace: "payments",
      functionName: "charge",
      inputData: { amount: 1 },
      startedAt: new Date(),
    });
    expect(await countWhere(stepExecutions, eq(stepExecutions.executionId, execution.executionId))).toBe(2);

    await db.delete(executions).where(eq(executions.id, execution.id));

    expect(await countWhere(stepExecutions, eq(stepExecutions.executionId, execution.executionId))).toBe(0);
  });

  it("rejects a step for an unknown execution", async () => {
    const orphan = db
      .insert(stepExecutions)
      .values({ executionId: crypto.randomUUID(), functionName: "f", inputData: {}, startedAt: new Date() });
    expect(await sqlStateOf(orphan)).toBe(FOREIGN_KEY_VIOLATION);
  });
});
