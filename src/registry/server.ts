/**
 * The registry's TCP shell around RegistryService: accepts connections, greets
 * each with `hello`, frames requests, signs responses and pushes signed events
 * to subscribed connections. All request logic lives in service.ts.
 *
 * Per connection it holds at most one partial frame (64 KiB) and a bounded
 * write queue. Hostile input gets an `invalid_argument` reply, or the
 * connection is closed when framing is lost; it never affects other clients.
 *
 * Connections (docs/REGISTRY.md §9):
 * - limits per source IP and per source network (IPv4 /24, IPv6 /56);
 * - a connection must send a valid signed request within `authTimeoutMs`,
 *   or it is closed; at most `maxUnauthenticated` wait at once (the oldest
 *   gives way to a new one);
 * - at most `maxConnectionsPerNode` authenticated connections per node (the
 *   least recently active gives way);
 * - when the table is full, the network holding the most connections gives
 *   one up to a network holding fewer (its oldest unauthenticated one, else
 *   its least recently active): a flood from some networks never locks out
 *   the others.
 */
import { createServer, type Server, type Socket } from "node:net";
import { unmapIpv4 } from "../protocol/beacon-message.ts";
import { addressPrefix, CountIndex, TokenBuckets, type BucketConfig } from "./limits.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { budgetOf, DEFAULT_SERVICE_LIMITS, RegistryService, type Outcome, type PushEvent, type RegistryDirectory, type ServiceLimits } from "./service.ts";
import type { Signer } from "./signer.ts";
import type { RegistryStorage } from "./storage.ts";
import type { RegistryStore } from "./store.ts";
import type { RegistryObserver } from "./metrics.ts";
import {
  canonicalJson,
  encodeFrame,
  eventSigningBytes,
  FrameReader,
  fromBase64,
  NONCE_SIZE,
  PROTOCOL_VERSION,
  responseSigningBytes,
  responseSigningBytesOf,
  signedFrame,
  toBase64,
} from "./wire.ts";

export interface ServerLimits extends ServiceLimits {
  /**
   * Frames per connection, charged before any signature work. A request that
   * proves valid and within its node's budget gets its token back, so this
   * bounds only what a connection sends that is not a node's accepted request.
   * Once the connection is authenticated, each kind of request (the node's
   * own calls, lookups, lookups of nodes that contacted it) has a bucket of
   * its own. Default 50/s, burst 200.
   */
  readonly framesPerConnection: BucketConfig;
  readonly maxConnectionsPerIp: number;
  /** Connections from one IPv4 /24 or IPv6 /56. */
  readonly maxConnectionsPerPrefix: number;
  readonly maxConnections: number;
  /** Connections that have not yet sent a valid signed request, at once. */
  readonly maxUnauthenticated: number;
  /** A connection that sends no valid signed request within this is closed. */
  readonly authTimeoutMs: number;
  /** Authenticated connections of one node. */
  readonly maxConnectionsPerNode: number;
  /** A connection that sends nothing for this long is closed. */
  readonly idleTimeoutMs: number;
  /** A connection whose unsent output grows past this is closed (a reader that does not read). */
  readonly maxQueuedBytes: number;
  /** Malformed frames tolerated on one connection before it is closed. */
  readonly maxMalformedFrames: number;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  ...DEFAULT_SERVICE_LIMITS,
  framesPerConnection: { rate: 50, burst: 200 },
  maxConnectionsPerIp: 64,
  maxConnectionsPerPrefix: 256,
  maxConnections: 10_000,
  maxUnauthenticated: 2_000,
  authTimeoutMs: 5_000,
  maxConnectionsPerNode: 8,
  idleTimeoutMs: 5 * 60_000,
  maxQueuedBytes: 1 << 20,
  maxMalformedFrames: 16,
};

