/**
 * The §5.9 content conversion table, part by part and provider by provider, plus the Anthropic translation of
 * whole conversations (system, tool calls, tool results) and the request bodies both adapters build.
 */
import { describe, expect, it } from "vitest";
import {
  buildMessagesRequest,
  defaultMaxTokens,
  toAnthropicConversation,
  toFinishReason,
} from "../../workers/llm/anthropic";
import {
  defaultFilename,
  isBase64,
  parseDataUrl,
  textOf,
  toAnthropicBlocks,
  toOpenAiCompatibleParts,
} from "../../workers/llm/content";
import {
  buildChatRequest,
  isOpenAiReasoningModel,
  mistralToolCallId,
  openAiBaseUrl,
  ToolCallIndexer,
} from "../../workers/llm/openai";
import { providerTypeForModel } from "../../workers/llm/registry";
import type { ContentPart, LlmMessage, ToolDefinition } from "../../workers/llm/types";

const text: ContentPart = { type: "text", text: "Look" };
const httpsImage: ContentPart = { type: "image", image: "https://img.example/cat.png" };
const detailedImage: ContentPart = { type: "image", image: "https://img.example/cat.png", detail: "high" };
const dataImage: ContentPart = { type: "image", image: "data:image/png;base64,iVBORw0KGgo=" };
const audio: ContentPart = { type: "audio", data: "UklGRg==", format: "wav" };
const fileById: ContentPart = { type: "file", file_id: "file-123", file_data: "JVBERi0=" };
const fileByData: ContentPart = { type: "file", file_data: "JVBERi0=", filename: "a.pdf" };
const fileByUrl: ContentPart = { type: "file", file_url: "https://docs.example/a.pdf", filename: "a.pdf" };
const unknownPart = { type: "video", url: "https://v.example/x.mp4" } as unknown as ContentPart;

describe("universal content -> openai", () => {
  it("converts each part type per §5.9", () => {
    expect(
      toOpenAiCompatibleParts(
        [text, httpsImage, detailedImage, audio, fileById, fileByData, fileByUrl],
        "openai",
      ),
    ).toEqual([
      { type: "text", text: "Look" },
      { type: "image_url", image_url: { url: "https://img.example/cat.png", detail: "auto" } },
      { type: "image_url", image_url: { url: "https://img.example/cat.png", detail: "high" } },
      { type: "input_audio", input_audio: { data: "UklGRg==", format: "wav" } },
      { type: "file", file: { file_id: "file-123" } },
      // base64 becomes the data URL OpenAI requires
      { type: "file", file: { file_data: "data:application/pdf;base64,JVBERi0=", filename: "a.pdf" } },
      // a file_url-only part is not taken: a note says so
      { type: "text", text: "[file 'a.pdf' omitted: openai does not accept it in this form]" },
    ]);
    const wordDoc: ContentPart = {
      type: "file",
      file_data: "data:application/msword;base64,0M8R",
      mime_type: "x",
    };
    expect(toOpenAiCompatibleParts([wordDoc], "openai")).toEqual([
      { type: "file", file: { file_data: "data:application/msword;base64,0M8R", filename: "file.doc" } },
    ]);
  });

  it("never leaves a message empty: a message of parts the provider cannot take is all notes", () => {
    for (const provider of ["openai", "mistral", "ollama"]) {
      const parts = toOpenAiCompatibleParts([{ type: "file", file_url: "https://d/x" }, audio], provider);
      expect(parts.length, provider).toBe(2);
    }
    expect(toOpenAiCompatibleParts([audio], "ollama")).toEqual([
      { type: "text", text: "[audio omitted: ollama does not accept it in this form]" },
    ]);
  });

  it("passes unknown part types through, and is case-insensitive on the provider type", () => {
    expect(toOpenAiCompatibleParts([unknownPart, text], "OpenAI")).toEqual([unknownPart, text]);
  });

  it("passes the whole array through for an unknown provider type", () => {
    const parts = [httpsImage, audio];
    expect(toOpenAiCompatibleParts(parts, "gemini")).toEqual(parts);
  });
});

