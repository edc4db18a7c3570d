/**
 * The registry client the daemon and the CLI use.
 *
 *   const client = await RegistryClient.connect({ host, port, signer, registryKey });
 *   const me = await client.register({ hostname: "alice", endpoints: ["0.0.0.0:4000"] });
 *   client.onEvent = (e) => ...;  await client.subscribe();
 *
 * - Pins the registry's key: given in `registryKey`, or taken from the first
 *   hello (trust on first use: read `client.registryKey` and store it). A hello
 *   with another key fails with `registry_identity_changed`, for good.
 * - Signs every request (see wire.ts) and verifies every response and event
 *   signature. A response that fails its check fails that request alone
 *   with `invalid_response` (each frame is checked on its own, so one bad
 *   frame cannot taint the others); a third one on the same connection, an
 *   unreadable frame or a bad event drops the connection.
 * - A new key's register pays the registry's proof of work (pow.ts) when
 *   the registry asks for it (`pow_required`), then is sent again.
 * - Several requests may be in flight; each waits at most `requestTimeoutMs`.
 * - A lost connection fails the requests in flight with `connection_lost`
 *   (the registry may or may not have applied them: signed requests are
 *   never resent). The next call reconnects, trying `reconnect.attempts`
 *   times with doubling delays. A subscribed client also reconnects in the
 *   background, re-subscribes, and calls `onReconnect` so its owner can
 *   resync with `trustState()`.
 * - Several registries of one deployment (`alternates`, all on one database
 *   and one key, docs/DEPLOYMENT.md): each node starts at one picked from its
 *   key (so nodes spread over them) and moves to the next when a connection
 *   cannot be made or is lost. A request in flight when its connection was
 *   lost is then sent again through the next registry (failover only, never
 *   to the same registry): reads and requests whose repetition changes
 *   nothing (heartbeat, set_*, trust_request, submit_receipt) are signed
 *   anew; trust_approve, trust_reject, trust_revoke and deregister are sent
 *   again as the very same signed request, so the shared nonce store applies
 *   them at most once: `replayed_request` then means the first one reached
 *   the database, and the call fails with `connection_lost` (resync with
 *   trustState()).
 * Results are the registry's JSON fields, snake_case, as on the wire.
 */
import { randomBytes } from "node:crypto";
import { connect as tcpConnect, type Socket } from "node:net";
import { POW_CHALLENGE_SIZE, solvePowSlice } from "./pow.ts";
import type { TaskReceipt } from "../protocol/receipt.ts";
import { receiptToWire } from "./receipts.ts";
import type { Signer } from "./signer.ts";
import { verifyEd25519 } from "./signer.ts";
import {
  encodeFrame,
  eventSigningBytes,
  FrameReader,
  fromBase64,
  NONCE_SIZE,
  PROTOCOL_VERSION,
  requestSigningBytes,
  responseSigningBytes,
  toBase64,
  type RequestType,
  type ServerErrorCode,
} from "./wire.ts";

export type ClientErrorCode =
  | ServerErrorCode
  /** The registry presented a key other than the pinned one. Not retried. */
  | "registry_identity_changed"
  /** No connection could be made (after the configured attempts). */
  | "connection_failed"
  /** The connection dropped while the request was in flight; it may or may not have been applied. */
  | "connection_lost"
  | "timeout"
  /** A response or event failed its signature check or is malformed. */
  | "invalid_response"
  /** A call that needs a node id was made before register() or without options.nodeId. */
  | "not_registered"
  | "closed";

export class RegistryError extends Error {
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    /** For `pow_required`: the work the registry asks for. */
    readonly pow?: { challenge: string; difficulty: number },
  ) {
    super(message);
    this.name = "RegistryError";
  }
}

export interface NodeInfo {
  node_id: number;
  address: string;
  public_key: string;
  hostname: string | null;
  tags: string[];
  public: boolean;
  online: boolean;
  last_seen: number;
  /** Its reputation as a worker, a whole number 0-100 (docs/REGISTRY.md §15). */
  polo_score: number;
}

