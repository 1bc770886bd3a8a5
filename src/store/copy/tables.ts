/**
 * What the copy does with every table of both schemas (SQLite schema version 9, PostgreSQL schema version 9): each
 * SQLite table is copied, translated into another shape, rebuilt on the target, or left behind with the reason, and
 * each PostgreSQL table says where its rows come from. tables.test.ts checks these lists against the tables that the
 * two adapters' migrations really create, so a new table cannot be forgotten by the copy.
 *
 * The row-by-row copies are `TableCopy` entries (TABLE_COPIES); profiles (with their activity and the property index)
 * and events (with the seq high-water) have steps of their own (profiles-step.ts, events-step.ts).
 */

/** How a PostgreSQL table's rows come about. */
export type How = "copied" | "translated" | "rebuilt";

/** Every table of the SQLite schema, and what becomes of it. */
export const SQLITE_TABLES: Readonly<Record<string, string>> = {
  accounts: "copied (settings as jsonb, both revisions kept)",
  api_keys: "copied: the SHA-256 hashes of the keys, so every key, revoked or not, stays as it was",
  dashboard_users: "copied (password hashes)",
  meta: "copied (the SFTP host key, so clients' known_hosts still match), except the property index backfill marker",
  profiles: "translated into profiles: the integer pk goes (PostgreSQL keys profiles by account and id)",
  profile_activity: "folded into profiles' first_seen, last_seen and event_count (no row: null, null, 0)",
  identities: "copied",
  devices: "copied",
  user_accounts: "copied",
  documents: "copied (bodies as jsonb)",
  record_ids: "copied, so that a record sent again after the move is still a duplicate",
  charged_ids: "copied",
  events: "translated into events: profile_pk becomes the account and profile id; seq is kept",
  event_seq_high_water: "translated: the events sequence starts past the highest seq ever given",
  type_registry: "copied",
  merges: "translated into merges: the rowid becomes seq (the tie-break of merges made in the same millisecond)",
  merge_journal: "copied, seq kept, so a merge made before the move can be undone after it",
  imports: "translated into imports: the rowid becomes seq (the order in which unfinished imports are resumed)",
  import_failures: "copied; row content PostgreSQL cannot store (U+0000) becomes U+FFFD, as on PostgreSQL itself",
  import_failure_handles: "copied",
  sftp_keys: "copied",
  email_hashes: "copied",
  segments: "copied (saved segments)",
  segment_refs: "copied",
  segment_values: "not copied: the property index is rebuilt on the target from each profile's properties",
  segment_paths: "not copied: SQLite's dictionary of the property index's paths (PostgreSQL's index holds the text)",
  schema_migrations: "not copied: the target's own, written by the PostgreSQL migrations that create its schema",
  sqlite_sequence: "read for the events sequence (AUTOINCREMENT's highest seq); segment_paths' entry has no use",
};

/** Every table of the PostgreSQL schema, and where its rows come from. */
export const POSTGRES_TABLES: Readonly<Record<string, { from: string; how: How | "schema" }>> = {
  accounts: { from: "accounts", how: "copied" },
  api_keys: { from: "api_keys", how: "copied" },
  dashboard_users: { from: "dashboard_users", how: "copied" },
  meta: { from: "meta", how: "copied" },
  profiles: { from: "profiles + profile_activity", how: "translated" },
  identities: { from: "identities", how: "copied" },
  devices: { from: "devices", how: "copied" },
  user_accounts: { from: "user_accounts", how: "copied" },
  documents: { from: "documents", how: "copied" },
  record_ids: { from: "record_ids", how: "copied" },
  charged_ids: { from: "charged_ids", how: "copied" },
  events: { from: "events + profiles", how: "translated" },
  type_registry: { from: "type_registry", how: "copied" },
  merges: { from: "merges", how: "translated" },
  merge_journal: { from: "merge_journal", how: "copied" },
  imports: { from: "imports", how: "translated" },
  import_failures: { from: "import_failures", how: "copied" },
  import_failure_handles: { from: "import_failure_handles", how: "copied" },
  sftp_keys: { from: "sftp_keys", how: "copied" },
  email_hashes: { from: "email_hashes", how: "copied" },
  segments: { from: "segments", how: "copied" },
  segment_refs: { from: "segment_refs", how: "copied" },
  segment_values: { from: "profiles (rebuilt by the PostgreSQL adapter's indexValues)", how: "rebuilt" },
  schema_migrations: { from: "the PostgreSQL migrations", how: "schema" },
};

/** A PostgreSQL column type as the copy sends it: an array parameter of that type (jsonb travels as text). */
export type PgType = "text" | "bigint" | "float8" | "boolean" | "jsonb";