export interface RegistryServerOptions {
  readonly host: string;
  readonly port: number;
  readonly store: RegistryStorage | RegistryStore;
  readonly signer: Signer;
  readonly clock?: () => number;
  readonly limits?: Partial<ServerLimits>;
  readonly log?: Logger;
  /** Told of every handled request and every refusal (metrics, src/registry/metrics.ts). */
  readonly observer?: RegistryObserver;
}

interface Connection {
  readonly id: number;
  readonly socket: Socket;
  readonly ip: string;
  /** Its source network (addressPrefix). */
  readonly prefix: string;
  readonly reader: FrameReader;
  malformed: number;
  /** When it last sent a frame (the registry's clock). */
  lastActive: number;
  /** The node whose valid signed request it sent first; unset while unauthenticated. */
  nodeId?: number;
  authTimer?: ReturnType<typeof setTimeout>;
  subscription?: { nodeId: number; nonce: Uint8Array; seq: number };
  /** Its requests being handled, in order, and how many. */
  queue: Promise<void>;
  pending: number;
}

/**
 * Requests one connection may have waiting for the store at once. The frame budgets bound them
 * first (a token comes back only once a request has been answered); this is a last bound.
 */
const MAX_PENDING_PER_CONNECTION = 1024;

/** How often the reaper runs, at most and at least. */
const REAP_INTERVAL_MAX_MS = 3_600_000;
const REAP_INTERVAL_MIN_MS = 1_000;

export class RegistryServer {
  private readonly service: RegistryService;
  private readonly connections = new Set<Connection>();
  private readonly perIp = new Map<string, number>();
  private readonly perPrefix = new Map<string, Set<Connection>>();
  private readonly prefixCounts = new CountIndex();
  /** Connections still to authenticate, oldest first. */
  private readonly unauthenticated = new Set<Connection>();
  private readonly perNode = new Map<number, Set<Connection>>();
  private readonly subscribers = new Map<number, Set<Connection>>();
  private readonly refusals = new Map<string, Uint8Array>();
  private reaper: ReturnType<typeof setInterval> | undefined;
  private readonly frames: TokenBuckets;
  private readonly limits: ServerLimits;
  private readonly log: Logger;
  private readonly clock: () => number;
  private nextConnectionId = 1;
  private closed = false;
  /** Requests answered since start (`requestCount`). */
  private requestsAnswered = 0;
  private listening: { unlisten(): Promise<void> } | undefined;

  private constructor(
    private readonly server: Server,
    private readonly options: RegistryServerOptions,
  ) {
    this.limits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
    this.log = options.log ?? createLogger("registry", { sink: () => {} });
    this.clock = options.clock ?? Date.now;
    this.frames = new TokenBuckets(this.limits.framesPerConnection);
    this.service = new RegistryService({
      store: options.store,
      registryKey: options.signer.publicKey,
      clock: this.clock,
      limits: this.limits,
    });
  }

