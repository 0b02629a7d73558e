/**
 * @module One POST over `node:http(s)` with keep-alive connections, for the callbacks. Node's `fetch`
 * (undici) cost several times the CPU per call (measured: ~0.3-0.5 ms against ~0.1 ms), on cores the
 * sandboxes share.
 */
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";

const httpAgent = new HttpAgent({ keepAlive: true });
const httpsAgent = new HttpsAgent({ keepAlive: true });

export interface PostAnswer {
  status: number;
}

/** Posts `body`; resolves with the status once the answer was read, rejects on network errors and timeout. */
export type PostText = (
  url: string,
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
) => Promise<PostAnswer>;

export const postText: PostText = (url, headers, body, timeoutMs) =>
  new Promise((resolve, reject) => {
    const target = new URL(url);
    const secure = target.protocol === "https:";
    const outgoing = (secure ? httpsRequest : httpRequest)(
      target,
      {
        method: "POST",
        agent: secure ? httpsAgent : httpAgent,
        headers: { ...headers, "content-length": String(Buffer.byteLength(body)) },
        signal: AbortSignal.timeout(timeoutMs),
      },
      (response) => {
        response.on("error", reject);
        response.on("end", () => resolve({ status: response.statusCode ?? 0 }));
        response.resume();
      },
    );
    outgoing.on("error", reject);
    outgoing.end(body);
  });
