/**
 * The mailbox's storage (bun:sqlite, `PILOT_HOME/messages/messages.db`, WAL,
 * synchronous=FULL so that a committed transaction survives a power cut; in
 * memory when the daemon has no home):
 *
 * - inbox: what peers sent, keyed by (sender, id) so a re-delivery is
 *   recognised; sender is the stream's authenticated address.
 * - seen: (sender, id) of messages deleted from the inbox (cleared or
 *   evicted), kept 30 days, so a late re-delivery is not stored again.
 * - outbox: what this node's apps sent, until the target acknowledges it
 *   (delivered rows keep their metadata, not their data, for 7 days).
 *
 * Quotas: the inbox holds at most `peer` bytes from one sender and `total`
 * bytes in all, each message counting at least MESSAGE_OVERHEAD bytes (so
 * the number of messages is bounded too). To make room, messages
 * already read are evicted oldest first; unread messages are never evicted:
 * the sender is told `quota_exceeded`.
 * Time is an argument everywhere (epoch ms).
 */
import { Database } from "bun:sqlite";
import { openDurableDatabase } from "../../../util/durable-db.ts";
import type { MessageType } from "../../../protocol/exchange.ts";
import type { OutboxState } from "../../../protocol/exchange-calls.ts";

export interface InboxRow {
  readonly seq: number;
  readonly sender: string;
  readonly id: string;
  readonly type: MessageType;
  readonly reply_to: string | null;
  readonly bytes: number;
  readonly received_at: number;
  readonly read_at: number | null;
  readonly preview: Uint8Array | null;
}

export interface OutboxRow {
  readonly seq: number;
  readonly id: string;
  readonly target: string;
  readonly type: MessageType;
  readonly reply_to: string | null;
  readonly bytes: number;
  readonly created_at: number;
  readonly state: OutboxState;
  readonly attempts: number;
  readonly next_attempt_at: number | null;
  readonly done_at: number | null;
  readonly error_code: string | null;
  readonly error_message: string | null;
}

export interface Quota {
  readonly peer: number;
  readonly total: number;
}

export type StoreOutcome = { stored: true; evicted: number } | { stored: false; duplicate: true } | { stored: false; duplicate: false; scope: "peer" | "total" };

export interface InboxFilter {
  readonly from?: string;
  readonly since?: number;
  readonly unread?: boolean;
  readonly limit?: number;
}

/** The least a message costs against a quota: bounds how many small messages a peer can leave. */
export const MESSAGE_OVERHEAD = 1024;

const SEEN_KEEP_MS = 30 * 24 * 3_600_000;
const OUTBOX_DONE_KEEP_MS = 7 * 24 * 3_600_000;
const PREVIEW_BYTES = 120;

const SCHEMA = [
  `CREATE TABLE inbox (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     sender TEXT NOT NULL,
     id TEXT NOT NULL,
     type TEXT NOT NULL,
     reply_to TEXT,
     bytes INTEGER NOT NULL,
     data BLOB NOT NULL,
     received_at INTEGER NOT NULL,
     read_at INTEGER,
     UNIQUE (sender, id))`,
  `CREATE INDEX inbox_id ON inbox (id)`,
  `CREATE INDEX inbox_reply ON inbox (sender, reply_to)`,
  `CREATE TABLE seen (sender TEXT NOT NULL, id TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (sender, id)) WITHOUT ROWID`,
  `CREATE TABLE outbox (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     id TEXT NOT NULL UNIQUE,
     target TEXT NOT NULL,
     type TEXT NOT NULL,
     reply_to TEXT,
     bytes INTEGER NOT NULL,
     data BLOB,
     created_at INTEGER NOT NULL,
     state TEXT NOT NULL,
     attempts INTEGER NOT NULL DEFAULT 0,
     next_attempt_at INTEGER,
     done_at INTEGER,
     error_code TEXT,
     error_message TEXT)`,
  `CREATE INDEX outbox_due ON outbox (state, target, seq)`,
];

const INBOX_COLUMNS = "seq, sender, id, type, reply_to, bytes, received_at, read_at, CASE WHEN type = 'binary' THEN NULL ELSE substr(data, 1, " + PREVIEW_BYTES + ") END AS preview";
const OUTBOX_COLUMNS = "seq, id, target, type, reply_to, bytes, created_at, state, attempts, next_attempt_at, done_at, error_code, error_message";

