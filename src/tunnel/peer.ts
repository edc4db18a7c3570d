/**
 * The tunnel session with one remote node, as a pure state machine (sans I/O):
 * the shell feeds it datagrams, outgoing Pilot packets and the time, and
 * drains what it produced. It never touches a socket, a timer or a clock.
 *
 *   const peer = new Peer<E>({ localAddress, remoteAddress, local, remoteIdentityKey, indices,
 *                              timestamps, endpoint?, random?, timers?, queueLimit?, persistentKeepalive? })
 *   peer.send(pilotPacket, now)              seal, or queue (bounded) and start a handshake
 *   peer.receive(datagram, endpoint, now)    any tunnel frame addressed to this peer
 *   peer.receiveInitiation(pending, endpoint, now)   an initiation the shell already decrypted
 *                                            (consumeInitiation) and matched to this peer's address
 *   peer.receiveCookieReply(reply, now)      a cookie reply to our latest initiation (the shell routes
 *                                            it by the mac1 it echoes, `lastInitiationMac1`)
 *   peer.connect(now)                        start a handshake without waiting for traffic
 *   peer.setEndpoint(endpoint, now)          trusted control-plane news (registry, beacon), or the
 *                                            shell's path choice (a direct address or a relay)
 *   peer.sendTo(packet, endpoint, now)       seal one packet to an explicit endpoint (path probes and
 *                                            their answers); false without a usable session
 *   peer.tick(now) / peer.nextTimeout()      timers: retries, keepalive, rekey, key expiry
 *   peer.takeTransmits(): { endpoint, frame }[]   datagrams to send
 *   peer.takeDelivered(): Uint8Array[]       authenticated Pilot packets from this peer
 *   peer.takeEvents(): PeerEvent<E>[]        established / handshake_failed / endpoint_changed /
 *                                            direct_heard / keys_expired / path_mtu
 *   peer.stats                               counters, including every drop reason
 *   peer.pathFrameSize / peer.maxPacketSize  the largest data frame / Pilot packet the current path
 *                                            carries (path MTU discovery, `path-mtu.ts`)
 *   peer.notePathLoss(now)                   traffic at the current size was lost (a stream's RTO):
 *                                            a black hole drops the size to the base
 *   peer.lastActiveAt                        when anything last happened with this peer (idle eviction)
 *
 * `E` is the shell's opaque endpoint (e.g. "ip:port"). Times are milliseconds
 * on any monotonic clock. The shell routes by the receiver index of responses
 * and data frames (`indices.lookup`) and by the claimed address of initiations.
 *
 * Security rules this enforces:
 * - nothing but handshake frames and AEAD-sealed data frames is ever sent;
 *   packets wait in the queue until a session exists;
 * - every received byte is authenticated before it changes any state: forged
 *   frames move no replay window, reset no session, change no endpoint;
 * - a handshake message alone never changes the endpoint: only an
 *   authenticated data frame that is the newest seen does (roaming), and only
 *   between direct endpoints: a frame that came through a relay never moves
 *   the endpoint, and while the shell sends through a relay only the shell
 *   moves it back to a direct one (`isRelay`);
 * - an initiation is accepted only with a timestamp newer than the last
 *   accepted one, so a replayed initiation does nothing, and a new responder
 *   session is used for sending only once the initiator's first data frame
 *   proves the initiator holds it;
 * - a decrypted packet must name this peer's address as its source;
 * - a responder under load may answer with a cookie reply instead of a
 *   response: it is accepted only for our latest initiation, once, and makes
 *   us send that handshake again at once with mac2 (once per handshake; later
 *   retries carry mac2 as long as the cookie is fresh);
 * - path MTU: frames above the base size go only to a direct endpoint whose
 *   peer acknowledged (in a sealed frame) a probe of at least that size, sent
 *   with don't-fragment (`Transmit.dontFragment`, also set on every frame
 *   above the base so none is ever fragmented); an ack naming anything but
 *   the probe in flight is ignored; any change of endpoint drops to the base.
 *
 * Path MTU probe and ack (data frame plaintexts, told apart from Pilot packets
 * by byte 0, whose high nibble is a Pilot packet's version 1):
 *   probe  u8 0xF0 | u8 0 | u16 0 | u32 id | u32 frame size | zeros up to the frame size
 *   ack    u8 0xF1 | u8 0 | u16 0 | u32 id | u32 frame size           (12 bytes)
 * Older daemons drop both (a short or wrong-source packet), so they never ack.
 */
import { DataSession } from "../crypto/data-session.ts";
import {
  acceptInitiation,
  consumeInitiation,
  consumeResponse,
  createInitiation,
  remoteHandshakeKeys,
  type InitiatorHandshake,
  type LocalHandshakeKeys,
  type PendingInitiation,
  type RemoteHandshakeKeys,
} from "../crypto/handshake.ts";
import { CookieJar } from "../crypto/cookie.ts";
import { secureRandom, type RandomSource } from "../crypto/noise.ts";
import { compareTimestamps, type TimestampClock } from "../crypto/timestamp.ts";
import { writeAddress, type Address } from "../protocol/address.ts";
import { HEADER_SIZE } from "../protocol/packet.ts";
import {
  BASE_DATA_FRAME,
  DATA_HEADER_SIZE,
  decodeTunnelFrame,
  MAX_DATA_FRAME,
  MAX_TUNNEL_PLAINTEXT,
  MIN_DATA_FRAME,
  TAG_SIZE,
  TunnelMessage,
  type CookieReplyFrame,
  type ResponseFrame,
} from "../protocol/tunnel-frame.ts";
import type { IndexTable } from "./index-table.ts";
import { DEFAULT_TIMERS, deadPeerTimeout, receiveRekeyTime, type TunnelTimers } from "./timers.ts";
import { PathMtu, type PathMtuState } from "./path-mtu.ts";

