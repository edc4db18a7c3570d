/**
 * The daemon's data plane: one UDP socket, the tunnel router, the port table
 * and every stream engine, driven by one event loop and one timer.
 *
 * A turn: UDP datagrams and application calls feed the router and the
 * engines (which only record what they want to do); at the end of the turn
 * (`setImmediate`) every dirty stream is pumped, its segments are sealed by
 * the router, and everything the router produced leaves in one `sendMany`
 * batch. Then the single timer is re-armed for the earliest deadline.
 *
 * Admission (trust) is enforced here, on every byte: the router admits a
 * handshake from a node only if `policy.admitsSession(node)`; an inbound SYN
 * or datagram is accepted only if `policy.acceptsInbound(node)`; and
 * `dropPeer` resets every stream with a node and forgets its sessions at once.
 *
 * Paths (`paths.ts`): a peer's frames go to an address, or through the
 * beacon's relay ("relay:<node>" endpoints, wrapped here); path probes are
 * pings sealed to one candidate endpoint, answered along the way they came.
 * Frames relayed by the beacon are accepted only if they authenticate as the
 * node the beacon names.
 *
 * Strangers (public nodes): handshake work is budgeted by the router
 * (tunnel/handshake-guard.ts: cookies under load, per-source limits before
 * any DH); the registry lookups their handshakes cause have a budget of their
 * own (introductions.ts); untrusted peers without streams are forgotten when
 * idle and beyond a cap (`peerLimits`), with everything kept about them here.
 */
import { randomBytes } from "node:crypto";
import type { Identity } from "../crypto/identity.ts";
import { formatAddress, type Address } from "../protocol/address.ts";
import { decodePacket, encodePacket, Flag, packet, Protocol, type Packet } from "../protocol/packet.ts";
import { EPHEMERAL_MAX, EPHEMERAL_MIN, isValidPort, WellKnownPort } from "../protocol/ports.ts";
import { MAX_DATAGRAM_PAYLOAD, streamMssForFrame } from "../protocol/limits.ts";
import { StreamConnection } from "../transport/connection.ts";
import type { StreamConfig } from "../transport/config.ts";
import { ResetReason, resetFor, toPacket, type Segment } from "../transport/segment.ts";
import { TunnelRouter, type UnknownInitiator } from "../tunnel/router.ts";
import type { HandshakeLimits } from "../tunnel/handshake-guard.ts";
import { introductionKey, Introductions, TRUSTED_INTRODUCTION_LIMITS, type IntroductionLimits } from "./introductions.ts";
import type { PeerEvent, PeerPathMtuOptions } from "../tunnel/peer.ts";
import { pathMtuCandidates } from "./path-mtu-sizes.ts";
import type { BeaconClient } from "../beacon/client.ts";
import type { RendezvousLinks } from "./ws-relay-path.ts";
import { BeaconType } from "../protocol/beacon-message.ts";
import { BASE_DATA_FRAME, TunnelMessage } from "../protocol/tunnel-frame.ts";
import { addressOf, nodeOf } from "../protocol/address.ts";
import { isRelayEndpoint, PathManager, relayEndpoint, type PathTimers } from "./paths.ts";
import type { Logger } from "../util/log.ts";
import { DeadlineQueue } from "./deadline-queue.ts";
import { NodeError, type DatagramMessage, type PortBinding, type StreamHandle } from "./local-node.ts";
import { DEFAULT_PORT_LIMITS, PortTable, type PortLimits } from "./port-table.ts";
import { TokenBucket } from "../util/token-bucket.ts";
import { BufferBudget, DEFAULT_BUFFER_LIMITS, type BufferLimits } from "./buffer-budget.ts";
import { DaemonStream, type StreamHost } from "./stream.ts";
import { offlineCheckDelay, offlineDialError, PresenceCheck, type PeerPresence } from "./dial-watch.ts";

export interface PeerInfo {
  readonly identityKey: Uint8Array;
  /** The best guess at a direct endpoint (the first candidate). */
  readonly endpoint: string | null;
  /** Direct endpoints to try, best first (the registry's `candidates`); default [endpoint]. */
  readonly candidates?: readonly string[];
  /** The addresses the node reports as its own (a path to one of them is not through a NAT). */
  readonly hostEndpoints?: readonly string[];
}

export interface AdmissionPolicy {
  /** May this node hold a tunnel session with us (answer its handshake)? */
  admitsSession(node: Address): boolean;
  /** May this node open streams to our ports and send us datagrams? */
  acceptsInbound(node: Address): boolean;
  /** Is this node trusted (not merely allowed because we are public)? Raises its SYN budget. */
  trusts?(node: Address): boolean;
}

export interface DataPlaneOptions {
  readonly address: Address;
  readonly identity: Identity;
  /** `dontFragment`: path MTU probes and frames above the base size (IP_PMTUDISC_PROBE for this send). */
  readonly send: (frame: Uint8Array, host: string, port: number, dontFragment?: boolean) => void;
  /** Called when a batch of frames has been handed to `send` (the socket flushes its batch). */
  readonly flush?: () => void;
  readonly policy: AdmissionPolicy;
  /**
   * Finds a node's pinned identity key and endpoint (registry); throws NodeError.
   * `outbound`: we are about to contact it (rather than answer its handshake).
   */
  readonly lookupPeer: (node: Address, outbound: boolean) => Promise<PeerInfo>;
  /** Whether the registry counts a node online: lets a dial to an offline peer fail fast (dial-watch.ts). */
  readonly peerPresence?: (node: Address) => Promise<PeerPresence>;
  readonly onBeacon?: (datagram: Uint8Array, host: string, port: number) => void;
  readonly log: Logger;
  readonly clock?: () => number;
  readonly random?: (n: number) => Uint8Array;
  readonly streamConfig?: Partial<StreamConfig>;
  readonly limits?: PortLimits;
  /** Stream buffer memory: per peer, for strangers, in total (buffer-budget.ts). */
  readonly bufferLimits?: BufferLimits;
  /**
   * SYNs accepted per second (and the burst saved up) from one trusted node; from one
   * untrusted node (a public node's strangers); and from all untrusted nodes together.
   */
  readonly synRateTrusted?: number;
  readonly synRatePerNode?: number;
  readonly synRateTotal?: number;
  /** How long an inbound connection may stay half-open (SYN received, no final ACK). */
  readonly halfOpenTimeout?: number;
  readonly persistentKeepalive?: number;
  /** The beacon (registration, punching, relay); none: direct paths only. */
  readonly rendezvous?: BeaconClient | RendezvousLinks | null;
  /** Is "ip:port" one of this node's own addresses (the beacon then sees us without a NAT)? */
  readonly isLocalEndpoint?: (endpoint: string) => boolean;
  readonly pathTimers?: Partial<PathTimers>;
  /** Budgets for strangers' handshakes (tunnel/handshake-guard.ts). */
  readonly handshakeLimits?: Partial<HandshakeLimits>;
  /** Budgets for the registry lookups strangers' handshakes cause (introductions.ts). */
  readonly introductionLimits?: Partial<IntroductionLimits>;
  readonly peerLimits?: Partial<PeerLimits>;
  /** Path MTU discovery on direct paths (default on; false: every frame at the base size, as PILOT_PMTU=0). */
  readonly pathMtu?: boolean | Omit<PeerPathMtuOptions<string>, "candidates">;
  /** Every tunnel event of a peer (established, handshake_failed, ...), after the paths saw it: peer presence listens here. */
  readonly onPeerEvent?: (node: Address, event: PeerEvent<string>) => void;
}

