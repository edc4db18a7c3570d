/**
 * The beacon: the rendezvous's UDP side. It tells a daemon the address its
 * datagrams arrive from (discover, register), coordinates hole punching
 * between two registered nodes, and relays tunnel frames between them when
 * no direct path exists.
 *
 *   discover        anyone -> signed discover_reply with the observed ip:port
 *   register        node -> challenge (a token bound to the source address), then
 *                   node -> register (signed by the node's key, with the token) -> signed register_ack
 *   punch_request   registered node -> a signed punch to each side, naming the other's registered address
 *   relay           registered node -> relay_deliver to the registered destination
 *   ping            registered node -> pong (same size, same nonce): "this beacon is alive", so a
 *                   daemon given several beacons notices a dead one within about two seconds
 *   mesh_*          peer beacon of the deployment (mesh.ts) -> where its nodes are registered; punches
 *                   and relayed frames for ours. Punching and relaying toward a node registered at a
 *                   peer go through that peer, under the same checks as toward one of ours.
 *
 * Security (docs/NAT.md): a registration binds a node id to one source
 * address and needs the node's signature over a token that only a receiver
 * at that address can have obtained, so nobody can take over a node's entry.
 * Everything else a node sends is accepted only from the address it
 * registered: the relay names the sender itself (never trusting a claimed
 * id), relays only between nodes the registry lets talk (visibility, or an
 * answer to a node that relayed to it), and meters each sender's bytes. Relayed
 * frames are end-to-end AEAD: the beacon can drop them, not read or forge them.
 * No answer is ever larger than the request that drew it, and unauthenticated
 * work is limited per source IP, so the beacon is useless as an amplifier.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import {
  appendSignature,
  BEACON_TOKEN_SIZE,
  BeaconType,
  decodeBeaconMessage,
  discoverReplySignedBytes,
  encodeChallenge,
  encodeDiscoverReply,
  encodeDiscoverReplyBody,
  encodeNotRegistered,
  encodePing,
  encodePunchBody,
  encodeRegisterAckBody,
  punchSignedBytes,
  RELAY_FRAME_MAX,
  RELAY_FRAME_MIN,
  RELAY_HEADER_SIZE,
  registerAckSignedBytes,
  registerSignedBytes,
  signedBodyOf,
  unmapIpv4,
  type PunchRequest,
  type Register,
} from "../protocol/beacon-message.ts";
import { MeshType } from "../protocol/beacon-mesh.ts";
import { TokenBuckets, type BucketConfig } from "../registry/limits.ts";
import { verifyEd25519, type Signer } from "../registry/signer.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { BeaconMesh, meshKeyOf, type RemoteRegistration } from "./mesh.ts";

/**
 * What the beacon needs from the registry: node keys and who may reach whom.
 * A registry on SQLite answers at once; one on PostgreSQL answers with promises.
 */
export interface BeaconDirectory {
  /** The Ed25519 key of an active node; undefined for an unknown or deregistered id. */
  nodeKey(node: number): Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /** The registry's visibility rule: may `from` address `to` (punch, relay)? */
  mayReach(from: number, to: number): boolean | Promise<boolean>;
}

export interface BeaconLimits {
  /** A registration not refreshed for this long is forgotten. */
  readonly registrationTtlMs: number;
  /** Relay budget of each sending node, bytes per second, and its largest burst. */
  readonly relayBytesPerSecond: number;
  readonly relayBurstBytes: number;
  /** Punch requests per node. */
  readonly punchesPerNode: BucketConfig;
  /** Unauthenticated work (discover, challenge, register) per source IP. */
  readonly perIp: BucketConfig;
  /** `not_registered` hints per source IP. */
  readonly hintsPerIp: BucketConfig;
  /** Pings answered per registered node (a daemon with several beacons sends about one a second). */
  readonly pingsPerNode: BucketConfig;
  readonly maxNodes: number;
  /** A register's timestamp must be within this of the beacon's clock. */
  readonly timestampWindowMs: number;
  /** Tokens are valid for the current and the previous epoch. */
  readonly tokenEpochMs: number;
  /** A node that relayed to another may be answered through the relay for this long. */
  readonly replyGrantMs: number;
  /** Bytes each peer beacon may hand us per second (mesh_deliver), and its largest burst. */
  readonly meshBytesPerSecond: number;
  readonly meshBurstBytes: number;
}

