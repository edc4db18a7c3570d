/**
 * All the peers behind one UDP socket, sans I/O. The router owns the session
 * index table and our handshake keys; it routes every incoming datagram:
 *
 *   data and response frames  -> the peer that owns the receiver index
 *   initiations               -> mac1 checked here, then the handshake guard decides
 *                                (handshake-guard.ts): DH work, a cookie reply (under
 *                                load, without a valid mac2), or a drop (over a budget);
 *                                decrypted (two DH), then the peer for the claimed
 *                                initiator address, if `admit` allows it
 *   cookie replies            -> the peer whose latest initiation carried the mac1 they echo
 *   beacon messages           -> not ours: `receive` returns "beacon" for the shell
 *
 * An initiation from an address with no Peer yet is not answered: the router
 * reports it in `takeUnknownInitiators()` so the shell can fetch and pin that
 * node's key (registry lookup, async), `addPeer`, and hand the initiation back
 * with `acceptPending`. Replayed initiations are refused even across
 * `removePeer`/`addPeer`: the greatest timestamp accepted per address outlives
 * the Peer object (for the last `maxRememberedTimestamps` removed peers; past
 * that, a replayed initiation from a long-forgotten peer earns a response
 * whose session the replayer cannot use, as after a restart).
 *
 * Peers do not live forever: `evictIdle` forgets the peers the shell does not
 * protect (trusted, with open streams) that have been idle for a while, and
 * the least recently active ones beyond a cap.
 *
 *   const r = new TunnelRouter<E>({ localAddress, identity, admit, ... })
 *   r.addPeer(address, edPublicKey, endpoint?, now?) / r.removePeer(address) / r.peer(address)
 *   r.evictIdle(now, { idleAfter, maxPeers, keep }) -> Address[]   removed (see the method)
 *   r.send(address, packet, now) -> boolean (false: no such peer)
 *   r.sendTo(address, packet, endpoint, now) -> boolean   one packet to an explicit endpoint (path probes)
 *   r.notePathLoss(address, now) / r.probeRefused(endpoint, size, now)   path MTU news (peer.ts)
 *   r.rehandshake(address, now)           a new handshake now (the peer may have lost our session)
 *   r.receive(datagram, endpoint, now, sender?) -> "ok" | "beacon" | "dropped"
 *        sender: the node a relay says the frame came from; the frame is accepted
 *        only if it belongs to that node's sessions (a relay cannot misattribute it)
 *   r.tick(now) / r.nextTimeout()
 *   r.takeTransmits(): Transmit<E>[]      r.takeDelivered(): { from, packet }[]
 *   r.takeEvents(): { address, event }[]  r.takeUnknownInitiators(): UnknownInitiator<E>[]
 */
import type { Identity } from "../crypto/identity.ts";
import { CookieChecker } from "../crypto/cookie.ts";
import { consumeInitiation, localHandshakeKeys, verifyMac1, type LocalHandshakeKeys, type PendingInitiation } from "../crypto/handshake.ts";
import type { RandomSource } from "../crypto/noise.ts";
import { compareTimestamps, TimestampClock } from "../crypto/timestamp.ts";
import type { Address } from "../protocol/address.ts";
import { decodeCookieReply, decodeInitiation, INITIATION_MAC_OFFSET, isBeaconType, MAC_SIZE, MIN_DATA_FRAME, TunnelMessage } from "../protocol/tunnel-frame.ts";
import { HandshakeGuard, type HandshakeLimits } from "./handshake-guard.ts";
import { IndexTable } from "./index-table.ts";
import { Peer, type PeerEvent, type PeerPathMtuOptions, type Transmit } from "./peer.ts";
import type { TunnelTimers } from "./timers.ts";

export type AdmitDecision = "accept" | "reject";

export interface UnknownInitiator<E> {
  readonly address: Address;
  readonly pending: PendingInitiation;
  readonly endpoint: E;
}

