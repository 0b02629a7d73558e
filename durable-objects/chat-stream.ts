/**
 * @module SSE responses over the ChatSession log: replay every event after a sequence, then follow the turn
 * live until its end. Two renderings of the same events: SINAS's (`sinas`) and the AI SDK UI-message stream
 * (`ui`, header `x-vercel-ai-ui-message-stream: v1`).
 */
import {
  isTurnEnd,
  type LoggedEvent,
  renderSinasEvent,
  UiMessageStreamRenderer,
} from "../workers/chat/events";
import type { ChatLog } from "./chat-log";

export type StreamFormat = "sinas" | "ui";

export interface StreamSource {
  log: ChatLog;
  /** Resolves at the next appended event. */
  nextEvent(): Promise<void>;
}

/** SSE comment lines keep proxies from closing an idle stream (SINAS sends them every 15 s too). */
const PING_MS = 15_000;

export function streamHeaders(format: StreamFormat): Record<string, string> {
  return {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    connection: "keep-alive",
    ...(format === "ui" ? { "x-vercel-ai-ui-message-stream": "v1" } : {}),
  };
}

/**
 * The stream of one turn, from `afterSeq` on: the turn is the one the next event belongs to (or `turnId`).
 * Ends after the turn's `done`/`error` event. `pausedTurnIds` (ui only): the turns of the same assistant
 * message before this one, paused for tool approval, replayed first as the message's beginning.
 */
export function turnStream(
  source: StreamSource,
  options: { format: StreamFormat; afterSeq: number; turnId: string; pausedTurnIds?: string[] },
): Response {
  const { log } = source;
  const encoder = new TextEncoder();
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  const renderer = new UiMessageStreamRenderer();
  let after = options.afterSeq;
  const replayed: string[] = [];
  if (options.format === "ui") {
    for (const turnId of options.pausedTurnIds ?? []) {
      for (const logged of log.turnEventsUpTo(turnId, after)) replayed.push(...renderer.renderPaused(logged));
    }
    for (const logged of log.turnEventsUpTo(options.turnId, after)) renderer.render(logged, false);
  }
  const render = (logged: LoggedEvent): string[] => {
    if (options.format === "ui") return renderer.render(logged, true);
    const frame = renderSinasEvent(logged);
    return frame === null ? [] : [frame];
  };
  // One timer per stream, not one per wait: a wait per event would set and clear a timer per event.
  let wroteAt = Date.now();
  const pinger = setInterval(() => {
    if (Date.now() - wroteAt < PING_MS) return;
    wroteAt = Date.now();
    writer.write(encoder.encode(`: ping - ${new Date().toISOString()}\n\n`)).catch(() => {});
  }, PING_MS / 3);
  const pump = async () => {
    try {
      for (const frame of replayed) await writer.write(encoder.encode(frame));
      for (;;) {
        const events = log.eventsAfter(after, options.turnId);
        let ended = false;
        for (const logged of events) {
          after = logged.seq;
          for (const frame of render(logged)) await writer.write(encoder.encode(frame));
          if (isTurnEnd(logged.event)) ended = true;
        }
        if (events.length > 0) wroteAt = Date.now();
        if (ended || (events.length === 0 && log.turnStatus(options.turnId) !== "running")) break;
        if (events.length === 0) await source.nextEvent();
      }
      await writer.close();
    } catch {
      // The client went away; the turn goes on and stays resumable.
      await writer.abort().catch(() => {});
    } finally {
      clearInterval(pinger);
    }
  };
  void pump();
  return new Response(readable, { headers: streamHeaders(options.format) });
}
