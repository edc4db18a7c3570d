/**
 * RegistryStorage over the SQLite store (store.ts): the default, one registry
 * on one machine. bun:sqlite is synchronous, so every call here resolves at
 * once; a transaction is BEGIN IMMEDIATE ... COMMIT around the async
 * callback, one at a time (a lock queues the others), and a nested one is a
 * SAVEPOINT.
 *
 * Contact grants (who resolved whom, service.ts) live in memory, as before
 * there was a PostgreSQL store.
 *
 * Reads outside a transaction run on the same connection: they could see a
 * transaction's uncommitted rows if they ran while its callback is suspended.
 * They cannot here: the callback awaits only calls that resolve at once, so a
 * whole request runs within one turn of the event loop, and the server
 * handles one connection's requests in order.
 */
import type { TaskReceipt } from "../protocol/receipt.ts";
import type { NodeRow, RegistryStorage, StoreCounts, TrustRequestRow, VoteGroupRow } from "./storage.ts";
import { RegistryStore } from "./store.ts";

/** Contact grants live in memory only, at most this many ("initiator:target" -> expiry, oldest first). */
const CONTACT_GRANTS_MAX = 100_000;

export class SqliteStorage implements RegistryStorage {
  readonly kind = "sqlite" as const;
  private lock: Promise<void> = Promise.resolve();
  private savepoints = 0;

  private constructor(
    readonly db: RegistryStore,
    readonly location: string,
    /** Set on a transaction's handle. */
    private readonly inTransaction = false,
    private readonly grants = new Map<string, number>(),
  ) {}

  async grantContact(initiator: number, target: number, expires: number): Promise<void> {
    const key = `${initiator}:${target}`;
    this.grants.delete(key); // re-insert: the Map stays in expiry order
    this.grants.set(key, expires);
    if (this.grants.size > CONTACT_GRANTS_MAX) {
      for (const k of this.grants.keys()) {
        if (this.grants.size <= CONTACT_GRANTS_MAX) break;
        this.grants.delete(k);
      }
    }
  }

  async contactGranted(initiator: number, target: number, now: number): Promise<boolean> {
    return this.contactGrantedNow(initiator, target, now);
  }

  /** The same, synchronously (the beacon's directory). */
  contactGrantedNow(initiator: number, target: number, now: number): boolean {
    return (this.grants.get(`${initiator}:${target}`) ?? 0) > now;
  }

  async endContact(x: number, y: number): Promise<void> {
    this.grants.delete(`${x}:${y}`);
    this.grants.delete(`${y}:${x}`);
  }

  static open(path: string): SqliteStorage {
    return new SqliteStorage(RegistryStore.open(path), path);
  }

  /** Wraps an open store (tests and tools that also use the synchronous store). */
  static wrap(store: RegistryStore, location = "(sqlite)"): SqliteStorage {
    return new SqliteStorage(store, location);
  }

  async transaction<T>(fn: (tx: RegistryStorage) => Promise<T>, _options?: { shared?: boolean }): Promise<T> {
    if (this.inTransaction) {
      const name = `sp${++this.savepoints}`;
      this.db.exec(`SAVEPOINT ${name}`);
      try {
        const value = await fn(this);
        this.db.exec(`RELEASE ${name}`);
        return value;
      } catch (e) {
        this.db.exec(`ROLLBACK TO ${name}`);
        this.db.exec(`RELEASE ${name}`);
        throw e;
      }
    }
    const previous = this.lock;
    let release!: () => void;
    this.lock = new Promise<void>((r) => (release = r));
    await previous;
    try {
      this.db.exec("BEGIN IMMEDIATE");
      try {
        const value = await fn(new SqliteStorage(this.db, this.location, true, this.grants));
        this.db.exec("COMMIT");
        return value;
      } catch (e) {
        this.db.exec("ROLLBACK");
        throw e;
      }
    } finally {
      release();
    }
  }

  async close(): Promise<void> {
    this.db.close();
  }
  async schemaVersion(): Promise<number> {
    return this.db.schemaVersion();
  }
  async counts(): Promise<StoreCounts> {
    return this.db.counts();
  }

