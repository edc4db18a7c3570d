/**
 * The task service's durable state: one SQLite database (`tasks.db` in the
 * service's directory; in memory when it has none) with the tasks of both
 * roles and the outbox of messages not yet acknowledged by their peer, and a
 * blob store for inputs and results (`blobs/<local id>`, named by ids this node
 * makes up: never by anything a peer sent).
 *
 * Every change that must survive a crash is one committed transaction
 * (synchronous=FULL) before anything is acknowledged; a blob is written,
 * fsynced and renamed into place before the row that names it commits.
 */
import { Database } from "bun:sqlite";
import { openDurableDatabase } from "../../../util/durable-db.ts";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { ResultKind, TaskOutcome, TaskState, TaskVerdict } from "../../../protocol/tasks.ts";
import type { TaskRole } from "./lifecycle.ts";

export interface TaskRow {
  id: string;
  role: TaskRole;
  /** The other node's id (network 0). */
  peer: number;
  description: string;
  state: TaskState;
  reason: string;
  provisional: number;
  sent: number;
  delivered: number;
  created_at: number;
  updated_at: number;
  accept_by: number;
  deadline_at: number;
  accepted_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  input_blob: string | null;
  input_size: number;
  input_sha256: string;
  input_name: string;
  result_outcome: TaskOutcome | null;
  result_kind: ResultKind | null;
  result_size: number | null;
  result_sha256: string | null;
  result_name: string | null;
  result_blob: string | null;
  delivered_at: number | null;
  worker_sig: Uint8Array | null;
  verdict: TaskVerdict | null;
  verdict_reason: string | null;
  decided_at: number | null;
  submitter_sig: Uint8Array | null;
  receipt: "pending" | "submitted" | "refused" | null;
  receipt_error: string | null;
  receipt_attempts: number;
  receipt_next_at: number;
  out_seq: number;
  in_seq: number;
  delivery_error: string | null;
}

export type OutboxKind = "submit" | "update" | "result" | "verdict";

export interface OutboxItem {
  seq: number;
  peer: number;
  task_id: string;
  kind: OutboxKind;
  /** The encoded message (empty for `submit`, rebuilt at sending with the time that remains). */
  body: Uint8Array;
  created_at: number;
  attempts: number;
}

const SCHEMA = [
  `CREATE TABLE tasks (
     id TEXT PRIMARY KEY,
     role TEXT NOT NULL,
     peer INTEGER NOT NULL,
     description TEXT NOT NULL,
     state TEXT NOT NULL,
     reason TEXT NOT NULL DEFAULT '',
     provisional INTEGER NOT NULL DEFAULT 0,
     sent INTEGER NOT NULL DEFAULT 0,
     delivered INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     accept_by INTEGER NOT NULL,
     deadline_at INTEGER NOT NULL,
     accepted_at INTEGER, started_at INTEGER, finished_at INTEGER,
     input_blob TEXT, input_size INTEGER NOT NULL DEFAULT 0, input_sha256 TEXT NOT NULL, input_name TEXT NOT NULL DEFAULT '',
     result_outcome TEXT, result_kind TEXT, result_size INTEGER, result_sha256 TEXT, result_name TEXT, result_blob TEXT,
     delivered_at INTEGER, worker_sig BLOB,
     verdict TEXT, verdict_reason TEXT, decided_at INTEGER, submitter_sig BLOB,
     receipt TEXT, receipt_error TEXT, receipt_attempts INTEGER NOT NULL DEFAULT 0, receipt_next_at INTEGER NOT NULL DEFAULT 0,
     out_seq INTEGER NOT NULL DEFAULT 0,
     in_seq INTEGER NOT NULL DEFAULT 0,
     delivery_error TEXT
   )`,
  `CREATE INDEX tasks_by_state ON tasks (role, state)`,
  `CREATE INDEX tasks_by_peer ON tasks (peer, role, state)`,
  `CREATE INDEX tasks_receipts ON tasks (receipt, receipt_next_at)`,
  `CREATE TABLE outbox (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     peer INTEGER NOT NULL,
     task_id TEXT NOT NULL,
     kind TEXT NOT NULL,
     body BLOB NOT NULL,
     created_at INTEGER NOT NULL,
     attempts INTEGER NOT NULL DEFAULT 0
   )`,
  `CREATE INDEX outbox_by_peer ON outbox (peer, seq)`,
];

export const ACTIVE_STATES_SQL = "('queued','accepted','running')";

export class TaskStore {
  readonly db: Database;
  readonly blobs: BlobStore;

  constructor(dir: string | null) {
    if (dir) mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.db = openDurableDatabase(dir ? join(dir, "tasks.db") : null, { name: "tasks.db", schema: SCHEMA, strict: true });
    this.blobs = dir ? new FileBlobStore(join(dir, "blobs")) : new MemoryBlobStore();
  }