export class MessageStore {
  private constructor(private readonly db: Database) {}

  /** Opens (creating) the store at `path`, or in memory for null. */
  static open(path: string | null): MessageStore {
    const db = openDurableDatabase(path, { name: "messages.db", schema: SCHEMA });
    return new MessageStore(db);
  }

  close(): void {
    this.db.close();
  }

  // ---- inbox ----------------------------------------------------------------

  /** What the inbox holds against the quotas (its size, at least MESSAGE_OVERHEAD, each): from `sender`, or in all. */
  inboxCost(sender?: string): number {
    const row =
      sender === undefined
        ? this.db.query(`SELECT COALESCE(SUM(MAX(bytes, ${MESSAGE_OVERHEAD})), 0) AS n FROM inbox`).get()
        : this.db.query(`SELECT COALESCE(SUM(MAX(bytes, ${MESSAGE_OVERHEAD})), 0) AS n FROM inbox WHERE sender = ?`).get(sender);
    return (row as { n: number }).n;
  }

  inboxBytes(sender?: string): number {
    const row = sender === undefined ? this.db.query("SELECT COALESCE(SUM(bytes), 0) AS n FROM inbox").get() : this.db.query("SELECT COALESCE(SUM(bytes), 0) AS n FROM inbox WHERE sender = ?").get(sender);
    return (row as { n: number }).n;
  }

  /** True when (sender, id) is in the inbox or was deleted from it recently. */
  has(sender: string, id: string): boolean {
    return this.db.query("SELECT 1 FROM inbox WHERE sender = ?1 AND id = ?2 UNION ALL SELECT 1 FROM seen WHERE sender = ?1 AND id = ?2 LIMIT 1").get(sender, id) !== null;
  }

  /** The cost that evicting every read message would free: from `sender`, or from anyone. */
  evictable(sender?: string): number {
    const row =
      sender === undefined
        ? this.db.query(`SELECT COALESCE(SUM(MAX(bytes, ${MESSAGE_OVERHEAD})), 0) AS n FROM inbox WHERE read_at IS NOT NULL`).get()
        : this.db.query(`SELECT COALESCE(SUM(MAX(bytes, ${MESSAGE_OVERHEAD})), 0) AS n FROM inbox WHERE read_at IS NOT NULL AND sender = ?`).get(sender);
    return (row as { n: number }).n;
  }

  /**
   * Stores one message durably (one committed transaction), unless it is a
   * duplicate or does not fit even after evicting read messages (`reserved`:
   * the cost of messages still arriving, from this sender and in all).
   */
  storeInbound(
    m: { sender: string; id: string; type: MessageType; replyTo: string | null; data: Uint8Array; now: number },
    quota: Quota,
    reserved: { peer: number; total: number } = { peer: 0, total: 0 },
  ): StoreOutcome {
    return this.db.transaction((): StoreOutcome => {
      if (this.has(m.sender, m.id)) return { stored: false, duplicate: true };
      const bytes = m.data.length;
      const cost = Math.max(bytes, MESSAGE_OVERHEAD);
      let evicted = 0;
      const peerOver = this.inboxCost(m.sender) + reserved.peer + cost - quota.peer;
      if (peerOver > 0) {
        if (this.evictable(m.sender) < peerOver) return { stored: false, duplicate: false, scope: "peer" };
        evicted += this.evict(peerOver, m.sender, m.now);
      }
      const totalOver = this.inboxCost() + reserved.total + cost - quota.total;
      if (totalOver > 0) {
        if (this.evictable() < totalOver) return { stored: false, duplicate: false, scope: "total" };
        evicted += this.evict(totalOver, undefined, m.now);
      }
      this.db.query("INSERT INTO inbox (sender, id, type, reply_to, bytes, data, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)").run(m.sender, m.id, m.type, m.replyTo, bytes, m.data, m.now);
      return { stored: true, evicted };
    })();
  }

  /** Deletes read messages, oldest first, until their cost reaches `bytes`; returns how many. */
  private evict(bytes: number, sender: string | undefined, now: number): number {
    const rows = (
      sender === undefined
        ? this.db.query("SELECT seq, sender, id, bytes FROM inbox WHERE read_at IS NOT NULL ORDER BY seq").all()
        : this.db.query("SELECT seq, sender, id, bytes FROM inbox WHERE read_at IS NOT NULL AND sender = ? ORDER BY seq").all(sender)
    ) as { seq: number; sender: string; id: string; bytes: number }[];
    let freed = 0;
    let count = 0;
    for (const r of rows) {
      if (freed >= bytes) break;
      this.forget(r.seq, r.sender, r.id, now);
      freed += Math.max(r.bytes, MESSAGE_OVERHEAD);
      count++;
    }
    return count;
  }

