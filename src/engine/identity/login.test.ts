/** SEMANTICS §11 "Login, exactly", as a pure decision: the cases and the laws that hold across all inputs. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { IdentityKey } from "../types.js";
import { decideLogin, type LoginValue } from "./login.js";

const v = (key: IdentityKey, owner: string | null, value = `${key}-value`): LoginValue => ({ key, value, owner });

describe("decideLogin", () => {
  it("case 1: anonymous Cur, no Known → Cur takes the identities", () => {
    expect(decideLogin({ curId: "cur", curHasIdentity: false, values: [v("Identity", null)] })).toMatchObject({
      case: 1,
      target: "cur",
      orphan: null,
      switchDevice: false,
      outcome: "identified",
      unapplied: [],
    });
  });

  it("case 1 for a device never seen: a new profile (target null) and the device points at it", () => {
    expect(decideLogin({ curId: null, curHasIdentity: false, values: [v("Email", null)] })).toMatchObject({
      case: 1,
      target: null,
      switchDevice: true,
      outcome: "identified",
    });
  });

  it("case 2: anonymous Cur, Known exists → switch, Cur stays as an orphan of Known", () => {
    expect(decideLogin({ curId: "cur", curHasIdentity: false, values: [v("Identity", "known")] })).toMatchObject({
      case: 2,
      target: "known",
      orphan: "cur",
      switchDevice: true,
      outcome: "switched",
    });
  });

  it("case 3: a value already Cur's → append; values of other people are unapplied", () => {
    const d = decideLogin({
      curId: "cur",
      curHasIdentity: true,
      values: [v("Identity", "cur"), v("Email", "other"), v("Phone", null)],
    });
    expect(d).toMatchObject({ case: 3, target: "cur", switchDevice: false, outcome: "appended" });
    expect(d.unapplied).toEqual([{ key: "Email", code: "IDENTITY_CONFLICT" }]);
    expect(d.apply.map((x) => x.key)).toEqual(["Identity", "Phone"]);
  });

  it("case 4: identified Cur, none of its values → switch to Known, or create", () => {
    expect(decideLogin({ curId: "cur", curHasIdentity: true, values: [v("Email", "known")] })).toMatchObject({
      case: 4,
      target: "known",
      outcome: "switched",
    });
    expect(decideLogin({ curId: "cur", curHasIdentity: true, values: [v("Email", null)] })).toMatchObject({
      case: 4,
      target: null,
      outcome: "created",
    });
  });

  it("Known is the owner of the first value in priority order; a second owner's value is unapplied, never merged", () => {
    const d = decideLogin({ curId: "cur", curHasIdentity: false, values: [v("Identity", "p1"), v("Email", "p2")] });
    expect(d.target).toBe("p1");
    expect(d.unapplied).toEqual([{ key: "Email", code: "IDENTITY_CONFLICT" }]);
  });

  const owner = fc.constantFrom(null, "cur", "p1", "p2");
  const facts = fc.record({
    curId: fc.constantFrom(null, "cur"),
    curHasIdentity: fc.boolean(),
    values: fc.uniqueArray(
      fc.tuple(fc.constantFrom<IdentityKey>("Identity", "Email", "Phone", "FBID", "GPID"), owner),
      {
        minLength: 1,
        maxLength: 5,
        selector: ([k]) => k,
      },
    ),
  });

  it("laws: every value is either applied or unapplied, never both; applied values are free or the target's; a switch never leaves Cur as target", () => {
    fc.assert(
      fc.property(facts, (f) => {
        const values = f.values.filter(([, o]) => f.curId !== null || o !== "cur").map(([k, o]) => v(k, o));
        fc.pre(values.length > 0);
        const d = decideLogin({
          curId: f.curId,
          curHasIdentity: f.curId !== null && (f.curHasIdentity || values.some((x) => x.owner === "cur")),
          values,
        });
        expect(d.apply.length + d.unapplied.length).toBe(values.length);
        for (const a of d.apply) expect(a.owner === null || a.owner === d.target).toBe(true);
        for (const u of d.unapplied) expect(values.find((x) => x.key === u.key)?.owner).not.toBeNull();
        if (d.case === 2 || d.case === 4) expect(d.target).not.toBe("cur");
        if (d.orphan !== null) expect(d.case).toBe(2);
        // Two different owners are never both the target: no merge through a login.
        const owners = new Set(d.apply.map((a) => a.owner).filter((o) => o !== null));
        expect(owners.size).toBeLessThanOrEqual(1);
      }),
    );
  });
});