  close(): void {
    this.db.close();
  }

  /** Runs `fn` in one transaction (committed, or rolled back if it throws). */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  get(id: string): TaskRow | null {
    return (this.db.query("SELECT * FROM tasks WHERE id = ?").get(id) as TaskRow | null) ?? null;
  }

  /** Ids starting with `prefix` (lowercase hex, validated by the caller), at most `limit`. */
  idsWithPrefix(prefix: string, limit = 2): string[] {
    return (this.db.query("SELECT id FROM tasks WHERE id >= ? AND id < ? ORDER BY id LIMIT ?").all(prefix, prefix + "g", limit) as { id: string }[]).map((r) => r.id);
  }

  insert(row: Partial<TaskRow> & Pick<TaskRow, "id" | "role" | "peer" | "description" | "state" | "created_at" | "updated_at" | "accept_by" | "deadline_at" | "input_sha256">): void {
    const keys = Object.keys(row);
    this.db.query(`INSERT INTO tasks (${keys.join(",")}) VALUES (${keys.map(() => "?").join(",")})`).run(...keys.map((k) => (row as any)[k]));
  }

  update(id: string, fields: Partial<TaskRow>): void {
    const keys = Object.keys(fields);
    if (keys.length === 0) return;
    this.db.query(`UPDATE tasks SET ${keys.map((k) => `${k} = ?`).join(", ")} WHERE id = ?`).run(...keys.map((k) => (fields as any)[k]), id);
  }

  delete(id: string): void {
    this.db.query("DELETE FROM tasks WHERE id = ?").run(id);
    this.db.query("DELETE FROM outbox WHERE task_id = ?").run(id);
  }

  list(filter: { role?: TaskRole; states?: readonly TaskState[]; limit: number; offset?: number; oldestFirst?: boolean }): TaskRow[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (filter.role) {
      where.push("role = ?");
      args.push(filter.role);
    }
    if (filter.states && filter.states.length > 0) {
      where.push(`state IN (${filter.states.map(() => "?").join(",")})`);
      args.push(...filter.states);
    }
    const sql = `SELECT * FROM tasks ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY rowid ${filter.oldestFirst ? "ASC" : "DESC"} LIMIT ? OFFSET ?`;
    return this.db.query(sql).all(...args, filter.limit, filter.offset ?? 0) as TaskRow[];
  }

  count(filter: { role?: TaskRole; states?: readonly TaskState[] }): number {
    const where: string[] = [];
    const args: string[] = [];
    if (filter.role) {
      where.push("role = ?");
      args.push(filter.role);
    }
    if (filter.states && filter.states.length > 0) {
      where.push(`state IN (${filter.states.map(() => "?").join(",")})`);
      args.push(...filter.states);
    }
    return (this.db.query(`SELECT count(*) AS n FROM tasks ${where.length ? "WHERE " + where.join(" AND ") : ""}`).get(...args) as { n: number }).n;
  }

  /** The oldest accepted task this node works on (FIFO by arrival). */
  oldestAccepted(): TaskRow | null {
    return (this.db.query("SELECT * FROM tasks WHERE role = 'received' AND state = 'accepted' ORDER BY rowid ASC LIMIT 1").get() as TaskRow | null) ?? null;
  }

  active(): TaskRow[] {
    return this.db.query(`SELECT * FROM tasks WHERE state IN ${ACTIVE_STATES_SQL}`).all() as TaskRow[];
  }

  /** Does this node have any task with `peer`, in either role? */
  hasTasksWith(peer: number): boolean {
    return this.db.query("SELECT 1 FROM tasks WHERE peer = ? LIMIT 1").get(peer) !== null;
  }

  /** Received tasks not yet final: from one peer, from every peer, and the input bytes they hold. */
  activeReceived(peer: number): { fromPeer: number; total: number; bytesFromPeer: number } {
    const r = this.db
      .query(
        `SELECT count(*) AS total, coalesce(sum(peer = ?), 0) AS fromPeer, coalesce(sum(CASE WHEN peer = ? THEN input_size ELSE 0 END), 0) AS bytesFromPeer
         FROM tasks WHERE role = 'received' AND state IN ${ACTIVE_STATES_SQL}`,
      )
      .get(peer, peer) as { total: number; fromPeer: number; bytesFromPeer: number };
    return r;
  }

  /** Active received tasks from any of `peers` (e.g. all strangers). */
  activeReceivedFrom(isCounted: (peer: number) => boolean): number {
    const rows = this.db.query(`SELECT peer, count(*) AS n FROM tasks WHERE role = 'received' AND state IN ${ACTIVE_STATES_SQL} GROUP BY peer`).all() as { peer: number; n: number }[];
    return rows.filter((r) => isCounted(r.peer)).reduce((a, r) => a + r.n, 0);
  }

