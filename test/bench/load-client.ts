/**
 * @module A lean HTTP/1.1 client for load generation: `node:http` with keep-alive. The load runs on the same
 * 2 cores as the stack, and Node's `fetch` (undici) costs ~3x the CPU per call (measured: ~0.3-0.5 ms against
 * ~0.1 ms), CPU the stack under test would otherwise have.
 */
import { Agent, request } from "node:http";

export interface LoadClient {
  send(
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: string,
  ): Promise<{ status: number; body: string }>;
  close(): void;
}

export function createLoadClient(baseUrl: string): LoadClient {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  return {
    send(method, path, headers, body) {
      return new Promise((resolve, reject) => {
        const length = body === undefined ? {} : { "content-length": String(Buffer.byteLength(body)) };
        const outgoing = request(
          new URL(path, baseUrl),
          { method, agent, headers: { ...headers, ...length } },
          (response) => {
            const chunks: Buffer[] = [];
            response.on("data", (chunk: Buffer) => chunks.push(chunk));
            response.on("end", () =>
              resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
            );
            response.on("error", reject);
          },
        );
        outgoing.on("error", reject);
        outgoing.end(body);
      });
    },
    close: () => agent.destroy(),
  };
}
