/**
 * Which way each peer's frames go: straight to an address ("direct", or
 * "punched" when both ends sit behind NATs and the mapping had to be opened
 * from both sides), or through the beacon's relay. One PathManager per data
 * plane; it never touches a socket or reads a clock itself (the data plane
 * passes `now` and the callbacks that send).
 *
 * The tunnel Peer's endpoint is what the frames are sent to: "ip:port", or
 * "relay:<node id>" for the relay. The Peer roams between direct endpoints on
 * its own (an authenticated, newest frame from a new address: NAT rebinding);
 * everything else is decided here:
 *
 *   new peer ──> relay (if registered with the beacon; else the first candidate)
 *     │          + handshake initiation copied to the direct candidates
 *     │          + punch_request: the beacon makes both sides probe each other
 *     ├─ the handshake response came straight from X ──────────────> direct@X
 *     └─ session up: probe every candidate (authenticated pings), every 200 ms for 3 s
 *          ├─ a pong from X (proves both directions) ─────────────> direct@X
 *          └─ none ───────────────────────────────────────────────> relay
 *   relay ── every 5 s, doubling to 60 s (and at once when our public address
 *            changes or the peer asks to punch): punch_request + a probing round
 *   direct ─ sent but heard nothing straight from the peer for 1 s, or idle
 *            10 s (NAT keepalive): probe it; probes unanswered for 2 s ──> relay
 *            + probing round (rebinding, network change)
 *
 * So the first bytes never wait for a punch: they go through the relay while
 * the probes run, and move to the direct path the moment a probe proves it.
 * Moving changes only the endpoint under the same tunnel session, so open
 * streams do not notice. Relay is never final: upgrade attempts go on while
 * the peer is in use.
 *
 * Security: a path is only ever chosen on authenticated evidence (a pong or
 * handshake response sealed by the peer's session keys); candidates come from
 * the registry (signed answers), from punch commands signed by the rendezvous
 * key, and from the source addresses of authenticated frames. Punch commands
 * are acted on only for peers we asked about or would admit anyway.
 */
import { encodePunchProbe } from "../protocol/beacon-message.ts";
import { addressOf, formatAddress, nodeOf, type Address } from "../protocol/address.ts";
import type { Peer, PeerEvent } from "../tunnel/peer.ts";
import type { Logger } from "../util/log.ts";

/** `relay-tcp`: the relay, reached over the rendezvous's WebSocket because UDP does not work here (ws-relay-path.ts). */
export type PathKind = "direct" | "punched" | "relay" | "relay-tcp";

export interface PathTimers {
  /** Probes go to every candidate this often while a probing round runs. */
  readonly probeInterval: number;
  /** How long a probing round lasts before settling on the relay. */
  readonly probeWindow: number;
  /** On the relay: first attempt to get a direct path again, then doubling up to upgradeMax. */
  readonly upgradeFirst: number;
  readonly upgradeMax: number;
  /** Direct: probe when nothing came straight from the peer for this long (NAT keepalive). */
  readonly heartbeat: number;
  /** Direct: we sent, and heard nothing straight from the peer for this long: start checking the path. */
  readonly suspect: number;
  /** Direct: checks unanswered for this long: the path is dead. */
  readonly dead: number;
  /** No keepalives or upgrade attempts for a peer we have sent nothing to for this long. */
  readonly idle: number;
}

export const DEFAULT_PATH_TIMERS: PathTimers = {
  probeInterval: 200,
  probeWindow: 3_000,
  upgradeFirst: 5_000,
  upgradeMax: 60_000,
  heartbeat: 10_000,
  suspect: 1_000,
  dead: 2_000,
  idle: 5 * 60_000,
};