export interface RouterStats {
  datagrams: number;
  beacon: number;
  malformed: number;
  unknownIndex: number;
  badInitiation: number;
  rejectedInitiation: number;
  replayedInitiation: number;
  unknownInitiator: number;
  /** Relayed frames whose session or initiation belongs to another node than the relay named. */
  wrongRelaySender: number;
  /** Initiations that got Diffie-Hellman work (decryption). */
  initiationsDecrypted: number;
  /** Initiations answered with a cookie reply (under load, no valid mac2) instead. */
  cookieRepliesSent: number;
  /** Initiations dropped by a handshake budget (per source, strangers' total, cookie replies). */
  throttledInitiation: number;
  /** Cookie replies received for one of our initiations / for none. */
  cookieReplies: number;
  unexpectedCookieReply: number;
  /** Peers forgotten by `evictIdle`. */
  peersEvicted: number;
}

export interface TunnelRouterOptions<E> {
  readonly localAddress: Address;
  readonly identity: Identity;
  /** Whether a node may open a session with us at all (trust policy). Asked for every initiation. */
  readonly admit: (address: Address) => AdmitDecision;
  readonly random?: RandomSource;
  readonly timestamps?: TimestampClock;
  readonly timers?: Partial<TunnelTimers>;
  readonly persistentKeepalive?: number;
  readonly sameEndpoint?: (a: E, b: E) => boolean;
  /** Endpoints that stand for a relay (see PeerOptions.isRelay). */
  readonly isRelay?: (e: E) => boolean;
  /** Path MTU discovery for every peer (see PeerOptions.pathMtu); none: base size only. */
  readonly pathMtu?: PeerPathMtuOptions<E> | null;
  /** Bound on initiations waiting for a key lookup. */
  readonly maxUnknownInitiators?: number;
  /** Budgets for handshake work (defaults: DEFAULT_HANDSHAKE_LIMITS). */
  readonly handshakeLimits?: Partial<HandshakeLimits>;
  /** The endpoint as text ("ip:port"; default String(e)): cookies are bound to it, limits count by it. */
  readonly sourceKey?: (e: E) => string;
  /** Peers whose endpoint counts as a known source even without a session (trusted peers). */
  readonly preferred?: (address: Address) => boolean;
  /** Greatest accepted timestamps kept for removed peers (replay protection across eviction). Default 4096. */
  readonly maxRememberedTimestamps?: number;
}

export interface EvictionOptions {
  /** Forget a peer idle this long (ms: nothing sent, received or handshaken). */
  readonly idleAfter: number;
  /** Keep at most this many unprotected peers: the least recently active beyond it go. */
  readonly maxPeers: number;
  /** Protected peers are never evicted and not counted (trusted, open streams, ...). */
  readonly keep: (address: Address) => boolean;
}

export class TunnelRouter<E = string> {
  readonly localAddress: Address;
  readonly stats: RouterStats = {
    datagrams: 0,
    beacon: 0,
    malformed: 0,
    unknownIndex: 0,
    badInitiation: 0,
    rejectedInitiation: 0,
    replayedInitiation: 0,
    unknownInitiator: 0,
    wrongRelaySender: 0,
    initiationsDecrypted: 0,
    cookieRepliesSent: 0,
    throttledInitiation: 0,
    cookieReplies: 0,
    unexpectedCookieReply: 0,
    peersEvicted: 0,
  };
  readonly guard: HandshakeGuard;
  private readonly cookies: CookieChecker;
  private readonly sourceKey: (e: E) => string;
  /** Known sources: the endpoint (as text) each peer sends from, and back. */
  private readonly peerBySource = new Map<string, Address>();
  private readonly sourceOfPeer = new Map<Address, string>();
  /** Cookie replies find their peer by the mac1 of its latest initiation. */
  private readonly peerByMac1 = new Map<string, Address>();
  private readonly mac1OfPeer = new Map<Address, string>();
  private readonly local: LocalHandshakeKeys;
  private readonly indices: IndexTable<unknown>;
  private readonly timestamps: TimestampClock;
  private readonly peers = new Map<Address, Peer<E>>();
  private readonly lastTimestamps = new Map<Address, Uint8Array>();
  private unknown: UnknownInitiator<E>[] = [];
  private delivered: { from: Address; packet: Uint8Array }[] = [];
  private events: { address: Address; event: PeerEvent<E> }[] = [];
  private transmits: Transmit<E>[] = [];

