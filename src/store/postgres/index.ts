export { PostgresStore } from "./postgres-store.js";
export { LATEST_VERSION, MIGRATIONS, type Migration, migrate } from "./schema.js";
