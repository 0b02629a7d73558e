/**
 * @module A stack on one sandbox driver for the benchmarks, with login limits out of the way; null with a
 * table cell saying why when that driver cannot run here.
 */
import { IDENTITY_VARS } from "../helpers/auth";
import { startTestStack, type TestStack } from "../helpers/stack";

export async function startDriverStack(
  driver: string,
): Promise<{ stack: TestStack } | { unavailable: string }> {
  try {
    const stack = await startTestStack({
      workerVars: {
        ...IDENTITY_VARS,
        RATE_LIMIT_LOGIN_PER_IP: "1000/1m",
        RATE_LIMIT_VERIFY_PER_IP: "1000/1m",
      },
      env: { SANDBOX_DRIVER: driver },
    });
    return { stack };
  } catch (error) {
    return { unavailable: `not available here (${String(error).split("\n")[0]})` };
  }
}