export const DEFAULT_QUEUE_LIMIT = 256;
const EMPTY = new Uint8Array(0);
export const PMTU_PROBE = 0xf0;
export const PMTU_ACK = 0xf1;
/** A packet within this many bytes of the largest the path carries counts as bulk (a full segment). */
const PMTU_FULL_SLACK = 64;
const PMTU_MESSAGE_SIZE = 12;

export type DropReason =
  /** Not a tunnel frame at all (a plaintext Pilot packet, junk, a bad length). */
  | "malformed"
  /** A beacon message handed to a peer. */
  | "unexpected_beacon"
  /** A data frame for an index that is not one of our sessions with this peer. */
  | "unknown_index"
  /** A data frame for a session past its lifetime. */
  | "expired_session"
  | "replay"
  | "auth_failed"
  | "counter_limit"
  /** Authenticated, but the Pilot packet inside claims another source address. */
  | "wrong_source"
  /** Authenticated, but too short to be a Pilot packet. */
  | "short_packet"
  /** An initiation that failed mac1 or decryption. */
  | "bad_initiation"
  /** An initiation from another address than this peer's. */
  | "wrong_peer"
  /** An initiation whose static key is not this peer's pinned identity. */
  | "wrong_identity"
  /** An initiation with a timestamp not newer than the last accepted one (replay). */
  | "stale_initiation"
  | "initiation_flood"
  /** A response when we have no handshake with that index (late, duplicate or replayed). */
  | "unexpected_response"
  | "bad_response"
  /** A cookie reply that does not answer our latest initiation (late, duplicate, forged). */
  | "unexpected_cookie"
  /** A cookie reply that does not decrypt. */
  | "bad_cookie"
  /** Outgoing packets larger than the current path carries (its size dropped since they were made). */
  | "oversize"
  /** A path MTU probe or ack that is not well formed (authenticated, so a buggy peer). */
  | "bad_pmtu"
  /** Outgoing packets: dropped from a full queue, or with the queue when a handshake gave up. */
  | "queue_overflow"
  | "handshake_timeout";

export interface PeerStats {
  framesSent: number;
  framesReceived: number;
  bytesSent: number;
  bytesReceived: number;
  packetsDelivered: number;
  keepalivesSent: number;
  keepalivesReceived: number;
  initiationsSent: number;
  responsesSent: number;
  handshakesCompleted: number;
  handshakesFailed: number;
  /** Cookies taken from a responder under load. */
  cookiesReceived: number;
  endpointChanges: number;
  pmtuProbesSent: number;
  pmtuProbesAnswered: number;
  pmtuAcksReceived: number;
  readonly drops: Record<DropReason, number>;
}

export interface Transmit<E> {
  readonly endpoint: E;
  readonly frame: Uint8Array;
  /**
   * Send with don't-fragment (IP_PMTUDISC_PROBE): path MTU probes and every
   * frame above the base size. Base-size frames never set it.
   */
  readonly dontFragment?: boolean;
}

export type PeerEvent<E> =
  /** `endpoint`: where the frame that completed the handshake came from (the response, or the initiator's first data frame). */
  | { readonly type: "established"; readonly role: "initiator" | "responder"; readonly localIndex: number; readonly endpoint: E }
  | { readonly type: "handshake_failed"; readonly reason: "timeout"; readonly droppedPackets: number }
  | { readonly type: "endpoint_changed"; readonly endpoint: E }
  /**
   * An authenticated frame arrived directly (not through a relay) from an
   * endpoint we are not sending to: a path the shell may want to try. At most
   * once a second per endpoint.
   */
  | { readonly type: "direct_heard"; readonly endpoint: E }
  | { readonly type: "keys_expired" }
  /** The largest data frame the path carries changed (path MTU discovery, or a new path: the base). */
  | { readonly type: "path_mtu"; readonly size: number };

/** Path MTU discovery for a Peer: which frame sizes to search on a direct endpoint. */
export interface PeerPathMtuOptions<E> {
  /** Candidate frame sizes for a direct endpoint, ascending, each above BASE_DATA_FRAME and at most MAX_DATA_FRAME. */
  readonly candidates: (endpoint: E) => readonly number[];
  readonly probeTimeout?: number;
  readonly maxProbes?: number;
  readonly raiseInterval?: number;
}

export interface PeerOptions<E> {
  readonly localAddress: Address;
  readonly remoteAddress: Address;
  /** Our identity's handshake keys (`localHandshakeKeys(identity)`). */
  readonly local: LocalHandshakeKeys;
  /** The Ed25519 key pinned for `remoteAddress`. */
  readonly remoteIdentityKey: Uint8Array | RemoteHandshakeKeys;
  /** Shared by every peer on the same tunnel socket. */
  readonly indices: IndexTable<unknown>;
  /** Source of handshake timestamps; one clock per identity. */
  readonly timestamps: TimestampClock | (() => Uint8Array);
  readonly endpoint?: E | null;
  readonly random?: RandomSource;
  readonly timers?: Partial<TunnelTimers>;
  readonly queueLimit?: number;
  /** Send a keepalive whenever nothing was sent for this long (keeps NAT mappings open). */
  readonly persistentKeepalive?: number;
  readonly sameEndpoint?: (a: E, b: E) => boolean;
  /** When the peer was created (it counts as activity for idle eviction); default: never. */
  readonly now?: number;
  /**
   * Endpoints that stand for a relay rather than an address. Frames received
   * through one never move the endpoint, and no frame moves it away from one
   * (the shell decides when a direct path is proven). Default: none.
   */
  readonly isRelay?: (e: E) => boolean;
  /** Path MTU discovery on direct endpoints; none: every frame stays at the base size. */
  readonly pathMtu?: PeerPathMtuOptions<E> | null;
}