/** What the data plane needs of the beacon client (src/beacon/client.ts). */
export interface RendezvousLink {
  /** Registered with the beacon: relay and punching work. */
  readonly available: boolean;
  /** The beacon's ip:port (where relayed frames go). */
  readonly endpoint: string;
  /** Our public endpoint as the beacon sees it. */
  readonly observed: string | null;
  relay(dest: number, frame: Uint8Array): boolean;
  requestPunch(target: number): void;
  /** How relayed frames travel now: "relay" (UDP, the default) or "relay-tcp" (the WebSocket relay). */
  readonly relayKind?: PathKind;
}

export interface PathManagerOptions {
  readonly localNode: number;
  readonly link: RendezvousLink | null;
  readonly peer: (node: Address) => Peer<string> | undefined;
  /** A datagram on the tunnel socket. */
  readonly sendRaw: (datagram: Uint8Array, endpoint: string) => void;
  /** Seals a path probe (a ping with this id) for `node` to `endpoint`; false without a session. */
  readonly probe: (node: Address, endpoint: string, id: number, now: number) => boolean;
  /** Is this one of our own addresses (so the beacon sees us un-NATed)? */
  readonly isLocalEndpoint?: (endpoint: string) => boolean;
  /** Ask the registry again for the node's endpoints (it may have moved). */
  readonly refresh?: (node: Address) => void;
  readonly log: Logger;
  readonly timers?: Partial<PathTimers>;
  readonly random?: () => number;
}

export interface PathInfo {
  readonly path: PathKind;
  /** Where frames go: the peer's address, or the beacon for the relay. */
  readonly endpoint: string | null;
  /** Proven by a probe or a handshake (false: a candidate tried blind, with no relay to fall back on). */
  readonly confirmed: boolean;
  /** Smoothed round trip of path probes on the path in use, ms. */
  readonly rttMs: number | null;
  readonly changes: number;
}

interface ProbeSent {
  readonly endpoint: string;
  readonly sentAt: number;
}

interface PathState {
  readonly node: Address;
  readonly id: number;
  candidates: string[];
  hosts: Set<string>;
  mode: "direct" | "relay";
  confirmed: boolean;
  kind: PathKind;
  /** The direct endpoint in use (mode direct), or the last one that worked. */
  endpoint: string | null;
  /** A probing round is wanted as soon as a session exists. */
  awaitingSession: boolean;
  probeUntil: number;
  nextProbeAt: number;
  nextUpgradeAt: number;
  upgradeDelay: number;
  /** Direct: when the first still-unanswered check was sent. */
  unansweredSince: number | null;
  lastProbeAt: number;
  /** When the direct path was last proven (a handshake response counts, though it is no data frame). */
  confirmedAt: number;
  directRtt: number | null;
  relayRtt: number | null;
  readonly probes: Map<number, ProbeSent>;
  changes: number;
}

const RELAY_PREFIX = "relay:";
const INITIATION = 0x01;
const MAX_CANDIDATES = 8;
const MAX_PROBES_IN_FLIGHT = 64;
const PENDING_PUNCH_MS = 30_000;
/** Raw punch probes toward an endpoint we have no session to yet: sent at these offsets (ms). */
const RAW_PUNCH_SCHEDULE = [0, 100, 250, 500, 1000];

export function relayEndpoint(node: number): string {
  return RELAY_PREFIX + node;
}

export function isRelayEndpoint(endpoint: string): boolean {
  return endpoint.startsWith(RELAY_PREFIX);
}

export class PathManager {
  readonly timers: PathTimers;
  private readonly states = new Map<Address, PathState>();
  /** Punch commands for nodes we have no peer for yet: used when the peer appears. */
  private readonly pendingPunches = new Map<Address, { endpoints: string[]; until: number }>();
  private readonly rawPunches: { at: number; endpoint: string; to: number }[] = [];
  /** Endpoints a peer moved away from during this turn: frames already sealed for them follow the move. */
  private readonly moved = new Map<string, string>();
  private nextProbeId: number;
  private readonly log: Logger;
  private readonly random: () => number;

