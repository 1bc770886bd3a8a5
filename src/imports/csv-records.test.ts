import { describe, expect, it } from "vitest";
import { HeaderError, parseHeader } from "./csv-columns.js";
import { EventRowMapper, type MappingContext, ProfileRowMapper } from "./csv-records.js";
import { RowRefusal } from "./row-refusal.js";

const ctx = (types: Record<string, string> = {}): MappingContext => ({
  timezone: "UTC",
  typeOf: (_scope, key) => types[key] as never,
});

describe("CSV headers", () => {
  it("reads keys, types, date patterns and operation columns", () => {
    const columns = parseHeader(["\uFEFFEmail", "Score<number>", "Born < dd/MM/yyyy >", "Tags.operation"]);
    expect(columns.map((c) => [c.key, c.type?.kind ?? null, c.operationOf ?? null])).toEqual([
      ["Email", null, null],
      ["Score", "number", null],
      ["Born", "pattern", null],
      ["Tags.operation", null, "Tags"],
    ]);
  });

  it.each([
    [["Email", ""], /empty header/],
    [["Email", "Email"], /appears twice/],
    [["Email", "<number>"], /no key/],
    [["Email", "X<weird type>"], /neither a type/],
    [["Email", ".operation"], /needs a key/],
    [["Email", "Y<number"], /not Key<type>/],
    [["Email", "Z<>"], /not Key<type>/],
    [["Email", "Score<<number>>"], /not Key<type>/],
  ])("refuses %j", (header, message) => {
    expect(() => parseHeader(header)).toThrow(message);
  });
});

