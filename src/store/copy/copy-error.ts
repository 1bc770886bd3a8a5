/**
 * Why a copy did not happen, as a code and one sentence (printed by the CLI as `portrait: CODE: sentence`). Every
 * CopyError is raised before the target's transaction commits, so the target is as it was.
 */
export type CopyErrorCode =
  | "NO_STORE"
  | "STORE_IN_USE"
  | "UNKNOWN_SCHEMA_VERSION"
  | "INVALID_URL"
  | "CANNOT_CONNECT"
  | "TARGET_NOT_EMPTY"
  | "UNSTORABLE_ROW"
  | "COPY_FAILED"
  | "VERIFY_FAILED"
  | "INTERRUPTED";

export class CopyError extends Error {
  constructor(
    readonly code: CopyErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "CopyError";
  }
}
