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
 */
import { randomBytes } from "node:crypto";
import type { Identity } from "../crypto/identity.ts";
import { formatAddress, type Address } from "../protocol/address.ts";
import { decodePacket, encodePacket, Flag, packet, Protocol, type Packet } from "../protocol/packet.ts";
import { EPHEMERAL_MAX, EPHEMERAL_MIN, isValidPort, WellKnownPort } from "../protocol/ports.ts";
import { MAX_DATAGRAM_PAYLOAD } from "../protocol/limits.ts";
import { StreamConnection } from "../transport/connection.ts";
import type { StreamConfig } from "../transport/config.ts";
import { resetFor, toPacket, type Segment } from "../transport/segment.ts";
import { TunnelRouter, type UnknownInitiator } from "../tunnel/router.ts";
import type { Logger } from "../util/log.ts";
import { DeadlineQueue } from "./deadline-queue.ts";
import { NodeError, type DatagramMessage, type PortBinding, type StreamHandle } from "./local-node.ts";
import { DEFAULT_PORT_LIMITS, PortTable, TokenBucket, type PortLimits } from "./port-table.ts";
import { DaemonStream, type StreamHost } from "./stream.ts";

export interface PeerInfo {
  readonly identityKey: Uint8Array;
  readonly endpoint: string | null;
}

export interface AdmissionPolicy {
  /** May this node hold a tunnel session with us (answer its handshake)? */
  admitsSession(node: Address): boolean;
  /** May this node open streams to our ports and send us datagrams? */
  acceptsInbound(node: Address): boolean;
}

