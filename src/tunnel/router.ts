/**
 * All the peers behind one UDP socket, sans I/O. The router owns the session
 * index table and our handshake keys; it routes every incoming datagram:
 *
 *   data and response frames  -> the peer that owns the receiver index
 *   initiations               -> decrypted here (mac1, two DH), then the peer for
 *                                the claimed initiator address, if `admit` allows it
 *   beacon messages           -> not ours: `receive` returns "beacon" for the shell
 *
 * An initiation from an address with no Peer yet is not answered: the router
 * reports it in `takeUnknownInitiators()` so the shell can fetch and pin that
 * node's key (registry lookup, async), `addPeer`, and hand the initiation back
 * with `acceptPending`. Replayed initiations are refused even across
 * `removePeer`/`addPeer`: the greatest timestamp accepted per address outlives
 * the Peer object.
 *
 *   const r = new TunnelRouter<E>({ localAddress, identity, admit, ... })
 *   r.addPeer(address, edPublicKey, endpoint?) / r.removePeer(address) / r.peer(address)
 *   r.send(address, packet, now) -> boolean (false: no such peer)
 *   r.sendTo(address, packet, endpoint, now) -> boolean   one packet to an explicit endpoint (path probes)
 *   r.rehandshake(address, now)           a new handshake now (the peer may have lost our session)
 *   r.receive(datagram, endpoint, now, sender?) -> "ok" | "beacon" | "dropped"
 *        sender: the node a relay says the frame came from; the frame is accepted
 *        only if it belongs to that node's sessions (a relay cannot misattribute it)
 *   r.tick(now) / r.nextTimeout()
 *   r.takeTransmits(): Transmit<E>[]      r.takeDelivered(): { from, packet }[]
 *   r.takeEvents(): { address, event }[]  r.takeUnknownInitiators(): UnknownInitiator<E>[]
 */
import type { Identity } from "../crypto/identity.ts";
import { consumeInitiation, localHandshakeKeys, type LocalHandshakeKeys, type PendingInitiation } from "../crypto/handshake.ts";
import type { RandomSource } from "../crypto/noise.ts";
import { compareTimestamps, TimestampClock } from "../crypto/timestamp.ts";
import type { Address } from "../protocol/address.ts";
import { isBeaconType, MIN_DATA_FRAME, TunnelMessage } from "../protocol/tunnel-frame.ts";
import { IndexTable } from "./index-table.ts";
import { Peer, type PeerEvent, type Transmit } from "./peer.ts";
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
  /** Bound on initiations waiting for a key lookup. */
  readonly maxUnknownInitiators?: number;
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
  };
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

  /** Adds (or returns the existing) peer with `identityKey` pinned. A different key for a known address replaces the peer. */
  addPeer(address: Address, identityKey: Uint8Array, endpoint?: E | null): Peer<E> {
    const existing = this.peers.get(address);
    if (existing && sameBytes(existing.remote.identityKey, identityKey)) {
      if (endpoint != null && existing.endpoint === null) existing.setEndpoint(endpoint, 0);
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
    });
    this.peers.set(address, peer);
    return peer;
  }

  /** Forgets a peer and every session with it (untrust, shutdown). Its frames are dropped from now on. */
  removePeer(address: Address): void {
    const peer = this.peers.get(address);
    if (!peer) return;
    peer.close();
    this.peers.delete(address);
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
    this.stats.malformed++;
    return "dropped";
  }

  private receiveInitiation(datagram: Uint8Array, endpoint: E, now: number, sender: Address | undefined): "ok" | "dropped" {
    const pending = consumeInitiation(this.local, this.localAddress, datagram);
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
    this.lastTimestamps.set(peer.remoteAddress, pending.timestamp.slice());
    return "ok";
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
    for (const t of peer.takeTransmits()) this.transmits.push(t);
    for (const packet of peer.takeDelivered()) this.delivered.push({ from: peer.remoteAddress, packet });
    for (const event of peer.takeEvents()) this.events.push({ address: peer.remoteAddress, event });
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