  /** Bytes of received tasks' inputs still on disk. */
  receivedInputBytes(): number {
    return (this.db.query("SELECT coalesce(sum(input_size), 0) AS n FROM tasks WHERE role = 'received' AND input_blob IS NOT NULL").get() as { n: number }).n;
  }

  /** Final received tasks whose inputs are still kept, oldest first. */
  finishedReceivedWithInput(limit: number): TaskRow[] {
    return this.db.query(`SELECT * FROM tasks WHERE role = 'received' AND input_blob IS NOT NULL AND state NOT IN ${ACTIVE_STATES_SQL} ORDER BY rowid ASC LIMIT ?`).all(limit) as TaskRow[];
  }

  /** Peers with submitted tasks that are not settled with their worker (open, or ended here without its word). */
  peersWithOpenSubmissions(): number[] {
    return (this.db.query(`SELECT DISTINCT peer FROM tasks WHERE role = 'submitted' AND sent = 1 AND (state IN ${ACTIVE_STATES_SQL} OR provisional = 1)`).all() as { peer: number }[]).map((r) => r.peer);
  }

  pendingReceipts(now: number, limit: number): TaskRow[] {
    return this.db.query("SELECT * FROM tasks WHERE receipt = 'pending' AND receipt_next_at <= ? ORDER BY receipt_next_at LIMIT ?").all(now, limit) as TaskRow[];
  }

  /** Final tasks of a role past the history bound (count, then age), oldest first. */
  prunable(role: TaskRole, keep: number, olderThan: number, limit: number): TaskRow[] {
    return this.db
      .query(
        `SELECT * FROM tasks WHERE role = ? AND state NOT IN ${ACTIVE_STATES_SQL} AND (receipt IS NULL OR receipt != 'pending')
           AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.task_id = tasks.id)
           AND (updated_at < ? OR rowid <= (SELECT rowid FROM tasks WHERE role = ? ORDER BY rowid DESC LIMIT 1 OFFSET ?))
         ORDER BY rowid ASC LIMIT ?`,
      )
      .all(role, olderThan, role, keep, limit) as TaskRow[];
  }

  // ---- outbox ----------------------------------------------------------------

  enqueue(item: { peer: number; task_id: string; kind: OutboxKind; body: Uint8Array; created_at: number }): number {
    const r = this.db.query("INSERT INTO outbox (peer, task_id, kind, body, created_at) VALUES (?, ?, ?, ?, ?)").run(item.peer, item.task_id, item.kind, item.body, item.created_at);
    return Number(r.lastInsertRowid);
  }

  nextOutbox(peer: number): OutboxItem | null {
    const row = this.db.query("SELECT * FROM outbox WHERE peer = ? ORDER BY seq LIMIT 1").get(peer) as OutboxItem | null;
    return row ? { ...row, body: new Uint8Array(row.body) } : null;
  }

  outboxPeers(): number[] {
    return (this.db.query("SELECT DISTINCT peer FROM outbox").all() as { peer: number }[]).map((r) => r.peer);
  }

  outboxCount(taskId: string): number {
    return (this.db.query("SELECT count(*) AS n FROM outbox WHERE task_id = ?").get(taskId) as { n: number }).n;
  }

  outboxFor(taskId: string, kind: OutboxKind): OutboxItem | null {
    const row = this.db.query("SELECT * FROM outbox WHERE task_id = ? AND kind = ? ORDER BY seq LIMIT 1").get(taskId, kind) as OutboxItem | null;
    return row ? { ...row, body: new Uint8Array(row.body) } : null;
  }

  removeOutbox(seq: number): void {
    this.db.query("DELETE FROM outbox WHERE seq = ?").run(seq);
  }

  countAttempt(seq: number): void {
    this.db.query("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?").run(seq);
  }

  /** Drops messages nobody could deliver for `maxAgeMs`; returns their task ids. */
  dropStaleOutbox(olderThan: number): { task_id: string; kind: OutboxKind }[] {
    const stale = this.db.query("SELECT task_id, kind FROM outbox WHERE created_at < ?").all(olderThan) as { task_id: string; kind: OutboxKind }[];
    if (stale.length > 0) this.db.query("DELETE FROM outbox WHERE created_at < ?").run(olderThan);
    return stale;
  }

  /** Blob ids the database names (to clean up files a crash left behind). */
  referencedBlobs(): Set<string> {
    const rows = this.db.query("SELECT input_blob AS b FROM tasks WHERE input_blob IS NOT NULL UNION SELECT result_blob FROM tasks WHERE result_blob IS NOT NULL").all() as { b: string }[];
    return new Set(rows.map((r) => r.b));
  }
}

