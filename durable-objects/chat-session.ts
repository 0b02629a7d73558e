/**
 * @module ChatSession Durable Object (SQLite storage), one per chat: runs its turns one at a time, logs every
 * event with a sequence number, serves the live stream to any number of viewers (SSE and hibernatable
 * WebSockets) with replay from any sequence, stops a turn on command, and continues a turn paused for tool
 * approval once every approval of it is decided (D-29).
 *
 * The Worker authorizes every call before it reaches this object; the object trusts `userId`.
 */
import { DurableObject } from "cloudflare:workers";
import { agentCallBudget } from "../workers/chat/agent-tools";
import type { ChatEvent, LoggedEvent } from "../workers/chat/events";
import { ChatHistory } from "../workers/chat/history";
import { agentInputOf } from "../workers/chat/prompt";
import {
  type PreparedTurn,
  prepareTurn,
  runTurn,
  startFirstCall,
  type TurnResult,
  type TurnSetup,
} from "../workers/chat/turn";
import type { Message } from "../workers/db/schema";
import type { Env } from "../workers/env";
import { AppError } from "../workers/lib/errors";
import { ensureInputRenders, toMessageResponse } from "../workers/services/chats";
import { createServices, type Services } from "../workers/services/services";
import { type Decision, decisionAnswer, recordDecisions } from "./chat-approvals";
import { ChunkCoalescer } from "./chat-coalescer";
import { ChatLog, type TurnStatus } from "./chat-log";
import { type AnswerRef, answerRefOf, dropAnswerTo, findRegenerable } from "./chat-regenerate";
import {
  type Answered,
  type ApprovalAnswer,
  type Decider,
  type Failure,
  failure,
  failureOf,
  type SendRequest,
  type Started,
} from "./chat-session-results";
import type { StreamFormat } from "./chat-stream";
import { coalesceWindowMs, trackStreamingTurn } from "./chat-stream-load";
import { beginTurnRecord, loadTurnSubjects, savePartialAnswer, type TurnSubjects } from "./chat-turn-data";
import { type TurnClaim, type TurnOutcome, TurnSlot } from "./chat-turn-slot";
import { ChatViewers } from "./chat-viewers";

/** While a turn runs an alarm fires this often: after a crash it finds the turn and ends it cleanly. */
const HEARTBEAT_MS = 30_000;
/** How long a viewer waits for a claimed turn to be logged (normally a few Postgres round trips). */
const VIEWER_WAIT_MS = 10_000;

/**
 * How a turn's start is recorded: its user message and subjects, the history to answer (read beside), and what
 * to write once the turn is prepared, just before its first model call (a regenerate drops the old answer then:
 * a turn that cannot start leaves it).
 */
type StartRecord = (
  services: Services,
  history: ChatHistory,
) => Promise<{
  subjects: TurnSubjects;
  message: Message;
  stored: Promise<Message[]>;
  commit?: () => Promise<void>;
}>;

/** A decision that completed its message: the turn goes on, followed from `started`. */
type Continued = { started: Started; ended: Promise<TurnOutcome> };

export class ChatSession extends DurableObject<Env> {
  #log: ChatLog;
  #viewers: ChatViewers;
  #slot = new TurnSlot();
  #approvals: Promise<unknown> = Promise.resolve();
  #servicesCache: Services | undefined;
  /** The chat's messages between turns (one chat per object; its id comes with the first call). */
  #history: ChatHistory | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#log = new ChatLog(ctx.storage.sql);
    this.#viewers = new ChatViewers(ctx, this.#log);
    // A turn still marked running belongs to an object that died (restart, crash): end it before anything else.
    void ctx.blockConcurrencyWhile(() => this.#recoverInterruptedTurns());
  }

  // ------------------------------------------------------------------------------------------ turns

  /**
   * Saves the user message, starts a streamed turn and answers with its stream (`format`) from the turn's
   * first event: one call from the Worker, not a start and then a stream request.
   */
  async startTurnStream(
    request: Omit<SendRequest, "mode">,
    format: StreamFormat,
  ): Promise<Failure | Response> {
    const { started } = await this.#begin({ ...request, mode: "stream" });
    if (!started.ok) return started;
    return this.#viewers.streamTurn(started.turnId, started.afterSeq, format);
  }

