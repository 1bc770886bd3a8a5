/**
 * The one error type of Portrait. Every refusal carries a stable code (API.md), a sentence that names the field
 * and the problem, and the JSON path of the field at fault when there is one. The HTTP layer maps it to a status
 * in one place (api/errors.ts).
 */
export type ErrorCode =
  | "UNAUTHORIZED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "INVALID_JSON"
  | "INVALID_BODY"
  | "PAYLOAD_TOO_LARGE"
  | "HEADERS_TOO_LARGE"
  | "INVALID_REQUEST"
  | "UNSUPPORTED_MEDIA_TYPE"
  | "UNKNOWN_PROFILE"
  | "UNKNOWN_SEGMENT"
  | "UNKNOWN_IMPORT"
  | "UNKNOWN_MERGE"
  | "UNKNOWN_KEY"
  | "UNKNOWN_DOCUMENT"
  | "BATCH_TOO_LARGE"
  | "INVALID_BATCH"
  | "INVALID_RECORD"
  | "MISSING_HANDLE"
  | "MISSING_IDENTITY"
  | "INVALID_EMAIL"
  | "INVALID_PHONE"
  | "INVALID_GENDER"
  | "INVALID_DATE"
  | "INVALID_TIMEZONE"
  | "AGE_IS_DERIVED"
  | "INVALID_KEY"
  | "VALUE_TOO_LONG"
  | "TOO_MANY_PROPERTIES"
  | "TOO_MANY_VALUES"
  | "NESTING_TOO_DEEP"
  | "TYPE_MISMATCH"
  | "INVALID_OPERATION"
  | "IDENTITY_CONFLICT"
  | "INVALID_EVENT_NAME"
  | "RESERVED_EVENT_NAME"
  | "INVALID_TIMESTAMP"
  | "INVALID_HANDLE"
  | "MULTIPLE_HANDLES"
  | "INVALID_IDENTITY"
  | "HANDLE_NOT_ALLOWED"
  | "DOCUMENT_TOO_LARGE"
  | "INVALID_DOCUMENT"
  | "INVALID_VALUE"
  | "INVALID_MERGE"
  | "MERGE_NOT_UNDOABLE"
  | "ALREADY_UNDONE"
  | "CONTROL_GROUP_EXCLUSION_LIMIT"
  | "INVALID_SETTING"
  | "IDENTITY_KEY_CONFLICT"
  | "INVALID_SEGMENT"
  | "SEGMENT_IN_USE"
  | "UNAVAILABLE";

export class PortraitError extends Error {
  readonly code: ErrorCode;
  readonly field: string | undefined;

  constructor(code: ErrorCode, message: string, field?: string) {
    super(message);
    this.name = "PortraitError";
    this.code = code;
    this.field = field;
  }

  /** The same error seen from one level further out, e.g. `properties.Email` inside `records[3]`. */
  under(prefix: string): PortraitError {
    const field =
      this.field === undefined ? prefix : this.field.startsWith("[") ? prefix + this.field : `${prefix}.${this.field}`;
    return new PortraitError(this.code, this.message, field);
  }
}

export function fail(code: ErrorCode, message: string, field?: string): never {
  throw new PortraitError(code, message, field);
}

/** Quotes a value for an error sentence without ever echoing more than a short prefix of hostile input. */
export function show(value: unknown): string {
  let text: string;
  try {
    text = typeof value === "string" ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  } catch {
    // Too deep for JSON.stringify (a stack overflow); String() of an array recurses as deep, so it is not tried.
    text = Array.isArray(value) ? "[…]" : typeof value === "object" && value !== null ? "{…}" : String(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