interface Keypair {
  readonly session: DataSession;
  readonly createdAt: number;
  readonly isInitiator: boolean;
}

interface PendingHandshake {
  state: InitiatorHandshake | null;
  readonly startedAt: number;
  attempts: number;
  retryAt: number;
  /** When the initiation `state` belongs to was sent: its response times the round trip. */
  stateSentAt: number;
  /** A cookie reply already made us send this handshake again at once. */
  cookieRetried: boolean;
}

function newStats(): PeerStats {
  return {
    framesSent: 0,
    framesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    packetsDelivered: 0,
    keepalivesSent: 0,
    keepalivesReceived: 0,
    initiationsSent: 0,
    responsesSent: 0,
    handshakesCompleted: 0,
    handshakesFailed: 0,
    cookiesReceived: 0,
    endpointChanges: 0,
    pmtuProbesSent: 0,
    pmtuProbesAnswered: 0,
    pmtuAcksReceived: 0,
    drops: {
      malformed: 0,
      unexpected_beacon: 0,
      unknown_index: 0,
      expired_session: 0,
      replay: 0,
      auth_failed: 0,
      counter_limit: 0,
      wrong_source: 0,
      short_packet: 0,
      bad_initiation: 0,
      wrong_peer: 0,
      wrong_identity: 0,
      stale_initiation: 0,
      initiation_flood: 0,
      unexpected_response: 0,
      bad_response: 0,
      unexpected_cookie: 0,
      bad_cookie: 0,
      oversize: 0,
      bad_pmtu: 0,
      queue_overflow: 0,
      handshake_timeout: 0,
    },
  };
}

export class Peer<E = string> {
  readonly localAddress: Address;
  readonly remoteAddress: Address;
  readonly remote: RemoteHandshakeKeys;
  readonly stats: PeerStats = newStats();
  private readonly local: LocalHandshakeKeys;
  private readonly indices: IndexTable<unknown>;
  private readonly nextTimestamp: () => Uint8Array;
  private readonly random: RandomSource;
  private readonly timers: TunnelTimers;
  private readonly queueLimit: number;
  private readonly persistentKeepalive: number;
  private readonly sameEndpoint: (a: E, b: E) => boolean;
  private readonly isRelay: (e: E) => boolean;
  private readonly remoteAddressBytes = new Uint8Array(6);
  private readonly cookies: CookieJar;
  private readonly createdAt: number;
  private readonly pmtu: PathMtu;
  private readonly pmtuCandidates: ((endpoint: E) => readonly number[]) | null;
  /** An authenticated frame arrived since the last path MTU probe left; if not, the next probe waits (`pmtuWaiting`). */
  private pmtuHeard = true;
  private pmtuWaiting = false;
  /**
   * Something worth a larger size was sent (a packet that fills the base frame: bulk). Until
   * then nothing is probed: a peer that only pings or chats gains nothing from a search.
   */
  private pmtuWanted = false;

  private endpointValue: E | null;
  private current: Keypair | null = null;
  private previous: Keypair | null = null;
  private next: Keypair | null = null;
  private handshake: PendingHandshake | null = null;
  private lastAcceptedTimestamp: Uint8Array | null = null;
  private lastAcceptedInitiationAt = -Infinity;
  private queue: Uint8Array[] = [];
  private lastSentAt = -Infinity;
  /** Round trip of our last completed handshake as initiator (ms), or null. */
  handshakeRtt: number | null = null;
  /** When the last authenticated frame from this peer arrived (-Infinity: never). */
  lastReceivedAt = -Infinity;
  /** When the last authenticated frame arrived directly, not through a relay. */
  lastDirectAt = -Infinity;
  /** When we last sent a packet with `send` (application traffic, not probes or keepalives). */
  lastDataSentAt = -Infinity;
  /** When a handshake last completed (a new session became the one we send on). */
  lastHandshakeAt = -Infinity;
  private lastHeard: E | null = null;
  private lastHeardAt = -Infinity;
  private keepaliveAt: number | null = null;
  private deadPeerAt: number | null = null;
  private zeroKeysAt: number | null = null;

  private transmits: Transmit<E>[] = [];
  private delivered: Uint8Array[] = [];
  private events: PeerEvent<E>[] = [];