export const DEFAULT_BEACON_LIMITS: BeaconLimits = {
  registrationTtlMs: 60_000,
  relayBytesPerSecond: 4 * 1024 * 1024,
  relayBurstBytes: 4 * 1024 * 1024,
  punchesPerNode: { rate: 10, burst: 40 },
  perIp: { rate: 20, burst: 40 },
  hintsPerIp: { rate: 2, burst: 4 },
  pingsPerNode: { rate: 4, burst: 8 },
  maxNodes: 200_000,
  timestampWindowMs: 60_000,
  tokenEpochMs: 30_000,
  replyGrantMs: 10 * 60_000,
  meshBytesPerSecond: 64 * 1024 * 1024,
  meshBurstBytes: 16 * 1024 * 1024,
};

export interface BeaconServerOptions {
  readonly host: string;
  readonly port: number;
  readonly signer: Signer;
  /** Without a directory the beacon only answers discovers. */
  readonly directory?: BeaconDirectory;
  /** Discovers answered per source IP. Default 20/s, burst 40. */
  readonly perIp?: BucketConfig;
  readonly limits?: Partial<BeaconLimits>;
  readonly log?: Logger;
  /** Wall clock, unix ms. */
  readonly clock?: () => number;
  /**
   * The other beacons of this deployment (IP literal and port of their UDP sockets): they
   * share the rendezvous key, learn where each other's nodes are registered and punch and
   * relay across (mesh.ts). Empty: this beacon serves its own nodes only.
   */
  readonly peers?: readonly { host: string; port: number }[];
}

export interface BeaconStats {
  answered: number;
  dropped: number;
  rateLimited: number;
  challenges: number;
  registrations: number;
  badRegistrations: number;
  punches: number;
  punchesRefused: number;
  relayedFrames: number;
  relayedBytes: number;
  relayRateLimited: number;
  relayRefused: number;
  hints: number;
  pongs: number;
}

/**
 * A node's stream connection to the rendezvous (the WebSocket relay,
 * `ws-relay.ts`): beacon messages arrive whole, one per WebSocket message.
 * A node registers on it with the same signed `register` as over UDP, whose
 * token is this connection's own random challenge (a receiver elsewhere never
 * sees it); after that, relayed frames for the node go down this connection.
 */
export interface StreamLink {
  /** The connection's TCP source IP. */
  readonly ip: string;
  /** The challenge token of this connection: a register on it must carry it. */
  readonly token: Uint8Array;
  /** Queues one message; false when it was dropped (backpressure, closed). */
  send(message: Uint8Array): boolean;
  /** Ends the connection (another connection registered the same node). */
  close(): void;
  /** The node registered on this connection, once one is. */
  node: number | null;
  /** Set when the connection has closed (a registration answered later is then dropped). */
  closed?: boolean;
}

interface Registration {
  readonly ip: string;
  /** The address string to send to (as the socket reported it). */
  readonly sendAddress: string;
  readonly port: number;
  readonly source: string;
  expires: number;
}

interface NodeState {
  readonly node: number;
  reg: Registration | null;
  /** The node's stream connection (WebSocket relay), if it registered on one: preferred for delivery. */
  stream: StreamLink | null;
  /** Greatest register timestamp accepted (replays and reordered old ones are refused). */
  lastTimestamp: number;
  relayTokens: number;
  relayAt: number;
  /** Destination -> until when relaying to it is allowed (cached registry answer, or a reply grant). */
  readonly reach: Map<number, number>;
  /** Node -> until when this node may relay to it because that node contacted this one (relay or punch). */
  readonly replies: Map<number, number>;
}

/** How long a registry visibility answer is trusted. */
const REACH_CACHE_MS = 5_000;
/** Questions to an asynchronous directory under way at once; beyond, registrations and punches wait for a retry. */
const MAX_DIRECTORY_ASKS = 1024;
const NEGATIVE_REACH_MS = 1_000;

export class BeaconServer {
  readonly stats: BeaconStats = {
    answered: 0,
    dropped: 0,
    rateLimited: 0,
    challenges: 0,
    registrations: 0,
    badRegistrations: 0,
    punches: 0,
    punchesRefused: 0,
    relayedFrames: 0,
    relayedBytes: 0,
    relayRateLimited: 0,
    relayRefused: 0,
    hints: 0,
    pongs: 0,
  };
  private socket!: Bun.udp.Socket<"buffer">;
  private readonly buckets: TokenBuckets;
  private readonly hintBuckets: TokenBuckets;
  private readonly pingBuckets: TokenBuckets;
  private readonly punchBuckets: TokenBuckets;
  private readonly limits: BeaconLimits;
  private readonly clock: () => number;
  private readonly log: Logger;
  private readonly secret = randomBytes(32);
  private readonly nodes = new Map<number, NodeState>();
  private readonly bySource = new Map<string, NodeState>();
  private readonly denied = new Map<string, number>();
  /** Questions to an asynchronous directory (a registry on PostgreSQL) under way: in all, and per pair. */
  private directoryAsks = 0;
  private readonly reachAsks = new Map<string, Promise<boolean>>();
  private sweepTimer: ReturnType<typeof setInterval> | undefined;
  /** The other beacons of the deployment, when configured. */
  readonly mesh: BeaconMesh | null;

