/**
 * @module Cron expressions and time zones of schedules (sinas-spec §7.2, D-37): pure functions over croner.
 *
 * Accepted: standard 5-field cron, `minute hour day-of-month month day-of-week`, each field a `,` list of
 * `*`, `*\/step`, `n`, `a-b` or `a-b/step`; months may be `JAN`..`DEC` and weekdays `SUN`..`SAT` (any case).
 * Weekdays are cron's, not APScheduler's: 0 and 7 are both Sunday, 1 is Monday (D-37).
 * Refused, with a message naming the problem: 6-field (seconds) and 7-field patterns, macros (`@hourly`),
 * croner's extensions (`L`, `W`, `#`, `?`), `n/step` without a range, reversed ranges, out-of-range values,
 * and expressions that never fire (`0 0 31 2 *`).
 *
 * Day-of-month and day-of-week combine as in Vixie cron/cronie: when both are restricted a day matches
 * either of them (`0 0 13 * 5`: the 13th and every Friday); when either field starts with `*` (`*`,
 * `*\/2`) a day must match both.
 *
 * Daylight saving time, in the schedule's time zone (croner's rules with `fixedTimeRule: "no-wildcard"`,
 * close to Vixie cron):
 * - a fixed-time job (minute and hour without `*` or a step: `30 2 * * *`, also lists and ranges such as
 *   `0 1,13 * * *` or `0 9-17 * * *`) whose local time is skipped by a spring-forward change runs once at
 *   the first valid minute after the gap (03:00 local that day); a local time that occurs twice (fall back)
 *   runs once, at the first occurrence;
 * - an interval job (`*` or a step in minute or hour, e.g. `*\/30 * * * *`) skips the minutes that do not
 *   exist and runs at both occurrences of a repeated local time. Unlike Vixie cron, which looks only for a
 *   leading `*`, a step over a range (`0 0-23/2 * * *`) is an interval job too.
 */
import { Cron } from "croner";

export type CronCheck = { ok: true } | { ok: false; message: string };
export type TimeZoneCheck = { ok: true; timeZone: string } | { ok: false; message: string };

interface FieldSpec {
  label: string;
  min: number;
  max: number;
  names?: readonly string[];
  /** Value the first name stands for. */
  nameBase?: number;
  /** The largest step croner takes, when less than the field's span (day-of-week: 7 days, 0-7 span 8). */
  maxStep?: number;
}

const MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS: readonly FieldSpec[] = [
  { label: "minute", min: 0, max: 59 },
  { label: "hour", min: 0, max: 23 },
  { label: "day-of-month", min: 1, max: 31 },
  { label: "month", min: 1, max: 12, names: MONTH_NAMES, nameBase: 1 },
  { label: "day-of-week", min: 0, max: 7, names: WEEKDAY_NAMES, nameBase: 0, maxStep: 7 },
];

const ITEM = /^(?:(\*)|([A-Za-z0-9]+)(?:-([A-Za-z0-9]+))?)(?:\/([^/]*))?$/;

export class CronError extends Error {
  override readonly name = "CronError";
}

function parseValue(field: FieldSpec, text: string): number {
  if (/^\d+$/.test(text)) {
    const value = Number(text);
    if (value < field.min || value > field.max) {
      throw new CronError(`${field.label} value ${text} is out of range ${field.min}-${field.max}`);
    }
    return value;
  }
  const index = field.names?.indexOf(text.toUpperCase()) ?? -1;
  if (index >= 0) return index + (field.nameBase ?? 0);
  const allowed = field.names
    ? `numbers ${field.min}-${field.max} or names ${field.names[0]}-${field.names.at(-1)}`
    : `numbers ${field.min}-${field.max}`;
  throw new CronError(`${field.label} value '${text}' is not supported (use ${allowed})`);
}

/** Checks one field and returns it with names replaced by numbers. */
function normaliseField(field: FieldSpec, text: string): string {
  return text
    .split(",")
    .map((item) => {
      const match = ITEM.exec(item);
      if (!item || !match) {
        throw new CronError(
          `${field.label} field '${text}' is not valid (use *, */step, n, a-b, a-b/step, or a list of them)`,
        );
      }
      const [, star, fromText, toText, stepText] = match;
      let body: string;
      if (star) body = "*";
      else {
        const from = parseValue(field, fromText as string);
        if (toText === undefined) {
          if (stepText !== undefined) {
            throw new CronError(
              `${field.label} step '${item}' needs * or a range before the slash (e.g. */5 or 0-30/5)`,
            );
          }
          body = String(from);
        } else {
          const to = parseValue(field, toText);
          if (from > to) throw new CronError(`${field.label} range '${item}' runs backwards`);
          body = `${from}-${to}`;
        }
      }
      if (stepText === undefined) return body;
      const maxStep = field.maxStep ?? field.max - field.min + 1;
      if (!/^\d+$/.test(stepText) || Number(stepText) < 1 || Number(stepText) > maxStep) {
        throw new CronError(`${field.label} step '${stepText}' must be a whole number from 1 to ${maxStep}`);
      }
      return `${body}/${Number(stepText)}`;
    })
    .join(",");
}