// ---- blobs -------------------------------------------------------------------

/** Ids of stored payloads: made up here, 32 hex characters. */
export function newBlobId(): string {
  return randomBytes(16).toString("hex");
}

export interface BlobWriter {
  readonly id: string;
  readonly written: number;
  write(chunk: Uint8Array): void;
  /** Makes the blob durable and visible under its id; returns its SHA-256 (hex). */
  commit(): string;
  abort(): void;
}

export interface BlobStore {
  create(): BlobWriter;
  /** Up to `length` bytes from `offset` (fewer at the end). */
  read(id: string, offset: number, length: number): Uint8Array;
  size(id: string): number | null;
  remove(id: string): void;
  /** The file holding the blob, for local users (null when blobs live in memory). */
  path(id: string): string | null;
  /** Removes partial writes and blobs no row names (after a crash). */
  sweep(referenced: Set<string>): number;
}

const BLOB_ID = /^[0-9a-f]{32}$/;

function checkBlobId(id: string): void {
  if (!BLOB_ID.test(id)) throw new Error(`bad blob id ${JSON.stringify(id)}`);
}

class FileBlobStore implements BlobStore {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  path(id: string): string {
    checkBlobId(id);
    return join(this.dir, id);
  }

  create(): BlobWriter {
    const id = newBlobId();
    const final = this.path(id);
    const partial = `${final}.part`;
    const fd = openSync(partial, "wx", 0o600);
    const hash = new Bun.CryptoHasher("sha256");
    let written = 0;
    let open = true;
    const dir = this.dir;
    const close = () => {
      if (open) closeSync(fd);
      open = false;
    };
    return {
      id,
      get written() {
        return written;
      },
      write(chunk) {
        let off = 0;
        while (off < chunk.length) off += writeSync(fd, chunk, off);
        hash.update(chunk);
        written += chunk.length;
      },
      commit() {
        fsyncSync(fd);
        close();
        renameSync(partial, final);
        syncDir(dir);
        return hash.digest("hex");
      },
      abort() {
        close();
        try {
          unlinkSync(partial);
        } catch {
          // already gone
        }
      },
    };
  }

  read(id: string, offset: number, length: number): Uint8Array {
    const fd = openSync(this.path(id), "r");
    try {
      const out = new Uint8Array(length);
      let got = 0;
      while (got < length) {
        const n = readSync(fd, out, got, length - got, offset + got);
        if (n === 0) break;
        got += n;
      }
      return got === length ? out : out.subarray(0, got);
    } finally {
      closeSync(fd);
    }
  }

  size(id: string): number | null {
    try {
      return statSync(this.path(id)).size;
    } catch {
      return null;
    }
  }

  remove(id: string): void {
    try {
      unlinkSync(this.path(id));
    } catch {
      // already gone
    }
  }

  sweep(referenced: Set<string>): number {
    let removed = 0;
    if (!existsSync(this.dir)) return 0;
    for (const name of readdirSync(this.dir)) {
      const id = name.endsWith(".part") ? null : name;
      if (id !== null && BLOB_ID.test(id) && referenced.has(id)) continue;
      try {
        unlinkSync(join(this.dir, name));
        removed++;
      } catch {
        // ignore
      }
    }
    return removed;
  }
}

function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  }
}

class MemoryBlobStore implements BlobStore {
  private readonly blobs = new Map<string, Uint8Array>();

  create(): BlobWriter {
    const id = newBlobId();
    const chunks: Uint8Array[] = [];
    const hash = new Bun.CryptoHasher("sha256");
    let written = 0;
    const blobs = this.blobs;
    return {
      id,
      get written() {
        return written;
      },
      write(chunk) {
        chunks.push(chunk.slice());
        hash.update(chunk);
        written += chunk.length;
      },
      commit() {
        blobs.set(id, Buffer.concat(chunks));
        return hash.digest("hex");
      },
      abort() {
        chunks.length = 0;
      },
    };
  }

  read(id: string, offset: number, length: number): Uint8Array {
    const b = this.blobs.get(id);
    if (!b) throw Object.assign(new Error(`no blob ${id}`), { code: "ENOENT" });
    return b.slice(offset, offset + length);
  }

  size(id: string): number | null {
    return this.blobs.get(id)?.length ?? null;
  }

  remove(id: string): void {
    this.blobs.delete(id);
  }

  path(): null {
    return null;
  }

  sweep(referenced: Set<string>): number {
    let n = 0;
    for (const id of this.blobs.keys()) if (!referenced.has(id)) (this.blobs.delete(id), n++);
    return n;
  }
}