  constructor(options: PeerOptions<E>) {
    this.localAddress = options.localAddress;
    this.remoteAddress = options.remoteAddress;
    this.local = options.local;
    this.remote =
      options.remoteIdentityKey instanceof Uint8Array ? remoteHandshakeKeys(options.remoteIdentityKey) : options.remoteIdentityKey;
    this.indices = options.indices;
    const ts = options.timestamps;
    this.nextTimestamp = typeof ts === "function" ? ts : () => ts.next();
    this.random = options.random ?? secureRandom;
    this.timers = { ...DEFAULT_TIMERS, ...options.timers };
    this.queueLimit = options.queueLimit ?? DEFAULT_QUEUE_LIMIT;
    this.persistentKeepalive = options.persistentKeepalive ?? 0;
    this.sameEndpoint = options.sameEndpoint ?? Object.is;
    this.isRelay = options.isRelay ?? (() => false);
    this.endpointValue = options.endpoint ?? null;
    this.cookies = new CookieJar(this.remote.staticPublic);
    this.createdAt = options.now ?? -Infinity;
    const pm = options.pathMtu ?? null;
    this.pmtuCandidates = pm ? pm.candidates : null;
    this.pmtu = new PathMtu({ base: BASE_DATA_FRAME, probeTimeout: pm?.probeTimeout, maxProbes: pm?.maxProbes, raiseInterval: pm?.raiseInterval });
    writeAddress(new DataView(this.remoteAddressBytes.buffer), 0, options.remoteAddress);
  }

  // ---- inspection -------------------------------------------------------

  get endpoint(): E | null {
    return this.endpointValue;
  }

  /** True when packets sent now go out at once (a usable session and an endpoint). */
  isEstablished(now: number): boolean {
    return this.sendingKeypair(now) !== null && this.endpointValue !== null;
  }

  /** The session we send on, if any: for tests and diagnostics. */
  get currentSession(): DataSession | null {
    return this.current?.session ?? null;
  }

  get handshakeInProgress(): boolean {
    return this.handshake !== null;
  }

  /** The largest data frame the current path carries (BASE_DATA_FRAME until a probe proved more). */
  get pathFrameSize(): number {
    return this.pmtu.size;
  }

  /** The largest Pilot packet `send` takes now. */
  get maxPacketSize(): number {
    return this.pmtu.size - DATA_HEADER_SIZE - TAG_SIZE;
  }

  /** Where path MTU discovery stands on the current path. */
  get pathMtuState(): PathMtuState {
    return this.pmtu.state;
  }

  get queuedPackets(): number {
    return this.queue.length;
  }

  /**
   * When anything last happened with this peer: created, a handshake started,
   * answered or completed, an authenticated frame received, a packet sent.
   */
  get lastActiveAt(): number {
    return Math.max(
      this.createdAt,
      this.lastReceivedAt,
      this.lastDataSentAt,
      this.lastHandshakeAt,
      this.lastAcceptedInitiationAt,
      this.handshake?.stateSentAt ?? -Infinity,
    );
  }

  // ---- outputs ----------------------------------------------------------

  takeTransmits(): Transmit<E>[] {
    const out = this.transmits;
    this.transmits = [];
    return out;
  }

  takeDelivered(): Uint8Array[] {
    const out = this.delivered;
    this.delivered = [];
    return out;
  }

  takeEvents(): PeerEvent<E>[] {
    const out = this.events;
    this.events = [];
    return out;
  }

  // ---- sending ----------------------------------------------------------

  /** Sends one encoded Pilot packet (34-byte header + payload) to this peer. */
  send(packet: Uint8Array, now: number): void {
    if (packet.length < HEADER_SIZE || packet.length > MAX_TUNNEL_PLAINTEXT) {
      throw new RangeError(`a tunnel packet is ${HEADER_SIZE}-${MAX_TUNNEL_PLAINTEXT} bytes, got ${packet.length}`);
    }
    this.lastDataSentAt = now;
    if (packet.length > this.maxPacketSize) {
      this.stats.drops.oversize++;
      return;
    }
    if (!this.pmtuWanted && packet.length + PMTU_FULL_SLACK >= this.maxPacketSize) {
      this.pmtuWanted = true;
      this.pmtuWaiting = false;
      this.pmtu.resume(now);
      this.pumpPathMtu(now);
    }
    const keypair = this.sendingKeypair(now);
    if (keypair !== null && this.endpointValue !== null && this.seal(keypair, packet, now)) {
      this.maybeRekeyAfterSend(keypair, now);
      return;
    }
    this.enqueue(packet);
    this.startHandshake(now);
  }

  /**
   * Seals one packet to `endpoint` without changing where the peer's traffic
   * goes: path probes and their answers. Nothing is queued: false when there
   * is no usable session (or the counter is spent).
   */
  sendTo(packet: Uint8Array, endpoint: E, now: number): boolean {
    if (packet.length < HEADER_SIZE || packet.length > MAX_TUNNEL_PLAINTEXT) {
      throw new RangeError(`a tunnel packet is ${HEADER_SIZE}-${MAX_TUNNEL_PLAINTEXT} bytes, got ${packet.length}`);
    }
    const keypair = this.sendingKeypair(now);
    if (keypair === null) return false;
    if (packet.length > BASE_DATA_FRAME - DATA_HEADER_SIZE - TAG_SIZE) {
      // Sent off the current path: only the base size is known to fit there.
      this.stats.drops.oversize++;
      return false;
    }
    return this.seal(keypair, packet, now, endpoint);
  }

  /** Traffic at the current size was lost (a stream's retransmission timeout): maybe a black hole. */
  notePathLoss(now: number): void {
    if (this.pmtu.onBlackHole(now)) this.events.push({ type: "path_mtu", size: this.pmtu.size });
    this.pumpPathMtu(now);
  }

  /** The local stack refused a probe of `size` (EMSGSIZE: larger than our own interface): it fails at once. */
  probeRefused(size: number, now: number): void {
    this.pmtu.onProbeRefused(size, now);
    this.pumpPathMtu(now);
  }

  connect(now: number): void {
    if (this.sendingKeypair(now) === null) this.startHandshake(now);
  }

