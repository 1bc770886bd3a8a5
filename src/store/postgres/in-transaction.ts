/** One transaction on a pooled connection, for the adapters' own reads and writes outside `write()`'s retries. */
import type pg from "pg";

/**
 * `fn` between `begin` (a BEGIN statement with its isolation level) and COMMIT on one pooled connection, or rolled
 * back with `fn`'s error. A connection whose ROLLBACK failed is in an unknown state: it is closed rather than given
 * back to the pool.
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  begin: string,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query(begin);
    const value = await fn(client);
    await client.query("COMMIT");
    return value;
  } catch (error) {
    await client.query("ROLLBACK").catch((e: Error) => {
      broken = e;
    });
    throw error;
  } finally {
    client.release(broken);
  }
}
