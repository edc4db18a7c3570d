/**
 * The registry's storage interface: everything the service (service.ts) and
 * the score book (reputation-book.ts) read and write. Two implementations:
 * SQLite on one machine (sqlite-storage.ts over store.ts, the default) and
 * PostgreSQL for several registries on one database (postgres-storage.ts).
 *
 * Every call is async (PostgreSQL answers over a socket). Writes happen
 * inside `transaction`: its callback gets a handle bound to the transaction;
 * `transaction` on that handle opens a savepoint (a failing inner step rolls
 * back alone, as the service needs for "the nonce is kept even when the
 * request fails"). Write transactions are serialised: one at a time per
 * store, across every registry sharing a database (docs/DEPLOYMENT.md), which
 * is what SQLite's BEGIN IMMEDIATE gives one process.
 */
import type { TaskReceipt } from "../protocol/receipt.ts";
import type { VoteGroup } from "./reputation.ts";

/** What a registration may set on its node (undefined: unchanged; hostname null: none). */
export interface RegistrationFields {
  readonly endpoints?: string[];
  readonly hostname?: string | null;
  readonly tags?: string[];
  readonly public?: boolean;
}

export interface NodeRow {
  readonly id: number;
  readonly publicKey: string;
  readonly hostname: string | null;
  readonly public: boolean;
  readonly tags: string[];
  readonly endpoints: string[];
  readonly observedIp: string | null;
  readonly registeredAt: number;
  readonly lastSeen: number;
  readonly active: boolean;
  /** The network its key registered from (reputation.ts originNetworkOf); null: a network of its own. */
  readonly originNet: string | null;
}

export interface TrustRequestRow {
  readonly from: number;
  readonly to: number;
  readonly reason: string;
  readonly createdAt: number;
}

export type VoteGroupRow = VoteGroup & { registeredAt: number; originNet: string | null };

/** What a lookup or resolve reads: the signer's node and its target's, and the rules on the target. */
export interface LookupRows {
  /** The signer's node (authentication reads its key); undefined if there is none. */
  readonly viewer: NodeRow | undefined;
  readonly target: NodeRow | undefined;
  /**
   * service.ts canSee(viewer, target): the viewer itself, or active and public, trusted, asking the
   * viewer for trust, or having resolved the viewer with contact (a grant running at `now`).
   */
  readonly visible: boolean;
  /** Whether the target has receipts as a worker from week `ratedSince` on (if not, it scores 0 without reading them). */
  readonly rated: boolean;
}

export interface StoreCounts {
  nodes: number;
  active: number;
  trust: number;
  requests: number;
}

export interface RegistryStorage {
  /** "sqlite" or "postgres", for logs and the ready line. */
  readonly kind: "sqlite" | "postgres";
  /** Where it is, without credentials (a path, or postgres://host:port/db). */
  readonly location: string;

  /**
   * Runs `fn` in one write transaction (a savepoint when called on a transaction's handle); a throw
   * rolls it back. `shared: true` says it decides nothing from what it reads (a heartbeat: a nonce
   * and one row of its own node), so it need not wait for the other writers (PostgreSQL; SQLite
   * serialises every write anyway).
   */
  transaction<T>(fn: (tx: RegistryStorage) => Promise<T>, options?: { shared?: boolean }): Promise<T>;
  /**
   * In a transaction: wait for, and hold until it ends, a lock on each name (a public key, a
   * hostname). PostgreSQL runs registrations under the shared write lock with these; SQLite needs
   * none (its writes are serialised whole).
   */
  lockKeys?(keys: string[]): Promise<void>;
  /**
   * A registration's update of its own node in one step (PostgreSQL: one statement): seen now
   * from `observedIp`, and each field given set; returns the row. The same as touch, setHostname,
   * setTags, setPublic and nodeById in turn, which is what the service does without it.
   */
  applyRegistration?(id: number, now: number, observedIp: string | null, fields: RegistrationFields): Promise<NodeRow>;
  /**
   * A lookup's reads in one step (PostgreSQL: one statement, so one round trip to the database per
   * lookup): nodeById of both, the visibility rule and workersWithReceipts of the target, read
   * together. Absent on SQLite, whose calls cost no round trip.
   */
  lookupRows?(viewer: number, target: number, now: number, ratedSince: number): Promise<LookupRows>;
  close(): Promise<void>;
  schemaVersion(): Promise<number>;
  counts(): Promise<StoreCounts>;