  /**
   * Starts a new handshake now even though a session exists (unless one is
   * already running): the shell suspects the peer lost our session (it
   * restarted). The current session keeps working until the new one replaces it.
   */
  rehandshake(now: number): void {
    this.startHandshake(now);
  }

  /** A new endpoint from the control plane (registry or beacon), which is trusted to name it. */
  setEndpoint(endpoint: E, now: number): void {
    const changed = this.endpointValue === null || !this.sameEndpoint(this.endpointValue, endpoint);
    this.endpointValue = endpoint;
    if (!changed) return;
    this.pathChanged(now);
    const hs = this.handshake;
    if (hs !== null && hs.state === null) this.sendInitiation(hs, now);
  }

  private sendingKeypair(now: number): Keypair | null {
    const kp = this.current;
    if (kp === null || now - kp.createdAt >= this.timers.rejectAfterTime || !kp.session.canSend) return null;
    return kp;
  }

  private seal(keypair: Keypair, plaintext: Uint8Array, now: number, to?: E): boolean {
    const frame = new Uint8Array(DATA_HEADER_SIZE + plaintext.length + TAG_SIZE);
    if (keypair.session.seal(plaintext, frame) < 0) return false;
    const endpoint = to ?? (this.endpointValue as E);
    this.transmits.push(frame.length > BASE_DATA_FRAME ? { endpoint, frame, dontFragment: true } : { endpoint, frame });
    this.stats.framesSent++;
    this.stats.bytesSent += frame.length;
    this.lastSentAt = now;
    // Anything we send answers the peer's traffic: no separate keepalive needed.
    this.keepaliveAt = null;
    if (plaintext.length > 0) {
      // A probe toward a candidate that may never answer is no sign of a dead session.
      if (this.deadPeerAt === null && to === undefined) this.deadPeerAt = now + deadPeerTimeout(this.timers);
    } else {
      this.stats.keepalivesSent++;
    }
    return true;
  }

  private maybeRekeyAfterSend(keypair: Keypair, now: number): void {
    if (this.handshake !== null) return;
    const tooOld = keypair.isInitiator && now - keypair.createdAt >= this.timers.rekeyAfterTime;
    if (tooOld || keypair.session.sendCounter >= this.timers.rekeyAfterMessages) this.startHandshake(now);
  }

  private enqueue(packet: Uint8Array): void {
    if (this.queue.length >= this.queueLimit) {
      this.queue.shift();
      this.stats.drops.queue_overflow++;
    }
    this.queue.push(packet.slice());
  }

  private flushQueue(now: number): void {
    const keypair = this.sendingKeypair(now);
    if (keypair === null || this.endpointValue === null) return;
    const queued = this.queue;
    this.queue = [];
    const max = this.maxPacketSize;
    for (let i = 0; i < queued.length; i++) {
      if (queued[i]!.length > max) {
        this.stats.drops.oversize++;
        continue;
      }
      if (!this.seal(keypair, queued[i]!, now)) {
        this.queue = queued.slice(i);
        break;
      }
    }
    this.maybeRekeyAfterSend(keypair, now);
  }

  private sendKeepalive(now: number): void {
    const keypair = this.sendingKeypair(now);
    if (keypair !== null && this.endpointValue !== null) this.seal(keypair, EMPTY, now);
  }

  // ---- handshake: initiator ---------------------------------------------

  private startHandshake(now: number): void {
    if (this.handshake !== null) return;
    const hs: PendingHandshake = { state: null, startedAt: now, attempts: 0, retryAt: now, stateSentAt: now, cookieRetried: false };
    this.handshake = hs;
    this.sendInitiation(hs, now);
  }

  private retryDelay(attempts: number): number {
    const base = Math.min(this.timers.firstRetry * 2 ** (attempts - 1), this.timers.rekeyTimeout);
    const r = this.random(2);
    return base + Math.floor((((r[0]! << 8) | r[1]!) / 65536) * this.timers.retryJitter);
  }

  private sendInitiation(hs: PendingHandshake, now: number): void {
    hs.attempts++;
    hs.retryAt = now + this.retryDelay(hs.attempts);
    if (this.endpointValue === null) return; // retried once setEndpoint() gives us somewhere to send
    if (hs.state !== null) this.indices.release(hs.state.localIndex);
    const { frame, state } = createInitiation({
      local: this.local,
      remote: this.remote,
      localAddress: this.localAddress,
      remoteAddress: this.remoteAddress,
      localIndex: this.indices.allocate(this),
      timestamp: this.nextTimestamp(),
      random: this.random,
    });
    this.cookies.stamp(frame, now);
    hs.state = state;
    hs.stateSentAt = now;
    this.transmits.push({ endpoint: this.endpointValue, frame });
    this.stats.initiationsSent++;
  }

