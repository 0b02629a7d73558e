import { describe, expect, it } from "vitest";
import { minuteOf, nextRunAfter, validateCron, validateTimeZone } from "../../workers/lib/cron";

const NEW_YORK = "America/New_York";

/** The runs a schedule makes in [from, until), each computed from the previous one as the tick does. */
function runsBetween(expression: string, timeZone: string, from: string, until: string): string[] {
  const runs: string[] = [];
  let cursor = new Date(from);
  for (;;) {
    cursor = nextRunAfter(expression, timeZone, cursor);
    if (cursor >= new Date(until)) return runs;
    runs.push(cursor.toISOString());
  }
}

describe("nextRunAfter in America/New_York across the 2026 DST changes", () => {
  it("runs `30 2 * * *` at 02:30 local; on the spring-forward day (02:30 does not exist) at 03:00 EDT", () => {
    expect(runsBetween("30 2 * * *", NEW_YORK, "2026-03-06T12:00:00Z", "2026-03-10T12:00:00Z")).toEqual([
      "2026-03-07T07:30:00.000Z", // 02:30 EST (UTC-5)
      "2026-03-08T07:00:00.000Z", // 02:00-03:00 skipped: once, at 03:00 EDT
      "2026-03-09T06:30:00.000Z", // 02:30 EDT (UTC-4)
      "2026-03-10T06:30:00.000Z",
    ]);
  });

  it("runs `30 2 * * *` once on the fall-back day, then at the new offset", () => {
    expect(runsBetween("30 2 * * *", NEW_YORK, "2026-10-30T12:00:00Z", "2026-11-03T12:00:00Z")).toEqual([
      "2026-10-31T06:30:00.000Z", // 02:30 EDT
      "2026-11-01T07:30:00.000Z", // 02:30 EST (01:00-02:00 repeats, 02:30 happens once)
      "2026-11-02T07:30:00.000Z",
      "2026-11-03T07:30:00.000Z",
    ]);
  });

  it("runs a fixed time that occurs twice (01:30 on Nov 1) only once, at the first occurrence", () => {
    expect(runsBetween("30 1 * * *", NEW_YORK, "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z")).toEqual([
      "2026-11-01T05:30:00.000Z", // 01:30 EDT; not again at 01:30 EST (06:30Z)
      "2026-11-02T06:30:00.000Z",
    ]);
  });

  it("runs `0 9 * * 1` at 09:00 local on Mondays on both sides of each change", () => {
    expect(runsBetween("0 9 * * 1", NEW_YORK, "2026-02-28T00:00:00Z", "2026-03-17T00:00:00Z")).toEqual([
      "2026-03-02T14:00:00.000Z", // EST
      "2026-03-09T13:00:00.000Z", // EDT, the day after the change
      "2026-03-16T13:00:00.000Z",
    ]);
    expect(runsBetween("0 9 * * 1", NEW_YORK, "2026-10-20T00:00:00Z", "2026-11-10T00:00:00Z")).toEqual([
      "2026-10-26T13:00:00.000Z", // EDT
      "2026-11-02T14:00:00.000Z", // EST
      "2026-11-09T14:00:00.000Z",
    ]);
  });

  it("interval jobs skip the missing hour and run through the repeated one", () => {
    expect(runsBetween("*/30 * * * *", NEW_YORK, "2026-03-08T06:00:00Z", "2026-03-08T08:00:00Z")).toEqual([
      "2026-03-08T06:30:00.000Z", // 01:30 EST
      "2026-03-08T07:00:00.000Z", // 03:00 EDT
      "2026-03-08T07:30:00.000Z",
    ]);
    expect(runsBetween("*/30 * * * *", NEW_YORK, "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z")).toEqual([
      "2026-11-01T05:30:00.000Z", // 01:30 EDT
      "2026-11-01T06:00:00.000Z", // 01:00 EST
      "2026-11-01T06:30:00.000Z", // 01:30 EST
    ]);
  });

  it("runs lists and ranges in minute or hour as fixed times, as Vixie cron does", () => {
    // Fall back: 01:00 occurs twice and runs once, at 01:00 EDT; 13:00 is EST.
    expect(runsBetween("0 1,13 * * *", NEW_YORK, "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z")).toEqual([
      "2026-10-31T17:00:00.000Z", // 13:00 EDT
      "2026-11-01T05:00:00.000Z", // 01:00 EDT; not again at 01:00 EST (06:00Z)
      "2026-11-01T18:00:00.000Z", // 13:00 EST
      "2026-11-02T06:00:00.000Z",
    ]);
    // Spring forward: 02:00 does not exist and runs at 03:00 EDT instead of being skipped.
    expect(runsBetween("0 2,14 * * *", NEW_YORK, "2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z")).toEqual([
      "2026-03-07T19:00:00.000Z", // 14:00 EST
      "2026-03-08T07:00:00.000Z", // 03:00 EDT
      "2026-03-08T18:00:00.000Z", // 14:00 EDT
      "2026-03-09T06:00:00.000Z",
    ]);
    // A range: 01:30 runs once, then 02:30 EST.
    expect(runsBetween("30 1-2 * * *", NEW_YORK, "2026-10-31T12:00:00Z", "2026-11-02T00:00:00Z")).toEqual([
      "2026-11-01T05:30:00.000Z", // 01:30 EDT; not again at 01:30 EST (06:30Z)
      "2026-11-01T07:30:00.000Z", // 02:30 EST
    ]);
  });

  it("is strictly after `from` and works from a time between minutes", () => {
    expect(nextRunAfter("* * * * *", "UTC", new Date("2026-01-01T00:05:00Z")).toISOString()).toBe(
      "2026-01-01T00:06:00.000Z",
    );
    expect(nextRunAfter("* * * * *", "UTC", new Date("2026-01-01T00:05:59.900Z")).toISOString()).toBe(
      "2026-01-01T00:06:00.000Z",
    );
    expect(nextRunAfter("0 0 * * *", "UTC", new Date("2026-01-01T12:00:00Z")).toISOString()).toBe(
      "2026-01-02T00:00:00.000Z",
    );
  });
});