  static async start(options: RegistryServerOptions): Promise<RegistryServer> {
    const server = createServer({ noDelay: true });
    const registry = new RegistryServer(server, options);
    server.on("connection", (socket) => registry.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: options.host, port: options.port }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (e) => registry.log.error("registry server error", { error: String(e) }));
    try {
      await registry.listenToPeers();
    } catch (e) {
      await registry.close();
      throw e;
    }
    registry.startReaper();
    return registry;
  }

  /**
   * Registries sharing a store (PostgreSQL) hear each other's events: a trust
   * request made at one reaches its target's daemon at another.
   */
  private async listenToPeers(): Promise<void> {
    const store = this.service.storage;
    if (!store.listen) return;
    this.listening = await store.listen(
      (payload) => this.peerEvent(payload),
      () => this.log.debug("listening for other registries' events"),
    );
  }

  /** An event another registry on the store sent (read as carefully as any input). */
  private peerEvent(payload: string): void {
    let m: unknown;
    try {
      m = JSON.parse(payload);
    } catch {
      return;
    }
    if (typeof m !== "object" || m === null) return;
    const { origin, to, event } = m as Record<string, unknown>;
    if (origin === this.service.instance || typeof origin !== "string") return;
    if (typeof to !== "number" || !Number.isInteger(to) || to < 0 || to > 0xffff_ffff) return;
    if (typeof event !== "object" || event === null || Array.isArray(event) || typeof (event as Record<string, unknown>).event !== "string") return;
    this.push(to, event as Record<string, unknown>);
  }

  /** Reaps nodes not seen for the reaping time: once now, then periodically. */
  private startReaper(): void {
    const reap = () => {
      this.service.reap(this.clock()).then(
        (n) => {
          if (n > 0) this.log.info("nodes reaped", { count: n, not_seen_for_ms: this.limits.reapAfterMs });
        },
        (e) => this.log.error("reaping failed", { error: String(e) }),
      );
    };
    reap();
    const every = Math.min(REAP_INTERVAL_MAX_MS, Math.max(REAP_INTERVAL_MIN_MS, Math.floor(this.limits.reapAfterMs / 4)));
    this.reaper = setInterval(reap, every);
    this.reaper.unref();
  }

  /** The address actually bound (the real port when asked for port 0). */
  get address(): { host: string; port: number } {
    const a = this.server.address();
    if (a === null || typeof a === "string") return { host: this.options.host, port: this.options.port };
    return { host: a.address, port: a.port };
  }

  /** Requests answered since start, refusals included (the operator page's aggregate counts). */
  get requestCount(): number {
    return this.requestsAnswered;
  }

  /** What the beacon asks of the registry: node keys and the visibility rule. */
  get directory(): RegistryDirectory {
    return this.service.directory;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Aggregate connection counts (metrics): nodes with an authenticated connection, subscribed nodes, connections still to authenticate. */
  connectionStats(): { authenticatedNodes: number; subscribed: number; unauthenticated: number } {
    return { authenticatedNodes: this.perNode.size, subscribed: this.subscribers.size, unauthenticated: this.unauthenticated.size };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reaper) clearInterval(this.reaper);
    await this.listening?.unlisten().catch(() => {});
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.connections) c.socket.destroy();
    await done;
  }

  /** A connection that arrived another way (the registry over WebSocket, src/beacon/ws-relay.ts): served like a TCP one. */
  acceptStream(socket: Socket): void {
    this.accept(socket);
  }

  private accept(socket: Socket): void {
    const ip = unmapIpv4(socket.remoteAddress ?? "");
    const prefix = addressPrefix(ip);
    const refused = this.closed
      ? "closing"
      : (this.perIp.get(ip) ?? 0) >= this.limits.maxConnectionsPerIp
        ? "too many connections from this address"
        : this.prefixCounts.count(prefix) >= this.limits.maxConnectionsPerPrefix
          ? "too many connections from this network"
          : this.connections.size >= this.limits.maxConnections && !this.makeRoomFor(prefix)
            ? "too many connections"
            : undefined;
    if (refused) {
      this.log.warn("connection refused", { source_ip: ip, reason: refused });
      this.options.observer?.refused("connection");
      socket.on("error", () => {});
      socket.end(this.refusal(refused));
      return;
    }
    if (this.unauthenticated.size >= this.limits.maxUnauthenticated) {
      // The oldest connection still to authenticate gives way: a flood of them cycles through
      // the pool while a real client, which signs its first request at once, gets through.
      const oldest = this.unauthenticated.values().next().value!;
      this.evict(oldest, "too many connections waiting to authenticate");
    }
    const now = this.clock();
    const conn: Connection = { id: this.nextConnectionId++, socket, ip, prefix, reader: new FrameReader(), malformed: 0, lastActive: now, queue: Promise.resolve(), pending: 0 };
    this.connections.add(conn);
    this.perIp.set(ip, (this.perIp.get(ip) ?? 0) + 1);
    let fromPrefix = this.perPrefix.get(prefix);
    if (!fromPrefix) this.perPrefix.set(prefix, (fromPrefix = new Set()));
    fromPrefix.add(conn);
    this.prefixCounts.add(prefix);
    this.unauthenticated.add(conn);
    conn.authTimer = setTimeout(() => {
      if (conn.nodeId === undefined) this.evict(conn, "no valid signed request in time");
    }, this.limits.authTimeoutMs);
    conn.authTimer.unref?.();
    socket.setNoDelay(true);
    socket.setTimeout(this.limits.idleTimeoutMs, () => socket.destroy());
    socket.on("data", (chunk: Buffer) => this.receive(conn, chunk));
    socket.on("error", () => {});
    socket.on("close", () => this.drop(conn));
    this.send(conn, {
      type: "hello",
      registry_key: toBase64(this.options.signer.publicKey),
      version: PROTOCOL_VERSION,
      time: now,
    });
  }

  /** The signed refusal sent in place of the hello (signed once per reason: refusing must stay cheap). */
  private refusal(reason: string): Uint8Array {
    let frame = this.refusals.get(reason);
    if (!frame) {
      const refusal: Record<string, unknown> = { type: "response", id: null, ok: false, error: { code: "rate_limited", message: `${reason}; close some or retry later` } };
      refusal.sig = toBase64(this.options.signer.sign(responseSigningBytes(refusal, new Uint8Array(0))));
      this.refusals.set(reason, (frame = encodeFrame(refusal)));
    }
    return frame;
  }

  /**
   * The table is full: the network holding the most connections gives one up,
   * if it holds more than the newcomer's network would with this one. Its
   * oldest unauthenticated connection goes first, else its least recently
   * active one.
   */
  private makeRoomFor(prefix: string): boolean {
    const heaviest = this.prefixCounts.heaviest();
    if (!heaviest || heaviest.count <= this.prefixCounts.count(prefix) + 1) return false;
    let victim: Connection | undefined;
    for (const c of this.perPrefix.get(heaviest.key) ?? []) {
      if (c.nodeId === undefined) {
        victim = c;
        break;
      }
      if (!victim || c.lastActive < victim.lastActive) victim = c;
    }
    if (!victim) return false;
    this.evict(victim, "the registry is full and this network holds the most connections");
    return true;
  }

  private evict(conn: Connection, reason: string): void {
    this.log.debug("connection closed", { source_ip: conn.ip, reason });
    this.drop(conn);
    conn.socket.destroy();
  }

  private drop(conn: Connection): void {
    if (!this.connections.delete(conn)) return;
    const n = (this.perIp.get(conn.ip) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(conn.ip);
    else this.perIp.set(conn.ip, n);
    const fromPrefix = this.perPrefix.get(conn.prefix);
    fromPrefix?.delete(conn);
    if (fromPrefix && fromPrefix.size === 0) this.perPrefix.delete(conn.prefix);
    this.prefixCounts.remove(conn.prefix);
    this.unauthenticated.delete(conn);
    if (conn.authTimer) clearTimeout(conn.authTimer);
    if (conn.nodeId !== undefined) {
      const mine = this.perNode.get(conn.nodeId);
      mine?.delete(conn);
      if (mine && mine.size === 0) this.perNode.delete(conn.nodeId);
    }
    for (const suffix of ["", ":own", ":lookup", ":inbound"]) this.frames.forget(`c:${conn.id}${suffix}`);
    const node = conn.subscription?.nodeId;
    this.unsubscribe(conn);
    // A daemon keeps its subscription open while it runs: once none is left, it is offline.
    if (node !== undefined && !this.subscribers.has(node) && !this.closed) this.service.nodeDisconnected(node);
  }

  /** `conn` sent a valid signed request of `nodeId`: it may stay (idle rules apply from now on). */
  private authenticated(conn: Connection, nodeId: number): void {
    if (conn.nodeId !== undefined) return;
    conn.nodeId = nodeId;
    this.unauthenticated.delete(conn);
    if (conn.authTimer) clearTimeout(conn.authTimer);
    let mine = this.perNode.get(nodeId);
    if (!mine) this.perNode.set(nodeId, (mine = new Set()));
    mine.add(conn);
    if (mine.size > this.limits.maxConnectionsPerNode) {
      let idlest: Connection | undefined;
      for (const c of mine) if (c !== conn && (!idlest || c.lastActive < idlest.lastActive)) idlest = c;
      if (idlest) this.evict(idlest, "too many connections of this node");
    }
  }

  private unsubscribe(conn: Connection): void {
    if (!conn.subscription) return;
    const set = this.subscribers.get(conn.subscription.nodeId);
    set?.delete(conn);
    if (set && set.size === 0) this.subscribers.delete(conn.subscription.nodeId);
    conn.subscription = undefined;
  }

  private receive(conn: Connection, chunk: Buffer): void {
    if (conn.socket.destroyed) return;
    for (const frame of conn.reader.push(chunk)) {
      if (conn.socket.destroyed) return;
      if (frame.kind === "fatal" || frame.kind === "malformed") this.options.observer?.malformed();
      if (frame.kind === "fatal") {
        this.respond(conn, RegistryService.malformed(frame.reason));
        conn.socket.end();
        setTimeout(() => conn.socket.destroy(), 1000).unref();
        return;
      }
      if (frame.kind === "malformed") {
        this.respond(conn, RegistryService.malformed(frame.reason));
        if (++conn.malformed >= this.limits.maxMalformedFrames) conn.socket.end();
        continue;
      }
      const now = this.clock();
      conn.lastActive = now;
      this.requestsAnswered++;
      // One frame budget until the connection is authenticated; then one per kind of request, like
      // the node's own budgets, so that lookups over budget never hold up the node's own calls.
      const budget = conn.nodeId === undefined ? `c:${conn.id}` : `c:${conn.id}:${budgetOf(frame.value)}`;
      if (!this.frames.take(budget, now)) {
        // Bound to the request's own id and nonce, like every other answer: the client checks both.
        const id = typeof frame.value.id === "number" && Number.isSafeInteger(frame.value.id) && frame.value.id >= 0 ? frame.value.id : null;
        const nonce = (id !== null && fromBase64(frame.value.nonce, NONCE_SIZE)) || new Uint8Array(0);
        this.respond(conn, { id: nonce.length > 0 ? id : null, nonce, events: [], body: { ok: false, error: { code: "rate_limited", message: "too many requests on this connection; slow down" } } });
        this.options.observer?.refused("frames");
        continue;
      }
      if (conn.pending >= MAX_PENDING_PER_CONNECTION) {
        const id = typeof frame.value.id === "number" && Number.isSafeInteger(frame.value.id) && frame.value.id >= 0 ? frame.value.id : null;
        const nonce = (id !== null && fromBase64(frame.value.nonce, NONCE_SIZE)) || new Uint8Array(0);
        this.respond(conn, { id: nonce.length > 0 ? id : null, nonce, events: [], body: { ok: false, error: { code: "rate_limited", message: "too many requests in flight on this connection; wait for answers" } } });
        continue;
      }
      // The store answers asynchronously: one connection's requests are handled one after the other, in order.
      conn.pending++;
      const message = frame.value;
      conn.queue = conn.queue.then(() => this.handle(conn, message, budget)).finally(() => conn.pending--);
    }
  }

  /** Handles one request of `conn` and sends its answer and events. */
  private async handle(conn: Connection, message: Record<string, unknown>, budget: string): Promise<void> {
    if (conn.socket.destroyed) return;
    {
      let outcome: Outcome;
      const started = performance.now();
      try {
        outcome = await this.service.handle(message, { sourceIp: conn.ip });
      } catch (e) {
        this.log.error("request failed", { error: String(e) });
        outcome = { ...RegistryService.malformed("internal error"), body: { ok: false, error: { code: "internal", message: "internal error" } } };
      }
      if (conn.socket.destroyed) {
        // The change is made whether or not its sender is still there to hear the answer.
        this.publish(outcome.events);
        return;
      }
      if (outcome.accepted && outcome.accepted.nodeId !== null) {
        // A node's valid request within its own budget: it does not count against the connection.
        // (A new key's register counts until it has made a node: keys cost nothing to make.)
        this.frames.refund(budget);
        this.authenticated(conn, outcome.accepted.nodeId);
      }
      if (outcome.note?.internal) this.log.error("request failed", outcome.note);
      else if (outcome.note) this.log.info(String(outcome.note.event ?? "request"), outcome.note);
      if (outcome.subscribe) {
        this.unsubscribe(conn);
        conn.subscription = { nodeId: outcome.subscribe.nodeId, nonce: outcome.subscribe.nonce, seq: 0 };
        let set = this.subscribers.get(outcome.subscribe.nodeId);
        if (!set) this.subscribers.set(outcome.subscribe.nodeId, (set = new Set()));
        set.add(conn);
      }
      this.respond(conn, outcome);
      // Handled and answered (signed, queued on the socket): what a request costs the registry.
      this.options.observer?.request(message.type, outcome.body, (performance.now() - started) / 1000);
      this.publish(outcome.events);
    }
  }

  /**
   * Pushes a request's events to the subscribed connections of their nodes
   * here. (The service sent them to the other registries sharing the store
   * in the transaction that made them.)
   */
  private publish(events: readonly PushEvent[]): void {
    for (const e of events) this.push(e.to, e.event);
  }

  private respond(conn: Connection, outcome: Outcome): void {
    // Serialised once: the canonical JSON the signature covers is also the frame's body (signedFrame).
    let canonical: string;
    try {
      canonical = canonicalJson({ type: "response", id: outcome.id, ...outcome.body });
    } catch (e) {
      // A result that is not canonical JSON (a bug): answer internal rather than take the process down.
      this.log.error("response not signable", { error: String(e) });
      canonical = canonicalJson({ type: "response", id: outcome.id, ok: false, error: { code: "internal", message: "internal error" } });
    }
    const sig = toBase64(this.options.signer.sign(responseSigningBytesOf(canonical, outcome.nonce)));
    let frame: Uint8Array;
    try {
      frame = signedFrame(canonical, sig);
    } catch (e) {
      // Larger than a frame (a bug): the same internal answer.
      this.log.error("response too large", { error: String(e) });
      const small = canonicalJson({ type: "response", id: outcome.id, ok: false, error: { code: "internal", message: "internal error" } });
      frame = signedFrame(small, toBase64(this.options.signer.sign(responseSigningBytesOf(small, outcome.nonce))));
    }
    this.sendFrame(conn, frame);
  }

  private push(nodeId: number, event: Record<string, unknown>): void {
    const set = this.subscribers.get(nodeId);
    if (!set) return;
    for (const conn of set) {
      const sub = conn.subscription!;
      const frame: Record<string, unknown> = { type: "event", node_id: nodeId, ...event, seq: ++sub.seq };
      frame.sig = toBase64(this.options.signer.sign(eventSigningBytes(frame, sub.nonce)));
      this.send(conn, frame);
    }
  }

  private send(conn: Connection, message: Record<string, unknown>): void {
    this.sendFrame(conn, encodeFrame(message));
  }

  private sendFrame(conn: Connection, frame: Uint8Array): void {
    if (conn.socket.destroyed || !conn.socket.writable) return;
    conn.socket.write(frame);
    if (conn.socket.writableLength > this.limits.maxQueuedBytes) {
      this.log.warn("closing a connection that does not read", { source_ip: conn.ip });
      conn.socket.destroy();
    }
  }
}
