/**
 * Find People by criteria (SEMANTICS §6, API.md Segments): ad-hoc queries, saved segments and their members, the
 * CSV export. The routes and the CLI call only this.
 *
 * Every condition is checked before any SQL runs: `parseCondition` with the account's timezone and property types
 * (INVALID_SEGMENT naming the JSON path of the fault), text the stores cannot hold refused the same way, and every
 * `inSegment` resolved to a saved segment of the same account (a missing one, or a cycle, is INVALID_SEGMENT at the
 * path of the `inSegment` that leads there). Saved segments keep their `where` as sent and are parsed again on every
 * read, so they always see the current registry and timezone.
 */
import { PortraitError } from "../engine/errors.js";
import { isPlainObject } from "../engine/parse-record.js";
import { ageFromDob, profileType } from "../engine/profile.js";
import { own } from "../engine/properties/keys.js";
import type { Condition, Json } from "../engine/segment/condition.js";
import type { EvaluateContext } from "../engine/segment/evaluate.js";
import { parseCondition } from "../engine/segment/parse.js";
import { assertStorableText } from "../engine/text.js";
import type { Account, JsonValue, ProfileState } from "../engine/types.js";
import type { SavedSegment } from "../store/segment-store.js";
import { pageLimit } from "./list-page.js";
import type { Portrait } from "./portrait.js";
import { type ProfileView, renderValue } from "./views.js";

export const MAX_NAME_LENGTH = 200;
/** Rows per batch of the CSV export (one database cursor; only the current batch is in memory). */
const EXPORT_BATCH = 500;

export interface SegmentView {
  id: string;
  name: string;
  where: Json;
  createdAt: string;
}

export interface MembersPage {
  count: number;
  profiles: ProfileView[];
  nextCursor: string | null;
}

function invalid(message: string, field: string): PortraitError {
  return new PortraitError("INVALID_SEGMENT", message, field);
}

function view(s: SavedSegment): SegmentView {
  return { id: s.id, name: s.name, where: s.where, createdAt: new Date(s.createdAt).toISOString() };
}

function encodeCursor(text: string): string {
  return Buffer.from(text).toString("base64url");
}

function decodeCursor(raw: unknown, pattern: RegExp): RegExpExecArray | null {
  if (raw === undefined || raw === null || raw === "") return null;
  const m = typeof raw === "string" ? pattern.exec(Buffer.from(raw, "base64url").toString()) : null;
  if (!m) throw new PortraitError("INVALID_VALUE", "cursor is not one this API returned", "cursor");
  return m;
}

/** A member cursor: the last profile id of the previous page. */
const MEMBER_CURSOR = /^m:([0-9a-f]{32})$/;
/** A segment list cursor: the last segment's creation time (at most 15 digits: a safe integer) and id. */
const LIST_CURSOR = /^s:(\d{1,15}):(seg_[0-9a-f]{24})$/;

/** The `inSegment` ids of a condition with the JSON path of each (`where.all[2].inSegment`). */
function inSegmentPaths(c: Condition, at: string): Array<{ id: string; field: string }> {
  switch (c.kind) {
    case "all":
      return c.all.flatMap((x, i) => inSegmentPaths(x, `${at}.all[${i}]`));
    case "any":
      return c.any.flatMap((x, i) => inSegmentPaths(x, `${at}.any[${i}]`));
    case "not":
      return inSegmentPaths(c.not, `${at}.not`);
    case "inSegment":
      return [{ id: c.inSegment, field: `${at}.inSegment` }];
    default:
      return [];
  }
}

/** A checked condition and what it needs to be evaluated. */
interface Prepared {
  condition: Condition;
  ctx: EvaluateContext;
  /** The segment ids it names directly. */
  refs: string[];
}

export class Segments {
  constructor(private readonly portrait: Portrait) {}

  private get store() {
    return this.portrait.store.segments;
  }

