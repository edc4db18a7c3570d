/**
 * The daemon's side of the beacon: registration (which is also endpoint
 * discovery and the NAT keepalive toward the rendezvous), punch requests, and
 * the relay envelope. The daemon owns the UDP socket: datagrams from the
 * beacon's address are handed to `receive`, and everything this sends goes
 * through `send`.
 *
 *   const beacon = new BeaconClient({ nodeId, identity, beaconKey, beacon: { host, port }, send });
 *   beacon.events = { registered, lost, punch, relayed };
 *   beacon.start();                       // register now, then every keepaliveMs
 *   beacon.receive(datagram, host, port)  // "ok" | "foreign" (not from the beacon) | "dropped"
 *   beacon.requestPunch(target)           // ask the beacon to make both sides punch
 *   beacon.relay(dest, frame)             // send a tunnel frame through the beacon
 *   beacon.available / beacon.observed    // registered? our public ip:port
 *
 * What is trusted: only datagrams from the beacon's own address are looked
 * at, and of those only a challenge that echoes our last nonce, an ack or a
 * punch signed by the rendezvous key (pinned from the registry's hello) and
 * naming us, and relayed frames (which the tunnel authenticates end to end,
 * and which it accepts only as coming from the node the beacon names). A
 * punch is reported as `requested` only when it answers a punch_request we
 * sent for that peer; the shell decides whether to act on an unrequested one.
 *
 * With several beacons the client also pings the one in use (every 0.75 s, a
 * 12-byte datagram answered by a 12-byte pong): once that beacon has answered
 * a ping, three pings in a row unanswered for `failoverAfterMs` move the
 * client to the next beacon, so a dead beacon is left within about two
 * seconds rather than at the next register (15 s). Three pings unanswered by
 * a beacon that has not answered one yet (it died right after its ack, or it
 * is an older version without pings) are followed by a register at once: no
 * answer within `failoverAfterMs` moves the client on; an answer means an
 * older beacon, watched through its registers only from then on.
 * With one beacon nothing is pinged.
 */
import { randomBytes } from "node:crypto";
import {
  appendSignature,
  BEACON_TOKEN_SIZE,
  BeaconType,
  decodeBeaconMessage,
  encodePing,
  encodePunchRequest,
  PING_NONCE_SIZE,
  encodeRegisterBody,
  punchSignedBytes,
  RELAY_FRAME_MAX,
  RELAY_FRAME_MIN,
  RELAY_HEADER_SIZE,
  registerAckSignedBytes,
  registerSignedBytes,
  signedBodyOf,
  unmapIpv4,
  writeRelayHeader,
  type Punch,
  type RegisterAck,
} from "../protocol/beacon-message.ts";
import { verifyEd25519, type Signer } from "../registry/signer.ts";
import { createLogger, type Logger } from "../util/log.ts";

export interface BeaconEvents {
  /** A registration was confirmed; `observed` is our public ip:port, `changed` if it differs from the last one. */
  registered(observed: string, changed: boolean): void;
  /** The registration lapsed (no ack within its lifetime): no relay, no punching until it is back. */
  lost(): void;
  /** The beacon asks us to punch toward `peer` at `endpoint`; `requested` when it answers our own request. */
  punch(peer: number, endpoint: string, requested: boolean): void;
  /** A tunnel frame relayed from node `source` (as the beacon knows it). */
  relayed(source: number, frame: Uint8Array): void;
}

export interface BeaconClientOptions {
  readonly nodeId: number;
  /** The node's identity: signs registrations. */
  readonly identity: Signer;
  /** The rendezvous key, pinned from the registry's hello. */
  readonly beaconKey: Uint8Array;
  /** IP literal and port of the beacon. */
  readonly beacon: { host: string; port: number };
  /**
   * Other beacons of the same deployment (same key). The client starts at the one its node id
   * picks among all of them, and moves to the next when a registration goes unanswered for
   * `failoverAfterMs`; the beacons tell each other where a node is registered, so peers at the
   * other beacons keep reaching it.
   */
  readonly alternates?: readonly { host: string; port: number }[];
  /** With alternates: a beacon silent this long after a register (or a ping) is given up for the next one. Default 1 s. */
  readonly failoverAfterMs?: number;
  /** With alternates: ping the beacon in use this often. Default 750 ms. */
  readonly pingMs?: number;
  readonly send: (datagram: Uint8Array, host: string, port: number) => void;
  readonly log?: Logger;
  /** Wall clock, unix ms (registrations and punches carry timestamps). */
  readonly clock?: () => number;
  readonly random?: (n: number) => Uint8Array;
  /** Re-register this often: refreshes the registration and the NAT mapping toward the beacon. Default 15 s. */
  readonly keepaliveMs?: number;
  /** First retry when a register goes unanswered (doubling up to keepaliveMs). Default 1 s. */
  readonly retryMs?: number;
}

