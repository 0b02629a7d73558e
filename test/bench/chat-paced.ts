/**
 * @module Many chats streaming at a model's pace. The loaded case of chat.ts sends every turn at the same instant
 * to an echo that answers at once: it measures how fast the platform drains a burst. Here a fake LLM in this
 * process streams each answer in `BENCH_CHAT_PACED_PIECES` pieces `BENCH_CHAT_PACED_CHUNK_MS` apart (default 50
 * pieces, 20 ms: 50 tokens/s, a second a turn), the chats start one after another over one turn's length and
 * then send turn after turn with no pause, so the given number of chats are streaming at every moment. The
 * first round is the ramp-up and is not counted. Time to first token against the same paced fake called
 * directly, the same way. Measured at each level of `BENCH_CHAT_PACED_CHATS` (default 10 and 100).
 */
import OpenAI from "openai";
import { startFakeLlm } from "../fixtures/fake-llm";
import type { Session } from "../helpers/auth";
import type { TestStack } from "../helpers/stack";
import {
  added,
  createBenchAgent,
  createChats,
  directTurn,
  platformTurn,
  row,
  runSeries,
  TABLE_HEAD,
} from "./chat-turns";
import { cpuPerUnit, formatCpu, sampleCpu } from "./cpu";

const PIECES = Number(process.env.BENCH_CHAT_PACED_PIECES ?? 50);
const CHUNK_MS = Number(process.env.BENCH_CHAT_PACED_CHUNK_MS ?? 20);
/** Counted rounds after the ramp-up round. */
const ROUNDS = Number(process.env.BENCH_CHAT_PACED_ROUNDS ?? 3);
const AGENT = "bench-paced";
/** A light level gets more rounds, so that its p95 stands on this many turns at least. */
const MIN_SAMPLES = 100;

/** A question whose echo splits into `PIECES` pieces of about 4 characters (a token's worth). */
function question(client: number, round: number): string {
  const head = `paced ${client}.${round}:`;
  return head.padEnd(PIECES * 4, " lorem ipsum dolor sit amet");
}

/** One load level: the paced fake called directly, then the platform, with the same chats and pacing. */
async function measureLevel(stack: TestStack, session: Session, chats: number, fakeUrl: string) {
  const agent = `${AGENT}-${chats}`;
  await createBenchAgent(stack, session, agent, fakeUrl);
  const chatIds = await createChats(stack, session, agent, chats);
  const client = new OpenAI({ baseURL: fakeUrl, apiKey: "sk-bench", maxRetries: 0 });
  const options = { staggerMs: (PIECES * CHUNK_MS) / chats, countFrom: 1 };
  const rounds = Math.max(ROUNDS, Math.ceil(MIN_SAMPLES / chats));
  const direct = await runSeries(
    chats,
    rounds + 1,
    (index, round) => directTurn(client, question(index, round)),
    options,
  );
  const cpuBefore = sampleCpu();
  const startedAt = performance.now();
  const platform = await runSeries(
    chats,
    rounds + 1,
    (index, round) => platformTurn(stack, session, chatIds[index] as string, question(index, round)),
    options,
  );
  const seconds = (performance.now() - startedAt) / 1000;
  const turns = chats * (rounds + 1);
  return {
    rows: [
      row("paced fake LLM direct (openai SDK)", chats, direct),
      row("POST /chats/{id}/messages/stream", chats, platform),
    ],
    summary:
      `- ${chats} chats: platform-added time to first token p50 ${added(platform, direct, 0.5)} ms, ` +
      `p95 ${added(platform, direct, 0.95)} ms; ${(turns / seconds).toFixed(0)} turns/s, ` +
      `${((turns * PIECES) / seconds).toFixed(0)} streamed pieces/s; CPU ms per turn (all processes): ` +
      `${formatCpu(cpuPerUnit(cpuBefore, sampleCpu(), turns))}.`,
    failures: [...direct.failures, ...platform.failures],
  };
}

/**
 * Paced load at each of `levels` (numbers of chats streaming at once) in turn: where the platform's added time
 * to first token stays low and where workerd's one thread saturates.
 */
export async function measurePacedLoad(
  stack: TestStack,
  session: Session,
  levels: number[],
): Promise<{ lines: string[]; failures: string[] }> {
  const fake = await startFakeLlm({ echo: { pieces: PIECES, chunkDelayMs: CHUNK_MS } });
  try {
    const results = [];
    for (const chats of levels) results.push(await measureLevel(stack, session, chats, fake.openaiUrl));
    return {
      lines: [
        `\nChats streaming at a model's pace (${PIECES} pieces ${CHUNK_MS} ms apart; staggered starts, then ` +
          `turn after turn; ${ROUNDS} rounds counted after a ramp-up round, more for fewer chats: ${MIN_SAMPLES} turns at ` +
          "least):\n",
        ...TABLE_HEAD,
        ...results.flatMap((result) => result.rows),
        "",
        ...results.map((result) => result.summary),
      ],
      failures: results.flatMap((result) => result.failures),
    };
  } finally {
    await fake.close();
  }
}