  constructor(private readonly options: TunnelRouterOptions<E>) {
    this.localAddress = options.localAddress;
    this.local = localHandshakeKeys(options.identity);
    this.indices = new IndexTable(options.random);
    this.timestamps = options.timestamps ?? new TimestampClock();
    this.guard = new HandshakeGuard(options.handshakeLimits);
    this.cookies = new CookieChecker(this.local.staticPair.publicKey, options.random);
    this.sourceKey = options.sourceKey ?? String;
  }

  get peerCount(): number {
    return this.peers.size;
  }

  peer(address: Address): Peer<E> | undefined {
    return this.peers.get(address);
  }

  allPeers(): IterableIterator<Peer<E>> {
    return this.peers.values();
  }

  /**
   * Adds (or returns the existing) peer with `identityKey` pinned. A different key for a known
   * address replaces the peer. `now`: its creation counts as activity (idle eviction).
   */
  addPeer(address: Address, identityKey: Uint8Array, endpoint?: E | null, now?: number): Peer<E> {
    const existing = this.peers.get(address);
    if (existing && sameBytes(existing.remote.identityKey, identityKey)) {
      if (endpoint != null && existing.endpoint === null) existing.setEndpoint(endpoint, 0);
      this.indexSource(existing);
      return existing;
    }
    if (existing) this.removePeer(address);
    const peer = new Peer<E>({
      localAddress: this.localAddress,
      remoteAddress: address,
      local: this.local,
      remoteIdentityKey: identityKey,
      indices: this.indices,
      timestamps: this.timestamps,
      endpoint: endpoint ?? null,
      random: this.options.random,
      timers: this.options.timers,
      persistentKeepalive: this.options.persistentKeepalive,
      sameEndpoint: this.options.sameEndpoint,
      isRelay: this.options.isRelay,
      pathMtu: this.options.pathMtu,
      now,
    });
    this.peers.set(address, peer);
    this.indexSource(peer);
    return peer;
  }

  /** Forgets a peer and every session with it (untrust, shutdown). Its frames are dropped from now on. */
  removePeer(address: Address): void {
    const peer = this.peers.get(address);
    if (!peer) return;
    peer.close();
    this.peers.delete(address);
    this.unindex(address);
    this.boundTimestamps();
  }

  /**
   * Forgets idle peers (like removePeer) and returns their addresses: every
   * peer `keep` does not protect that has been idle for `idleAfter`, then,
   * while more than `maxPeers` unprotected peers remain, the least recently
   * active of them.
   */
  evictIdle(now: number, o: EvictionOptions): Address[] {
    const candidates: Peer<E>[] = [];
    const evicted: Address[] = [];
    for (const [address, peer] of this.peers) {
      if (o.keep(address)) continue;
      if (now - peer.lastActiveAt >= o.idleAfter) evicted.push(address);
      else candidates.push(peer);
    }
    if (candidates.length > o.maxPeers) {
      candidates.sort((x, y) => x.lastActiveAt - y.lastActiveAt);
      for (const peer of candidates.slice(0, candidates.length - o.maxPeers)) evicted.push(peer.remoteAddress);
    }
    for (const address of evicted) this.removePeer(address);
    this.stats.peersEvicted += evicted.length;
    return evicted;
  }

  /** How many peers `keep` does not protect. */
  countUnprotected(keep: (address: Address) => boolean): number {
    let n = 0;
    for (const address of this.peers.keys()) if (!keep(address)) n++;
    return n;
  }