/** Untrusted peers with no open stream are forgotten when idle, and the least recently active beyond a cap. */
export interface PeerLimits {
  /** Idle this long (ms; nothing sent, received or handshaken): forgotten. Default 180 s (its sessions have expired). */
  readonly idleAfter: number;
  /** At most this many untrusted peers; a new stranger beyond it pushes out the least recently active idle one, or is refused. */
  readonly maxUntrusted: number;
}

export const DEFAULT_PEER_LIMITS: PeerLimits = { idleAfter: 180_000, maxUntrusted: 1024 };

interface Listener {
  readonly port: number;
  readonly onAccept: (stream: StreamHandle) => void;
}

interface DatagramBinding {
  readonly port: number;
  readonly onDatagram: (message: DatagramMessage) => void;
}

interface PendingPing {
  readonly resolve: (rttMs: number) => void;
  readonly sentAt: number;
}

export interface DataPlaneCounters {
  packetsIn: number;
  packetsOut: number;
  badPackets: number;
  wrongDestination: number;
  notTrusted: number;
  synRateLimited: number;
  connectionLimit: number;
  /** Inbound connections refused by a per-peer limit (established + half-open, or half-open alone). */
  peerConnectionLimit: number;
  /** Buffer space given back by idle or over-budget streams (bytes). */
  bufferBytesTrimmed: number;
  resetsSent: number;
  datagramsIn: number;
  datagramsDropped: number;
  datagramsOut: number;
  /** Raw punch probes from peers opening their NAT toward us (ignored otherwise). */
  punchProbesIn: number;
  /** Beacon-range datagrams from anywhere but the beacon (dropped). */
  foreignBeacon: number;
  /** Frames for a relayed peer dropped because we are not registered with the beacon. */
  relayUnavailable: number;
  /** Packets to our own address dropped because the loopback queue was full (streams retransmit). */
  loopbackDropped: number;
  /** Strangers' handshakes not answered because the untrusted peer table was full of active peers. */
  peerLimit: number;
}

export class DataPlane implements StreamHost {
  readonly address: Address;
  readonly router: TunnelRouter<string>;
  readonly ports: PortTable<Listener, DatagramBinding, DaemonStream>;
  readonly counters: DataPlaneCounters = {
    packetsIn: 0,
    packetsOut: 0,
    badPackets: 0,
    wrongDestination: 0,
    notTrusted: 0,
    synRateLimited: 0,
    connectionLimit: 0,
    peerConnectionLimit: 0,
    bufferBytesTrimmed: 0,
    resetsSent: 0,
    datagramsIn: 0,
    datagramsDropped: 0,
    datagramsOut: 0,
    punchProbesIn: 0,
    foreignBeacon: 0,
    relayUnavailable: 0,
    loopbackDropped: 0,
    peerLimit: 0,
  };
  readonly introductions: Introductions;
  /** Told when a stream has closed, maybe more than once per stream (metrics keep finished streams' totals). */
  onStreamClosed: ((s: DaemonStream) => void) | null = null;
  /** Trusted nodes' introductions: a budget of their own, per node (a stranger can claim a trusted id). */
  readonly trustedIntroductions = new Introductions(TRUSTED_INTRODUCTION_LIMITS);
  readonly peerLimits: PeerLimits;
  readonly paths: PathManager;
  private readonly clock: () => number;
  private readonly random: (n: number) => Uint8Array;
  private readonly log: Logger;
  private readonly deadlines = new DeadlineQueue<DaemonStream>();
  private readonly dirty = new Set<DaemonStream>();
  private readonly outbound = new Set<Address>();
  private readonly peerLookups = new Map<Address, Promise<void>>();
  /** When each peer's endpoint was last re-resolved (rate limit for `refreshPeer`). */
  private readonly refreshedAt = new Map<Address, number>();
  private readonly synBuckets = new Map<Address, { bucket: TokenBucket; trusted: boolean }>();
  /** SYNs from untrusted nodes, together. */
  private readonly synStrangers: TokenBucket;
  /** Stream buffer memory, per peer and in total. */
  readonly buffers: BufferBudget;
  /** Next sweep of idle streams' buffers. */
  private housekeepingAt = Infinity;
  /** Each stream's progress (bytes acknowledged + read) at the last sweep. */
  private readonly progressAtSweep = new WeakMap<DaemonStream, number>();
  private readonly pings = new Map<string, PendingPing>();
  private readonly presence: PresenceCheck | null;
  private nextStreamId = 1;
  private turnScheduled = false;
  private evictionAt = Infinity;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerAt = Infinity;
  private closed = false;
  /** Where the datagram being processed came from ("ip:port" or "relay:<node>"): pongs go back that way. */
  private currentSource: string | null = null;
  /** Packets to our own address (loopback to self), handed back to receivePacket at the end of the turn. */
  private readonly loopback: Uint8Array[] = [];

