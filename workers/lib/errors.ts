/**
 * @module The one error type of the API and its one JSON shape.
 *
 * Services and routers throw `AppError` with a code from a closed set; `app.onError` is the only place that
 * turns it into a response. The body keeps SINAS's `detail` field (a string, or a FastAPI-style list of
 * field issues for 422) and adds a stable `code`, a readable `message` and the `request_id`.
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";

/** Stable error codes and the HTTP status each maps to. Clients switch on `code`, never on `message`. */
export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  /** A request body that is not JSON (by its Content-Type) where the route reads JSON. */
  UNSUPPORTED_MEDIA_TYPE: 415,
  VALIDATION_FAILED: 422,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  /** The user's function failed (its error is the message); the execution id is in the body. */
  FUNCTION_FAILED: 500,
  /** The LLM provider failed (SINAS answers 500 for it, sinas-spec §1.2); the message says which and why. */
  PROVIDER_ERROR: 500,
  BAD_GATEWAY: 502,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
} as const satisfies Record<string, ContentfulStatusCode>;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** One field problem, FastAPI style: `loc` is the path, e.g. `["body", "email"]`. */
export interface FieldIssue {
  loc: (string | number)[];
  msg: string;
  type: string;
}

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  detail: string | FieldIssue[];
  request_id: string | null;
}

export class AppError extends Error {
  override readonly name = "AppError";
  readonly code: ErrorCode;
  readonly issues: FieldIssue[] | undefined;
  readonly headers: Record<string, string> | undefined;
  /** Extra fields of the body, e.g. the `execution_id` of a failed run. */
  readonly extra: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: {
      issues?: FieldIssue[];
      headers?: Record<string, string>;
      extra?: Record<string, unknown>;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: options.cause });
    this.code = code;
    this.issues = options.issues;
    this.headers = options.headers;
    this.extra = options.extra;
  }

  get status(): ContentfulStatusCode {
    return ERROR_STATUS[this.code];
  }

  toBody(requestId: string | null): ErrorBody {
    return {
      ...this.extra,
      code: this.code,
      message: this.message,
      detail: this.issues ?? this.message,
      request_id: requestId,
    };
  }
}

/** Builds the 422 for a list of field issues; the message names every field so a human sees them at once. */
export function validationError(issues: FieldIssue[]): AppError {
  const message = issues.map((issue) => `${issue.loc.join(".")}: ${issue.msg}`).join("; ");
  return new AppError("VALIDATION_FAILED", message || "Validation failed", { issues });
}

/** The message of anything thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
