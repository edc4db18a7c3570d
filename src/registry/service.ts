/**
 * The registry's request logic, without sockets: a parsed frame and where it
 * came from in, a response body and the events to push out. The server signs
 * and sends both.
 *
 * Order of checks for every request (cheap and stateless first; nothing
 * touches per-node state before the signature is proven):
 *   shape (type, id, nonce, ts, sig, no unknown fields)  -> invalid_argument
 *   ts within ±REQUEST_WINDOW_MS of our clock            -> stale_request
 *   signer known and active, signature valid             -> unauthorized
 *   nonce not seen in the window                         -> replayed_request
 *   per-node request budget (own calls, lookups, and     -> rate_limited
 *     lookups that answer another node's contact, apart)
 *   the request itself, in one transaction               -> its own errors
 *     (a state-changing request's nonce is stored in that
 *     transaction, so it stays refused after a restart)
 *
 * Privacy rule: `canSee(viewer, target)` holds when target is the viewer, is
 * public, is trusted by the viewer, has a pending trust request to the viewer
 * (it introduced itself), or recently resolved the viewer with `contact: true`
 * (it is about to open a tunnel to the viewer, which must look up the
 * initiator's key to authenticate the handshake and answer it; the grant
 * lasts CONTACT_GRANT_MS, lives in memory only, and ends with a trust
 * revocation between the two). Everything that names another node answers
 * `not_found` when it does not hold, with the same message as for an id that
 * was never assigned.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { addressOf, formatAddress } from "../protocol/address.ts";
import { addressPrefix, ReplayCache, TokenBuckets, type BucketConfig } from "./limits.ts";
import { DEFAULT_POW, POW_NONCE_SIZE, PowGate, type PowConfig } from "./pow.ts";
import {
  checkEndpoints,
  checkHostname,
  checkNodeId,
  checkReason,
  checkSearchQuery,
  checkTags,
  endpointPort,
  isUnspecifiedEndpoint,
  joinEndpoint,
  SEARCH_RESULTS_MAX,
  type Check,
} from "./rules.ts";
import { verifyEd25519 } from "./signer.ts";
import type { LookupRows, NodeRow, RegistryStorage, TrustRequestRow } from "./storage.ts";
import { RegistryStore } from "./store.ts";
import { SqliteStorage } from "./sqlite-storage.ts";
import { receiptFreshness, receiptFromWire, receiptSignaturesValid, RECEIPTS_PER_PAIR_PER_WEEK, sameReceipt } from "./receipts.ts";
import { ReputationBook } from "./reputation-book.ts";
import { REPUTATION, weekOf } from "./reputation.ts";
import {
  fromBase64,
  NONCE_SIZE,
  REQUEST_TYPES,
  REQUEST_WINDOW_MS,
  requestSigningBytes,
  toBase64,
  type RequestType,
  type ServerErrorCode,
} from "./wire.ts";

export const ONLINE_WINDOW_MS = 90_000;
/** trust_state shows at most this many inbound requests: the oldest half and the newest half. */
export const INBOX_VISIBLE_MAX = 100;
export const OUTBOUND_PENDING_MAX = 100;
/** One trust_inbox page holds at most this many requests. */
export const INBOX_PAGE_MAX = 100;
/** Budget of one trust_state page, well under MAX_FRAME even if every character took 4 bytes. */
const TRUST_PAGE_BYTES = 48 * 1024;

export interface ServiceLimits {
  /** New keys registered per source IP. Default 10 per minute, burst 10. */
  readonly registrationsPerIp: BucketConfig;
  /** New keys registered per source prefix (IPv4 /24, IPv6 /56). Default 30 per minute, burst 30. */
  readonly registrationsPerPrefix: BucketConfig;
  /**
   * A node's own calls (register, heartbeat, set_*, trust_*, subscribe,
   * deregister), per node (per key for register). Default 10/s, burst 200:
   * a daemon answering a hundred trust requests at once stays within it.
   */
  readonly requestsPerNode: BucketConfig;
  /** lookup, find, search and resolve with contact, per node. Default 10/s, burst 50. */
  readonly lookupsPerNode: BucketConfig;
  /**
   * resolve without contact, per node: what a daemon asks to answer a node
   * that contacted it. Kept apart so that strangers' handshakes can never use
   * up the node's own calls. Default 10/s, burst 50.
   */
  readonly inboundLookupsPerNode: BucketConfig;
  /** New trust requests per requester. Default 30 per minute, burst 30. */
  readonly trustRequestsPerNode: BucketConfig;
  /** Pending trust requests to one node id (whether or not it exists). Default 1000. */
  readonly inboundPendingMax: number;
  /**
   * Task receipts submitted per node (besides its own-call budget). Default
   * 30 per minute, burst 60: storage grows by at most that per node.
   */
  readonly receiptsPerNode: BucketConfig;
  /** Proof of work for new keys (pow.ts). */
  readonly pow: PowConfig;
  /** A node not seen for this long loses its hostname and tags. Default 30 days. */
  readonly reapAfterMs: number;
}

export const DEFAULT_SERVICE_LIMITS: ServiceLimits = {
  registrationsPerIp: { rate: 10 / 60, burst: 10 },
  registrationsPerPrefix: { rate: 30 / 60, burst: 30 },
  requestsPerNode: { rate: 10, burst: 200 },
  lookupsPerNode: { rate: 10, burst: 50 },
  inboundLookupsPerNode: { rate: 10, burst: 50 },
  trustRequestsPerNode: { rate: 30 / 60, burst: 30 },
  inboundPendingMax: 1000,
  receiptsPerNode: { rate: 30 / 60, burst: 60 },
  pow: DEFAULT_POW,
  reapAfterMs: 30 * 24 * 3_600_000,
};

export interface RequestContext {
  /** The TCP peer's IP, IPv4-mapped addresses unmapped. */
  readonly sourceIp: string;
}

export interface PushEvent {
  readonly to: number;
  readonly event: Record<string, unknown>;
}

export interface Outcome {
  /** Echoed request id (null when the request had none we could read). */
  readonly id: number | null;
  /** The request's nonce (empty when unreadable): the response signature binds to it. */
  readonly nonce: Uint8Array;
  readonly body: { ok: true; [field: string]: unknown } | { ok: false; error: ErrorBody };
  readonly events: PushEvent[];
  /** Set on a successful subscribe: the connection now receives this node's events. */
  readonly subscribe?: { nodeId: number; nonce: Uint8Array };
  /** Set on successful register/deregister, for the log. */
  readonly note?: Record<string, unknown>;
  /**
   * Set when the request was authenticated and within its budget (it reached
   * its handler, whatever the handler answered): `nodeId` is the node that
   * signed it (for register, the node it registered, if it did).
   */
  readonly accepted?: { nodeId: number | null };
}

