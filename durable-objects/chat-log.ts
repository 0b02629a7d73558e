/**
 * @module The ChatSession's SQLite log: turns and their events, each event numbered by one increasing
 * sequence per chat. Viewers replay from any sequence (`Last-Event-ID`), so the log is the stream. The latest
 * events and the statuses of this instance's turns are also kept in memory: a live viewer asks for what came
 * after the last event it sent at every event, and those answers need no query and no JSON parse.
 */
import { type ChatEvent, type LoggedEvent, loggableEvent } from "../workers/chat/events";

export type TurnStatus = "running" | "completed" | "awaiting_approval" | "stopped" | "failed";

export interface TurnRow {
  id: string;
  chatId: string;
  status: TurnStatus;
  mode: string;
  firstSeq: number;
  startedAt: number;
  endedAt: number | null;
}

/** Events are kept at least this long after their turn ended (the issue asks for 24 h). */
const RETENTION_MS = 48 * 60 * 60 * 1000;
/** The purge scans the turns: once in this long per instance is plenty against a 48 h retention. */
const PURGE_INTERVAL_MS = 10 * 60 * 1000;
/**
 * Events kept in memory (between this and twice this many) while a turn runs: its live viewers are a few
 * events behind at most; a slower one reads the table. Dropped when the turn ends, so an idle chat holds none
 * (an isolate hosts many chat objects; a tool result in an event may be large).
 */
const TAIL_EVENTS = 64;

type Row = Record<string, SqlStorageValue>;

export class ChatLog {
  #purgedAt = 0;
  /**
   * Every event this instance appended since the first one held, oldest first. Sequences only grow, so no
   * event of an earlier instance comes after the first held one. Logged events are not changed afterwards:
   * viewers share these objects.
   */
  #tail: LoggedEvent[] = [];
  /** Statuses of the turns this instance started or ended. */
  #statuses = new Map<string, TurnStatus>();

  constructor(private readonly sql: SqlStorage) {
    sql.exec(`
      create table if not exists turns (id text primary key, chat_id text not null, status text not null, mode text not null,
        first_seq integer not null, started_at integer not null, ended_at integer);
      create table if not exists events (seq integer primary key autoincrement, turn_id text not null,
        type text not null, data text not null, at integer not null);
      create index if not exists events_turn_id on events (turn_id, seq);
      create index if not exists turns_first_seq on turns (first_seq);`);
  }