  private receiveResponse(frame: ResponseFrame, endpoint: E, now: number): void {
    const hs = this.handshake;
    if (hs === null || hs.state === null || frame.receiverIndex !== hs.state.localIndex) {
      this.stats.drops.unexpected_response++;
      return;
    }
    const keys = consumeResponse(hs.state, frame);
    if (!keys.ok) {
      this.stats.drops.bad_response++;
      return;
    }
    this.handshake = null;
    // The response answers exactly this attempt (its index), so the sample is unambiguous.
    this.handshakeRtt = now - hs.stateSentAt;
    const keypair = this.newKeypair(keys.value, true, now);
    // Initiator: the new session is usable at once; the one we answered as responder (if any)
    // becomes `previous` so frames the peer sends on it still open.
    if (this.next !== null) {
      this.releaseKeypair(this.previous);
      this.previous = this.next;
      this.next = null;
      this.releaseKeypair(this.current);
    } else {
      this.releaseKeypair(this.previous);
      this.previous = this.current;
    }
    this.current = keypair;
    this.stats.handshakesCompleted++;
    this.lastHandshakeAt = now;
    this.events.push({ type: "established", role: "initiator", localIndex: keypair.session.localIndex, endpoint });
    const hadQueued = this.queue.length > 0;
    this.flushQueue(now);
    // The responder may not send on the session until it hears from us on it.
    if (!hadQueued) this.sendKeepalive(now);
    this.sessionReady(now);
  }

  /** The responder is under load and sent a cookie instead of a response: send the handshake again with mac2. */
  receiveCookieReply(reply: CookieReplyFrame, now: number): void {
    const hs = this.handshake;
    if (hs === null || hs.state === null || !this.cookies.awaits(reply.mac1)) {
      this.stats.drops.unexpected_cookie++;
      return;
    }
    if (!this.cookies.consumeReply(reply, now).ok) {
      this.stats.drops.bad_cookie++;
      return;
    }
    this.stats.cookiesReceived++;
    if (!hs.cookieRetried) {
      hs.cookieRetried = true;
      this.sendInitiation(hs, now);
    }
  }

  // ---- handshake: responder ---------------------------------------------

  receiveInitiation(pending: PendingInitiation, endpoint: E, now: number): void {
    if (pending.initiatorAddress !== this.remoteAddress) {
      this.stats.drops.wrong_peer++;
      return;
    }
    if (this.lastAcceptedTimestamp !== null && compareTimestamps(pending.timestamp, this.lastAcceptedTimestamp) <= 0) {
      this.stats.drops.stale_initiation++;
      return;
    }
    if (now - this.lastAcceptedInitiationAt < this.timers.minInitiationInterval) {
      this.stats.drops.initiation_flood++;
      return;
    }
    const localIndex = this.indices.allocate(this);
    const accepted = acceptInitiation(pending, this.remote, { localIndex, random: this.random });
    if (!accepted.ok) {
      this.indices.release(localIndex);
      this.stats.drops.wrong_identity++;
      return;
    }
    this.lastAcceptedTimestamp = pending.timestamp.slice();
    this.lastAcceptedInitiationAt = now;
    const keypair = this.newKeypair(accepted.value.keys, false, now);
    this.releaseKeypair(this.next);
    this.next = keypair;
    this.releaseKeypair(this.previous);
    this.previous = null;
    // The response goes back where the initiation came from; the peer's endpoint is not
    // changed until an authenticated data frame arrives from it.
    this.transmits.push({ endpoint, frame: accepted.value.frame });
    this.stats.responsesSent++;
  }

  private newKeypair(
    keys: { sendKey: Uint8Array; receiveKey: Uint8Array; localIndex: number; remoteIndex: number },
    isInitiator: boolean,
    now: number,
  ): Keypair {
    this.zeroKeysAt = now + this.timers.zeroKeysAfter;
    return {
      session: new DataSession({
        ...keys,
        localAddress: this.localAddress,
        remoteAddress: this.remoteAddress,
        rejectAfterMessages: this.timers.rejectAfterMessages,
      }),
      createdAt: now,
      isInitiator,
    };
  }

  private releaseKeypair(keypair: Keypair | null): void {
    if (keypair !== null) this.indices.release(keypair.session.localIndex);
  }

  // ---- receiving ----------------------------------------------------------

  /** Handles any datagram the shell routed to this peer. */
  receive(datagram: Uint8Array, endpoint: E, now: number): void {
    if (datagram.length >= MIN_DATA_FRAME && datagram[0] === TunnelMessage.Data) {
      // Hot path: DataSession.open validates the rest of the frame itself.
      const index = ((datagram[4]! << 24) | (datagram[5]! << 16) | (datagram[6]! << 8) | datagram[7]!) >>> 0;
      this.receiveData(datagram, index, endpoint, now);
      return;
    }
    const decoded = decodeTunnelFrame(datagram);
    if (!decoded.ok) {
      this.stats.drops.malformed++;
      return;
    }
    const frame = decoded.value;
    switch (frame.kind) {
      case "data":
        this.receiveData(datagram, frame.receiverIndex, endpoint, now);
        return;
      case "response":
        this.receiveResponse(frame, endpoint, now);
        return;
      case "cookie_reply":
        this.receiveCookieReply(frame, now);
        return;
      case "initiation": {
        const pending = consumeInitiation(this.local, this.localAddress, frame);
        if (!pending.ok) {
          this.stats.drops.bad_initiation++;
          return;
        }
        this.receiveInitiation(pending.value, endpoint, now);
        return;
      }
      case "beacon":
        this.stats.drops.unexpected_beacon++;
        return;
    }
  }

  private keypairFor(index: number): Keypair | null {
    if (this.current !== null && this.current.session.localIndex === index) return this.current;
    if (this.next !== null && this.next.session.localIndex === index) return this.next;
    if (this.previous !== null && this.previous.session.localIndex === index) return this.previous;
    return null;
  }