describe("weekdays and fields (D-37: standard cron numbering)", () => {
  // 2026-03-01 is a Sunday.
  const from = new Date("2026-03-02T00:00:00Z");
  const sunday = "2026-03-08T12:00:00.000Z";

  it("treats 0, 7 and SUN as Sunday and 1 as Monday", () => {
    expect(nextRunAfter("0 12 * * 0", "UTC", from).toISOString()).toBe(sunday);
    expect(nextRunAfter("0 12 * * 7", "UTC", from).toISOString()).toBe(sunday);
    expect(nextRunAfter("0 12 * * sun", "UTC", from).toISOString()).toBe(sunday);
    expect(nextRunAfter("0 12 * * 1", "UTC", from).toISOString()).toBe("2026-03-02T12:00:00.000Z");
    expect(runsBetween("0 0 * * 5-7", "UTC", "2026-03-02T00:00:00Z", "2026-03-10T00:00:00Z")).toEqual([
      "2026-03-06T00:00:00.000Z",
      "2026-03-07T00:00:00.000Z",
      "2026-03-08T00:00:00.000Z",
    ]);
  });

  it("accepts month and weekday names", () => {
    expect(nextRunAfter("0 0 1 JAN *", "UTC", from).toISOString()).toBe("2027-01-01T00:00:00.000Z");
    expect(nextRunAfter("0 0 * * MON-FRI", "UTC", new Date("2026-03-07T00:00:00Z")).toISOString()).toBe(
      "2026-03-09T00:00:00.000Z",
    );
  });

  it("combines day-of-month and day-of-week like Vixie cron", () => {
    // Both restricted: either matches (the 13th, or a Friday).
    expect(runsBetween("0 0 13 * 5", "UTC", "2026-03-01T00:00:00Z", "2026-03-14T00:00:00Z")).toEqual([
      "2026-03-06T00:00:00.000Z",
      "2026-03-13T00:00:00.000Z",
    ]);
    // A field starting with `*` makes it AND: odd days that are Fridays.
    expect(runsBetween("0 0 */2 * 5", "UTC", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")).toEqual([
      "2026-03-13T00:00:00.000Z",
      "2026-03-27T00:00:00.000Z",
    ]);
  });

  it("supports lists, ranges and steps", () => {
    expect(runsBetween("0,15 9-10/1 * * *", "UTC", "2026-03-01T00:00:00Z", "2026-03-01T12:00:00Z")).toEqual([
      "2026-03-01T09:00:00.000Z",
      "2026-03-01T09:15:00.000Z",
      "2026-03-01T10:00:00.000Z",
      "2026-03-01T10:15:00.000Z",
    ]);
  });
});