describe("universal content -> mistral and ollama", () => {
  it("mistral: image urls as strings, audio as bare base64, documents by url only", () => {
    expect(toOpenAiCompatibleParts([text, detailedImage, audio, fileById, fileByUrl], "mistral")).toEqual([
      { type: "text", text: "Look" },
      { type: "image_url", image_url: "https://img.example/cat.png" },
      { type: "input_audio", input_audio: "UklGRg==" },
      { type: "text", text: "[file omitted: mistral does not accept it in this form]" },
      { type: "document_url", document_url: "https://docs.example/a.pdf", document_name: "a.pdf" },
    ]);
    expect(toOpenAiCompatibleParts([{ type: "file", file_url: "https://d/x" }], "mistral")).toEqual([
      { type: "document_url", document_url: "https://d/x", document_name: null },
    ]);
  });

  it("ollama: an image by URL becomes a note (it takes base64 images only)", () => {
    expect(toOpenAiCompatibleParts([httpsImage], "ollama")).toEqual([
      { type: "text", text: "[image omitted: ollama does not accept it in this form]" },
    ]);
  });

  it("ollama: text and images only", () => {
    expect(
      toOpenAiCompatibleParts([text, dataImage, audio, fileByData, fileByUrl, unknownPart], "ollama"),
    ).toEqual([
      { type: "text", text: "Look" },
      { type: "image_url", image_url: "data:image/png;base64,iVBORw0KGgo=" },
      { type: "text", text: "[audio omitted: ollama does not accept it in this form]" },
      { type: "text", text: "[file 'a.pdf' omitted: ollama does not accept it in this form]" },
      { type: "text", text: "[file 'a.pdf' omitted: ollama does not accept it in this form]" },
      unknownPart,
    ]);
  });
});

describe("universal content -> anthropic blocks", () => {
  it("images by base64 (data: URL) or url; documents from files; audio and file ids noted", () => {
    const plainText: ContentPart = {
      type: "file",
      file_data: btoa("hello notes"),
      mime_type: "text/plain",
      filename: "notes.txt",
    };
    expect(
      toAnthropicBlocks([text, dataImage, httpsImage, audio, fileByData, fileByUrl, plainText, unknownPart]),
    ).toEqual([
      { type: "text", text: "Look" },
      { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } },
      { type: "image", source: { type: "url", url: "https://img.example/cat.png" } },
      { type: "text", text: "[audio omitted: anthropic does not accept it in this form]" },
      {
        type: "document",
        source: { type: "base64", media_type: "application/pdf", data: "JVBERi0=" },
        title: "a.pdf",
      },
      { type: "document", source: { type: "url", url: "https://docs.example/a.pdf" }, title: "a.pdf" },
      {
        type: "document",
        source: { type: "text", media_type: "text/plain", data: "hello notes" },
        title: "notes.txt",
      },
      unknownPart,
    ]);
    expect(toAnthropicBlocks([{ type: "file", file_id: "file-1" }])).toEqual([
      { type: "text", text: "[file omitted: anthropic does not accept it in this form]" },
    ]);
    // A data URL's media type counts; a file Anthropic cannot read (not PDF, not text) is noted, not sent.
    expect(toAnthropicBlocks([{ type: "file", file_data: "data:application/pdf;base64,JVBERi0=" }])).toEqual([
      { type: "document", source: { type: "base64", media_type: "application/pdf", data: "JVBERi0=" } },
    ]);
    expect(
      toAnthropicBlocks([
        { type: "file", file_data: "0M8R", mime_type: "application/msword", filename: "a.doc" },
      ]),
    ).toEqual([{ type: "text", text: "[file 'a.doc' omitted: anthropic does not accept it in this form]" }]);
  });

  it("parses data URLs with parameters", () => {
    expect(parseDataUrl("data:image/jpeg;name=x.jpg;base64,/9j/4AAQ")).toEqual({
      mediaType: "image/jpeg",
      data: "/9j/4AAQ",
    });
    expect(parseDataUrl("https://x/y.png")).toBeNull();
    // `;base64` is case-insensitive (RFC 2397); what goes to a provider is rebuilt in the usual form.
    expect(parseDataUrl("data:image/PNG;BASE64,iVBORw0KGgo=")).toEqual({
      mediaType: "image/PNG",
      data: "iVBORw0KGgo=",
    });
    const shouted: ContentPart = { type: "image", image: "data:image/PNG;BASE64,iVBORw0KGgo=" };
    expect(toOpenAiCompatibleParts([shouted], "openai")).toEqual([
      { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=", detail: "auto" } },
    ]);
    expect(toOpenAiCompatibleParts([shouted], "mistral")).toEqual([
      { type: "image_url", image_url: "data:image/png;base64,iVBORw0KGgo=" },
    ]);
  });

  it("textOf joins text parts and ignores the rest", () => {
    expect(textOf([text, httpsImage, { type: "text", text: "again" }])).toBe("Look\n\nagain");
    expect(textOf(null)).toBe("");
    expect(textOf("plain")).toBe("plain");
  });
});