  private receiveData(datagram: Uint8Array, receiverIndex: number, endpoint: E, now: number): void {
    const keypair = this.keypairFor(receiverIndex);
    if (keypair === null) {
      this.stats.drops.unknown_index++;
      return;
    }
    if (now - keypair.createdAt >= this.timers.rejectAfterTime) {
      this.stats.drops.expired_session++;
      return;
    }
    const session = keypair.session;
    const plaintext = session.open(datagram);
    if (plaintext === null) {
      const reason = session.lastError;
      if (reason === "replay" || reason === "auth_failed" || reason === "counter_limit") this.stats.drops[reason]++;
      else if (reason === "wrong_index") this.stats.drops.unknown_index++;
      else this.stats.drops.malformed++;
      return;
    }
    // From here on the frame is authentic: it was sealed by the holder of this session's keys.
    this.lastReceivedAt = now;
    this.pmtuHeard = true;
    if (this.pmtuWaiting && this.pmtuWanted) {
      this.pmtuWaiting = false;
      this.pmtu.resume(now);
      this.pumpPathMtu(now);
    }
    this.stats.framesReceived++;
    this.stats.bytesReceived += datagram.length;
    this.deadPeerAt = null;
    if (!this.isRelay(endpoint)) {
      this.lastDirectAt = now;
      if (session.lastAdvanced) this.roam(endpoint, now);
      const current = this.endpointValue;
      if (current === null || !this.sameEndpoint(current, endpoint)) this.heardDirect(endpoint, now);
    }
    if (keypair === this.next) this.confirmNext(endpoint, now);
    if (keypair === this.current && keypair.isInitiator && this.handshake === null) {
      if (now - keypair.createdAt >= receiveRekeyTime(this.timers)) this.startHandshake(now);
    }
    if (plaintext.length === 0) {
      this.stats.keepalivesReceived++;
      return;
    }
    const kind = plaintext[0]!;
    if (kind === PMTU_PROBE || kind === PMTU_ACK) {
      this.receivePathMtu(plaintext, datagram.length, endpoint, now);
      return;
    }
    if (plaintext.length < HEADER_SIZE) {
      this.stats.drops.short_packet++;
      return;
    }
    const source = this.remoteAddressBytes;
    for (let i = 0; i < 6; i++) {
      if (plaintext[4 + i] !== source[i]) {
        this.stats.drops.wrong_source++;
        return;
      }
    }
    this.delivered.push(plaintext);
    this.stats.packetsDelivered++;
    if (this.keepaliveAt === null) this.keepaliveAt = now + this.timers.keepaliveTimeout;
  }

  /** The initiator has used the session we answered: it becomes the one we send on. */
  private confirmNext(endpoint: E, now: number): void {
    const next = this.next!;
    this.releaseKeypair(this.previous);
    this.previous = this.current;
    this.current = next;
    this.next = null;
    this.stats.handshakesCompleted++;
    this.lastHandshakeAt = now;
    this.events.push({ type: "established", role: "responder", localIndex: next.session.localIndex, endpoint });
    this.flushQueue(now);
    this.sessionReady(now);
  }

  private roam(endpoint: E, now: number): void {
    if (this.endpointValue !== null && (this.sameEndpoint(this.endpointValue, endpoint) || this.isRelay(this.endpointValue))) return;
    this.endpointValue = endpoint;
    this.stats.endpointChanges++;
    this.events.push({ type: "endpoint_changed", endpoint });
    this.pathChanged(now);
  }

  // ---- path MTU -----------------------------------------------------------

  /** A new endpoint: the base size at once, and a new search if it is direct. */
  private pathChanged(now: number): void {
    const before = this.pmtu.size;
    const e = this.endpointValue;
    this.pmtu.reset(e !== null && this.pmtuCandidates !== null && !this.isRelay(e) ? this.pmtuCandidates(e) : [], now);
    if (this.pmtu.size !== before) this.events.push({ type: "path_mtu", size: this.pmtu.size });
    this.pumpPathMtu(now);
  }

  /** A session became usable: the first search on this path starts, or a waiting probe goes now. */
  private sessionReady(now: number): void {
    if (this.pmtu.state === "disabled" && this.pmtu.size === BASE_DATA_FRAME && this.pmtuCandidates !== null) {
      const e = this.endpointValue;
      if (e !== null && !this.isRelay(e) && this.pmtuCandidates(e).length > 0 && this.pmtu.probesSent === 0) this.pathChanged(now);
    }
    this.pmtuWaiting = false;
    this.pmtu.resume(now);
    this.pumpPathMtu(now);
  }

  /** Sends the probe the search wants now, if any (sealed, padded to its size, don't-fragment). */
  private pumpPathMtu(now: number): void {
    if (this.pmtu.state === "disabled") return;
    const due = this.pmtu.nextTimeout();
    if (due === null || due > now) return;
    this.pmtu.tick(now);
    const keypair = this.sendingKeypair(now);
    const e = this.endpointValue;
    // Probe only a path in use: a session to seal with, and the peer heard from since our last
    // probe (a peer gone quiet, or gone, is not sent probe after probe). Until then, wait.
    if (keypair === null || e === null || this.isRelay(e) || !this.pmtuHeard || !this.pmtuWanted) {
      if (this.pmtu.nextTimeout() !== null && this.pmtu.nextTimeout()! <= now) {
        this.pmtu.postpone(Infinity);
        this.pmtuWaiting = true;
      }
      return;
    }
    const probe = this.pmtu.pollProbe(now);
    if (probe === null) return;
    this.pmtuHeard = false;
    const body = new Uint8Array(probe.size - DATA_HEADER_SIZE - TAG_SIZE);
    const v = new DataView(body.buffer);
    body[0] = PMTU_PROBE;
    v.setUint32(4, probe.id);
    v.setUint32(8, probe.size);
    const frame = new Uint8Array(probe.size);
    if (keypair.session.seal(body, frame) < 0) return;
    this.transmits.push({ endpoint: e, frame, dontFragment: true });
    this.stats.framesSent++;
    this.stats.bytesSent += frame.length;
    this.stats.pmtuProbesSent++;
  }