type ErrorBody = { code: ServerErrorCode; message: string; [field: string]: unknown };

class RequestError extends Error {
  constructor(
    readonly code: ServerErrorCode,
    message: string,
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
  }

  get body(): ErrorBody {
    return { ...this.extra, code: this.code, message: this.message };
  }
}

const fail = (code: ServerErrorCode, message: string, extra?: Record<string, unknown>): never => {
  throw new RequestError(code, message, extra);
};

function need<T>(c: Check<T>): T {
  if (!c.ok) fail("invalid_argument", c.message);
  return (c as { ok: true; value: T }).value;
}

/** Fields each request type may carry besides the envelope; `?` marks optional ones. */
const FIELDS: Record<RequestType, readonly string[]> = {
  register: ["public_key", "endpoints?", "hostname?", "public?", "tags?", "pow?"],
  heartbeat: ["endpoints?"],
  lookup: ["target"],
  find: ["hostname"],
  resolve: ["target", "contact?"],
  search: ["query"],
  set_hostname: ["hostname"],
  set_tags: ["tags"],
  set_visibility: ["public"],
  trust_request: ["to", "reason"],
  trust_approve: ["peer"],
  trust_reject: ["peer", "reason?"],
  trust_revoke: ["peer"],
  trust_state: ["cursor?"],
  trust_inbox: ["offset?", "limit?"],
  subscribe: [],
  deregister: [],
  submit_receipt: ["receipt"],
  reputation: ["target"],
  scores: ["targets"],
};

const UNAUTHORIZED =
  "the signature does not match a registered node (unknown or deregistered node id, wrong key, altered request, or signed for another registry)";
/** A valid public key whose private half was thrown away at start-up: nothing verifies against it. */
const UNUSABLE_KEY = (() => {
  const spki = generateKeyPairSync("ed25519").publicKey.export({ format: "der", type: "spki" });
  return new Uint8Array(spki.subarray(spki.length - 32));
})();
const ENVELOPE = new Set(["type", "id", "node_id", "ts", "nonce", "sig"]);
const NOT_VISIBLE = "no such node";

/** Requests that change the store: their nonces are kept in it, so a replay is refused even after a restart. */
const STATE_CHANGING: ReadonlySet<RequestType> = new Set([
  "register",
  "heartbeat",
  "set_hostname",
  "set_tags",
  "set_visibility",
  "trust_request",
  "trust_approve",
  "trust_reject",
  "trust_revoke",
  "deregister",
  "submit_receipt",
]);

/** Who signed a request, once proven; for a lookup or resolve on a networked store, what it read with the signer (LookupRows). */
interface Signed {
  readonly nodeId: number | null;
  readonly publicKey: string;
  readonly lookup?: LookupRows;
}

export type Budget = "own" | "lookup" | "inbound";

/**
 * Which per-node budget a request draws on: the node's own calls, its
 * lookups, or its lookups of nodes that contacted it (resolve without
 * contact). Readable before any signature work (the server keeps its
 * per-connection frame budgets apart the same way).
 */
export function budgetOf(m: Record<string, unknown>): Budget {
  if (m.type === "resolve") return m.contact === true ? "lookup" : "inbound";
  if (m.type === "lookup" || m.type === "find" || m.type === "search" || m.type === "reputation" || m.type === "scores") return "lookup";
  return "own";
}

/** How often stale nonces are pruned from the store. */
const NONCE_PRUNE_MS = 60_000;
/** How often receipts past the reputation horizon are pruned. */
const RECEIPT_PRUNE_MS = 3_600_000;
/** `scores` names at most this many nodes. */
export const SCORES_MAX = 100;

export interface ServiceOptions {
  /** Where the state lives; an open SQLite RegistryStore is wrapped (tests and tools). */
  readonly store: RegistryStorage | RegistryStore;
  /** The registry's public key: every request signature covers it. */
  readonly registryKey: Uint8Array;
  readonly clock?: () => number;
  readonly limits?: Partial<ServiceLimits>;
  /** Randomness for the proof-of-work challenges (tests may fix it). */
  readonly random?: (size: number) => Uint8Array;
}

/** Node keys and the visibility rule, for the beacon (sync on SQLite, async on a networked store). */
export interface RegistryDirectory {
  nodeKey(node: number): Uint8Array | undefined | Promise<Uint8Array | undefined>;
  mayReach(from: number, to: number): boolean | Promise<boolean>;
}

/** How long a node that resolved another stays visible to it. */
export const CONTACT_GRANT_MS = 10 * 60_000;

export class RegistryService {
  private readonly store: RegistryStorage;
  private readonly registryKey: Uint8Array;
  private readonly clock: () => number;
  private readonly replay = new ReplayCache(REQUEST_WINDOW_MS);
  private readonly limits: ServiceLimits;
  private readonly registrations: TokenBuckets;
  private readonly prefixRegistrations: TokenBuckets;
  private readonly budgets: Record<Budget, TokenBuckets>;
  private readonly trustRequests: TokenBuckets;
  private readonly receipts: TokenBuckets;
  private readonly pow: PowGate;
  private readonly book: ReputationBook;
  private lastNoncePrune = 0;
  /** This process among the registries sharing a store (its own broadcast events are not pushed twice). */
  readonly instance = randomBytes(8).toString("hex");
  private lastReceiptPrune = 0;
  /**
   * Nodes whose last subscribed connection closed (the daemon stopped, or died: the kernel
   * closes its socket), and when, oldest first: offline until heard from again.
   */
  private readonly departed = new Map<number, number>();

  constructor(options: ServiceOptions) {
    this.store = options.store instanceof RegistryStore ? SqliteStorage.wrap(options.store) : options.store;
    this.registryKey = options.registryKey;
    this.clock = options.clock ?? Date.now;
    const limits = (this.limits = { ...DEFAULT_SERVICE_LIMITS, ...options.limits });
    this.registrations = new TokenBuckets(limits.registrationsPerIp);
    this.prefixRegistrations = new TokenBuckets(limits.registrationsPerPrefix);
    this.budgets = {
      own: new TokenBuckets(limits.requestsPerNode),
      lookup: new TokenBuckets(limits.lookupsPerNode),
      inbound: new TokenBuckets(limits.inboundLookupsPerNode),
    };
    this.trustRequests = new TokenBuckets(limits.trustRequestsPerNode);
    this.receipts = new TokenBuckets(limits.receiptsPerNode);
    this.book = new ReputationBook(this.store);
    this.pow = new PowGate(limits.pow, options.random ?? ((n) => new Uint8Array(randomBytes(n))), this.clock());
  }

