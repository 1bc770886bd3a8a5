/**
 * Request logs. Off at `info` for every request (at ingest rates the lines would cost more than the requests, and
 * metrics carry latency), but a request slower than SLOW_MS is logged at `info`, and `PORTRAIT_LOG_LEVEL=debug` logs
 * every request. Keys never appear: a `key` in the query string (public keys travel there, and a secret key sent
 * there by mistake is refused but must not be logged either) is redacted.
 */
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";

/** A request slower than this is logged at info whatever the level allows for the others. */
export const SLOW_MS = 1000;

/**
 * The URL as it may be logged: the value of every parameter the server reads as `key` redacted, whatever its case
 * or %-escapes (`k%65y` is `key` to the query parser), the rest as sent.
 */
export function loggableUrl(url: string): string {
  const q = url.indexOf("?");
  if (q < 0) return url;
  const params = url
    .slice(q + 1)
    .split("&")
    .map((param) => {
      const eq = param.indexOf("=");
      const name = eq < 0 ? param : param.slice(0, eq);
      return decodedName(name).toLowerCase() === "key" ? `${name}=[redacted]` : param;
    });
  return `${url.slice(0, q)}?${params.join("&")}`;
}

function decodedName(name: string): string {
  try {
    return decodeURIComponent(name.replaceAll("+", " "));
  } catch {
    return name;
  }
}

export function requestLog(slowMs = SLOW_MS) {
  return fp(async (app: FastifyInstance) => {
    const everyRequest = app.log.level === "debug" || app.log.level === "trace";
    app.addHook("onResponse", async (request, reply) => {
      const ms = reply.elapsedTime;
      const slow = ms >= slowMs;
      if (!slow && !everyRequest) return;
      const line = {
        method: request.method,
        url: loggableUrl(request.url),
        status: reply.statusCode,
        ms: Math.round(ms * 10) / 10,
        account: request.account?.id ?? null,
      };
      if (slow) request.log.info(line, "slow request");
      else request.log.debug(line, "request");
    });
  });
}