  constructor(private readonly options: DataPlaneOptions) {
    this.address = options.address;
    this.clock = options.clock ?? (() => performance.now());
    this.random = options.random ?? ((n) => new Uint8Array(randomBytes(n)));
    this.log = options.log;
    this.ports = new PortTable(options.limits ?? DEFAULT_PORT_LIMITS);
    this.presence = options.peerPresence ? new PresenceCheck(options.peerPresence, this.clock) : null;
    this.synStrangers = new TokenBucket(options.synRateTotal ?? 500, options.synRateTotal ?? 500, this.clock());
    this.buffers = new BufferBudget(options.bufferLimits ?? DEFAULT_BUFFER_LIMITS);
    this.router = new TunnelRouter<string>({
      localAddress: options.address,
      identity: options.identity,
      admit: (node) => (this.outbound.has(node) || options.policy.admitsSession(node) ? "accept" : "reject"),
      persistentKeepalive: options.persistentKeepalive,
      isRelay: isRelayEndpoint,
      pathMtu:
        options.pathMtu === false
          ? null
          : { ...(typeof options.pathMtu === "object" ? options.pathMtu : {}), candidates: pathMtuCandidates },
      handshakeLimits: options.handshakeLimits,
      preferred: (node) => options.policy.trusts?.(node) ?? false,
    });
    this.introductions = new Introductions(options.introductionLimits);
    this.peerLimits = { ...DEFAULT_PEER_LIMITS, ...options.peerLimits };
    const rendezvous = options.rendezvous ?? null;
    this.paths = new PathManager({
      localNode: nodeOf(options.address),
      link: rendezvous,
      peer: (node) => this.router.peer(node),
      sendRaw: (datagram, endpoint) => this.sendRaw(datagram, endpoint),
      probe: (node, endpoint, id, now) => this.sendProbe(node, endpoint, id, now),
      isLocalEndpoint: options.isLocalEndpoint,
      refresh: (node) => this.refreshPeer(node),
      log: options.log,
      timers: options.pathTimers,
    });
    if (rendezvous) {
      rendezvous.events = {
        registered: (_observed, changed) =>
          this.afterPathEvent(() => {
            const now = this.clock();
            this.paths.onLinkChange(now, changed);
            // Registered again after an outage (or from a new address): relayed frames flow again.
            if (changed) this.pathRestored(this.ports.allConnections(), now);
          }),
        lost: () => this.afterPathEvent(() => this.paths.onLinkChange(this.clock(), false)),
        punch: (peer, endpoint, requested) => {
          const node = addressOf(0, peer);
          // Punch toward a node only if we asked, already talk to it, or would accept it anyway.
          const admitted = requested || this.router.peer(node) !== undefined || this.outbound.has(node) || options.policy.admitsSession(node);
          this.afterPathEvent(() => this.paths.onPunch(peer, endpoint, admitted, this.clock()));
        },
        relayed: (source, frame) => this.receiveRelayed(source, frame),
      };
    }
  }

  private afterPathEvent(fn: () => void): void {
    if (this.closed) return;
    fn();
    this.scheduleTurn();
  }

  // ---- inbound ------------------------------------------------------------

  /** Every datagram from the UDP socket. */
  receiveDatagram(data: Uint8Array, host: string, port: number): void {
    if (this.closed) return;
    const now = this.clock();
    const source = endpointOf(host, port);
    this.currentSource = source;
    const verdict = this.router.receive(data, source, now);
    if (verdict === "beacon") this.receiveBeacon(data, host, port);
    this.processRouterOutput(now);
    this.currentSource = null;
    this.scheduleTurn();
  }

  private receiveBeacon(data: Uint8Array, host: string, port: number): void {
    const rendezvous = this.options.rendezvous;
    if (rendezvous && rendezvous.receive(data, host, port) !== "foreign") return;
    if (data[0] === BeaconType.PunchProbe) this.counters.punchProbesIn++;
    else if (rendezvous) this.counters.foreignBeacon++;
    this.options.onBeacon?.(data, host, port);
  }

  /** A tunnel frame the beacon relayed from node `source`: accepted only if it authenticates as that node. */
  private receiveRelayed(source: number, frame: Uint8Array): void {
    if (this.closed) return;
    const now = this.clock();
    const endpoint = relayEndpoint(source);
    this.currentSource = endpoint;
    this.router.receive(frame, endpoint, now, addressOf(0, source));
    this.processRouterOutput(now);
    this.currentSource = null;
    this.scheduleTurn();
  }

  private processRouterOutput(now: number): void {
    for (const d of this.router.takeDelivered()) this.receivePacket(d.from, d.packet, now);
    for (const { address, event } of this.router.takeEvents()) {
      if (event.type === "established") this.log.debug("tunnel session established", { peer: formatAddress(address), role: event.role, via: event.endpoint });
      else if (event.type === "handshake_failed") this.log.info("tunnel handshake gave up", { peer: formatAddress(address), dropped: event.droppedPackets });
      else if (event.type === "endpoint_changed") {
        this.log.info("peer endpoint changed", { peer: formatAddress(address), endpoint: event.endpoint });
        this.pathRestored(this.ports.connectionsWith(address), now);
      } else if (event.type === "path_mtu") this.pathSizeChanged(address, event.size);
      this.paths.onEvent(address, event, now);
      this.options.onPeerEvent?.(address, event);
    }
    for (const u of this.router.takeUnknownInitiators()) void this.introduce(u);
  }

  /**
   * A node we have never talked to started a handshake: pin its key from the registry, then answer.
   * A stranger's lookup waits for room among untrusted peers and for the introductions' budget.
   */
  private async introduce(initiator: UnknownInitiator<string>): Promise<void> {
    const node = initiator.address;
    const trusted = this.options.policy.trusts?.(node) ?? false;
    if (!trusted && !this.roomForStranger(this.clock())) {
      this.counters.peerLimit++;
      return;
    }
    const [gate, key] = trusted ? [this.trustedIntroductions, `node:${node}`] : [this.introductions, introductionKey(initiator.endpoint)];
    const outcome = await gate.run(node, key, this.clock(), () => this.ensurePeer(node, false));
    if (outcome !== "found") {
      if (outcome !== "refused") this.log.debug("ignoring handshake from unknown node", { peer: formatAddress(node), outcome });
      return;
    }
    if (this.closed) return;
    this.router.acceptPending(initiator, this.clock());
    this.processRouterOutput(this.clock());
    this.scheduleTurn();
  }

