/**
 * Imports end to end over HTTP, on both stores (API.md Imports, SEMANTICS §8, §10, §11): every format and kind, the
 * failure report, idempotent re-runs, deletion redaction, and malformed, oversized, wrongly typed and hostile input.
 */
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failuresCsv, runImport, upload, waitForImport } from "../test-support/imports.js";
import { storesUnderTest } from "../test-support/postgres.js";
import { SECRET, startTestServer, type TestServer } from "../test-support/server.js";

const stores = await storesUnderTest();

let s: TestServer;

// biome-ignore lint/suspicious/noExplicitAny: tests read profiles of every shape
async function profileBy(query: string): Promise<any> {
  const r = await s.api("GET", `/v1/profiles?${query}`);
  expect(r.status).toBe(200);
  return r.body.profiles[0] ?? null;
}

const ndjson = (...lines: unknown[]) =>
  `${lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n")}\n`;

describe.each(stores)("%s store", (store) => {
  beforeAll(async () => {
    s = await startTestServer({ PORTRAIT_IMPORT_MAX_BYTES: String(2 * 1024 * 1024) }, { store });
    await s.api("PATCH", "/v1/account/settings", {
      timezone: "Europe/Paris",
      identityKeys: ["Identity", "Email", "Phone"],
    });
  });
  afterAll(async () => {
    await s.close();
  });

  describe("profiles CSV", () => {
    // SQLite answers synchronously, so only the runner's own pause between batches lets a request in; PostgreSQL's
    // driver yields on every query anyway.
    it.skipIf(store === "postgres")(
      "answers other requests between batches while an import runs",
      async () => {
        const rows = Array.from({ length: 20_000 }, (_, i) => `between${i}@x.io,Person ${i}`);
        const up = await upload(s, "profiles", `Email,Name\n${rows.join("\n")}\n`);
        expect(up.status).toBe(202);
        // Each answer comes from a turn of the event loop. A runner that never yielded would answer only before its
        // first batch and when the file stream next read (here: at its end), so at most one count strictly in between.
        const seen = new Set<number>();
        for (;;) {
          const r = await s.api("GET", `/v1/imports/${up.body.id}`);
          seen.add(r.body.rows);
          if (r.body.status === "done" || r.body.status === "failed") break;
        }
        expect([...seen].filter((n) => n > 0 && n < 20_000).length).toBeGreaterThanOrEqual(3);
        expect(seen.has(20_000)).toBe(true);
      },
      120_000,
    );

    it("applies typed headers, date patterns in the account timezone, operations, and leaves empty cells alone", async () => {
      await s.api("POST", "/v1/ingest", {
        records: [{ type: "profile", identity: { Email: "ana@x.io" }, properties: { Plan: "gold", Level: 3 } }],
      });
      const csv = [
        "Email,Name,Score<number>,Purchase Date<dd/MM/yyyy HH:mm>,Plan,Level,Tags,Tags.operation,Old.operation",
        'ana@x.io,Ana,12.5,31/12/2024 23:30,,7,"[""a"",""b""]",$add,$delete',
        "bob@x.io,Bob,,01/02/2020 08:00,silver,,solo,$add,",
      ].join("\n");
      const r = await runImport(s, "profiles", csv);
      expect(r).toMatchObject({ status: "done", rows: 2, processed: 2, failed: 0 });
      const ana = await profileBy("email=ana@x.io");
      expect(ana.properties).toMatchObject({ Name: "Ana", Score: 12.5, Plan: "gold", Level: 7, Tags: ["a", "b"] });
      // 23:30 in Paris on 31 Dec is 22:30 UTC.
      expect(ana.properties["Purchase Date"]).toBe("2024-12-31T22:30:00.000Z");
      const bob = await profileBy("email=bob@x.io");
      expect(bob.properties).toMatchObject({ Name: "Bob", Plan: "silver", Tags: ["solo"] });
      expect(bob.properties.Score).toBeUndefined();
    });

    it("applies an operation column on the row's handle column as /v1/ingest applies it, and refuses what it refuses", async () => {
      await s.api("POST", "/v1/ingest", {
        records: [{ type: "profile", identity: { Email: "hd@x.io" }, properties: { Name: "x" } }],
      });
      const before = await profileBy("email=hd@x.io");
      const csv = "Email,Email.operation,Name\nhd@x.io,$delete,Y\nhd2@x.io,$incr,Z\nhd3@x.io,$bogus,W\n";
      const r = await runImport(s, "profiles", csv);
      expect(r).toMatchObject({ status: "done", rows: 3, processed: 1, failed: 2 });
      // The row found its person by the handle cell, deleted the Email (identity and property), and set the Name.
      const after = (await s.api("GET", `/v1/profiles/${before.id}`)).body;
      expect(after.identities.Email).toBeUndefined();
      expect(after.properties.Email).toBeUndefined();
      expect(after.properties.Name).toBe("Y");
      expect(await profileBy("email=hd@x.io")).toBeNull();
      expect(await profileBy("email=hd2@x.io")).toBeNull();
      // The same records sent to /v1/ingest: the import's refusals have their codes and fields.
      const live = await s.api("POST", "/v1/ingest", {
        records: [
          { type: "profile", identity: { Email: "hd2@x.io" }, properties: { Email: { $incr: "hd2@x.io" } } },
          { type: "profile", identity: { Email: "hd3@x.io" }, properties: { Email: { $bogus: "hd3@x.io" } } },
          { type: "profile", identity: { Identity: "hd-u1" }, properties: { Identity: { $add: "hd-u1" } } },
        ],
      });
      const codes = live.body.unprocessed.map((u: { code: string; field: string }) => `${u.code} (${u.field})`);
      expect(codes).toEqual([
        "INVALID_OPERATION (properties.Email)",
        "INVALID_OPERATION (properties.Email)",
        "INVALID_OPERATION (properties.Identity)",
      ]);
      const report = (await failuresCsv(s, r.id)).trim().split("\r\n");
      expect(report[1]).toMatch(/^hd2@x\.io,\$incr,Z,"?INVALID_OPERATION \(properties\.Email\): /);
      expect(report[2]).toMatch(/^hd3@x\.io,\$bogus,W,"?INVALID_OPERATION \(properties\.Email\): /);
      const id = await runImport(s, "profiles", "Identity,Identity.operation\nhd-u1,$add\n");
      expect(id).toMatchObject({ processed: 0, failed: 1 });
      expect(await failuresCsv(s, id.id)).toContain("INVALID_OPERATION (properties.Identity): ");
      expect(await profileBy("identity=hd-u1")).toBeNull();
    });

    it("refuses a list cell that starts with [ but is no JSON array, and lets the engine judge its elements as ingest does", async () => {
      const csv =
        'Email,Tags,Tags.operation\nm1@x.io,"[""a""",$add\nm2@x.io,"[""a"",1]",$add\nm3@x.io,"[""a"",""b""]",$add\n';
      const r = await runImport(s, "profiles", csv);
      expect(r).toMatchObject({ status: "done", processed: 1, failed: 2 });
      expect(await profileBy("email=m1@x.io")).toBeNull();
      expect(await profileBy("email=m2@x.io")).toBeNull();
      expect((await profileBy("email=m3@x.io")).properties.Tags).toEqual(["a", "b"]);
      // The same element refused by /v1/ingest: the import's description has its code, field and sentence.
      const live = await s.api("POST", "/v1/ingest", {
        records: [{ type: "profile", identity: { Email: "m2@x.io" }, properties: { Tags: { $add: ["a", 1] } } }],
      });
      const u = live.body.unprocessed[0];
      expect(u.code).toBe("TYPE_MISMATCH");
      const report = (await failuresCsv(s, r.id)).trim().split("\r\n");
      expect(report[1]).toMatch(
        /^m1@x\.io,.*INVALID_VALUE \(.*Tags\): column ""Tags"" starts with ""\["" but is not a JSON array/,
      );
      expect(report[2]).toContain(`${u.code} (${u.field}): ${u.error.replaceAll('"', '""')}`);
    });

    it("reads cells of only white space as empty: nothing blanked, typed and untyped rows applied", async () => {
      await s.api("POST", "/v1/ingest", {
        records: [
          {
            type: "profile",
            identity: { Email: "ws1@x.io" },
            properties: { Name: "Ana", City: "Paris", WsN: 4, WsB: true, WsScore: 2 },
          },
        ],
      });
      const csv =
        'Email,Name,City,WsN,WsB,WsScore<number>\nws1@x.io,   ,"  ",,,\nws1@x.io,,,"  ",, \nws1@x.io,,, ,\t,\n';
      const r = await runImport(s, "profiles", csv);
      expect(r).toMatchObject({ status: "done", processed: 3, failed: 0 });
      expect((await profileBy("email=ws1@x.io")).properties).toMatchObject({
        Name: "Ana",
        City: "Paris",
        WsN: 4,
        WsB: true,
        WsScore: 2,
      });
    });

    it("reads date cells in the timezone the account has when their rows are read, if it changes during the import", async () => {
      const portrait = s.server.portrait;
      const ingest = portrait.ingest;
      let batches = 0;
      // After the first batch (1,000 rows) is applied, the account's timezone changes, as a PATCH through any node would.
      portrait.ingest = async (...args) => {
        const result = await ingest.apply(portrait, args);
        if (++batches === 1)
          expect((await s.api("PATCH", "/v1/account/settings", { timezone: "Asia/Tokyo" })).status).toBe(200);
        return result;
      };
      try {
        const rows = Array.from({ length: 1500 }, (_, i) => `zone${i}@x.io,01/07/2025 12:00`);
        const r = await runImport(s, "profiles", `Email,Seen<dd/MM/yyyy HH:mm>\n${rows.join("\n")}\n`);
        expect(r).toMatchObject({ status: "done", processed: 1500, failed: 0 });
      } finally {
        portrait.ingest = ingest;
        await s.api("PATCH", "/v1/account/settings", { timezone: "Europe/Paris" });
      }
      // Noon in Paris in July is 10:00 UTC; noon in Tokyo is 03:00 UTC.
      expect((await profileBy("email=zone0@x.io")).properties.Seen).toBe("2025-07-01T10:00:00.000Z");
      expect((await profileBy("email=zone1499@x.io")).properties.Seen).toBe("2025-07-01T03:00:00.000Z");
    });

    it("takes the handle from the first non-empty handle column and applies other identity columns as identities", async () => {
      const csv = "Identity,Email,Phone,City\nu-1,u1@x.io,+33 6 12 34 56 78,Lyon\n,u2@x.io,,Nice\n";
      const r = await runImport(s, "profiles", csv);
      expect(r).toMatchObject({ status: "done", processed: 2, failed: 0 });
      const u1 = await profileBy("identity=u-1");
      expect(u1.identities).toMatchObject({ Identity: "u-1", Email: "u1@x.io", Phone: "+33612345678" });
      expect(await profileBy("phone=%2B33612345678")).toMatchObject({ id: u1.id });
      expect((await profileBy("email=u2@x.io")).properties.City).toBe("Nice");
    });

    it("reads untyped cells with the key's registered type", async () => {
      await s.api("POST", "/v1/ingest", {
        records: [{ type: "profile", identity: { Email: "reg@x.io" }, properties: { Visits: 1, Vip: true } }],
      });
      const r = await runImport(s, "profiles", "Email,Visits,Vip\nreg@x.io,42,false\nreg2@x.io,many,true\n");
      expect(r).toMatchObject({ processed: 1, failed: 1 });
      expect((await profileBy("email=reg@x.io")).properties).toMatchObject({ Visits: 42, Vip: false });
      // As /v1/ingest refuses a string for a number key: TYPE_MISMATCH, the key, the expected and the given type.
      expect(await failuresCsv(s, r.id)).toContain(
        'TYPE_MISMATCH (properties.Visits): Property ""Visits"" is a number, got a string (""many"")',
      );
      const typed = await runImport(s, "profiles", "Email,Visits<number>\nreg3@x.io,lots\n");
      expect(await failuresCsv(s, typed.id)).toContain(
        'INVALID_VALUE (properties.Visits): column ""Visits<number>"" must be a number',
      );
    });

    it("writes refused rows, as read, to the failure report with the live API's codes", async () => {
      const csv = [
        "Email,Phone,Gender,Age,Name",
        "ok@x.io,,F,,Fine",
        "not-an-email,,,,Bad email",
        'phone@x.io,223,,,"Bad, phone"',
        "age@x.io,,,30,Age is derived",
        ",,,,No handle",
        "short@x.io,too,few",
      ].join("\r\n");
      const r = await runImport(s, "profiles", csv);
      expect(r).toMatchObject({ status: "done", rows: 6, processed: 1, failed: 5 });
      const report = (await failuresCsv(s, r.id)).trim().split("\r\n");
      expect(report[0]).toBe("Email,Phone,Gender,Age,Name,Failure Description");
      expect(report).toHaveLength(6);
      expect(report[1]).toMatch(/^not-an-email,,,,Bad email,"?INVALID_EMAIL/);
      expect(report[2]).toMatch(/^phone@x\.io,223,,,"Bad, phone","?INVALID_PHONE/);
      expect(report[3]).toMatch(/AGE_IS_DERIVED/);
      expect(report[4]).toMatch(/MISSING_HANDLE/);
      expect(report[5]).toMatch(/^short@x\.io,too,few,,,.*INVALID_RECORD.*3 cells/);
    });

    it("keeps every description under Failure Description: short rows padded, long rows' extra cells quoted in it", async () => {
      const csv = 'Email,Name,City\nc1@x.io,A\nc2@x.io,A,B,C\nc3@x.io,A,B,"x, ""y""",\nc4@x.io,A,B\n';
      const r = await runImport(s, "profiles", csv);
      expect(r).toMatchObject({ status: "done", rows: 4, processed: 1, failed: 3 });
      const { parse } = await import("csv-parse/sync");
      const report: string[][] = parse(await failuresCsv(s, r.id));
      expect(report).toEqual([
        ["Email", "Name", "City", "Failure Description"],
        ["c1@x.io", "A", "", "INVALID_RECORD: the row has 2 cells but the header has 3 columns"],
        [
          "c2@x.io",
          "A",
          "B",
          'INVALID_RECORD: the row has 4 cells but the header has 3 columns; the cells beyond the header: "C"',
        ],
        [
          "c3@x.io",
          "A",
          "B",
          'INVALID_RECORD: the row has 5 cells but the header has 3 columns; the cells beyond the header: "x, \\"y\\"", ""',
        ],
      ]);
    });

    it("names every field in the report one way, the record's JSON path as /v1/ingest names it", async () => {
      await s.api("POST", "/v1/ingest", {
        records: [{ type: "profile", identity: { Email: "f12@x.io" }, properties: { F12Price: 3 } }],
      });
      const csv = [
        "Email,F12Price,F12Amount<number>,F12Tags,F12Tags.operation,Gender,F12When<date>",
        "f12@x.io,cheap,,,,,",
        "f12@x.io,,lots,,,,",
        "f12@x.io,,,x,$frob,,",
        "f12@x.io,,,[x,$add,,",
        "f12@x.io,,,,,robot,",
        "f12@x.io,,,,,,soon",
        "not-an-email,,,,,,",
      ].join("\n");
      const r = await runImport(s, "profiles", `${csv}\n`);
      expect(r).toMatchObject({ processed: 0, failed: 7 });
      const { parse } = await import("csv-parse/sync");
      const rows: string[][] = parse(await failuresCsv(s, r.id));
      const fields = rows.slice(1).map((row) => /^[A-Z_]+ \(([^)]*)\)/.exec(row.at(-1) as string)?.[1]);
      expect(fields).toEqual([
        "properties.F12Price",
        "properties.F12Amount",
        "properties.F12Tags",
        "properties.F12Tags",
        "properties.Gender",
        "properties.F12When",
        "identity.Email",
      ]);
      // Column-level messages quote the column as the header has it.
      expect(rows[2]?.at(-1)).toContain('column "F12Amount<number>" must be a number');
      expect(rows[3]?.at(-1)).toContain('column "F12Tags.operation" must be one of');
      // The same refusal from /v1/ingest names the same field.
      const live = await s.api("POST", "/v1/ingest", {
        records: [{ type: "profile", identity: { Email: "f12@x.io" }, properties: { Gender: "robot" } }],
      });
      expect(live.body.unprocessed[0].field).toBe("properties.Gender");
    });

    it("refuses <date> cells that are not a date (0, -5, 1.5) with INVALID_DATE, and reads YYYYMMDD as a day", async () => {
      const csv = "Email,DD<date>\ndd1@x.io,20241120\ndd2@x.io,0\ndd3@x.io,-5\ndd4@x.io,1.5\ndd5@x.io,1732000000\n";
      const r = await runImport(s, "profiles", csv);
      expect(r).toMatchObject({ processed: 2, failed: 3 });
      expect((await profileBy("email=dd1@x.io")).properties.DD).toBe("2024-11-19T23:00:00.000Z");
      expect((await profileBy("email=dd5@x.io")).properties.DD).toBe("2024-11-19T07:06:40.000Z");
      expect(await profileBy("email=dd2@x.io")).toBeNull();
      const report = await failuresCsv(s, r.id);
      expect(report).toContain(
        'dd2@x.io,0,"INVALID_DATE (properties.DD): column ""DD<date>"" must be a date: YYYY-MM-DD',
      );
    });

    it("refuses a __proto__ column's cells with the live API's INVALID_KEY instead of dropping them", async () => {
      const csv = 'Email,__proto__,constructor\nproto1@x.io,"{""polluted"":1}",c\nproto2@x.io,,c\n';
      const r = await runImport(s, "profiles", csv);
      expect(r).toMatchObject({ processed: 1, failed: 1 });
      expect(await failuresCsv(s, r.id)).toMatch(/proto1@x\.io.*INVALID_KEY \(properties\.__proto__\)/);
      expect(await profileBy("email=proto1@x.io")).toBeNull();
      expect((await profileBy("email=proto2@x.io")).properties.constructor).toBe("c");
      const ev = await runImport(s, "events", "Email,evtName,__proto__\nproto3@x.io,Seen,x\n");
      expect(ev).toMatchObject({ processed: 0, failed: 1 });
      expect(await failuresCsv(s, ev.id)).toMatch(/INVALID_KEY \(properties\.__proto__\)/);
    });

    it("keeps SQL-looking and spreadsheet-formula cells as plain data", async () => {
      const hostile = [
        "'; DROP TABLE profiles; --",
        '=HYPERLINK("http://evil","x")',
        "+cmd|' /C calc'!A0",
        "@SUM(1+1)",
        "Robert'); DELETE FROM identities;--",
      ];
      const csv = `Email,Note\n${hostile.map((h, i) => `h${i}@x.io,"${h.replaceAll('"', '""')}"`).join("\n")}\n`;
      const r = await runImport(s, "profiles", csv);
      expect(r).toMatchObject({ status: "done", processed: hostile.length });
      for (const [i, h] of hostile.entries()) expect((await profileBy(`email=h${i}@x.io`)).properties.Note).toBe(h);
      expect(await profileBy("email=ana@x.io")).not.toBeNull();
    });
  });

  describe("events CSV and NDJSON", () => {
    it("stores events from a CSV with evtName, ts and typed properties", async () => {
      const csv =
        "Email,evtName,ts,Amount<number>,Product\nev@x.io,Charged,1732000000,59.9,Shoe\nev@x.io,Viewed,2024-11-20T10:00:00Z,,Hat\nev@x.io,,1732000000,,\n";
      const r = await runImport(s, "events", csv);
      expect(r).toMatchObject({ status: "done", rows: 3, processed: 2, failed: 1 });
      const p = await profileBy("email=ev@x.io");
      const events = (await s.api("GET", `/v1/profiles/${p.id}/events`)).body.events;
      const names = events.map((e: { name: string }) => e.name);
      expect(names).toEqual(expect.arrayContaining(["Charged", "Viewed"]));
      expect(events.find((e: { name: string }) => e.name === "Charged").properties).toEqual({
        Amount: 59.9,
        Product: "Shoe",
      });
      expect(p.type).toBe("customer");
      expect(await failuresCsv(s, r.id)).toMatch(/INVALID_EVENT_NAME/);
    });

    it("reads an events CSV ts by the <date> rules (20241120 is that day in the account timezone), and NDJSON ts strings too", async () => {
      const csv = "Email,evtName,ts\nts1@x.io,E,20241120\nts1@x.io,F,1732000000\nts1@x.io,G,0\nts1@x.io,H,2024-02-30\n";
      const r = await runImport(s, "events", csv);
      expect(r).toMatchObject({ status: "done", rows: 4, processed: 2, failed: 2 });
      const p = await profileBy("email=ts1@x.io");
      const events = (await s.api("GET", `/v1/profiles/${p.id}/events`)).body.events;
      const at = (name: string) => events.find((e: { name: string }) => e.name === name)?.ts;
      // Midnight in Paris; the Identity Set written for the new person has the row's ts too.
      expect(at("E")).toBe("2024-11-19T23:00:00.000Z");
      expect(at("F")).toBe("2024-11-19T07:06:40.000Z");
      expect(at("Identity Set")).toBe("2024-11-19T23:00:00.000Z");
      expect(p.system.firstSeen).toBe("2024-11-19T07:06:40.000Z");
      const report = await failuresCsv(s, r.id);
      expect(report).toContain(
        'ts1@x.io,G,0,"INVALID_TIMESTAMP (ts): column ""ts"" must be a date: YYYY-MM-DD, YYYYMMDD',
      );
      expect(report).toContain('ts1@x.io,H,2024-02-30,"INVALID_TIMESTAMP (ts): column ""ts"" must be a date');
      const nd = await runImport(
        s,
        "events",
        ndjson(
          { identity: { Email: "ts2@x.io" }, name: "E", ts: "20241120" },
          { identity: { Email: "ts2@x.io" }, name: "F", ts: "12345" },
        ),
        "application/x-ndjson",
      );
      expect(nd).toMatchObject({ processed: 1, failed: 1 });
      const q = await profileBy("email=ts2@x.io");
      const e2 = (await s.api("GET", `/v1/profiles/${q.id}/events`)).body.events;
      expect(e2.find((e: { name: string }) => e.name === "E").ts).toBe("2024-11-19T23:00:00.000Z");
      expect(await failuresCsv(s, nd.id)).toContain("INVALID_TIMESTAMP (ts)");
    });

    it('trims event names, so a reserved name with a space is refused and " Charged " is a purchase', async () => {
      const csv =
        'Email,evtName,Amount\nre@x.io, Identity Set,\nre@x.io,Identity Set ,\nx1@x.io, Charged ,12.5\nx1@x.io," ",\n';
      const r = await runImport(s, "events", csv);
      expect(r).toMatchObject({ status: "done", rows: 4, processed: 1, failed: 3 });
      const report = (await failuresCsv(s, r.id)).trim().split("\r\n");
      expect(report.slice(1).map((l) => /(RESERVED_EVENT_NAME|INVALID_EVENT_NAME)/.exec(l)?.[1])).toEqual([
        "RESERVED_EVENT_NAME",
        "RESERVED_EVENT_NAME",
        "INVALID_EVENT_NAME",
      ]);
      const p = await profileBy("email=x1@x.io");
      expect(p).toMatchObject({ type: "customer", stats: { revenue: 12.5 } });
      const events = (await s.api("GET", `/v1/profiles/${p.id}/events`)).body.events;
      expect(events.find((e: { name: string }) => e.name === "Charged").properties).toEqual({ Amount: 12.5 });
      const nd = await runImport(
        s,
        "events",
        ndjson({ identity: { Email: "re@x.io" }, name: "Profile Demerged " }),
        "application/x-ndjson",
      );
      expect(nd).toMatchObject({ processed: 0, failed: 1 });
      expect(await failuresCsv(s, nd.id)).toContain("RESERVED_EVENT_NAME");
    });

    it("imports NDJSON ingest records, and a second upload of the same file applies nothing twice", async () => {
      const file = ndjson(
        { identity: { Email: "nd@x.io" }, properties: { Points: { $incr: 10 } } },
        { type: "event", identity: { Email: "nd@x.io" }, name: "Signed Up", ts: 1732000000 },
        "",
        "{not json",
        { type: "profile", identity: { Email: "nd@x.io" }, properties: { Points: { $incr: 5 } } },
      );
      const first = await runImport(s, "profiles", file.replace(/^.*Signed Up.*\n/m, ""), "application/x-ndjson");
      expect(first).toMatchObject({ status: "done", rows: 3, processed: 2, failed: 1 });
      const again = await runImport(s, "profiles", file.replace(/^.*Signed Up.*\n/m, ""), "application/x-ndjson");
      expect(again).toMatchObject({ status: "done", rows: 3, processed: 2, failed: 1 });
      expect((await profileBy("email=nd@x.io")).properties.Points).toBe(15);
      const events = ndjson({ identity: { Email: "nd@x.io" }, name: "Signed Up", ts: 1732000000 });
      await runImport(s, "events", events, "application/x-ndjson");
      await runImport(s, "events", events, "application/x-ndjson");
      const p = await profileBy("email=nd@x.io");
      const list = (await s.api("GET", `/v1/profiles/${p.id}/events`)).body.events;
      expect(list.filter((e: { name: string }) => e.name === "Signed Up")).toHaveLength(1);
    });

    it("applies the same bytes imported again as another kind; the same file and kind again still applies nothing", async () => {
      const csv = "Email,evtName,ts,Amount<number>\ncross@x.io,Charged,1732000000,10\n";
      expect(await runImport(s, "profiles", csv)).toMatchObject({ processed: 1, failed: 0 });
      const p = await profileBy("email=cross@x.io");
      expect(p.properties.evtName).toBe("Charged");
      expect(await runImport(s, "events", csv)).toMatchObject({ processed: 1, failed: 0 });
      expect(await runImport(s, "events", csv)).toMatchObject({ processed: 1, failed: 0 });
      const list = (await s.api("GET", `/v1/profiles/${p.id}/events`)).body.events;
      expect(list.filter((e: { name: string }) => e.name === "Charged")).toHaveLength(1);
    });

    it("a file whose rows were applied under the file-hash key (before 2026-11-24) applies nothing when sent again", async () => {
      const csv = "Email,Points,Points.operation\nlegacy1@x.io,5,$incr\nlegacy2@x.io,7,$incr\n";
      const sha = createHash("sha256").update(csv).digest("hex");
      // What an earlier build's import of this file left: its rows applied under imp:<file sha256>:<row>.
      const earlier = await s.api("POST", "/v1/ingest", {
        records: [
          {
            type: "profile",
            id: `imp:${sha}:1`,
            identity: { Email: "legacy1@x.io" },
            properties: { Points: { $incr: 5 } },
          },
          {
            type: "profile",
            id: `imp:${sha}:2`,
            identity: { Email: "legacy2@x.io" },
            properties: { Points: { $incr: 7 } },
          },
        ],
      });
      expect(earlier.body.status).toBe("success");
      expect(await runImport(s, "profiles", csv)).toMatchObject({ processed: 2, failed: 0 });
      expect((await profileBy("email=legacy1@x.io")).properties.Points).toBe(5);
      expect((await profileBy("email=legacy2@x.io")).properties.Points).toBe(7);
    });

    it("refuses records of the wrong type for the kind", async () => {
      const r = await runImport(
        s,
        "events",
        ndjson({ type: "profile", identity: { Email: "x@x.io" }, properties: {} }),
        "application/x-ndjson",
      );
      expect(r).toMatchObject({ processed: 0, failed: 1 });
      expect(await failuresCsv(s, r.id)).toMatch(/^Line,Failure Description\r\n"\{""type"":""profile""/);
    });
  });

  describe("documents NDJSON (mediarithmics)", () => {
    it("upserts by user account (creating the person), replaces, merges shallow and deep, and deletes", async () => {
      const base = { operation: "UPSERT", compartment_id: "1606", user_account_id: "crm-1" };
      const r = await runImport(
        s,
        "documents",
        ndjson(
          {
            ...base,
            force_replace: true,
            user_profile: { $compartment_id: 1606, firstname: "David", opts: { a: 1, b: 2 }, list: [1, 2] },
          },
          { ...base, force_replace: false, merge_objects: false, user_profile: { lastname: "G", opts: { c: 3 } } },
          { ...base, force_replace: false, merge_objects: true, user_profile: { opts: { d: 4 }, list: [3] } },
          { operation: "UPSERT", compartment_id: "1606", user_account_id: "crm-2", user_profile: { x: 1 } },
          { operation: "DELETE", compartment_id: "1606", user_account_id: "crm-2" },
        ),
        "application/x-ndjson",
      );
      expect(r).toMatchObject({ status: "done", rows: 5, processed: 5, failed: 0 });
      const p = await profileBy("compartmentId=1606&userAccountId=crm-1");
      const doc = (await s.api("GET", `/v1/profiles/${p.id}/documents/1606/crm-1`)).body;
      expect(doc).toMatchObject({
        $compartment_id: 1606,
        $user_account_id: "crm-1",
        firstname: "David",
        lastname: "G",
        opts: { c: 3, d: 4 },
        list: [3],
      });
      expect(typeof doc.$creation_ts).toBe("number");
      const two = await profileBy("compartmentId=1606&userAccountId=crm-2");
      expect((await s.api("GET", `/v1/profiles/${two.id}/documents`)).body.documents).toEqual([]);
    });

    it("force_replace keeps the stored system fields, a client's own ids included, unless the new document gives them", async () => {
      const line = (extra: Record<string, unknown>) => ({
        operation: "UPSERT",
        compartment_id: "C8",
        user_account_id: "u8",
        ...extra,
      });
      const first = await runImport(
        s,
        "documents",
        ndjson(line({ user_profile: { firstname: "David", $user_account_id: "other", $compartment_id: "zzz" } })),
        "application/x-ndjson",
      );
      expect(first).toMatchObject({ processed: 1, failed: 0 });
      const p = await profileBy("compartmentId=C8&userAccountId=u8");
      const doc = async () => (await s.api("GET", `/v1/profiles/${p.id}/documents/C8/u8`)).body;
      const stored = await doc();
      expect(stored).toMatchObject({ $compartment_id: "zzz", $user_account_id: "other", firstname: "David" });
      const replaced = await runImport(
        s,
        "documents",
        ndjson(line({ force_replace: true, user_profile: { only: "this" } })),
        "application/x-ndjson",
      );
      expect(replaced).toMatchObject({ processed: 1, failed: 0 });
      const after = await doc();
      expect(after).toEqual({
        $compartment_id: "zzz",
        $user_account_id: "other",
        only: "this",
        $creation_ts: stored.$creation_ts,
        $last_modified_ts: expect.any(Number),
      });
      expect(after.$last_modified_ts).toBeGreaterThanOrEqual(stored.$last_modified_ts);
      // The new document's own ids are stored as given; the one it leaves out stays as stored.
      await runImport(
        s,
        "documents",
        ndjson(line({ force_replace: true, user_profile: { $user_account_id: "mine", again: 1 } })),
        "application/x-ndjson",
      );
      expect(await doc()).toMatchObject({ $compartment_id: "zzz", $user_account_id: "mine", again: 1 });
      expect((await doc()).only).toBeUndefined();
    });

    it("refuses an UPSERT whose user_profile is missing or null, as it refuses [1,2], and creates nobody", async () => {
      const r = await runImport(
        s,
        "documents",
        ndjson(
          { operation: "UPSERT", compartment_id: "C9", user_account_id: "n14", user_profile: null },
          { operation: "UPSERT", compartment_id: "C9", user_account_id: "n15" },
          { operation: "UPSERT", compartment_id: "C9", user_account_id: "n16", user_profile: [1, 2] },
          { operation: "UPSERT", compartment_id: "C9", user_account_id: "n17", user_profile: {} },
          { operation: "DELETE", compartment_id: "C9", user_account_id: "n17" },
        ),
        "application/x-ndjson",
      );
      expect(r).toMatchObject({ status: "done", rows: 5, processed: 2, failed: 3 });
      for (const ua of ["n14", "n15", "n16"])
        expect(await profileBy(`compartmentId=C9&userAccountId=${ua}`)).toBeNull();
      const report = (await failuresCsv(s, r.id)).trim().split("\r\n");
      expect(
        report
          .slice(1)
          .map(
            (l) => /INVALID_DOCUMENT \(user_profile\): user_profile must be a JSON object, got ([^"]*)/.exec(l)?.[1],
          ),
      ).toEqual(["null", "none", "[1,2]"]);
    });

    it("finds people by email_hash and user_point_id; unknown ones are UNKNOWN_PROFILE", async () => {
      await s.api("POST", "/v1/ingest", {
        records: [{ type: "profile", identity: { Email: "hash@x.io" }, properties: {} }],
      });
      const p = await profileBy("email=hash@x.io");
      const hash = createHash("sha256").update("hash@x.io").digest("hex");
      const r = await runImport(
        s,
        "documents",
        ndjson(
          { operation: "UPSERT", compartment_id: "7", email_hash: hash, user_profile: { tier: "A" } },
          { operation: "UPSERT", compartment_id: "8", user_point_id: p.id, user_profile: { tier: "B" } },
          { operation: "UPSERT", compartment_id: "7", email_hash: "0".repeat(64), user_profile: {} },
          { operation: "UPSERT", compartment_id: "7", user_point_id: "f".repeat(32), user_profile: {} },
          { operation: "MERGE", compartment_id: "7", user_account_id: "z" },
          { operation: "UPSERT", user_account_id: "big", user_profile: { blob: "x".repeat(70 * 1024) } },
          { operation: "UPSERT", user_account_id: "a", email_hash: hash },
        ),
        "application/x-ndjson",
      );
      expect(r).toMatchObject({ processed: 2, failed: 5 });
      const docs = (await s.api("GET", `/v1/profiles/${p.id}/documents`)).body.documents;
      expect(docs.map((d: { tier: string }) => d.tier).sort()).toEqual(["A", "B"]);
      const report = await failuresCsv(s, r.id);
      expect(report.match(/UNKNOWN_PROFILE/g)).toHaveLength(2);
      expect(report).toMatch(/DOCUMENT_TOO_LARGE/);
      expect(report).toMatch(/MULTIPLE_HANDLES/);
    });

    // SEMANTICS §7: journalled with the identifier the line named, not the profile it was resolved to.
    it("an undone merge routes lines applied after it by their identifier, and reports what it could not apply", async () => {
      const login = async (deviceId: string, properties: Record<string, string>) =>
        (await s.api("POST", "/v1/ingest", { records: [{ type: "login", deviceId, properties }] })).body.results[0]
          .profileId as string;
      const t = await login("undo-doc-t", { Identity: "undo-doc-t" });
      const src = await login("undo-doc-s", { Email: "undo-doc-s@x.io" });
      for (const ua of ["uaS", "uaS2"]) {
        expect((await s.api("PUT", `/v1/profiles/${src}/documents/cu/${ua}`, { before: 1 })).status).toBe(200);
      }
      const merge = await s.api("POST", "/v1/profiles/merge", { targetId: t, sourceId: src });
      expect(merge.status).toBe(200);
      const hash = createHash("sha256").update("undo-doc-s@x.io").digest("hex");
      const lines = await runImport(
        s,
        "documents",
        ndjson(
          { operation: "UPSERT", compartment_id: "cu", user_account_id: "uaS", user_profile: { viaImport: 1 } },
          { operation: "UPSERT", compartment_id: "c_upid", user_point_id: src, user_profile: { viaSourceId: 1 } },
          { operation: "UPSERT", compartment_id: "c_hash", email_hash: hash, user_profile: { viaEmailHash: 1 } },
        ),
        "application/x-ndjson",
      );
      expect(lines).toMatchObject({ processed: 3, failed: 0 });
      // Through the target's id: routed to the target again, which cannot write the source's user account.
      expect((await s.api("PUT", `/v1/profiles/${t}/documents/cu/uaS2`, { viaPutTarget: 1 })).status).toBe(200);

      const undo = await s.api("POST", `/v1/merges/${merge.body.mergeId}/undo`);
      expect(undo.status).toBe(200);
      expect(undo.body.unapplied).toEqual([
        {
          profileId: t,
          key: "document",
          value: JSON.stringify(["cu", "uaS2"]),
          code: "RECORD_NOT_REPLAYED",
          reason: "IDENTITY_CONFLICT",
        },
      ]);
      const docs = async (id: string) =>
        (await s.api("GET", `/v1/profiles/${id}/documents`)).body.documents.map(
          ({ $creation_ts: _c, $last_modified_ts: _m, ...d }: Record<string, unknown>) => d,
        );
      expect(await docs(t)).toEqual([]);
      expect(await docs(src)).toEqual([
        { $compartment_id: "c_hash", $user_account_id: src, viaEmailHash: 1 },
        { $compartment_id: "c_upid", $user_account_id: src, viaSourceId: 1 },
        { $compartment_id: "cu", $user_account_id: "uaS", before: 1, viaImport: 1 },
        { $compartment_id: "cu", $user_account_id: "uaS2", before: 1 },
      ]);
    });

    it("takes NDJSON only", async () => {
      const r = await upload(s, "documents", "a,b\n1,2\n", "text/csv");
      expect(r).toMatchObject({ status: 415, body: { error: { code: "UNSUPPORTED_MEDIA_TYPE" } } });
    });
  });

  describe("uploads", () => {
    it("keeps a raw upload's ?fileName= for the list, and refuses one it cannot keep", async () => {
      const url = (q: string) => `${s.url}/v1/imports?kind=profiles&${q}`;
      const post = (q: string) =>
        fetch(url(q), {
          method: "POST",
          headers: { authorization: `Bearer ${SECRET}`, "content-type": "text/csv" },
          body: "Email\nnamed@x.io\n",
        });
      const named = await post("fileName=crm%20export.csv");
      expect(named.status).toBe(202);
      const id = ((await named.json()) as { id: string }).id;
      expect((await s.api("GET", `/v1/imports/${id}`)).body).toMatchObject({ fileName: "crm export.csv" });
      for (const bad of [`fileName=${"x".repeat(256)}`, "fileName=a%00b", "fileName=a&fileName=b"]) {
        const refused = await post(bad);
        expect(refused.status, bad).toBe(400);
        expect(((await refused.json()) as { error: { field: string } }).error.field).toBe("fileName");
      }
    });

    it("accepts a multipart field named file", async () => {
      const form = new FormData();
      form.append("file", new Blob(["Email,Name\nmp@x.io,Multi\n"], { type: "text/csv" }), "people.csv");
      const res = await fetch(`${s.url}/v1/imports?kind=profiles`, {
        method: "POST",
        headers: { authorization: `Bearer ${SECRET}` },
        body: form,
      });
      expect(res.status).toBe(202);
      const { id } = (await res.json()) as { id: string };
      expect(await waitForImport(s, id)).toMatchObject({ status: "done", processed: 1 });
      expect((await profileBy("email=mp@x.io")).properties.Name).toBe("Multi");
    });

    it("refuses a multipart file name it cannot keep, naming file, and imports nothing", async () => {
      const before = (await s.api("GET", "/v1/imports?limit=1000")).body.imports.length;
      // Raw bytes: FormData would escape what this sends as it is. A name past 80 KB is also cut by the part's
      // header limit, with its Content-Type after it: it answered 415 "got text/plain".
      const send = (name: string) =>
        fetch(`${s.url}/v1/imports?kind=profiles`, {
          method: "POST",
          headers: { authorization: `Bearer ${SECRET}`, "content-type": "multipart/form-data; boundary=b0undary" },
          body: Buffer.concat([
            Buffer.from('--b0undary\r\nContent-Disposition: form-data; name="file"; filename="'),
            Buffer.from(name, "utf8"),
            Buffer.from('"\r\nContent-Type: text/csv\r\n\r\nEmail\nnamed-part@x.io\n\r\n--b0undary--\r\n'),
          ]),
        });
      const refusals: Array<[string, string]> = [
        ["a\u0000b.csv", "the file part's filename must not contain NUL characters"],
        [`${"x".repeat(252)}.csv`, "the file part's filename must be at most 255 characters: it has 256"],
        [`${"x".repeat(100_000)}.csv`, "the file part's filename must be at most 255 characters: it has"],
      ];
      for (const [name, message] of refusals) {
        const res = await send(name);
        const body = (await res.json()) as { error: { code: string; field: string; message: string } };
        expect(res.status, name.slice(0, 20)).toBe(400);
        expect(body.error).toMatchObject({ code: "INVALID_VALUE", field: "file" });
        expect(body.error.message.startsWith(message), body.error.message).toBe(true);
      }
      expect((await s.api("GET", "/v1/imports?limit=1000")).body.imports.length).toBe(before);
      expect(await profileBy("email=named-part@x.io")).toBeNull();
      const kept = await send(`${"x".repeat(251)}.csv`);
      expect(kept.status).toBe(202);
      const { id } = (await kept.json()) as { id: string };
      expect(await waitForImport(s, id)).toMatchObject({ fileName: `${"x".repeat(251)}.csv`, processed: 1 });
    });

    it("refuses a second file part (400 naming file) and too many fields (413 saying so); nothing is imported", async () => {
      const before = (await s.api("GET", "/v1/imports?limit=1000")).body.imports.length;
      const post = (form: FormData, query = "") =>
        fetch(`${s.url}/v1/imports?kind=profiles${query}`, {
          method: "POST",
          headers: { authorization: `Bearer ${SECRET}` },
          body: form,
        });
      for (const second of ["file", "other"]) {
        const two = new FormData();
        two.append("file", new Blob(["Email\ntwo1@x.io\n"], { type: "text/csv" }), "one.csv");
        two.append(second, new Blob(["Email\ntwo2@x.io\n"], { type: "text/csv" }), "two.csv");
        const res = await post(two);
        expect(res.status, second).toBe(400);
        expect(await res.json()).toEqual({
          error: {
            code: "INVALID_BODY",
            field: "file",
            message: 'a multipart import takes one file, in the field "file": this body has more than one file part',
          },
        });
      }
      const fields = new FormData();
      for (let i = 0; i < 50; i++) fields.append(`f${i}`, "x");
      fields.append("file", new Blob(["Email\nfields@x.io\n"], { type: "text/csv" }), "f.csv");
      const many = await post(fields);
      expect(many.status).toBe(413);
      expect(await many.json()).toEqual({
        error: {
          code: "PAYLOAD_TOO_LARGE",
          field: "file",
          message: 'a multipart import takes its "file" part and at most 10 other fields: this body has more parts',
        },
      });
      expect((await s.api("GET", "/v1/imports?limit=1000")).body.imports.length).toBe(before);
      expect(await profileBy("email=two1@x.io")).toBeNull();
      // One file with a few fields around it is still an import.
      const fine = new FormData();
      fine.append("note", "x");
      fine.append("file", new Blob(["Email\nfine-mp@x.io\n"], { type: "text/csv" }), "fine.csv");
      fine.append("after", "y");
      const ok = await post(fine);
      expect(ok.status).toBe(202);
      expect(await waitForImport(s, ((await ok.json()) as { id: string }).id)).toMatchObject({ processed: 1 });
    });

    it("refuses ?charset= given twice, naming it (raw and multipart)", async () => {
      for (const query of ["&charset=utf-8&charset=utf-8", "&charset=utf-8&charset=latin1"]) {
        const raw = await fetch(`${s.url}/v1/imports?kind=profiles${query}`, {
          method: "POST",
          headers: { authorization: `Bearer ${SECRET}`, "content-type": "text/csv" },
          body: "Email\ntwice@x.io\n",
        });
        expect(raw.status).toBe(400);
        expect(await raw.json()).toEqual({
          error: { code: "INVALID_VALUE", field: "charset", message: "charset must be given once" },
        });
        const form = new FormData();
        form.append("file", new Blob(["Email\ntwice@x.io\n"], { type: "text/csv" }), "t.csv");
        const res = await fetch(`${s.url}/v1/imports?kind=profiles${query}`, {
          method: "POST",
          headers: { authorization: `Bearer ${SECRET}` },
          body: form,
        });
        expect(res.status).toBe(400);
        expect(((await res.json()) as { error: { field: string } }).error.field).toBe("charset");
      }
      expect(await profileBy("email=twice@x.io")).toBeNull();
    });

    it("refuses a broken multipart body with 400, and nothing of it is kept", async () => {
      const post = (body: string, contentType: string) =>
        fetch(`${s.url}/v1/imports?kind=profiles`, {
          method: "POST",
          headers: { authorization: `Bearer ${SECRET}`, "content-type": contentType },
          body,
        });
      const cutOff =
        '--xx\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\nEmail\nbroken@x.io\n';
      for (const [body, contentType] of [
        [cutOff, "multipart/form-data; boundary=xx"],
        [cutOff, "multipart/form-data; boundary=yy"],
        [cutOff, "multipart/form-data"],
      ] as const) {
        const res = await post(body, contentType);
        expect(res.status, contentType).toBe(400);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe("INVALID_BODY");
      }
      expect(await profileBy("email=broken@x.io")).toBeNull();
    });

    it("refuses unknown kinds, other content types and files over the limit", async () => {
      expect(await upload(s, "widgets", "Email\na@x.io\n")).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_VALUE" } },
      });
      expect(await upload(s, "profiles", '{"records": []}', "application/json")).toMatchObject({
        status: 415,
        body: { error: { code: "UNSUPPORTED_MEDIA_TYPE" } },
      });
      expect(await upload(s, "profiles", "<x/>", "application/xml")).toMatchObject({ status: 415 });
      const big = `Email,Note\n${`a@x.io,${"x".repeat(1000)}\n`.repeat(2200)}`;
      expect(await upload(s, "profiles", big)).toMatchObject({
        status: 413,
        body: { error: { code: "PAYLOAD_TOO_LARGE" } },
      });
      const form = new FormData();
      form.append("file", new Blob([big], { type: "text/csv" }), "big.csv");
      const res = await fetch(`${s.url}/v1/imports?kind=profiles`, {
        method: "POST",
        headers: { authorization: `Bearer ${SECRET}` },
        body: form,
      });
      expect(res.status).toBe(413);
      const wrongField = new FormData();
      wrongField.append("upload", new Blob(["Email\n"], { type: "text/csv" }), "x.csv");
      const bad = await fetch(`${s.url}/v1/imports?kind=profiles`, {
        method: "POST",
        headers: { authorization: `Bearer ${SECRET}` },
        body: wrongField,
      });
      expect(bad.status).toBe(400);
    });

    it("needs a secret key, and another account's import is UNKNOWN_IMPORT", async () => {
      const anon = await fetch(`${s.url}/v1/imports?kind=profiles`, { method: "POST", body: "Email\n" });
      expect(anon.status).toBe(401);
      const r = await runImport(s, "profiles", "Email\nmine@x.io\n");
      const other = await s.server.portrait.store.listAccounts();
      expect(other.length).toBeGreaterThan(0);
      const { Accounts } = await import("../pipeline/accounts.js");
      const created = await new Accounts(s.server.store).create("other");
      const headers = { authorization: `Bearer ${created.secretKey}` };
      for (const path of [`/v1/imports/${r.id}`, `/v1/imports/${r.id}/failures.csv`, "/v1/imports/nope"]) {
        const res = await fetch(s.url + path, { headers });
        expect(res.status).toBe(404);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe("UNKNOWN_IMPORT");
      }
    });
  });

  describe("files that cannot be read", () => {
    it("marks the import failed at broken CSV quoting and keeps the rows before it", async () => {
      const csv = 'Email,Name\nq1@x.io,One\nq2@x.io,"Two\nq3@x.io,Three\n';
      const r = await runImport(s, "profiles", csv);
      expect(r.status).toBe("failed");
      expect(r.error).toMatch(/CSV could not be read/);
      expect(r.processed).toBe(1);
      expect(await profileBy("email=q1@x.io")).not.toBeNull();
      expect(await profileBy("email=q3@x.io")).toBeNull();
    });

    it("fails on a header it cannot use, and on an empty file", async () => {
      expect(await runImport(s, "profiles", "Name,City\nAna,Paris\n")).toMatchObject({
        status: "failed",
        processed: 0,
      });
      expect(await runImport(s, "profiles", "Email,Born<qq/ww>\na@x.io,1\n")).toMatchObject({ status: "failed" });
      expect(await runImport(s, "events", "Email,Name\na@x.io,x\n")).toMatchObject({ status: "failed" });
      expect(await runImport(s, "profiles", "")).toMatchObject({ status: "failed", rows: 0 });
    });

    it("fails a CSV wider than 1,024 columns at its header, and refuses an NDJSON line of more than 32,768 keys as a row", async () => {
      const header = ["Email", ...Array.from({ length: 1100 }, (_, i) => `c${i}`)].join(",");
      const wide = await runImport(
        s,
        "profiles",
        `${header}
wide@x.io,${Array(1100).fill("1").join(",")}
`,
      );
      expect(wide).toMatchObject({ status: "failed", rows: 0, processed: 0, failed: 0 });
      expect(wide.error).toBe(
        "the CSV header cannot be used: the header has 1101 columns, more than 1024, the most a CSV import may have (a record holds at most 256 custom properties)",
      );
      expect(await profileBy("email=wide@x.io")).toBeNull();
      const keys = Object.fromEntries(Array.from({ length: 40_000 }, (_, i) => [`k${i}`, 1]));
      const r = await runImport(
        s,
        "profiles",
        ndjson(
          { identity: { Email: "manykeys@x.io" }, properties: { Nested: keys } },
          { identity: { Email: "fewkeys@x.io" }, properties: { Name: "Few" } },
        ),
        "application/x-ndjson",
      );
      expect(r).toMatchObject({ status: "done", rows: 2, processed: 1, failed: 1 });
      expect(await failuresCsv(s, r.id)).toContain(
        "INVALID_RECORD: the line has 40004 keys, more than 32768, the most one NDJSON line may hold: it is not read",
      );
      expect(await profileBy("email=manykeys@x.io")).toBeNull();
      expect((await profileBy("email=fewkeys@x.io"))?.properties.Name).toBe("Few");
    });

    it("refuses an over-long NDJSON line as one row and goes on; a huge CSV row fails the file", async () => {
      const long = JSON.stringify({ identity: { Email: "long@x.io" }, properties: { Note: "x".repeat(1_100_000) } });
      const r = await runImport(
        s,
        "profiles",
        `${long}\n${JSON.stringify({ identity: { Email: "after@x.io" }, properties: { Name: "After" } })}\n`,
        "application/x-ndjson",
      );
      expect(r).toMatchObject({ status: "done", rows: 2, processed: 1, failed: 1 });
      // The report's Line cell is the line's first 200 bytes, and the description says so, with its length and number.
      const { parse } = await import("csv-parse/sync");
      const [header, row] = parse(await failuresCsv(s, r.id)) as string[][];
      expect(header).toEqual(["Line", "Failure Description"]);
      expect(row?.[0]).toBe(`${long.slice(0, 200)}…`);
      expect(row?.[1]).toBe(
        `INVALID_RECORD: line 1 is ${long.length} bytes, longer than 1048576 bytes, the limit of one NDJSON line: it is not read, and this report shows only its first 200 bytes followed by "…"`,
      );
      const csv = `Email,Note\nsmall@x.io,ok\nbig@x.io,${"y".repeat(1_100_000)}\nafter@x.io,z\n`;
      const big = await runImport(s, "profiles", csv);
      expect(big).toMatchObject({ status: "failed", rows: 2, processed: 1, failed: 1 });
      expect(big.error).toMatch(/^row 2 is longer than 1048576 bytes, the limit of one CSV record/);
      expect(await failuresCsv(s, big.id)).toContain('big@x.io,,"INVALID_RECORD: the record is longer than 1048576');
    });

    it("stores bytes that are not UTF-8 or hold NUL as refused rows, not as a broken import", async () => {
      const bytes = Buffer.concat([
        Buffer.from("Email,Name\nnul@x.io,A\u0000B\nlatin@x.io,"),
        Buffer.from([0xe9, 0xff]),
        Buffer.from("\nfine@x.io,Fine\n"),
      ]);
      const r = await runImport(s, "profiles", bytes);
      expect(r).toMatchObject({ status: "done", rows: 3, processed: 1, failed: 2 });
      expect((await profileBy("email=fine@x.io")).properties.Name).toBe("Fine");
      expect(await profileBy("email=latin@x.io")).toBeNull();
      expect(await failuresCsv(s, r.id)).toContain("INVALID_RECORD (properties.Name): the row is not valid UTF-8");
    });

    it("decodes the charset the upload declares, by Content-Type or ?charset= (multipart)", async () => {
      const latin1 = Buffer.from("Email,Name\ncs1@x.io,Caf\u00e9 \u0080\n", "latin1");
      const r = await runImport(s, "profiles", latin1, "text/csv; charset=windows-1252");
      expect(r).toMatchObject({ status: "done", processed: 1, failed: 0 });
      expect((await profileBy("email=cs1@x.io")).properties.Name).toBe("Caf\u00e9 \u20ac");
      const nd = Buffer.from(
        `${JSON.stringify({ identity: { Email: "cs2@x.io" }, properties: { N: "\u00e9t\u00e9" } })}\n`,
        "latin1",
      );
      await runImport(s, "profiles", nd, "application/x-ndjson; charset=ISO-8859-1");
      expect((await profileBy("email=cs2@x.io")).properties.N).toBe("\u00e9t\u00e9");
      const form = new FormData();
      form.append(
        "file",
        new Blob([Buffer.from("Email,Name\ncs3@x.io,Ren\u00e9e\n", "latin1")], { type: "text/csv" }),
        "l.csv",
      );
      const res = await fetch(`${s.url}/v1/imports?kind=profiles&charset=iso-8859-1`, {
        method: "POST",
        headers: { authorization: `Bearer ${SECRET}` },
        body: form,
      });
      expect(res.status).toBe(202);
      await waitForImport(s, ((await res.json()) as { id: string }).id);
      expect((await profileBy("email=cs3@x.io")).properties.Name).toBe("Ren\u00e9e");
      const unknown = await upload(s, "profiles", "Email\n", "text/csv; charset=klingon");
      expect(unknown).toMatchObject({ status: 415, body: { error: { code: "UNSUPPORTED_MEDIA_TYPE" } } });
    });

    it("lets a byte order mark decide the encoding over a declared charset, and removes it (CSV and NDJSON)", async () => {
      const bom8 = Buffer.from([0xef, 0xbb, 0xbf]);
      // Excel's "CSV UTF-8" sent by an integration that always declares windows-1252: the audit's reproduction.
      const first = Buffer.concat([bom8, Buffer.from("Name,Email\nBom \u00e9,bom1@x.io\n")]);
      expect(await runImport(s, "profiles", first, "text/csv; charset=windows-1252")).toMatchObject({
        status: "done",
        processed: 1,
        failed: 0,
      });
      const props = (await profileBy("email=bom1@x.io")).properties;
      expect(props.Name).toBe("Bom \u00e9");
      expect(Object.keys(props).filter((k) => k.includes("\u00ef") || k.includes("\uFEFF"))).toEqual([]);
      // The handle column first: it used to be "no handle column".
      const handleFirst = Buffer.concat([bom8, Buffer.from("Email,Name\nbom2@x.io,Two\n")]);
      expect(await runImport(s, "profiles", handleFirst, "text/csv; charset=iso-8859-1")).toMatchObject({
        status: "done",
        processed: 1,
      });
      const line = JSON.stringify({ identity: { Email: "bom3@x.io" }, properties: { N: "\u00e9t\u00e9" } });
      const nd = Buffer.concat([bom8, Buffer.from(`${line}\n`)]);
      expect(await runImport(s, "profiles", nd, "application/x-ndjson; charset=windows-1252")).toMatchObject({
        processed: 1,
        failed: 0,
      });
      expect((await profileBy("email=bom3@x.io")).properties.N).toBe("\u00e9t\u00e9");
      // UTF-16 BOMs, big-endian and little-endian, with or without a charset.
      const be = Buffer.concat([
        Buffer.from([0xfe, 0xff]),
        Buffer.from("Email,Name\nbom4@x.io,B\u00e9\n", "utf16le").swap16(),
      ]);
      expect(await runImport(s, "profiles", be, "text/csv; charset=windows-1252")).toMatchObject({ processed: 1 });
      expect((await profileBy("email=bom4@x.io")).properties.Name).toBe("B\u00e9");
      const le = Buffer.concat([
        Buffer.from([0xff, 0xfe]),
        Buffer.from(
          `${JSON.stringify({ identity: { Email: "bom5@x.io" }, properties: { N: "L\u00e9" } })}\n`,
          "utf16le",
        ),
      ]);
      expect(await runImport(s, "profiles", le, "application/x-ndjson")).toMatchObject({ processed: 1, failed: 0 });
      expect((await profileBy("email=bom5@x.io")).properties.N).toBe("L\u00e9");
    });

    it("refuses an unknown charset with 415", async () => {
      const unknown = await upload(s, "profiles", "Email\n", "text/csv; charset=klingon");
      expect(unknown).toMatchObject({ status: 415, body: { error: { code: "UNSUPPORTED_MEDIA_TYPE" } } });
    });
  });

  describe("deletion", () => {
    it("redacts the deleted person's rows in stored failure reports (SEMANTICS §10)", async () => {
      await s.api("POST", "/v1/ingest", {
        records: [{ type: "profile", identity: { Email: "gone@x.io" }, properties: { Phone: "+33612345670" } }],
      });
      const r = await runImport(s, "profiles", "Email,Phone,Age\ngone@x.io,,3\nstays@x.io,,4\n,+33612345670,5\n");
      expect(r.failed).toBe(3);
      const p = await profileBy("email=gone@x.io");
      expect((await s.api("DELETE", `/v1/profiles/${p.id}`)).status).toBe(200);
      const report = await failuresCsv(s, r.id);
      expect(report).not.toContain("gone@x.io");
      expect(report).not.toContain("+33612345670");
      expect(report).toContain("stays@x.io");
      expect(report.match(/redacted/g)).toHaveLength(2);
    });

    it("also redacts rows refused before the person was resolved: cell count, operation and typed cells", async () => {
      await s.api("POST", "/v1/ingest", {
        records: [{ type: "profile", identity: { Email: "early@x.io" }, properties: { Tags: ["a"] } }],
      });
      const csv = [
        "Email,Name,Tags.operation,Tags,Score<number>",
        "early@x.io,Secret1,,,,extra",
        "early@x.io,Secret2,$bogus,x,",
        "EARLY@x.io,Secret3,$incr,x,",
        " early@x.io ,Secret4,,,abc",
        "kept@x.io,Kept,,,abc",
      ].join("\n");
      const r = await runImport(s, "profiles", `${csv}\n`);
      expect(r.failed).toBe(5);
      const p = await profileBy("email=early@x.io");
      const docs = ndjson(
        { operation: "UPSERT", user_point_id: p.id, force_replace: "yes", user_profile: { n: "Secret6" } },
        { operation: "UPSERT", user_point_id: "0".repeat(32), force_replace: "yes", user_profile: { n: "Other" } },
      );
      const d = await runImport(s, "documents", docs, "application/x-ndjson");
      expect(d.failed).toBe(2);
      expect((await s.api("DELETE", `/v1/profiles/${p.id}`)).status).toBe(200);
      const report = await failuresCsv(s, r.id);
      expect(report).not.toMatch(/Secret/);
      expect(report.match(/redacted/g)).toHaveLength(4);
      expect(report).toContain("kept@x.io");
      const docReport = await failuresCsv(s, d.id);
      expect(docReport).not.toMatch(/Secret/);
      expect(docReport).toContain("Other");
    });

    it("redacts rows that named the person by a value replaced later: CSV cells, ingest and document lines", async () => {
      const ingest = await s.api("POST", "/v1/ingest", {
        records: [{ type: "login", deviceId: "dev-replaced", properties: { Email: "old-r@x.io" } }],
      });
      expect(ingest.status).toBe(200);
      const p = await profileBy("email=old-r@x.io");
      const csv = await runImport(
        s,
        "profiles",
        "Email,Name,Score<number>\nold-r@x.io,Secret1,abc\nOLD-R@X.IO ,Secret2,abc\n",
      );
      // Refused by the pipeline (a reserved name), so after its batch was applied.
      const events = await runImport(
        s,
        "events",
        ndjson({
          type: "event",
          identity: { Email: "old-r@x.io" },
          name: "Profile Merged",
          properties: { s: "Secret3" },
        }),
        "application/x-ndjson",
      );
      const hash = createHash("sha256").update("old-r@x.io").digest("hex");
      const docs = await runImport(
        s,
        "documents",
        ndjson(
          {
            operation: "UPSERT",
            compartment_id: "c9",
            email_hash: hash,
            force_replace: "bad",
            user_profile: { n: "Secret4" },
          },
          { operation: "DELETE", compartment_id: "c-none", email_hash: hash, note: "Secret5" },
        ),
        "application/x-ndjson",
      );
      expect([csv.failed, events.failed, docs.failed]).toEqual([2, 1, 2]);
      // SEMANTICS §2: a new Email replaces the old one, which is released.
      const push = await s.api("POST", "/v1/ingest", {
        records: [{ type: "profile", profileId: p.id, properties: { Email: "new-r@x.io" } }],
      });
      expect(push.body.results[0].outcome).not.toBe("failed");
      expect(await profileBy("email=old-r@x.io")).toBeNull();
      expect((await s.api("DELETE", `/v1/profiles/${p.id}`)).status).toBe(200);
      for (const id of [csv.id, events.id, docs.id]) {
        const report = await failuresCsv(s, id);
        expect(report).not.toMatch(/Secret|old-r/i);
        expect(report).not.toContain(hash);
      }
    });

    it("redacts rows that named either side of a merge by a value the merge released", async () => {
      const ingest = await s.api("POST", "/v1/ingest", {
        records: [
          {
            type: "profile",
            identity: { Email: "mt-old@x.io" },
            ts: 1732000000,
            properties: { Phone: "+33611111111" },
          },
          { type: "profile", identity: { Email: "ms-new@x.io" }, ts: 1732000500, properties: {} },
          {
            type: "profile",
            identity: { Email: "ms-new@x.io" },
            ts: 1731000000,
            properties: { Phone: "+33622222222" },
          },
        ],
      });
      expect(ingest.status).toBe(200);
      const target = await profileBy("email=mt-old@x.io");
      const source = await profileBy("email=ms-new@x.io");
      const csv = [
        "Email,Phone,Name,Score<number>",
        "mt-old@x.io,,Secret1,abc",
        ",+33622222222,Secret2,abc",
        "other-m@x.io,,Kept,abc",
      ].join("\n");
      const r = await runImport(s, "profiles", `${csv}\n`);
      expect(r.failed).toBe(3);
      // The source's newer Email takes the single slot and the target's older Phone stays: the target's Email and
      // the source's Phone are released.
      const merged = await s.api("POST", "/v1/profiles/merge", { targetId: target.id, sourceId: source.id });
      expect(merged.status).toBe(200);
      expect(await profileBy("email=mt-old@x.io")).toBeNull();
      expect(await profileBy("phone=%2B33622222222")).toBeNull();
      expect((await s.api("DELETE", `/v1/profiles/${target.id}`)).status).toBe(200);
      const report = await failuresCsv(s, r.id);
      expect(report).not.toMatch(/Secret|mt-old|33622222222/);
      expect(report).toContain("Kept");
      expect(report.match(/redacted/g)).toHaveLength(2);
    });
  });
});