export interface DataPlaneOptions {
  readonly address: Address;
  readonly identity: Identity;
  readonly send: (frame: Uint8Array, host: string, port: number) => void;
  /** Called when a batch of frames has been handed to `send` (the socket flushes its batch). */
  readonly flush?: () => void;
  readonly policy: AdmissionPolicy;
  /**
   * Finds a node's pinned identity key and endpoint (registry); throws NodeError.
   * `outbound`: we are about to contact it (rather than answer its handshake).
   */
  readonly lookupPeer: (node: Address, outbound: boolean) => Promise<PeerInfo>;
  readonly onBeacon?: (datagram: Uint8Array, host: string, port: number) => void;
  readonly log: Logger;
  readonly clock?: () => number;
  readonly random?: (n: number) => Uint8Array;
  readonly streamConfig?: Partial<StreamConfig>;
  readonly limits?: PortLimits;
  /** SYNs accepted per second from one node, and in total. */
  readonly synRatePerNode?: number;
  readonly synRateTotal?: number;
  readonly persistentKeepalive?: number;
}

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
  resetsSent: number;
  datagramsIn: number;
  datagramsDropped: number;
  datagramsOut: number;
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
    resetsSent: 0,
    datagramsIn: 0,
    datagramsDropped: 0,
    datagramsOut: 0,
  };
  private readonly clock: () => number;
  private readonly random: (n: number) => Uint8Array;
  private readonly log: Logger;
  private readonly deadlines = new DeadlineQueue<DaemonStream>();
  private readonly dirty = new Set<DaemonStream>();
  private readonly outbound = new Set<Address>();
  private readonly peerLookups = new Map<Address, Promise<void>>();
  /** When each peer's endpoint was last re-resolved (rate limit for `refreshPeer`). */
  private readonly refreshedAt = new Map<Address, number>();
  private readonly synBuckets = new Map<Address, TokenBucket>();
  private readonly synTotal: TokenBucket;
  private readonly pings = new Map<string, PendingPing>();
  private nextStreamId = 1;
  private turnScheduled = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerAt = Infinity;
  private closed = false;

  constructor(private readonly options: DataPlaneOptions) {
    this.address = options.address;
    this.clock = options.clock ?? (() => performance.now());
    this.random = options.random ?? ((n) => new Uint8Array(randomBytes(n)));
    this.log = options.log;
    this.ports = new PortTable(options.limits ?? DEFAULT_PORT_LIMITS);
    this.synTotal = new TokenBucket(options.synRateTotal ?? 500, options.synRateTotal ?? 500, this.clock());
    this.router = new TunnelRouter<string>({
      localAddress: options.address,
      identity: options.identity,
      admit: (node) => (this.outbound.has(node) || options.policy.admitsSession(node) ? "accept" : "reject"),
      persistentKeepalive: options.persistentKeepalive,
    });
  }

  // ---- inbound ------------------------------------------------------------

  /** Every datagram from the UDP socket. */
  receiveDatagram(data: Uint8Array, host: string, port: number): void {
    if (this.closed) return;
    const now = this.clock();
    const verdict = this.router.receive(data, endpointOf(host, port), now);
    if (verdict === "beacon") this.options.onBeacon?.(data, host, port);
    this.processRouterOutput(now);
    this.scheduleTurn();
  }

  private processRouterOutput(now: number): void {
    for (const d of this.router.takeDelivered()) this.receivePacket(d.from, d.packet, now);
    for (const { address, event } of this.router.takeEvents()) {
      if (event.type === "established") this.log.debug("tunnel session established", { peer: formatAddress(address), role: event.role });
      else if (event.type === "handshake_failed") this.log.info("tunnel handshake gave up", { peer: formatAddress(address), dropped: event.droppedPackets });
      else if (event.type === "endpoint_changed") this.log.info("peer endpoint changed", { peer: formatAddress(address), endpoint: event.endpoint });
    }
    for (const u of this.router.takeUnknownInitiators()) void this.introduce(u);
  }

  /** A node we have never talked to started a handshake: pin its key from the registry, then answer. */
  private async introduce(initiator: UnknownInitiator<string>): Promise<void> {
    try {
      await this.ensurePeer(initiator.address, false);
    } catch (e) {
      this.log.debug("ignoring handshake from unknown node", { peer: formatAddress(initiator.address), reason: (e as Error).message });
      return;
    }
    if (this.closed) return;
    this.router.acceptPending(initiator, this.clock());
    this.processRouterOutput(this.clock());
    this.scheduleTurn();
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
    const existing = this.ports.connection(from, p.srcPort, p.dstPort);
    if (existing) {
      existing.engine.handleSegment(p, now);
      this.markDirty(existing);
      return;
    }
    const isSyn = (p.flags & (Flag.SYN | Flag.ACK | Flag.RST)) === Flag.SYN;
    if (!isSyn) return this.sendReset(from, p, now);
    if (!this.options.policy.acceptsInbound(from)) {
      this.counters.notTrusted++;
      return this.sendReset(from, p, now);
    }
    const listener = this.ports.listener(p.dstPort);
    if (!listener) return this.sendReset(from, p, now);
    if (!this.takeSynToken(from, now)) {
      this.counters.synRateLimited++;
      return; // silently: the sender retransmits its SYN later
    }
    if (!this.ports.hasRoom(p.dstPort)) {
      this.counters.connectionLimit++;
      return this.sendReset(from, p, now);
    }
    const engine = StreamConnection.accept(this.options.streamConfig ?? {}, p, this.randomU32(), now);
    const stream = new DaemonStream(this.nextStreamId++, engine, this.address, p.dstPort, from, p.srcPort, "accepted", this, now);
    stream.onSettled = (error) => {
      if (error !== null || stream.announced) return;
      stream.announced = true;
      const l = this.ports.listener(stream.localPort);
      if (l) l.onAccept(stream);
      else stream.abort();
    };
    this.ports.addConnection(from, p.srcPort, p.dstPort, stream);
    this.markDirty(stream);
  }

  private takeSynToken(from: Address, now: number): boolean {
    let bucket = this.synBuckets.get(from);
    if (!bucket) {
      if (this.synBuckets.size > 4096) {
        for (const [k, b] of this.synBuckets) if (b.idleSince(now) > 10_000) this.synBuckets.delete(k);
      }
      const rate = this.options.synRatePerNode ?? 200;
      bucket = new TokenBucket(rate, rate, now);
      this.synBuckets.set(from, bucket);
    }
    return bucket.take(now) && this.synTotal.take(now);
  }

  private sendReset(to: Address, p: Packet, now: number): void {
    const rst = resetFor(p);
    if (!rst) return;
    this.counters.resetsSent++;
    this.sendSegmentTo(to, p.dstPort, p.srcPort, rst, now);
  }

  private receiveDatagramPacket(from: Address, p: Packet): void {
    this.counters.datagramsIn++;
    const binding = this.ports.binding(p.dstPort);
    if (!binding || !this.options.policy.acceptsInbound(from)) {
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
      // Echo request: answer with the same payload, over the authenticated session it came on.
      const pong = packet({ protocol: Protocol.Control, flags: Flag.ACK, src: this.address, dst: from, srcPort: 0, dstPort: p.srcPort, seq: p.seq, ack: (p.seq + 1) >>> 0, payload: p.payload });
      this.sendPacket(from, pong, now);
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

  // ---- outbound -------------------------------------------------------------

  /** Makes sure the router has a session object (pinned key, endpoint) for `node`. */
  async ensurePeer(node: Address, outbound = true): Promise<void> {
    if (node === this.address) throw new NodeError("invalid_argument", "that is this node's own address");
    if (outbound) this.outbound.add(node);
    if (this.router.peer(node)) return;
    let lookup = this.peerLookups.get(node);
    if (!lookup) {
      lookup = this.options.lookupPeer(node, outbound).then((info) => {
        if (!this.closed && !this.router.peer(node)) this.router.addPeer(node, info.identityKey, info.endpoint);
      });
      this.peerLookups.set(node, lookup);
      lookup.then(
        () => this.peerLookups.delete(node),
        () => this.peerLookups.delete(node),
      );
    }
    await lookup;
  }

  /**
   * A peer stopped answering (SYN or data retransmission timeout, ping timeout):
   * it may have restarted on another port or moved. Ask the registry again; if
   * its endpoint changed, start over with a fresh session toward the new one
   * (streams keep their state and retransmit through it). At most once a
   * second per peer.
   */
  refreshPeer(node: Address): void {
    const now = this.clock();
    if (now - (this.refreshedAt.get(node) ?? -Infinity) < 1000 || this.closed) return;
    this.refreshedAt.set(node, now);
    const peer = this.router.peer(node);
    if (!peer) return;
    this.options.lookupPeer(node, this.outbound.has(node)).then(
      (info) => {
        const current = this.router.peer(node);
        if (this.closed || !current || info.endpoint === null) return;
        const moved = info.endpoint !== current.endpoint;
        // Same endpoint but silent: it probably restarted and forgot our session.
        const silent = this.clock() - current.lastReceivedAt > 2000;
        if (!moved && !silent) return;
        this.log.info(moved ? "peer endpoint changed at the registry; reconnecting" : "peer silent; starting a fresh tunnel session", { peer: formatAddress(node), endpoint: info.endpoint });
        this.router.removePeer(node);
        this.router.addPeer(node, info.identityKey, info.endpoint);
        for (const s of this.ports.connectionsWith(node)) this.markDirty(s);
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
    const config = timeoutMs ? { ...this.options.streamConfig, connectTimeout: timeoutMs } : (this.options.streamConfig ?? {});
    const engine = StreamConnection.connect(config, this.randomU32(), now);
    const stream = new DaemonStream(this.nextStreamId++, engine, this.address, localPort, target, port, "dialed", this, now);
    this.ports.addConnection(target, port, localPort, stream);
    const settled = new Promise<NodeError | null>((resolve) => (stream.onSettled = resolve));
    this.markDirty(stream);
    const error = await settled;
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
    this.outbound.delete(node);
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
    } else {
      this.deadlines.set(s, s.engine.nextTimeout());
    }
  }

  private sendSegmentTo(to: Address, srcPort: number, dstPort: number, seg: Segment, now: number): void {
    this.sendPacket(to, toPacket(seg, { src: this.address, dst: to, srcPort, dstPort }), now);
  }

  private sendPacket(to: Address, p: Packet, now: number): void {
    this.counters.packetsOut++;
    if (!this.router.send(to, encodePacket(p), now)) this.log.debug("packet for a peer with no session dropped", { peer: formatAddress(to) });
  }

  private flushRouter(): void {
    const transmits = this.router.takeTransmits();
    if (transmits.length === 0) return;
    for (const t of transmits) {
      const colon = t.endpoint.lastIndexOf(":");
      this.options.send(t.frame, t.endpoint.slice(0, colon), Number(t.endpoint.slice(colon + 1)));
    }
    this.options.flush?.();
  }

  private armTimer(): void {
    const at = Math.min(this.deadlines.peek(), this.router.nextTimeout() ?? Infinity);
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
    for (const s of this.deadlines.popDue(now)) {
      s.engine.handleTimeout(now);
      this.dirty.add(s);
      if (s.noteRetransmissionTimeout()) this.refreshPeer(s.remoteAddress);
    }
    const routerDue = this.router.nextTimeout();
    if (routerDue !== null && routerDue <= now) {
      this.router.tick(now);
      this.processRouterOutput(now);
    }
    this.endTurn();
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

function pingKey(peer: Address, id: number, seq: number): string {
  return `${peer}/${id}/${seq}`;
}

export function endpointOf(host: string, port: number): string {
  return `${host}:${port}`;
}