  constructor(private readonly options: PathManagerOptions) {
    this.timers = { ...DEFAULT_PATH_TIMERS, ...options.timers };
    this.log = options.log;
    this.random = options.random ?? Math.random;
    this.nextProbeId = Math.floor(this.random() * 0x7fff_ffff) >>> 0;
  }

  /** Peers with path state, plus punch commands waiting for their peer (both bounded by the peers the data plane keeps). */
  get size(): number {
    return this.states.size + this.pendingPunches.size;
  }

  get link(): RendezvousLink | null {
    return this.options.link;
  }

  private get relayAvailable(): boolean {
    return this.options.link?.available === true;
  }

  /** Behind a NAT: the beacon sees us at an address that is not one of ours. */
  get natted(): boolean {
    const observed = this.options.link?.observed;
    if (!observed) return false;
    return !(this.options.isLocalEndpoint?.(observed) ?? false);
  }

  // ---- peers come and go -----------------------------------------------------------

  /** Where a new peer's frames should go first. */
  initialEndpoint(node: Address, candidates: readonly string[]): string | null {
    if (this.relayAvailable) return relayEndpoint(nodeOf(node));
    const known = this.states.get(node);
    if (known?.confirmed && known.endpoint) return known.endpoint;
    return candidates[0] ?? null;
  }

  /** A Peer was added to the router (first contact, or a fresh session after silence). */
  peerAdded(node: Address, info: { candidates: readonly string[]; hostEndpoints?: readonly string[] }, now: number): void {
    const peer = this.options.peer(node);
    if (!peer) return;
    let state = this.states.get(node);
    if (!state) {
      state = {
        node,
        id: nodeOf(node),
        candidates: [],
        hosts: new Set(),
        mode: "direct",
        confirmed: false,
        kind: "direct",
        endpoint: null,
        awaitingSession: false,
        probeUntil: -Infinity,
        nextProbeAt: Infinity,
        nextUpgradeAt: Infinity,
        upgradeDelay: this.timers.upgradeFirst,
        unansweredSince: null,
        lastProbeAt: -Infinity,
        confirmedAt: -Infinity,
        directRtt: null,
        relayRtt: null,
        probes: new Map(),
        changes: 0,
      };
      this.states.set(node, state);
    }
    this.mergeCandidates(state, info.candidates);
    if (info.hostEndpoints) state.hosts = new Set(info.hostEndpoints);
    const pending = this.pendingPunches.get(node);
    if (pending) {
      this.pendingPunches.delete(node);
      if (pending.until > now) this.mergeCandidates(state, pending.endpoints, true);
    }
    const endpoint = peer.endpoint;
    state.confirmed = false;
    state.unansweredSince = null;
    if (endpoint !== null && isRelayEndpoint(endpoint)) {
      state.mode = "relay";
      state.kind = this.relayKind;
    } else {
      state.mode = "direct";
      if (endpoint !== null) state.endpoint = endpoint;
      state.kind = this.kindOf(state, endpoint);
    }
    state.awaitingSession = true;
    state.nextUpgradeAt = Infinity;
    if (this.relayAvailable) this.options.link!.requestPunch(state.id);
  }

  /** The node's registry entry again: new candidates are probed. */
  updateCandidates(node: Address, candidates: readonly string[], hostEndpoints: readonly string[] | undefined, now: number): void {
    const state = this.states.get(node);
    if (!state) return;
    const before = state.candidates.join(",");
    this.mergeCandidates(state, candidates);
    if (hostEndpoints) state.hosts = new Set(hostEndpoints);
    if (state.candidates.join(",") !== before) this.startProbing(state, now);
  }

  /** The peer is gone for good (untrust, shutdown). */
  forget(node: Address): void {
    this.states.delete(node);
    this.pendingPunches.delete(node);
  }

  /** Does the path manager have a fallback for a silent peer (so the session need not be restarted yet)? */
  handlesSilence(node: Address): boolean {
    const state = this.states.get(node);
    return state !== undefined && state.mode === "direct" && state.confirmed && this.relayAvailable;
  }

