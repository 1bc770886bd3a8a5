/**
 * GET /v1/profiles/{id}/events as JSON text, written here rather than by JSON.stringify so that each event's
 * properties go out as the store keeps them (TimelineEvent), never parsed and serialised again. The fields and their
 * order are EventView's, as JSON.stringify of `Portrait.timeline` would write them (timeline-json.test.ts).
 */
import type { TimelineEventView, TimelineView } from "../pipeline/portrait.js";

// A string with nothing JSON escapes (quote, backslash, control characters, surrogates: a lone one is escaped) is
// written between quotes as it is: JSON.stringify costs ≈ 90 ns a string, and an event has six.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what JSON escapes
const ESCAPED = /["\\\u0000-\u001f\ud800-\udfff]/;
const text = (s: string | null): string => (s === null ? "null" : ESCAPED.test(s) ? JSON.stringify(s) : `"${s}"`);

export function timelineJson(page: TimelineView<TimelineEventView>): string {
  const events = page.events.map(
    (e) =>
      `{"id":${text(e.id)},"name":${text(e.name)},"ts":${text(e.ts)},"properties":${e.propertiesJson},` +
      `"anonymous":${e.anonymous},"profileId":${text(e.profileId)},"deviceId":${text(e.deviceId)},` +
      `"platform":${text(e.platform)}}`,
  );
  return `{"events":[${events.join(",")}],"nextCursor":${text(page.nextCursor)}}`;
}
