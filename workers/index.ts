/**
 * @module Worker entry: HTTP (Hono app), the every-minute Cron Trigger, and the Durable Object classes.
 */
import { createApp } from "./app";
import type { Env } from "./env";
import { runCronTick } from "./services/scheduler";
import { createServices } from "./services/services";

export { ChatSession } from "../durable-objects/chat-session";
export { ExecutionRun } from "../durable-objects/execution-run";
export { LoginSession } from "../durable-objects/login-session";

const app = createApp();

export default {
  fetch: app.fetch,
  async scheduled(controller, env, ctx) {
    const services = createServices(env);
    ctx.waitUntil(
      runCronTick(services, new Date(controller.scheduledTime)).finally(() => services.dispose()),
    );
  },
} satisfies ExportedHandler<Env>;