  private constructor(private readonly options: BeaconServerOptions) {
    this.limits = { ...DEFAULT_BEACON_LIMITS, ...(options.perIp ? { perIp: options.perIp } : {}), ...options.limits };
    this.buckets = new TokenBuckets(this.limits.perIp);
    this.hintBuckets = new TokenBuckets(this.limits.hintsPerIp);
    this.pingBuckets = new TokenBuckets(this.limits.pingsPerNode, this.limits.maxNodes);
    this.punchBuckets = new TokenBuckets(this.limits.punchesPerNode);
    this.clock = options.clock ?? Date.now;
    this.log = options.log ?? createLogger("beacon", { sink: () => {} });
    this.mesh = options.peers
      ? new BeaconMesh(meshKeyOf(options.signer), options.peers.map((p) => ({ host: unmapIpv4(p.host), port: p.port })), {
          bytesPerSecond: this.limits.meshBytesPerSecond,
          burstBytes: this.limits.meshBurstBytes,
          maxNodes: this.limits.maxNodes,
        })
      : null;
  }

  static async start(options: BeaconServerOptions): Promise<BeaconServer> {
    const beacon = new BeaconServer(options);
    beacon.socket = await Bun.udpSocket({
      hostname: options.host,
      port: options.port,
      socket: {
        data: (_socket, data, port, address) => beacon.receive(data, port, address),
        error: () => {
          // ICMP errors for a node that went away; the next send may throw (caught there).
        },
      },
    });
    beacon.sweepTimer = setInterval(() => beacon.sweep(), 10_000);
    beacon.sweepTimer.unref?.();
    return beacon;
  }

  get address(): { host: string; port: number } {
    return { host: this.socket.address.address, port: this.socket.port };
  }

  /** Nodes with a live registration. */
  get registered(): number {
    let n = 0;
    const now = this.clock();
    for (const s of this.nodes.values()) if (s.stream || (s.reg && s.reg.expires > now)) n++;
    return n;
  }

  /** The registered public endpoint of a node ("ip:port"), if any. */
  registrationOf(node: number): string | undefined {
    const reg = this.nodes.get(node)?.reg;
    return reg && reg.expires > this.clock() ? reg.source : undefined;
  }

  close(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.socket.close();
  }

  private receive(data: Buffer, port: number, address: string): void {
    // The relay is the hot path: parsed in place, no allocation but the source key.
    if (data[0] === BeaconType.Relay) return this.relay(data, port, address);
    if (data[0] === MeshType.Announce || data[0] === MeshType.Deliver) return this.meshReceive(data, port, address);
    const message = decodeBeaconMessage(data);
    if (!message.ok) {
      this.stats.dropped++;
      return;
    }
    const ip = unmapIpv4(address);
    const m = message.value;
    switch (m.type) {
      case "discover":
        return this.discover(m.nonce, ip, port, address);
      case "register":
        return this.register(m, data, ip, port, address);
      case "punch_request":
        return this.punchRequest(m, ip, port, address);
      case "ping":
        return this.ping(m.nonce, ip, port, address);
      default:
        this.stats.dropped++;
    }
  }

  private send(datagram: Uint8Array, port: number, address: string): boolean {
    try {
      this.socket.send(datagram, port, address);
      return true;
    } catch {
      // A pending ICMP error from an earlier datagram (a node or peer beacon that went away) fails
      // this send, whoever it is for: the error is consumed now, so try once more.
    }
    try {
      this.socket.send(datagram, port, address);
      return true;
    } catch (e) {
      this.stats.dropped++;
      this.log.debug("beacon send failed", { error: String(e), to: `${address}:${port}` });
      return false;
    }
  }

  private discover(nonce: Uint8Array, ip: string, port: number, address: string): void {
    if (!this.buckets.take(ip, this.clock())) {
      this.stats.rateLimited++;
      return;
    }
    try {
      const body = encodeDiscoverReplyBody({ nonce, ip, port });
      if (this.send(encodeDiscoverReply(body, this.options.signer.sign(discoverReplySignedBytes(body))), port, address)) this.stats.answered++;
    } catch (e) {
      this.stats.dropped++;
      this.log.warn("beacon reply failed", { error: String(e), source_ip: ip });
    }
  }

  // ---- registration ------------------------------------------------------------

