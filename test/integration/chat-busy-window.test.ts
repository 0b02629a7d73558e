/**
 * The text-coalescing window under load, through `wrangler dev`: with CHAT_STREAM_BUSY_TURNS=0-1 a single
 * streaming turn already counts as full load, so its text is joined over CHAT_STREAM_BUSY_COALESCE_MS instead
 * of CHAT_STREAM_COALESCE_MS; the first text still goes out at once. (With the defaults the window widens only
 * from 20 streaming turns in an isolate, which a test cannot cheaply reach.)
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  type ChatStack,
  createAgent,
  createChat,
  startChatStack,
  stopChatStack,
  streamMessage,
} from "../helpers/chat";

let chat: ChatStack;

beforeAll(async () => {
  chat = await startChatStack("busy-window@acme.io", {
    CHAT_STREAM_COALESCE_MS: "50",
    CHAT_STREAM_BUSY_COALESCE_MS: "2000",
    CHAT_STREAM_BUSY_TURNS: "0-1",
  });
  await createAgent(chat.stack, chat.admin, { name: "talker", llm_provider_id: chat.providers.openai });
});
afterAll(() => stopChatStack(chat ?? {}));
beforeEach(() => chat.fake.reset());

describe("coalescing under load", () => {
  it("joins a busy isolate's text over the busy window, the first text at once", async () => {
    const id = await createChat(chat.stack, chat.admin, "talker");
    // 12 pieces 40 ms apart: ~10 events with the 50 ms window, 2 with the 2 s one.
    const words = Array.from({ length: 12 }, (_, index) => `w${index} `);
    chat.fake.script({ content: words.join(""), chunks: words, chunkDelayMs: 40 });
    const { status, events } = await streamMessage(chat.stack, chat.admin, id, "go");
    expect(status).toBe(200);
    const texts = events
      .filter((event) => event.event === "message")
      .map((event) => (event.data as { content: string | null }).content)
      .filter((content): content is string => Boolean(content));
    expect(texts[0]).toBe("w0 ");
    expect(texts.join("")).toBe(words.join(""));
    expect(texts.length).toBeLessThanOrEqual(3);
    expect(events.at(-1)?.event).toBe("done");
  });
});
