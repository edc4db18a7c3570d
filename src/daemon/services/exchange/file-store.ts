/**
 * What the files service remembers (bun:sqlite, `PILOT_HOME/files/files.db`,
 * WAL, synchronous=FULL; in memory without a home):
 *
 * - partial: transfers under way, keyed by (sender, transfer): the partial
 *   file's name (derived from the key, never from the peer's text), the
 *   announced size and name, and `durable`: how many bytes were fsynced
 *   (resuming starts there, whatever else the file holds).
 * - received: finished files (stored name in received/, size, SHA-256, sender),
 *   also keyed by (sender, transfer) so a re-sent finished transfer is
 *   answered at once instead of stored twice.
 *
 * Usage per sender counts the received files still present and the announced
 * size of its partial transfers, each at least FILE_OVERHEAD bytes (so the
 * number of files is bounded too). Time is an argument (epoch ms).
 */
import { Database } from "bun:sqlite";
import { openDurableDatabase } from "../../../util/durable-db.ts";

export interface PartialRow {
  readonly sender: string;
  readonly transfer: string;
  readonly file: string;
  readonly name: string;
  readonly size: number;
  readonly durable: number;
  /** The kernel's boot id when the partial file was last written (null: unknown). */
  readonly boot: string | null;
  readonly created_at: number;
  readonly updated_at: number;
}

export interface ReceivedRow {
  readonly seq: number;
  readonly sender: string;
  readonly transfer: string;
  readonly name: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly received_at: number;
}

/** The least a file costs against a quota: bounds how many small files a peer can leave. */
export const FILE_OVERHEAD = 64 * 1024;

const SCHEMA = [
  `CREATE TABLE partial (
     sender TEXT NOT NULL,
     transfer TEXT NOT NULL,
     file TEXT NOT NULL UNIQUE,
     name TEXT NOT NULL,
     size INTEGER NOT NULL,
     durable INTEGER NOT NULL DEFAULT 0,
     boot TEXT,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (sender, transfer)) WITHOUT ROWID`,
  `CREATE TABLE received (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     sender TEXT NOT NULL,
     transfer TEXT NOT NULL,
     name TEXT NOT NULL UNIQUE,
     bytes INTEGER NOT NULL,
     sha256 TEXT NOT NULL,
     received_at INTEGER NOT NULL)`,
  `CREATE INDEX received_transfer ON received (sender, transfer)`,
];

export class FileStore {
  private constructor(private readonly db: Database) {}

  static open(path: string | null): FileStore {
    const db = openDurableDatabase(path, { name: "files.db", schema: SCHEMA });
    return new FileStore(db);
  }

  close(): void {
    this.db.close();
  }

  /** What `sender` (or everyone) holds against the quotas: received files plus the announced size of partial ones, each at least FILE_OVERHEAD. */
  usage(sender?: string): number {
    const O = FILE_OVERHEAD;
    const q =
      sender === undefined
        ? this.db.query(`SELECT (SELECT COALESCE(SUM(MAX(bytes, ${O})), 0) FROM received) + (SELECT COALESCE(SUM(MAX(size, ${O})), 0) FROM partial) AS n`).get()
        : this.db.query(`SELECT (SELECT COALESCE(SUM(MAX(bytes, ${O})), 0) FROM received WHERE sender = ?1) + (SELECT COALESCE(SUM(MAX(size, ${O})), 0) FROM partial WHERE sender = ?1) AS n`).get(sender);
    return (q as { n: number }).n;
  }

  partial(sender: string, transfer: string): PartialRow | null {
    return (this.db.query("SELECT * FROM partial WHERE sender = ? AND transfer = ?").get(sender, transfer) as PartialRow | null) ?? null;
  }

  partials(sender?: string): PartialRow[] {
    return (sender === undefined ? this.db.query("SELECT * FROM partial ORDER BY updated_at").all() : this.db.query("SELECT * FROM partial WHERE sender = ? ORDER BY updated_at").all(sender)) as PartialRow[];
  }

  addPartial(p: { sender: string; transfer: string; file: string; name: string; size: number; boot: string | null; now: number }): void {
    this.db
      .query("INSERT INTO partial (sender, transfer, file, name, size, durable, boot, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)")
      .run(p.sender, p.transfer, p.file, p.name, p.size, p.boot, p.now, p.now);
  }

  /** Records that the first `durable` bytes of the partial file are on disk (fsynced), written during boot `boot`. */
  setDurable(sender: string, transfer: string, durable: number, boot: string | null, now: number): void {
    this.db.query("UPDATE partial SET durable = ?, boot = ?, updated_at = ? WHERE sender = ? AND transfer = ?").run(durable, boot, now, sender, transfer);
  }

  removePartial(sender: string, transfer: string): void {
    this.db.query("DELETE FROM partial WHERE sender = ? AND transfer = ?").run(sender, transfer);
  }

  /** The partial becomes a received file, in one transaction. */
  complete(r: { sender: string; transfer: string; name: string; bytes: number; sha256: string; now: number }): void {
    this.db.transaction(() => {
      this.db.query("DELETE FROM partial WHERE sender = ? AND transfer = ?").run(r.sender, r.transfer);
      this.db.query("INSERT INTO received (sender, transfer, name, bytes, sha256, received_at) VALUES (?, ?, ?, ?, ?, ?)").run(r.sender, r.transfer, r.name, r.bytes, r.sha256, r.now);
    })();
  }

  completed(sender: string, transfer: string): ReceivedRow | null {
    return (this.db.query("SELECT * FROM received WHERE sender = ? AND transfer = ? ORDER BY seq DESC LIMIT 1").get(sender, transfer) as ReceivedRow | null) ?? null;
  }

  nameTaken(name: string): boolean {
    return this.db.query("SELECT 1 FROM received WHERE name = ?").get(name) !== null;
  }

  received(): ReceivedRow[] {
    return this.db.query("SELECT * FROM received ORDER BY seq DESC").all() as ReceivedRow[];
  }

  forgetReceived(seq: number): void {
    this.db.query("DELETE FROM received WHERE seq = ?").run(seq);
  }
}