  /** Entries in the router's own per-peer tables (for tests and `info`): all bounded. */
  get tableSizes(): { peers: number; indices: number; sources: number; cookieRoutes: number; timestamps: number; unknown: number; guardSources: number } {
    return {
      peers: this.peers.size,
      indices: this.indices.size,
      sources: this.peerBySource.size,
      cookieRoutes: this.peerByMac1.size,
      timestamps: this.lastTimestamps.size,
      unknown: this.unknown.length,
      guardSources: this.guard.sourcesTracked,
    };
  }

  send(address: Address, packet: Uint8Array, now: number): boolean {
    const peer = this.peers.get(address);
    if (!peer) return false;
    peer.send(packet, now);
    this.collect(peer);
    return true;
  }

  /** Starts a new handshake with a peer now (see Peer.rehandshake). */
  rehandshake(address: Address, now: number): void {
    const peer = this.peers.get(address);
    if (!peer) return;
    peer.rehandshake(now);
    this.collect(peer);
  }

  /** Seals `packet` for `address` and sends it to `endpoint` only; false without a peer or a usable session. */
  sendTo(address: Address, packet: Uint8Array, endpoint: E, now: number): boolean {
    const peer = this.peers.get(address);
    if (!peer) return false;
    const sent = peer.sendTo(packet, endpoint, now);
    this.collect(peer);
    return sent;
  }

  /** Traffic to `address` was lost at its path's size (a stream's RTO): maybe a path MTU black hole. */
  notePathLoss(address: Address, now: number): void {
    const peer = this.peers.get(address);
    if (!peer) return;
    peer.notePathLoss(now);
    this.collect(peer);
  }

  /** The local stack refused a don't-fragment frame of `size` to `endpoint`: a probe of that size fails at once. */
  probeRefused(endpoint: E, size: number, now: number): void {
    const same = this.options.sameEndpoint ?? Object.is;
    for (const peer of this.peers.values()) {
      if (peer.endpoint === null || !same(peer.endpoint, endpoint)) continue;
      peer.probeRefused(size, now);
      this.collect(peer);
    }
  }

  receive(datagram: Uint8Array, endpoint: E, now: number, sender?: Address): "ok" | "beacon" | "dropped" {
    this.stats.datagrams++;
    const type = datagram[0];
    if (type === undefined) {
      this.stats.malformed++;
      return "dropped";
    }
    if (isBeaconType(type)) {
      this.stats.beacon++;
      return "beacon";
    }
    if (type === TunnelMessage.Data || type === TunnelMessage.Response) {
      if (datagram.length < (type === TunnelMessage.Data ? MIN_DATA_FRAME : 8)) {
        this.stats.malformed++;
        return "dropped";
      }
      const index = ((datagram[4]! << 24) | (datagram[5]! << 16) | (datagram[6]! << 8) | datagram[7]!) >>> 0;
      const owner = this.indices.lookup(index);
      if (!(owner instanceof Peer) || this.peers.get(owner.remoteAddress) !== owner) {
        this.stats.unknownIndex++;
        return "dropped";
      }
      if (sender !== undefined && owner.remoteAddress !== sender) {
        this.stats.wrongRelaySender++;
        return "dropped";
      }
      owner.receive(datagram, endpoint, now);
      this.collect(owner);
      return "ok";
    }
    if (type === TunnelMessage.Initiation) return this.receiveInitiation(datagram, endpoint, now, sender);
    if (type === TunnelMessage.CookieReply) return this.receiveCookieReply(datagram, now, sender);
    this.stats.malformed++;
    return "dropped";
  }

