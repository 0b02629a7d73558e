/**
 * @module Function fixtures of sinas-spec §12.0 and helpers to create and run them through the API.
 */
import { expect } from "vitest";
import { api, type Session } from "./auth";
import type { TestStack } from "./stack";

export const OBJECT_SCHEMA = { type: "object" } as const;

export const GREET = {
  name: "greet",
  code: 'def greet(input, context):\n    return {"greeting": "Hello " + input["body"]["name"], "user": context["user_email"], "trigger": context["trigger_type"]}\n',
  input_schema: {
    type: "object",
    properties: { body: { type: "object", properties: { name: { type: "string" } }, required: ["name"] } },
    required: ["body"],
  },
  output_schema: { type: "object", properties: { greeting: { type: "string" } }, required: ["greeting"] },
};

export function pythonFunction(name: string, body: string, extra: Record<string, unknown> = {}) {
  return {
    name,
    code: `def ${name}(input, context):\n${body}\n`,
    input_schema: OBJECT_SCHEMA,
    output_schema: OBJECT_SCHEMA,
    ...extra,
  };
}

export async function createFunction(
  stack: TestStack,
  session: Session,
  definition: Record<string, unknown>,
) {
  const response = await api(stack, session, "POST", "/api/v1/functions", definition);
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body as { id: string; namespace: string; name: string };
}

export async function execute(
  stack: TestStack,
  session: Pick<Session, "headers">,
  fn: { namespace?: string; name: string },
  input: unknown = {},
  query = "",
) {
  return api(stack, session, "POST", `/functions/${fn.namespace ?? "default"}/${fn.name}/execute${query}`, {
    input,
  });
}

/** Polls an execution until it leaves RUNNING (async runs). */
export async function waitForFinalStatus(
  stack: TestStack,
  session: Pick<Session, "headers">,
  executionId: string,
  timeoutMs = 30_000,
) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const response = await api(stack, session, "GET", `/executions/${executionId}`);
    const status = (response.body as { status?: string }).status;
    if (status && status !== "RUNNING") return response.body as Record<string, unknown>;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`execution ${executionId} still running after ${timeoutMs} ms`);
}