export interface Column {
  name: string;
  type: PgType;
}

/** A table copied row for row: one SQLite query whose rows are the target's rows. */
export interface TableCopy {
  /** The PostgreSQL table written. */
  table: string;
  /** The SQLite rows, columns in `columns` order, in the order they are inserted (the target's key where cheap). */
  select: string;
  /** The number of rows `select` returns: what the target must hold after the copy. */
  count: string;
  columns: readonly Column[];
  /** An identity column (GENERATED ALWAYS) given the SQLite value: inserted with OVERRIDING SYSTEM VALUE. */
  identity?: string;
  /** How many leading columns name a row in a message. */
  key: number;
  /** jsonb that PostgreSQL cannot store (U+0000, unpaired surrogates) becomes U+FFFD instead of failing the copy. */
  sanitise?: boolean;
  /** Source rows that `select` leaves out on purpose: how many (an SQLite count), and why, for the summary. */
  leftOut?: { count: string; why: string };
}

/** Where a PostgreSQL table's rows come from, as the summary shows it. */
export function origin(table: string): { from: string; how: How } {
  const planned = POSTGRES_TABLES[table];
  if (planned === undefined || planned.how === "schema") throw new Error(`the copy does not write ${table}`);
  return { from: planned.from, how: planned.how };
}

const text = (name: string): Column => ({ name, type: "text" });
const bigint = (name: string): Column => ({ name, type: "bigint" });
const jsonb = (name: string): Column => ({ name, type: "jsonb" });

/** A table whose columns have the same names on both sides, read in `order`. */
function sameColumns(table: string, columns: Column[], order: string, key: number, where = ""): TableCopy {
  const from = `FROM ${table}${where ? ` WHERE ${where}` : ""}`;
  return {
    table,
    select: `SELECT ${columns.map((c) => c.name).join(", ")} ${from} ORDER BY ${order}`,
    count: `SELECT count(*) ${from}`,
    columns,
    key,
  };
}

/** A rowid table whose rowid PostgreSQL keeps as its identity column `seq`: the insertion order that breaks ties. */
function rowidAsSeq(table: string, columns: Column[], key: number): TableCopy {
  const names = columns.map((c) => (c.name === "seq" ? "rowid AS seq" : c.name));
  return {
    table,
    select: `SELECT ${names.join(", ")} FROM ${table} ORDER BY rowid`,
    count: `SELECT count(*) FROM ${table}`,
    columns,
    identity: "seq",
    key,
  };
}

/** The property index backfill marker (sqlite-segments.ts): the copy rebuilds the whole index, so it has no use. */
export const BACKFILL_MARKER = "segment_values.backfill";