  /** Parses a `where` for the account (its timezone, its registered types); text the stores cannot hold is refused. */
  private async parse(account: Account, where: unknown, root: string): Promise<Condition> {
    // First: the parser and its messages recurse into values, so a value nested thousands of levels deep overflowed
    // the stack (a 500); nothing valid nests past MAX_JSON_DEPTH.
    try {
      assertStorableText(where, root);
    } catch (e) {
      if (!(e instanceof PortraitError)) throw e;
      throw invalid(
        e.code === "NESTING_TOO_DEEP" ? e.message : `${e.message} (SQL stores cannot hold it)`,
        e.field ?? root,
      );
    }
    const types = this.portrait.types;
    await types.ensure(account.id);
    return parseCondition(where, {
      timezone: account.settings.timezone,
      types: (path) => types.get(account.id, "profile", path),
      eventTypes: (event, path) => types.get(account.id, `event:${event}`, path),
      root,
    });
  }

  /**
   * Checks a condition and resolves every saved segment it reaches through `inSegment` (depth first, so a cycle is
   * found however long), for evaluation at `now`.
   */
  private async prepare(account: Account, where: unknown, root = "where"): Promise<Prepared> {
    if (where === undefined) throw invalid('A segment needs a "where" condition', root);
    const condition = await this.parse(account, where, root);
    const resolved = new Map<string, Condition>();
    const done = new Set<string>();
    const visit = async (c: Condition, chain: string[], field: (own: string) => string): Promise<void> => {
      for (const ref of inSegmentPaths(c, root)) {
        const at = field(ref.field);
        if (chain.includes(ref.id)) {
          throw invalid(`inSegment ${JSON.stringify(ref.id)} makes a cycle: ${[...chain, ref.id].join(" → ")}`, at);
        }
        if (done.has(ref.id)) continue;
        let target = resolved.get(ref.id);
        if (target === undefined) {
          const saved = await this.store.getSegment(account.id, ref.id);
          if (saved === null) throw invalid(`inSegment names no saved segment ${JSON.stringify(ref.id)}`, at);
          try {
            target = await this.parse(account, saved.where, "where");
          } catch (e) {
            if (!(e instanceof PortraitError)) throw e;
            throw invalid(`saved segment ${JSON.stringify(ref.id)} no longer fits this account: ${e.message}`, at);
          }
          resolved.set(ref.id, target);
        }
        // Faults inside a saved segment are reported at the inSegment that leads to it.
        await visit(target, [...chain, ref.id], () => at);
        done.add(ref.id);
      }
    };
    await visit(condition, [], (f) => f);
    const ctx: EvaluateContext = {
      now: this.portrait.clock.now(),
      timezone: account.settings.timezone,
      segment: (id) => resolved.get(id),
    };
    return { condition, ctx, refs: [...new Set(inSegmentPaths(condition, root).map((r) => r.id))] };
  }

  private async requireSegment(account: Account, id: string): Promise<SavedSegment> {
    const saved = await this.store.getSegment(account.id, id);
    if (saved === null) throw new PortraitError("UNKNOWN_SEGMENT", `segment ${id.slice(0, 64)} does not exist`, "id");
    return saved;
  }

  /** The CLI's `portrait segment count`. */
  async count(account: Account, where: unknown): Promise<number> {
    const p = await this.prepare(account, where);
    return this.store.countSegment(account.id, p.condition, p.ctx);
  }

  private async members(account: Account, p: Prepared, cursor: unknown, limit: number): Promise<MembersPage> {
    const after = decodeCursor(cursor, MEMBER_CURSOR)?.[1] ?? null;
    const [count, page] = await Promise.all([
      this.store.countSegment(account.id, p.condition, p.ctx),
      this.store.querySegment(account.id, p.condition, p.ctx, { after, limit }),
    ]);
    const views = await Promise.all(page.ids.map((id) => this.portrait.getProfile(account, id)));
    return {
      count,
      profiles: views.filter((v): v is ProfileView => v !== null),
      nextCursor: page.next === null ? null : encodeCursor(`m:${page.next}`),
    };
  }

