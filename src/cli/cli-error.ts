/**
 * A refusal by the CLI itself, for a case the engine has no code for (an unknown `--account`): printed as
 * `portrait: CODE: message` like a PortraitError, exit code 1.
 */
export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "CliError";
  }
}