  /** Where the registry's state lives. */
  get storage(): RegistryStorage {
    return this.store;
  }

  /** The proof of work a new key must show now. */
  powChallenge(now = this.clock()): { challenge: string; difficulty: number } {
    return { challenge: toBase64(this.pow.challenge(now)), difficulty: this.pow.difficulty(now) };
  }

  /**
   * Nodes not seen for `reapAfterMs` lose their hostname and tags (the name
   * is free again, they leave search). The server calls it periodically.
   */
  reap(now = this.clock()): Promise<number> {
    return this.store.transaction((tx) => tx.reap(now - this.limits.reapAfterMs));
  }

  /** A node not seen for the reaping time: its name and tags no longer count. */
  private stale(n: NodeRow, now: number): boolean {
    return now - n.lastSeen > this.limits.reapAfterMs;
  }

  /**
   * The last subscribed connection of `node` closed: it is offline at once (until its next
   * heartbeat, register or subscribe), instead of for the rest of ONLINE_WINDOW_MS.
   */
  nodeDisconnected(node: number): void {
    const now = this.clock();
    this.departed.delete(node);
    this.departed.set(node, now);
    // Past the window, last_seen says offline anyway: older entries are not needed.
    for (const [id, at] of this.departed) {
      if (now - at <= ONLINE_WINDOW_MS) break;
      this.departed.delete(id);
    }
  }

  private isOnline(n: NodeRow, now: number): boolean {
    return online(n, now) && !this.departed.has(n.id);
  }

  /** An error outcome for a frame that could not be read at all. */
  static malformed(message: string): Outcome {
    return { id: null, nonce: new Uint8Array(0), body: { ok: false, error: { code: "invalid_argument", message } }, events: [] };
  }

  async handle(message: Record<string, unknown>, ctx: RequestContext): Promise<Outcome> {
    const id = typeof message.id === "number" && Number.isSafeInteger(message.id) && message.id >= 0 ? message.id : null;
    const nonce = fromBase64(message.nonce, NONCE_SIZE) ?? new Uint8Array(0);
    const events: PushEvent[] = [];
    let accepted: { nodeId: number | null } | undefined;
    try {
      const now = this.clock();
      await this.pruneNonces(now);
      const { type, signer } = await this.authenticate(message, nonce, id, now);
      accepted = { nodeId: signer.nodeId };
      let result: Record<string, unknown>;
      if (STATE_CHANGING.has(type)) {
        // The nonce is stored in the same transaction as the change: both survive a crash, or neither.
        // It is kept even when the request fails (its inner transaction rolls back on its own).
        const r = await this.store.transaction(
          async (tx) => {
            if (!(await tx.claimNonce(toBase64(nonce), (message.ts as number) + REQUEST_WINDOW_MS))) {
              fail("replayed_request", "this request was already received (nonce seen)");
            }
            try {
              const value = await this.dispatch(tx, type, message, signer, ctx, now, events);
              // Registries sharing the store hear of the events with the change itself: sent in
              // this transaction, they are delivered when it commits, and never if it does not.
              if (tx.notify) for (const e of events) await tx.notify(JSON.stringify({ origin: this.instance, to: e.to, event: e.event }));
              return { value };
            } catch (e) {
              if (e instanceof RequestError) return { error: e };
              throw e;
            }
          },
          // A heartbeat decides nothing from what it reads: it need not wait for other heartbeats.
          // A registration decides only on its key's node and its hostname's owner, which it locks
          // by name (register below): registrations need not wait for each other either.
          { shared: type === "heartbeat" || type === "register" },
        );
        if (r.error) throw r.error;
        result = r.value!;
      } else {
        result = await this.dispatch(this.store, type, message, signer, ctx, now, events);
      }
      const { subscribe, note, rescore, ...fields } = result;
      if (typeof rescore === "number") await this.book.recorded(rescore);
      if (type === "register") accepted = { nodeId: fields.node_id as number };
      return {
        id,
        nonce,
        body: { ok: true, ...fields },
        events,
        subscribe: typeof subscribe === "number" ? { nodeId: subscribe, nonce } : undefined,
        note: note as Record<string, unknown> | undefined,
        accepted,
      };
    } catch (e) {
      if (e instanceof RequestError) return { id, nonce, body: { ok: false, error: e.body }, events: [], accepted };
      return { id, nonce, body: { ok: false, error: { code: "internal", message: "internal error" } }, events: [], note: { internal: String(e) }, accepted };
    }
  }

  private async pruneNonces(now: number): Promise<void> {
    if (now - this.lastNoncePrune < NONCE_PRUNE_MS) return;
    this.lastNoncePrune = now;
    await this.store.transaction((tx) => tx.pruneNonces(now));
    if (now - this.lastReceiptPrune >= RECEIPT_PRUNE_MS) {
      this.lastReceiptPrune = now;
      // Receipts recorded before the first week that still counts no longer move any score.
      const cutoff = (weekOf(now) - REPUTATION.horizonWeeks + 1) * REPUTATION.weekMs;
      if ((await this.store.transaction((tx) => tx.pruneReceipts(cutoff))) > 0) this.book.clear();
    }
  }

  // -- authentication ------------------------------------------------------