  // nodes
  nodeById(id: number): Promise<NodeRow | undefined>;
  nodeByKey(publicKey: string): Promise<NodeRow | undefined>;
  nodeByHostname(hostname: string): Promise<NodeRow | undefined>;
  /** Creates a node with the next free id (from FIRST_ASSIGNABLE_NODE up; never reused). */
  createNode(publicKey: string, now: number, observedIp: string | null): Promise<NodeRow>;
  reactivateNode(id: number, now: number): Promise<void>;
  touch(id: number, now: number, observedIp: string | null, endpoints?: string[]): Promise<void>;
  setHostname(id: number, hostname: string | null): Promise<void>;
  setPublic(id: number, isPublic: boolean): Promise<void>;
  setTags(id: number, tags: string[]): Promise<void>;
  deactivateNode(id: number): Promise<void>;
  /** Nodes last seen before `cutoff` lose hostname and tags; how many. */
  reap(cutoff: number): Promise<number>;
  /** Visible nodes whose hostname contains `query` or that carry the tag (store.ts search). */
  search(viewer: number, query: string, limit: number, seenSince?: number): Promise<NodeRow[]>;

  // replay protection
  /** Records a nonce until `expires`; false if it is already recorded. */
  claimNonce(nonce: string, expires: number): Promise<boolean>;
  pruneNonces(now: number): Promise<number>;

  // trust
  isTrusted(x: number, y: number): Promise<boolean>;
  addTrust(x: number, y: number, now: number): Promise<void>;
  removeTrust(x: number, y: number): Promise<boolean>;
  trustedPeers(id: number): Promise<{ peer: number; since: number }[]>;
  trustRequest(from: number, to: number): Promise<TrustRequestRow | undefined>;
  addTrustRequest(from: number, to: number, reason: string, now: number): Promise<void>;
  removeTrustRequest(from: number, to: number): Promise<boolean>;
  inboundRequests(to: number, limit: number): Promise<TrustRequestRow[]>;
  inboundNewest(to: number, limit: number, offset?: number): Promise<TrustRequestRow[]>;
  inboundCount(to: number): Promise<number>;
  outboundRequests(from: number): Promise<TrustRequestRow[]>;
  outboundCount(from: number): Promise<number>;
  dropRequestsTo(id: number): Promise<void>;
  /** Removes every pair of `id` and every request it made; the peers whose trust was removed. */
  forgetTrust(id: number): Promise<number[]>;

  // contact grants (service.ts canSee): `initiator` resolved `target` with contact, so `target` may see it until `expires`
  grantContact(initiator: number, target: number, expires: number): Promise<void>;
  /** Did `initiator` resolve `target` with contact, and is the grant still running at `now`? */
  contactGranted(initiator: number, target: number, now: number): Promise<boolean>;
  /** Ends the grants between two nodes, both ways (a trust revocation). */
  endContact(x: number, y: number): Promise<void>;

  /** Registries sharing this store (PostgreSQL): send an event payload to all of them (this one too). Absent on SQLite. */
  notify?(payload: string): Promise<void>;
  /** Receives every payload `notify` sends, from any registry on the store. */
  listen?(onPayload: (payload: string) => void, onListen?: () => void): Promise<{ unlisten(): Promise<void> }>;

  // receipts
  receipt(taskId: string, submitter: number, worker: number): Promise<TaskReceipt | undefined>;
  addReceipt(r: TaskReceipt, now: number): Promise<void>;
  pairReceiptsInWeek(submitter: number, worker: number, week: number): Promise<number>;
  voteGroups(worker: number, firstWeek: number, limit: number): Promise<VoteGroupRow[]>;
  workersRatedBy(submitter: number, limit: number): Promise<number[]>;
  /** Which of `workers` (at most 100) have receipts from `firstWeek` on; the others score 0. */
  workersWithReceipts(workers: number[], firstWeek: number): Promise<number[]>;
  receiptCounts(node: number): Promise<{ asSubmitter: number; asWorker: number }>;
  pruneReceipts(cutoff: number): Promise<number>;
}
