/**
 * @module The provider SDKs' `fetch`, sent once more when the connection fails before any answer. A kept-alive
 * connection that the provider closes just as it is reused fails at once ("Network connection lost"); seen
 * here under load, when connections sat idle for seconds. The SDKs' own retries would cover it, but they are
 * off (a turn reports HTTP errors at once, see openai.ts). Only a thrown `fetch` (no HTTP answer at all) is
 * repeated, once, with a body that can be sent again, and never after the caller's abort or timeout.
 */

function canSendAgain(input: RequestInfo | URL, body: BodyInit | null | undefined): boolean {
  if (input instanceof Request) return false; // its body may be consumed
  return !(body instanceof ReadableStream);
}

export function fetchOnceMore(base: typeof fetch): typeof fetch {
  return async (input, init) => {
    try {
      return await base(input, init);
    } catch (error) {
      const aborted = init?.signal?.aborted || (error instanceof Error && error.name === "AbortError");
      if (aborted || !canSendAgain(input, init?.body)) throw error;
      return base(input, init);
    }
  };
}
