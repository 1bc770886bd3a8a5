/**
 * The login decision (SEMANTICS §3 "Login" and §11 "Login, exactly"), as a pure function of facts the pipeline
 * looked up: which profile the device is on, and who owns each identity value of the login.
 */
import type { Outcome, Unapplied } from "../records.js";
import type { IdentityKey } from "../types.js";

export interface LoginValue {
  key: IdentityKey;
  value: string;
  /** The profile that owns this value now, or null when it is free. */
  owner: string | null;
}

export interface LoginFacts {
  /** The device's current profile; null when the device has never been seen. */
  curId: string | null;
  /** Whether Cur holds any identity value (§11: that alone decides "anonymous" here, whatever its type). */
  curHasIdentity: boolean;
  /** The login's identity values, already in `identityKeys` priority order. */
  values: LoginValue[];
}

export type LoginDecision =
  /** Apply to `target`; `target` null means create a new profile (case 1 for an unseen device, case 4 with no Known). */
  {
    case: 1 | 2 | 3 | 4;
    target: string | null;
    /** Case 2: Cur stays behind as an orphan of the target (null when the device was unseen: nothing to keep). */
    orphan: string | null;
    /** Whether the device must be pointed at the target. */
    switchDevice: boolean;
    outcome: Outcome;
    /** Values that will not be applied because another profile owns them. */
    unapplied: Unapplied[];
    /** Values to claim for the target (free ones, plus the target's own). */
    apply: LoginValue[];
  };

export function decideLogin(facts: LoginFacts): LoginDecision {
  const { curId, values } = facts;
  const split = (target: string | null) => {
    const apply: LoginValue[] = [];
    const unapplied: Unapplied[] = [];
    for (const v of values) {
      if (v.owner === null || v.owner === target) apply.push(v);
      else unapplied.push({ key: v.key, code: "IDENTITY_CONFLICT" });
    }
    return { apply, unapplied };
  };

  // Case 3: one of the values is already Cur's.
  if (curId !== null && values.some((v) => v.owner === curId)) {
    return { case: 3, target: curId, orphan: null, switchDevice: false, outcome: "appended", ...split(curId) };
  }
  const known = values.find((v) => v.owner !== null)?.owner ?? null;

  if (curId === null || !facts.curHasIdentity) {
    if (known === null) {
      // Case 1: Cur (or a new profile for an unseen device) takes the identities.
      return {
        case: 1,
        target: curId,
        orphan: null,
        switchDevice: curId === null,
        outcome: "identified",
        ...split(curId),
      };
    }
    // Case 2: the device switches to Known; Cur stays as an orphan of Known.
    return { case: 2, target: known, orphan: curId, switchDevice: true, outcome: "switched", ...split(known) };
  }
  // Case 4: Cur is someone else. Cur is untouched.
  if (known !== null) {
    return { case: 4, target: known, orphan: null, switchDevice: true, outcome: "switched", ...split(known) };
  }
  return { case: 4, target: null, orphan: null, switchDevice: true, outcome: "created", ...split(null) };
}
