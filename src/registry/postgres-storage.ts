/**
 * RegistryStorage on PostgreSQL through Bun.sql: the registry's state for a
 * deployment of several registry processes on one database (docs/DEPLOYMENT.md).
 *
 * Schema: versioned migrations in `pilot_schema_migrations`, applied in order
 * at open under an advisory lock (registries starting together apply each once);
 * a database written by a newer pilot is refused.
 *
 * Writes: every top-level transaction first takes one transaction-scoped
 * advisory lock (WRITE_LOCK), so write transactions run one at a time across
 * every registry on the database, as BEGIN IMMEDIATE makes them on SQLite.
 * Heartbeats (a nonce and their own node's row, deciding nothing from what
 * they read) take it shared: they run alongside each other. The
 * service's rules (a hostname free, ids in order, a mutual trust request
 * making a pair) are then decided on a consistent view without retry loops.
 * Reads take no lock; each statement sees what was committed before it.
 * A transaction's handle opens savepoints for nested transactions.
 *
 * Events: `notify` sends an event with the transaction that caused it
 * (pg_notify, delivered on commit); `listen` receives every registry's.
 */
import { SQL } from "bun";
import { FIRST_ASSIGNABLE_NODE } from "../protocol/address.ts";
import type { ReceiptOutcome, TaskReceipt } from "../protocol/receipt.ts";
import { originNetworkOf, weekOf } from "./reputation.ts";
import type { LookupRows, NodeRow, RegistrationFields, RegistryStorage, StoreCounts, TrustRequestRow, VoteGroupRow } from "./storage.ts";

export const PG_SCHEMA_VERSION = 4;
const LAST_ASSIGNABLE_NODE = 0xffff_fffe;
/** Advisory lock keys ("pilot" and "pilotm" in ASCII): writes, and migrations. */
const WRITE_LOCK = 0x70696c6f74;
const MIGRATION_LOCK = 0x70696c6f746d;
/** The channel registry events travel on between registries. */
export const EVENT_CHANNEL = "pilot_registry_events";

/** Schema 1 is SQLite's schema 3 (store.ts) in PostgreSQL's types: the same tables, keys and indexes. */
/** A migration is SQL, or code given the migrating transaction. */
type Migration = string | ((tx: SQL) => Promise<void>);