  private async authenticate(
    m: Record<string, unknown>,
    nonce: Uint8Array,
    id: number | null,
    now: number,
  ): Promise<{ type: RequestType; signer: Signed }> {
    const type = m.type;
    if (typeof type !== "string" || !(REQUEST_TYPES as readonly string[]).includes(type)) {
      fail("invalid_argument", `unknown request type ${JSON.stringify(typeof type === "string" ? type.slice(0, 32) : type)}`);
    }
    const t = type as RequestType;
    if (id === null) fail("invalid_argument", "id must be a non-negative integer");
    if (nonce.length !== NONCE_SIZE) fail("invalid_argument", `nonce must be ${NONCE_SIZE} bytes in base64`);
    if (typeof m.ts !== "number" || !Number.isSafeInteger(m.ts)) fail("invalid_argument", "ts must be unix milliseconds (an integer)");
    const sig = fromBase64(m.sig, 64);
    if (!sig) fail("invalid_argument", "sig must be a 64-byte Ed25519 signature in base64");
    const allowed = FIELDS[t];
    for (const key of Object.keys(m)) {
      if (ENVELOPE.has(key)) continue;
      if (!allowed.includes(key) && !allowed.includes(`${key}?`)) fail("invalid_argument", `unknown field "${key.slice(0, 32)}" for ${t}`);
    }
    for (const f of allowed) if (!f.endsWith("?") && !(f in m)) fail("invalid_argument", `${t} needs "${f}"`);

    const ts = m.ts as number;
    if (Math.abs(now - ts) > REQUEST_WINDOW_MS) {
      fail("stale_request", `request time ${ts} is more than ${REQUEST_WINDOW_MS / 1000} s from the registry's clock (${now}); check this machine's clock`);
    }

    let publicKeyText: string;
    let publicKey: Uint8Array;
    let nodeId: number | null = null;
    let lookup: LookupRows | undefined;
    if (t === "register") {
      if ("node_id" in m) fail("invalid_argument", "register carries public_key, not node_id");
      const key = fromBase64(m.public_key, 32);
      if (!key) fail("invalid_argument", "public_key must be a 32-byte Ed25519 key in base64");
      publicKey = key!;
      publicKeyText = m.public_key as string;
    } else {
      const nid = m.node_id;
      if (typeof nid !== "number" || !Number.isInteger(nid) || nid < 0 || nid > 0xffff_ffff) fail("invalid_argument", "node_id must be a u32");
      // A lookup or resolve on a networked store reads its target with the signer's node, in one
      // round trip; the target is used only once the signature is proven, below.
      const target = this.store.lookupRows && (t === "lookup" || t === "resolve") ? checkNodeId(m.target, "target") : undefined;
      if (target?.ok) lookup = await this.store.lookupRows!(nid as number, target.value, now, this.book.ratedSince(now));
      const node = lookup ? lookup.viewer : await this.store.nodeById(nid as number);
      if (node && node.active) {
        nodeId = node.id;
        publicKeyText = node.publicKey;
        publicKey = new Uint8Array(Buffer.from(publicKeyText, "base64"));
      } else {
        // Verify against a key nobody holds, so that an unknown id costs the same time and gets
        // the same answer as a known id with a bad signature: ids cannot be probed this way.
        publicKeyText = "";
        publicKey = UNUSABLE_KEY;
      }
    }

    let signed: Uint8Array;
    try {
      signed = requestSigningBytes(m, this.registryKey);
    } catch (e) {
      return fail("invalid_argument", `request is not canonical JSON: ${(e as Error).message}`);
    }
    if (!verifyEd25519(publicKey, signed, sig!) || (t !== "register" && nodeId === null)) fail("unauthorized", UNAUTHORIZED);

    const seen = this.replay.remember(toBase64(nonce), ts, now);
    if (seen === "replayed") fail("replayed_request", "this request was already received (nonce seen)");
    if (seen === "full") fail("rate_limited", "the registry is overloaded; retry shortly");
    const budget = budgetOf(m);
    if (!this.budgets[budget].take(nodeId === null ? `k:${publicKeyText}` : `n:${nodeId}`, now)) {
      const what = budget === "own" ? "requests" : budget === "lookup" ? "lookups" : "lookups of nodes that contacted it";
      fail("rate_limited", `too many ${what} from this node; slow down`);
    }
    return { type: t, signer: { nodeId, publicKey: publicKeyText, lookup } };
  }

  // -- requests --------------------------------------------------------------

  private async dispatch(
    db: RegistryStorage,
    type: RequestType,
    m: Record<string, unknown>,
    signer: Signed,
    ctx: RequestContext,
    now: number,
    events: PushEvent[],
  ): Promise<Record<string, unknown>> {
    if (type === "register") {
      const registered = await this.register(db, m, signer.publicKey, ctx, now);
      this.departed.delete(registered.node_id as number);
      return registered;
    }
    const self = signer.nodeId!;
    if (type === "heartbeat" || type === "subscribe") this.departed.delete(self);
    switch (type) {
      case "heartbeat": {
        const endpoints = m.endpoints === undefined ? undefined : need(checkEndpoints(m.endpoints));
        await db.transaction((tx) => tx.touch(self, now, ctx.sourceIp, endpoints));
        return { time: now, observed_ip: ctx.sourceIp };
      }
      case "lookup": {
        const rows = signer.lookup;
        if (rows) return this.nodeView(rows.visible ? rows.target! : fail("not_found", NOT_VISIBLE), now, rows.rated);
        return this.nodeView(await this.visible(db, self, need(checkNodeId(m.target, "target"))), now);
      }
      case "find": {
        const name = typeof m.hostname === "string" ? m.hostname : fail("invalid_argument", "hostname must be a string");
        const node = await db.nodeByHostname(name);
        if (!node || !(await this.canSee(db, self, node)) || (node.id !== self && this.stale(node, now))) fail("not_found", NOT_VISIBLE);
        return this.nodeView(node!, now);
      }
      case "resolve": {
        const rows = signer.lookup;
        const node = rows ? (rows.visible ? rows.target! : fail("not_found", NOT_VISIBLE)) : await this.visible(db, self, need(checkNodeId(m.target, "target")));
        if (m.contact !== undefined && typeof m.contact !== "boolean") fail("invalid_argument", "contact must be true or false");
        if (m.contact === true && self !== node.id) await db.grantContact(self, node.id, now + CONTACT_GRANT_MS);
        return { node_id: node.id, address: addressText(node.id), public_key: node.publicKey, ...this.endpointView(node), online: this.isOnline(node, now), last_seen: node.lastSeen };
      }
      case "search": {
        const q = need(checkSearchQuery(m.query));
        const rows = await db.search(self, q, SEARCH_RESULTS_MAX, now - this.limits.reapAfterMs);
        const scores = await this.book.scoresOf(rows.map((n) => n.id), now);
        return {
          results: rows.map((n) => ({ node_id: n.id, address: addressText(n.id), hostname: n.hostname, tags: n.tags, public: n.public, online: this.isOnline(n, now), polo_score: scores.get(n.id)! })),
        };
      }
      case "set_hostname": {
        const hostname = m.hostname === "" ? null : need(checkHostname(m.hostname));
        await db.transaction((tx) => this.claimHostname(tx, self, hostname, now));
        return { node_id: self, hostname };
      }
      case "set_tags": {
        const tags = need(checkTags(m.tags));
        await db.transaction((tx) => tx.setTags(self, tags));
        return { node_id: self, tags };
      }
      case "set_visibility": {
        if (typeof m.public !== "boolean") fail("invalid_argument", "public must be true or false");
        await db.transaction((tx) => tx.setPublic(self, m.public as boolean));
        return { node_id: self, public: m.public };
      }
      case "trust_request":
        return this.trustRequest(db, self, need(checkNodeId(m.to, "to")), need(checkReason(m.reason)), now, events);
      case "trust_approve":
        return this.trustApprove(db, self, need(checkNodeId(m.peer, "peer")), now, events);
      case "trust_reject": {
        const reason = m.reason === undefined ? undefined : need(checkReason(m.reason));
        return this.trustReject(db, self, need(checkNodeId(m.peer, "peer")), reason, events);
      }
      case "trust_revoke": {
        const peer = need(checkNodeId(m.peer, "peer"));
        // Ending trust ends every reason either side had to see the other.
        await db.endContact(self, peer);
        return this.trustRevoke(db, self, peer, events);
      }
      case "trust_state":
        return this.trustState(db, self, m.cursor);
      case "trust_inbox":
        return this.trustInbox(db, self, m.offset, m.limit);
      case "subscribe":
        return { subscribed: true, subscribe: self };
      case "deregister":
        return this.deregister(db, self, events);
      case "submit_receipt":
        return this.submitReceipt(db, self, m.receipt, now);
      case "reputation":
        return this.reputation(db, await this.visible(db, self, need(checkNodeId(m.target, "target"))), now);
      case "scores":
        return this.scores(db, self, m.targets, now);
    }
    return fail("invalid_argument", "unknown request type");
  }