  private receivePathMtu(plaintext: Uint8Array, frameSize: number, endpoint: E, now: number): void {
    if (plaintext.length < PMTU_MESSAGE_SIZE || (plaintext[1]! | plaintext[2]! | plaintext[3]!) !== 0) {
      this.stats.drops.bad_pmtu++;
      return;
    }
    const v = new DataView(plaintext.buffer, plaintext.byteOffset, PMTU_MESSAGE_SIZE);
    const id = v.getUint32(4);
    const size = v.getUint32(8);
    if (plaintext[0] === PMTU_PROBE) {
      // A probe must be exactly the size it names; the answer is small and goes back the way it came.
      if (size !== frameSize || size > MAX_DATA_FRAME) {
        this.stats.drops.bad_pmtu++;
        return;
      }
      const keypair = this.sendingKeypair(now);
      if (keypair === null) return;
      const ack = new Uint8Array(PMTU_MESSAGE_SIZE);
      const w = new DataView(ack.buffer);
      ack[0] = PMTU_ACK;
      w.setUint32(4, id);
      w.setUint32(8, size);
      if (this.seal(keypair, ack, now, endpoint)) this.stats.pmtuProbesAnswered++;
      return;
    }
    if (plaintext.length !== PMTU_MESSAGE_SIZE) {
      this.stats.drops.bad_pmtu++;
      return;
    }
    this.stats.pmtuAcksReceived++;
    if (this.pmtu.onAck(id, size, now)) this.events.push({ type: "path_mtu", size: this.pmtu.size });
    this.pumpPathMtu(now);
  }

  private heardDirect(endpoint: E, now: number): void {
    if (this.lastHeard !== null && this.sameEndpoint(this.lastHeard, endpoint) && now - this.lastHeardAt < 1000) return;
    this.lastHeard = endpoint;
    this.lastHeardAt = now;
    this.events.push({ type: "direct_heard", endpoint });
  }

  // ---- timers -------------------------------------------------------------

  nextTimeout(): number | null {
    let t = Infinity;
    if (this.handshake !== null) t = Math.min(t, this.handshake.retryAt);
    if (this.keepaliveAt !== null) t = Math.min(t, this.keepaliveAt);
    if (this.deadPeerAt !== null) t = Math.min(t, this.deadPeerAt);
    if (this.zeroKeysAt !== null) t = Math.min(t, this.zeroKeysAt);
    if (this.persistentKeepalive > 0 && this.current !== null) t = Math.min(t, this.lastSentAt + this.persistentKeepalive);
    const pmtuAt = this.pmtu.nextTimeout();
    if (pmtuAt !== null) t = Math.min(t, pmtuAt);
    return t === Infinity ? null : t;
  }

  tick(now: number): void {
    const hs = this.handshake;
    if (hs !== null && now >= hs.retryAt) {
      if (now - hs.startedAt >= this.timers.rekeyAttemptTime) this.giveUp(hs);
      else this.sendInitiation(hs, now);
    }
    if (this.keepaliveAt !== null && now >= this.keepaliveAt) {
      this.keepaliveAt = null;
      this.sendKeepalive(now);
    }
    if (this.deadPeerAt !== null && now >= this.deadPeerAt) {
      this.deadPeerAt = null;
      this.startHandshake(now);
    }
    if (this.zeroKeysAt !== null && now >= this.zeroKeysAt) this.zeroKeys();
    if (this.persistentKeepalive > 0 && this.current !== null && now >= this.lastSentAt + this.persistentKeepalive) {
      if (this.sendingKeypair(now) !== null && this.endpointValue !== null) this.sendKeepalive(now);
      else this.lastSentAt = now; // nothing to send on; wait a full interval before trying again
    }
    this.pumpPathMtu(now);
  }

  private giveUp(hs: PendingHandshake): void {
    if (hs.state !== null) this.indices.release(hs.state.localIndex);
    this.handshake = null;
    const dropped = this.queue.length;
    this.queue = [];
    this.stats.drops.handshake_timeout += dropped;
    this.stats.handshakesFailed++;
    this.events.push({ type: "handshake_failed", reason: "timeout", droppedPackets: dropped });
  }

  /**
   * Ends every session and handshake with this peer and releases their
   * indices, so frames for them are dropped as unknown. Used when the peer is
   * removed (untrust, shutdown); the Peer must not be used afterwards.
   */
  close(): void {
    if (this.handshake !== null && this.handshake.state !== null) this.indices.release(this.handshake.state.localIndex);
    this.handshake = null;
    for (const kp of [this.current, this.previous, this.next]) this.releaseKeypair(kp);
    this.current = this.previous = this.next = null;
    this.queue = [];
    this.transmits = [];
    this.delivered = [];
    this.keepaliveAt = this.deadPeerAt = this.zeroKeysAt = null;
  }

  private zeroKeys(): void {
    this.zeroKeysAt = null;
    for (const kp of [this.current, this.previous, this.next]) this.releaseKeypair(kp);
    this.current = this.previous = this.next = null;
    this.keepaliveAt = null;
    this.deadPeerAt = null;
    this.events.push({ type: "keys_expired" });
  }
}