  /** Is an untrusted peer unprotected: no open stream, not trusted (eviction may forget it)? */
  private evictable(node: Address): boolean {
    return !(this.options.policy.trusts?.(node) ?? false) && this.ports.connectionsWith(node).length === 0;
  }

  /**
   * Room for one more untrusted peer: below the cap, or after forgetting the least recently
   * active ones that have no stream. (Introductions already running may each add one more.)
   */
  private roomForStranger(now: number): boolean {
    const untrusted = this.router.countUnprotected((a) => this.options.policy.trusts?.(a) ?? false);
    const excess = untrusted - this.peerLimits.maxUntrusted + 1;
    if (excess <= 0) return true;
    const keep = (a: Address) => !this.evictable(a) || this.peerLookups.has(a);
    const maxPeers = Math.max(0, this.router.countUnprotected(keep) - excess);
    const evicted = this.router.evictIdle(now, { idleAfter: this.peerLimits.idleAfter, maxPeers, keep });
    for (const a of evicted) this.forgetPeer(a);
    return evicted.length >= excess;
  }

  /** Forgets idle untrusted peers (and everything kept about them here), every so often. */
  private evictIdlePeers(now: number): void {
    const keep = (a: Address) => !this.evictable(a) || this.peerLookups.has(a);
    const evicted = this.router.evictIdle(now, { ...this.peerLimits, maxPeers: this.peerLimits.maxUntrusted, keep });
    for (const a of evicted) this.forgetPeer(a);
    if (evicted.length > 0) this.log.debug("idle peers forgotten", { count: evicted.length, peers: this.router.peerCount });
  }

  /** Drops everything kept about a peer the router no longer has. */
  private forgetPeer(node: Address): void {
    this.paths.forget(node);
    this.outbound.delete(node);
    this.refreshedAt.delete(node);
    this.synBuckets.delete(node);
  }

  /** Every table this data plane keeps per peer, with its size (tests, `info`). */
  tableSizes() {
    const intro = this.introductions.sizes;
    return {
      ...this.router.tableSizes,
      paths: this.paths.size,
      outbound: this.outbound.size,
      refreshed: this.refreshedAt.size,
      synBuckets: this.synBuckets.size,
      lookups: this.peerLookups.size,
      pings: this.pings.size,
      introductionsRunning: intro.running,
      introductionsNegative: intro.negative,
      introductionSources: intro.sources,
    };
  }

  private receivePacket(from: Address, bytes: Uint8Array, now: number): void {
    this.counters.packetsIn++;
    const decoded = decodePacket(bytes);
    if (!decoded.ok) {
      this.counters.badPackets++;
      return;
    }
    const p = decoded.value;
    if (p.dst !== this.address) {
      this.counters.wrongDestination++;
      return;
    }
    switch (p.protocol) {
      case Protocol.Stream:
        return this.receiveSegment(from, p, now);
      case Protocol.Datagram:
        return this.receiveDatagramPacket(from, p);
      case Protocol.Control:
        return this.receiveControl(from, p, now);
    }
  }

  private receiveSegment(from: Address, p: Packet, now: number): void {
    const isSyn = (p.flags & (Flag.SYN | Flag.ACK | Flag.RST)) === Flag.SYN;
    let existing = this.ports.connection(from, p.srcPort, p.dstPort);
    if (existing && isSyn && existing.engine.state === "time-wait") {
      // The (authenticated) peer reuses the port pair of a connection that is over
      // on both sides: the new connection replaces the lingering one.
      this.ports.removeConnection(from, p.srcPort, p.dstPort, existing);
      this.deadlines.delete(existing);
      existing = undefined;
    }
    if (existing) {
      existing.engine.handleSegment(p, now);
      this.markDirty(existing);
      return;
    }
    if (!isSyn) return this.sendReset(from, p, now);
    if (!this.acceptsInbound(from)) {
      this.counters.notTrusted++;
      return this.sendReset(from, p, now);
    }
    const listener = this.ports.listener(p.dstPort);
    if (!listener) return this.sendReset(from, p, now);
    // Per peer first, then for all strangers, then per port and daemon: one peer's burst
    // or flood never takes the room another peer's dials need. A refusal is a RST that
    // says why, at once, so the dialer is not left waiting for SYN retransmissions.
    const trusted = from === this.address || (this.options.policy.trusts?.(from) ?? false);
    if (!this.takeSynToken(from, trusted, now)) {
      this.counters.synRateLimited++;
      return this.sendReset(from, p, now, ResetReason.Rate);
    }
    const verdict = this.ports.admit(from, p.dstPort, trusted);
    if (verdict !== "ok") {
      if (verdict === "peer" || verdict === "half-open") this.counters.peerConnectionLimit++;
      else this.counters.connectionLimit++;
      return this.sendReset(from, p, now, ResetReason.Limit);
    }
    const config = { ...this.streamConfigFor(from), connectTimeout: this.options.halfOpenTimeout ?? HALF_OPEN_TIMEOUT };
    const engine = StreamConnection.accept(config, p, this.randomU32(), now, this.buffers.allocatorFor(from, () => this.bufferTrusted(from)));
    const stream = new DaemonStream(this.nextStreamId++, engine, this.address, p.dstPort, from, p.srcPort, "accepted", this, now);
    stream.onSettled = (error) => {
      if (error === null) this.ports.markEstablished(stream);
      if (error !== null || stream.announced) return;
      stream.announced = true;
      const l = this.ports.listener(stream.localPort);
      if (l) l.onAccept(stream);
      else stream.abort();
    };
    this.ports.addConnection(from, p.srcPort, p.dstPort, stream);
    this.ports.trackInbound(from, stream, !trusted);
    this.scheduleHousekeeping(now);
    this.markDirty(stream);
  }

  /** Buffer space for streams with `node` is budgeted as a trusted peer's: trusted, ourselves, or a node we contacted. */
  private bufferTrusted(node: Address): boolean {
    return node === this.address || this.outbound.has(node) || (this.options.policy.trusts?.(node) ?? false);
  }

  /** Admission of streams and datagrams: the policy's, and a node always admits itself (loopback). */
  private acceptsInbound(from: Address): boolean {
    return from === this.address || this.options.policy.acceptsInbound(from);
  }

