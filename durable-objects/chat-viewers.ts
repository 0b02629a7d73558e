/**
 * @module The viewers of a chat: SSE streams (replay from a sequence, then live) and hibernatable WebSockets,
 * all fed from the ChatSession log. Each appended event wakes the waiting streams and is sent to every socket.
 */
import { type LoggedEvent, sinasView } from "../workers/chat/events";
import type { ChatLog } from "./chat-log";
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
   * `GET /stream?format=sinas|ui&after=N` (or `Last-Event-ID`): the turn after sequence N (default: the latest
   * turn from its start; `active=true`: only the running one), replayed then followed live; 204 when there is
   * nothing to follow. `GET /ws?after=N`: a WebSocket viewer (default: live events only).
   */
  serve(request: Request, activeTurnId: string | null): Response {
    const url = new URL(request.url);
    const afterParam = request.headers.get("last-event-id") ?? url.searchParams.get("after");
    const after = afterParam === null ? null : Math.max(0, Number(afterParam) || 0);
    if (url.pathname === "/ws") {
      const until = Number(request.headers.get(VIEWER_UNTIL_HEADER)) || Number.POSITIVE_INFINITY;
      return this.#acceptSocket(after ?? this.log.lastSeq(), until);
    }
    const format: StreamFormat = url.searchParams.get("format") === "ui" ? "ui" : "sinas";
    const target = this.#target(after, activeTurnId, url.searchParams.get("active") === "true");
    if (!target) return new Response(null, { status: 204, headers: streamHeaders(format) });
    return this.streamTurn(target.turnId, target.afterSeq, format);
  }

  /** One turn's events after `afterSeq` as SSE, replayed then followed live until the turn ends. */
  streamTurn(turnId: string, afterSeq: number, format: StreamFormat): Response {
    return turnStream({ log: this.log, nextEvent: () => this.nextEvent() }, { format, afterSeq, turnId });
  }

  #target(
    after: number | null,
    activeTurnId: string | null,
    activeOnly: boolean,
  ): { turnId: string; afterSeq: number } | null {
    const active = activeTurnId ? this.log.turn(activeTurnId) : null;
    if (activeOnly) return active ? { turnId: active.id, afterSeq: after ?? active.firstSeq - 1 } : null;
    if (after === null) {
      const latest = this.log.latestTurn();
      return latest ? { turnId: latest.id, afterSeq: latest.firstSeq - 1 } : null;
    }
    const turn = this.log.turnOfSeq(after + 1) ?? active;
    return turn ? { turnId: turn.id, afterSeq: after } : null;
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