export interface RegisterResult {
  node_id: number;
  address: string;
  public_key: string;
  hostname: string | null;
  tags: string[];
  public: boolean;
  endpoints: string[];
  observed_ip: string | null;
  /** True when this key was new and got a fresh id. */
  created: boolean;
  time: number;
}

export interface ResolveResult {
  node_id: number;
  address: string;
  public_key: string;
  /** As the node reported them ("0.0.0.0:port" means "at the observed IP"). */
  endpoints: string[];
  /** The IP the registry saw the node's TCP connection come from. */
  observed_ip: string | null;
  /** Addresses to try, in order. */
  candidates: string[];
  online: boolean;
  last_seen: number;
}

export interface SearchHit {
  node_id: number;
  address: string;
  hostname: string | null;
  tags: string[];
  public: boolean;
  online: boolean;
  polo_score: number;
}

/** The answer to submit_receipt: `recorded: false` when the registry already had this receipt. */
export interface ReceiptAck {
  task_id: string;
  submitter: number;
  worker: number;
  outcome: "accepted" | "rejected";
  recorded: boolean;
}

/** A node's polo score and how it was computed (docs/REGISTRY.md §15). */
export interface ReputationInfo {
  node_id: number;
  address: string;
  hostname: string | null;
  polo_score: number;
  /** Receipts within the horizon (accepted, rejected) and the (submitter, week) votes they make; all stored receipts as worker and as submitter. */
  receipts: { accepted: number; rejected: number; counted_votes: number; as_worker: number; as_submitter: number };
  counterparties: { total: number; established: number; newcomers: number; networks: number };
  /** Weighted, capped evidence: P and N of the formula. */
  evidence: { positive: number; negative: number };
  capped: { submitters: number; networks: number; newcomers: boolean };
  /** What this node's own verdicts weigh now. */
  as_submitter: { registered_at: number; established: boolean; age_factor: number; standing: number; weight: number };
  method: Record<string, unknown> & { formula: string };
  computed_at: number;
}

export interface TrustedPeer {
  peer: number;
  address: string;
  public_key: string;
  hostname: string | null;
  since: number;
}

export interface InboundRequest {
  from: number;
  address: string;
  public_key: string;
  hostname: string | null;
  reason: string;
  created_at: number;
}

export interface OutboundRequest {
  to: number;
  address: string;
  reason: string;
  created_at: number;
}

export interface TrustState {
  trusted: TrustedPeer[];
  /** The visible inbox, oldest first: every request up to 100, else the oldest 50 and the newest 50. */
  inbound: InboundRequest[];
  /** All pending requests to this node, including those queued behind the visible inbox. */
  inbound_total: number;
  outbound: OutboundRequest[];
}

/** One page of all pending requests to this node, newest first (`trustInbox`). */
export interface InboxPage {
  inbound: InboundRequest[];
  /** All pending requests to this node. */
  total: number;
  offset: number;
  /** Pass as `offset` for the next page; null after the last. */
  next_offset: number | null;
}

interface EventBase {
  seq: number;
  node_id: number;
}
export type RegistryEvent =
  | (EventBase & { event: "trust_request"; from: number; address: string; reason: string })
  | (EventBase & { event: "trust_approved"; peer: number; address: string })
  | (EventBase & { event: "trust_rejected"; peer: number; address: string; reason?: string })
  | (EventBase & { event: "trust_revoked"; peer: number; address: string });

export interface RegistryClientOptions {
  readonly host: string;
  readonly port: number;
  /** Other registries of the same deployment (one database, one key), tried when one fails. */
  readonly alternates?: readonly { host: string; port: number }[];
  /** Source IP for the TCP connection (default: chosen by the system). */
  readonly localAddress?: string;
  /**
   * Opens the byte stream to the registry in place of a TCP connection (the daemon's
   * registry over WebSocket, src/daemon/ws-registry.ts). It must behave as a net.Socket
   * for write, destroy and the data, error and close events.
   */
  readonly connect?: () => Socket;
  readonly signer: Signer;
  /** This node's id, when it registered before; register() sets it otherwise. */
  readonly nodeId?: number;
  /** The registry's Ed25519 key (32 bytes or base64). Absent: trust on first use. */
  readonly registryKey?: Uint8Array | string;
  readonly connectTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
  readonly reconnect?: { attempts?: number; baseDelayMs?: number; maxDelayMs?: number };
  readonly onEvent?: (event: RegistryEvent) => void;
  readonly onReconnect?: () => void;
  /** Clock for request timestamps (tests use it to send stale requests). */
  readonly clock?: () => number;
  /** The most proof of work register() will do for a new key, in leading zero bits (default 26, about 10 s). */
  readonly powMaxBits?: number;
}