/**
 * A stored user message goes to the model again on every later turn: a part the provider refuses (400) would fail
 * each of them for good. Every such part must reach it as a note instead.
 */
describe("parts a provider would refuse become notes, never a failed turn", () => {
  const note = (part: string, provider: string) => ({
    type: "text",
    text: `[${part} omitted: ${provider} does not accept it in this form]`,
  });

  it("openai: a file without a filename gets one from its media type (OpenAI refuses file_data without it)", () => {
    const files: ContentPart[] = [
      { type: "file", file_data: "JVBERi0=" },
      { type: "file", file_data: btoa("notes"), mime_type: "text/plain" },
      { type: "file", file_data: "data:text/markdown;base64,IyBU" },
      {
        type: "file",
        file_data: "UEsDBA==",
        mime_type: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
      },
      { type: "file", file_data: "UEsDBA==", mime_type: "" },
    ];
    expect(toOpenAiCompatibleParts(files, "openai")).toEqual([
      { type: "file", file: { file_data: "data:application/pdf;base64,JVBERi0=", filename: "file.pdf" } },
      { type: "file", file: { file_data: `data:text/plain;base64,${btoa("notes")}`, filename: "file.txt" } },
      { type: "file", file: { file_data: "data:text/markdown;base64,IyBU", filename: "file.md" } },
      {
        type: "file",
        file: {
          file_data:
            "data:application/vnd.openxmlformats-officedocument.wordprocessingml.document;base64,UEsDBA==",
          filename: "file.docx",
        },
      },
      // an empty media type (a browser's for an unknown file) counts as none
      { type: "file", file: { file_data: "data:application/pdf;base64,UEsDBA==", filename: "file.pdf" } },
    ]);
    expect(defaultFilename("text/plain; charset=utf-8")).toBe("file.txt");
    expect(defaultFilename("text/x-python")).toBe("file.txt");
    expect(defaultFilename("application/zip")).toBe("file.zip");
    expect(defaultFilename("application/x-whatever-this-is")).toBe("file.bin");
  });

  it("openai: audio in formats other than wav and mp3 becomes a note", () => {
    const formats = ["wav", "mp3", "m4a", "ogg"] as const;
    expect(
      toOpenAiCompatibleParts(
        formats.map((format) => ({ type: "audio", data: "UklGRg==", format })),
        "openai",
      ),
    ).toEqual([
      { type: "input_audio", input_audio: { data: "UklGRg==", format: "wav" } },
      { type: "input_audio", input_audio: { data: "UklGRg==", format: "mp3" } },
      note("audio", "openai"),
      note("audio", "openai"),
    ]);
    // Mistral takes them (its input_audio carries no format).
    expect(toOpenAiCompatibleParts([{ type: "audio", data: "UklGRg==", format: "m4a" }], "mistral")).toEqual([
      { type: "input_audio", input_audio: "UklGRg==" },
    ]);
  });

  it("anthropic: a text file whose data is not base64 becomes a note instead of throwing", () => {
    const broken: ContentPart = {
      type: "file",
      file_data: "plain text, not base64!",
      mime_type: "text/plain",
      filename: "n.txt",
    };
    expect(toAnthropicBlocks([broken])).toEqual([note("file 'n.txt'", "anthropic")]);
    expect(toAnthropicBlocks([{ type: "file", file_data: "data:text/plain,hello" }])).toEqual([
      note("file", "anthropic"),
    ]);
  });

  it("data stored before the API checked base64 becomes a note for every provider", () => {
    const badFile: ContentPart = { type: "file", file_data: "not base64 at all", filename: "x.pdf" };
    const badDataUrl: ContentPart = {
      type: "file",
      file_data: "data:application/pdf,%25PDF",
      filename: "x.pdf",
    };
    const badAudio: ContentPart = { type: "audio", data: "%%%", format: "wav" };
    const badImage: ContentPart = { type: "image", image: "data:image/png;base64,iVBOR w0K!" };
    for (const provider of ["openai", "mistral", "ollama"]) {
      expect(toOpenAiCompatibleParts([badFile, badDataUrl, badAudio, badImage], provider), provider).toEqual([
        note("file 'x.pdf'", provider),
        note("file 'x.pdf'", provider),
        note("audio", provider),
        note("image", provider),
      ]);
    }
    expect(toAnthropicBlocks([badFile, badDataUrl, badImage])).toEqual([
      note("file 'x.pdf'", "anthropic"),
      note("file 'x.pdf'", "anthropic"),
      note("image", "anthropic"),
    ]);
    // Base64 with line breaks (MIME style), which decoders take, is sent as before.
    expect(
      toOpenAiCompatibleParts([{ type: "file", file_data: "JVBE\nRi0=", filename: "a.pdf" }], "openai"),
    ).toEqual([
      { type: "file", file: { file_data: "data:application/pdf;base64,JVBE\nRi0=", filename: "a.pdf" } },
    ]);
  });

  it("an inline image of a type the provider does not take becomes a note", () => {
    const svg: ContentPart = { type: "image", image: "data:image/svg+xml;base64,PHN2Zz4=" };
    const gif: ContentPart = { type: "image", image: "data:image/gif;base64,R0lGOA==" };
    const jpg: ContentPart = { type: "image", image: "data:image/jpg;base64,/9j/4A==" };
    const upperPng: ContentPart = { type: "image", image: "data:IMAGE/PNG;base64,iVBORw0KGgo=" };
    expect(toOpenAiCompatibleParts([svg, gif], "openai")).toEqual([
      note("image", "openai"),
      { type: "image_url", image_url: { url: "data:image/gif;base64,R0lGOA==", detail: "auto" } },
    ]);
    expect(toOpenAiCompatibleParts([svg, gif], "mistral")).toEqual([
      note("image", "mistral"),
      { type: "image_url", image_url: "data:image/gif;base64,R0lGOA==" },
    ]);
    // Ollama takes jpeg, jpg, png and webp, matching the data URL's prefix exactly.
    expect(toOpenAiCompatibleParts([svg, gif, jpg, upperPng], "ollama")).toEqual([
      note("image", "ollama"),
      note("image", "ollama"),
      { type: "image_url", image_url: "data:image/jpg;base64,/9j/4A==" },
      { type: "image_url", image_url: "data:image/png;base64,iVBORw0KGgo=" },
    ]);
    // Anthropic names JPEG image/jpeg only.
    expect(toAnthropicBlocks([svg, jpg])).toEqual([
      note("image", "anthropic"),
      { type: "image", source: { type: "base64", media_type: "image/jpeg", data: "/9j/4A==" } },
    ]);
  });

  it("isBase64 takes standard padded base64 only, as the API requires", () => {
    for (const good of ["JVBERi0=", "UklGRg==", "/9j/4AAQ", "ab+/"])
      expect([good, isBase64(good)]).toEqual([good, true]);
    for (const bad of [
      "",
      "JVBERi0",
      "JVBE\nRi0=",
      "ab-_",
      "a===",
      "====",
      "not base64!",
      "data:x;base64,AAAA",
    ]) {
      expect([bad, isBase64(bad)]).toEqual([bad, false]);
    }
  });
});