  private async register(
    db: RegistryStorage,
    m: Record<string, unknown>,
    publicKey: string,
    ctx: RequestContext,
    now: number,
  ): Promise<Record<string, unknown>> {
    const endpoints = m.endpoints === undefined ? undefined : need(checkEndpoints(m.endpoints));
    const hostname = m.hostname === undefined ? undefined : m.hostname === "" ? null : need(checkHostname(m.hostname));
    const tags = m.tags === undefined ? undefined : need(checkTags(m.tags));
    if (m.public !== undefined && typeof m.public !== "boolean") fail("invalid_argument", "public must be true or false");
    if (m.pow !== undefined && typeof m.pow !== "string") fail("invalid_argument", `pow must be ${POW_NONCE_SIZE} bytes in base64`);
    const existing = await db.nodeByKey(publicKey);
    if (!existing) {
      // A new identity: the per-address and per-network rates (checked first, so nobody works in vain),
      // then the proof of work (one hash to check), and only then are the rates charged.
      const ipKey = `ip:${ctx.sourceIp}`;
      const prefixKey = `net:${addressPrefix(ctx.sourceIp)}`;
      if (this.registrations.retryAfter(ipKey, now) > 0 || this.prefixRegistrations.retryAfter(prefixKey, now) > 0) {
        fail("rate_limited", "too many new registrations from this address or its network; retry later");
      }
      const work = m.pow === undefined ? undefined : fromBase64(m.pow, POW_NONCE_SIZE);
      if (m.pow !== undefined && !work) fail("invalid_argument", `pow must be ${POW_NONCE_SIZE} bytes in base64`);
      if (!this.pow.verify(fromBase64(publicKey, 32)!, work ?? new Uint8Array(0), now)) {
        const pow = this.powChallenge(now);
        fail("pow_required", `a new node must show proof of work: ${pow.difficulty} leading zero bits (docs/REGISTRY.md)`, { pow });
      }
      this.registrations.take(ipKey, now);
      this.prefixRegistrations.take(prefixKey, now);
    }
    const node = await db.transaction(async (tx) => {
      // Registrations run alongside each other (PostgreSQL): one at a time per key and per name.
      await tx.lockKeys?.([`key:${publicKey}`, ...(hostname ? [`hostname:${hostname}`] : [])]);
      let id: number;
      let created = false;
      // Read again inside the transaction: another registry on the same database may have made it meanwhile.
      const current = existing ?? (await tx.nodeByKey(publicKey));
      if (current) {
        id = current.id;
        if (!current.active) await tx.reactivateNode(id, now);
      } else {
        id = (await tx.createNode(publicKey, now, ctx.sourceIp)).id;
        await tx.dropRequestsTo(id);
        created = true;
      }
      if (tx.applyRegistration) {
        // The name is checked (and a stale owner's freed) first; then the node's row in one step.
        if (hostname) await this.checkHostnameFree(tx, id, hostname, now);
        const fields = { endpoints, hostname, tags, ...(m.public !== undefined ? { public: m.public as boolean } : {}) };
        return { row: await tx.applyRegistration(id, now, ctx.sourceIp, fields), created };
      }
      await tx.touch(id, now, ctx.sourceIp, endpoints);
      if (hostname !== undefined) await this.claimHostname(tx, id, hostname, now);
      if (tags !== undefined) await tx.setTags(id, tags);
      if (m.public !== undefined) await tx.setPublic(id, m.public as boolean);
      return { row: (await tx.nodeById(id))!, created };
    });
    if (node.created) this.pow.record(now);
    const n = node.row;
    return {
      node_id: n.id,
      address: addressText(n.id),
      public_key: n.publicKey,
      hostname: n.hostname,
      tags: n.tags,
      public: n.public,
      endpoints: n.endpoints,
      observed_ip: n.observedIp,
      created: node.created,
      time: now,
      note: { event: node.created ? "node_created" : "node_registered", node_id: n.id, source_ip: ctx.sourceIp },
    };
  }

  private async claimHostname(db: RegistryStorage, id: number, hostname: string | null, now: number): Promise<void> {
    if (hostname !== null) await this.checkHostnameFree(db, id, hostname, now);
    await db.setHostname(id, hostname);
  }

  /** `already_exists` unless the name is free for `id`; a stale owner's claim on it is dropped. */
  private async checkHostnameFree(db: RegistryStorage, id: number, hostname: string, now: number): Promise<void> {
    const owner = await db.nodeByHostname(hostname);
    if (owner && owner.id !== id) {
      if (!this.stale(owner, now)) fail("already_exists", `hostname "${hostname}" is taken`);
      // Its owner has not been seen for the reaping time: the name is free (the reaper would free it soon).
      await db.setHostname(owner.id, null);
    }
  }