  /**
   * One SYN from `from`: its own bucket (a trusted peer may open a burst of ~a
   * thousand connections at once, a gateway opening one per request say), and for
   * untrusted nodes also the strangers' shared bucket, taken only when their own allows.
   */
  private takeSynToken(from: Address, trusted: boolean, now: number): boolean {
    let entry = this.synBuckets.get(from);
    if (!entry || entry.trusted !== trusted) {
      if (this.synBuckets.size > 4096) {
        for (const [k, b] of this.synBuckets) if (b.bucket.idleSince(now) > 10_000) this.synBuckets.delete(k);
      }
      const rate = trusted ? (this.options.synRateTrusted ?? 1000) : (this.options.synRatePerNode ?? 100);
      entry = { bucket: new TokenBucket(rate, trusted ? Math.max(rate, 1024) : rate, now), trusted };
      this.synBuckets.set(from, entry);
    }
    if (!entry.bucket.take(now)) return false;
    return trusted || this.synStrangers.take(now);
  }

  private sendReset(to: Address, p: Packet, now: number, reason?: ResetReason): void {
    const rst = resetFor(p, reason);
    if (!rst) return;
    this.counters.resetsSent++;
    this.sendSegmentTo(to, p.dstPort, p.srcPort, rst, now);
  }

  private receiveDatagramPacket(from: Address, p: Packet): void {
    this.counters.datagramsIn++;
    const binding = this.ports.binding(p.dstPort);
    if (!binding || !this.acceptsInbound(from)) {
      if (binding) this.counters.notTrusted++;
      this.counters.datagramsDropped++;
      return;
    }
    try {
      binding.onDatagram({ srcAddress: from, srcPort: p.srcPort, dstPort: p.dstPort, data: p.payload });
    } catch {
      this.counters.datagramsDropped++;
    }
  }

  private receiveControl(from: Address, p: Packet, now: number): void {
    if (p.dstPort === WellKnownPort.Ping && !(p.flags & Flag.ACK)) {
      // Echo request: answer with the same payload, over the authenticated session it came on,
      // along the path it came (so a path probe measures and proves that path).
      const pong = packet({ protocol: Protocol.Control, flags: Flag.ACK, src: this.address, dst: from, srcPort: 0, dstPort: p.srcPort, seq: p.seq, ack: (p.seq + 1) >>> 0, payload: p.payload });
      const source = this.currentSource;
      if (source !== null && this.router.sendTo(from, encodePacket(pong), source, now)) {
        this.counters.packetsOut++;
        return;
      }
      if (p.srcPort !== PATH_PROBE_PORT) this.sendPacket(from, pong, now);
      return;
    }
    if (p.flags & Flag.ACK && p.dstPort === PATH_PROBE_PORT) {
      if (this.currentSource !== null) {
        this.paths.onPong(from, p.seq, this.currentSource, now);
        // A path to the peer answered: streams waiting out a backed-off timer need not wait.
        this.pathRestored(this.ports.connectionsWith(from), now);
      }
      return;
    }
    if (p.flags & Flag.ACK) {
      const key = pingKey(from, p.dstPort, p.seq);
      const pending = this.pings.get(key);
      if (pending) {
        this.pings.delete(key);
        pending.resolve(now - pending.sentAt);
      }
    }
  }

  /**
   * The way to these streams' peers works again (a path probe answered, our relay registration
   * back, the peer roamed): retransmissions waiting out a backed-off timer go now, so streams
   * resume within a round trip of an outage's end (StreamConnection.pathRestored).
   */
  private pathRestored(streams: Iterable<DaemonStream>, now: number): void {
    for (const s of streams) {
      if (!s.engine.pathRestored(now)) continue;
      s.engine.handleTimeout(now);
      this.markDirty(s);
    }
  }

  // ---- outbound -------------------------------------------------------------

  /** Makes sure the router has a session object (pinned key, endpoint) for `node`. */
  async ensurePeer(node: Address, outbound = true): Promise<void> {
    if (node === this.address) {
      if (outbound) return; // loopback to self: no tunnel (see sendPacket)
      throw new NodeError("invalid_argument", "that is this node's own address");
    }
    if (outbound) this.outbound.add(node);
    if (this.router.peer(node)) return;
    let lookup = this.peerLookups.get(node);
    if (!lookup) {
      lookup = this.options.lookupPeer(node, outbound).then(
        (info) => {
          if (!this.closed && !this.router.peer(node)) this.addRouterPeer(node, info);
        },
        (e) => {
          if (!this.router.peer(node)) this.outbound.delete(node);
          throw e;
        },
      );
      this.peerLookups.set(node, lookup);
      lookup.then(
        () => this.peerLookups.delete(node),
        () => this.peerLookups.delete(node),
      );
    }
    await lookup;
  }

  /** Adds the peer to the router, starting on the path the path manager picks (the relay, while direct paths are probed). */
  private addRouterPeer(node: Address, info: PeerInfo): void {
    const candidates = info.candidates && info.candidates.length > 0 ? info.candidates : info.endpoint ? [info.endpoint] : [];
    this.router.addPeer(node, info.identityKey, this.paths.initialEndpoint(node, candidates), this.clock());
    this.paths.peerAdded(node, { candidates, hostEndpoints: info.hostEndpoints }, this.clock());
  }

  /**
   * A peer stopped answering (SYN or data retransmission timeout, ping timeout):
   * it may have restarted, or moved. Ask the registry again: new endpoints are
   * probed; and if nothing came from the peer on any path since the last
   * handshake (it may have forgotten our session), start a new handshake
   * while the current session stays usable. Nothing is torn down, so a slow
   * or lossy set-up is never undone. At most once a second per peer.
   */
  refreshPeer(node: Address): void {
    const now = this.clock();
    if (now - (this.refreshedAt.get(node) ?? -Infinity) < 1000 || this.closed) return;
    const peer = this.router.peer(node);
    if (!peer) return;
    // Strangers' re-lookups come from the strangers' registry budget.
    if (!(this.options.policy.trusts?.(node) ?? false) && !this.outbound.has(node) && !this.introductions.mayRefresh(now)) return;
    this.refreshedAt.set(node, now);
    this.options.lookupPeer(node, this.outbound.has(node)).then(
      (info) => {
        const current = this.router.peer(node);
        if (this.closed || !current || info.endpoint === null) return;
        const now = this.clock();
        const candidates = info.candidates && info.candidates.length > 0 ? info.candidates : [info.endpoint];
        this.paths.updateCandidates(node, candidates, info.hostEndpoints, now);
        // Silent on every path since the last handshake: it probably restarted and forgot our
        // session. (While a relay fallback is still to be tried, the path manager handles it.)
        const silent = now - Math.max(current.lastReceivedAt, current.lastHandshakeAt) > 2000;
        if (silent && !current.handshakeInProgress && current.isEstablished(now) && !this.paths.handlesSilence(node)) {
          this.log.info("peer silent; starting a new handshake", { peer: formatAddress(node), endpoint: current.endpoint });
          this.router.rehandshake(node, now);
          this.processRouterOutput(now);
          for (const s of this.ports.connectionsWith(node)) this.markDirty(s);
        }
        this.scheduleTurn();
      },
      () => {},
    );
  }

