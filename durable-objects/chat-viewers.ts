/**
 * @module The viewers of a chat: SSE streams (replay from a sequence, then live) and hibernatable WebSockets,
 * all fed from the ChatSession log. Each appended event wakes the waiting streams and is sent to every socket.
 */
import { type LoggedEvent, sinasView } from "../workers/chat/events";
import { AppError } from "../workers/lib/errors";
import type { ChatLog, TurnRow } from "./chat-log";
import { type Failure, failure } from "./chat-session-results";
import { type StreamFormat, streamHeaders, turnStream } from "./chat-stream";

/** Set by the Worker on a WebSocket viewer's request: until when (ms since the epoch) its credentials hold. */
export const VIEWER_UNTIL_HEADER = "x-sinas-viewer-until";
/** The close code of a viewer whose credentials expired: it reconnects with a fresh token and `?after=`. */
export const VIEWER_EXPIRED_CODE = 4001;

/** A WebSocket frame: the SINAS view of the event with its sequence, or null for internal events. */
function socketFrame(logged: LoggedEvent): string | null {
  const view = sinasView(logged.event);
  return view ? JSON.stringify({ id: logged.seq, event: view.event, data: view.data }) : null;
}

export class ChatViewers {
  #listeners = new Set<() => void>();
  /** Each socket's expiry, read once from its attachment (which survives hibernation). */
  #socketUntil = new WeakMap<WebSocket, number>();

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly log: ChatLog,
  ) {}

  broadcast(logged: LoggedEvent): void {
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    for (const listener of listeners) listener();
    const frame = socketFrame(logged);
    if (!frame) return;
    const now = Date.now();
    for (const socket of this.ctx.getWebSockets()) {
      try {
        // A deactivated user or a revoked grant must not go on watching: the viewer proves itself again.
        if (this.#untilOf(socket) <= now)
          socket.close(VIEWER_EXPIRED_CODE, "Credentials expired: reconnect with ?after=");
        else socket.send(frame);
      } catch {
        // A closing socket; its close handler cleans up.
      }
    }
  }

  #untilOf(socket: WebSocket): number {
    let until = this.#socketUntil.get(socket);
    if (until === undefined) {
      const attachment = socket.deserializeAttachment() as { until?: number } | null;
      until = attachment?.until ?? Number.POSITIVE_INFINITY;
      this.#socketUntil.set(socket, until);
    }
    return until;
  }

  /** Resolves at the next appended event. */
  nextEvent(): Promise<void> {
    return new Promise((resolve) => {
      this.#listeners.add(resolve);
    });
  }

  /**
   * `GET /ws?after=N`: a WebSocket viewer of every event after N (default: live events only). The Worker has
   * checked that N is a whole number; one beyond the chat's last event is 400.
   */
  serveSocket(request: Request): Response {
    const afterParam = new URL(request.url).searchParams.get("after");
    const after = afterParam === null ? this.log.lastSeq() : Number(afterParam);
    const beyond = afterParam === null ? null : this.#beyondLog(after);
    if (beyond) return Response.json(new AppError(beyond.code, beyond.message).toBody(null), { status: 400 });
    const until = Number(request.headers.get(VIEWER_UNTIL_HEADER)) || Number.POSITIVE_INFINITY;
    return this.#acceptSocket(after, until);
  }

  /**
   * A turn as SSE, replayed then followed live: the turn after sequence `after` (default: the latest turn
   * from its start; `activeOnly`: only the running one); 204 when there is nothing to follow. The `ui` format
   * always replays the whole assistant message (the AI SDK's resume rebuilds it from the first part), the
   * turns it paused for tool approval included.
   */
  openStream(
    options: { after: number | null; format: StreamFormat; activeOnly: boolean },
    activeTurnId: string | null,
  ): Response | Failure {
    const { after, format } = options;
    const beyond = after === null ? null : this.#beyondLog(after);
    if (beyond) return beyond;
    const target = this.#target(after, activeTurnId, options.activeOnly);
    if (!target) return new Response(null, { status: 204, headers: streamHeaders(format) });
    if (format === "sinas") return this.streamTurn(target.id, target.afterSeq, format);
    const [last, ...paused] = this.#turnsOfMessage(target).reverse() as [TurnRow, ...TurnRow[]];
    return turnStream(this.#source(), {
      format,
      afterSeq: last.firstSeq - 1,
      turnId: last.id,
      pausedTurnIds: paused.reverse().map((turn) => turn.id),
    });
  }

  /** One turn's events after `afterSeq` as SSE, replayed then followed live until the turn ends. */
  streamTurn(turnId: string, afterSeq: number, format: StreamFormat): Response {
    return turnStream(this.#source(), { format, afterSeq, turnId });
  }

  #source() {
    return { log: this.log, nextEvent: () => this.nextEvent() };
  }

  /** A client's `after` the log never reached (a made-up or foreign id): nothing could ever follow it. */
  #beyondLog(after: number): Failure | null {
    const last = this.log.lastSeq();
    if (after <= last) return null;
    return failure("BAD_REQUEST", `Event id ${after} is beyond the chat's last event (${last})`);
  }

  #target(
    after: number | null,
    activeTurnId: string | null,
    activeOnly: boolean,
  ): (TurnRow & { afterSeq: number }) | null {
    const active = activeTurnId ? this.log.turn(activeTurnId) : null;
    if (activeOnly) return active ? { ...active, afterSeq: after ?? active.firstSeq - 1 } : null;
    if (after === null) {
      const latest = this.log.latestTurn();
      return latest ? { ...latest, afterSeq: latest.firstSeq - 1 } : null;
    }
    const turn = this.log.turnOfSeq(after + 1) ?? active;
    return turn ? { ...turn, afterSeq: after } : null;
  }

  /**
   * The kept turns of the assistant message `turn` belongs to, in order: those that paused for tool approval,
   * then the continuation each one's decisions started (a continuation starts without a user message).
   */
  #turnsOfMessage(turn: TurnRow): TurnRow[] {
    const turns = [turn];
    for (let first = turn; this.#isContinuation(first); ) {
      const previous = this.log.adjacentTurn(first, -1);
      if (previous?.status !== "awaiting_approval") break;
      turns.unshift(previous);
      first = previous;
    }
    for (let last = turn; last.status === "awaiting_approval"; ) {
      const next = this.log.adjacentTurn(last, 1);
      if (!next || !this.#isContinuation(next)) break;
      turns.push(next);
      last = next;
    }
    return turns;
  }

  #isContinuation(turn: TurnRow): boolean {
    const first = this.log.eventAt(turn.firstSeq)?.event;
    return first?.type === "turn_start" && first.message_id === null;
  }

  #acceptSocket(after: number, until: number): Response {
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment({ until });
    for (const logged of this.log.eventsAfter(after)) {
      const frame = socketFrame(logged);
      if (frame) server.send(frame);
    }
    return new Response(null, { status: 101, webSocket: client });
  }
}