  /**
   * Called when the chat is created: the object's first start creates its SQLite database and tables (the
   * constructor), which would otherwise delay the chat's first answer by as much as the rest of the turn.
   */
  async prepare(): Promise<void> {}

  /** §5.4: a whole turn, answered with the final assistant message. */
  async sendMessage(request: SendRequest): Promise<Answered | Failure> {
    const { started, ended } = await this.#begin({ ...request, mode: "complete" });
    if (!started.ok) return started;
    const outcome = await ended;
    if (outcome.failure) return outcome.failure;
    const result = outcome.result as TurnResult;
    return {
      ok: true,
      status: result.status,
      message: result.message ? toMessageResponse(result.message) : null,
      ...(result.outputErrors ? { outputErrors: result.outputErrors } : {}),
    };
  }

  /**
   * useChat's `regenerate()`: answers the chat's last user message again, streamed, and drops its latest answer
   * once the new turn is ready to start (chat-regenerate.ts). `target` is what the client's `messageId` names:
   * an answer (a UI message's turn id or a stored message id; null: the latest), or the user message sent last
   * (`question`, its content).
   */
  async regenerateTurnStream(
    request: Omit<SendRequest, "mode" | "content">,
    target: { answerId: string | null; question: string | null },
    format: StreamFormat,
  ): Promise<Failure | Response> {
    const answer: AnswerRef =
      target.question !== null
        ? { kind: "question", content: target.question }
        : target.answerId === null
          ? { kind: "latest" }
          : answerRefOf(this.#log, target.answerId);
    const { started } = await this.#begin(
      { ...request, content: "", mode: "stream" },
      async (services, history) => {
        const { subjects, message } = await findRegenerable(services, request, answer);
        const upToQuestion = (all: Message[]) => all.filter((stored) => stored.sequence <= message.sequence);
        const commit = async () => {
          await dropAnswerTo(services, message);
          history.forgetAfter(message.sequence);
        };
        return { subjects, message, stored: history.read(services.statementDb()).then(upToQuestion), commit };
      },
    );
    if (!started.ok) return started;
    return this.#viewers.streamTurn(started.turnId, started.afterSeq, format);
  }

