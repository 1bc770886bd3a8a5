/**
 * Deletes the `count` oldest entries of `map` (its first in insertion order); returns how many went. The bounded
 * in-memory look-ups of both adapters make room with it.
 */
export function dropOldest(map: Map<unknown, unknown>, count: number): number {
  let dropped = 0;
  for (const key of map.keys()) {
    if (dropped === count) break;
    map.delete(key);
    dropped++;
  }
  return dropped;
}
