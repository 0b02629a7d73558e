/**
 * @module Messages between the executor and the resident Python runtime (PROTOCOL.md §4), as zod schemas.
 * Everything the runtime sends is untrusted (user code runs in its interpreter and can write to the
 * socket), so every line is parsed and checked here before anything acts on it.
 */
import { z } from "zod";
import {
  type CallableScopeSchema,
  type ExecutionContextSchema,
  ResultEventSchema,
  StepSchema,
} from "../../workers/lib/executor-protocol";

export const RuntimeReadySchema = z.object({ type: z.literal("ready"), pid: z.number(), python: z.string() });
export type RuntimeReady = z.infer<typeof RuntimeReadySchema>;

const RuntimeLogSchema = z.object({
  type: z.literal("log"),
  job_id: z.string(),
  stream: z.enum(["stdout", "stderr"]),
  text: z.string(),
  at: z.string(),
});
const RuntimeStepSchema = z.object({ type: z.literal("step"), job_id: z.string(), step: StepSchema });
const RuntimeResultSchema = ResultEventSchema.extend({ job_id: z.string() });

export const RuntimeMessageSchema = z.discriminatedUnion("type", [
  RuntimeReadySchema,
  z.object({ type: z.literal("pong") }),
  RuntimeLogSchema,
  RuntimeStepSchema,
  RuntimeResultSchema,
]);
export type RuntimeMessage = z.infer<typeof RuntimeMessageSchema>;
export type RuntimeJobMessage = Extract<RuntimeMessage, { job_id: string }>;

export type ExecuteMessage = {
  type: "execute";
  job_id: string;
  execution_id: string;
  function: { namespace: string; name: string; code: string; code_hash: string };
  callable: z.infer<typeof CallableScopeSchema>;
  input: unknown;
  context: z.infer<typeof ExecutionContextSchema>;
};
export type ResumeMessage = { type: "resume"; job_id: string; execution_id: string; input: unknown };
export type JobMessage = ExecuteMessage | ResumeMessage;
export type ExecutorMessage = JobMessage | { type: "ping" };
