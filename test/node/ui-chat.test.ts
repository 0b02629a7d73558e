/**
 * The AI SDK route's user message as SINAS content: text, images, and files from data: URLs (base64 or
 * percent-encoded) or links, held to the rules `POST /chats/{id}/messages` applies.
 */
import { describe, expect, it } from "vitest";
import { messageContentOfUiMessages } from "../../workers/http/ui-chat";
import { AppError } from "../../workers/lib/errors";

const userMessage = (...parts: Record<string, unknown>[]) => [{ id: "m1", role: "user" as const, parts }];
const contentOf = (...parts: Record<string, unknown>[]) =>
  JSON.parse(messageContentOfUiMessages(userMessage(...parts) as never));

describe("UI message content", () => {
  it("keeps plain text as text", () => {
    expect(messageContentOfUiMessages(userMessage({ type: "text", text: "hi" }) as never)).toBe("hi");
  });

  it("stores a data: URL's bytes as base64, percent-encoded or not, with its media type", () => {
    const [plain, encoded, link] = contentOf(
      { type: "file", mediaType: "text/plain", url: "data:text/plain,hello%20you" },
      { type: "file", mediaType: "application/pdf", url: "data:application/pdf;name=a.pdf;base64,JVBERi0=" },
      { type: "file", mediaType: "application/pdf", url: "https://docs.example/a.pdf", filename: "a.pdf" },
    );
    expect(plain).toEqual({ type: "file", file_data: btoa("hello you"), mime_type: "text/plain" });
    expect(encoded).toEqual({ type: "file", file_data: "JVBERi0=", mime_type: "application/pdf" });
    expect(link).toMatchObject({ type: "file", file_url: "https://docs.example/a.pdf", filename: "a.pdf" });
    // No media type in the URL; bytes that are not UTF-8.
    const [untyped, binary] = contentOf(
      { type: "file", mediaType: "text/plain", url: "data:;base64,QUJD" },
      { type: "file", mediaType: "application/octet-stream", url: "data:application/octet-stream,%FF%00" },
    );
    expect(untyped).toMatchObject({ file_data: "QUJD" });
    expect(binary).toMatchObject({ file_data: "/wA=" });
  });

  it("refuses an image that is neither an http(s) nor a data:image URL, naming the field", () => {
    let error: unknown;
    try {
      contentOf({ type: "file", mediaType: "image/png", url: "file:///etc/passwd" });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe("VALIDATION_FAILED");
    expect(JSON.stringify((error as AppError).issues)).toContain("image");
  });
});
