/**
 * @module How many turns stream in this isolate now, and the text-coalescing window that load calls for.
 *
 * Every coalesced text event costs the chat's object a log write and a frame to each viewer; with many chats
 * streaming in one isolate those events delay every other turn's first token (all share the isolate's one
 * thread). So the window widens with the load: `CHAT_STREAM_COALESCE_MS` up to `from` streaming turns, then
 * linearly up to `CHAT_STREAM_BUSY_COALESCE_MS` at `full` turns and beyond (`CHAT_STREAM_BUSY_TURNS`, default
 * 20-60). The first text of a burst is never held, whatever the window. Measured with 100 chats: README, Chat.
 */

/** When the window starts to grow and when it is the busy one, in streaming turns. */
export interface BusyTurns {
  from: number;
  full: number;
}

let streamingTurns = 0;

/** Counts a turn as streaming until the returned function is called (once; later calls do nothing). */
export function trackStreamingTurn(): () => void {
  streamingTurns++;
  let done = false;
  return () => {
    if (done) return;
    done = true;
    streamingTurns--;
  };
}

/** The window for `turns` streaming turns; 0 stays 0 (every chunk its own event, as configured). */
export function coalesceWindowMs(
  baseMs: number,
  busyMs: number,
  busy: BusyTurns,
  turns = streamingTurns,
): number {
  if (baseMs <= 0 || busyMs <= baseMs) return baseMs;
  const load = Math.min(1, Math.max(0, (turns - busy.from) / (busy.full - busy.from)));
  return Math.round(baseMs + (busyMs - baseMs) * load);
}