const addTool: ToolDefinition = {
  type: "function",
  function: {
    name: "default__add",
    description: "Execute default/add",
    parameters: { type: "object", properties: { a: { type: "number" } }, required: ["a"] },
  },
};

const conversation: LlmMessage[] = [
  { role: "system", content: "You help ACME." },
  { role: "system", content: "## Stored Context" },
  { role: "user", content: [text, dataImage] },
  {
    role: "assistant",
    content: null,
    tool_calls: [
      { id: "call_1", type: "function", function: { name: "default__add", arguments: '{"a":1}' }, index: 0 },
      { id: "call_2", type: "function", function: { name: "default__add", arguments: "" }, index: 1 },
    ],
  },
  { role: "tool", tool_call_id: "call_1", name: "default__add", content: '{"sum":1}' },
  { role: "tool", tool_call_id: "call_2", name: "default__add", content: '{"error":"bad"}' },
  { role: "assistant", content: "" },
  { role: "assistant", content: "Done", tool_calls: [] },
  { role: "user", content: "thanks" },
];

describe("anthropic conversation", () => {
  it("moves system text to `system`, tool calls to tool_use, merges consecutive tool results", () => {
    const { system, messages } = toAnthropicConversation(conversation);
    expect(system).toBe("You help ACME.\n\n## Stored Context");
    expect(messages).toEqual([
      {
        role: "user",
        content: [
          { type: "text", text: "Look" },
          { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } },
        ],
      },
      {
        role: "assistant",
        content: [
          { type: "tool_use", id: "call_1", name: "default__add", input: { a: 1 } },
          { type: "tool_use", id: "call_2", name: "default__add", input: {} },
        ],
      },
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: "call_1", content: '{"sum":1}' },
          { type: "tool_result", tool_use_id: "call_2", content: '{"error":"bad"}' },
        ],
      },
      // the empty assistant turn is left out
      { role: "assistant", content: "Done" },
      { role: "user", content: "thanks" },
    ]);
  });

  it("keeps assistant text beside its tool calls", () => {
    const { messages } = toAnthropicConversation([
      {
        role: "assistant",
        content: "Let me add.",
        tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "not json" } }],
      },
    ]);
    expect(messages[0]).toEqual({
      role: "assistant",
      content: [
        { type: "text", text: "Let me add." },
        { type: "tool_use", id: "c", name: "f", input: { arguments: "not json" } },
      ],
    });
  });

  it("builds the request: max_tokens default 4096, tools as input_schema, temperature 0 kept", () => {
    const body = buildMessagesRequest({
      model: "claude-x",
      messages: [{ role: "user", content: "hi" }],
      tools: [addTool],
      temperature: 0,
      maxTokens: null,
      responseFormat: { type: "json_object" },
    });
    expect(body).toEqual({
      model: "claude-x",
      max_tokens: 4096,
      messages: [{ role: "user", content: "hi" }],
      temperature: 0,
      tools: [
        {
          name: "default__add",
          description: "Execute default/add",
          input_schema: addTool.function.parameters,
        },
      ],
    });
    const bare = buildMessagesRequest({
      model: "m",
      messages: [],
      tools: [],
      temperature: null,
      maxTokens: 10,
    });
    expect(bare).toEqual({ model: "m", max_tokens: 10, messages: [] });
  });

  it("writes tool calls and results as text when the request offers no tools (Anthropic refuses the blocks then)", () => {
    const body = buildMessagesRequest({
      model: "m",
      messages: conversation,
      tools: undefined,
      temperature: 1.5,
      maxTokens: null,
    });
    expect((body as { temperature?: number }).temperature).toBe(1);
    expect(JSON.stringify(body.messages)).not.toMatch(/tool_use|tool_result/);
    expect(body.messages.slice(1, 4)).toEqual([
      {
        role: "assistant",
        content: '[called default__add({"a":1})]\n[called default__add()]',
      },
      { role: "user", content: '[result of default__add (call_1): {"sum":1}]' },
      { role: "user", content: '[result of default__add (call_2): {"error":"bad"}]' },
    ]);
  });

  it("raises the default max_tokens to 8192 only for models known to take it (Claude 3.5 and later)", () => {
    for (const model of [
      "claude-3-5-sonnet-20241022",
      "claude-3-5-haiku-latest",
      "claude-3-7-sonnet-20250219",
      "claude-sonnet-4-5",
      "claude-opus-4-1-20250805",
      "claude-haiku-4-5",
      "anthropic.claude-3-5-sonnet-20240620-v1:0",
    ]) {
      expect([model, defaultMaxTokens(model)]).toEqual([model, 8192]);
    }
    // Claude 3 models refuse more than 4096 output tokens; unknown names get the safe value.
    for (const model of ["claude-3-haiku-20240307", "claude-3-opus-latest", "claude-2.1", "fake-model"]) {
      expect([model, defaultMaxTokens(model)]).toEqual([model, 4096]);
    }
    const request = { messages: [], temperature: null, maxTokens: null };
    expect(buildMessagesRequest({ ...request, model: "claude-sonnet-4-5" }).max_tokens).toBe(8192);
    expect(buildMessagesRequest({ ...request, model: "claude-3-haiku-20240307" }).max_tokens).toBe(4096);
    expect(buildMessagesRequest({ ...request, model: "claude-sonnet-4-5", maxTokens: 100 }).max_tokens).toBe(
      100,
    );
  });

  it("maps stop reasons", () => {
    expect(toFinishReason("end_turn")).toBe("stop");
    expect(toFinishReason("tool_use")).toBe("tool_calls");
    expect(toFinishReason("max_tokens")).toBe("length");
    expect(toFinishReason("refusal")).toBe("refusal");
    expect(toFinishReason(null)).toBeNull();
  });
});