describe("validateCron", () => {
  it("accepts standard expressions", () => {
    for (const expression of [
      "* * * * *",
      "30 2 * * *",
      "0 9 * * 1",
      " */5  * * * 7 ",
      "0 0 29 2 *",
      "0 0 1 jan,jul *",
    ]) {
      expect(validateCron(expression), expression).toEqual({ ok: true });
    }
  });

  const rejected: [string, string][] = [
    [
      "* * * * * *",
      "expected 5 fields (minute hour day-of-month month day-of-week), got 6 (a seconds field is not supported)",
    ],
    ["* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"],
    ["", "expected 5 fields (minute hour day-of-month month day-of-week), got 0"],
    ["61 * * * *", "minute value 61 is out of range 0-59"],
    ["* 24 * * *", "hour value 24 is out of range 0-23"],
    ["0 0 0 * *", "day-of-month value 0 is out of range 1-31"],
    ["0 0 * 13 *", "month value 13 is out of range 1-12"],
    ["0 0 * * 8", "day-of-week value 8 is out of range 0-7"],
    [
      "@hourly",
      "macros such as '@hourly' are not supported; write the 5 fields (e.g. '0 * * * *' for hourly)",
    ],
    ["0 0 L * *", "day-of-month value 'L' is not supported (use numbers 1-31)"],
    ["0 0 * * 5L", "day-of-week value '5L' is not supported (use numbers 0-7 or names SUN-SAT)"],
    [
      "0 0 * * 1#2",
      "day-of-week field '1#2' is not valid (use *, */step, n, a-b, a-b/step, or a list of them)",
    ],
    ["0 0 ? * *", "day-of-month field '?' is not valid (use *, */step, n, a-b, a-b/step, or a list of them)"],
    ["0 0 * FOO *", "month value 'FOO' is not supported (use numbers 1-12 or names JAN-DEC)"],
    ["5/10 * * * *", "minute step '5/10' needs * or a range before the slash (e.g. */5 or 0-30/5)"],
    ["*/0 * * * *", "minute step '0' must be a whole number from 1 to 60"],
    ["0 0 * * */8", "day-of-week step '8' must be a whole number from 1 to 7"],
    ["30-10 * * * *", "minute range '30-10' runs backwards"],
    ["1,,2 * * * *", "minute field '1,,2' is not valid (use *, */step, n, a-b, a-b/step, or a list of them)"],
    ["0 0 31 2 *", "it never fires (no date matches, e.g. February 31)"],
  ];
  it.each(rejected)("rejects %j", (expression, reason) => {
    expect(validateCron(expression, new Date("2026-01-01T00:00:00Z"))).toEqual({
      ok: false,
      message: `Invalid cron expression: ${reason}`,
    });
  });

  it("nextRunAfter refuses what validateCron refuses", () => {
    expect(() => nextRunAfter("61 * * * *", "UTC", new Date())).toThrow(
      "minute value 61 is out of range 0-59",
    );
  });
});

describe("validateTimeZone", () => {
  it("accepts IANA names and fixes their case", () => {
    expect(validateTimeZone("UTC")).toEqual({ ok: true, timeZone: "UTC" });
    expect(validateTimeZone("America/New_York")).toEqual({ ok: true, timeZone: "America/New_York" });
    expect(validateTimeZone("america/new_york")).toEqual({ ok: true, timeZone: "America/New_York" });
    expect(validateTimeZone("Etc/GMT+5")).toMatchObject({ ok: true });
  });

  it.each(["Mars/Olympus", "+02:00", "", "America/New York", "../etc/passwd"])("rejects %j", (zone) => {
    expect(validateTimeZone(zone)).toEqual({
      ok: false,
      message: `Invalid time zone: '${zone}' is not an IANA time zone name`,
    });
  });
});

describe("minuteOf", () => {
  it("truncates to the minute", () => {
    expect(minuteOf(new Date("2026-03-08T07:00:42.123Z"))).toBe("2026-03-08T07:00:00.000Z");
  });
});