interface Pending {
  readonly nonce: Uint8Array;
  readonly resolve: (value: Record<string, unknown>) => void;
  readonly reject: (error: RegistryError) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** Responses failing their signature check that one connection may carry before it is dropped. */
const BAD_RESPONSES_PER_LINK = 3;

class Link {
  readonly reader = new FrameReader();
  readonly pending = new Map<number, Pending>();
  subscription?: { nonce: Uint8Array; seq: number };
  closed = false;
  badResponses = 0;
  constructor(readonly socket: Socket) {}
}

const DEFAULT_RECONNECT = { attempts: 4, baseDelayMs: 250, maxDelayMs: 5_000 };

/**
 * After failing over, these are sent again as the same signed request (same nonce): the registries
 * share their nonce store, so each is applied at most once. The others are signed anew.
 */
const RESENT_AS_IS: ReadonlySet<RequestType> = new Set(["trust_approve", "trust_reject", "trust_revoke", "deregister"]);

export class RegistryClient {
  onEvent?: (event: RegistryEvent) => void;
  onReconnect?: () => void;
  private link: Link | undefined;
  private connecting: Promise<Link> | undefined;
  private pinned: Uint8Array | undefined;
  private fatal: RegistryError | undefined;
  private nextId = 1;
  private wantSubscription = false;
  private backgroundTimer: ReturnType<typeof setTimeout> | undefined;
  private _nodeId: number | undefined;
  private readonly clock: () => number;
  private readonly reconnect: { attempts: number; baseDelayMs: number; maxDelayMs: number };
  private lastHelloTime = 0;
  /** Every registry this client may use, and the one it uses now. */
  private readonly registries: readonly { host: string; port: number }[];
  private current = 0;

  private constructor(private readonly options: RegistryClientOptions) {
    this.clock = options.clock ?? Date.now;
    this.registries = [{ host: options.host, port: options.port }, ...(options.alternates ?? [])];
    // Nodes spread over the registries by their key; one registry: always it.
    this.current = options.signer.publicKey.reduce((h, b) => (h * 31 + b) >>> 0, 7) % this.registries.length;
    this.reconnect = { ...DEFAULT_RECONNECT, ...options.reconnect };
    this._nodeId = options.nodeId;
    this.onEvent = options.onEvent;
    this.onReconnect = options.onReconnect;
    if (options.registryKey !== undefined) {
      const key = typeof options.registryKey === "string" ? fromBase64(options.registryKey, 32) : options.registryKey;
      if (!key || key.length !== 32) throw new RegistryError("invalid_argument", "registryKey must be a 32-byte Ed25519 key");
      this.pinned = key;
    }
  }

  /** Connects (with the configured attempts) and checks the registry's identity. */
  static async connect(options: RegistryClientOptions): Promise<RegistryClient> {
    const client = new RegistryClient(options);
    await client.ensureLink();
    return client;
  }

  /** The registry's key: the pinned one, or the one seen first. */
  get registryKey(): Uint8Array {
    return this.pinned!;
  }

  get nodeId(): number | undefined {
    return this._nodeId;
  }

  get connected(): boolean {
    return this.link !== undefined && !this.link.closed;
  }

  /** The registry in use (or to be tried next), HOST:PORT. */
  get registryAddress(): string {
    const r = this.registries[this.current]!;
    return r.host.includes(":") ? `[${r.host}]:${r.port}` : `${r.host}:${r.port}`;
  }

  /** The registry's clock in its last hello (unix ms), for diagnosing skew. */
  get registryTime(): number {
    return this.lastHelloTime;
  }

