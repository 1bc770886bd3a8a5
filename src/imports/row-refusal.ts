/**
 * A row refused while it was being read (a cell of the wrong type, a bad operation, a wrong number of cells, a line
 * of the wrong record type), together with the handles it named. SEMANTICS §10: deleting a person redacts every
 * stored failure-report row that named them, and a row refused before the pipeline resolved its person can only be
 * found again by the handle values it carried.
 */
import { PortraitError } from "../engine/errors.js";
import type { ImportHandle } from "../store/import-store.js";

export class RowRefusal extends Error {
  constructor(
    readonly refusal: PortraitError,
    readonly handles: ImportHandle[],
  ) {
    super(refusal.message);
  }
}

/** Runs `read`; a PortraitError it throws leaves as a RowRefusal carrying `handles` as they are at that moment. */
export function refusingWith<T>(handles: ImportHandle[], read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof PortraitError) throw new RowRefusal(e, handles);
    throw e;
  }
}