describe("profile rows", () => {
  it("takes the first non-empty handle cell in API order and keeps other identity columns as properties", () => {
    const m = new ProfileRowMapper(["Phone", "Email", "identity", "profileId", "Name"]);
    expect(m.map(["+33612345678", "a@x.io", "", "", "Ana"], ctx()).record).toEqual({
      type: "profile",
      identity: { Email: "a@x.io" },
      properties: { Phone: "+33612345678", Name: "Ana" },
    });
    expect(m.map(["", "", "u-1", "", ""], ctx()).record).toMatchObject({ identity: { Identity: "u-1" } });
    const byId = m.map(["", "", "", "0123456789abcdef0123456789abcdef", "B"], ctx()).record;
    expect(byId).toMatchObject({ profileId: "0123456789abcdef0123456789abcdef", properties: { Name: "B" } });
    expect(() => m.map(["", "", "", "", "x"], ctx())).toThrow(/no handle/);
    // White space in an identity cell is no value, as when the handle is chosen; in other cells too.
    expect(m.map([" ", "a@x.io", "  ", "", " "], ctx()).record).toEqual({
      type: "profile",
      identity: { Email: "a@x.io" },
      properties: {},
    });
  });

  it("reads a cell of only white space as empty (no change) in every column, typed or not", () => {
    const m = new ProfileRowMapper([
      "Email",
      "Name",
      "N",
      "B",
      "Score<number>",
      "When<date>",
      "Tags",
      "Tags.operation",
    ]);
    const types = ctx({ N: "number", B: "boolean" });
    expect(m.map(["ws@x.io", "   ", "  ", " ", "\t", " \u00a0 ", "  ", "$add"], types).record).toEqual({
      type: "profile",
      identity: { Email: "ws@x.io" },
      properties: {},
    });
    // Padding around a value is still the value's (trimmed where the type reads numbers, kept in text).
    expect(m.map(["ws@x.io", " Ana ", " 7 ", "", "", "", "", ""], types).record.properties).toEqual({
      Name: " Ana ",
      N: 7,
    });
    const e = new EventRowMapper(["Email", "evtName", "Price<number>", "Note", "Seen"]);
    expect(e.map(["ws@x.io", "Viewed", "  ", " ", "\t"], types).record.properties).toEqual({});
  });

  it("leaves empty cells out, types untyped cells by the registry, and turns operation cells into operations", () => {
    const m = new ProfileRowMapper(["Email", "Visits", "Vip", "Tags", "Tags.operation", "Gone.operation", "Note"]);
    const row = m.map(
      ["a@x.io", "3", "yes", '["a","b"]', "$remove", "$delete", ""],
      ctx({ Visits: "number", Vip: "boolean" }),
    );
    expect(row.record.properties).toEqual({
      Visits: 3,
      Vip: true,
      Tags: { $remove: ["a", "b"] },
      Gone: { $delete: true },
    });
    expect(m.map(["a@x.io", "", "", "solo", "$set", "", ""], ctx()).record.properties).toEqual({
      Tags: { $set: ["solo"] },
    });
    expect(m.map(["a@x.io", "5", "", "", "", "", ""], ctx()).record.properties).toEqual({ Visits: "5" });
    expect(() => m.map(["a@x.io", "x", "", "", "", "", ""], ctx({ Visits: "number" }))).toThrow(
      /Property "Visits" is a number, got a string/,
    );
    expect(() => m.map(["a@x.io", "", "", "t", "$frobnicate", "", ""], ctx())).toThrow(/one of \$add/);
    // $incr needs a number whatever the key holds: the message says so, not that a multi-value key "is a number".
    expect(m.map(["a@x.io", "", "", " 2.5 ", "$incr", "", ""], ctx({ Tags: "multi" })).record.properties).toEqual({
      Tags: { $incr: 2.5 },
    });
    expect(() => m.map(["a@x.io", "", "", "lots", "$incr", "", ""], ctx({ Tags: "multi" }))).toThrow(
      'column "Tags": $incr needs a number, got "lots"',
    );
    expect(() => m.map(["a@x.io", "1"], ctx())).toThrow(/2 cells but the header has 7/);
  });

  it("applies the handle column's operation as /v1/ingest would, and still finds the person by the handle cell", () => {
    const m = new ProfileRowMapper(["Email", "Email.operation", "Name"]);
    expect(m.map(["hd@x.io", "$delete", "Y"], ctx()).record).toEqual({
      type: "profile",
      identity: { Email: "hd@x.io" },
      properties: { Email: { $delete: true }, Name: "Y" },
    });
    // Handed on as the operation /v1/ingest would be sent, for the engine to refuse with the API's code and field.
    expect(m.map(["hd@x.io", "$incr", ""], ctx()).record.properties).toEqual({ Email: { $incr: "hd@x.io" } });
    expect(m.map(["hd@x.io", " $bogus ", ""], ctx()).record.properties).toEqual({ Email: { $bogus: "hd@x.io" } });
    expect(m.map(["hd@x.io", "", "Z"], ctx()).record.properties).toEqual({ Name: "Z" });
    expect(() => m.map(["hd@x.io", "delete", ""], ctx())).toThrow(/must be one of \$add/);
    const id = new ProfileRowMapper(["Identity", "Identity.operation", "Email"]);
    expect(id.map(["u1", "$add", ""], ctx()).record).toEqual({
      type: "profile",
      identity: { Identity: "u1" },
      properties: { Identity: { $add: "u1" } },
    });
  });

  it("reads a list cell that starts with [ as a JSON array, elements as typed, or refuses it naming the column", () => {
    const m = new ProfileRowMapper(["Email", "Tags", "Tags.operation", "L<multi>"]);
    expect(m.map(["m@x.io", '["a",1,true]', "$add", ""], ctx()).record.properties).toEqual({
      Tags: { $add: ["a", 1, true] },
    });
    expect(m.map(["m@x.io", "solo [x]", "$remove", ' ["x", "y"] '], ctx()).record.properties).toEqual({
      Tags: { $remove: ["solo [x]"] },
      L: ["x", "y"],
    });
    for (const [row, header] of [
      [["m@x.io", '["a"', "$add", ""], "Tags"],
      [["m@x.io", "[a, b]", "$set", ""], "Tags"],
      [["m@x.io", "", "", "[1,]"], "L<multi>"],
    ] as const) {
      try {
        m.map([...row], ctx());
        expect.unreachable(`${row} was read`);
      } catch (e) {
        expect((e as RowRefusal).refusal).toMatchObject({ code: "INVALID_VALUE" });
        expect(
          (e as RowRefusal).refusal.message.startsWith(`column "${header}" starts with "[" but is not a JSON array`),
        ).toBe(true);
      }
    }
  });

  it("reads <date> cells as ISO-8601, compact YYYYMMDD or epoch seconds of 9-12 digits, and refuses the rest", () => {
    const m = new ProfileRowMapper(["Email", "DD<date>"]);
    const read = (cell: string) => m.map(["a@x.io", cell], ctx()).record.properties;
    expect(read("2024-11-20")).toEqual({ DD: { $date: "2024-11-20" } });
    expect(read("20241120")).toEqual({ DD: { $date: "2024-11-20" } });
    expect(read("2024-11-20T10:00:00Z")).toEqual({ DD: { $date: "2024-11-20T10:00:00Z" } });
    expect(read("1732000000")).toEqual({ DD: "$D_1732000000" });
    for (const bad of ["0", "-5", "1.5", "20241320", "1732000000000", "soon"]) {
      expect(() => read(bad), bad).toThrow(/^column "DD<date>" must be a date: YYYY-MM-DD/);
      try {
        read(bad);
      } catch (e) {
        expect((e as RowRefusal).refusal).toMatchObject({ code: "INVALID_DATE", field: "properties.DD" });
      }
    }
    const pattern = new ProfileRowMapper(["Email", "Born<dd/MM/yyyy>"]);
    expect(() => pattern.map(["a@x.io", "2024-11-20"], ctx())).toThrow(RowRefusal);
  });

  it("names fields by the record's JSON path and columns as the file's header has them (the source of a mapping)", () => {
    // As the runner builds it for an SFTP manifest mapping mail → Email, points → Points<number>.
    const m = new ProfileRowMapper(
      ["Email", "Points<number>", "Tags", "Tags.operation"],
      ["mail", "points", "Tags", "Tags.operation"],
    );
    const refusal = (fields: string[]) => {
      try {
        m.map(fields, ctx());
      } catch (e) {
        return (e as RowRefusal).refusal;
      }
      throw new Error(`${fields} was read`);
    };
    expect(refusal(["a@x.io", "many", "", ""])).toMatchObject({
      code: "INVALID_VALUE",
      field: "properties.Points",
      message: 'column "points" must be a number, got "many"',
    });
    expect(refusal(["a@x.io", "", "x", "$frob"])).toMatchObject({
      code: "INVALID_OPERATION",
      field: "properties.Tags",
      message: expect.stringMatching(/^column "Tags\.operation" must be one of/),
    });
    expect(refusal(["", "", "", ""]).message).toBe("the row has no handle: mail is empty");
    expect(() => new ProfileRowMapper(["Email", "Email"], ["mail", "Email"])).toThrow(
      'column 2: "Email" and "mail" are both read as "Email"',
    );
    // The field a column feeds in a row, for refusals made while reading it (bytes that are not UTF-8).
    expect([0, 1, 2, 3].map((i) => m.fieldOf(i, ["a@x.io", "", "", ""]))).toEqual([
      "identity.Email",
      "properties.Points",
      "properties.Tags",
      "properties.Tags",
    ]);
    const p = new ProfileRowMapper(["Identity", "Email", "profileId"]);
    expect([0, 1, 2].map((i) => p.fieldOf(i, ["u-1", "a@x.io", ""]))).toEqual([
      "identity.Identity",
      "properties.Email",
      "profileId",
    ]);
    const e = new EventRowMapper(["Email", "evtName", "ts", "Price<number>"]);
    expect([0, 1, 2, 3].map((i) => e.fieldOf(i, ["a@x.io", "E", "", ""]))).toEqual([
      "identity.Email",
      "name",
      "ts",
      "properties.Price",
    ]);
  });

  it("ignores the Failure Description column of a corrected failure report uploaded again", () => {
    const m = new ProfileRowMapper(["Email", "Name", "Failure Description"]);
    expect(m.map(["a@x.io", "Ana", "INVALID_GENDER (…)"], ctx()).record.properties).toEqual({ Name: "Ana" });
    const e = new EventRowMapper(["Email", "evtName", "Failure Description"]);
    expect(e.map(["a@x.io", "Seen", "x"], ctx()).record.properties).toEqual({});
  });

  it("records the row's handles for redaction", () => {
    const m = new ProfileRowMapper(["Email", "Phone", "Name"]);
    expect(m.map([" A@X.io ", "+33 6 12 34 56 78", "n"], ctx()).handles).toEqual([
      { kind: "Email", value: "a@x.io" },
      { kind: "Phone", value: "+33612345678" },
    ]);
  });

  it("needs a handle column", () => {
    expect(() => new ProfileRowMapper(["Name", "City"])).toThrow(HeaderError);
    expect(() => new ProfileRowMapper(["identity", "Identity", "Name"])).toThrow(/both write Identity/);
    expect(() => new ProfileRowMapper(["Email", "Score", "Score<number>"])).toThrow(/both write Score/);
  });
});