  private token(node: number, ip: string, port: number, epoch: number): Uint8Array {
    const h = createHmac("sha256", this.secret);
    h.update(`pilot-beacon-token-v1\n${epoch}\n${node}\n${ip}\n${port}`);
    return new Uint8Array(h.digest().subarray(0, BEACON_TOKEN_SIZE));
  }

  private tokenValid(m: Register, ip: string, port: number, now: number): boolean {
    const epoch = Math.floor(now / this.limits.tokenEpochMs);
    for (const e of [epoch, epoch - 1]) {
      if (timingSafeEqual(this.token(m.node, ip, port, e), m.token)) return true;
    }
    return false;
  }

  private register(m: Register, data: Uint8Array, ip: string, port: number, address: string): void {
    const directory = this.options.directory;
    const now = this.clock();
    if (!directory) {
      this.stats.dropped++;
      return;
    }
    if (!this.buckets.take(ip, now)) {
      this.stats.rateLimited++;
      return;
    }
    if (!this.tokenValid(m, ip, port, now)) {
      // Prove you receive at this address: the next register must carry this token.
      const epoch = Math.floor(now / this.limits.tokenEpochMs);
      if (this.send(encodeChallenge(m.nonce, this.token(m.node, ip, port, epoch)), port, address)) this.stats.challenges++;
      return;
    }
    const refuse = (why: string) => {
      this.stats.badRegistrations++;
      this.log.debug("registration refused", { node: m.node, source: `${ip}:${port}`, reason: why });
    };
    if (Math.abs(m.timestamp - now) > this.limits.timestampWindowMs) return refuse("stale timestamp");
    this.withNodeKey(m.node, now, refuse, (key, at) => this.admit(m, data, ip, port, address, key, at));
  }

  /**
   * The key of `node` from the directory, given to `then` now or, from an
   * asynchronous directory (PostgreSQL), when it answers: such questions are
   * bounded (MAX_DIRECTORY_ASKS under way); unknown nodes are refused.
   */
  private withNodeKey(node: number, now: number, refuse: (why: string) => void, then: (key: Uint8Array, now: number) => void): void {
    if (this.directoryAsks >= MAX_DIRECTORY_ASKS) return refuse("registry busy");
    const found = this.options.directory!.nodeKey(node);
    if (found instanceof Promise) {
      this.directoryAsks++;
      found
        .then(
          (key) => (key ? then(key, this.clock()) : refuse("unknown node")),
          (e) => this.log.warn("node key lookup failed", { error: String(e) }),
        )
        .finally(() => this.directoryAsks--);
      return;
    }
    if (!found) return refuse("unknown node");
    then(found, now);
  }

  /** A registration with a valid token from a known node: checked against its key, then recorded. */
  private admit(m: Register, data: Uint8Array, ip: string, port: number, address: string, key: Uint8Array, now: number): void {
    const refuse = (why: string) => {
      this.stats.badRegistrations++;
      this.log.debug("registration refused", { node: m.node, source: `${ip}:${port}`, reason: why });
    };
    if (!verifyEd25519(key, registerSignedBytes(this.options.signer.publicKey, signedBodyOf(data)), m.signature)) return refuse("bad signature");
    let state = this.nodes.get(m.node);
    if (state && m.timestamp <= state.lastTimestamp) return refuse("replayed or reordered");
    state ??= this.newState(m.node, now);
    if (!state) return refuse("beacon full");
    state.lastTimestamp = m.timestamp;
    const source = `${ip}:${port}`;
    const previous = state.reg;
    if (previous && previous.source !== source) this.bySource.delete(previous.source);
    const squatter = this.bySource.get(source);
    if (squatter && squatter !== state) squatter.reg = null; // the address now belongs to whoever proved it last
    state.reg = { ip, sendAddress: address, port, source, expires: now + this.limits.registrationTtlMs };
    this.bySource.set(source, state);
    this.stats.registrations++;
    if (!previous || previous.source !== source) this.log.debug("node registered", { node: m.node, endpoint: source, moved: previous !== null });
    this.meshAnnounce(m.node, m.timestamp, ip, port, now);
    const body = encodeRegisterAckBody({ ip, port, node: m.node, ttlMs: this.limits.registrationTtlMs, nonce: m.nonce });
    this.send(appendSignature(body, this.options.signer.sign(registerAckSignedBytes(body))), port, address);
  }

  private newState(node: number, now: number): NodeState | undefined {
    if (this.nodes.size >= this.limits.maxNodes) this.sweep();
    if (this.nodes.size >= this.limits.maxNodes) return undefined;
    const state: NodeState = {
      node,
      reg: null,
      stream: null,
      lastTimestamp: 0,
      relayTokens: this.limits.relayBurstBytes,
      relayAt: now,
      reach: new Map(),
      replies: new Map(),
    };
    this.nodes.set(node, state);
    return state;
  }

