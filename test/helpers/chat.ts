/**
 * @module Chat fixtures for black-box tests: providers pointed at the fake LLM (one per wire format), agents,
 * chats, an SSE reader, and readers of the fake's recorded requests that hide the wire format's differences.
 */
import { expect } from "vitest";
import { type FakeLlm, type RecordedRequest, startFakeLlm } from "../fixtures/fake-llm";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL } from "./auth";
import { startTestStack, type TestStack } from "./stack";

export const WIRE_FORMATS = ["openai", "anthropic"] as const;
export type WireFormat = (typeof WIRE_FORMATS)[number];

export interface SseEvent {
  id: string | null;
  event: string;
  data: unknown;
}

/** Creates an LLM provider (`POST /api/v1/llm-providers`, 201 expected) and returns its id. */
export async function createProvider(stack: TestStack, admin: Session, body: Record<string, unknown>) {
  const response = await api(stack, admin, "POST", "/api/v1/llm-providers", body);
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return (response.body as { id: string }).id;
}

/** Creates `fake-openai` and `fake-anthropic` providers; returns their ids by wire format. */
export async function createFakeProviders(stack: TestStack, admin: Session, fake: FakeLlm) {
  const ids = {} as Record<WireFormat, string>;
  for (const format of WIRE_FORMATS) {
    ids[format] = await createProvider(stack, admin, {
      name: `fake-${format}`,
      provider_type: format,
      api_key: "sk-test",
      api_endpoint: format === "openai" ? fake.openaiUrl : fake.url,
      default_model: "fake-model",
      is_default: format === "openai",
    });
  }
  return ids;
}

export interface ChatStack {
  stack: TestStack;
  fake: FakeLlm;
  admin: Session;
  /** A second, regular user. */
  other: Session;
  providers: Record<WireFormat, string>;
}

/** A stack, the fake LLM, the superadmin and one regular user, and one provider per wire format. */
export async function startChatStack(
  otherEmail: string,
  workerVars: Record<string, string> = {},
): Promise<ChatStack> {
  const fake = await startFakeLlm();
  const stack = await startTestStack({ workerVars: { ...IDENTITY_VARS, ...workerVars } });
  const [admin, other] = await Promise.all([login(stack, SUPERADMIN_EMAIL), login(stack, otherEmail)]);
  const providers = await createFakeProviders(stack, admin, fake);
  return { stack, fake, admin, other, providers };
}

export async function stopChatStack(parts: { stack?: TestStack; fake?: FakeLlm }): Promise<void> {
  await parts.stack?.stop();
  await parts.fake?.close();
}

export async function createAgent(stack: TestStack, session: Session, body: Record<string, unknown>) {
  const response = await api(stack, session, "POST", "/api/v1/agents", body);
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body as { id: string; name: string; namespace: string };
}

export async function createChat(
  stack: TestStack,
  session: Session,
  agent: string,
  body: Record<string, unknown> = {},
) {
  const response = await api(stack, session, "POST", `/agents/default/${agent}/chats`, body);
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return (response.body as { id: string }).id;
}

/** Parses an SSE body (`id:`, `event:`, `data:` lines; comments ignored). */
export function parseSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    let id: string | null = null;
    let event = "message";
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith("id:")) id = line.slice(3).trim();
      else if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (data.length === 0) continue;
    const raw = data.join("\n");
    let parsed: unknown = raw;
    try {
      parsed = JSON.parse(raw);
    } catch {
      // [DONE] and other plain data
    }
    events.push({ id, event, data: parsed });
  }
  return events;
}

/** Posts to a streaming route and reads the whole stream. */
export async function streamMessage(stack: TestStack, session: Session, chatId: string, content: unknown) {
  const response = await stack.fetch(`/chats/${chatId}/messages/stream`, {
    method: "POST",
    headers: { "content-type": "application/json", ...session.headers },
    body: JSON.stringify({ content }),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, events: parseSse(text) };
}

export function contentOf(events: SseEvent[]): string {
  return events
    .filter((event) => event.event === "message")
    .map((event) => (event.data as { content?: string | null }).content ?? "")
    .join("");
}

export async function chatMessages(stack: TestStack, session: Session, chatId: string) {
  const response = await api(stack, session, "GET", `/chats/${chatId}`);
  expect(response.status).toBe(200);
  return (response.body as { messages: Record<string, unknown>[] }).messages;
}

// ----------------------------------------------------------------------------------------- fake requests

type Body = Record<string, unknown>;

/** Tool names offered in a request, in order. */
export function toolNames(request: RecordedRequest): string[] {
  const tools = ((request.body as Body).tools as Body[] | undefined) ?? [];
  return tools.map((tool) =>
    request.api === "anthropic" ? String(tool.name) : String((tool.function as Body).name),
  );
}

/** A tool's parameter schema, whatever the wire format. */
export function toolParameters(request: RecordedRequest, name: string): Body {
  const tools = ((request.body as Body).tools as Body[] | undefined) ?? [];
  for (const tool of tools) {
    if (request.api === "anthropic" && tool.name === name) return tool.input_schema as Body;
    const fn = tool.function as Body | undefined;
    if (fn?.name === name) return fn.parameters as Body;
  }
  throw new Error(`tool ${name} not offered`);
}

/** The system text of a request (OpenAI: the first system message; Anthropic: `system`). */
export function systemText(request: RecordedRequest): string | null {
  const body = request.body as Body;
  if (request.api === "anthropic") {
    const system = body.system;
    if (typeof system === "string") return system;
    if (Array.isArray(system)) return system.map((block: Body) => String(block.text)).join("");
    return null;
  }
  const first = (body.messages as Body[])[0];
  return first?.role === "system" ? String(first.content) : null;
}

/** Tool results sent back to the model, as `{tool_call_id, content}` with the content parsed. */
export function toolResults(request: RecordedRequest): { tool_call_id: string; content: unknown }[] {
  const messages = (request.body as Body).messages as Body[];
  const results: { tool_call_id: string; content: unknown }[] = [];
  const parse = (value: unknown) => {
    try {
      return JSON.parse(String(value));
    } catch {
      return value;
    }
  };
  for (const message of messages) {
    if (request.api === "openai" && message.role === "tool") {
      results.push({ tool_call_id: String(message.tool_call_id), content: parse(message.content) });
    }
    if (request.api === "anthropic" && Array.isArray(message.content)) {
      for (const block of message.content as Body[]) {
        if (block.type !== "tool_result") continue;
        const content = Array.isArray(block.content)
          ? (block.content as Body[]).map((part) => String(part.text)).join("")
          : block.content;
        results.push({ tool_call_id: String(block.tool_use_id), content: parse(content) });
      }
    }
  }
  return results;
}

/** The text of the last user message of a request. */
export function lastUserText(request: RecordedRequest): string {
  const messages = ((request.body as Body).messages as Body[]).filter((message) => message.role === "user");
  const last = messages[messages.length - 1];
  if (!last) return "";
  if (typeof last.content === "string") return last.content;
  return (last.content as Body[])
    .filter((part) => part.type === "text")
    .map((part) => String(part.text))
    .join("");
}
