/**
 * @module The ChatSession's turn slot: one turn at a time per chat. A send or a tool decision claims the slot
 * synchronously (before any await), so that a concurrent send sees it taken; the turn frees it when it ends.
 * Between the claim and the turn's first logged event (Postgres work), viewers wait (`untilLogged`).
 */
import type { TurnResult } from "../workers/chat/turn";
import type { Failure } from "./chat-session-results";

export type TurnOutcome = { result: TurnResult | null; failure: Failure | null };

/** The slot as a send or a decision holds it. */
export interface TurnClaim {
  turnId: string;
  controller: AbortController;
  /** Settles when the turn has ended and its end is logged. */
  ended: Promise<TurnOutcome>;
  settle: (outcome: TurnOutcome) => void;
  /** Handed to a continuation, which frees the slot when its turn ends. */
  continued: boolean;
}

export class TurnSlot {
  #held: TurnClaim | null = null;
  /** While the held claim's turn is not logged yet: resolved when it is, or when the claim frees the slot. */
  #unlogged: { promise: Promise<void>; resolve: () => void } | null = null;

  /** The id of the turn holding the slot, or null when the chat is idle. */
  get turnId(): string | null {
    return this.#held?.turnId ?? null;
  }

  claim(): TurnClaim {
    let settle: (outcome: TurnOutcome) => void = () => {};
    const ended = new Promise<TurnOutcome>((resolve) => (settle = resolve));
    let resolve = () => {};
    this.#unlogged = { promise: new Promise<void>((done) => (resolve = done)), resolve };
    this.#held = {
      turnId: crypto.randomUUID(),
      controller: new AbortController(),
      ended,
      settle,
      continued: false,
    };
    return this.#held;
  }

  /** The turn `turnId` logged its first event: a viewer can find it now. */
  logged(turnId: string): void {
    if (this.#held?.turnId === turnId) this.#endUnlogged();
  }

  /**
   * Waits (at most `ms`) while the slot is claimed for a turn not logged yet: a viewer arriving then (a second
   * device, or the decider's client following its approval) would otherwise find no running turn and get 204
   * or the paused turn's replay.
   */
  async untilLogged(ms: number): Promise<void> {
    const unlogged = this.#unlogged?.promise;
    if (!unlogged) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
    await Promise.race([unlogged, timeout]);
    clearTimeout(timer);
  }

  #endUnlogged(): void {
    this.#unlogged?.resolve();
    this.#unlogged = null;
  }

  /** Frees the slot, if the turn `turnId` still holds it. */
  free(turnId: string): void {
    if (this.#held?.turnId !== turnId) return;
    this.#held = null;
    this.#endUnlogged(); // a claim given up without a turn: its viewers stop waiting
  }

  /** Frees the slot of a claim whose turn never started, and settles it. */
  release(claim: TurnClaim): void {
    this.free(claim.turnId);
    claim.settle({ result: null, failure: null });
  }

  /** Ends the running turn; resolves once its end is logged (the partial answer saved). */
  async stop(): Promise<{ stopped: boolean; turn_id: string | null }> {
    const held = this.#held;
    if (!held) return { stopped: false, turn_id: null };
    held.controller.abort();
    await held.ended;
    return { stopped: true, turn_id: held.turnId };
  }
}