  // ---- stream connections (the WebSocket relay) ------------------------------------

  /**
   * One message from a stream connection. Only `register` and `relay` are
   * served there: a node behind a UDP-blocking firewall cannot punch.
   */
  streamReceive(link: StreamLink, data: Uint8Array): void {
    const now = this.clock();
    if (data[0] === BeaconType.Relay) {
      const from = link.node !== null ? this.nodes.get(link.node) : undefined;
      if (!from || from.stream !== link) {
        this.stats.relayRefused++;
        return;
      }
      return this.forward(from, data, now);
    }
    const message = decodeBeaconMessage(data);
    if (!message.ok || message.value.type !== "register") {
      this.stats.dropped++;
      return;
    }
    this.registerStream(link, message.value, data, now);
  }

  /** The stream connection closed: relayed frames for its node go over UDP again (if registered there). */
  streamClosed(link: StreamLink): void {
    if (link.node === null) return;
    const state = this.nodes.get(link.node);
    if (state?.stream === link) state.stream = null;
    link.node = null;
  }

  private registerStream(link: StreamLink, m: Register, data: Uint8Array, now: number): void {
    const directory = this.options.directory;
    if (!directory) {
      this.stats.dropped++;
      return;
    }
    if (!this.buckets.take(link.ip, now)) {
      this.stats.rateLimited++;
      return;
    }
    if (m.token.length !== link.token.length || !timingSafeEqual(m.token, link.token)) {
      // The same proof as over UDP: sign a token that only this connection has seen.
      if (link.send(encodeChallenge(m.nonce, link.token))) this.stats.challenges++;
      return;
    }
    const refuse = (why: string) => {
      this.stats.badRegistrations++;
      this.log.debug("stream registration refused", { node: m.node, source_ip: link.ip, reason: why });
    };
    // The token is this connection's alone and never leaves it, so a replay would have to come
    // through the connection itself; the timestamp window bounds how long a signature is good.
    if (Math.abs(m.timestamp - now) > this.limits.timestampWindowMs) return refuse("stale timestamp");
    if (link.node !== null && link.node !== m.node) return refuse("another node already registered on this connection");
    this.withNodeKey(m.node, now, refuse, (key, at) => this.admitStream(link, m, data, key, at));
  }

  /** A stream registration from a known node: checked against its key, then recorded. */
  private admitStream(link: StreamLink, m: Register, data: Uint8Array, key: Uint8Array, now: number): void {
    const refuse = (why: string) => {
      this.stats.badRegistrations++;
      this.log.debug("stream registration refused", { node: m.node, source_ip: link.ip, reason: why });
    };
    if (link.closed) return;
    if (link.node !== null && link.node !== m.node) return refuse("another node already registered on this connection");
    if (!verifyEd25519(key, registerSignedBytes(this.options.signer.publicKey, signedBodyOf(data)), m.signature)) return refuse("bad signature");
    const state = this.nodes.get(m.node) ?? this.newState(m.node, now);
    if (!state) return refuse("beacon full");
    const previous = state.stream;
    if (previous && previous !== link) {
      previous.node = null;
      previous.close();
    }
    if (previous !== link) this.log.debug("node registered on a stream", { node: m.node, source_ip: link.ip });
    state.stream = link;
    link.node = m.node;
    state.lastTimestamp = Math.max(state.lastTimestamp, m.timestamp);
    this.meshAnnounce(m.node, m.timestamp, "", 0, now);
    this.stats.registrations++;
    const body = encodeRegisterAckBody({ ip: link.ip, port: 0, node: m.node, ttlMs: this.limits.registrationTtlMs, nonce: m.nonce });
    link.send(appendSignature(body, this.options.signer.sign(registerAckSignedBytes(body))));
  }

  /** The node registered at this source, if its registration is live. */
  private sender(source: string, now: number): NodeState | undefined {
    const s = this.bySource.get(source);
    return s && s.reg && s.reg.expires > now ? s : undefined;
  }

  /**
   * A registered node asks whether we are alive: the pong is exactly as large as the ping and goes
   * only to the address the node proved it receives at, within a per-node rate; anyone else gets at
   * most a (smaller, rate-limited) `not_registered` hint, which makes a node that lost its
   * registration here register again.
   */
  private ping(nonce: Uint8Array, ip: string, port: number, address: string): void {
    const now = this.clock();
    const from = this.sender(`${ip}:${port}`, now);
    if (!from) return this.hint(ip, port, address, now);
    if (!this.pingBuckets.take(String(from.node), now)) {
      this.stats.rateLimited++;
      return;
    }
    if (this.send(encodePing("pong", nonce), port, address)) this.stats.pongs++;
  }