  private receiveInitiation(datagram: Uint8Array, endpoint: E, now: number, sender: Address | undefined): "ok" | "dropped" {
    const decoded = decodeInitiation(datagram);
    if (!decoded.ok || !verifyMac1(this.local, decoded.value)) {
      this.stats.badInitiation++;
      return "dropped";
    }
    const frame = decoded.value;
    const source = this.sourceKey(endpoint);
    const verdict = this.guard.admit(source, now, {
      known: this.isKnownSource(source, now),
      relayed: sender !== undefined,
      hasMac2: () => this.cookies.checkMac2(frame, source, now),
    });
    if (verdict === "cookie") {
      this.transmits.push({ endpoint, frame: this.cookies.createReply(frame, source, now) });
      this.stats.cookieRepliesSent++;
      return "dropped";
    }
    if (verdict === "drop") {
      this.stats.throttledInitiation++;
      return "dropped";
    }
    this.stats.initiationsDecrypted++;
    const pending = consumeInitiation(this.local, this.localAddress, frame);
    if (!pending.ok) {
      this.stats.badInitiation++;
      return "dropped";
    }
    const address = pending.value.initiatorAddress;
    if (sender !== undefined && address !== sender) {
      this.stats.wrongRelaySender++;
      return "dropped";
    }
    if (this.options.admit(address) !== "accept") {
      this.stats.rejectedInitiation++;
      return "dropped";
    }
    const last = this.lastTimestamps.get(address);
    if (last && compareTimestamps(pending.value.timestamp, last) <= 0) {
      this.stats.replayedInitiation++;
      return "dropped";
    }
    const peer = this.peers.get(address);
    if (!peer) {
      this.stats.unknownInitiator++;
      const max = this.options.maxUnknownInitiators ?? 64;
      this.unknown = this.unknown.filter((u) => u.address !== address);
      if (this.unknown.length >= max) this.unknown.shift();
      this.unknown.push({ address, pending: pending.value, endpoint });
      return "ok";
    }
    return this.deliverInitiation(peer, pending.value, endpoint, now);
  }

  /** The endpoint of a peer with a usable session, or of a preferred (trusted) peer. */
  private isKnownSource(source: string, now: number): boolean {
    const address = this.peerBySource.get(source);
    if (address === undefined) return false;
    const peer = this.peers.get(address);
    if (!peer || peer.endpoint === null || this.sourceKey(peer.endpoint) !== source) return false;
    return peer.isEstablished(now) || (this.options.preferred?.(address) ?? false);
  }

  private receiveCookieReply(datagram: Uint8Array, now: number, sender: Address | undefined): "ok" | "dropped" {
    const decoded = decodeCookieReply(datagram);
    if (!decoded.ok) {
      this.stats.malformed++;
      return "dropped";
    }
    const address = this.peerByMac1.get(mac1Key(decoded.value.mac1));
    const peer = address === undefined ? undefined : this.peers.get(address);
    if (!peer || (sender !== undefined && sender !== address)) {
      this.stats.unexpectedCookieReply++;
      return "dropped";
    }
    this.stats.cookieReplies++;
    peer.receiveCookieReply(decoded.value, now);
    this.collect(peer);
    return "ok";
  }

  /** Hands back an initiation reported by `takeUnknownInitiators` once its peer exists. */
  acceptPending(initiator: UnknownInitiator<E>, now: number): boolean {
    const peer = this.peers.get(initiator.address);
    if (!peer || this.options.admit(initiator.address) !== "accept") return false;
    const last = this.lastTimestamps.get(initiator.address);
    if (last && compareTimestamps(initiator.pending.timestamp, last) <= 0) return false;
    return this.deliverInitiation(peer, initiator.pending, initiator.endpoint, now) === "ok";
  }

  private deliverInitiation(peer: Peer<E>, pending: PendingInitiation, endpoint: E, now: number): "ok" | "dropped" {
    const before = peer.stats.responsesSent;
    peer.receiveInitiation(pending, endpoint, now);
    this.collect(peer);
    if (peer.stats.responsesSent === before) return "dropped";
    this.lastTimestamps.delete(peer.remoteAddress); // re-inserted: the map's order is least recently used first
    this.lastTimestamps.set(peer.remoteAddress, pending.timestamp.slice());
    this.boundTimestamps();
    return "ok";
  }

