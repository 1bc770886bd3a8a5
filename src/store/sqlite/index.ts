export { LATEST_VERSION, MIGRATIONS, type Migration, migrate } from "./schema.js";
export { SqliteStore } from "./sqlite-store.js";
