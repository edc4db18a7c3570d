/**
 * The registry's state in SQLite (bun:sqlite): nodes, tags, trust pairs and
 * pending trust requests. WAL with synchronous=NORMAL (a committed write
 * survives a process crash; a power cut may lose the last moments). Every
 * mutation the service makes runs inside `transaction`.
 *
 * The schema is versioned with PRAGMA user_version; `open` applies missing
 * migrations in order and refuses a file written by a newer version.
 *
 * Node rows are never deleted: a deregistered node keeps its id and key
 * (`active = 0`), so the same key always gets the same id back. A node not
 * seen for the reaping time loses its hostname and tags (`reap`).
 */
import { Database } from "bun:sqlite";
import { closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { FIRST_ASSIGNABLE_NODE } from "../protocol/address.ts";
import type { ReceiptOutcome, TaskReceipt } from "../protocol/receipt.ts";
import { originNetworkOf, weekOf, type VoteGroup } from "./reputation.ts";
import type { NodeRow, TrustRequestRow } from "./storage.ts";

export const SCHEMA_VERSION = 4;
const LAST_ASSIGNABLE_NODE = 0xffff_fffe;

/** The trigram index of hostnames (schema 4), where this SQLite has FTS5's trigram tokenizer. */
const HOSTNAME_INDEX = "nodes_hostname_trgm";

/** A migration is SQL, or SQL and then code (run in the same transaction). */
type Migration = string | { sql: string; then(db: Database): void };

const MIGRATIONS: readonly Migration[] = [
  // 1: initial schema.
  `
  CREATE TABLE nodes (
    id            INTEGER PRIMARY KEY,
    public_key    TEXT    NOT NULL UNIQUE,
    hostname      TEXT    UNIQUE,
    public        INTEGER NOT NULL DEFAULT 0,
    tags          TEXT    NOT NULL DEFAULT '[]',
    endpoints     TEXT    NOT NULL DEFAULT '[]',
    observed_ip   TEXT,
    registered_at INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1
  );
  CREATE TABLE node_tags (
    tag     TEXT    NOT NULL,
    node_id INTEGER NOT NULL,
    PRIMARY KEY (tag, node_id)
  ) WITHOUT ROWID;
  CREATE TABLE trust (
    a     INTEGER NOT NULL,
    b     INTEGER NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (a, b),
    CHECK (a < b)
  ) WITHOUT ROWID;
  CREATE INDEX trust_by_b ON trust (b, a);
  CREATE TABLE trust_requests (
    from_id    INTEGER NOT NULL,
    to_id      INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (from_id, to_id)
  ) WITHOUT ROWID;
  CREATE INDEX trust_requests_to ON trust_requests (to_id, created_at);
  `,
  // 2: nonces of accepted state-changing requests, so a captured one cannot be replayed after a restart;
  //    last_seen indexed for reaping.
  `
  CREATE TABLE seen_nonces (
    nonce   TEXT    PRIMARY KEY,
    expires INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX seen_nonces_expires ON seen_nonces (expires);
  CREATE INDEX nodes_last_seen ON nodes (last_seen) WHERE hostname IS NOT NULL OR tags <> '[]';
  `,
  // 3: task receipts (reputation.ts), and the network each key registered from (the score groups
  //    submitters by it). Existing nodes get the network of the address they were last seen at.
  {
    sql: `
    ALTER TABLE nodes ADD COLUMN origin_net TEXT;
    CREATE TABLE receipts (
      task_id       TEXT    NOT NULL,
      submitter     INTEGER NOT NULL,
      worker        INTEGER NOT NULL,
      result_sha256 TEXT    NOT NULL,
      delivered_at  INTEGER NOT NULL,
      outcome       INTEGER NOT NULL CHECK (outcome IN (0, 1)),
      decided_at    INTEGER NOT NULL,
      worker_sig    TEXT    NOT NULL,
      submitter_sig TEXT    NOT NULL,
      recorded_at   INTEGER NOT NULL,
      week          INTEGER NOT NULL,
      PRIMARY KEY (task_id, submitter, worker)
    ) WITHOUT ROWID;
    CREATE INDEX receipts_by_worker ON receipts (worker, week, submitter, outcome);
    CREATE INDEX receipts_by_submitter ON receipts (submitter, worker);
    CREATE INDEX receipts_recorded ON receipts (recorded_at);
    `,
    then(db) {
      const rows = db.query("SELECT id, observed_ip FROM nodes WHERE observed_ip IS NOT NULL").all() as { id: number; observed_ip: string }[];
      const set = db.query("UPDATE nodes SET origin_net = ? WHERE id = ?");
      for (const r of rows) set.run(originNetworkOf(r.observed_ip), r.id);
    },
  },
  // 4: search by part of a hostname through a trigram index (an FTS5 table with the trigram
  //    tokenizer, kept in step with nodes.hostname by triggers; its rowid is the node id), instead of
  //    reading every node. Where this SQLite has no FTS5 or no trigram tokenizer, search scans instead.
  {
    sql: "SELECT 1",
    then(db) {
      try {
        db.exec(`CREATE VIRTUAL TABLE ${HOSTNAME_INDEX} USING fts5(hostname, tokenize = 'trigram')`);
      } catch {
        return;
      }
      db.exec(`
      CREATE TRIGGER nodes_hostname_trgm_insert AFTER INSERT ON nodes WHEN new.hostname IS NOT NULL BEGIN
        INSERT INTO ${HOSTNAME_INDEX} (rowid, hostname) VALUES (new.id, new.hostname);
      END;
      CREATE TRIGGER nodes_hostname_trgm_update AFTER UPDATE OF hostname ON nodes WHEN old.hostname IS NOT new.hostname BEGIN
        DELETE FROM ${HOSTNAME_INDEX} WHERE rowid = old.id;
        INSERT INTO ${HOSTNAME_INDEX} (rowid, hostname) SELECT new.id, new.hostname WHERE new.hostname IS NOT NULL;
      END;
      CREATE TRIGGER nodes_hostname_trgm_delete AFTER DELETE ON nodes BEGIN
        DELETE FROM ${HOSTNAME_INDEX} WHERE rowid = old.id;
      END;
      INSERT INTO ${HOSTNAME_INDEX} (rowid, hostname) SELECT id, hostname FROM nodes WHERE hostname IS NOT NULL;
      `);
    },
  },
];

export type { NodeRow, TrustRequestRow } from "./storage.ts";

interface RawNode {
  id: number;
  public_key: string;
  hostname: string | null;
  public: number;
  tags: string;
  endpoints: string;
  observed_ip: string | null;
  registered_at: number;
  last_seen: number;
  active: number;
  origin_net: string | null;
}

const NODE_COLUMNS = "id, public_key, hostname, public, tags, endpoints, observed_ip, registered_at, last_seen, active, origin_net";

function toNode(raw: RawNode | null): NodeRow | undefined {
  if (!raw) return undefined;
  return {
    id: raw.id,
    publicKey: raw.public_key,
    hostname: raw.hostname,
    public: raw.public === 1,
    tags: JSON.parse(raw.tags) as string[],
    endpoints: JSON.parse(raw.endpoints) as string[],
    observedIp: raw.observed_ip,
    registeredAt: raw.registered_at,
    lastSeen: raw.last_seen,
    active: raw.active === 1,
    originNet: raw.origin_net,
  };
}

function pair(x: number, y: number): [number, number] {
  return x < y ? [x, y] : [y, x];
}

export class RegistryStore {
  /** search's query: candidates from the tag's rows and the hostname index where there is one. */
  private readonly searchSql: string;
  private readonly hostnameIndexed: boolean;

  private constructor(private readonly db: Database) {
    const indexed = db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(HOSTNAME_INDEX) !== null;
    this.hostnameIndexed = indexed;
    // Candidates first (the tag's rows through its key; hostnames through the trigram index, whose
    // LIKE finds a superset, case-insensitive: the exact test follows), then the rules on each.
    const candidates = indexed
      ? `n.id IN (SELECT node_id FROM node_tags WHERE tag = ?1 UNION SELECT rowid FROM ${HOSTNAME_INDEX} WHERE hostname LIKE ?5) AND`
      : "";
    this.searchSql = `SELECT ${NODE_COLUMNS} FROM nodes n
         WHERE ${candidates} n.active = 1 AND (n.last_seen >= ?4 OR n.id = ?2)
           AND (instr(n.hostname, ?1) > 0 OR EXISTS (SELECT 1 FROM node_tags t WHERE t.tag = ?1 AND t.node_id = n.id))
           AND (n.public = 1 OR n.id = ?2
                OR EXISTS (SELECT 1 FROM trust WHERE (a = n.id AND b = ?2) OR (a = ?2 AND b = n.id))
                OR EXISTS (SELECT 1 FROM trust_requests r WHERE r.from_id = n.id AND r.to_id = ?2))
         ORDER BY n.id LIMIT ?3`;
  }

  static open(path: string): RegistryStore {
    if (path !== ":memory:") {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      // The store holds the trust graph: create it 0600 (SQLite gives -wal and -shm the same mode).
      if (!existsSync(path)) closeSync(openSync(path, "a", 0o600));
    }
    const db = new Database(path, { create: true });
    try {
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = NORMAL");
      db.exec("PRAGMA foreign_keys = ON");
      db.exec("PRAGMA busy_timeout = 5000");
      const version = (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
      if (version > SCHEMA_VERSION) {
        throw new Error(`${path} has schema version ${version}, newer than this pilot understands (${SCHEMA_VERSION}); upgrade pilot`);
      }
      for (let v = version; v < SCHEMA_VERSION; v++) {
        db.transaction(() => {
          const m = MIGRATIONS[v]!;
          db.exec(typeof m === "string" ? m : m.sql);
          if (typeof m !== "string") m.then(db);
          db.exec(`PRAGMA user_version = ${v + 1}`);
        })();
      }
    } catch (e) {
      db.close();
      throw e;
    }
    return new RegistryStore(db);
  }

  close(): void {
    this.db.close();
  }

  schemaVersion(): number {
    return (this.db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
  }

  /** Runs SQL as written (sqlite-storage.ts uses it for BEGIN / SAVEPOINT / COMMIT around async work). */
  exec(sql: string): void {
    this.db.exec(sql);
  }

  /** Runs `fn` in one write transaction (BEGIN IMMEDIATE); any throw rolls everything back. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  // -- nodes ---------------------------------------------------------------

  nodeById(id: number): NodeRow | undefined {
    return toNode(this.db.query(`SELECT ${NODE_COLUMNS} FROM nodes WHERE id = ?`).get(id) as RawNode | null);
  }

  nodeByKey(publicKey: string): NodeRow | undefined {
    return toNode(this.db.query(`SELECT ${NODE_COLUMNS} FROM nodes WHERE public_key = ?`).get(publicKey) as RawNode | null);
  }

  nodeByHostname(hostname: string): NodeRow | undefined {
    return toNode(this.db.query(`SELECT ${NODE_COLUMNS} FROM nodes WHERE hostname = ?`).get(hostname) as RawNode | null);
  }

  /** Creates a node with the next free id (from FIRST_ASSIGNABLE_NODE up; never reused). */
  createNode(publicKey: string, now: number, observedIp: string | null): NodeRow {
    const max = (this.db.query("SELECT MAX(id) AS max FROM nodes").get() as { max: number | null }).max;
    const id = Math.max(FIRST_ASSIGNABLE_NODE, (max ?? 0) + 1);
    if (id > LAST_ASSIGNABLE_NODE) throw new Error("the node id space is exhausted");
    this.db
      .query("INSERT INTO nodes (id, public_key, observed_ip, registered_at, last_seen, origin_net) VALUES (?, ?, ?, ?, ?, ?)")
      .run(id, publicKey, observedIp, now, now, originNetworkOf(observedIp));
    return this.nodeById(id)!;
  }

  /** Brings a deregistered node back under its old id, with a fresh (private, nameless) record. */
  reactivateNode(id: number, now: number): void {
    this.db
      .query("UPDATE nodes SET active = 1, public = 0, hostname = NULL, tags = '[]', endpoints = '[]', last_seen = ? WHERE id = ?")
      .run(now, id);
  }

  touch(id: number, now: number, observedIp: string | null, endpoints?: string[]): void {
    if (endpoints) {
      this.db.query("UPDATE nodes SET last_seen = ?, observed_ip = ?, endpoints = ? WHERE id = ?").run(now, observedIp, JSON.stringify(endpoints), id);
    } else {
      this.db.query("UPDATE nodes SET last_seen = ?, observed_ip = ? WHERE id = ?").run(now, observedIp, id);
    }
  }

  setHostname(id: number, hostname: string | null): void {
    this.db.query("UPDATE nodes SET hostname = ? WHERE id = ?").run(hostname, id);
  }

  setPublic(id: number, isPublic: boolean): void {
    this.db.query("UPDATE nodes SET public = ? WHERE id = ?").run(isPublic ? 1 : 0, id);
  }

  setTags(id: number, tags: string[]): void {
    this.db.query("UPDATE nodes SET tags = ? WHERE id = ?").run(JSON.stringify(tags), id);
    this.db.query("DELETE FROM node_tags WHERE node_id = ?").run(id);
    const insert = this.db.query("INSERT INTO node_tags (tag, node_id) VALUES (?, ?)");
    for (const t of tags) insert.run(t, id);
  }

  /** Deregistration: the row stays (id and key), everything else is cleared. */
  deactivateNode(id: number): void {
    this.setTags(id, []);
    this.db
      .query("UPDATE nodes SET active = 0, public = 0, hostname = NULL, endpoints = '[]', observed_ip = NULL WHERE id = ?")
      .run(id);
  }

  /**
   * Nodes last seen before `cutoff` lose their hostname and tags (the name is
   * free again and they leave search). Returns how many were reaped.
   */
  reap(cutoff: number): number {
    const ids = (
      this.db.query("SELECT id FROM nodes WHERE last_seen < ? AND (hostname IS NOT NULL OR tags <> '[]')").all(cutoff) as { id: number }[]
    ).map((r) => r.id);
    for (const id of ids) {
      this.setTags(id, []);
      this.setHostname(id, null);
    }
    return ids.length;
  }

  // -- replay protection -----------------------------------------------------

  /** Records a request nonce until `expires`; false if it is already recorded (a replay). */
  claimNonce(nonce: string, expires: number): boolean {
    return this.db.query("INSERT OR IGNORE INTO seen_nonces (nonce, expires) VALUES (?, ?)").run(nonce, expires).changes > 0;
  }

  /** Forgets nonces whose requests are stale anyway. */
  pruneNonces(now: number): number {
    return this.db.query("DELETE FROM seen_nonces WHERE expires < ?").run(now).changes;
  }

  /**
   * Nodes `viewer` may see whose hostname contains `query` or that carry the
   * tag `query`. Visible: itself, public nodes, trusted peers, and nodes with
   * a pending trust request to the viewer. Nodes last seen before `seenSince`
   * are left out (they are about to be reaped).
   */
  search(viewer: number, query: string, limit: number, seenSince = 0): NodeRow[] {
    const params = this.hostnameIndexed ? [query, viewer, limit, seenSince, `%${query}%`] : [query, viewer, limit, seenSince];
    const rows = this.db.query(this.searchSql).all(...params) as RawNode[];
    return rows.map((r) => toNode(r)!);
  }

  // -- trust ---------------------------------------------------------------

  isTrusted(x: number, y: number): boolean {
    const [a, b] = pair(x, y);
    return this.db.query("SELECT 1 FROM trust WHERE a = ? AND b = ?").get(a, b) !== null;
  }

  addTrust(x: number, y: number, now: number): void {
    const [a, b] = pair(x, y);
    this.db.query("INSERT OR IGNORE INTO trust (a, b, since) VALUES (?, ?, ?)").run(a, b, now);
  }

  removeTrust(x: number, y: number): boolean {
    const [a, b] = pair(x, y);
    return this.db.query("DELETE FROM trust WHERE a = ? AND b = ?").run(a, b).changes > 0;
  }

  /** Trusted peers of `id` with the time the pair was made. */
  trustedPeers(id: number): { peer: number; since: number }[] {
    return this.db
      .query("SELECT b AS peer, since FROM trust WHERE a = ?1 UNION ALL SELECT a AS peer, since FROM trust WHERE b = ?1 ORDER BY peer")
      .all(id) as { peer: number; since: number }[];
  }

  trustRequest(from: number, to: number): TrustRequestRow | undefined {
    const row = this.db.query("SELECT from_id, to_id, reason, created_at FROM trust_requests WHERE from_id = ? AND to_id = ?").get(from, to) as
      | { from_id: number; to_id: number; reason: string; created_at: number }
      | null;
    return row ? { from: row.from_id, to: row.to_id, reason: row.reason, createdAt: row.created_at } : undefined;
  }

  addTrustRequest(from: number, to: number, reason: string, now: number): void {
    this.db.query("INSERT INTO trust_requests (from_id, to_id, reason, created_at) VALUES (?, ?, ?, ?)").run(from, to, reason, now);
  }

  removeTrustRequest(from: number, to: number): boolean {
    return this.db.query("DELETE FROM trust_requests WHERE from_id = ? AND to_id = ?").run(from, to).changes > 0;
  }

  /** Oldest first, at most `limit`. */
  inboundRequests(to: number, limit: number): TrustRequestRow[] {
    return (
      this.db
        .query("SELECT from_id, to_id, reason, created_at FROM trust_requests WHERE to_id = ? ORDER BY created_at, from_id LIMIT ?")
        .all(to, limit) as { from_id: number; to_id: number; reason: string; created_at: number }[]
    ).map((r) => ({ from: r.from_id, to: r.to_id, reason: r.reason, createdAt: r.created_at }));
  }

  /** Newest first, `limit` from `offset`. */
  inboundNewest(to: number, limit: number, offset = 0): TrustRequestRow[] {
    return (
      this.db
        .query("SELECT from_id, to_id, reason, created_at FROM trust_requests WHERE to_id = ? ORDER BY created_at DESC, from_id DESC LIMIT ? OFFSET ?")
        .all(to, limit, offset) as { from_id: number; to_id: number; reason: string; created_at: number }[]
    ).map((r) => ({ from: r.from_id, to: r.to_id, reason: r.reason, createdAt: r.created_at }));
  }

  inboundCount(to: number): number {
    return (this.db.query("SELECT COUNT(*) AS n FROM trust_requests WHERE to_id = ?").get(to) as { n: number }).n;
  }

  outboundRequests(from: number): TrustRequestRow[] {
    return (
      this.db
        .query("SELECT from_id, to_id, reason, created_at FROM trust_requests WHERE from_id = ? ORDER BY created_at, to_id")
        .all(from) as { from_id: number; to_id: number; reason: string; created_at: number }[]
    ).map((r) => ({ from: r.from_id, to: r.to_id, reason: r.reason, createdAt: r.created_at }));
  }

  outboundCount(from: number): number {
    return (this.db.query("SELECT COUNT(*) AS n FROM trust_requests WHERE from_id = ?").get(from) as { n: number }).n;
  }

  /** Requests made to an id before it was assigned: they were addressed to nobody. */
  dropRequestsTo(id: number): void {
    this.db.query("DELETE FROM trust_requests WHERE to_id = ?").run(id);
  }

  /**
   * Removes every pair of `id` and every request it made; returns the peers
   * whose trust was removed. Requests made *to* it stay: removing them would
   * tell their senders that the node existed.
   */
  forgetTrust(id: number): number[] {
    const peers = this.trustedPeers(id).map((p) => p.peer);
    this.db.query("DELETE FROM trust WHERE a = ?1 OR b = ?1").run(id);
    this.db.query("DELETE FROM trust_requests WHERE from_id = ?1").run(id);
    return peers;
  }

  // -- task receipts (reputation) ------------------------------------------------

  receipt(taskId: string, submitter: number, worker: number): TaskReceipt | undefined {
    const row = this.db
      .query("SELECT result_sha256, delivered_at, outcome, decided_at, worker_sig, submitter_sig FROM receipts WHERE task_id = ? AND submitter = ? AND worker = ?")
      .get(taskId, submitter, worker) as
      | { result_sha256: string; delivered_at: number; outcome: number; decided_at: number; worker_sig: string; submitter_sig: string }
      | null;
    if (!row) return undefined;
    return {
      taskId,
      submitter,
      worker,
      resultSha256: row.result_sha256,
      deliveredAt: row.delivered_at,
      outcome: (row.outcome === 1 ? "accepted" : "rejected") as ReceiptOutcome,
      decidedAt: row.decided_at,
      workerSignature: new Uint8Array(Buffer.from(row.worker_sig, "base64")),
      submitterSignature: new Uint8Array(Buffer.from(row.submitter_sig, "base64")),
    };
  }

  /** Stores a verified receipt, recorded at `now` (the registry's clock). */
  addReceipt(r: TaskReceipt, now: number): void {
    this.db
      .query(
        `INSERT INTO receipts (task_id, submitter, worker, result_sha256, delivered_at, outcome, decided_at, worker_sig, submitter_sig, recorded_at, week)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        r.taskId,
        r.submitter,
        r.worker,
        r.resultSha256,
        r.deliveredAt,
        r.outcome === "accepted" ? 1 : 0,
        r.decidedAt,
        Buffer.from(r.workerSignature).toString("base64"),
        Buffer.from(r.submitterSignature).toString("base64"),
        now,
        weekOf(now),
      );
  }

  /** Receipts stored for one (submitter, worker) pair in one week. */
  pairReceiptsInWeek(submitter: number, worker: number, week: number): number {
    return (this.db.query("SELECT COUNT(*) AS n FROM receipts WHERE submitter = ? AND worker = ? AND week = ?").get(submitter, worker, week) as { n: number }).n;
  }

  /**
   * A worker's receipts from `firstWeek` on, as vote groups, with what the
   * score needs of each submitter; the newest `limit` groups.
   */
  voteGroups(worker: number, firstWeek: number, limit: number): (VoteGroup & { registeredAt: number; originNet: string | null })[] {
    const rows = this.db
      .query(
        `SELECT g.submitter, g.week, g.accepted, g.rejected, n.registered_at, n.origin_net FROM
           (SELECT submitter, week, SUM(outcome) AS accepted, COUNT(*) - SUM(outcome) AS rejected
              FROM receipts WHERE worker = ?1 AND week >= ?2 GROUP BY week, submitter ORDER BY week DESC, submitter LIMIT ?3) g
         JOIN nodes n ON n.id = g.submitter`,
      )
      .all(worker, firstWeek, limit) as { submitter: number; week: number; accepted: number; rejected: number; registered_at: number; origin_net: string | null }[];
    return rows.map((r) => ({ submitter: r.submitter, week: r.week, accepted: r.accepted, rejected: r.rejected, registeredAt: r.registered_at, originNet: r.origin_net }));
  }

  /** Workers `submitter` has receipts for (their scores depend on its standing); at most `limit`. */
  workersRatedBy(submitter: number, limit: number): number[] {
    return (this.db.query("SELECT DISTINCT worker FROM receipts WHERE submitter = ? LIMIT ?").all(submitter, limit) as { worker: number }[]).map((r) => r.worker);
  }

  /** Which of `workers` have receipts from `firstWeek` on. */
  workersWithReceipts(workers: number[], firstWeek: number): number[] {
    if (workers.length === 0) return [];
    const marks = workers.map(() => "?").join(", ");
    return (this.db.query(`SELECT DISTINCT worker FROM receipts WHERE week >= ? AND worker IN (${marks})`).all(firstWeek, ...workers) as { worker: number }[]).map((r) => r.worker);
  }

  /** Receipts a node signed as submitter and as worker (all stored, whatever their age). */
  receiptCounts(node: number): { asSubmitter: number; asWorker: number } {
    const one = (sql: string) => (this.db.query(sql).get(node) as { n: number }).n;
    return {
      asSubmitter: one("SELECT COUNT(*) AS n FROM receipts WHERE submitter = ?"),
      asWorker: one("SELECT COUNT(*) AS n FROM receipts WHERE worker = ?"),
    };
  }

  /** Drops receipts recorded before `cutoff`: past the horizon they no longer count. */
  pruneReceipts(cutoff: number): number {
    return this.db.query("DELETE FROM receipts WHERE recorded_at < ?").run(cutoff).changes;
  }

  counts(): { nodes: number; active: number; trust: number; requests: number } {
    const one = (sql: string) => (this.db.query(sql).get() as { n: number }).n;
    return {
      nodes: one("SELECT COUNT(*) AS n FROM nodes"),
      active: one("SELECT COUNT(*) AS n FROM nodes WHERE active = 1"),
      trust: one("SELECT COUNT(*) AS n FROM trust"),
      requests: one("SELECT COUNT(*) AS n FROM trust_requests"),
    };
  }
}