interface ParsedCron {
  pattern: string;
  domAndDow: boolean;
}

function parseCron(expression: string): ParsedCron {
  const trimmed = expression.trim();
  if (trimmed.startsWith("@")) {
    throw new CronError(
      `macros such as '${trimmed.split(/\s/, 1)[0]}' are not supported; write the 5 fields (e.g. '0 * * * *' for hourly)`,
    );
  }
  const parts = trimmed === "" ? [] : trimmed.split(/\s+/);
  if (parts.length !== 5) {
    throw new CronError(
      `expected 5 fields (minute hour day-of-month month day-of-week), got ${parts.length}` +
        (parts.length === 6 ? " (a seconds field is not supported)" : ""),
    );
  }
  const fields = parts.map((part, index) => normaliseField(FIELDS[index] as FieldSpec, part));
  const [, , dom, , dow] = parts as [string, string, string, string, string];
  return { pattern: fields.join(" "), domAndDow: dom.startsWith("*") || dow.startsWith("*") };
}

function cronFor(parsed: ParsedCron, timeZone: string): Cron {
  try {
    return new Cron(parsed.pattern, {
      timezone: timeZone,
      mode: "5-part",
      domAndDow: parsed.domAndDow,
      // croner's default counts a list or range as an interval job: `0 1,13 * * *` ran twice at 01:00 on
      // the fall-back day, `0 2,14 * * *` not at all at 02:00 on the spring-forward day.
      fixedTimeRule: "no-wildcard",
      paused: true,
    });
  } catch (error) {
    throw new CronError(
      error instanceof Error ? error.message.replace(/^CronPattern:\s*/, "") : String(error),
    );
  }
}

/**
 * Whether `expression` is a 5-field standard cron expression that fires at least once after `now`.
 * The message starts with `Invalid cron expression:` and names the failing field.
 */
export function validateCron(expression: string, now: Date = new Date()): CronCheck {
  try {
    const next = cronFor(parseCron(expression), "UTC").nextRun(now);
    if (!next) throw new CronError("it never fires (no date matches, e.g. February 31)");
    return { ok: true };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { ok: false, message: `Invalid cron expression: ${reason}` };
  }
}

const ZONE_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/;

/**
 * Whether `timeZone` is an IANA zone name the runtime knows (`UTC`, `Europe/Amsterdam`,
 * `America/New_York`); offsets such as `+02:00` are refused. Returns the name with the runtime's
 * capitalisation when only the case differs (`america/new_york` -> `America/New_York`).
 */
export function validateTimeZone(timeZone: string): TimeZoneCheck {
  const invalid = {
    ok: false,
    message: `Invalid time zone: '${timeZone}' is not an IANA time zone name`,
  } as const;
  if (!ZONE_NAME.test(timeZone) || timeZone.length > 50) return invalid;
  try {
    const resolved = new Intl.DateTimeFormat("en-US", { timeZone }).resolvedOptions().timeZone;
    return { ok: true, timeZone: resolved.toLowerCase() === timeZone.toLowerCase() ? resolved : timeZone };
  } catch {
    return invalid;
  }
}

/**
 * The first run strictly after `from` (a run at exactly `from` is not returned), evaluated in `timeZone`.
 * Throws CronError for an invalid expression or one that never fires.
 */
export function nextRunAfter(expression: string, timeZone: string, from: Date): Date {
  const next = cronFor(parseCron(expression), timeZone).nextRun(from);
  if (!next) throw new CronError(`cron expression '${expression}' has no run after ${from.toISOString()}`);
  return next;
}

/** The minute a run was scheduled for, as ISO (`2026-03-08T07:00:00.000Z`); part of idempotency keys. */
export function minuteOf(date: Date): string {
  return new Date(Math.floor(date.getTime() / 60_000) * 60_000).toISOString();
}
