/**
 * The embedded SQLite stores the daemon's services keep (messages, files, tasks):
 * opened the same way everywhere so that "acknowledged" means "on disk".
 *
 *   openDurableDatabase(path | null, { name, schema, strict? }): Database
 *
 * WAL (for a file), `synchronous = FULL` (a committed transaction survives a
 * crash or power loss), a busy timeout, and the schema created in one
 * transaction at version 1 (`PRAGMA user_version`); a newer version is refused
 * with an error naming the file. null opens an in-memory database (tests).
 */
import { Database } from "bun:sqlite";

export interface DurableDatabaseOptions {
  /** For messages: "messages.db". */
  readonly name: string;
  /** Statements that create schema version 1. */
  readonly schema: readonly string[];
  /** bun:sqlite's strict binding (named parameters without prefixes). */
  readonly strict?: boolean;
}

export function openDurableDatabase(path: string | null, options: DurableDatabaseOptions): Database {
  const db = new Database(path ?? ":memory:", { create: true, strict: options.strict ?? false });
  try {
    if (path) db.exec("PRAGMA journal_mode = WAL");
    // An acknowledgement means the change is on disk.
    db.exec("PRAGMA synchronous = FULL");
    db.exec("PRAGMA busy_timeout = 5000");
    const version = (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
    if (version === 0) {
      db.transaction(() => {
        for (const statement of options.schema) db.exec(statement);
        db.exec("PRAGMA user_version = 1");
      })();
    } else if (version !== 1) {
      throw new Error(`${options.name} has schema version ${version}; this pilot knows version 1`);
    }
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}
