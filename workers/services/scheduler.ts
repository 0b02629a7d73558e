/**
 * @module The Cron Trigger tick. Records when the last tick ran so health checks can show the scheduler
 * is alive; claiming and dispatching due schedules is added by the triggers issue.
 */
import type { Services } from "./services";
import { purgeExpiredStates } from "./states";

export const LAST_CRON_TICK_KEY = "sinas:scheduler:last_tick";

export async function runCronTick(services: Services, scheduledTime: Date): Promise<void> {
  await services.redis().set(LAST_CRON_TICK_KEY, scheduledTime.toISOString());
  // Expired states are already invisible to the API; this only reclaims their rows (D-38).
  await purgeExpiredStates(services.db());
}

export async function readLastCronTick(services: Services): Promise<string | null> {
  return services.redis().get<string>(LAST_CRON_TICK_KEY);
}