  /**
   * Stores the user message (§5.3 step C) and reads the turn's subjects in one statement, with the history read
   * beside it: a sent turn's start.
   */
  #sendRecord(request: SendRequest): StartRecord {
    return async (services, history) => {
      const stored = history.read(services.statementDb());
      stored.catch(() => undefined); // awaited later; a refused send must not leave it unhandled
      const record = await beginTurnRecord(services, request);
      history.remember(record.message);
      return { ...record, stored };
    };
  }

  async #begin(
    request: SendRequest,
    record: StartRecord = this.#sendRecord(request),
  ): Promise<{ started: Started | Failure; ended: Promise<TurnOutcome> }> {
    if (this.#slot.turnId) {
      // Only the chat's sender learns that it is busy: anyone else gets the refusal they would get anyway.
      const refused = await this.#senderRefusal(request);
      const answer =
        refused ?? (this.#slot.turnId ? failure("CONFLICT", "A turn is already running in this chat") : null);
      if (answer) return { started: answer, ended: Promise.resolve({ result: null, failure: answer }) };
    }
    const { turnId, controller, ended, settle } = this.#slot.claim();
    let userMessageId: string | null | undefined;
    try {
      const services = this.#services();
      // §5.3 step C: the user message is committed before the model is called, so it survives a failure. It is
      // stored only for the chat's owner while the agent is active (a regenerated turn's is there already).
      const history = this.#historyOf(request.chatId);
      const { subjects, message: userMessage, stored, commit } = await record(services, history);
      userMessageId = userMessage.id;
      const setup = this.#setup(services, subjects, request, controller);
      const prepared = await prepareTurn(setup, { stored, added: Promise.resolve(userMessage) });
      await commit?.();
      startFirstCall(setup, prepared);
      const first = this.#startLogged(turnId, request.chatId, request.mode, userMessageId);
      void this.#run(setup, prepared, turnId).then(settle);
      return { started: { ok: true, turnId, afterSeq: first.seq - 1 }, ended };
    } catch (error) {
      controller.abort(); // a first model call already sent must not run on
      this.#slot.free(turnId);
      const failed = failureOf(error);
      settle({ result: null, failure: failed });
      // §5.6: once the message is saved, a streamed turn reports its failure (no provider, bad model...) in the
      // stream, as an `error` event.
      if (userMessageId === undefined || request.mode !== "stream") return { started: failed, ended };
      const first = this.#startLogged(turnId, request.chatId, request.mode, userMessageId);
      this.#emit(turnId, { type: "error", error: failed.message });
      this.#log.endTurn(turnId, "failed");
      return { started: { ok: true, turnId, afterSeq: first.seq - 1 }, ended };
    }
  }

  /** Why `request`'s sender may not send to this chat (404, 403, inactive 401), or null when they may. */
  async #senderRefusal(request: SendRequest): Promise<Failure | null> {
    try {
      await loadTurnSubjects(this.#services(), request.chatId, request.userId);
      return null;
    } catch (error) {
      return failureOf(error);
    }
  }

  /**
   * One services object for the object's life: its pool closes idle connections by itself (2 s), and a chat's
   * next turn often comes sooner. One connection: every chat may hold one, and Postgres has few.
   */
  #services(): Services {
    this.#servicesCache ??= createServices(this.env, { maxConnections: 1 });
    return this.#servicesCache;
  }

  #historyOf(chatId: string): ChatHistory {
    if (this.#history?.chatId !== chatId) this.#history = new ChatHistory(chatId);
    return this.#history;
  }

  #setup(
    services: Services,
    subjects: TurnSubjects,
    request: SendRequest,
    controller: AbortController,
  ): TurnSetup {
    const depth = request.depth ?? 0;
    const { userId, apiKey } = request;
    // A user's turn starts a budget; its sub-chats take from it (their calls reach it back over RPC).
    const takeAgentCall = request.takeAgentCall ?? agentCallBudget();
    return {
      services,
      ...subjects,
      mode: request.mode,
      depth,
      apiKey,
      takeAgentCall,
      history: this.#historyOf(request.chatId),
      signal: controller.signal,
      // The sub-chat's turn acts with the same credential and budget, one deeper.
      runSubChatTurn: (chatId, content) =>
        this.#runSubChatTurn(
          { chatId, userId, content, mode: "complete", depth: depth + 1, apiKey, takeAgentCall },
          controller.signal,
        ),
    };
  }

  /** Ends the running turn; resolves once its end is logged (the partial answer saved). */
  async stop(): Promise<{ stopped: boolean; turn_id: string | null }> {
    return this.#slot.stop();
  }

  /** The chat is being deleted: stops its turn and drops the log, its sockets and its alarm. */
  async forget(): Promise<void> {
    await this.stop();
    for (const socket of this.ctx.getWebSockets()) socket.close(1000, "chat deleted");
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    this.#history = undefined;
    this.#log = new ChatLog(this.ctx.storage.sql);
    this.#viewers = new ChatViewers(this.ctx, this.#log);
  }

  /** §5.7 with D-29: records one decision; the calls run once every approval of their message is decided. */
  async decideApproval(
    request: Decider & { toolCallId: string; approved: boolean },
  ): Promise<ApprovalAnswer | Failure> {
    return this.#serialized(async () => {
      const decided = await this.#decide(request, [request]);
      if ("ok" in decided) return decided;
      return decisionAnswer(request, "waiting" in decided ? decided : await decided.ended);
    });
  }

  /**
   * Several decisions at once (the AI SDK route): when they complete the message, the turn goes on and the
   * caller follows it from `afterSeq`; otherwise `waiting` says how many calls still need a decision.
   */
  async decideApprovals(
    request: Decider & { decisions: Decision[] },
  ): Promise<Started | { ok: true; waiting: number } | Failure> {
    return this.#serialized(async () => {
      const decided = await this.#decide(request, request.decisions);
      if ("ok" in decided) return decided;
      return "waiting" in decided ? { ok: true, waiting: decided.waiting } : decided.started;
    });
  }

  /** Decisions are serialized so that exactly one of two concurrent last decisions continues the turn. */
  #serialized<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#approvals.then(work);
    this.#approvals = next.catch(() => {});
    return next;
  }

  /**
   * Records `decisions` holding the turn slot, claimed first: a send arriving meanwhile gets 409 instead of a
   * turn of its own beside the continuation. The continuation is prepared (subjects, templates, model, tools)
   * before anything is recorded, so that a decision is never consumed by a turn that cannot go on (agent gone,
   * user inactive, provider deactivated, a database error): the caller gets the error, the approval stays open.
   */
  async #decide(request: Decider, decisions: Decision[]): Promise<Continued | { waiting: number } | Failure> {
    if (this.#slot.turnId)
      return failure("CONFLICT", "A turn is running in this chat; decide when it has ended");
    const claim = this.#slot.claim();
    try {
      const { setup, prepared } = await this.#prepareContinuation(request, claim);
      const recorded = await recordDecisions(this.#services().db(), request, decisions);
      if (recorded.kind === "not_found")
        return failure("NOT_FOUND", "Pending approval not found or already processed");
      if (recorded.kind === "waiting") return { waiting: recorded.waiting };
      return this.#continueTurn(claim, { ...setup, resume: recorded.resume }, prepared);
    } catch (error) {
      return failureOf(error);
    } finally {
      if (!claim.continued) this.#slot.release(claim);
    }
  }

  /** The paused turn's continuation, ready to run once the decisions are recorded (see `#decide`). */
  async #prepareContinuation(
    request: Decider,
    claim: TurnClaim,
  ): Promise<{ setup: TurnSetup; prepared: PreparedTurn }> {
    const services = this.#services();
    const subjects = await loadTurnSubjects(services, request.chatId, request.userId, "approve");
    // A continuation renders the agent's templates: one that cannot (the agent changed since) is a 400 now, the
    // decision still open once the agent is fixed.
    ensureInputRenders(subjects.agent, agentInputOf(subjects.chat));
    // The continuation acts with the decider's credential, as a sent turn does with its sender's.
    const { chatId, userId, apiKey } = request;
    const send: SendRequest = { chatId, userId, content: "", mode: "stream", apiKey };
    const setup = this.#setup(services, subjects, send, claim.controller);
    return { setup, prepared: await prepareTurn(setup) };
  }

  /** Goes on with the paused turn in the slot `claim` holds; the turn frees it when it ends. */
  #continueTurn(claim: TurnClaim, setup: TurnSetup, prepared: PreparedTurn): Continued {
    const { turnId, ended, settle } = claim;
    const first = this.#startLogged(turnId, setup.chat.id, "stream", null);
    claim.continued = true;
    void this.#run(setup, prepared, turnId).then(settle);
    return { started: { ok: true, turnId, afterSeq: first.seq - 1 }, ended };
  }

  #startLogged(turnId: string, chatId: string, mode: string, messageId: string | null): LoggedEvent {
    // Old turns are purged by the alarm this sets, once the chat is idle: not on the way to the first token.
    const first = this.#log.startTurn(turnId, chatId, mode, {
      type: "turn_start",
      turn_id: turnId,
      message_id: messageId,
    });
    this.#slot.logged(turnId);
    this.#viewers.broadcast(first);
    void this.ctx.storage.setAlarm(Date.now() + HEARTBEAT_MS);
    return first;
  }

  async #run(setup: TurnSetup, prepared: PreparedTurn, turnId: string): Promise<TurnOutcome> {
    // Text chunks are coalesced (chat-coalescer.ts); the turn's end events send what is held first.
    const { config } = setup.services;
    const coalescer = new ChunkCoalescer(
      (event) => this.#emit(turnId, event),
      () =>
        coalesceWindowMs(
          config.CHAT_STREAM_COALESCE_MS,
          config.CHAT_STREAM_BUSY_COALESCE_MS,
          config.CHAT_STREAM_BUSY_TURNS,
        ),
    );
    const emit = (event: ChatEvent) => coalescer.push(event);
    const untrack = trackStreamingTurn();
    try {
      const result = await runTurn({ ...setup, emit }, prepared);
      emit({
        type: "done",
        status: result.status,
        message_id: result.message?.id ?? null,
        ...(result.outputErrors ? { output_errors: result.outputErrors } : {}),
      });
      this.#log.endTurn(turnId, result.status);
      return { result, failure: null };
    } catch (error) {
      const failed = failureOf(error);
      emit({ type: "error", error: failed.message });
      this.#log.endTurn(turnId, "failed");
      return { result: null, failure: failed };
    } finally {
      untrack();
      this.#slot.free(turnId);
    }
  }

  async #runSubChatTurn(request: SendRequest, signal: AbortSignal): Promise<string> {
    signal.throwIfAborted(); // stopped before the sub-chat's turn began: it never begins
    const stub = this.env.CHAT_SESSION.get(this.env.CHAT_SESSION.idFromName(request.chatId));
    // This turn's stop stops the sub-chat's turn as well (the caller stops waiting for it: agent-tools.ts).
    const stopSubChat = () => void stub.stop().catch(() => undefined);
    signal.addEventListener("abort", stopSubChat, { once: true });
    try {
      const answer = await stub.sendMessage(request);
      if (!answer.ok) throw new AppError(answer.code, answer.message);
      return answer.message?.content ?? "";
    } finally {
      signal.removeEventListener("abort", stopSubChat);
    }
  }

  #emit(turnId: string, event: ChatEvent): void {
    // `done` (or `error`) is a turn's last event: a tool that finishes after a stop logs nothing behind it.
    if (this.#log.turnStatus(turnId) !== "running") return;
    this.#viewers.broadcast(this.#log.append(turnId, event));
  }

  // ------------------------------------------------------------------------------------------ viewers

  /** A WebSocket viewer (`GET /ws?after=N`, see ChatViewers); the stream routes call `openStream`. */
  override async fetch(request: Request): Promise<Response> {
    await this.#slot.untilLogged(VIEWER_WAIT_MS);
    return this.#viewers.serveSocket(request);
  }

  /**
   * A turn's stream as a viewer asked for it (resume, second viewer): see ChatViewers.openStream. A turn
   * claimed but not logged yet (a send or a decision doing its Postgres work) is waited for: this viewer came
   * to follow it, and would otherwise get 204 or the paused turn's replay.
   */
  async openStream(options: { after: number | null; format: StreamFormat; activeOnly: boolean }) {
    await this.#slot.untilLogged(VIEWER_WAIT_MS);
    return this.#viewers.openStream(options, this.#slot.turnId);
  }

  /** A turn's stream after `afterSeq`, as the caller that started it follows it (a continuation). */
  async followTurn(turnId: string, afterSeq: number, format: StreamFormat): Promise<Response> {
    return this.#viewers.streamTurn(turnId, afterSeq, format);
  }

  /** A viewer may stop the turn: `{"type":"stop"}`. Anything else is ignored. */
  override async webSocketMessage(socket: WebSocket, message: string | ArrayBuffer): Promise<void> {
    if (typeof message !== "string") return;
    try {
      if ((JSON.parse(message) as { type?: string }).type === "stop") {
        const result = await this.stop();
        socket.send(JSON.stringify({ event: "stop", data: result }));
      }
    } catch {
      // Not JSON: ignored.
    }
  }

  override async webSocketClose(socket: WebSocket, code: number): Promise<void> {
    try {
      socket.close(code === 1005 ? 1000 : code, "closed");
    } catch {
      // Already closed.
    }
  }

  // ------------------------------------------------------------------------------------------ recovery

  override async alarm(): Promise<void> {
    if (this.#slot.turnId) {
      await this.ctx.storage.setAlarm(Date.now() + HEARTBEAT_MS);
      return;
    }
    await this.#recoverInterruptedTurns();
    this.#log.purgeExpired();
  }

  /** Ends turns an earlier incarnation left running: saves the partial answer and logs a clear error. */
  async #recoverInterruptedTurns(): Promise<void> {
    const interrupted = this.#log.runningTurns().filter((turn) => turn.id !== this.#slot.turnId);
    if (interrupted.length === 0) return;
    const services = this.#services();
    for (const turn of interrupted) {
      const events = this.#log.eventsAfter(turn.firstSeq - 1, turn.id);
      const messageId = await savePartialAnswer(services, turn.chatId, events);
      this.#emit(turn.id, {
        type: "error",
        error: "The turn was interrupted because the server restarted; send the message again",
        message_id: messageId,
      });
      this.#log.endTurn(turn.id, "failed" satisfies TurnStatus);
    }
  }
}
