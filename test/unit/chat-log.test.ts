import { runInDurableObject, env as testEnv } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ChunkCoalescer } from "../../durable-objects/chat-coalescer";
import { ChatLog } from "../../durable-objects/chat-log";
import type { ChatEvent } from "../../workers/chat/events";
import type { Env } from "../../workers/env";

const env = testEnv as unknown as Env;

const text = (content: string | null): ChatEvent => ({
  type: "chunk",
  chunk: { content, tool_calls: null, finish_reason: null },
});

/** A fresh chat object per test; `reopen` gives a second ChatLog over the same storage (a restarted instance). */
async function withLog(test: (log: ChatLog, reopen: () => ChatLog) => void | Promise<void>): Promise<void> {
  const stub = env.CHAT_SESSION.get(env.CHAT_SESSION.newUniqueId());
  await runInDurableObject(stub, (_instance, state) =>
    test(new ChatLog(state.storage.sql), () => new ChatLog(state.storage.sql)),
  );
}

describe("ChatLog", () => {
  it("answers from memory what the table answers, for any sequence and turn", async () => {
    await withLog((log, reopen) => {
      log.startTurn("t1", "c", "stream", { type: "turn_start", turn_id: "t1", message_id: null });
      for (let index = 0; index < 5; index++) log.append("t1", text(`a${index}`));
      log.endTurn("t1", "completed");
      log.startTurn("t2", "c", "stream", { type: "turn_start", turn_id: "t2", message_id: null });
      log.append("t2", text("b"));
      const fromTable = reopen();
      const compare = () => {
        for (let after = 0; after <= log.lastSeq() + 1; after++) {
          expect(log.eventsAfter(after)).toEqual(fromTable.eventsAfter(after));
          expect(log.eventsAfter(after, "t1")).toEqual(fromTable.eventsAfter(after, "t1"));
          expect(log.eventsAfter(after, "t2")).toEqual(fromTable.eventsAfter(after, "t2"));
        }
      };
      compare();
      log.append("t2", text("c"));
      compare();
      expect(log.turnStatus("t1")).toBe("completed");
      expect(fromTable.turnStatus("t1")).toBe("completed");
      expect(log.turnStatus("t2")).toBe("running");
      expect(log.turnStatus("nope")).toBeNull();
      log.endTurn("t2", "stopped");
      compare();
      expect(log.turnStatus("t2")).toBe("stopped");
    });
  });

  it("reads events of an earlier instance from the table, then its own from memory", async () => {
    await withLog((earlier, reopen) => {
      earlier.startTurn("t1", "c", "stream", { type: "turn_start", turn_id: "t1", message_id: null });
      earlier.append("t1", text("old"));
      const log = reopen();
      log.append("t1", text("new"));
      expect(log.eventsAfter(0).map((logged) => logged.event)).toEqual([
        { type: "turn_start", turn_id: "t1", message_id: null },
        text("old"),
        text("new"),
      ]);
      expect(log.eventsAfter(2).map((logged) => logged.event)).toEqual([text("new")]);
      expect(log.turnStatus("t1")).toBe("running");
    });
  });

  it("purges turns ended over 48 h ago with their events, at most every 10 minutes per instance", async () => {
    const hour = 60 * 60 * 1000;
    await withLog((first, reopen) => {
      first.startTurn("old", "c", "stream", { type: "turn_start", turn_id: "old", message_id: null });
      first.append("old", text("gone later"));
      first.endTurn("old", "completed");
      first.startTurn("open", "c", "stream", { type: "turn_start", turn_id: "open", message_id: null });
      const now = Date.now();
      first.purgeExpired(now + 47 * hour);
      expect(first.turn("old")).not.toBeNull();

      const log = reopen();
      log.purgeExpired(now + 49 * hour);
      expect(log.turn("old")).toBeNull();
      expect(log.turnEventsUpTo("old", log.lastSeq())).toEqual([]);
      expect(log.turn("open")?.status).toBe("running");

      log.endTurn("open", "stopped");
      log.purgeExpired(now + 49 * hour + 60 * 1000);
      expect(log.turn("open")).not.toBeNull(); // this instance purged less than 10 minutes before
      log.purgeExpired(now + 49 * hour + 11 * 60 * 1000);
      expect(log.turn("open")).toBeNull();
    });
  });

  it("keeps a bounded tail and still serves older sequences from the table", async () => {
    await withLog((log) => {
      log.startTurn("t1", "c", "stream", { type: "turn_start", turn_id: "t1", message_id: null });
      for (let index = 0; index < 700; index++) log.append("t1", text(String(index)));
      const all = log.eventsAfter(0);
      expect(all).toHaveLength(701);
      expect(all.map((logged) => logged.seq)).toEqual(Array.from({ length: 701 }, (_, index) => index + 1));
      expect(log.eventsAfter(699).map((logged) => logged.event)).toEqual([text("698"), text("699")]);
    });
  });
});

describe("ChunkCoalescer", () => {
  function recorder(windowMs = 30) {
    const sent: ChatEvent[] = [];
    let clock = 1_000;
    const coalescer = new ChunkCoalescer(
      (event) => sent.push(event),
      windowMs,
      () => clock,
    );
    return { sent, coalescer, advance: (ms: number) => (clock += ms) };
  }

  it("sends the first text at once, holds what follows within the window, then sends it as one chunk", async () => {
    const { sent, coalescer } = recorder();
    coalescer.push(text(""));
    expect(sent).toEqual([]);
    coalescer.push(text("Hel"));
    expect(sent).toEqual([text("Hel")]);
    coalescer.push(text("lo"));
    coalescer.push(text(" there"));
    expect(sent).toHaveLength(1);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(sent).toEqual([text("Hel"), text("lo there")]);
  });

  it("sends held text before any other event, keeping the order", () => {
    const { sent, coalescer, advance } = recorder();
    coalescer.push(text("a"));
    advance(5);
    coalescer.push(text("b"));
    const call: ChatEvent = {
      type: "chunk",
      chunk: {
        content: null,
        tool_calls: [{ index: 0, id: "c1", type: "function", function: { name: "f", arguments: "{" } }],
        finish_reason: null,
      },
    };
    coalescer.push(call);
    coalescer.push({ type: "done", status: "completed", message_id: null });
    expect(sent).toEqual([
      text("a"),
      text("b"),
      call,
      { type: "done", status: "completed", message_id: null },
    ]);
  });

  it("sends text at once again once the window has passed", () => {
    const { sent, coalescer, advance } = recorder();
    coalescer.push(text("a"));
    advance(31);
    coalescer.push(text("b"));
    expect(sent).toEqual([text("a"), text("b")]);
  });
});