  private mergeCandidates(state: PathState, add: readonly string[], front = false): void {
    const fresh = add.filter((e) => e && !isRelayEndpoint(e) && !this.isSelf(e));
    const list = front ? [...fresh, ...state.candidates] : [...state.candidates, ...fresh];
    state.candidates = [...new Set(list)].slice(0, MAX_CANDIDATES);
  }

  private isSelf(endpoint: string): boolean {
    return endpoint === this.options.link?.observed;
  }

  // ---- what the tunnel and the beacon tell us ------------------------------------

  onEvent(node: Address, event: PeerEvent<string>, now: number): void {
    const state = this.states.get(node);
    if (!state) return;
    switch (event.type) {
      case "established":
        if (!isRelayEndpoint(event.endpoint)) this.mergeCandidates(state, [event.endpoint], true);
        if (event.role === "initiator" && !isRelayEndpoint(event.endpoint)) {
          // Our initiation reached the peer at a direct address and its response came straight back.
          this.confirm(state, event.endpoint, now, "handshake");
        } else if (state.awaitingSession || !state.confirmed) {
          this.startProbing(state, now);
        }
        state.awaitingSession = false;
        return;
      case "endpoint_changed":
        if (this.keepsOwnAddress(state, event.endpoint)) {
          // We send to the peer's own address (no NAT: its IPv6, say) and that path is healthy; a
          // newer frame through its NAT (a punched IPv4 path it still uses) does not move us there,
          // or two dual-stack peers would flip between the two paths with every frame.
          this.options.peer(node)?.setEndpoint(state.endpoint!, now);
          return;
        }
        // The peer roamed between direct addresses (NAT rebinding): an authenticated, newest frame.
        this.confirm(state, event.endpoint, now, "roaming");
        return;
      case "direct_heard":
        // An authenticated frame from an address we do not send to: try it (a peer-reflexive candidate).
        this.mergeCandidates(state, [event.endpoint], true);
        if (state.mode === "relay" || !state.confirmed || state.unansweredSince !== null) this.probeOne(state, event.endpoint, now);
        return;
      default:
        return;
    }
  }

  /** Is the path in use a healthy one to the peer's own address, and `endpoint` one of its NAT's? */
  private keepsOwnAddress(state: PathState, endpoint: string): boolean {
    return (
      state.mode === "direct" &&
      state.confirmed &&
      state.unansweredSince === null &&
      state.endpoint !== null &&
      state.endpoint !== endpoint &&
      state.hosts.has(state.endpoint) &&
      !state.hosts.has(endpoint)
    );
  }

  /** A pong for one of our path probes arrived from `source` (an address, or a relay endpoint). */
  onPong(node: Address, id: number, source: string, now: number): void {
    const state = this.states.get(node);
    const sent = state?.probes.get(id);
    if (!state || !sent) return;
    state.probes.delete(id);
    const rtt = now - sent.sentAt;
    if (isRelayEndpoint(source)) {
      state.relayRtt = smooth(state.relayRtt, rtt);
      return;
    }
    state.directRtt = smooth(state.directRtt, rtt);
    if (state.mode === "direct" && state.confirmed && (state.endpoint === source || state.unansweredSince === null)) {
      // The path in use works (a late answer from another candidate does not move a healthy path),
      // except that the peer's own address (no NAT: its global IPv6, say) beats a punched path.
      if (state.endpoint === source) state.unansweredSince = null;
      if (!(state.kind === "punched" && state.hosts.has(source))) return;
    }
    this.confirm(state, source, now, "probe");
  }