export interface BeaconClientStats {
  registersSent: number;
  challenges: number;
  acks: number;
  punchRequests: number;
  punches: number;
  relayedOut: number;
  relayedIn: number;
  /** Datagrams from the beacon's address that failed a check (bad signature, stale, wrong nonce, not for us). */
  rejected: number;
}

/** How far a punch's timestamp may be from our clock. */
const PUNCH_WINDOW_MS = 30_000;
const PUNCH_REQUEST_TTL_MS = 10_000;
const MAX_PENDING_PUNCHES = 256;

export class BeaconClient {
  events: BeaconEvents = { registered() {}, lost() {}, punch() {}, relayed() {} };
  readonly stats: BeaconClientStats = { registersSent: 0, challenges: 0, acks: 0, punchRequests: 0, punches: 0, relayedOut: 0, relayedIn: 0, rejected: 0 };
  /** Every beacon this client may use (the first one alone without alternates), and the one in use. */
  private readonly beacons: { host: string; port: number }[];
  private current = 0;
  private readonly failoverAfterMs: number;
  /** When the first register still unanswered by the current beacon was sent (null: it answered). */
  private awaitingSince: number | null = null;
  private answerTimer: ReturnType<typeof setTimeout> | null = null;
  /** When the client last moved to another beacon, until that one acknowledged it. */
  private movedAt: number | null = null;
  /** Times the client moved to another beacon. */
  failovers = 0;
  private readonly pingMs: number;
  private pingTimer: ReturnType<typeof setTimeout> | null = null;
  /** Nonces of the pings not answered yet (the last few), when the first of them went out, and how many. */
  private pingNonces: Uint8Array[] = [];
  private unansweredSince: number | null = null;
  private unansweredPings = 0;
  /** The beacon in use has answered a ping: silence from it now means it is gone. */
  private pingAnswered = false;
  /** The beacon in use answered a register but never a ping (an older version): watched through its registers only. */
  private pingsUnsupported = false;
  private readonly clock: () => number;
  private readonly random: (n: number) => Uint8Array;
  private readonly log: Logger;
  private readonly keepaliveMs: number;
  private readonly retryMs: number;
  private token = new Uint8Array(BEACON_TOKEN_SIZE);
  private pending: { nonce: Uint8Array; sentAt: number } | null = null;
  private registeredUntil = 0;
  private observedValue: string | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private retryDelay: number;
  private challengeTimes: number[] = [];
  private lastHintAt = -Infinity;
  private readonly punchRequests = new Map<string, { target: number; at: number }>();
  private readonly seenPunches = new Map<string, number>();
  private stopped = true;

  constructor(private readonly options: BeaconClientOptions) {
    const literal = (h: string) => unmapIpv4(h === "0.0.0.0" ? "127.0.0.1" : h === "::" ? "::1" : h);
    this.beacons = [options.beacon, ...(options.alternates ?? [])].map((b) => ({ host: literal(b.host), port: b.port }));
    this.current = this.beacons.length > 1 ? options.nodeId % this.beacons.length : 0;
    this.failoverAfterMs = options.failoverAfterMs ?? 1_000;
    this.pingMs = options.pingMs ?? 750;
    this.clock = options.clock ?? Date.now;
    this.random = options.random ?? ((n) => new Uint8Array(randomBytes(n)));
    this.log = options.log ?? createLogger("beacon", { sink: () => {} });
    this.keepaliveMs = options.keepaliveMs ?? 15_000;
    this.retryMs = options.retryMs ?? 1_000;
    this.retryDelay = this.retryMs;
  }

  /** IP literal of the beacon in use. */
  get host(): string {
    return this.beacons[this.current]!.host;
  }