  close(): void {
    this.fatal ??= new RegistryError("closed", "the registry client was closed");
    this.wantSubscription = false;
    if (this.backgroundTimer) clearTimeout(this.backgroundTimer);
    this.link?.socket.destroy();
  }

  // -- typed requests ------------------------------------------------------------------

  async register(fields: { endpoints?: string[]; hostname?: string; public?: boolean; tags?: string[] } = {}): Promise<RegisterResult> {
    const request: Record<string, unknown> = { ...fields, public_key: toBase64(this.options.signer.publicKey) };
    let result: RegisterResult | undefined;
    // A known key registers at once; a new one is asked for proof of work, pays it and asks again
    // (again if the difficulty rose or the challenge changed meanwhile). The work is bound to the
    // registry's challenge, not to a connection: if the connection went while it was being done,
    // the next call reconnects. Unlike other calls, register may be resent after a lost connection:
    // a key always maps to one node and the same fields are applied again.
    for (let attempt = 0; result === undefined; attempt++) {
      try {
        result = (await this.call("register", request, false)) as unknown as RegisterResult;
      } catch (e) {
        if (!(e instanceof RegistryError) || attempt >= 3) throw e;
        if (e.code === "pow_required" && e.pow) request.pow = toBase64(await this.solvePow(e.pow));
        else if (e.code !== "connection_lost") throw e;
      }
    }
    if (result.public_key !== toBase64(this.options.signer.publicKey) || !Number.isInteger(result.node_id)) {
      throw new RegistryError("invalid_response", "the registry answered register for another key");
    }
    this._nodeId = result.node_id;
    return result;
  }

  heartbeat(endpoints?: string[]): Promise<{ time: number; observed_ip: string }> {
    return this.call("heartbeat", endpoints ? { endpoints } : {}) as Promise<any>;
  }

  lookup(nodeId: number): Promise<NodeInfo> {
    return this.call("lookup", { target: nodeId }) as Promise<any>;
  }

  find(hostname: string): Promise<NodeInfo> {
    return this.call("find", { hostname }) as Promise<any>;
  }

  /**
   * A node's key and endpoints. `contact: true` says we are about to open a
   * tunnel to it: the registry then lets that node look us up for a while, so
   * it can authenticate our handshake even when we are private.
   */
  resolve(nodeId: number, options: { contact?: boolean } = {}): Promise<ResolveResult> {
    return this.call("resolve", options.contact ? { target: nodeId, contact: true } : { target: nodeId }) as Promise<any>;
  }

  async search(query: string): Promise<SearchHit[]> {
    return ((await this.call("search", { query })) as { results: SearchHit[] }).results;
  }

  /** "" clears the hostname. */
  setHostname(hostname: string): Promise<{ node_id: number; hostname: string | null }> {
    return this.call("set_hostname", { hostname }) as Promise<any>;
  }

  /** [] clears the tags. */
  setTags(tags: string[]): Promise<{ node_id: number; tags: string[] }> {
    return this.call("set_tags", { tags }) as Promise<any>;
  }

  setVisibility(isPublic: boolean): Promise<{ node_id: number; public: boolean }> {
    return this.call("set_visibility", { public: isPublic }) as Promise<any>;
  }

  /** "pending" whether or not the target exists; "trusted" when the pair exists (now or already). */
  trustRequest(to: number, reason: string): Promise<{ to: number; status: "pending" | "trusted" }> {
    return this.call("trust_request", { to, reason }) as Promise<any>;
  }

  trustApprove(peer: number): Promise<{ peer: number; trusted: true }> {
    return this.call("trust_approve", { peer }) as Promise<any>;
  }

  trustReject(peer: number, reason?: string): Promise<{ peer: number; rejected: true }> {
    return this.call("trust_reject", reason === undefined ? { peer } : { peer, reason }) as Promise<any>;
  }

  /** Ends trust with `peer` and/or withdraws this node's pending request to it. */
  trustRevoke(peer: number): Promise<{ peer: number; revoked: boolean; withdrawn: boolean }> {
    return this.call("trust_revoke", { peer }) as Promise<any>;
  }