  /**
   * The beacon asks us to punch toward `peerNode` at `endpoint` (signed by the
   * rendezvous key). `admitted`: we asked for it, or already talk to that node,
   * or would accept a session from it; otherwise it is ignored.
   */
  onPunch(peerNode: number, endpoint: string, admitted: boolean, now: number): void {
    if (!admitted || this.isSelf(endpoint)) return;
    const node = addressOf(0, peerNode);
    const state = this.states.get(node);
    // Open our NAT toward it now, whether or not a session exists yet.
    this.scheduleRawPunches(endpoint, peerNode, now);
    if (!state) {
      const p = this.pendingPunches.get(node);
      const endpoints = p && p.until > now ? [...new Set([endpoint, ...p.endpoints])].slice(0, MAX_CANDIDATES) : [endpoint];
      if (this.pendingPunches.size > 1024) this.pendingPunches.clear();
      this.pendingPunches.set(node, { endpoints, until: now + PENDING_PUNCH_MS });
      return;
    }
    this.mergeCandidates(state, [endpoint], true);
    if (!(state.mode === "direct" && state.confirmed && state.unansweredSince === null && state.endpoint === endpoint)) this.startProbing(state, now);
  }

  /** The beacon registration changed: relay (un)available, or our public address moved. */
  onLinkChange(now: number, observedChanged: boolean): void {
    for (const state of this.states.values()) {
      const peer = this.options.peer(state.node);
      if (!peer) continue;
      if (this.relayAvailable && state.mode === "relay" && state.kind !== this.relayKind) {
        // The relay itself moved (UDP <-> WebSocket): same endpoint, another way there.
        this.log.info("path changed", { peer: formatAddress(state.node), from: state.kind, to: this.relayKind, endpoint: `relay via ${this.options.link?.endpoint ?? "beacon"}`, reason: "relay transport changed" });
        state.kind = this.relayKind;
        state.changes++;
      }
      if (this.relayAvailable && state.mode === "direct" && !state.confirmed && state.probeUntil === -Infinity) {
        // A relay appeared while this peer had only unproven addresses (our UDP is blocked, say):
        // relay now, and keep looking for a direct path.
        state.mode = "relay";
        this.setPeerEndpoint(state, peer, relayEndpoint(state.id), now, "relay available, no direct path proven");
        state.nextUpgradeAt = now + state.upgradeDelay;
        if (!observedChanged) continue;
      }
      if (state.mode === "direct" && state.confirmed && state.endpoint !== null && state.kind !== this.kindOf(state, state.endpoint)) {
        // We learnt only now that we are behind a NAT (the beacon answered after the path was proven).
        const kind = this.kindOf(state, state.endpoint);
        this.log.info("path changed", { peer: formatAddress(state.node), from: state.kind, to: kind, endpoint: state.endpoint, reason: "our public address is known now" });
        state.kind = kind;
        state.changes++;
      }
      if (!this.relayAvailable && state.mode === "relay") {
        // No relay any more: back to the best direct candidate, and look for one that answers.
        const target = state.endpoint ?? state.candidates[0];
        if (target) {
          state.mode = "direct";
          state.confirmed = false;
          this.setPeerEndpoint(state, peer, target, now, "relay unavailable");
        }
        this.startProbing(state, now);
      } else if (observedChanged) {
        // We moved or our NAT rebound: the peer must learn where we are now.
        if (this.relayAvailable) this.options.link!.requestPunch(state.id);
        this.startProbing(state, now);
      }
    }
  }

  // ---- sending ------------------------------------------------------------------------

  /**
   * Where a frame sealed for `endpoint` goes now. The tunnel flushes queued
   * packets the moment a handshake completes, before the path manager hears
   * that the response proved a better path; those frames follow the move.
   */
  currentEndpoint(endpoint: string): string {
    return this.moved.size === 0 ? endpoint : (this.moved.get(endpoint) ?? endpoint);
  }

  /** The data plane has sent this turn's frames. */
  endTurn(): void {
    this.moved.clear();
  }

