/**
 * @module The Cron Trigger tick (every minute): records the tick in Redis (health, /scheduler/status),
 * runs the due schedules (schedule-dispatch.ts), reclaims expired states and drops request-log rows past their
 * retention (REQUEST_LOG_RETENTION_DAYS). Each step's failure is
 * logged and does not stop the others.
 */
import { purgeOldRequestLogs } from "./request-logs";
import { runDueSchedules } from "./schedule-dispatch";
import type { Services } from "./services";
import { purgeExpiredStates } from "./states";

export const LAST_CRON_TICK_KEY = "sinas:scheduler:last_tick";

async function step(name: string, work: () => Promise<unknown>): Promise<boolean> {
  try {
    await work();
    return true;
  } catch (error) {
    console.error(`cron tick: ${name} failed:`, error);
    return false;
  }
}

export async function runCronTick(services: Services, scheduledTime: Date): Promise<void> {
  const results = await Promise.all([
    step("recording the tick", () => services.redis().set(LAST_CRON_TICK_KEY, scheduledTime.toISOString())),
    step("running due schedules", () => runDueSchedules(services, scheduledTime)),
  ]);
  // Expired states are already invisible to the API; this only reclaims their rows (D-38).
  results.push(await step("purging expired states", () => purgeExpiredStates(services.db())));
  results.push(
    await step("purging old request logs", () =>
      purgeOldRequestLogs(services.db(), services.config.REQUEST_LOG_RETENTION_DAYS),
    ),
  );
  if (results.includes(false)) throw new Error("cron tick: a step failed (see the log above)");
}

export async function readLastCronTick(services: Services): Promise<string | null> {
  return services.redis().get<string>(LAST_CRON_TICK_KEY);
}