  private async trustRequest(db: RegistryStorage, self: number, to: number, reason: string, now: number, events: PushEvent[]): Promise<Record<string, unknown>> {
    if (to === self) fail("invalid_argument", "a node cannot ask itself for trust");
    return db.transaction(async (tx) => {
      const target = await tx.nodeById(to);
      const live = target !== undefined && target.active;
      if (live && (await tx.isTrusted(self, to))) return { to, status: "trusted" };
      if (live && (await tx.trustRequest(to, self))) {
        // Both sides asked: that is agreement. The pair is made and both hear of it.
        await tx.removeTrustRequest(to, self);
        await tx.removeTrustRequest(self, to);
        await tx.addTrust(self, to, now);
        events.push({ to, event: { event: "trust_approved", peer: self, address: addressText(self) } });
        events.push({ to: self, event: { event: "trust_approved", peer: to, address: addressText(to) } });
        return { to, status: "trusted" };
      }
      // From here on the answer is the same whether `to` exists, is private or is absent.
      if (await tx.trustRequest(self, to)) return { to, status: "pending" };
      if ((await tx.outboundCount(self)) >= OUTBOUND_PENDING_MAX) {
        fail("rate_limited", `you have ${OUTBOUND_PENDING_MAX} pending trust requests; wait for answers or withdraw some (trust_revoke)`);
      }
      if (!this.trustRequests.take(`n:${self}`, now)) fail("rate_limited", "too many new trust requests from this node; retry later");
      // Requests to an id are counted the same whether it exists, is private or is absent, so this refusal tells nothing.
      if ((await tx.inboundCount(to)) >= this.limits.inboundPendingMax) {
        fail("rate_limited", `node ${to} has ${this.limits.inboundPendingMax} pending trust requests; retry later`);
      }
      await tx.addTrustRequest(self, to, reason, now);
      // Every new request is announced to a live target.
      if (live) events.push({ to, event: { event: "trust_request", from: self, address: addressText(self), reason } });
      return { to, status: "pending" };
    });
  }

  private async trustApprove(db: RegistryStorage, self: number, peer: number, now: number, events: PushEvent[]): Promise<Record<string, unknown>> {
    return db.transaction(async (tx) => {
      const request = await tx.trustRequest(peer, self);
      const requester = await tx.nodeById(peer);
      if (!request || !requester || !requester.active) fail("not_found", `no pending trust request from node ${peer}`);
      await tx.removeTrustRequest(peer, self);
      await tx.removeTrustRequest(self, peer);
      await tx.addTrust(self, peer, now);
      events.push({ to: peer, event: { event: "trust_approved", peer: self, address: addressText(self) } });
      return { peer, trusted: true };
    });
  }

  private async trustReject(db: RegistryStorage, self: number, peer: number, reason: string | undefined, events: PushEvent[]): Promise<Record<string, unknown>> {
    return db.transaction(async (tx) => {
      if (!(await tx.removeTrustRequest(peer, self))) fail("not_found", `no pending trust request from node ${peer}`);
      const event: Record<string, unknown> = { event: "trust_rejected", peer: self, address: addressText(self) };
      if (reason !== undefined) event.reason = reason;
      events.push({ to: peer, event });
      return { peer, rejected: true };
    });
  }

  private async trustRevoke(db: RegistryStorage, self: number, peer: number, events: PushEvent[]): Promise<Record<string, unknown>> {
    return db.transaction(async (tx) => {
      const revoked = await tx.removeTrust(self, peer);
      const withdrawn = await tx.removeTrustRequest(self, peer);
      if (!revoked && !withdrawn) fail("not_found", `no trust with and no pending request to node ${peer}`);
      if (revoked) events.push({ to: peer, event: { event: "trust_revoked", peer: self, address: addressText(self) } });
      return { peer, revoked, withdrawn };
    });
  }

  /**
   * One page of the node's trust state. Sections come in order (trusted peers
   * by id, the visible inbox oldest first, outbound requests by target) and a
   * page stops before TRUST_PAGE_BYTES of items, so any page fits in a frame.
   * `next_cursor` is null on the last page.
   */
  private async trustState(db: RegistryStorage, self: number, cursorText: unknown): Promise<Record<string, unknown>> {
    const cursor = parseCursor(cursorText);
    const page = { trusted: [] as unknown[], inbound: [] as unknown[], outbound: [] as unknown[] };
    let bytes = 0;
    let next: string | null = null;
    const fits = (item: unknown) => {
      const size = JSON.stringify(item).length * 4;
      if (bytes > 0 && bytes + size > TRUST_PAGE_BYTES) return false;
      bytes += size;
      return true;
    };
    const sections = ["trusted", "inbound", "outbound"] as const;
    fill: for (const section of sections.slice(sections.indexOf(cursor.section))) {
      const after = section === cursor.section ? cursor.after : undefined;
      if (section === "trusted") {
        for (const { peer, since } of await db.trustedPeers(self)) {
          if (after !== undefined && peer <= Number(after)) continue;
          const n = await db.nodeById(peer);
          if (!n || !n.active) continue;
          const item = { peer, address: addressText(peer), public_key: n.publicKey, hostname: n.hostname, since };
          if (!fits(item)) {
            next = `trusted:${page.trusted.length > 0 ? (page.trusted.at(-1) as { peer: number }).peer : after ?? ""}`;
            break fill;
          }
          page.trusted.push(item);
        }
      } else if (section === "inbound") {
        for (const r of await this.visibleInbox(db, self)) {
          const key = `${r.createdAt}.${r.from}`;
          if (after !== undefined && compareInboundKey(key, after) <= 0) continue;
          const n = await db.nodeById(r.from);
          if (!n || !n.active) continue;
          const item = { from: r.from, address: addressText(r.from), public_key: n.publicKey, hostname: n.hostname, reason: r.reason, created_at: r.createdAt };
          if (!fits(item)) {
            const last = page.inbound.at(-1) as { from: number; created_at: number } | undefined;
            next = `inbound:${last ? `${last.created_at}.${last.from}` : after ?? ""}`;
            break fill;
          }
          page.inbound.push(item);
        }
      } else {
        for (const r of await db.outboundRequests(self)) {
          if (after !== undefined && r.to <= Number(after)) continue;
          const item = { to: r.to, address: addressText(r.to), reason: r.reason, created_at: r.createdAt };
          if (!fits(item)) {
            next = `outbound:${page.outbound.length > 0 ? (page.outbound.at(-1) as { to: number }).to : after ?? ""}`;
            break fill;
          }
          page.outbound.push(item);
        }
      }
    }
    return { ...page, inbound_total: await db.inboundCount(self), next_cursor: next };
  }