  /** POST /v1/segments/query: {where, limit, cursor} → the exact count and a page of profiles. */
  async query(account: Account, body: unknown): Promise<MembersPage> {
    if (!isPlainObject(body)) throw invalid('The body must be {"where": <condition>, "limit", "cursor"}', "where");
    for (const key of Object.keys(body)) {
      if (!["where", "limit", "cursor"].includes(key)) {
        throw new PortraitError(
          "INVALID_VALUE",
          `Unknown key ${JSON.stringify(key)}; allowed: where, limit, cursor`,
          key,
        );
      }
    }
    const limit = pageLimit(body.limit, "limit", "body");
    const p = await this.prepare(account, own(body, "where"));
    return this.members(account, p, body.cursor, limit);
  }

  /** POST /v1/segments. */
  async create(account: Account, body: unknown): Promise<SegmentView> {
    if (!isPlainObject(body)) throw invalid('The body must be {"name": "…", "where": <condition>}', "name");
    for (const key of Object.keys(body)) {
      if (key !== "name" && key !== "where") {
        throw new PortraitError("INVALID_VALUE", `Unknown key ${JSON.stringify(key)}; allowed: name, where`, key);
      }
    }
    const name = body.name;
    if (typeof name !== "string" || name.trim() === "" || [...name].length > MAX_NAME_LENGTH) {
      throw invalid(`A segment needs a "name" of 1-${MAX_NAME_LENGTH} characters`, "name");
    }
    try {
      assertStorableText(name, "name");
    } catch (e) {
      if (e instanceof PortraitError) throw invalid(e.message, "name");
      throw e;
    }
    const p = await this.prepare(account, own(body, "where"));
    const segment: SavedSegment = {
      id: `seg_${this.portrait.ids.opaque()}`,
      name,
      where: body.where as Json,
      createdAt: this.portrait.clock.now(),
    };
    const saved = await this.store.insertSegment(account.id, segment, p.refs);
    if (!saved.inserted) {
      // Deleted between the check and the insert.
      throw invalid(`inSegment names no saved segment ${JSON.stringify(saved.missing)}`, "where");
    }
    return view(segment);
  }

  /** GET /v1/segments: oldest first. */
  async list(
    account: Account,
    query: { cursor?: unknown; limit?: unknown },
  ): Promise<{
    segments: SegmentView[];
    nextCursor: string | null;
  }> {
    const limit = pageLimit(query.limit);
    const m = decodeCursor(query.cursor, LIST_CURSOR);
    const after = m ? { createdAt: Number(m[1]), id: m[2] as string } : null;
    const found = await this.store.listSegments(account.id, { after, limit: limit + 1 });
    const more = found.length > limit;
    if (more) found.length = limit;
    const last = found[found.length - 1];
    return {
      segments: found.map(view),
      nextCursor: more && last ? encodeCursor(`s:${last.createdAt}:${last.id}`) : null,
    };
  }

  async get(account: Account, id: string): Promise<SegmentView> {
    return view(await this.requireSegment(account, id));
  }

  /** DELETE /v1/segments/{id}: 409 SEGMENT_IN_USE while another saved segment names it. */
  async delete(account: Account, id: string): Promise<{ deleted: true }> {
    const result = await this.store.deleteSegment(account.id, id);
    if (result.deleted) return { deleted: true };
    if ("usedBy" in result) {
      throw new PortraitError(
        "SEGMENT_IN_USE",
        `segment ${id} is used by ${result.usedBy.map((s) => JSON.stringify(s)).join(", ")}; delete those first`,
        "id",
      );
    }
    throw new PortraitError("UNKNOWN_SEGMENT", `segment ${id.slice(0, 64)} does not exist`, "id");
  }

  /** GET /v1/segments/{id}/profiles: the saved segment evaluated now, a page at a time. */
  async profiles(account: Account, id: string, query: { cursor?: unknown; limit?: unknown }): Promise<MembersPage> {
    const saved = await this.requireSegment(account, id);
    const limit = pageLimit(query.limit);
    const p = await this.prepare(account, saved.where);
    return this.members(account, p, query.cursor, limit);
  }