  /** Appends an event (bounded: see `loggableEvent`) and returns it as logged, with its sequence number. */
  append(turnId: string, appended: ChatEvent): LoggedEvent {
    const { event, json } = loggableEvent(appended);
    const [row] = this.sql
      .exec<{ seq: number }>(
        "insert into events (turn_id, type, data, at) values (?, ?, ?, ?) returning seq",
        turnId,
        event.type,
        json,
        Date.now(),
      )
      .toArray();
    const logged = { seq: (row as { seq: number }).seq, turnId, event };
    this.#tail.push(logged);
    if (this.#tail.length >= 2 * TAIL_EVENTS) this.#tail = this.#tail.slice(-TAIL_EVENTS);
    return logged;
  }

  /** Starts a turn whose first event is `first`. */
  startTurn(turnId: string, chatId: string, mode: string, first: ChatEvent): LoggedEvent {
    const logged = this.append(turnId, first);
    this.sql.exec(
      "insert into turns (id, chat_id, status, mode, first_seq, started_at) values (?, ?, 'running', ?, ?, ?)",
      turnId,
      chatId,
      mode,
      logged.seq,
      Date.now(),
    );
    this.#statuses.set(turnId, "running");
    return logged;
  }

  endTurn(turnId: string, status: TurnStatus): void {
    this.sql.exec("update turns set status = ?, ended_at = ? where id = ?", status, Date.now(), turnId);
    this.#statuses.set(turnId, status);
    this.#tail = [];
  }

  /** A turn's status (null: no such turn). */
  turnStatus(turnId: string): TurnStatus | null {
    return this.#statuses.get(turnId) ?? this.turn(turnId)?.status ?? null;
  }

  turn(turnId: string): TurnRow | null {
    const [row] = this.sql.exec<Row>("select * from turns where id = ?", turnId).toArray();
    return row ? toTurn(row) : null;
  }

  latestTurn(): TurnRow | null {
    const [row] = this.sql.exec<Row>("select * from turns order by first_seq desc limit 1").toArray();
    return row ? toTurn(row) : null;
  }

  /** The turn an event belongs to. */
  turnOfSeq(seq: number): TurnRow | null {
    const [row] = this.sql
      .exec<Row>("select t.* from events e join turns t on t.id = e.turn_id where e.seq = ?", seq)
      .toArray();
    return row ? toTurn(row) : null;
  }

  runningTurns(): TurnRow[] {
    return this.sql.exec<Row>("select * from turns where status = 'running'").toArray().map(toTurn);
  }

  /** Events after `afterSeq`, optionally of one turn only. */
  eventsAfter(afterSeq: number, turnId?: string): LoggedEvent[] {
    const first = this.#tail[0];
    if (first && afterSeq >= first.seq - 1) {
      let start = this.#tail.length;
      while (start > 0 && (this.#tail[start - 1] as LoggedEvent).seq > afterSeq) start--;
      const after = this.#tail.slice(start);
      return turnId === undefined ? after : after.filter((logged) => logged.turnId === turnId);
    }
    const rows = turnId
      ? this.sql.exec<Row>(
          "select seq, turn_id, data from events where seq > ? and turn_id = ? order by seq",
          afterSeq,
          turnId,
        )
      : this.sql.exec<Row>("select seq, turn_id, data from events where seq > ? order by seq", afterSeq);
    return rows.toArray().map(toLogged);
  }

  /** The event numbered `seq`, if still kept. */
  eventAt(seq: number): LoggedEvent | null {
    const [row] = this.sql.exec<Row>("select seq, turn_id, data from events where seq = ?", seq).toArray();
    return row ? toLogged(row) : null;
  }

  /** Events of a turn up to and including `uptoSeq` (to rebuild a renderer's state). */
  turnEventsUpTo(turnId: string, uptoSeq: number): LoggedEvent[] {
    return this.sql
      .exec<Row>(
        "select seq, turn_id, data from events where turn_id = ? and seq <= ? order by seq",
        turnId,
        uptoSeq,
      )
      .toArray()
      .map(toLogged);
  }

  /** The last sequence ever given, also once its events are purged (autoincrement keeps it). */
  lastSeq(): number {
    const [row] = this.sql
      .exec<{ seq: number }>("select seq from sqlite_sequence where name = 'events'")
      .toArray();
    return row?.seq ?? 0;
  }

  /** The turn before (`-1`) or after (`1`) `turn` by sequence, if kept. */
  adjacentTurn(turn: TurnRow, direction: -1 | 1): TurnRow | null {
    const query =
      direction < 0
        ? "select * from turns where first_seq < ? order by first_seq desc limit 1"
        : "select * from turns where first_seq > ? order by first_seq limit 1";
    const [row] = this.sql.exec<Row>(query, turn.firstSeq).toArray();
    return row ? toTurn(row) : null;
  }

  /** Drops turns (and their events) that ended longer than the retention ago; at most every 10 minutes. */
  purgeExpired(now = Date.now()): void {
    if (now - this.#purgedAt < PURGE_INTERVAL_MS) return;
    this.#purgedAt = now;
    this.#tail = [];
    this.#statuses.clear();
    const cutoff = now - RETENTION_MS;
    this.sql.exec(
      "delete from events where turn_id in (select id from turns where ended_at is not null and ended_at < ?)",
      cutoff,
    );
    this.sql.exec("delete from turns where ended_at is not null and ended_at < ?", cutoff);
  }
}

function toTurn(row: Row): TurnRow {
  return {
    id: String(row.id),
    chatId: String(row.chat_id),
    status: row.status as TurnStatus,
    mode: String(row.mode),
    firstSeq: Number(row.first_seq),
    startedAt: Number(row.started_at),
    endedAt: row.ended_at === null ? null : Number(row.ended_at),
  };
}

function toLogged(row: Row): LoggedEvent {
  return {
    seq: Number(row.seq),
    turnId: String(row.turn_id),
    event: JSON.parse(String(row.data)) as ChatEvent,
  };
}