  /** UDP port of the beacon in use. */
  get port(): number {
    return this.beacons[this.current]!.port;
  }

  /** "ip:port" of the beacon, as relay endpoints are shown. */
  get endpoint(): string {
    return this.host.includes(":") ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  /** Registered now: relay and punching work. */
  get available(): boolean {
    return this.registeredUntil > this.clock();
  }

  /** Our public endpoint as the beacon saw it at the last registration. */
  get observed(): string | null {
    return this.observedValue;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.register();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.answerTimer) clearTimeout(this.answerTimer);
    this.answerTimer = null;
    this.stopPinging();
  }

  /** Resolves once registered (true), or false after `timeoutMs`. */
  async waitRegistered(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!this.available && performance.now() < deadline && !this.stopped) await Bun.sleep(10);
    return this.available;
  }

  /** Registers again now (our address may have changed). At most once a second when `hint`. */
  refresh(hint = false): void {
    if (this.stopped) return;
    const now = this.clock();
    if (hint && now - this.lastHintAt < 1000) return;
    if (hint) this.lastHintAt = now;
    this.register();
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.onTimer(), delay);
    this.timer.unref?.();
  }

  private onTimer(): void {
    this.timer = null;
    if (this.stopped) return;
    const now = this.clock();
    if (this.registeredUntil !== 0 && this.registeredUntil <= now) {
      this.registeredUntil = 0;
      this.log.info("beacon registration lapsed; relay and hole punching unavailable until it is back");
      this.events.lost();
    }
    if (this.pending !== null && now - this.pending.sentAt < this.keepaliveMs) {
      // Unanswered: retry sooner, doubling.
      this.retryDelay = Math.min(this.retryDelay * 2, this.keepaliveMs);
    }
    this.register();
  }

  private register(): void {
    const nonce = this.random(16);
    const timestamp = Math.max(Math.floor(this.clock()), (this.lastTimestamp ?? 0) + 1);
    this.lastTimestamp = timestamp;
    const body = encodeRegisterBody({ node: this.options.nodeId, timestamp, nonce, token: this.token });
    const datagram = appendSignature(body, this.options.identity.sign(registerSignedBytes(this.options.beaconKey, body)));
    this.pending = { nonce, sentAt: this.clock() };
    this.stats.registersSent++;
    this.sendToBeacon(datagram);
    this.schedule(this.available ? this.keepaliveMs : this.retryDelay);
    if (this.beacons.length > 1) this.watchAnswer();
  }

  /** With several beacons: give the current one `failoverAfterMs` to answer this register. */
  private watchAnswer(): void {
    this.awaitingSince ??= this.clock();
    if (this.answerTimer) return;
    const wait = Math.max(10, this.failoverAfterMs - (this.clock() - this.awaitingSince));
    this.answerTimer = setTimeout(() => {
      this.answerTimer = null;
      if (this.stopped || this.awaitingSince === null) return;
      if (this.clock() - this.awaitingSince >= this.failoverAfterMs) return this.failover();
      this.watchAnswer();
    }, wait);
    this.answerTimer.unref?.();
  }

  /** The current beacon does not answer: register with the next one at once. */
  private failover(reason = "a register unanswered"): void {
    const from = this.endpoint;
    this.current = (this.current + 1) % this.beacons.length;
    this.failovers++;
    this.token = new Uint8Array(BEACON_TOKEN_SIZE);
    this.pending = null;
    this.awaitingSince = null;
    this.challengeTimes = [];
    this.retryDelay = this.retryMs;
    this.log.info("beacon not answering; registering with the next one", { from, to: this.endpoint, reason });
    this.movedAt = this.clock();
    this.stopPinging();
    this.pingAnswered = false;
    this.pingsUnsupported = false;
    // Relayed paths stay as they are: their frames go to the new beacon from now on (dropped there
    // until it acknowledges us, one round trip), and the beacons tell each other where we are now.
    // If the new one does not answer either, the registration lapses as usual (`lost`).
    this.register();
  }
  private lastTimestamp: number | undefined;

  // ---- pings (several beacons only) --------------------------------------------------

  private stopPinging(): void {
    if (this.pingTimer) clearTimeout(this.pingTimer);
    this.pingTimer = null;
    this.pingNonces = [];
    this.unansweredSince = null;
    this.unansweredPings = 0;
  }

  private schedulePing(delay: number): void {
    if (this.pingTimer) clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(() => this.onPingTimer(), delay);
    this.pingTimer.unref?.();
  }

  /** Sends a ping, or, when the last ones went unanswered, moves on (or stops pinging a beacon that never answers them). */
  private onPingTimer(): void {
    this.pingTimer = null;
    if (this.stopped || !this.available) return this.stopPinging();
    const now = this.clock();
    if (this.unansweredPings >= 3) {
      if (!this.pingAnswered) {
        // Never answered a ping: either it died since its ack, or it is an older beacon that does not
        // answer pings. A register now tells which (unanswered within failoverAfterMs: the next
        // beacon), instead of waiting for the next keepalive register (15 s).
        this.stopPinging();
        this.pingsUnsupported = true;
        return this.register();
      }
      if (now - this.unansweredSince! >= this.failoverAfterMs) {
        this.stopPinging();
        return this.failover(`${this.unansweredPings} pings unanswered`);
      }
    }
    const nonce = this.random(PING_NONCE_SIZE);
    this.pingNonces = [...this.pingNonces.slice(-3), nonce];
    this.unansweredSince ??= now;
    this.unansweredPings++;
    this.sendToBeacon(encodePing("ping", nonce));
    // Unanswered by then: ping again, three in all within failoverAfterMs.
    this.schedulePing(Math.max(10, Math.floor(this.failoverAfterMs / 3)));
  }

  private onPong(nonce: Uint8Array): "ok" | "dropped" {
    if (!this.pingNonces.some((n) => sameBytes(n, nonce))) return this.reject();
    this.pingNonces = [];
    this.unansweredSince = null;
    this.unansweredPings = 0;
    this.pingAnswered = true;
    if (!this.stopped && this.available) this.schedulePing(this.pingMs);
    return "ok";
  }

  private sendToBeacon(datagram: Uint8Array): void {
    try {
      this.options.send(datagram, this.host, this.port);
    } catch (e) {
      this.log.debug("send to the beacon failed", { error: (e as Error).message });
    }
  }

  /** Asks the beacon to make us and `target` punch toward each other. */
  requestPunch(target: number): void {
    if (!this.available) return;
    const nonce = this.random(16);
    const now = this.clock();
    if (this.punchRequests.size >= MAX_PENDING_PUNCHES) {
      for (const [k, v] of this.punchRequests) if (now - v.at > PUNCH_REQUEST_TTL_MS || this.punchRequests.size >= MAX_PENDING_PUNCHES) this.punchRequests.delete(k);
    }
    this.punchRequests.set(hex(nonce), { target, at: now });
    this.stats.punchRequests++;
    this.sendToBeacon(encodePunchRequest({ node: this.options.nodeId, target, nonce }));
  }

  /** Sends one tunnel frame to `dest` through the beacon; false when not registered (or the frame cannot be relayed). */
  relay(dest: number, frame: Uint8Array): boolean {
    if (!this.available || frame.length < RELAY_FRAME_MIN || frame.length > RELAY_FRAME_MAX) return false;
    const out = new Uint8Array(RELAY_HEADER_SIZE + frame.length);
    writeRelayHeader(out, BeaconType.Relay, dest);
    out.set(frame, RELAY_HEADER_SIZE);
    this.stats.relayedOut++;
    this.sendToBeacon(out);
    return true;
  }

  /** True if a datagram came from the beacon's address. */
  isBeacon(host: string, port: number): boolean {
    return port === this.port && (host === this.host || unmapIpv4(host) === this.host);
  }

  receive(datagram: Uint8Array, host: string, port: number): "ok" | "foreign" | "dropped" {
    if (!this.isBeacon(host, port)) return "foreign";
    const type = datagram[0];
    if (type === BeaconType.RelayDeliver) {
      const frame = datagram.length - RELAY_HEADER_SIZE;
      if (frame < RELAY_FRAME_MIN || frame > RELAY_FRAME_MAX) return this.reject();
      const source = ((datagram[4]! << 24) | (datagram[5]! << 16) | (datagram[6]! << 8) | datagram[7]!) >>> 0;
      this.stats.relayedIn++;
      this.events.relayed(source, datagram.subarray(RELAY_HEADER_SIZE));
      return "ok";
    }
    const decoded = decodeBeaconMessage(datagram);
    if (!decoded.ok) return this.reject();
    const m = decoded.value;
    switch (m.type) {
      case "challenge": {
        if (this.pending === null || !sameBytes(m.nonce, this.pending.nonce)) return this.reject();
        const now = this.clock();
        this.challengeTimes = this.challengeTimes.filter((t) => now - t < 10_000);
        if (this.challengeTimes.length >= 4) return this.reject(); // a loop: wait for the retry timer
        this.challengeTimes.push(now);
        this.awaitingSince = null;
        this.stats.challenges++;
        this.token = m.token.slice();
        this.register();
        return "ok";
      }
      case "register_ack":
        return this.onAck(m, datagram);
      case "punch":
        return this.onPunch(m, datagram);
      case "pong":
        return this.onPong(m.nonce);
      case "not_registered":
        // Unauthenticated, so it only makes us re-register sooner (at most once a second).
        this.refresh(true);
        return "ok";
      default:
        return this.reject();
    }
  }

  private reject(): "dropped" {
    this.stats.rejected++;
    return "dropped";
  }

  private onAck(m: RegisterAck, datagram: Uint8Array): "ok" | "dropped" {
    if (this.pending === null || !sameBytes(m.nonce, this.pending.nonce) || m.node !== this.options.nodeId) return this.reject();
    if (!verifyEd25519(this.options.beaconKey, registerAckSignedBytes(signedBodyOf(datagram)), m.signature)) return this.reject();
    this.pending = null;
    this.awaitingSince = null;
    this.stats.acks++;
    const now = this.clock();
    const wasAvailable = this.available;
    this.registeredUntil = now + m.ttlMs;
    this.retryDelay = this.retryMs;
    const observed = m.ip.includes(":") ? `[${m.ip}]:${m.port}` : `${m.ip}:${m.port}`;
    const changed = this.observedValue !== null && this.observedValue !== observed;
    if (changed) this.log.info("public endpoint changed", { from: this.observedValue, to: observed });
    else if (this.observedValue === null) this.log.info("public endpoint discovered", { endpoint: observed });
    else if (!wasAvailable) this.log.info("beacon registration restored", { endpoint: observed });
    if (this.movedAt !== null) this.log.info("registered with the next beacon", { beacon: this.endpoint, endpoint: observed, after_ms: Math.round(now - this.movedAt) });
    this.movedAt = null;
    this.observedValue = observed;
    // Keep the mapping alive well inside the registration's lifetime too.
    this.schedule(Math.min(this.keepaliveMs, Math.max(1000, m.ttlMs / 3)));
    // Several beacons: ping this one from now on. An ack shows it alive too; a beacon not yet
    // known to answer pings is asked at once, so that a death soon after registering is noticed.
    if (this.beacons.length > 1) {
      this.pingNonces = [];
      this.unansweredSince = null;
      this.unansweredPings = 0;
      if (!this.pingTimer && !this.pingsUnsupported) this.schedulePing(this.pingAnswered ? this.pingMs : 0);
    }
    this.events.registered(observed, changed || !wasAvailable);
    return "ok";
  }

  private onPunch(m: Punch, datagram: Uint8Array): "ok" | "dropped" {
    const now = this.clock();
    if (m.to !== this.options.nodeId || m.peer === this.options.nodeId || Math.abs(m.timestamp - now) > PUNCH_WINDOW_MS) return this.reject();
    if (!verifyEd25519(this.options.beaconKey, punchSignedBytes(signedBodyOf(datagram)), m.signature)) return this.reject();
    const key = `${hex(m.nonce)}/${m.peer}`;
    for (const [k, until] of this.seenPunches) if (until < now) this.seenPunches.delete(k);
    if (this.seenPunches.has(key) || this.seenPunches.size > 10_000) return this.reject(); // a replay
    this.seenPunches.set(key, now + 2 * PUNCH_WINDOW_MS);
    const request = this.punchRequests.get(hex(m.nonce));
    const requested = request !== undefined && request.target === m.peer && now - request.at <= PUNCH_REQUEST_TTL_MS;
    this.stats.punches++;
    const endpoint = m.ip.includes(":") ? `[${m.ip}]:${m.port}` : `${m.ip}:${m.port}`;
    this.events.punch(m.peer, endpoint, requested);
    return "ok";
  }
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}