describe("event rows", () => {
  it("builds event records with ts and typed properties", () => {
    const m = new EventRowMapper(["deviceId", "evtName", "ts", "Price<number>", "Promo<boolean>"]);
    expect(m.map(["d-1", "Viewed", "1732000000", "9.5", "no"], ctx()).record).toEqual({
      type: "event",
      deviceId: "d-1",
      name: "Viewed",
      ts: 1732000000,
      properties: { Price: 9.5, Promo: false },
    });
    expect(m.map(["d-1", "Viewed", "", "", ""], ctx()).record).not.toHaveProperty("ts");
    expect(m.map(["d-1", "Viewed", "  ", "", ""], ctx()).record).not.toHaveProperty("ts");
  });

  it("reads ts by the rules of a <date> cell: 20241120 is that day in the account timezone, and the same refusals", () => {
    const m = new EventRowMapper(["deviceId", "evtName", "ts"]);
    const paris: MappingContext = { ...ctx(), timezone: "Europe/Paris" };
    const ts = (cell: string) => m.map(["d-1", "Viewed", cell], paris).record.ts;
    expect(ts("20241120")).toBe("2024-11-20");
    expect(ts(" 1732000000 ")).toBe(1732000000);
    expect(ts("2024-11-20T10:00:00Z")).toBe("2024-11-20T10:00:00Z");
    expect(ts("2024-11-20 10:00")).toBe("2024-11-20 10:00");
    // Every cell a <date> column refuses, refused here with the API's code for a ts, naming the column.
    const dates = new ProfileRowMapper(["Email", "DD<date>"]);
    for (const bad of ["0", "-5", "1.5", "12345", "20241320", "1732000000000", "1732000000.5", "2024-02-30", "soon"]) {
      expect(() => dates.map(["a@x.io", bad], paris), bad).toThrow(RowRefusal);
      try {
        ts(bad);
        expect.unreachable(bad);
      } catch (e) {
        expect((e as RowRefusal).refusal, bad).toMatchObject({ code: "INVALID_TIMESTAMP", field: "ts" });
        expect((e as RowRefusal).refusal.message).toMatch(/^column "ts" must be a date: YYYY-MM-DD, YYYYMMDD/);
      }
    }
  });

  it("reads an untyped Charged Amount as the number §3 fixes it to be, in an account that never saw a Charged", () => {
    const m = new EventRowMapper(["Identity", "evtName", "ts", "Amount", "Note"]);
    expect(m.map(["u-1", "Charged", "1732000000", "12.5", "12.5"], ctx()).record).toMatchObject({
      name: "Charged",
      properties: { Amount: 12.5, Note: "12.5" },
    });
    // Only on Charged: another event's Amount is the account's to type.
    expect(m.map(["u-1", "Refund", "1732000000", "12.5", ""], ctx()).record).toMatchObject({
      properties: { Amount: "12.5" },
    });
  });

  it("needs evtName and refuses operation columns", () => {
    expect(() => new EventRowMapper(["Email", "ts"])).toThrow(/evtName/);
    expect(() => new EventRowMapper(["Email", "evtName", "X.operation"])).toThrow(/profile properties only/);
  });
});