  /** Keeps the timestamps of live peers, and of at most `maxRememberedTimestamps` removed ones. */
  private boundTimestamps(): void {
    const max = (this.options.maxRememberedTimestamps ?? 4096) + this.peers.size;
    if (this.lastTimestamps.size <= max) return;
    for (const address of this.lastTimestamps.keys()) {
      if (this.lastTimestamps.size <= max) break;
      if (!this.peers.has(address)) this.lastTimestamps.delete(address);
    }
  }

  tick(now: number): void {
    for (const peer of this.peers.values()) {
      const due = peer.nextTimeout();
      if (due !== null && due <= now) {
        peer.tick(now);
        this.collect(peer);
      }
    }
  }

  nextTimeout(): number | null {
    let next: number | null = null;
    for (const peer of this.peers.values()) {
      const t = peer.nextTimeout();
      if (t !== null && (next === null || t < next)) next = t;
    }
    return next;
  }

  takeTransmits(): Transmit<E>[] {
    const out = this.transmits;
    this.transmits = [];
    return out;
  }

  takeDelivered(): { from: Address; packet: Uint8Array }[] {
    const out = this.delivered;
    this.delivered = [];
    return out;
  }

  takeEvents(): { address: Address; event: PeerEvent<E> }[] {
    const out = this.events;
    this.events = [];
    return out;
  }

  takeUnknownInitiators(): UnknownInitiator<E>[] {
    const out = this.unknown;
    this.unknown = [];
    return out;
  }

  private collect(peer: Peer<E>): void {
    for (const t of peer.takeTransmits()) {
      this.transmits.push(t);
      if (t.frame[0] === TunnelMessage.Initiation) this.routeCookiesTo(peer, t.frame);
    }
    if (peer.endpoint !== null && this.sourceOfPeer.get(peer.remoteAddress) !== this.sourceKey(peer.endpoint)) this.indexSource(peer);
    for (const packet of peer.takeDelivered()) this.delivered.push({ from: peer.remoteAddress, packet });
    for (const event of peer.takeEvents()) this.events.push({ address: peer.remoteAddress, event });
  }

  /** Remembers which peer sent the initiation with this mac1 (its latest), for the cookie reply. */
  private routeCookiesTo(peer: Peer<E>, frame: Uint8Array): void {
    const key = mac1Key(frame.subarray(INITIATION_MAC_OFFSET, INITIATION_MAC_OFFSET + MAC_SIZE));
    const previous = this.mac1OfPeer.get(peer.remoteAddress);
    if (previous !== undefined) this.peerByMac1.delete(previous);
    this.mac1OfPeer.set(peer.remoteAddress, key);
    this.peerByMac1.set(key, peer.remoteAddress);
  }

  private indexSource(peer: Peer<E>): void {
    const address = peer.remoteAddress;
    const previous = this.sourceOfPeer.get(address);
    if (previous !== undefined && this.peerBySource.get(previous) === address) this.peerBySource.delete(previous);
    this.sourceOfPeer.delete(address);
    if (peer.endpoint === null) return;
    const source = this.sourceKey(peer.endpoint);
    this.sourceOfPeer.set(address, source);
    this.peerBySource.set(source, address);
  }

  private unindex(address: Address): void {
    const source = this.sourceOfPeer.get(address);
    if (source !== undefined && this.peerBySource.get(source) === address) this.peerBySource.delete(source);
    this.sourceOfPeer.delete(address);
    const mac1 = this.mac1OfPeer.get(address);
    if (mac1 !== undefined) this.peerByMac1.delete(mac1);
    this.mac1OfPeer.delete(address);
  }
}

function mac1Key(mac1: Uint8Array): string {
  let s = "";
  for (let i = 0; i < mac1.length; i++) s += String.fromCharCode(mac1[i]!);
  return s;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