  private hint(ip: string, port: number, address: string, now: number): void {
    if (!this.hintBuckets.take(ip, now)) return;
    if (this.send(encodeNotRegistered(), port, address)) this.stats.hints++;
  }

  /** A promise when the directory answers asynchronously (the answer is cached for the next ask). */
  private mayReach(from: NodeState, to: number, now: number): boolean | Promise<boolean> {
    const until = from.reach.get(to);
    if (until !== undefined && until > now) return true;
    const deniedKey = `${from.node}>${to}`;
    const deniedUntil = this.denied.get(deniedKey);
    if (deniedUntil !== undefined && deniedUntil > now) return false;
    const grant = from.replies.get(to);
    let allowed = grant !== undefined && grant > now;
    if (!allowed) {
      try {
        // One question per pair at a time, and a bounded number in all: a flood of relayed frames
        // for a pair not yet cached must not become a flood of registry queries.
        const asking = this.reachAsks.get(deniedKey);
        if (asking) return asking;
        if (this.directoryAsks >= MAX_DIRECTORY_ASKS) return false;
        const answer = this.options.directory?.mayReach(from.node, to) ?? false;
        if (answer instanceof Promise) {
          this.directoryAsks++;
          const settled = answer
            .then(
              (ok) => this.rememberReach(from, to, deniedKey, ok, this.clock()),
              (e) => {
                this.log.warn("visibility check failed", { error: String(e) });
                return false;
              },
            )
            .finally(() => {
              this.directoryAsks--;
              this.reachAsks.delete(deniedKey);
            });
          this.reachAsks.set(deniedKey, settled);
          return settled;
        }
        allowed = answer;
      } catch (e) {
        this.log.warn("visibility check failed", { error: String(e) });
        allowed = false;
      }
    }
    return this.rememberReach(from, to, deniedKey, allowed, now);
  }

  private rememberReach(from: NodeState, to: number, deniedKey: string, allowed: boolean, now: number): boolean {
    if (allowed) {
      if (from.reach.size > 4096) from.reach.clear();
      from.reach.set(to, now + REACH_CACHE_MS);
    } else {
      if (this.denied.size > 100_000) this.denied.clear();
      this.denied.set(deniedKey, now + NEGATIVE_REACH_MS);
    }
    return allowed;
  }

  // ---- punching ------------------------------------------------------------------

  private punchRequest(m: PunchRequest, ip: string, port: number, address: string): void {
    const now = this.clock();
    const from = this.sender(`${ip}:${port}`, now);
    if (!from || from.node !== m.node) {
      this.stats.punchesRefused++;
      return this.hint(ip, port, address, now);
    }
    const to = this.nodes.get(m.target);
    const refuse = (why: string) => {
      this.stats.punchesRefused++;
      this.log.debug("punch refused", { node: m.node, target: m.target, reason: why });
    };
    const remote = !to || !to.reg || to.reg.expires <= now ? this.mesh?.locate(m.target, now) : undefined;
    if (remote) {
      if (remote.port === 0) return refuse("target on a stream connection");
      if (!this.punchBuckets.take(String(m.node), now)) return refuse("rate limited");
      const may = this.mayReach(from, m.target, now);
      if (may instanceof Promise) {
        may.then((ok) => (ok ? this.punchAcross(m, from, remote, this.clock()) : refuse("target not visible to the requester")));
        return;
      }
      if (!may) return refuse("target not visible to the requester");
      return this.punchAcross(m, from, remote, now);
    }
    if (!to || !to.reg || to.reg.expires <= now || to === from) return refuse("target not registered");
    if (!this.punchBuckets.take(String(m.node), now)) return refuse("rate limited");
    const may = this.mayReach(from, m.target, now);
    if (may instanceof Promise) {
      may.then((ok) => (ok ? this.punch(m, from, to, this.clock()) : refuse("target not visible to the requester")));
      return;
    }
    if (!may) return refuse("target not visible to the requester");
    this.punch(m, from, to, now);
  }

  private punch(m: PunchRequest, from: NodeState, to: NodeState, now: number): void {
    if (!to.reg || !from.reg) return;
    // Each side learns where the other's datagrams come from, signed, and punches toward it.
    for (const [self, other] of [
      [to, from],
      [from, to],
    ] as const) {
      const reg = other.reg!;
      const body = encodePunchBody({ ip: reg.ip, port: reg.port, to: self.node, peer: other.node, timestamp: now, nonce: m.nonce });
      this.send(appendSignature(body, this.options.signer.sign(punchSignedBytes(body))), self.reg!.port, self.reg!.sendAddress);
    }
    // The target may answer the requester through the relay from now on.
    this.grantReply(to, from.node, now);
    this.stats.punches++;
  }

