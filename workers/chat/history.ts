/**
 * @module A chat's stored messages, kept by its ChatSession object between turns and model calls. Each read asks
 * the database only for the rows added since the last one (with the chat's message count, to notice a row it
 * missed), so a long chat no longer costs every model call a read and a mapping of its whole history.
 *
 * Safe because the chat's object is the only writer of its messages once the chat exists: turns, approvals and
 * interrupted-turn recovery all run in it, and messages are never edited (a regenerated answer's are deleted
 * there, and forgotten here: `forgetAfter`). Anything unexpected (a count that does not add up) reloads the whole
 * history.
 */
import type { Database } from "../db/client";
import type { Message } from "../db/schema";
import { listChatMessagesAfter } from "../services/chats";

/**
 * Above this much message content (about 2 MB) the history is read in full every time rather than held: the
 * chat objects of an isolate share its memory (128 MB on Cloudflare), and images sent as data URLs are large.
 */
export const HISTORY_CACHE_MAX_CHARS = 1_000_000;

export class ChatHistory {
  readonly chatId: string;
  readonly #maxChars: number;
  #messages: Message[] = [];
  #chars = 0;

  constructor(chatId: string, maxChars = HISTORY_CACHE_MAX_CHARS) {
    this.chatId = chatId;
    this.#maxChars = maxChars;
  }

  /** Every message of the chat in sequence order, as the database holds them now. */
  async read(db: Database): Promise<Message[]> {
    const known = this.#messages.length;
    const { added, total } = await listChatMessagesAfter(db, this.chatId, this.#lastSequence());
    if (known + added.length !== total) return this.#reload(db);
    for (const message of added) this.#insert(message);
    return this.#held();
  }

  /**
   * A message this object stored itself, which a read running beside its insert may not return. It may be
   * remembered before or after that read ends: rows are kept in sequence order, each once.
   */
  remember(message: Message): void {
    if (message.chatId === this.chatId) this.#insert(message);
  }

  /** Forgets the messages after `sequence`, deleted by this object (a regenerated answer). */
  forgetAfter(sequence: number): void {
    const kept = this.#messages.filter((message) => message.sequence <= sequence);
    this.#clear();
    for (const message of kept) this.#insert(message);
  }

  /** Drops what is held (before a full read, or when it grew too large). */
  #clear(): void {
    this.#messages = [];
    this.#chars = 0;
  }

  async #reload(db: Database): Promise<Message[]> {
    this.#clear();
    const { added } = await listChatMessagesAfter(db, this.chatId, 0);
    for (const message of added) this.#insert(message);
    return this.#held();
  }

  /** A copy of the held messages (later reads append to them); a history too large to keep is then dropped. */
  #held(): Message[] {
    const messages = this.#messages.slice();
    if (this.#chars > this.#maxChars) this.#clear();
    return messages;
  }

  #insert(message: Message): void {
    const held = this.#messages;
    // Nearly always the newest: look from the end.
    let index = held.length;
    while (index > 0 && (held[index - 1] as Message).sequence > message.sequence) index--;
    if (index > 0 && (held[index - 1] as Message).sequence === message.sequence) return;
    held.splice(index, 0, message);
    this.#chars += message.content?.length ?? 0;
  }

  #lastSequence(): number {
    return this.#messages.at(-1)?.sequence ?? 0;
  }
}