  /**
   * The inbound requests trust_state shows, oldest first: all of them up to
   * INBOX_VISIBLE_MAX, else the oldest half and the newest half (so neither an
   * early flood nor a late one hides a request for good; trust_inbox pages
   * through the rest, and every request was announced when it came).
   */
  private async visibleInbox(db: RegistryStorage, self: number): Promise<TrustRequestRow[]> {
    const half = INBOX_VISIBLE_MAX / 2;
    if ((await db.inboundCount(self)) <= INBOX_VISIBLE_MAX) return db.inboundRequests(self, INBOX_VISIBLE_MAX);
    return [...(await db.inboundRequests(self, half)), ...(await db.inboundNewest(self, half)).reverse()];
  }

  /** Every pending request to `self`, newest first, `limit` (at most INBOX_PAGE_MAX, and 48 KiB) from `offset`. */
  private async trustInbox(db: RegistryStorage, self: number, offsetValue: unknown, limitValue: unknown): Promise<Record<string, unknown>> {
    const offset = offsetValue === undefined ? 0 : offsetValue;
    const limit = limitValue === undefined ? INBOX_PAGE_MAX : limitValue;
    if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) fail("invalid_argument", "offset must be a non-negative integer");
    if (typeof limit !== "number" || !Number.isSafeInteger(limit) || limit < 1 || limit > INBOX_PAGE_MAX) fail("invalid_argument", `limit must be 1-${INBOX_PAGE_MAX}`);
    const inbound: unknown[] = [];
    let bytes = 0;
    for (const r of await db.inboundNewest(self, limit as number, offset as number)) {
      const n = await db.nodeById(r.from);
      if (!n) continue; // requests come from registered nodes only
      const item = { from: r.from, address: addressText(r.from), public_key: n.publicKey, hostname: n.active ? n.hostname : null, reason: r.reason, created_at: r.createdAt };
      const size = JSON.stringify(item).length * 4;
      if (inbound.length > 0 && bytes + size > TRUST_PAGE_BYTES) break;
      bytes += size;
      inbound.push(item);
    }
    const total = await db.inboundCount(self);
    const next = (offset as number) + inbound.length;
    return { inbound, total, offset, next_offset: next < total ? next : null };
  }

  // -- reputation --------------------------------------------------------------

  /**
   * Stores a task receipt signed by both parties (the caller must be one of
   * them). A receipt already stored is answered again with `recorded: false`
   * (a resubmission after a lost answer, or by the other party); another
   * verdict for the same task is `already_exists`.
   */
  private async submitReceipt(db: RegistryStorage, self: number, value: unknown, now: number): Promise<Record<string, unknown>> {
    const r = need(receiptFromWire(value));
    if (self !== r.submitter && self !== r.worker) fail("unauthorized", "only the submitter or the worker of a task may submit its receipt");
    if (!this.receipts.take(`n:${self}`, now)) fail("rate_limited", "too many receipts from this node; retry later");
    const stale = receiptFreshness(r, now);
    if (stale) fail("invalid_argument", stale);
    // Both keys as registered; an unknown or deregistered party verifies against a key nobody holds,
    // so the answer is the same as for a forged signature.
    const keyOf = async (id: number) => {
      const n = await db.nodeById(id);
      return n && n.active ? new Uint8Array(Buffer.from(n.publicKey, "base64")) : UNUSABLE_KEY;
    };
    if (!receiptSignaturesValid(r, await keyOf(r.worker), await keyOf(r.submitter))) {
      fail("unauthorized", "the receipt is not signed by both parties' registered keys (the worker signs its result, the submitter its verdict)");
    }
    const stored = await db.transaction(async (tx) => {
      const existing = await tx.receipt(r.taskId, r.submitter, r.worker);
      if (existing) {
        if (!sameReceipt(existing, r)) fail("already_exists", `task ${r.taskId} already has a receipt between these nodes, with another verdict`);
        return false;
      }
      if ((await tx.pairReceiptsInWeek(r.submitter, r.worker, weekOf(now))) >= RECEIPTS_PER_PAIR_PER_WEEK) {
        fail("rate_limited", `${RECEIPTS_PER_PAIR_PER_WEEK} receipts between these nodes this week already (they count as one vote); retry next week`);
      }
      await tx.addReceipt(r, now);
      return true;
    });
    // The cached scores it changes are dropped once the request's transaction is over (`rescore`).
    return { task_id: r.taskId, submitter: r.submitter, worker: r.worker, outcome: r.outcome, recorded: stored, rescore: stored ? r.worker : undefined };
  }

  /** A visible node's score and how it was reached. */
  private async reputation(db: RegistryStorage, n: NodeRow, now: number): Promise<Record<string, unknown>> {
    const rep = await this.book.reputation(n.id, now);
    const rater = await this.book.asRater({ id: n.id, registeredAt: n.registeredAt }, now);
    const counts = await db.receiptCounts(n.id);
    // Signed answers carry integers only: fractions go as thousandths (the client turns them back).
    const milli = (x: number) => Math.round(x * 1000);
    return {
      node_id: n.id,
      address: addressText(n.id),
      hostname: n.hostname,
      polo_score: rep.score,
      receipts: { accepted: rep.accepted, rejected: rep.rejected, counted_votes: rep.votes, as_worker: counts.asWorker, as_submitter: counts.asSubmitter },
      counterparties: { total: rep.counterparties, established: rep.established, newcomers: rep.newcomers, networks: rep.networks },
      evidence: { positive_milli: milli(rep.positive), negative_milli: milli(rep.negative) },
      capped: rep.capped,
      as_submitter: {
        registered_at: n.registeredAt,
        established: rater.established,
        age_factor_milli: milli(rater.ageFactor),
        standing_milli: milli(rater.standing),
        weight_milli: milli(rater.weight),
      },
      method: {
        formula: `100 * P / (P + ${REPUTATION.rejectionWeight} * N + ${REPUTATION.prior})`,
        week_days: REPUTATION.weekMs / 86_400_000,
        horizon_weeks: REPUTATION.horizonWeeks,
        per_submitter_cap_milli: milli(REPUTATION.perSubmitterCap),
        per_network_cap_milli: milli(REPUTATION.perNetworkCap),
        newcomer_cap_milli: milli(REPUTATION.newcomerCap),
        established_after_days: REPUTATION.matureAfterMs / 86_400_000,
      },
      computed_at: rep.computedAt,
    };
  }

  /** Scores of the named nodes the caller can see (the others are left out, as search does). */
  private async scores(db: RegistryStorage, self: number, targets: unknown, now: number): Promise<Record<string, unknown>> {
    if (!Array.isArray(targets) || targets.length === 0 || targets.length > SCORES_MAX) fail("invalid_argument", `targets must be 1-${SCORES_MAX} node ids`);
    const ids = [...new Set((targets as unknown[]).map((t) => need(checkNodeId(t, "targets"))))];
    const scores: { node_id: number; polo_score: number }[] = [];
    for (const id of ids) {
      const n = await db.nodeById(id);
      if (n && n.active && (await this.canSee(db, self, n))) scores.push({ node_id: id, polo_score: await this.book.score(id, now) });
    }
    return { scores };
  }

  private async deregister(db: RegistryStorage, self: number, events: PushEvent[]): Promise<Record<string, unknown>> {
    const peers = await db.transaction(async (tx) => {
      const peers = await tx.forgetTrust(self);
      await tx.deactivateNode(self);
      return peers;
    });
    for (const peer of peers) events.push({ to: peer, event: { event: "trust_revoked", peer: self, address: addressText(self) } });
    return { node_id: self, deregistered: true, note: { event: "node_deregistered", node_id: self } };
  }

  // -- for the beacon --------------------------------------------------------------

  /**
   * What the beacon asks of the registry: node keys and the visibility rule.
   * Synchronous on SQLite (the beacon's answers stay immediate); a store over
   * the network answers with promises.
   */
  get directory(): RegistryDirectory {
    const storage = this.store instanceof SqliteStorage ? this.store : undefined;
    const sync = storage?.db;
    if (!storage || !sync) return { nodeKey: (id) => this.activeNodeKey(id), mayReach: (from, to) => this.mayReach(from, to) };
    return {
      nodeKey: (id) => {
        const node = sync.nodeById(id);
        return node && node.active ? fromBase64(node.publicKey, 32) : undefined;
      },
      mayReach: (from, to) => {
        const source = sync.nodeById(from);
        const target = sync.nodeById(to);
        if (source === undefined || !source.active || target === undefined) return false;
        if (target.id === from) return true;
        if (!target.active) return false;
        return (
          target.public ||
          sync.isTrusted(from, target.id) ||
          sync.trustRequest(target.id, from) !== undefined ||
          storage.contactGrantedNow(target.id, from, this.clock())
        );
      },
    };
  }

  /** The key of an active node (the beacon verifies registrations with it). */
  async activeNodeKey(id: number): Promise<Uint8Array | undefined> {
    const node = await this.store.nodeById(id);
    return node && node.active ? fromBase64(node.publicKey, 32) : undefined;
  }

  /** May active node `from` address node `to` (punch and relay through the beacon)? The visibility rule. */
  async mayReach(from: number, to: number): Promise<boolean> {
    const source = await this.store.nodeById(from);
    const target = await this.store.nodeById(to);
    return source !== undefined && source.active && target !== undefined && (await this.canSee(this.store, from, target));
  }

  // -- visibility and views ----------------------------------------------------

  private async canSee(db: RegistryStorage, viewer: number, target: NodeRow): Promise<boolean> {
    if (target.id === viewer) return true;
    if (!target.active) return false;
    return (
      target.public ||
      (await db.isTrusted(viewer, target.id)) ||
      (await db.trustRequest(target.id, viewer)) !== undefined ||
      (await db.contactGranted(target.id, viewer, this.clock()))
    );
  }

  private async visible(db: RegistryStorage, viewer: number, target: number): Promise<NodeRow> {
    const node = await db.nodeById(target);
    if (!node || !(await this.canSee(db, viewer, node))) fail("not_found", NOT_VISIBLE);
    return node!;
  }

  /** `rated`: LookupRows.rated, when the lookup read it (ReputationBook.score). */
  private async nodeView(n: NodeRow, now: number, rated?: boolean): Promise<Record<string, unknown>> {
    return {
      node_id: n.id,
      address: addressText(n.id),
      public_key: n.publicKey,
      hostname: n.hostname,
      tags: n.tags,
      public: n.public,
      online: this.isOnline(n, now),
      last_seen: n.lastSeen,
      polo_score: await this.book.score(n.id, now, rated),
    };
  }

  /**
   * What a peer needs to reach the node: the endpoints it reported, the IP the
   * registry saw its connection come from, and `candidates`, the addresses to
   * try in order (reported ones, "0.0.0.0:port" filled in with the observed IP,
   * then the observed IP with each reported port, for NATs that keep ports).
   */
  private endpointView(n: NodeRow): Record<string, unknown> {
    const candidates: string[] = [];
    const add = (e: string) => {
      if (!candidates.includes(e)) candidates.push(e);
    };
    for (const e of n.endpoints) {
      if (isUnspecifiedEndpoint(e)) {
        if (n.observedIp) add(joinEndpoint(n.observedIp, endpointPort(e)));
      } else {
        add(e);
      }
    }
    if (n.observedIp) for (const e of n.endpoints) add(joinEndpoint(n.observedIp, endpointPort(e)));
    return { endpoints: n.endpoints, observed_ip: n.observedIp, candidates };
  }
}