  /** The whole trust state, assembled from as many pages as it takes. */
  async trustState(): Promise<TrustState> {
    const state: TrustState = { trusted: [], inbound: [], inbound_total: 0, outbound: [] };
    let cursor: string | null = null;
    for (let page = 0; page < 10_000; page++) {
      const r = (await this.call("trust_state", cursor === null ? {} : { cursor })) as any;
      state.trusted.push(...r.trusted);
      state.inbound.push(...r.inbound);
      state.outbound.push(...r.outbound);
      state.inbound_total = r.inbound_total;
      cursor = r.next_cursor;
      if (cursor === null) return state;
    }
    throw new RegistryError("invalid_response", "trust_state did not end");
  }

  /**
   * Every pending request to this node, newest first, one page at a time
   * (`limit` 1-100, default 100; a page also stops before 48 KiB).
   */
  trustInbox(options: { offset?: number; limit?: number } = {}): Promise<InboxPage> {
    const fields: Record<string, unknown> = {};
    if (options.offset !== undefined) fields.offset = options.offset;
    if (options.limit !== undefined) fields.limit = options.limit;
    return this.call("trust_inbox", fields) as Promise<any>;
  }

  /** Starts pushed events on this connection (and on every reconnection). */
  async subscribe(): Promise<void> {
    this.wantSubscription = true;
    const link = await this.ensureLink();
    if (link.subscription) return;
    await this.subscribeOn(link);
  }

  /**
   * Hands a task receipt signed by both parties to the registry. Idempotent:
   * the same receipt again answers `recorded: false`, so it may be resent
   * after `connection_lost`.
   */
  submitReceipt(receipt: TaskReceipt): Promise<ReceiptAck> {
    return this.call("submit_receipt", { receipt: receiptToWire(receipt) }) as Promise<any>;
  }

  /**
   * A node's polo score and how it was computed; `not_found` for a node this
   * one cannot see. The wire carries fractions as integer thousandths
   * (`*_milli`); they come back here as plain numbers.
   */
  async reputation(nodeId: number): Promise<ReputationInfo> {
    const r = (await this.call("reputation", { target: nodeId })) as any;
    const frac = (o: any, key: string) => (typeof o?.[`${key}_milli`] === "number" ? o[`${key}_milli`] / 1000 : null);
    const { positive_milli: _p, negative_milli: _n, ...evidence } = r.evidence ?? {};
    const { age_factor_milli: _a, standing_milli: _s, weight_milli: _w, ...asSubmitter } = r.as_submitter ?? {};
    const { newcomer_cap_milli: _c, per_submitter_cap_milli: _sc, per_network_cap_milli: _nc, ...method } = r.method ?? {};
    return {
      ...r,
      evidence: { ...evidence, positive: frac(r.evidence, "positive"), negative: frac(r.evidence, "negative") },
      as_submitter: { ...asSubmitter, age_factor: frac(r.as_submitter, "age_factor"), standing: frac(r.as_submitter, "standing"), weight: frac(r.as_submitter, "weight") },
      method: { ...method, per_submitter_cap: frac(r.method, "per_submitter_cap"), per_network_cap: frac(r.method, "per_network_cap"), newcomer_cap: frac(r.method, "newcomer_cap") },
    };
  }

  /** The scores of up to 100 nodes; nodes this one cannot see are left out. */
  async scores(nodeIds: number[]): Promise<{ node_id: number; polo_score: number }[]> {
    return ((await this.call("scores", { targets: nodeIds })) as { scores: { node_id: number; polo_score: number }[] }).scores;
  }

  async deregister(): Promise<{ node_id: number; deregistered: true }> {
    return this.call("deregister", {}) as Promise<any>;
  }

