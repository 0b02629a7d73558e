/**
 * @module Platform-added time to first token: a chat turn streamed through the API
 * (`POST /chats/{id}/messages/stream`, first SSE `message` event with content) against the same fake LLM called
 * directly with the `openai` SDK (first content delta). The fake runs in the launcher (`SINAS_FAKE_LLM=true`) in
 * echo mode, so both paths get the same instant answer; the difference is what the platform adds. Measured one
 * turn at a time, then with many chats sending at the same instant (a burst), then with as many streaming at a
 * model's pace (chat-paced.ts), then the stop latency (chat-stop.ts).
 */
import OpenAI from "openai";
import { IDENTITY_VARS, login, SUPERADMIN_EMAIL } from "../helpers/auth";
import { startTestStack } from "../helpers/stack";
import { measurePacedLoad } from "./chat-paced";
import { measureStopLatency } from "./chat-stop";
import {
  added,
  createBenchAgent,
  createChats,
  directTurn,
  failureLines,
  platformTurn,
  row,
  runSeries,
  TABLE_HEAD,
} from "./chat-turns";
import { cpuPerUnit, formatCpu, sampleCpu } from "./cpu";

const SAMPLES = Number(process.env.BENCH_CHAT_SAMPLES ?? 50);
const CONCURRENCY = Number(process.env.BENCH_CHAT_CONCURRENCY ?? 100);
/** Turns each concurrent chat sends, one after the other. */
const ROUNDS = Number(process.env.BENCH_CHAT_ROUNDS ?? 2);
const WARMUP_TURNS = 5;
/** Turns sent to one chat before its follow-ups are measured again (each adds a user and an assistant message). */
const LONG_TURNS = Number(process.env.BENCH_CHAT_LONG_TURNS ?? 200);
const AGENT = "bench";
/** Numbers of chats streaming at a model's pace at once (chat-paced.ts). */
const PACED_LEVELS = [
  ...new Set((process.env.BENCH_CHAT_PACED_CHATS ?? `10,${CONCURRENCY}`).split(",").map(Number)),
];
if (PACED_LEVELS.some((chats) => !Number.isInteger(chats) || chats < 1)) {
  throw new Error(`BENCH_CHAT_PACED_CHATS must list positive whole numbers, e.g. "10,100"`);
}

export async function runChatBenchmarks(): Promise<string[]> {
  const stack = await startTestStack({
    workerVars: { ...IDENTITY_VARS },
    env: { SINAS_FAKE_LLM: "true", FAKE_LLM_PORT: "0" },
  });
  try {
    const session = await login(stack, SUPERADMIN_EMAIL);
    if (!stack.fakeLlmUrl) throw new Error("the launcher did not start the fake LLM (SINAS_FAKE_LLM=true)");
    await createBenchAgent(stack, session, AGENT, `${stack.fakeLlmUrl}/v1`);
    const client = new OpenAI({ baseURL: `${stack.fakeLlmUrl}/v1`, apiKey: "sk-bench", maxRetries: 0 });
    const sequentialChats = await createChats(stack, session, AGENT, WARMUP_TURNS + SAMPLES);
    const concurrentChats = await createChats(stack, session, AGENT, CONCURRENCY);
    const say = (client: number, round: number) => `bench message ${client}.${round}`;

    // Warm the Worker, the Durable Objects' code paths and the fake before counting.
    await runSeries(1, WARMUP_TURNS, (_, round) =>
      platformTurn(stack, session, sequentialChats[round] as string, say(0, round)),
    );
    await runSeries(1, WARMUP_TURNS, (_, round) => directTurn(client, say(0, round)));

    const directAlone = await runSeries(1, SAMPLES, (_, round) => directTurn(client, say(0, round)));
    const platformAlone = await runSeries(1, SAMPLES, (_, round) =>
      platformTurn(stack, session, sequentialChats[WARMUP_TURNS + round] as string, say(0, round)),
    );
    // Follow-up turns in one chat: its ChatSession object (and its SQLite storage) already exists.
    const followUps = await runSeries(1, SAMPLES, (_, round) =>
      platformTurn(stack, session, sequentialChats[0] as string, say(1, round)),
    );
    // The same follow-ups once the chat is long: every turn's conversation carries its whole history.
    await runSeries(1, LONG_TURNS, (_, round) =>
      platformTurn(stack, session, sequentialChats[0] as string, say(2, round)),
    );
    const longCpuBefore = sampleCpu();
    const longFollowUps = await runSeries(1, SAMPLES, (_, round) =>
      platformTurn(stack, session, sequentialChats[0] as string, say(3, round)),
    );
    const longCpu = formatCpu(cpuPerUnit(longCpuBefore, sampleCpu(), longFollowUps.samples.length));
    const longMessages = 2 * (1 + SAMPLES + LONG_TURNS);
    const directLoaded = await runSeries(CONCURRENCY, ROUNDS, (index, round) =>
      directTurn(client, say(index, round)),
    );
    const cpuBefore = sampleCpu();
    const platformLoaded = await runSeries(CONCURRENCY, ROUNDS, (index, round) =>
      platformTurn(stack, session, concurrentChats[index] as string, say(index, round)),
    );
    const loadedCpu = formatCpu(cpuPerUnit(cpuBefore, sampleCpu(), platformLoaded.samples.length));

    const failures = [
      ...platformAlone.failures,
      ...followUps.failures,
      ...longFollowUps.failures,
      ...platformLoaded.failures,
    ];
    const stopLines = await measureStopLatency(stack, session);
    const paced = await measurePacedLoad(stack, session, PACED_LEVELS);
    return [
      `Stack: ${stack.database.kind}, Redis ${stack.redisMode}; fake LLM in echo mode (3 chunks, no delay). ` +
        `Alone: ${SAMPLES} turns one after the other; loaded: ${CONCURRENCY} chats x ${ROUNDS} turns at once.\n`,
      ...TABLE_HEAD,
      row("fake LLM direct (openai SDK)", 1, directAlone),
      row("POST /chats/{id}/messages/stream, first turn of a new chat", 1, platformAlone),
      row("POST /chats/{id}/messages/stream, follow-up turns of one chat", 1, followUps),
      row(`... follow-up turns of a chat of ${longMessages}+ messages`, 1, longFollowUps),
      row("fake LLM direct (openai SDK)", CONCURRENCY, directLoaded),
      row("POST /chats/{id}/messages/stream", CONCURRENCY, platformLoaded),
      "",
      `Platform-added time to first token: alone p50 ${added(platformAlone, directAlone, 0.5)} ms, ` +
        `p95 ${added(platformAlone, directAlone, 0.95)} ms (follow-up turns: p50 ${added(followUps, directAlone, 0.5)} ms, ` +
        `p95 ${added(followUps, directAlone, 0.95)} ms); ${CONCURRENCY} concurrent chats p50 ` +
        `${added(platformLoaded, directLoaded, 0.5)} ms, p95 ${added(platformLoaded, directLoaded, 0.95)} ms.`,
      `Follow-up turns of a chat of ${longMessages}+ messages: p50 ${added(longFollowUps, directAlone, 0.5)} ms, ` +
        `p95 ${added(longFollowUps, directAlone, 0.95)} ms; CPU ms per turn: ${longCpu}.`,
      `CPU ms per streamed turn under load (whole turn, all processes): ${loadedCpu}.`,
      ...stopLines,
      ...paced.lines,
      ...failureLines(stack, [...failures, ...paced.failures]),
    ];
  } finally {
    await stack.stop();
  }
}
