/** The server's pino logger: JSON lines at PORTRAIT_LOG_LEVEL, with keys redacted at every level. */
import pino, { type DestinationStream, type Logger } from "pino";

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    // Keys never reach the logs: the multipart plugin logs its request headers at trace.
    redact: {
      paths: ["req.headers.authorization", "headers.authorization", "busboyOptions.headers.authorization"],
      censor: "[redacted]",
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