  /** Finds proof of work for this key, yielding to the event loop between slices. */
  private async solvePow(pow: { challenge: string; difficulty: number }): Promise<Uint8Array> {
    const challenge = fromBase64(pow.challenge, POW_CHALLENGE_SIZE);
    const max = this.options.powMaxBits ?? 26;
    if (!challenge || !Number.isInteger(pow.difficulty) || pow.difficulty < 0) {
      throw new RegistryError("invalid_response", "the registry asked for proof of work with a malformed challenge");
    }
    if (pow.difficulty > max) {
      throw new RegistryError("rate_limited", `the registry asks ${pow.difficulty} bits of proof of work for a new node (more than ${max}): it is under a registration flood; retry later`);
    }
    const SLICE = 16_384;
    for (let from = 0; from < 2 ** 48; from += SLICE) {
      if (this.fatal) throw this.fatal;
      const found = solvePowSlice(challenge, this.options.signer.publicKey, pow.difficulty, from, SLICE);
      if (found) return found;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    throw new RegistryError("rate_limited", "no proof of work found");
  }

  // -- the request machinery ------------------------------------------------------------

  private async call(type: RequestType, fields: Record<string, unknown>, needsNode = true): Promise<Record<string, unknown>> {
    const link = await this.ensureLink();
    const sent = this.issue(link, type, fields, needsNode);
    try {
      return await sent.result;
    } catch (e) {
      if (!(e instanceof RegistryError) || e.code !== "connection_lost" || this.registries.length < 2 || this.fatal) throw e;
      // Failover: the connection is gone and `lost` has moved on to the next registry.
      const next = await this.ensureLink();
      if (!RESENT_AS_IS.has(type)) return this.issue(next, type, fields, needsNode).result;
      try {
        return await this.issue(next, type, fields, needsNode, sent.request).result;
      } catch (again) {
        if (again instanceof RegistryError && again.code === "replayed_request") {
          throw new RegistryError("connection_lost", `the connection to the registry was lost; the ${type} reached the database before (it is not applied twice): check the outcome with trust_state`);
        }
        throw again;
      }
    }
  }

  /**
   * Signs and sends one request (or sends `again`, a request signed before, as it is); `nonce` is
   * what its response (and, for subscribe, its events) is bound to.
   */
  private issue(
    link: Link,
    type: RequestType,
    fields: Record<string, unknown>,
    needsNode: boolean,
    again?: { request: Record<string, unknown>; nonce: Uint8Array },
  ): { nonce: Uint8Array; request: { request: Record<string, unknown>; nonce: Uint8Array }; result: Promise<Record<string, unknown>> } {
    const nonce = again?.nonce ?? new Uint8Array(randomBytes(NONCE_SIZE));
    if (needsNode && this._nodeId === undefined) {
      return { nonce, request: { request: {}, nonce }, result: Promise.reject(new RegistryError("not_registered", `${type} needs a node id: call register() first`)) };
    }
    let request: Record<string, unknown>;
    if (again) {
      request = again.request;
    } else {
      request = { type, id: this.nextId++, ...fields, ts: this.clock(), nonce: toBase64(nonce) };
      if (needsNode) request.node_id = this._nodeId;
      request.sig = toBase64(this.options.signer.sign(requestSigningBytes(request, this.pinned!)));
    }
    const id = request.id as number;
    const frame = encodeFrame(request);
    const timeoutMs = this.options.requestTimeoutMs ?? 10_000;
    const result = new Promise<Record<string, unknown>>((resolve, reject) => {
      if (link.closed) {
        reject(new RegistryError("connection_lost", "the connection to the registry was lost"));
        return;
      }
      const timer = setTimeout(() => {
        link.pending.delete(id);
        reject(new RegistryError("timeout", `the registry did not answer ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      link.pending.set(id, { nonce, resolve, reject, timer });
      link.socket.write(frame);
    });
    return { nonce, request: { request, nonce }, result };
  }

  private async subscribeOn(link: Link): Promise<void> {
    const { nonce, result } = this.issue(link, "subscribe", {}, true);
    // Events are signed over the subscribe request's nonce; they may arrive right after the response.
    link.subscription = { nonce, seq: 0 };
    try {
      await result;
    } catch (e) {
      if (link.subscription?.nonce === nonce) link.subscription = undefined;
      throw e;
    }
  }

  private ensureLink(): Promise<Link> {
    if (this.fatal) return Promise.reject(this.fatal);
    if (this.link && !this.link.closed) return Promise.resolve(this.link);
    this.connecting ??= this.connectWithRetries(this.reconnect.attempts).finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /** Each attempt tries every registry once, from the current one on; the first that answers becomes current. */
  private async connectWithRetries(attempts: number): Promise<Link> {
    let lastError: RegistryError | undefined;
    for (let attempt = 0; attempt < Math.max(1, attempts); attempt++) {
      if (attempt > 0) await sleep(Math.min(this.reconnect.maxDelayMs, this.reconnect.baseDelayMs * 2 ** (attempt - 1)));
      for (let tried = 0; tried < this.registries.length; tried++) {
        if (this.fatal) throw this.fatal;
        try {
          const link = await this.open(this.registries[this.current]!);
          this.link = link;
          return link;
        } catch (e) {
          lastError = e instanceof RegistryError ? e : new RegistryError("connection_failed", String(e));
          if (lastError.code === "registry_identity_changed" || lastError.code === "closed") throw lastError;
          this.current = (this.current + 1) % this.registries.length;
        }
      }
    }
    const code = lastError?.code === "rate_limited" ? "rate_limited" : "connection_failed";
    const where = this.registries.map((r) => `${r.host}:${r.port}`).join(", ");
    throw new RegistryError(code, `cannot reach the registry at ${where}: ${lastError?.message ?? "unknown error"}`);
  }

  /** One TCP connection, up to and including a verified hello. */
  private open(registry: { host: string; port: number }): Promise<Link> {
    const { host, port } = registry;
    const timeoutMs = this.options.connectTimeoutMs ?? 5_000;
    return new Promise<Link>((resolve, reject) => {
      const socket = this.options.connect ? this.options.connect() : tcpConnect({ host, port, noDelay: true, ...(this.options.localAddress ? { localAddress: this.options.localAddress } : {}) });
      const link = new Link(socket);
      let greeted = false;
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new RegistryError("connection_failed", `no hello from ${host}:${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.on("error", (e) => {
        if (!greeted) {
          clearTimeout(timer);
          reject(new RegistryError("connection_failed", `${host}:${port}: ${e.message}`));
        }
      });
      socket.on("close", () => {
        clearTimeout(timer);
        if (!greeted) reject(new RegistryError("connection_failed", `${host}:${port} closed the connection`));
        this.lost(link);
      });
      socket.on("data", (chunk: Buffer) => {
        for (const frame of link.reader.push(chunk)) {
          if (link.closed) return;
          if (frame.kind !== "message") {
            this.breakLink(link, new RegistryError("invalid_response", `unreadable frame from the registry: ${frame.reason}`));
            if (!greeted) reject(new RegistryError("invalid_response", `unreadable hello from ${host}:${port}`));
            return;
          }
          if (!greeted) {
            const error = this.checkHello(frame.value);
            clearTimeout(timer);
            if (error) {
              if (error.code === "registry_identity_changed") this.fatal = error;
              link.closed = true;
              socket.destroy();
              reject(error);
              return;
            }
            greeted = true;
            resolve(link);
            continue;
          }
          this.dispatch(link, frame.value);
        }
      });
    });
  }

  private checkHello(hello: Record<string, unknown>): RegistryError | undefined {
    if (hello.type === "response" && hello.ok === false) {
      // Refused before the hello (connection limits). Unbound to any request, so it can only fail this attempt.
      const e = hello.error as { code?: unknown; message?: unknown } | undefined;
      const code = e?.code === "rate_limited" ? "rate_limited" : "connection_failed";
      return new RegistryError(code, `the registry refused the connection: ${typeof e?.message === "string" ? e.message : "no reason given"}`);
    }
    if (hello.type !== "hello") return new RegistryError("invalid_response", "the registry did not start with hello");
    if (hello.version !== PROTOCOL_VERSION) return new RegistryError("invalid_response", `registry protocol version ${String(hello.version)} is not ${PROTOCOL_VERSION}`);
    const key = fromBase64(hello.registry_key, 32);
    if (!key) return new RegistryError("invalid_response", "the hello carries no valid registry_key");
    if (this.pinned && toBase64(this.pinned) !== toBase64(key)) {
      return new RegistryError(
        "registry_identity_changed",
        `the registry at ${this.registryAddress} presented key ${toBase64(key)}, not the pinned ${toBase64(this.pinned)}`,
      );
    }
    this.pinned = key;
    if (typeof hello.time === "number") this.lastHelloTime = hello.time;
    return undefined;
  }

  private dispatch(link: Link, message: Record<string, unknown>): void {
    const sig = fromBase64(message.sig, 64);
    if (message.type === "event") {
      const sub = link.subscription;
      if (!sub || !sig || !verifyEd25519(this.pinned!, eventSigningBytes(message, sub.nonce), sig)) {
        this.breakLink(link, new RegistryError("invalid_response", "an event failed its signature check"));
        return;
      }
      if (message.node_id !== this._nodeId || message.seq !== sub.seq + 1) {
        this.breakLink(link, new RegistryError("invalid_response", "an event is out of sequence or for another node"));
        return;
      }
      sub.seq++;
      const { type: _t, sig: _s, ...event } = message;
      try {
        this.onEvent?.(event as unknown as RegistryEvent);
      } catch {
        // A listener's failure is its own; the connection carries on.
      }
      return;
    }
    if (message.type !== "response") {
      this.breakLink(link, new RegistryError("invalid_response", `unexpected frame type ${JSON.stringify(message.type)}`));
      return;
    }
    const pending = typeof message.id === "number" ? link.pending.get(message.id) : undefined;
    if (!pending) {
      // Unsolicited (for example the answer to a frame the registry could not read): verify, then ignore.
      return;
    }
    link.pending.delete(message.id as number);
    clearTimeout(pending.timer);
    if (!sig || !verifyEd25519(this.pinned!, responseSigningBytes(message, pending.nonce), sig)) {
      // Only this request is failed: every other answer is checked on its own, so it cannot be
      // altered through this one. Several on one connection: someone is tampering with it.
      const error = new RegistryError("invalid_response", "a response failed its signature check (altered or forged)");
      pending.reject(error);
      if (++link.badResponses >= BAD_RESPONSES_PER_LINK) this.breakLink(link, error);
      return;
    }
    if (message.ok === true) {
      const { type: _t, id: _i, ok: _o, sig: _s, ...fields } = message;
      pending.resolve(fields);
      return;
    }
    const error = message.error as { code?: unknown; message?: unknown; pow?: { challenge?: unknown; difficulty?: unknown } } | undefined;
    const code = typeof error?.code === "string" ? (error.code as ClientErrorCode) : "internal";
    const pow =
      typeof error?.pow?.challenge === "string" && typeof error.pow.difficulty === "number" ? { challenge: error.pow.challenge, difficulty: error.pow.difficulty } : undefined;
    pending.reject(new RegistryError(code, typeof error?.message === "string" ? error.message : "the registry refused the request", pow));
  }

  /** Fails everything in flight on `link` with `error` and closes it. */
  private breakLink(link: Link, error: RegistryError): void {
    for (const p of link.pending.values()) {
      clearTimeout(p.timer);
      p.reject(error);
    }
    link.pending.clear();
    link.closed = true;
    link.socket.destroy();
  }

  private lost(link: Link): void {
    const current = this.link === link;
    // Move on first: requests failed here fail over to the next registry (call()).
    if (current) {
      this.link = undefined;
      if (this.registries.length > 1) this.current = (this.current + 1) % this.registries.length;
    }
    this.breakLink(link, new RegistryError("connection_lost", "the connection to the registry was lost"));
    if (!current) return;
    if (this.wantSubscription && !this.fatal) this.scheduleBackground(0);
  }

  /** Keeps a subscribed client connected: retries with capped, doubling delays until close(). */
  private scheduleBackground(attempt: number): void {
    if (this.backgroundTimer || this.fatal) return;
    const delay = Math.min(this.reconnect.maxDelayMs, this.reconnect.baseDelayMs * 2 ** attempt);
    this.backgroundTimer = setTimeout(async () => {
      this.backgroundTimer = undefined;
      if (this.fatal || !this.wantSubscription) return;
      try {
        const link = await this.ensureLink();
        await this.subscribeOn(link);
        this.onReconnect?.();
      } catch (e) {
        if (e instanceof RegistryError && (e.code === "registry_identity_changed" || e.code === "closed")) return;
        this.scheduleBackground(Math.min(attempt + 1, 16));
      }
    }, delay);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
