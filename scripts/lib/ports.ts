/**
 * @module Port selection for the local stack: the preferred port when it is free, else a free one.
 *
 * Free ports are drawn from 20000-32767, below Linux's ephemeral range (32768+): a port the OS hands out
 * for `listen(0)` can be taken by an outgoing connection's source port before the child binds it, which
 * made parallel test stacks collide. A claim file per port (in the temp folder) keeps launchers running
 * at the same time from picking the same one.
 */
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const RANGE_START = 20000;
const RANGE_END = 32767;
/** A claim older than this is stale (its launcher is gone or has long bound the port). */
const CLAIM_TTL_MS = 10 * 60 * 1000;
const CLAIMS_DIR = join(tmpdir(), "sinas-port-claims");

function canListen(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** Claims `port` for this process unless another launcher claimed it recently. */
function claim(port: number): boolean {
  mkdirSync(CLAIMS_DIR, { recursive: true });
  const file = join(CLAIMS_DIR, String(port));
  try {
    writeFileSync(file, String(process.pid), { flag: "wx" });
    return true;
  } catch {
    try {
      if (Date.now() - statSync(file).mtimeMs < CLAIM_TTL_MS) return false;
      writeFileSync(file, String(process.pid));
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * Returns `preferred` when it can be bound on `host`, otherwise a free port from 20000-32767.
 * `preferred = 0` always picks from the range.
 */
export async function findPort(preferred: number, host = "127.0.0.1"): Promise<number> {
  if (preferred > 0 && (await canListen(preferred, host))) return preferred;
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = RANGE_START + Math.floor(Math.random() * (RANGE_END - RANGE_START));
    if (claim(port) && (await canListen(port, host))) return port;
  }
  throw new Error(`no free port found on ${host} in ${RANGE_START}-${RANGE_END}`);
}