const MIGRATIONS: readonly Migration[] = [
  `
  CREATE TABLE nodes (
    id            BIGINT  PRIMARY KEY,
    public_key    TEXT    NOT NULL UNIQUE,
    hostname      TEXT    UNIQUE,
    public        BOOLEAN NOT NULL DEFAULT false,
    tags          TEXT    NOT NULL DEFAULT '[]',
    endpoints     TEXT    NOT NULL DEFAULT '[]',
    observed_ip   TEXT,
    registered_at BIGINT  NOT NULL,
    last_seen     BIGINT  NOT NULL,
    active        BOOLEAN NOT NULL DEFAULT true,
    origin_net    TEXT
  );
  CREATE INDEX nodes_last_seen ON nodes (last_seen) WHERE hostname IS NOT NULL OR tags <> '[]';
  CREATE TABLE node_tags (
    tag     TEXT   NOT NULL,
    node_id BIGINT NOT NULL,
    PRIMARY KEY (tag, node_id)
  );
  CREATE INDEX node_tags_node ON node_tags (node_id);
  CREATE TABLE trust (
    a     BIGINT NOT NULL,
    b     BIGINT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (a, b),
    CHECK (a < b)
  );
  CREATE INDEX trust_by_b ON trust (b, a);
  CREATE TABLE trust_requests (
    from_id    BIGINT NOT NULL,
    to_id      BIGINT NOT NULL,
    reason     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (from_id, to_id)
  );
  CREATE INDEX trust_requests_to ON trust_requests (to_id, created_at);
  CREATE TABLE seen_nonces (
    nonce   TEXT   PRIMARY KEY,
    expires BIGINT NOT NULL
  );
  CREATE INDEX seen_nonces_expires ON seen_nonces (expires);
  CREATE TABLE receipts (
    task_id       TEXT     NOT NULL,
    submitter     BIGINT   NOT NULL,
    worker        BIGINT   NOT NULL,
    result_sha256 TEXT     NOT NULL,
    delivered_at  BIGINT   NOT NULL,
    outcome       SMALLINT NOT NULL CHECK (outcome IN (0, 1)),
    decided_at    BIGINT   NOT NULL,
    worker_sig    TEXT     NOT NULL,
    submitter_sig TEXT     NOT NULL,
    recorded_at   BIGINT   NOT NULL,
    week          BIGINT   NOT NULL,
    PRIMARY KEY (task_id, submitter, worker)
  );
  CREATE INDEX receipts_by_worker ON receipts (worker, week, submitter, outcome);
  CREATE INDEX receipts_by_submitter ON receipts (submitter, worker);
  CREATE INDEX receipts_recorded ON receipts (recorded_at);
  `,
  // 2: contact grants (service.ts canSee), shared by the registries: a node resolves a peer at one
  //    registry and the peer looks it up at another. Short-lived, so UNLOGGED (lost only if the
  //    database server crashes; they last 10 minutes anyway); pruned with the nonces.
  `
  CREATE UNLOGGED TABLE contact_grants (
    initiator BIGINT NOT NULL,
    target    BIGINT NOT NULL,
    expires   BIGINT NOT NULL,
    PRIMARY KEY (initiator, target)
  );
  CREATE INDEX contact_grants_expires ON contact_grants (expires);
  `,
  // 3: search by part of a hostname through a trigram index (pg_trgm, a trusted extension the
  //    database's owner may create). Where the extension is not installed, search scans instead.
  async (tx) => {
    await tx.unsafe("SAVEPOINT trgm");
    try {
      await tx.unsafe("CREATE EXTENSION IF NOT EXISTS pg_trgm");
      await tx.unsafe("CREATE INDEX nodes_hostname_trgm ON nodes USING gin (hostname gin_trgm_ops)");
      await tx.unsafe("RELEASE SAVEPOINT trgm");
    } catch {
      await tx.unsafe("ROLLBACK TO SAVEPOINT trgm");
    }
  },
  // 4: node ids from a sequence, so that registrations need not wait for each other to pick one
  //    (an id a failed registration drew is skipped, never reused), starting after the ids in use.
  `
  CREATE SEQUENCE pilot_node_ids AS BIGINT MINVALUE ${FIRST_ASSIGNABLE_NODE} MAXVALUE ${LAST_ASSIGNABLE_NODE} NO CYCLE;
  SELECT setval('pilot_node_ids', m) FROM (SELECT MAX(id) AS m FROM nodes) s WHERE m >= ${FIRST_ASSIGNABLE_NODE};
  `,
];

interface RawNode {
  id: number | string;
  public_key: string;
  hostname: string | null;
  public: boolean;
  tags: string;
  endpoints: string;
  observed_ip: string | null;
  registered_at: number | string;
  last_seen: number | string;
  active: boolean;
  origin_net: string | null;
}

const NODE_COLUMNS = "id, public_key, hostname, public, tags, endpoints, observed_ip, registered_at, last_seen, active, origin_net";
const NODE_COLUMNS_OF_N = NODE_COLUMNS.split(", ").map((c) => `n.${c}`).join(", ");

function toNode(raw: RawNode | undefined): NodeRow | undefined {
  if (!raw) return undefined;
  return {
    id: Number(raw.id),
    publicKey: raw.public_key,
    hostname: raw.hostname,
    public: raw.public,
    tags: JSON.parse(raw.tags) as string[],
    endpoints: JSON.parse(raw.endpoints) as string[],
    observedIp: raw.observed_ip,
    registeredAt: Number(raw.registered_at),
    lastSeen: Number(raw.last_seen),
    active: raw.active,
    originNet: raw.origin_net,
  };
}

function toRequest(r: { from_id: number | string; to_id: number | string; reason: string; created_at: number | string }): TrustRequestRow {
  return { from: Number(r.from_id), to: Number(r.to_id), reason: r.reason, createdAt: Number(r.created_at) };
}

function pair(x: number, y: number): [number, number] {
  return x < y ? [x, y] : [y, x];
}

