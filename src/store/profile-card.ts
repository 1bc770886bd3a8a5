/**
 * The profile page's reads (StoreReader.getProfileCard and timelinePage) composed from the port's single reads.
 * PostgreSQL answers both in one statement outside a transaction and composes them inside one, where its own reads see
 * the rows it writes behind. SQLite answers a card in one statement too (five in-process reads cost five statement
 * runs: 37% of B5's busy server) and reads a timeline page's properties as text itself.
 */
import type { PageOptions, ProfileCard, ProfileLookup, StoreReader, TimelinePage } from "./store.js";

export async function composeProfileCard(
  reader: StoreReader,
  accountId: string,
  lookup: ProfileLookup,
): Promise<ProfileCard | null> {
  const profileId =
    "profileId" in lookup
      ? lookup.profileId
      : await reader.findProfileByIdentity(accountId, lookup.identity.key, lookup.identity.value);
  if (profileId === null) return null;
  const state = await reader.getProfile(accountId, profileId);
  if (state === null) return null;
  // One after another: inside a PostgreSQL transaction the three share one connection.
  const devices = await reader.listDevices(accountId, profileId);
  const userAccounts = await reader.listUserAccounts(accountId, profileId);
  const orphans = await reader.listOrphans(accountId, profileId);
  return { state, deviceIds: devices.map((d) => d.deviceId), userAccounts, orphanCount: orphans.length };
}

export async function composeTimelinePage(
  reader: StoreReader,
  accountId: string,
  profileId: string,
  opts: PageOptions,
): Promise<TimelinePage | null> {
  const state = await reader.getProfile(accountId, profileId);
  if (state === null || state.mergedInto !== null) return null;
  const orphans = await reader.listOrphans(accountId, profileId);
  const page = await reader.listEvents(accountId, [profileId, ...orphans], opts);
  return {
    events: page.events.map(({ properties, ...e }) => ({ ...e, propertiesJson: JSON.stringify(properties) })),
    next: page.next,
  };
}