describe("openai-compatible request", () => {
  it("sends optional fields only when set and strips stored tool-call indexes", () => {
    const body = buildChatRequest(
      { model: "m", messages: conversation.slice(2, 5), temperature: 0, maxTokens: 50, tools: [addTool] },
      "mistral",
    );
    expect(body).toMatchObject({
      model: "m",
      temperature: 0,
      max_tokens: 50,
      tool_choice: "auto",
      tools: [addTool],
    });
    expect(body.messages).toEqual([
      {
        role: "user",
        content: [
          { type: "text", text: "Look" },
          { type: "image_url", image_url: "data:image/png;base64,iVBORw0KGgo=" },
        ],
      },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          {
            id: mistralToolCallId("call_1"),
            type: "function",
            function: { name: "default__add", arguments: '{"a":1}' },
          },
          {
            id: mistralToolCallId("call_2"),
            type: "function",
            function: { name: "default__add", arguments: "" },
          },
        ],
      },
      { role: "tool", content: '{"sum":1}', tool_call_id: mistralToolCallId("call_1"), name: "default__add" },
    ]);
    const bare = buildChatRequest(
      { model: "m", messages: [], tools: [], temperature: null, maxTokens: null },
      "openai",
    );
    expect(bare).toEqual({ model: "m", messages: [] });
    const formatted = buildChatRequest(
      {
        model: "m",
        messages: [],
        temperature: null,
        maxTokens: null,
        responseFormat: { type: "json_object" },
      },
      "openai",
    );
    expect(formatted).toEqual({ model: "m", messages: [], response_format: { type: "json_object" } });
  });

  it("sends OpenAI the limit as max_completion_tokens; Mistral and Ollama as max_tokens", () => {
    const limited = { model: "gpt-4o", messages: [], temperature: 0.3, maxTokens: 99 };
    expect(buildChatRequest(limited, "openai")).toEqual({
      model: "gpt-4o",
      messages: [],
      temperature: 0.3,
      max_completion_tokens: 99,
    });
    for (const type of ["mistral", "ollama"] as const) {
      expect(buildChatRequest(limited, type)).toEqual({
        model: "gpt-4o",
        messages: [],
        temperature: 0.3,
        max_tokens: 99,
      });
    }
  });

  it("sends no temperature to OpenAI's reasoning models, which take only their default", () => {
    for (const model of [
      "o1",
      "o1-mini",
      "o3-mini",
      "o4-mini-2025-04-16",
      "gpt-5",
      "gpt-5-mini",
      "GPT-5.1",
    ]) {
      expect([model, isOpenAiReasoningModel(model)]).toEqual([model, true]);
      const body = buildChatRequest({ model, messages: [], temperature: 0.2, maxTokens: 500 }, "openai");
      expect(body).toEqual({ model, messages: [], max_completion_tokens: 500 });
    }
    for (const model of ["gpt-4o", "gpt-4.1-mini", "omni-moderation", "fake-model"]) {
      expect([model, isOpenAiReasoningModel(model)]).toEqual([model, false]);
      expect(buildChatRequest({ model, messages: [], temperature: 0, maxTokens: null }, "openai")).toEqual({
        model,
        messages: [],
        temperature: 0,
      });
    }
    // The rule is OpenAI's: other types keep the agent's temperature whatever the model is called.
    expect(
      buildChatRequest({ model: "o3-mini", messages: [], temperature: 0.2, maxTokens: null }, "ollama")
        .temperature,
    ).toBe(0.2);
  });

  it("gives Mistral 9-character alphanumeric tool-call ids, the same for a call and its result", () => {
    const foreign = ["call_abc123XYZ", "toolu_01A09q90qw90lq917835lq9", "call_0", "a-b-c-d-e"];
    const messages: LlmMessage[] = foreign.flatMap((id): LlmMessage[] => [
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id, type: "function", function: { name: "f", arguments: "{}" } }],
      },
      { role: "tool", tool_call_id: id, name: "f", content: "ok" },
    ]);
    const wire = buildChatRequest({ model: "m", messages, temperature: null, maxTokens: null }, "mistral")
      .messages as unknown as { tool_calls?: { id: string }[]; tool_call_id?: string }[];
    const callIds = wire.flatMap((message) => message.tool_calls?.map((call) => call.id) ?? []);
    const resultIds = wire.flatMap((message) => message.tool_call_id ?? []);
    expect(callIds).toHaveLength(foreign.length);
    for (const id of callIds) expect(id).toMatch(/^[A-Za-z0-9]{9}$/);
    expect(resultIds).toEqual(callIds);
    expect(new Set(callIds).size).toBe(foreign.length);
    // Stable: the same stored id maps to the same wire id in every request.
    expect(mistralToolCallId("call_abc123XYZ")).toBe(callIds[0]);
    // Ids Mistral made itself go back unchanged; other types get every id as stored.
    expect(mistralToolCallId("D681PevKs")).toBe("D681PevKs");
    const openAiWire = buildChatRequest(
      { model: "m", messages, temperature: null, maxTokens: null },
      "openai",
    ).messages as unknown as { tool_call_id?: string }[];
    expect(openAiWire.flatMap((message) => message.tool_call_id ?? [])).toEqual(foreign);
  });

  it("bridges a tool result and a user message with an assistant message for Mistral only", () => {
    const turns: LlmMessage[] = [...conversation.slice(2, 6), { role: "user", content: "next" }];
    const roles = (type: "openai" | "mistral") =>
      buildChatRequest(
        { model: "m", messages: turns, temperature: null, maxTokens: null },
        type,
      ).messages.map((message) => message.role);
    expect(roles("mistral")).toEqual(["user", "assistant", "tool", "tool", "assistant", "user"]);
    expect(roles("openai")).toEqual(["user", "assistant", "tool", "tool", "user"]);
  });

  it("picks base URLs per type, appending /v1 to an Ollama root", () => {
    expect(openAiBaseUrl("openai", null)).toBe("https://api.openai.com/v1");
    expect(openAiBaseUrl("mistral", "")).toBe("https://api.mistral.ai/v1");
    expect(openAiBaseUrl("ollama", null)).toBe("http://localhost:11434/v1");
    expect(openAiBaseUrl("ollama", "http://gpu:11434/")).toBe("http://gpu:11434/v1");
    expect(openAiBaseUrl("ollama", "http://gpu:11434/v1")).toBe("http://gpu:11434/v1");
    expect(openAiBaseUrl("openai", "http://127.0.0.1:9/v1/")).toBe("http://127.0.0.1:9/v1");
  });

  it("indexes tool calls that come without an index as separate calls (D-31)", () => {
    const indexer = new ToolCallIndexer();
    // OpenAI: indexed fragments
    expect(indexer.indexOf({ index: 0, id: "a" })).toBe(0);
    expect(indexer.indexOf({ index: 0 })).toBe(0);
    expect(indexer.indexOf({ index: 1, id: "b" })).toBe(1);
    // Mistral: whole calls without index
    const mistral = new ToolCallIndexer();
    expect(mistral.indexOf({ id: "x" })).toBe(0);
    expect(mistral.indexOf({ id: "y" })).toBe(1);
    expect(mistral.indexOf({})).toBe(1);
  });

  it("gives a call reusing a wire index with a new id an index of its own (Ollama)", () => {
    const ollama = new ToolCallIndexer();
    expect(ollama.indexOf({ index: 0, id: "call_a" })).toBe(0);
    expect(ollama.indexOf({ index: 0, id: "call_a" })).toBe(0); // the same id repeated is the same call
    expect(ollama.indexOf({ index: 0, id: "call_b" })).toBe(1);
    expect(ollama.indexOf({ index: 0 })).toBe(1); // a fragment without id continues the call now at index 0
    expect(ollama.indexOf({ index: 1, id: "call_c" })).toBe(2);
    expect(ollama.indexOf({ index: 0, id: "call_d" })).toBe(3);
    expect(ollama.indexOf({ index: 1 })).toBe(2);
  });
});

describe("provider type by model name (§5.10)", () => {
  it("detects the documented prefixes", () => {
    expect(providerTypeForModel("gpt-4o")).toBe("openai");
    expect(providerTypeForModel("o1-mini")).toBe("openai");
    expect(providerTypeForModel("mistral-large")).toBe("mistral");
    expect(providerTypeForModel("pixtral-12b")).toBe("mistral");
    expect(providerTypeForModel("codestral-latest")).toBe("mistral");
    expect(providerTypeForModel("library/llama3")).toBe("ollama");
    expect(providerTypeForModel("llama")).toBe("ollama");
    expect(providerTypeForModel("claude-sonnet-4-5")).toBe("anthropic");
    expect(providerTypeForModel("fake-model")).toBeNull();
  });
});
