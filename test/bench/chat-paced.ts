/**
 * @module Many chats streaming at a model's pace. The loaded case of chat.ts sends every turn at the same instant
 * to an echo that answers at once: it measures how fast the platform drains a burst. Here a fake LLM in this
 * process streams each answer in `BENCH_CHAT_PACED_PIECES` pieces `BENCH_CHAT_PACED_CHUNK_MS` apart (default 50
 * pieces, 20 ms: 50 tokens/s, a second a turn), the chats start one after another over one turn's length and
 * then send turn after turn with no pause, so the given number of chats are streaming at every moment. The
 * first round is the ramp-up and is not counted. Time to first token against the same paced fake called
 * directly, the same way.
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

/** A question whose echo splits into `PIECES` pieces of about 4 characters (a token's worth). */
function question(client: number, round: number): string {
  const head = `paced ${client}.${round}:`;
  return head.padEnd(PIECES * 4, " lorem ipsum dolor sit amet");
}

export async function measurePacedLoad(
  stack: TestStack,
  session: Session,
  chats: number,
): Promise<{ lines: string[]; failures: string[] }> {
  const fake = await startFakeLlm({ echo: { pieces: PIECES, chunkDelayMs: CHUNK_MS } });
  try {
    await createBenchAgent(stack, session, AGENT, fake.openaiUrl);
    const chatIds = await createChats(stack, session, AGENT, chats);
    const client = new OpenAI({ baseURL: fake.openaiUrl, apiKey: "sk-bench", maxRetries: 0 });
    const options = { staggerMs: (PIECES * CHUNK_MS) / chats, countFrom: 1 };
    const direct = await runSeries(
      chats,
      ROUNDS + 1,
      (index, round) => directTurn(client, question(index, round)),
      options,
    );
    const cpuBefore = sampleCpu();
    const startedAt = performance.now();
    const platform = await runSeries(
      chats,
      ROUNDS + 1,
      (index, round) => platformTurn(stack, session, chatIds[index] as string, question(index, round)),
      options,
    );
    const seconds = (performance.now() - startedAt) / 1000;
    const turns = chats * (ROUNDS + 1);
    const cpu = formatCpu(cpuPerUnit(cpuBefore, sampleCpu(), turns));
    return {
      lines: [
        `\n${chats} chats streaming at a model's pace (${PIECES} pieces ${CHUNK_MS} ms apart; staggered starts, ` +
          `then turn after turn; ${ROUNDS} rounds counted after a ramp-up round):\n`,
        ...TABLE_HEAD,
        row("paced fake LLM direct (openai SDK)", chats, direct),
        row("POST /chats/{id}/messages/stream", chats, platform),
        "",
        `Platform-added time to first token at ${chats} chats streaming: p50 ${added(platform, direct, 0.5)} ms, ` +
          `p95 ${added(platform, direct, 0.95)} ms; ${(turns / seconds).toFixed(0)} turns/s, ` +
          `${((turns * PIECES) / seconds).toFixed(0)} streamed pieces/s.`,
        `CPU ms per paced turn (all processes): ${cpu}.`,
      ],
      failures: [...direct.failures, ...platform.failures],
    };
  } finally {
    await fake.close();
  }
}