  /** `node` may relay to `to` for a while: `to` contacted it (refreshed at most once a minute). */
  private grantReply(node: NodeState, to: number, now: number): void {
    const until = node.replies.get(to);
    if (until !== undefined && until > now + this.limits.replyGrantMs - 60_000) return;
    if (node.replies.size > 4096) node.replies.clear();
    node.replies.set(to, now + this.limits.replyGrantMs);
  }

  // ---- relay ----------------------------------------------------------------------

  private relay(data: Buffer, port: number, address: string): void {
    const now = this.clock();
    const frame = data.length - RELAY_HEADER_SIZE;
    if (frame < RELAY_FRAME_MIN || frame > RELAY_FRAME_MAX || data[1] !== 0 || data[2] !== 0 || data[3] !== 0) {
      this.stats.dropped++;
      return;
    }
    const ip = unmapIpv4(address);
    const from = this.sender(`${ip}:${port}`, now);
    if (!from) {
      this.stats.relayRefused++;
      return this.hint(ip, port, address, now);
    }
    this.forward(from, data, now);
  }

  /** A relay message from a registered node (over UDP or a stream): to its destination, however that one is connected. */
  private forward(from: NodeState, data: Uint8Array, now: number): void {
    const frame = data.length - RELAY_HEADER_SIZE;
    if (frame < RELAY_FRAME_MIN || frame > RELAY_FRAME_MAX || data[1] !== 0 || data[2] !== 0 || data[3] !== 0) {
      this.stats.dropped++;
      return;
    }
    const type = data[RELAY_HEADER_SIZE];
    if (type !== 0x01 && type !== 0x02 && type !== 0x04) {
      this.stats.relayRefused++;
      return;
    }
    const dest = ((data[4]! << 24) | (data[5]! << 16) | (data[6]! << 8) | data[7]!) >>> 0;
    const to = this.nodes.get(dest);
    const reg = to?.reg;
    const udpLive = reg !== null && reg !== undefined && reg.expires > now;
    if (this.mesh && (!to || (!udpLive && !to.stream))) return this.forwardAcross(from, dest, data, frame, now);
    // An asynchronous directory's first answer comes too late for this frame (it is dropped; the
    // answer is cached for the next one, and the tunnel's handshake is resent).
    if (!to || (!udpLive && !to.stream) || to === from || this.mayReach(from, dest, now) !== true) {
      this.stats.relayRefused++;
      return;
    }
    // Per-sender byte budget.
    const { relayBytesPerSecond: rate, relayBurstBytes: burst } = this.limits;
    if (!this.takeRelayBudget(from, frame, now)) return;
    // The destination may answer through the relay.
    this.grantReply(to, from.node, now);
    // Rewrite the header in place: relay_deliver naming the sender the beacon knows, not one it was told.
    data[0] = BeaconType.RelayDeliver;
    data[4] = from.node >>> 24;
    data[5] = (from.node >>> 16) & 0xff;
    data[6] = (from.node >>> 8) & 0xff;
    data[7] = from.node & 0xff;
    // A node on a stream chose it (its UDP does not work, or did not): deliver there first.
    if (to.stream ? to.stream.send(data) : this.send(data, reg!.port, reg!.sendAddress)) {
      this.stats.relayedFrames++;
      this.stats.relayedBytes += frame;
    }
  }

  /** Per-sender relay byte budget: false (and counted) when the frame exceeds it. */
  private takeRelayBudget(from: NodeState, frame: number, now: number): boolean {
    const { relayBytesPerSecond: rate, relayBurstBytes: burst } = this.limits;
    from.relayTokens = Math.min(burst, from.relayTokens + (Math.max(0, now - from.relayAt) / 1000) * rate);
    from.relayAt = now;
    if (from.relayTokens < frame) {
      this.stats.relayRateLimited++;
      return false;
    }
    from.relayTokens -= frame;
    return true;
  }

  // ---- other beacons of the deployment (mesh.ts) -------------------------------------

  /** Tells the peer beacons that `node` is registered here now. */
  private meshAnnounce(node: number, registeredAt: number, ip: string, port: number, now: number): void {
    if (!this.mesh) return;
    const announce = this.mesh.announce({ node, registeredAt, ip, port, ttlMs: this.limits.registrationTtlMs }, now);
    if (announce) for (const peer of this.mesh.peers) this.send(announce, peer.port, peer.host);
  }