/** postgres://user:pass@host:port/db without the password, for logs and the ready line. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "postgres://(unparsable)";
  }
}

export function isPostgresUrl(text: string): boolean {
  return /^postgres(ql)?:\/\//i.test(text);
}

type Query = SQL;

export class PostgresStorage implements RegistryStorage {
  readonly kind = "postgres" as const;
  private savepoints = 0;

  private constructor(
    private readonly sql: Query,
    readonly location: string,
    private readonly root: SQL,
    private readonly inTransaction = false,
  ) {}

  /** Connects, applies missing migrations, and refuses a database written by a newer pilot. */
  static async open(url: string, options: { max?: number } = {}): Promise<PostgresStorage> {
    const sql = new SQL({ url, max: options.max ?? 10, idleTimeout: 60, connectionTimeout: 10 });
    try {
      await migrate(sql);
    } catch (e) {
      await sql.close().catch(() => {});
      throw e;
    }
    return new PostgresStorage(sql, redactedUrl(url), sql);
  }

  private q(text: string, values: unknown[] = []): Promise<any[]> {
    return this.sql.unsafe(text, values) as unknown as Promise<any[]>;
  }

  async transaction<T>(fn: (tx: RegistryStorage) => Promise<T>, options: { shared?: boolean } = {}): Promise<T> {
    if (this.inTransaction) {
      const name = `sp${++this.savepoints}`;
      await this.q(`SAVEPOINT ${name}`);
      try {
        const value = await fn(this);
        await this.q(`RELEASE SAVEPOINT ${name}`);
        return value;
      } catch (e) {
        await this.q(`ROLLBACK TO SAVEPOINT ${name}`);
        await this.q(`RELEASE SAVEPOINT ${name}`);
        throw e;
      }
    }
    return (await this.sql.begin(async (tx) => {
      // A shared transaction still waits while an exclusive one runs, but not for other shared ones.
      await tx.unsafe(`SELECT ${options.shared ? "pg_advisory_xact_lock_shared" : "pg_advisory_xact_lock"}(${WRITE_LOCK})`);
      return fn(new PostgresStorage(tx as unknown as SQL, this.location, this.root, true));
    })) as T;
  }

  /** Sends `payload` on the event channel; on a transaction's handle it goes out on commit, or never. */
  async notify(payload: string): Promise<void> {
    await this.q("SELECT pg_notify($1, $2)", [EVENT_CHANNEL, payload]);
  }

  /** Receives every payload sent on the event channel (by any registry, this one included). */
  async listen(onPayload: (payload: string) => void, onListen?: () => void): Promise<{ unlisten(): Promise<void> }> {
    return this.root.listen(EVENT_CHANNEL, onPayload, onListen);
  }

  async close(): Promise<void> {
    await this.root.close({ timeout: 5 });
  }

  async schemaVersion(): Promise<number> {
    const rows = await this.q("SELECT COALESCE(MAX(version), 0) AS v FROM pilot_schema_migrations");
    return Number(rows[0].v);
  }

  async counts(): Promise<StoreCounts> {
    const [r] = await this.q(
      `SELECT (SELECT COUNT(*) FROM nodes) AS nodes, (SELECT COUNT(*) FROM nodes WHERE active) AS active,
              (SELECT COUNT(*) FROM trust) AS trust, (SELECT COUNT(*) FROM trust_requests) AS requests`,
    );
    return { nodes: Number(r.nodes), active: Number(r.active), trust: Number(r.trust), requests: Number(r.requests) };
  }

  // -- nodes ---------------------------------------------------------------

  async nodeById(id: number): Promise<NodeRow | undefined> {
    return toNode((await this.q(`SELECT ${NODE_COLUMNS} FROM nodes WHERE id = $1`, [id]))[0]);
  }

  async nodeByKey(publicKey: string): Promise<NodeRow | undefined> {
    return toNode((await this.q(`SELECT ${NODE_COLUMNS} FROM nodes WHERE public_key = $1`, [publicKey]))[0]);
  }

  async nodeByHostname(hostname: string): Promise<NodeRow | undefined> {
    return toNode((await this.q(`SELECT ${NODE_COLUMNS} FROM nodes WHERE hostname = $1`, [hostname]))[0]);
  }

  async createNode(publicKey: string, now: number, observedIp: string | null): Promise<NodeRow> {
    // The id from the sequence (schema 4): distinct and increasing without a lock; past
    // LAST_ASSIGNABLE_NODE nextval fails ("reached maximum value"), and so does the registration.
    const rows = await this.q(
      `INSERT INTO nodes (id, public_key, observed_ip, registered_at, last_seen, origin_net) VALUES (nextval('pilot_node_ids'), $1, $2, $3, $4, $5) RETURNING ${NODE_COLUMNS}`,
      [publicKey, observedIp, now, now, originNetworkOf(observedIp)],
    );
    return toNode(rows[0])!;
  }

  /**
   * Transaction-scoped locks on names (a public key, a hostname), in one fixed order so two
   * transactions never wait for each other in a cycle. Registrations run under the shared write
   * lock and take these for what they decide on: the node of a key, the owner of a name.
   */
  async lockKeys(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    const values = keys.map((_, i) => `($${i + 1}::text)`).join(", ");
    await this.q(`SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, 0) AS h FROM (VALUES ${values}) v(k) ORDER BY h) s`, keys);
  }

  async applyRegistration(id: number, now: number, observedIp: string | null, f: RegistrationFields): Promise<NodeRow> {
    // One round trip for what would be five: the tags' rows (only when tags are given; the deleted
    // and inserted rows never overlap), then the node's columns, returning the row.
    const tags = f.tags === undefined ? null : JSON.stringify(f.tags);
    const rows = await this.q(
      `WITH d AS (DELETE FROM node_tags WHERE node_id = $1 AND $7::text IS NOT NULL AND NOT (tag = ANY (SELECT jsonb_array_elements_text(($7::text)::jsonb)))),
            i AS (INSERT INTO node_tags (tag, node_id) SELECT t, $1 FROM jsonb_array_elements_text(COALESCE($7::text, '[]')::jsonb) t ON CONFLICT DO NOTHING)
       UPDATE nodes SET last_seen = $2, observed_ip = $3::text, endpoints = COALESCE($4::text, endpoints),
                        hostname = CASE WHEN $5::boolean THEN $6::text ELSE hostname END,
                        tags = COALESCE($7::text, tags), public = COALESCE($8::boolean, public)
       WHERE id = $1 RETURNING ${NODE_COLUMNS}`,
      [id, now, observedIp, f.endpoints === undefined ? null : JSON.stringify(f.endpoints), f.hostname !== undefined, f.hostname ?? null, tags, f.public ?? null],
    );
    return toNode(rows[0])!;
  }

  async reactivateNode(id: number, now: number): Promise<void> {
    await this.q("UPDATE nodes SET active = true, public = false, hostname = NULL, tags = '[]', endpoints = '[]', last_seen = $1 WHERE id = $2", [now, id]);
  }

  async touch(id: number, now: number, observedIp: string | null, endpoints?: string[]): Promise<void> {
    if (endpoints) await this.q("UPDATE nodes SET last_seen = $1, observed_ip = $2, endpoints = $3 WHERE id = $4", [now, observedIp, JSON.stringify(endpoints), id]);
    else await this.q("UPDATE nodes SET last_seen = $1, observed_ip = $2 WHERE id = $3", [now, observedIp, id]);
  }

  async setHostname(id: number, hostname: string | null): Promise<void> {
    await this.q("UPDATE nodes SET hostname = $1 WHERE id = $2", [hostname, id]);
  }

  async setPublic(id: number, isPublic: boolean): Promise<void> {
    await this.q("UPDATE nodes SET public = $1 WHERE id = $2", [isPublic, id]);
  }

  async setTags(id: number, tags: string[]): Promise<void> {
    // One round trip: the column, the tags no longer held, and the new ones (the deleted and the
    // inserted rows never overlap, so the one statement's snapshot does not matter).
    await this.q(
      `WITH u AS (UPDATE nodes SET tags = $1 WHERE id = $2),
            d AS (DELETE FROM node_tags WHERE node_id = $2 AND NOT (tag = ANY (SELECT jsonb_array_elements_text($1::jsonb))))
       INSERT INTO node_tags (tag, node_id) SELECT t, $2 FROM jsonb_array_elements_text($1::jsonb) t ON CONFLICT DO NOTHING`,
      [JSON.stringify(tags), id],
    );
  }

  async deactivateNode(id: number): Promise<void> {
    await this.setTags(id, []);
    await this.q("UPDATE nodes SET active = false, public = false, hostname = NULL, endpoints = '[]', observed_ip = NULL WHERE id = $1", [id]);
  }

  async reap(cutoff: number): Promise<number> {
    const rows = await this.q("SELECT id FROM nodes WHERE last_seen < $1 AND (hostname IS NOT NULL OR tags <> '[]')", [cutoff]);
    for (const r of rows) {
      await this.setTags(Number(r.id), []);
      await this.setHostname(Number(r.id), null);
    }
    return rows.length;
  }

  async lookupRows(viewer: number, target: number, now: number, ratedSince: number): Promise<LookupRows> {
    const rows = await this.q(
      `SELECT ${NODE_COLUMNS_OF_N},
         n.id = $2 AND (n.id = $1 OR (n.active AND (n.public
           OR EXISTS (SELECT 1 FROM trust WHERE a = LEAST(n.id, $1) AND b = GREATEST(n.id, $1))
           OR EXISTS (SELECT 1 FROM trust_requests r WHERE r.from_id = n.id AND r.to_id = $1)
           OR EXISTS (SELECT 1 FROM contact_grants g WHERE g.initiator = n.id AND g.target = $1 AND g.expires > $3)))) AS visible,
         n.id = $2 AND EXISTS (SELECT 1 FROM receipts WHERE worker = n.id AND week >= $4) AS rated
       FROM nodes n WHERE n.id IN ($1, $2)`,
      [viewer, target, now, ratedSince],
    );
    const of = (id: number) => rows.find((r) => Number(r.id) === id);
    const t = of(target);
    return { viewer: toNode(of(viewer)), target: toNode(t), visible: t?.visible === true, rated: t?.rated === true };
  }

  async search(viewer: number, query: string, limit: number, seenSince = 0): Promise<NodeRow[]> {
    // Two candidate streams, each cut at the limit in id order, then the first `limit` of both: the
    // tag's rows (node_tags' key, so a tag of many nodes costs about `limit` row reads, not one per
    // node), and hostnames through the trigram index (a query being letters, digits and hyphens
    // only, so it needs no LIKE escaping). Two statements, sent together: the tag's keeps one cached
    // plan; the LIKE's is planned for its pattern. The rules on each row: active, seen recently (or
    // the viewer), and visible to the viewer.
    const rules = `n.active AND (n.last_seen >= $3 OR n.id = $2)
         AND (n.public OR n.id = $2
              OR EXISTS (SELECT 1 FROM trust WHERE a = LEAST(n.id, $2) AND b = GREATEST(n.id, $2))
              OR EXISTS (SELECT 1 FROM trust_requests r WHERE r.from_id = n.id AND r.to_id = $2))`;
    const [tagged, named] = await Promise.all([
      this.q(`SELECT ${NODE_COLUMNS_OF_N} FROM node_tags t JOIN nodes n ON n.id = t.node_id WHERE t.tag = $1 AND ${rules} ORDER BY t.node_id LIMIT $4`, [
        query,
        viewer,
        seenSince,
        limit,
      ]),
      this.q(`SELECT ${NODE_COLUMNS_OF_N} FROM nodes n WHERE n.hostname LIKE $1 AND ${rules} ORDER BY n.id LIMIT $4`, [`%${query}%`, viewer, seenSince, limit]),
    ]);
    const byId = new Map<number, RawNode>();
    for (const r of [...tagged, ...named]) byId.set(Number(r.id), r);
    return [...byId.keys()]
      .sort((a, b) => a - b)
      .slice(0, limit)
      .map((id) => toNode(byId.get(id))!);
  }

  // -- replay protection -----------------------------------------------------

  async claimNonce(nonce: string, expires: number): Promise<boolean> {
    return (await this.q("INSERT INTO seen_nonces (nonce, expires) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1 AS ok", [nonce, expires])).length > 0;
  }

  async pruneNonces(now: number): Promise<number> {
    await this.q("DELETE FROM contact_grants WHERE expires < $1", [now]);
    return (await this.q("DELETE FROM seen_nonces WHERE expires < $1 RETURNING 1 AS ok", [now])).length;
  }

  // -- contact grants ----------------------------------------------------------

  async grantContact(initiator: number, target: number, expires: number): Promise<void> {
    await this.q(
      "INSERT INTO contact_grants (initiator, target, expires) VALUES ($1, $2, $3) ON CONFLICT (initiator, target) DO UPDATE SET expires = GREATEST(contact_grants.expires, EXCLUDED.expires)",
      [initiator, target, expires],
    );
  }

  async contactGranted(initiator: number, target: number, now: number): Promise<boolean> {
    return (await this.q("SELECT 1 AS ok FROM contact_grants WHERE initiator = $1 AND target = $2 AND expires > $3", [initiator, target, now])).length > 0;
  }

  async endContact(x: number, y: number): Promise<void> {
    await this.q("DELETE FROM contact_grants WHERE (initiator = $1 AND target = $2) OR (initiator = $2 AND target = $1)", [x, y]);
  }

  // -- trust ---------------------------------------------------------------

  async isTrusted(x: number, y: number): Promise<boolean> {
    const [a, b] = pair(x, y);
    return (await this.q("SELECT 1 AS ok FROM trust WHERE a = $1 AND b = $2", [a, b])).length > 0;
  }

  async addTrust(x: number, y: number, now: number): Promise<void> {
    const [a, b] = pair(x, y);
    await this.q("INSERT INTO trust (a, b, since) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", [a, b, now]);
  }

  async removeTrust(x: number, y: number): Promise<boolean> {
    const [a, b] = pair(x, y);
    return (await this.q("DELETE FROM trust WHERE a = $1 AND b = $2 RETURNING 1 AS ok", [a, b])).length > 0;
  }

  async trustedPeers(id: number): Promise<{ peer: number; since: number }[]> {
    const rows = await this.q("SELECT b AS peer, since FROM trust WHERE a = $1 UNION ALL SELECT a AS peer, since FROM trust WHERE b = $1 ORDER BY peer", [id]);
    return rows.map((r) => ({ peer: Number(r.peer), since: Number(r.since) }));
  }

  async trustRequest(from: number, to: number): Promise<TrustRequestRow | undefined> {
    const [r] = await this.q("SELECT from_id, to_id, reason, created_at FROM trust_requests WHERE from_id = $1 AND to_id = $2", [from, to]);
    return r ? toRequest(r) : undefined;
  }

  async addTrustRequest(from: number, to: number, reason: string, now: number): Promise<void> {
    await this.q("INSERT INTO trust_requests (from_id, to_id, reason, created_at) VALUES ($1, $2, $3, $4)", [from, to, reason, now]);
  }

  async removeTrustRequest(from: number, to: number): Promise<boolean> {
    return (await this.q("DELETE FROM trust_requests WHERE from_id = $1 AND to_id = $2 RETURNING 1 AS ok", [from, to])).length > 0;
  }

  async inboundRequests(to: number, limit: number): Promise<TrustRequestRow[]> {
    return (await this.q("SELECT from_id, to_id, reason, created_at FROM trust_requests WHERE to_id = $1 ORDER BY created_at, from_id LIMIT $2", [to, limit])).map(toRequest);
  }

  async inboundNewest(to: number, limit: number, offset = 0): Promise<TrustRequestRow[]> {
    return (
      await this.q("SELECT from_id, to_id, reason, created_at FROM trust_requests WHERE to_id = $1 ORDER BY created_at DESC, from_id DESC LIMIT $2 OFFSET $3", [
        to,
        limit,
        offset,
      ])
    ).map(toRequest);
  }

  async inboundCount(to: number): Promise<number> {
    return Number((await this.q("SELECT COUNT(*) AS n FROM trust_requests WHERE to_id = $1", [to]))[0].n);
  }

  async outboundRequests(from: number): Promise<TrustRequestRow[]> {
    return (await this.q("SELECT from_id, to_id, reason, created_at FROM trust_requests WHERE from_id = $1 ORDER BY created_at, to_id", [from])).map(toRequest);
  }

  async outboundCount(from: number): Promise<number> {
    return Number((await this.q("SELECT COUNT(*) AS n FROM trust_requests WHERE from_id = $1", [from]))[0].n);
  }

  async dropRequestsTo(id: number): Promise<void> {
    await this.q("DELETE FROM trust_requests WHERE to_id = $1", [id]);
  }

  async forgetTrust(id: number): Promise<number[]> {
    const peers = (await this.trustedPeers(id)).map((p) => p.peer);
    await this.q("DELETE FROM trust WHERE a = $1 OR b = $1", [id]);
    await this.q("DELETE FROM trust_requests WHERE from_id = $1", [id]);
    return peers;
  }

  // -- task receipts ---------------------------------------------------------

  async receipt(taskId: string, submitter: number, worker: number): Promise<TaskReceipt | undefined> {
    const [row] = await this.q(
      "SELECT result_sha256, delivered_at, outcome, decided_at, worker_sig, submitter_sig FROM receipts WHERE task_id = $1 AND submitter = $2 AND worker = $3",
      [taskId, submitter, worker],
    );
    if (!row) return undefined;
    return {
      taskId,
      submitter,
      worker,
      resultSha256: row.result_sha256,
      deliveredAt: Number(row.delivered_at),
      outcome: (Number(row.outcome) === 1 ? "accepted" : "rejected") as ReceiptOutcome,
      decidedAt: Number(row.decided_at),
      workerSignature: new Uint8Array(Buffer.from(row.worker_sig, "base64")),
      submitterSignature: new Uint8Array(Buffer.from(row.submitter_sig, "base64")),
    };
  }

  async addReceipt(r: TaskReceipt, now: number): Promise<void> {
    await this.q(
      `INSERT INTO receipts (task_id, submitter, worker, result_sha256, delivered_at, outcome, decided_at, worker_sig, submitter_sig, recorded_at, week)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [
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
      ],
    );
  }

  async pairReceiptsInWeek(submitter: number, worker: number, week: number): Promise<number> {
    return Number((await this.q("SELECT COUNT(*) AS n FROM receipts WHERE submitter = $1 AND worker = $2 AND week = $3", [submitter, worker, week]))[0].n);
  }

  async voteGroups(worker: number, firstWeek: number, limit: number): Promise<VoteGroupRow[]> {
    const rows = await this.q(
      `SELECT g.submitter, g.week, g.accepted, g.rejected, n.registered_at, n.origin_net FROM
         (SELECT submitter, week, SUM(outcome) AS accepted, COUNT(*) - SUM(outcome) AS rejected
            FROM receipts WHERE worker = $1 AND week >= $2 GROUP BY week, submitter ORDER BY week DESC, submitter LIMIT $3) g
       JOIN nodes n ON n.id = g.submitter`,
      [worker, firstWeek, limit],
    );
    return rows.map((r) => ({
      submitter: Number(r.submitter),
      week: Number(r.week),
      accepted: Number(r.accepted),
      rejected: Number(r.rejected),
      registeredAt: Number(r.registered_at),
      originNet: r.origin_net,
    }));
  }

  async workersRatedBy(submitter: number, limit: number): Promise<number[]> {
    return (await this.q("SELECT DISTINCT worker FROM receipts WHERE submitter = $1 LIMIT $2", [submitter, limit])).map((r) => Number(r.worker));
  }

  async workersWithReceipts(workers: number[], firstWeek: number): Promise<number[]> {
    if (workers.length === 0) return [];
    const marks = workers.map((_, i) => `$${i + 2}`).join(", ");
    return (await this.q(`SELECT DISTINCT worker FROM receipts WHERE week >= $1 AND worker IN (${marks})`, [firstWeek, ...workers])).map((r) => Number(r.worker));
  }

  async receiptCounts(node: number): Promise<{ asSubmitter: number; asWorker: number }> {
    const [r] = await this.q("SELECT (SELECT COUNT(*) FROM receipts WHERE submitter = $1) AS s, (SELECT COUNT(*) FROM receipts WHERE worker = $1) AS w", [node]);
    return { asSubmitter: Number(r.s), asWorker: Number(r.w) };
  }

  async pruneReceipts(cutoff: number): Promise<number> {
    return (await this.q("DELETE FROM receipts WHERE recorded_at < $1 RETURNING 1 AS ok", [cutoff])).length;
  }
}

/** Applies the missing migrations in order, in one transaction, under an advisory lock. */
async function migrate(sql: SQL): Promise<void> {
  await sql.begin(async (tx) => {
    await tx.unsafe(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    await tx.unsafe("CREATE TABLE IF NOT EXISTS pilot_schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
    const [row] = (await tx.unsafe("SELECT COALESCE(MAX(version), 0) AS v FROM pilot_schema_migrations")) as any[];
    const version = Number(row.v);
    if (version > PG_SCHEMA_VERSION) {
      throw new Error(`the database has schema version ${version}, newer than this pilot understands (${PG_SCHEMA_VERSION}); upgrade pilot`);
    }
    for (let v = version; v < PG_SCHEMA_VERSION; v++) {
      const m = MIGRATIONS[v]!;
      if (typeof m === "string") await tx.unsafe(m);
      else await m(tx as unknown as SQL);
      await tx.unsafe("INSERT INTO pilot_schema_migrations (version, applied_at) VALUES ($1, $2)", [v + 1, Date.now()]);
    }
  });
}