  async dial(target: Address, port: number, timeoutMs?: number): Promise<DaemonStream> {
    this.assertOpen();
    if (!isValidPort(port)) throw new NodeError("invalid_argument", `port ${port} is not 0-65535`);
    await this.ensurePeer(target);
    this.assertOpen();
    const localPort = this.ports.allocateEphemeral();
    if (localPort === undefined || this.ports.connectionCount >= this.ports.limits.maxTotal) {
      throw new NodeError("limit_exceeded", "too many open connections", "close some connections and try again");
    }
    const now = this.clock();
    const config = timeoutMs ? { ...this.streamConfigFor(target), connectTimeout: timeoutMs } : this.streamConfigFor(target);
    const engine = StreamConnection.connect(config, this.randomU32(), now, this.buffers.allocatorFor(target, () => this.bufferTrusted(target)));
    const stream = new DaemonStream(this.nextStreamId++, engine, this.address, localPort, target, port, "dialed", this, now);
    this.ports.addConnection(target, port, localPort, stream);
    this.scheduleHousekeeping(now);
    const settled = new Promise<NodeError | null>((resolve) => (stream.onSettled = resolve));
    this.markDirty(stream);
    const rtt = this.paths.describe(target)?.rttMs ?? this.router.peer(target)?.handshakeRtt ?? null;
    const watch = this.presence ? setTimeout(() => void this.failIfOffline(stream, target, now), offlineCheckDelay(rtt)) : null;
    const error = await settled;
    if (watch) clearTimeout(watch);
    if (error) {
      const peer = this.router.peer(target);
      if (error.code === "timeout" && peer && !peer.isEstablished(this.clock())) {
        throw new NodeError("unreachable", `no answer from ${formatAddress(target)}: its daemon is not reachable`, "check that the agent's daemon is running (pilot ping it), or try again later");
      }
      throw error;
    }
    stream.announced = true;
    return stream;
  }

  /** Fails a dial whose SYN is unanswered when nothing came from the peer since `since` and the registry says it is offline (dial-watch.ts). */
  private async failIfOffline(stream: DaemonStream, node: Address, since: number): Promise<void> {
    const heardSince = () => (this.router.peer(node)?.lastReceivedAt ?? -Infinity) >= since;
    if (!stream.onSettled || this.closed || heardSince()) return;
    const presence = await this.presence!.presence(node);
    const settle = stream.onSettled;
    if (!presence || presence.online || !settle || this.closed || heardSince()) return;
    const error = offlineDialError(node, this.clock() - since, presence);
    this.log.info("dial failed fast: the peer is offline", { peer: formatAddress(node), port: stream.remotePort });
    stream.onSettled = null;
    settle(error);
    stream.fail(error);
  }

  /**
   * Stream settings for a new connection with `node`, seeded with the round trip
   * this path is already known to have (path probes, else the tunnel handshake),
   * so a lossy start does not sit on the blind 1 s initial RTO and its doublings.
   */
  private streamConfigFor(node: Address): Partial<StreamConfig> {
    const base = this.options.streamConfig ?? {};
    const peer = this.router.peer(node);
    const rtt = this.paths.describe(node)?.rttMs ?? peer?.handshakeRtt ?? null;
    const withRtt = rtt !== null && rtt > 0 ? { ...base, initialRtt: rtt } : base;
    return peer && base.mss === undefined ? { ...withRtt, mss: streamMssForFrame(peer.pathFrameSize) } : withRtt;
  }

  /**
   * The tunnel path to `node` carries frames of `size` now (path MTU discovery, or a
   * new path: the base): every stream with it cuts its segments to fit, at once.
   */
  private pathSizeChanged(node: Address, size: number): void {
    this.log.debug("path datagram size changed", { peer: formatAddress(node), size });
    if (this.options.streamConfig?.mss !== undefined) return;
    const mss = streamMssForFrame(size);
    for (const s of this.ports.allConnections()) {
      if (s.remoteAddress !== node) continue;
      s.engine.setMss(mss);
      this.dirty.add(s);
    }
  }

  listen(port: number, onAccept: (stream: StreamHandle) => void): PortBinding {
    this.assertOpen();
    if (!isValidPort(port) || port === WellKnownPort.Ping) throw new NodeError("invalid_argument", `cannot listen on port ${port}`);
    const listener: Listener = { port, onAccept };
    if (!this.ports.addListener(port, listener)) {
      throw new NodeError("port_in_use", `port ${port} is already in use`, "pick another port, or stop the program that listens on it");
    }
    return { port, close: () => this.ports.removeListener(port, listener) };
  }

  bindDatagrams(port: number, onDatagram: (message: DatagramMessage) => void): PortBinding {
    this.assertOpen();
    let chosen = port;
    if (port === 0) {
      const p = this.ports.allocateEphemeral();
      if (p === undefined) throw new NodeError("limit_exceeded", "no free ephemeral port");
      chosen = p;
    }
    if (!isValidPort(chosen) || chosen === WellKnownPort.Ping) throw new NodeError("invalid_argument", `cannot bind port ${port}`);
    const binding: DatagramBinding = { port: chosen, onDatagram };
    if (!this.ports.addBinding(chosen, binding)) throw new NodeError("port_in_use", `datagram port ${chosen} is already bound`);
    return { port: chosen, close: () => this.ports.removeBinding(chosen, binding) };
  }