/** The tables copied row for row, in the order the copy takes them (no foreign keys: any order would do). */
export const TABLE_COPIES: readonly TableCopy[] = [
  sameColumns(
    "accounts",
    [
      text("id"),
      text("name"),
      jsonb("settings"),
      bigint("created_at"),
      bigint("types_revision"),
      bigint("settings_revision"),
    ],
    "id",
    1,
  ),
  sameColumns(
    "api_keys",
    [
      text("id"),
      text("account_id"),
      text("kind"),
      text("name"),
      text("hash"),
      text("prefix"),
      bigint("created_at"),
      bigint("revoked_at"),
    ],
    "id",
    1,
  ),
  sameColumns("dashboard_users", [text("username"), text("account_id"), text("password_hash")], "username", 1),
  sameColumns("meta", [text("key"), text("value")], "key", 1, `key <> '${BACKFILL_MARKER}'`),
  sameColumns("identities", [text("account_id"), text("key"), text("value"), text("profile_id")], "1, 2, 3", 3),
  sameColumns(
    "devices",
    [text("account_id"), text("device_id"), text("profile_id"), text("push_token"), text("platform")],
    "1, 2",
    2,
  ),
  sameColumns(
    "user_accounts",
    [text("account_id"), text("compartment_id"), text("user_account_id"), text("profile_id")],
    "1, 2, 3",
    3,
  ),
  sameColumns(
    "documents",
    [
      text("account_id"),
      text("profile_id"),
      text("compartment_id"),
      text("user_account_id"),
      jsonb("body"),
      bigint("created_at"),
      bigint("updated_at"),
    ],
    "1, 2, 3, 4",
    4,
  ),
  sameColumns("record_ids", [text("account_id"), text("record_id"), bigint("created_at")], "1, 2", 2),
  sameColumns("charged_ids", [text("account_id"), text("profile_id"), text("charged_id")], "1, 2, 3", 3),
  {
    table: "events",
    // In the order of PostgreSQL's primary key (account, profile, ts, seq), so that its inserts append to the index
    // instead of landing all over it (1.2M events inserted inside PostgreSQL: 15 s in that order, its sort included,
    // against 19 s in seq order); SQLite reads them so without sorting, each profile's events from its timeline index
    // (3.4 against 4.3 s for seq order). profile_pk becomes the profile's account and id, PostgreSQL's key.
    select: `SELECT e.seq, p.account_id, p.id, e.id, e.name, e.ts, e.properties, e.device_id, e.platform
      FROM profiles p JOIN events e ON e.profile_pk = p.pk ORDER BY p.account_id, p.id, e.ts, e.seq`,
    count: "SELECT count(*) FROM events e JOIN profiles p ON p.pk = e.profile_pk",
    columns: [
      bigint("seq"),
      text("account_id"),
      text("profile_id"),
      text("id"),
      text("name"),
      bigint("ts"),
      jsonb("properties"),
      text("device_id"),
      text("platform"),
    ],
    key: 1,
    // Every read of events on SQLite joins their profile: an event whose profile is gone is seen by nobody.
    leftOut: {
      count: "SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM profiles p WHERE p.pk = e.profile_pk)",
      why: "events of no profile (unreachable on SQLite too) were left out",
    },
  },
  sameColumns("type_registry", [text("account_id"), text("scope"), text("path"), text("type")], "1, 2, 3", 3),
  // SQLite orders merges of the same millisecond by rowid; PostgreSQL by seq, which takes its place.
  rowidAsSeq(
    "merges",
    [
      text("account_id"),
      text("id"),
      bigint("seq"),
      text("target_id"),
      text("source_id"),
      bigint("created_at"),
      bigint("undone_at"),
      jsonb("data"),
    ],
    2,
  ),
  {
    ...sameColumns(
      "merge_journal",
      [text("account_id"), text("merge_id"), bigint("seq"), jsonb("record")],
      "1, 2, 3",
      3,
    ),
    identity: "seq",
  },
  // Unfinished imports are resumed in (created_at, rowid) order on SQLite, (created_at, seq) on PostgreSQL.
  rowidAsSeq(
    "imports",
    [
      text("account_id"),
      text("id"),
      bigint("seq"),
      text("kind"),
      text("format"),
      text("status"),
      text("source"),
      text("file_name"),
      text("file_path"),
      text("sha256"),
      bigint("bytes"),
      jsonb("options"),
      jsonb("header"),
      bigint("rows"),
      bigint("processed"),
      bigint("failed"),
      bigint("bytes_read"),
      bigint("last_row"),
      text("error"),
      bigint("created_at"),
      bigint("started_at"),
      bigint("finished_at"),
      text("claimed_by"),
      bigint("heartbeat_at"),
    ],
    2,
  ),
  {
    ...sameColumns(
      "import_failures",
      [text("account_id"), text("import_id"), bigint("row_number"), jsonb("data"), text("description")],
      "1, 2, 3",
      3,
    ),
    sanitise: true,
  },
  sameColumns(
    "import_failure_handles",
    [text("account_id"), text("kind"), text("value"), text("import_id"), bigint("row_number")],
    "1, 2, 3, 4, 5",
    5,
  ),
  sameColumns(
    "sftp_keys",
    [
      text("account_id"),
      text("id"),
      text("name"),
      text("algorithm"),
      text("public_key"),
      text("fingerprint"),
      bigint("created_at"),
    ],
    "1, 2",
    2,
  ),
  sameColumns("email_hashes", [text("account_id"), text("hash"), text("profile_id")], "1, 2", 2),
  sameColumns(
    "segments",
    [text("account_id"), text("id"), text("name"), text("where_json"), bigint("created_at")],
    "1, 2",
    2,
  ),
  sameColumns("segment_refs", [text("account_id"), text("ref_id"), text("segment_id")], "1, 2, 3", 3),
];

/**
 * The sequences behind PostgreSQL's seq columns, each set past the highest value SQLite gave, so that new rows never
 * take a copied one's number: events' from the highest seq ever given (AUTOINCREMENT's record and the per-account
 * high-water, which outlive deleted events), the identity columns from the copied values.
 */
export const SEQUENCES: readonly { table: string; column: string; highest: string }[] = [
  {
    table: "events",
    column: "seq",
    highest: `SELECT max(coalesce((SELECT max(seq) FROM events), 0),
      coalesce((SELECT max(seq) FROM event_seq_high_water), 0),
      coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))`,
  },
  { table: "merges", column: "seq", highest: "SELECT coalesce(max(rowid), 0) FROM merges" },
  { table: "merge_journal", column: "seq", highest: "SELECT coalesce(max(seq), 0) FROM merge_journal" },
  { table: "imports", column: "seq", highest: "SELECT coalesce(max(rowid), 0) FROM imports" },
];
