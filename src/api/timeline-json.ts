/**
 * GET /v1/profiles/{id}/events as JSON text, written here rather than by JSON.stringify so that each event's
 * properties go out as the store keeps them (TimelineEvent), never parsed and serialised again. The fields and their
 * order are EventView's, as JSON.stringify of `Portrait.timeline` would write them (timeline-json.test.ts).
 */
import type { TimelineEventView, TimelineView } from "../pipeline/portrait.js";

const text = (s: string | null): string => JSON.stringify(s);

export function timelineJson(page: TimelineView<TimelineEventView>): string {
  const events = page.events.map(
    (e) =>
      `{"id":${text(e.id)},"name":${text(e.name)},"ts":${text(e.ts)},"properties":${e.propertiesJson},` +
      `"anonymous":${e.anonymous},"profileId":${text(e.profileId)},"deviceId":${text(e.deviceId)},` +
      `"platform":${text(e.platform)}}`,
  );
  return `{"events":[${events.join(",")}],"nextCursor":${text(page.nextCursor)}}`;
}