type CursorSection = "trusted" | "inbound" | "outbound";

/** Cursors: "trusted:<peer>", "inbound:<created_at>.<from>", "outbound:<to>"; an empty position means the section's start. */
function parseCursor(text: unknown): { section: CursorSection; after: string | undefined } {
  if (text === undefined || text === null) return { section: "trusted", after: undefined };
  if (typeof text !== "string") return fail("invalid_argument", "cursor must be a string from a previous trust_state");
  const m = /^(trusted|outbound):([0-9]{0,10})$|^inbound:((?:[0-9]{1,16}\.[0-9]{1,10})?)$/.exec(text);
  if (!m) return fail("invalid_argument", "cursor must be a string from a previous trust_state");
  if (m[1]) return { section: m[1] as CursorSection, after: m[2] === "" ? undefined : m[2] };
  return { section: "inbound", after: m[3] === "" ? undefined : m[3] };
}

function compareInboundKey(a: string, b: string): number {
  const [ac, af] = a.split(".").map(Number) as [number, number];
  const [bc, bf] = b.split(".").map(Number) as [number, number];
  return ac !== bc ? ac - bc : af - bf;
}

function addressText(node: number): string {
  return formatAddress(addressOf(0, node));
}

function online(n: NodeRow, now: number): boolean {
  return n.active && now - n.lastSeen <= ONLINE_WINDOW_MS;
}