  /** A datagram from a peer beacon: an announce, or a datagram for one of our nodes. */
  private meshReceive(data: Buffer, port: number, address: string): void {
    const now = this.clock();
    const peer = this.mesh?.peerAt(unmapIpv4(address), port);
    if (!this.mesh || !peer) {
      this.stats.dropped++;
      return;
    }
    if (data[0] === MeshType.Announce) {
      const reg = this.mesh.receiveAnnounce(peer, data, now);
      // The node registered there after it did here: it moved, and what we hold is stale.
      const local = reg ? this.nodes.get(reg.node) : undefined;
      if (reg && local?.reg && local.lastTimestamp < reg.registeredAt) {
        this.bySource.delete(local.reg.source);
        local.reg = null;
      }
      return;
    }
    const delivery = this.mesh.unwrap(peer, data, now);
    if (!delivery) return;
    const to = this.nodes.get(delivery.dest);
    const reg = to?.reg && to.reg.expires > now ? to.reg : null;
    const inner = delivery.inner;
    if (!to || (!reg && !to.stream)) {
      this.stats.relayRefused++;
      return;
    }
    if (inner[0] === BeaconType.RelayDeliver) {
      const frame = inner.length - RELAY_HEADER_SIZE;
      const type = inner[RELAY_HEADER_SIZE];
      if (frame < RELAY_FRAME_MIN || frame > RELAY_FRAME_MAX || (type !== 0x01 && type !== 0x02 && type !== 0x04) || readNode(inner, 4) === to.node) return void this.stats.dropped++;
      // The destination may answer its sender through the relay, as for a local relay.
      this.grantReply(to, readNode(inner, 4), now);
      if (to.stream ? to.stream.send(inner) : this.send(inner, reg!.port, reg!.sendAddress)) {
        this.stats.relayedFrames++;
        this.stats.relayedBytes += frame;
      }
      return;
    }
    const punch = decodeBeaconMessage(inner);
    if (!punch.ok || punch.value.type !== "punch" || punch.value.to !== to.node || !reg) return void this.stats.dropped++;
    this.grantReply(to, punch.value.peer, now);
    this.send(inner, reg.port, reg.sendAddress);
  }

  /** A relay for a node registered at another beacon: checked here like a local relay, then handed to that beacon. */
  private forwardAcross(from: NodeState, dest: number, data: Uint8Array, frame: number, now: number): void {
    const remote = this.mesh!.locate(dest, now);
    if (!remote || this.mayReach(from, dest, now) !== true) {
      this.stats.relayRefused++;
      return;
    }
    if (!this.takeRelayBudget(from, frame, now)) return;
    data[0] = BeaconType.RelayDeliver;
    data[4] = from.node >>> 24;
    data[5] = (from.node >>> 16) & 0xff;
    data[6] = (from.node >>> 8) & 0xff;
    data[7] = from.node & 0xff;
    if (this.send(this.mesh!.wrap(dest, data, now), remote.peer.port, remote.peer.host)) {
      this.stats.relayedFrames++;
      this.stats.relayedBytes += frame;
    }
  }

  /** Punching between our node and one registered at another beacon: ours directly, theirs through its beacon. */
  private punchAcross(m: PunchRequest, from: NodeState, remote: RemoteRegistration, now: number): void {
    if (!from.reg) return;
    const toFrom = encodePunchBody({ ip: remote.ip, port: remote.port, to: from.node, peer: remote.node, timestamp: now, nonce: m.nonce });
    this.send(appendSignature(toFrom, this.options.signer.sign(punchSignedBytes(toFrom))), from.reg.port, from.reg.sendAddress);
    const toRemote = encodePunchBody({ ip: from.reg.ip, port: from.reg.port, to: remote.node, peer: from.node, timestamp: now, nonce: m.nonce });
    const signed = appendSignature(toRemote, this.options.signer.sign(punchSignedBytes(toRemote)));
    this.send(this.mesh!.wrap(remote.node, signed, now), remote.peer.port, remote.peer.host);
    this.stats.punches++;
  }

  /** Nodes registered now (each keeps one registration). */
  get registeredCount(): number {
    return this.bySource.size;
  }

  /** Forgets expired registrations and stale per-node state. */
  private sweep(): void {
    const now = this.clock();
    for (const [node, s] of this.nodes) {
      if (s.reg && s.reg.expires <= now) {
        this.bySource.delete(s.reg.source);
        s.reg = null;
      }
      // Keep the replay guard for a timestamp window after the registration ended.
      if (!s.reg && !s.stream && now - s.lastTimestamp > this.limits.timestampWindowMs * 2) this.nodes.delete(node);
    }
    for (const [k, until] of this.denied) if (until <= now) this.denied.delete(k);
    this.mesh?.sweep(now);
  }
}

function readNode(d: Uint8Array, at: number): number {
  return ((d[at]! << 24) | (d[at + 1]! << 16) | (d[at + 2]! << 8) | d[at + 3]!) >>> 0;
}
