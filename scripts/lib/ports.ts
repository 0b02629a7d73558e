/**
 * @module Port selection for the local stack: the preferred port when it is free, else any free one.
 */
import { createServer } from "node:net";

function tryListen(port: number, host: string): Promise<number | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(null));
    server.listen({ port, host, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === "object" && address ? address.port : null;
      server.close(() => resolve(bound));
    });
  });
}

const claimed = new Set<number>();

/**
 * Returns `preferred` when it can be bound on `host`, otherwise a free port chosen by the OS.
 * `preferred = 0` always asks the OS. Ports handed out by this process are never handed out twice.
 */
export async function findPort(preferred: number, host = "127.0.0.1"): Promise<number> {
  if (preferred > 0 && !claimed.has(preferred)) {
    const port = await tryListen(preferred, host);
    if (port !== null) {
      claimed.add(port);
      return port;
    }
  }
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await tryListen(0, host);
    if (port !== null && !claimed.has(port)) {
      claimed.add(port);
      return port;
    }
  }
  throw new Error(`no free port found on ${host}`);
}