  /** A frame whose endpoint is a relay endpoint: through the beacon (and initiations also straight to the candidates). */
  routeRelay(endpoint: string, frame: Uint8Array): boolean {
    const id = Number(endpoint.slice(RELAY_PREFIX.length));
    const sent = this.options.link?.relay(id, frame) ?? false;
    if (frame[0] === INITIATION) {
      // A handshake initiation: race the direct candidates against the relay. Whichever reaches
      // the peer first is answered; a direct answer proves a direct path at once.
      const state = this.states.get(addressOf(0, id));
      if (state) for (const c of state.candidates.slice(0, 4)) this.options.sendRaw(frame, c);
    }
    return sent;
  }

  /**
   * An initiation sent straight to `endpoint` (no relay in use): while that
   * address is unproven, copy it to the peer's other candidates too, so a
   * wrong first guess costs nothing. Rare (one per handshake), so a scan is fine.
   */
  copyInitiation(endpoint: string, frame: Uint8Array): void {
    for (const state of this.states.values()) {
      if (state.confirmed || state.mode !== "direct" || state.candidates.length < 2) continue;
      if (this.options.peer(state.node)?.endpoint !== endpoint) continue;
      for (const c of state.candidates.slice(0, 4)) if (c !== endpoint) this.options.sendRaw(frame, c);
    }
  }

  // ---- timers ---------------------------------------------------------------------------

  nextTimeout(now: number): number | null {
    let t = Infinity;
    if (this.rawPunches.length > 0) t = this.rawPunches[0]!.at;
    for (const state of this.states.values()) {
      const d = this.deadline(state, now);
      if (d < t) t = d;
    }
    return t === Infinity ? null : t;
  }

  private deadline(state: PathState, now: number): number {
    const peer = this.options.peer(state.node);
    if (!peer) return Infinity;
    if (state.probeUntil > -Infinity) return Math.min(state.nextProbeAt, state.probeUntil);
    if (state.mode === "relay") return this.active(peer, now) ? state.nextUpgradeAt : Infinity;
    if (!state.confirmed || state.endpoint === null) return Infinity;
    if (state.unansweredSince !== null) return Math.min(state.lastProbeAt + this.timers.probeInterval, state.unansweredSince + this.timers.dead);
    const heard = Math.max(peer.lastDirectAt, state.confirmedAt);
    let due = Infinity;
    if (peer.lastDataSentAt > heard) due = Math.max(heard + this.timers.suspect, state.lastProbeAt + this.timers.probeInterval);
    if (this.active(peer, now)) due = Math.min(due, Math.max(heard, state.lastProbeAt) + this.timers.heartbeat);
    return due;
  }

  private active(peer: Peer<string>, now: number): boolean {
    return now - peer.lastDataSentAt < this.timers.idle;
  }

  tick(now: number): void {
    while (this.rawPunches.length > 0 && this.rawPunches[0]!.at <= now) {
      const p = this.rawPunches.shift()!;
      const nonce = new Uint8Array(8);
      for (let i = 0; i < 8; i++) nonce[i] = Math.floor(this.random() * 256);
      this.options.sendRaw(encodePunchProbe({ from: this.options.localNode, to: p.to, nonce }), p.endpoint);
    }
    for (const state of this.states.values()) {
      const peer = this.options.peer(state.node);
      if (!peer) continue;
      this.tickState(state, peer, now);
    }
  }

