/**
 * @module The activity of a streamed call, from the bytes its response body brings. The SDKs drop what yields no
 * event (Anthropic's `ping`, SSE comments that proxies send as keep-alives) and the adapters what carries nothing
 * for the chat (`message_start`, OpenAI's opening role-only delta), yet each shows that the provider is still
 * there: a caller bounding silence (chat/model-call.ts) must count them, or a model that thinks for a minute
 * under keep-alives passes for a dead connection.
 *
 * The hook rides in the request's `fetchOptions` under a symbol (both SDKs hand those to `fetch` as they are), so
 * one shared client serves calls with hooks of their own. Each read of the body's reader reports; the SDKs read
 * event streams through the reader (read-by-reader.ts hides the body's async iterator).
 */

const ON_ACTIVITY = Symbol("sinas.llm.onActivity");

type ActivityInit = RequestInit & { [ON_ACTIVITY]?: () => void };

/** What the SDKs take as a request's `fetchOptions`: they set the rest themselves. */
type SdkFetchOptions = Omit<RequestInit, "method" | "body" | "headers" | "signal">;

/** The per-request SDK options that carry `onActivity` to `reportingActivity` (none without a hook). */
export function activityOptions(onActivity: (() => void) | undefined): { fetchOptions?: SdkFetchOptions } {
  if (!onActivity) return {};
  const init: ActivityInit = { [ON_ACTIVITY]: onActivity };
  return { fetchOptions: init };
}

/** `reader`, calling `onActivity` whenever a read brings bytes. */
function reportingReads(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  onActivity: () => void,
): ReadableStreamDefaultReader<Uint8Array> {
  const read = reader.read.bind(reader);
  Reflect.defineProperty(reader, "read", {
    value: async () => {
      const result = await read();
      if (!result.done) onActivity();
      return result;
    },
  });
  return reader;
}

/** `base`, calling the request's activity hook (see `activityOptions`) for every piece of its response body. */
export function reportingActivity(base: typeof fetch): typeof fetch {
  return async (input, init) => {
    const onActivity = (init as ActivityInit | undefined)?.[ON_ACTIVITY];
    if (!onActivity) return base(input, init);
    // The hook is ours, not the network's.
    const plainInit: ActivityInit = { ...init };
    delete plainInit[ON_ACTIVITY];
    const response = await base(input, plainInit);
    const body = response.body;
    if (body) {
      const getReader = body.getReader.bind(body);
      Reflect.defineProperty(body, "getReader", { value: () => reportingReads(getReader(), onActivity) });
    }
    return response;
  };
}