  /**
   * GET /v1/segments/{id}/export.csv: the header, then one line per member in id order (API.md Keys: `id`, `type`,
   * the identity keys, then the registered profile properties alphabetically). Checked before the first line, so a
   * fault is still an HTTP error; then read through one database cursor, a batch at a time.
   */
  async export(account: Account, id: string): Promise<AsyncIterable<string>> {
    const saved = await this.requireSegment(account, id);
    const p = await this.prepare(account, saved.where);
    const identityKeys = account.settings.identityKeys;
    // A property that is also an identity key is shown once, in the identity columns.
    const properties = this.portrait.types
      .profilePaths(account.id)
      .filter((k) => !(identityKeys as string[]).includes(k));
    const header = ["id", "type", ...identityKeys, ...properties];
    const stream = this.store.streamSegment(account.id, p.condition, p.ctx, { batchSize: EXPORT_BATCH });
    const now = p.ctx.now;
    return (async function* () {
      yield csvLine(header);
      for await (const batch of stream) {
        yield batch.map((state) => csvLine(exportRow(state, account, identityKeys, properties, now))).join("");
      }
    })();
  }
}

/**
 * One member's cells: each identity key's newest value and each property's rendered value. Identity values are
 * properties too (SEMANTICS §2), and exports use the newest where a key keeps several: the last held value, which
 * is the property's value.
 */
function exportRow(
  state: ProfileState,
  account: Account,
  identityKeys: readonly string[],
  properties: readonly string[],
  now: number,
): string[] {
  const cells = [state.id, profileType(state)];
  for (const key of identityKeys) {
    const values = state.identities[key as keyof ProfileState["identities"]] ?? [];
    cells.push(inertCell(values[values.length - 1]?.value ?? ""));
  }
  for (const path of properties) cells.push(inertCell(cellOf(propertyAt(state, path, account, now))));
  return cells;
}

/** What a spreadsheet reads as the start of a formula (OWASP "CSV injection"), tab and carriage return included. */
const FORMULA_START = /^[=+\-@\t\r]/;
/** A cell that is a number as written (`-5`, `+33612345678`, `1e-7`): a spreadsheet reads a number, never a formula. */
const NUMBER_TEXT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * A cell a spreadsheet will not run (hostile-input audit F14: values written with the public key, such as
 * `=HYPERLINK(…)`, came out as formulas for whoever opened the export): text that starts like a formula gets a
 * leading `'`, which spreadsheets read as "text" and do not show. Numbers, and text that is a number as written
 * (an E.164 phone), are left as they are (docs/semantics.md "Saved segments and results").
 */
export function inertCell(text: string): string {
  return FORMULA_START.test(text) && !NUMBER_TEXT.test(text) ? `'${text}` : text;
}

/** A registered path's value: a top-level key (dates as ISO-8601, Age derived), or a leaf of a nested object. */
function propertyAt(state: ProfileState, path: string, account: Account, now: number): JsonValue | undefined {
  const [key, ...rest] = path.split(".") as [string, ...string[]];
  const entry = own(state.props, key);
  if (entry === undefined) {
    if (key === "Age" && rest.length === 0) {
      const dob = own(state.props, "DOB")?.v;
      const age = typeof dob === "string" ? ageFromDob(dob, now, account.settings.timezone) : null;
      return age?.years;
    }
    return undefined;
  }
  let value = renderValue(entry);
  for (const k of rest) {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
    value = own(value as Record<string, JsonValue>, k);
  }
  return value;
}

function cellOf(v: JsonValue | undefined): string {
  if (v === undefined) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** RFC 4180: a cell with a comma, quote or line break is quoted, its quotes doubled; lines end with CRLF. */
export function csvLine(cells: readonly string[]): string {
  return `${cells.map((c) => (/[",\r\n]/.test(c) ? `"${c.replace(/"/g, '""')}"` : c)).join(",")}\r\n`;
}