  private tickState(state: PathState, peer: Peer<string>, now: number): void {
    if (state.probeUntil > -Infinity) {
      if (now >= state.probeUntil) {
        state.probeUntil = -Infinity;
        state.nextProbeAt = Infinity;
        this.endProbing(state, peer, now);
      } else if (now >= state.nextProbeAt) {
        this.probeAll(state, now);
      }
      if (state.probeUntil > -Infinity) return;
    }
    if (state.mode === "relay") {
      if (now >= state.nextUpgradeAt && this.active(peer, now)) {
        // Never settle for the relay: ask the beacon to make both sides punch again.
        if (this.relayAvailable) this.options.link!.requestPunch(state.id);
        state.nextUpgradeAt = now + this.timers.probeWindow + state.upgradeDelay;
        state.upgradeDelay = Math.min(state.upgradeDelay * 2, this.timers.upgradeMax);
        this.startProbing(state, now);
      }
      return;
    }
    if (!state.confirmed || state.endpoint === null) return;
    const lastDirect = Math.max(peer.lastDirectAt, state.confirmedAt);
    if (state.unansweredSince !== null && lastDirect >= state.unansweredSince) state.unansweredSince = null;
    if (state.unansweredSince !== null && now - state.unansweredSince >= this.timers.dead) {
      this.pathLost(state, peer, now);
      return;
    }
    const quiet = now - lastDirect;
    if (peer.lastDataSentAt > lastDirect && quiet > 2 * this.timers.heartbeat + this.timers.dead && this.relayAvailable) {
      // Traffic again after a long silence (no keepalives while idle): the NAT has most likely
      // forgotten the path. Do not wait for probes to time out; relay while they look.
      this.pathLost(state, peer, now);
      return;
    }
    const suspect = peer.lastDataSentAt > lastDirect && quiet >= this.timers.suspect;
    const keepalive = this.active(peer, now) && quiet >= this.timers.heartbeat && now - state.lastProbeAt >= this.timers.heartbeat;
    const checking = state.unansweredSince !== null && now - state.lastProbeAt >= this.timers.probeInterval;
    if ((suspect && now - state.lastProbeAt >= this.timers.probeInterval) || keepalive || checking) {
      if (this.sendProbe(state, state.endpoint, now) && state.unansweredSince === null) state.unansweredSince = now;
    }
  }

  private startProbing(state: PathState, now: number): void {
    const peer = this.options.peer(state.node);
    if (!peer || !peer.isEstablished(now)) {
      state.awaitingSession = true;
      return;
    }
    state.probeUntil = Math.max(state.probeUntil, now + this.timers.probeWindow);
    this.probeAll(state, now);
  }

  private probeAll(state: PathState, now: number): void {
    state.nextProbeAt = now + this.timers.probeInterval;
    const targets = state.candidates.slice();
    if (state.endpoint && !targets.includes(state.endpoint)) targets.unshift(state.endpoint);
    for (const endpoint of targets) {
      if (!this.sendProbe(state, endpoint, now)) {
        state.awaitingSession = true;
        return;
      }
    }
    // The relay's own round trip, for `pilot peers`.
    if (state.mode === "relay" && this.relayAvailable) this.sendProbe(state, relayEndpoint(state.id), now);
  }

  private probeOne(state: PathState, endpoint: string, now: number): void {
    this.sendProbe(state, endpoint, now);
  }

  private sendProbe(state: PathState, endpoint: string, now: number): boolean {
    const id = (this.nextProbeId = (this.nextProbeId + 1) >>> 0);
    if (!this.options.probe(state.node, endpoint, id, now)) return false;
    if (state.probes.size >= MAX_PROBES_IN_FLIGHT) state.probes.delete(state.probes.keys().next().value!);
    state.probes.set(id, { endpoint, sentAt: now });
    state.lastProbeAt = now;
    return true;
  }

  private endProbing(state: PathState, peer: Peer<string>, now: number): void {
    if (state.mode === "direct" && state.confirmed) return;
    if (!this.relayAvailable) return; // keep sending to the best candidate; nothing else to fall back on
    if (state.mode !== "relay") {
      state.mode = "relay";
      state.confirmed = false;
      this.setPeerEndpoint(state, peer, relayEndpoint(state.id), now, "no direct path answered");
    }
    state.nextUpgradeAt = now + state.upgradeDelay;
    state.upgradeDelay = Math.min(state.upgradeDelay * 2, this.timers.upgradeMax);
  }