  private forget(seq: number, sender: string, id: string, now: number): void {
    this.db.query("DELETE FROM inbox WHERE seq = ?").run(seq);
    this.db.query("INSERT OR REPLACE INTO seen (sender, id, at) VALUES (?, ?, ?)").run(sender, id, now);
  }

  list(filter: InboxFilter): { rows: InboxRow[]; total: number } {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (filter.from !== undefined) {
      where.push("sender = ?");
      args.push(filter.from);
    }
    if (filter.since !== undefined) {
      where.push("received_at >= ?");
      args.push(filter.since);
    }
    if (filter.unread) where.push("read_at IS NULL");
    const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
    const total = (this.db.query(`SELECT COUNT(*) AS n FROM inbox ${clause}`).get(...args) as { n: number }).n;
    const rows = this.db.query(`SELECT ${INBOX_COLUMNS} FROM inbox ${clause} ORDER BY seq DESC LIMIT ?`).all(...args, filter.limit ?? 50) as InboxRow[];
    return { rows, total };
  }

  unreadCount(): number {
    return (this.db.query("SELECT COUNT(*) AS n FROM inbox WHERE read_at IS NULL").get() as { n: number }).n;
  }

  /** Messages with this id (from any sender, or from `from`). */
  find(id: string, from?: string): InboxRow[] {
    return (from === undefined
      ? this.db.query(`SELECT ${INBOX_COLUMNS} FROM inbox WHERE id = ? ORDER BY seq`).all(id)
      : this.db.query(`SELECT ${INBOX_COLUMNS} FROM inbox WHERE id = ? AND sender = ?`).all(id, from)) as InboxRow[];
  }

  /** `length` bytes of a message's data from `offset`. */
  dataOf(seq: number, offset: number, length: number): Uint8Array {
    const row = this.db.query("SELECT substr(data, ?, ?) AS d FROM inbox WHERE seq = ?").get(offset + 1, length, seq) as { d: Uint8Array | null } | null;
    return row?.d ? new Uint8Array(row.d) : new Uint8Array(0);
  }

  markRead(seq: number, now: number): void {
    this.db.query("UPDATE inbox SET read_at = ? WHERE seq = ? AND read_at IS NULL").run(now, seq);
  }

  /** The first message from `sender` that replies to `replyTo`. */
  findReply(sender: string, replyTo: string): InboxRow | null {
    return (this.db.query(`SELECT ${INBOX_COLUMNS} FROM inbox WHERE sender = ? AND reply_to = ? ORDER BY seq LIMIT 1`).get(sender, replyTo) as InboxRow | null) ?? null;
  }

  /** Deletes messages (received before `before`, from `from`); returns how many and their bytes. */
  clear(filter: { before?: number; from?: string }, now: number): { cleared: number; bytes: number } {
    return this.db.transaction(() => {
      const where: string[] = [];
      const args: (string | number)[] = [];
      if (filter.before !== undefined) {
        where.push("received_at < ?");
        args.push(filter.before);
      }
      if (filter.from !== undefined) {
        where.push("sender = ?");
        args.push(filter.from);
      }
      const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
      const rows = this.db.query(`SELECT seq, sender, id, bytes FROM inbox ${clause}`).all(...args) as { seq: number; sender: string; id: string; bytes: number }[];
      let bytes = 0;
      for (const r of rows) {
        this.forget(r.seq, r.sender, r.id, now);
        bytes += r.bytes;
      }
      return { cleared: rows.length, bytes };
    })();
  }

  // ---- outbox ---------------------------------------------------------------

  /** The cost of what is queued (at least MESSAGE_OVERHEAD each, not yet delivered or failed): for `target`, or in all. */
  outboxCost(target?: string): number {
    const row =
      target === undefined
        ? this.db.query(`SELECT COALESCE(SUM(MAX(bytes, ${MESSAGE_OVERHEAD})), 0) AS n FROM outbox WHERE state = 'queued'`).get()
        : this.db.query(`SELECT COALESCE(SUM(MAX(bytes, ${MESSAGE_OVERHEAD})), 0) AS n FROM outbox WHERE state = 'queued' AND target = ?`).get(target);
    return (row as { n: number }).n;
  }

