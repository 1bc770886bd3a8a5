/**
 * How long a connection may take to open, or a request wait for a free one in the pool. Without it a host that never
 * answers (a firewall dropping packets) held `serve` and every CLI command forever; with it they fail in one line, and
 * requests queued behind a full pool get 503 UNAVAILABLE instead of waiting without end.
 */
export const PG_CONNECT_TIMEOUT_MS = 10_000;
