/**
 * Laws of the whole write path on a real SQLite file, checked over random histories (fast-check):
 * ordering by record ts is independent of arrival order, merge followed by undo restores both people (and leaves the
 * devices that logged in as someone else after the merge with that person), and a merged
 * person's identity properties show the newest identity values kept.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { makeHarness } from "../test-support/portrait.js";

const BASE = 1_790_000_000;
const keys = ["Color", "Plan", "Score"] as const;
const op = fc.record({
  key: fc.constantFrom(...keys),
  at: fc.integer({ min: 0, max: 50 }),
  kind: fc.constantFrom("set", "delete", "setOnce", "incr"),
  value: fc.integer({ min: 0, max: 9 }),
});

function record(deviceId: string, o: { key: string; at: number; kind: string; value: number }) {
  const value = o.key === "Score" ? o.value : `v${o.value}`;
  const properties =
    o.kind === "delete"
      ? { [o.key]: { $delete: true } }
      : o.kind === "setOnce"
        ? { [o.key]: { $setOnce: value } }
        : o.kind === "incr" && o.key === "Score"
          ? { Score: { $incr: o.value } }
          : { [o.key]: value };
  return { type: "profile", deviceId, ts: BASE + o.at, properties };
}

describe("laws of the write path", () => {
  it("plain sets and deletes converge to the same profile whatever order they arrive in (last writer by ts)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            key: fc.constantFrom(...keys),
            at: fc.integer({ min: 0, max: 1000 }),
            kind: fc.constantFrom("set", "delete"),
            value: fc.integer({ min: 0, max: 9 }),
          }),
          { minLength: 1, maxLength: 12 },
        ),
        fc.func(fc.integer()),
        async (ops, shuffle) => {
          // Distinct ts per key so that the winner does not depend on arrival (ties go to the later arrival by design).
          const seen = new Set<string>();
          const unique = ops.filter((o) => !seen.has(`${o.key}@${o.at}`) && seen.add(`${o.key}@${o.at}`));
          const h = await makeHarness();
          try {
            const inOrder = [...unique].sort((a, b) => a.at - b.at).map((o) => record("sorted", o));
            const shuffled = unique
              .map((o, i) => ({ o, k: shuffle(i) }))
              .sort((a, b) => a.k - b.k)
              .map(({ o }) => record("shuffled", o));
            for (const r of inOrder) await h.ingest(r);
            for (const r of shuffled) await h.ingest(r);
            const [a] = await h.portrait.findProfiles(h.account, { kind: "device", deviceId: "sorted" });
            const [b] = await h.portrait.findProfiles(h.account, { kind: "device", deviceId: "shuffled" });
            expect(b?.properties).toEqual(a?.properties);
          } finally {
            await h.close();
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it("merge then undo gives back both people exactly, whatever they were, but for devices that left for others", async () => {
    const moves = fc.subarray(["a", "b"]);
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { maxLength: 8 }),
        fc.array(op, { maxLength: 8 }),
        moves,
        async (opsA, opsB, moved) => {
          const h = await makeHarness();
          try {
            const a = (await h.ingest({ type: "login", deviceId: "a", ts: BASE, properties: { Identity: "u-a" } }))
              .results[0]?.profileId as string;
            const b = (await h.ingest({ type: "login", deviceId: "b", ts: BASE, properties: { Identity: "u-b" } }))
              .results[0]?.profileId as string;
            for (const o of opsA)
              await h.ingest(record("a", o), { type: "event", deviceId: "a", name: `E${o.value}`, ts: BASE + o.at });
            for (const o of opsB)
              await h.ingest(record("b", o), { type: "event", deviceId: "b", name: `E${o.value}`, ts: BASE + o.at });
            const snapshot = async (id: string) => {
              const p = await h.portrait.requireProfile(h.account, id);
              const t = await h.portrait.timeline(h.account, id, { limit: 1000 });
              const names = t.events.map((e) => e.name).filter((n) => n !== "Profile Demerged");
              return {
                properties: p.properties,
                identities: p.identities,
                devices: p.devices,
                type: p.type,
                names,
                events: p.stats.events - (t.events.length - names.length),
              };
            };
            const x = (await h.ingest({ type: "login", deviceId: "x", ts: BASE, properties: { Identity: "u-x" } }))
              .results[0]?.profileId as string;
            const before = [await snapshot(a), await snapshot(b)];
            const xBefore = await snapshot(x);
            const { mergeId } = await h.portrait.merge(h.account, a, b);
            // After the merge, some of the merged person's devices log in as x (login case 4): they are x's now, and
            // their records are x's, which is no part of the merged person's journal.
            for (const deviceId of moved) {
              await h.ingest(
                { type: "login", deviceId, ts: BASE + 60, properties: { Identity: "u-x" } },
                { type: "event", deviceId, name: "After", ts: BASE + 61 },
              );
            }
            await h.portrait.undoMerge(h.account, mergeId);
            const left = (s: Awaited<ReturnType<typeof snapshot>>) => ({
              ...s,
              devices: s.devices.filter((d) => !moved.includes(d)),
            });
            expect([await snapshot(a), await snapshot(b)]).toEqual(before.map(left));
            const xAfter = await snapshot(x);
            expect([...xAfter.devices].sort()).toEqual(["x", ...moved].sort());
            expect(xAfter.names.filter((n) => n === "After")).toHaveLength(moved.length);
            for (const deviceId of moved) {
              const next = await h.ingest({ type: "event", deviceId, name: "Next", ts: BASE + 70 });
              expect(next.results[0]?.profileId).toBe(x);
            }
            expect(xAfter.properties).toEqual(xBefore.properties);
          } finally {
            await h.close();
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it("before and after a merge, each identity key's property shows the newest value kept, and finds the person", async () => {
    const emails = fc.array(fc.record({ n: fc.integer({ min: 0, max: 5 }), at: fc.integer({ min: 0, max: 3 }) }), {
      minLength: 1,
      maxLength: 4,
    });
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3 }), emails, emails, async (limit, emailsA, emailsB) => {
        const h = await makeHarness({ identityLimits: { Email: limit } });
        try {
          // Each side's addresses are its own (a@…, b@…): one value never belongs to two people. An address may
          // come again, at an older ts too: the list then keeps it where the property's last writer put it.
          const logIn = async (side: string, list: Array<{ n: number; at: number }>) => {
            let id = "";
            for (const e of list) {
              const properties = { Identity: `u-${side}`, Email: `${side}${e.n}@x.io` };
              const r = await h.ingest({ type: "login", deviceId: side, ts: BASE + e.at, properties });
              id = r.results[0]?.profileId ?? id;
            }
            return id;
          };
          const newestShown = (profile: {
            identities: Record<string, unknown>;
            properties: Record<string, unknown>;
          }) => {
            const kept = ([] as string[]).concat(profile.identities.Email as string | string[]);
            expect(profile.properties.Email).toBe(kept[kept.length - 1]);
            return kept;
          };
          const a = await logIn("a", emailsA);
          const b = await logIn("b", emailsB);
          newestShown(await h.portrait.requireProfile(h.account, a));
          newestShown(await h.portrait.requireProfile(h.account, b));
          const { profile } = await h.portrait.merge(h.account, a, b);
          const kept = newestShown(profile);
          for (const value of kept) {
            const found = await h.portrait.findProfiles(h.account, { kind: "identity", key: "Email", value });
            expect(found.map((p) => p.id)).toEqual([a]);
          }
        } finally {
          await h.close();
        }
      }),
      { numRuns: 40 },
    );
  });
});