  async nodeById(id: number): Promise<NodeRow | undefined> {
    return this.db.nodeById(id);
  }
  async nodeByKey(publicKey: string): Promise<NodeRow | undefined> {
    return this.db.nodeByKey(publicKey);
  }
  async nodeByHostname(hostname: string): Promise<NodeRow | undefined> {
    return this.db.nodeByHostname(hostname);
  }
  async createNode(publicKey: string, now: number, observedIp: string | null): Promise<NodeRow> {
    return this.db.createNode(publicKey, now, observedIp);
  }
  async reactivateNode(id: number, now: number): Promise<void> {
    this.db.reactivateNode(id, now);
  }
  async touch(id: number, now: number, observedIp: string | null, endpoints?: string[]): Promise<void> {
    this.db.touch(id, now, observedIp, endpoints);
  }
  async setHostname(id: number, hostname: string | null): Promise<void> {
    this.db.setHostname(id, hostname);
  }
  async setPublic(id: number, isPublic: boolean): Promise<void> {
    this.db.setPublic(id, isPublic);
  }
  async setTags(id: number, tags: string[]): Promise<void> {
    this.db.setTags(id, tags);
  }
  async deactivateNode(id: number): Promise<void> {
    this.db.deactivateNode(id);
  }
  async reap(cutoff: number): Promise<number> {
    return this.db.reap(cutoff);
  }
  async search(viewer: number, query: string, limit: number, seenSince = 0): Promise<NodeRow[]> {
    return this.db.search(viewer, query, limit, seenSince);
  }

  async claimNonce(nonce: string, expires: number): Promise<boolean> {
    return this.db.claimNonce(nonce, expires);
  }
  async pruneNonces(now: number): Promise<number> {
    return this.db.pruneNonces(now);
  }

  async isTrusted(x: number, y: number): Promise<boolean> {
    return this.db.isTrusted(x, y);
  }
  async addTrust(x: number, y: number, now: number): Promise<void> {
    this.db.addTrust(x, y, now);
  }
  async removeTrust(x: number, y: number): Promise<boolean> {
    return this.db.removeTrust(x, y);
  }
  async trustedPeers(id: number): Promise<{ peer: number; since: number }[]> {
    return this.db.trustedPeers(id);
  }
  async trustRequest(from: number, to: number): Promise<TrustRequestRow | undefined> {
    return this.db.trustRequest(from, to);
  }
  async addTrustRequest(from: number, to: number, reason: string, now: number): Promise<void> {
    this.db.addTrustRequest(from, to, reason, now);
  }
  async removeTrustRequest(from: number, to: number): Promise<boolean> {
    return this.db.removeTrustRequest(from, to);
  }
  async inboundRequests(to: number, limit: number): Promise<TrustRequestRow[]> {
    return this.db.inboundRequests(to, limit);
  }
  async inboundNewest(to: number, limit: number, offset = 0): Promise<TrustRequestRow[]> {
    return this.db.inboundNewest(to, limit, offset);
  }
  async inboundCount(to: number): Promise<number> {
    return this.db.inboundCount(to);
  }
  async outboundRequests(from: number): Promise<TrustRequestRow[]> {
    return this.db.outboundRequests(from);
  }
  async outboundCount(from: number): Promise<number> {
    return this.db.outboundCount(from);
  }
  async dropRequestsTo(id: number): Promise<void> {
    this.db.dropRequestsTo(id);
  }
  async forgetTrust(id: number): Promise<number[]> {
    return this.db.forgetTrust(id);
  }

  async receipt(taskId: string, submitter: number, worker: number): Promise<TaskReceipt | undefined> {
    return this.db.receipt(taskId, submitter, worker);
  }
  async addReceipt(r: TaskReceipt, now: number): Promise<void> {
    this.db.addReceipt(r, now);
  }
  async pairReceiptsInWeek(submitter: number, worker: number, week: number): Promise<number> {
    return this.db.pairReceiptsInWeek(submitter, worker, week);
  }
  async voteGroups(worker: number, firstWeek: number, limit: number): Promise<VoteGroupRow[]> {
    return this.db.voteGroups(worker, firstWeek, limit);
  }
  async workersRatedBy(submitter: number, limit: number): Promise<number[]> {
    return this.db.workersRatedBy(submitter, limit);
  }
  async workersWithReceipts(workers: number[], firstWeek: number): Promise<number[]> {
    return this.db.workersWithReceipts(workers, firstWeek);
  }
  async receiptCounts(node: number): Promise<{ asSubmitter: number; asWorker: number }> {
    return this.db.receiptCounts(node);
  }
  async pruneReceipts(cutoff: number): Promise<number> {
    return this.db.pruneReceipts(cutoff);
  }
}