  async sendDatagram(srcPort: number, target: Address, dstPort: number, data: Uint8Array): Promise<void> {
    this.assertOpen();
    if (data.length > MAX_DATAGRAM_PAYLOAD) {
      throw new NodeError("invalid_argument", `a datagram carries at most ${MAX_DATAGRAM_PAYLOAD} bytes, got ${data.length}`, "use a stream (pilot connect / dial) for larger messages");
    }
    if (!isValidPort(dstPort)) throw new NodeError("invalid_argument", `port ${dstPort} is not 0-65535`);
    await this.ensurePeer(target);
    const now = this.clock();
    const src = srcPort === 0 ? (this.ports.allocateEphemeral() ?? 65535) : srcPort;
    this.sendPacket(target, packet({ protocol: Protocol.Datagram, src: this.address, dst: target, srcPort: src, dstPort, payload: data }), now);
    this.counters.datagramsOut++;
    this.scheduleTurn();
  }

  /** Round-trip time of one echo request over the tunnel, in ms (the first one includes the handshake). */
  async ping(target: Address, seq: number, timeoutMs: number, payload: Uint8Array = new Uint8Array(0)): Promise<number> {
    this.assertOpen();
    await this.ensurePeer(target);
    const id = EPHEMERAL_MIN + (this.randomU32() % (EPHEMERAL_MAX - EPHEMERAL_MIN + 1));
    const key = pingKey(target, id, seq >>> 0);
    const now = this.clock();
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pings.delete(key);
        this.refreshPeer(target);
        reject(new NodeError("timeout", `no reply from ${formatAddress(target)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pings.set(key, {
        sentAt: now,
        resolve: (rtt) => {
          clearTimeout(timer);
          resolve(rtt);
        },
      });
      this.sendPacket(target, packet({ protocol: Protocol.Control, src: this.address, dst: target, srcPort: id, dstPort: WellKnownPort.Ping, seq: seq >>> 0, payload }), now);
      this.scheduleTurn();
    });
  }

  /** Resets every stream with `node` and forgets its sessions (untrust). Its frames are dropped from now on. */
  dropPeer(node: Address, reason: NodeError): number {
    const streams = this.ports.connectionsWith(node);
    for (const s of streams) s.fail(reason);
    this.pumpDirty(); // the RSTs go out on the old session before it is destroyed
    this.flushRouter();
    this.router.removePeer(node);
    this.forgetPeer(node);
    return streams.length;
  }

  // ---- the turn ---------------------------------------------------------------

  markDirty(stream: DaemonStream): void {
    this.dirty.add(stream);
    this.scheduleTurn();
  }

  private scheduleTurn(): void {
    if (this.turnScheduled || this.closed) return;
    this.turnScheduled = true;
    setImmediate(() => this.endTurn());
  }

  private endTurn(): void {
    this.turnScheduled = false;
    if (this.closed) return;
    this.pumpDirty();
    if (this.loopback.length > 0) this.deliverLoopback();
    this.flushRouter();
    this.armTimer();
  }

  private pumpDirty(): void {
    for (let round = 0; round < 8 && this.dirty.size > 0; round++) {
      const now = this.clock();
      const batch = [...this.dirty];
      this.dirty.clear();
      for (const s of batch) this.pump(s, now);
      for (const s of batch) s.deliverEvents(); // owners may write/read here; that marks streams dirty again
    }
  }

  private pump(s: DaemonStream, now: number): void {
    let seg: Segment | undefined;
    while ((seg = s.engine.pollTransmit(now)) !== undefined) this.sendSegmentTo(s.remoteAddress, s.localPort, s.remotePort, seg, now);
    s.processEngineEvents();
    if (s.engine.state === "closed") {
      this.ports.removeConnection(s.remoteAddress, s.remotePort, s.localPort, s);
      this.deadlines.delete(s);
      this.onStreamClosed?.(s);
    } else {
      if (s.engine.state === "time-wait") this.ports.markLingering(s.remoteAddress, s.remotePort, s.localPort, s);
      this.deadlines.set(s, s.engine.nextTimeout());
    }
  }

  private sendSegmentTo(to: Address, srcPort: number, dstPort: number, seg: Segment, now: number): void {
    this.sendPacket(to, toPacket(seg, { src: this.address, dst: to, srcPort, dstPort }), now);
  }

  private sendPacket(to: Address, p: Packet, now: number): void {
    this.counters.packetsOut++;
    if (to === this.address) return this.loopBack(encodePacket(p));
    if (!this.router.send(to, encodePacket(p), now)) this.log.debug("packet for a peer with no session dropped", { peer: formatAddress(to) });
  }

  private flushRouter(): void {
    const transmits = this.router.takeTransmits();
    if (transmits.length === 0) {
      this.paths.endTurn();
      return;
    }
    for (const t of transmits) {
      const e = this.paths.currentEndpoint(t.endpoint);
      if (e.charCodeAt(0) === 114 /* "r" */ && isRelayEndpoint(e)) {
        if (!this.paths.routeRelay(e, t.frame)) this.counters.relayUnavailable++;
        continue;
      }
      const colon = e.lastIndexOf(":");
      if (t.dontFragment) this.options.send(t.frame, e.slice(0, colon), Number(e.slice(colon + 1)), true);
      else this.options.send(t.frame, e.slice(0, colon), Number(e.slice(colon + 1)));
      if (t.frame[0] === TunnelMessage.Initiation) this.paths.copyInitiation(e, t.frame);
    }
    this.paths.endTurn();
    this.options.flush?.();
  }

  /**
   * Loopback to self, as TCP has it: a packet to our own address never enters
   * the tunnel (no session, no crypto). It is queued and handed back to
   * receivePacket at the end of the turn, so it meets the same port table,
   * listeners and admission as any packet. The queue is bounded; a stream
   * retransmits what was dropped.
   */
  private loopBack(bytes: Uint8Array): void {
    if (this.loopback.length >= LOOPBACK_QUEUE_MAX) {
      this.counters.loopbackDropped++;
      return;
    }
    this.loopback.push(bytes);
    this.scheduleTurn();
  }

  private deliverLoopback(): void {
    for (let round = 0; round < 8 && this.loopback.length > 0; round++) {
      const now = this.clock();
      for (const bytes of this.loopback.splice(0)) this.receivePacket(this.address, bytes, now);
      this.pumpDirty();
    }
    if (this.loopback.length > 0) this.scheduleTurn();
  }

  /** One datagram straight to "ip:port" (punch probes, initiation copies). */
  private sendRaw(datagram: Uint8Array, endpoint: string): void {
    const colon = endpoint.lastIndexOf(":");
    if (colon <= 0) return;
    let host = endpoint.slice(0, colon);
    if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
    try {
      this.options.send(datagram, host, Number(endpoint.slice(colon + 1)));
    } catch {
      // an unreachable candidate: nothing to do
    }
  }

  /**
   * The socket refused a don't-fragment frame to host:port (EMSGSIZE: larger than
   * our own interface): a path MTU probe of that size fails at once.
   */
  dontFragmentRefused(size: number, host: string, port: number): void {
    if (this.closed) return;
    const endpoint = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    this.router.probeRefused(endpoint, size, this.clock());
    this.scheduleTurn();
  }

  /** A path probe: an authenticated ping with source port PATH_PROBE_PORT, sealed to one endpoint. */
  private sendProbe(node: Address, endpoint: string, id: number, now: number): boolean {
    const probe = packet({ protocol: Protocol.Control, src: this.address, dst: node, srcPort: PATH_PROBE_PORT, dstPort: WellKnownPort.Ping, seq: id });
    return this.router.sendTo(node, encodePacket(probe), endpoint, now);
  }

  private armTimer(): void {
    const now = this.clock();
    // Idle peers are looked for every quarter of the idle time (at most every 10 s) while there are peers.
    if (this.router.peerCount === 0) this.evictionAt = Infinity;
    else if (this.evictionAt === Infinity) this.evictionAt = now + Math.min(10_000, this.peerLimits.idleAfter / 4);
    const at = Math.min(this.deadlines.peek(), this.router.nextTimeout() ?? Infinity, this.paths.nextTimeout(now) ?? Infinity, this.evictionAt, this.housekeepingAt);
    if (at === this.timerAt && this.timer) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = at;
    if (at === Infinity) return;
    const delay = Math.max(0, Math.ceil(at - this.clock()));
    this.timer = setTimeout(() => this.onTimer(), delay);
  }

  private onTimer(): void {
    this.timer = null;
    this.timerAt = Infinity;
    if (this.closed) return;
    const now = this.clock();
    let lost = false;
    for (const s of this.deadlines.popDue(now)) {
      s.engine.handleTimeout(now);
      this.dirty.add(s);
      if (s.noteRetransmissionTimeout()) {
        this.refreshPeer(s.remoteAddress);
        // Lost at the path's size: maybe a black hole (path-mtu.ts); back to the base if so.
        if ((this.router.peer(s.remoteAddress)?.pathFrameSize ?? 0) > BASE_DATA_FRAME) {
          this.router.notePathLoss(s.remoteAddress, now);
          lost = true;
        }
      }
    }
    if (lost) this.processRouterOutput(now);
    const routerDue = this.router.nextTimeout();
    if (routerDue !== null && routerDue <= now) {
      this.router.tick(now);
      this.processRouterOutput(now);
    }
    const pathsDue = this.paths.nextTimeout(now);
    if (pathsDue !== null && pathsDue <= now) {
      this.paths.tick(now);
      this.processRouterOutput(now);
    }
    if (now >= this.housekeepingAt) {
      this.housekeepingAt = Infinity;
      this.sweepBuffers();
      this.scheduleHousekeeping(now);
    }
    if (now >= this.evictionAt) {
      this.evictionAt = Infinity;
      this.evictIdlePeers(now);
    }
    this.endTurn();
  }

  private scheduleHousekeeping(now: number): void {
    if (this.housekeepingAt === Infinity && this.ports.heldCount > 0) this.housekeepingAt = now + HOUSEKEEPING_INTERVAL;
  }

  /**
   * Gives unused buffer space back to the budget: every stream that moved no byte
   * since the last sweep is trimmed to its initial sizes (it grows again when it
   * needs to); under pressure, so are the busy streams of peers that hold more than
   * an even share, so the peer over its share is the one that slows down.
   */
  private sweepBuffers(): void {
    const trim = this.buffers.trimRule();
    for (const s of this.ports.allConnections()) {
      const progress = s.engine.progress;
      const before = this.progressAtSweep.get(s);
      this.progressAtSweep.set(s, progress);
      if (before === undefined) continue; // new since the last sweep
      if (!trim(s.remoteAddress, progress !== before)) continue;
      const released = s.engine.trimBuffers();
      if (released > 0) {
        this.counters.bufferBytesTrimmed += released;
        this.dirty.add(s);
      }
    }
  }

  // ---- inspection and shutdown ---------------------------------------------------

  streams(): DaemonStream[] {
    return [...this.ports.allConnections()];
  }

  /** Sends FIN on every stream, waits up to `graceMs` for them to finish, then resets the rest. */
  async shutdown(graceMs = 1000): Promise<void> {
    if (this.closed) return;
    for (const s of this.ports.allConnections()) {
      s.engine.shutdown();
      this.markDirty(s);
    }
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && [...this.ports.allConnections()].some((s) => !s.isClosedForOwner && s.engine.state !== "time-wait")) {
      await Bun.sleep(20);
    }
    for (const s of this.ports.allConnections()) {
      s.engine.abort();
      this.dirty.add(s);
    }
    this.pumpDirty();
    this.flushRouter();
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const p of this.pings.values()) p.resolve(NaN);
    this.pings.clear();
  }

  private assertOpen(): void {
    if (this.closed) throw new NodeError("closed", "the daemon is shutting down");
  }

  private randomU32(): number {
    const b = this.random(4);
    return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  }
}

/** Path probes are pings from port 0 (user pings come from an ephemeral port), so their pongs come to port 0. */
const PATH_PROBE_PORT = 0;

/** An inbound connection still half-open after this long is dropped (SYN|ACK retransmissions included). */
const HALF_OPEN_TIMEOUT = 5000;

/** How often streams' buffers are looked at: idle ones, and ones over their share under pressure, are trimmed. */
const HOUSEKEEPING_INTERVAL = 1000;

/** Packets to ourselves waiting for the end of the turn (about 5 MB of full segments). */
const LOOPBACK_QUEUE_MAX = 4096;

function pingKey(peer: Address, id: number, seq: number): string {
  return `${peer}/${id}/${seq}`;
}

/** "ip:port", or "[ipv6]:port" (the socket hands IPv4-mapped senders on as plain IPv4). */
export function endpointOf(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