  enqueue(m: { id: string; target: string; type: MessageType; replyTo: string | null; data: Uint8Array; now: number }): void {
    this.db
      .query("INSERT INTO outbox (id, target, type, reply_to, bytes, data, created_at, state, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?)")
      .run(m.id, m.target, m.type, m.replyTo, m.data.length, m.data, m.now, m.now);
  }

  outboxEntry(id: string): OutboxRow | null {
    return (this.db.query(`SELECT ${OUTBOX_COLUMNS} FROM outbox WHERE id = ?`).get(id) as OutboxRow | null) ?? null;
  }

  outboxData(id: string): Uint8Array {
    const row = this.db.query("SELECT data FROM outbox WHERE id = ?").get(id) as { data: Uint8Array | null } | null;
    return row?.data ? new Uint8Array(row.data) : new Uint8Array(0);
  }

  /** Targets with queued messages. */
  queuedTargets(): string[] {
    return (this.db.query("SELECT DISTINCT target FROM outbox WHERE state = 'queued'").all() as { target: string }[]).map((r) => r.target);
  }

  /** Queued messages for `target` whose next attempt is due, oldest first. */
  due(target: string, now: number, limit: number): OutboxRow[] {
    return this.db.query(`SELECT ${OUTBOX_COLUMNS} FROM outbox WHERE state = 'queued' AND target = ? AND next_attempt_at <= ? ORDER BY seq LIMIT ?`).all(target, now, limit) as OutboxRow[];
  }

  /** When the next queued message for `target` is due (null: none queued). */
  nextDue(target: string): number | null {
    const row = this.db.query("SELECT MIN(next_attempt_at) AS t FROM outbox WHERE state = 'queued' AND target = ?").get(target) as { t: number | null };
    return row.t;
  }

  attemptFailed(id: string, error: { code: string; message: string }, nextAttemptAt: number): void {
    this.db.query("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, error_code = ?, error_message = ? WHERE id = ? AND state = 'queued'").run(nextAttemptAt, error.code, error.message, id);
  }

  delivered(id: string, now: number): void {
    this.db.query("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, data = NULL, done_at = ?, next_attempt_at = NULL, error_code = NULL, error_message = NULL WHERE id = ? AND state = 'queued'").run(now, id);
  }

  failed(id: string, error: { code: string; message: string }, now: number): void {
    this.db.query("UPDATE outbox SET state = 'failed', attempts = attempts + 1, data = NULL, done_at = ?, next_attempt_at = NULL, error_code = ?, error_message = ? WHERE id = ? AND state = 'queued'").run(now, error.code, error.message, id);
  }

  outboxList(limit: number): { rows: OutboxRow[]; queued: number; failed: number } {
    const rows = this.db.query(`SELECT ${OUTBOX_COLUMNS} FROM outbox ORDER BY seq DESC LIMIT ?`).all(limit) as OutboxRow[];
    const counts = this.db.query("SELECT SUM(state = 'queued') AS queued, SUM(state = 'failed') AS failed FROM outbox").get() as { queued: number | null; failed: number | null };
    return { rows, queued: counts.queued ?? 0, failed: counts.failed ?? 0 };
  }

  /** Removes finished outbox entries (delivered and failed); with `cancel`, queued ones too. */
  outboxClear(cancel: boolean): number {
    return this.db.query(cancel ? "DELETE FROM outbox" : "DELETE FROM outbox WHERE state != 'queued'").run().changes;
  }

  /** Forgets tombstones and finished outbox entries past their time; fails queued messages older than `ttl`. */
  prune(now: number, ttlMs: number): string[] {
    return this.db.transaction(() => {
      this.db.query("DELETE FROM seen WHERE at < ?").run(now - SEEN_KEEP_MS);
      this.db.query("DELETE FROM outbox WHERE state != 'queued' AND done_at < ?").run(now - OUTBOX_DONE_KEEP_MS);
      const expired = (this.db.query("SELECT id FROM outbox WHERE state = 'queued' AND created_at < ?").all(now - ttlMs) as { id: string }[]).map((r) => r.id);
      for (const id of expired) this.failed(id, { code: "timeout", message: `not delivered within ${Math.round(ttlMs / 3_600_000)} h` }, now);
      return expired;
    })();
  }
}