  private pathLost(state: PathState, peer: Peer<string>, now: number): void {
    state.unansweredSince = null;
    state.confirmed = false;
    if (this.relayAvailable) {
      state.mode = "relay";
      this.setPeerEndpoint(state, peer, relayEndpoint(state.id), now, "direct path silent");
      this.options.link!.requestPunch(state.id);
      state.upgradeDelay = this.timers.upgradeFirst;
    } else {
      this.log.info("direct path silent; probing the peer's other addresses", { peer: formatAddress(state.node), endpoint: state.endpoint });
      this.options.refresh?.(state.node);
    }
    this.startProbing(state, now);
  }

  private confirm(state: PathState, endpoint: string, now: number, how: string): void {
    const peer = this.options.peer(state.node);
    if (!peer) return;
    state.mode = "direct";
    state.confirmed = true;
    state.confirmedAt = now;
    state.unansweredSince = null;
    state.probeUntil = -Infinity;
    state.nextProbeAt = Infinity;
    state.nextUpgradeAt = Infinity;
    state.upgradeDelay = this.timers.upgradeFirst;
    this.mergeCandidates(state, [endpoint], true);
    this.setPeerEndpoint(state, peer, endpoint, now, `proven by ${how}`);
    // One probe for the round trip (`pilot peers` shows it) when the proof was not a probe.
    if (how !== "probe") this.sendProbe(state, endpoint, now);
  }

  private setPeerEndpoint(state: PathState, peer: Peer<string>, endpoint: string, now: number, reason: string): void {
    const before = state.kind;
    const beforeEndpoint = state.mode === "relay" || peer.endpoint === null || isRelayEndpoint(peer.endpoint) ? null : peer.endpoint;
    if (peer.endpoint !== null && peer.endpoint !== endpoint) this.moved.set(peer.endpoint, endpoint);
    if (peer.endpoint !== endpoint) peer.setEndpoint(endpoint, now);
    if (!isRelayEndpoint(endpoint)) state.endpoint = endpoint;
    state.kind = this.kindOf(state, endpoint);
    if (state.kind !== before || (!isRelayEndpoint(endpoint) && beforeEndpoint !== endpoint)) {
      state.changes++;
      this.log.info("path changed", {
        peer: formatAddress(state.node),
        from: before,
        to: state.kind,
        endpoint: isRelayEndpoint(endpoint) ? `relay via ${this.options.link?.endpoint ?? "beacon"}` : endpoint,
        reason,
      });
    }
  }

  private get relayKind(): PathKind {
    return this.options.link?.relayKind ?? "relay";
  }

  private kindOf(state: PathState, endpoint: string | null): PathKind {
    if (endpoint !== null && isRelayEndpoint(endpoint)) return this.relayKind;
    // Punched: both ends are behind NATs, so the path exists only because both sides opened it.
    const peerNatted = endpoint !== null && state.hosts.size > 0 && !state.hosts.has(endpoint);
    return this.natted && peerNatted ? "punched" : "direct";
  }

  private scheduleRawPunches(endpoint: string, to: number, now: number): void {
    if (this.rawPunches.length > 256) return;
    for (const offset of RAW_PUNCH_SCHEDULE) this.rawPunches.push({ at: now + offset, endpoint, to });
    this.rawPunches.sort((a, b) => a.at - b.at);
  }

  // ---- inspection -----------------------------------------------------------------------

  describe(node: Address): PathInfo | null {
    const state = this.states.get(node);
    const peer = this.options.peer(node);
    if (!state || !peer) return null;
    const relay = peer.endpoint !== null && isRelayEndpoint(peer.endpoint);
    return {
      path: relay ? this.relayKind : state.kind,
      endpoint: relay ? (this.options.link?.endpoint ?? null) : peer.endpoint,
      confirmed: relay ? this.relayAvailable : state.confirmed,
      rttMs: relay ? state.relayRtt : state.directRtt,
      changes: state.changes,
    };
  }
}

function smooth(previous: number | null, sample: number): number {
  return previous === null ? sample : previous * 0.75 + sample * 0.25;
}
