/**
 * Which local virtual port belongs to whom: stream listeners, datagram
 * bindings and open connections, plus the limits that keep one peer or one
 * port from exhausting the daemon. Pure bookkeeping, no I/O.
 *
 * A connection is identified by (remote address, remote port, local port).
 * Ephemeral ports for dialing come round-robin from 49152-65535, skipping
 * ports in use by listeners, bindings or connections.
 *
 * A connection in TIME-WAIT (`markLingering`) still holds its port, but no
 * longer counts toward the limits: it only absorbs late retransmissions, and
 * counting it would cap a busy port at limit / TIME-WAIT connections a second.
 *
 * Inbound connections (accepted from a peer's SYN) also count per peer, with
 * half-open ones (SYN received, handshake not complete) apart from established
 * ones, and connections from untrusted peers (strangers, on a public node) also
 * count together: `admit` says whether one more fits, so that one peer, or all
 * strangers together, can never fill a port or the daemon for the others.
 */
import type { Address } from "../protocol/address.ts";
import { EPHEMERAL_MAX, EPHEMERAL_MIN } from "../protocol/ports.ts";

export interface PeerConnectionLimits {
  /** Inbound connections from one peer (all ports), half-open ones included. */
  readonly established: number;
  /** Inbound connections from one peer still in the handshake (they expire within seconds). */
  readonly halfOpen: number;
}

export interface PortLimits {
  /** Connections per local port (listener side). */
  readonly maxPerPort: number;
  readonly maxTotal: number;
  /** Inbound connections per trusted peer. */
  readonly perPeer?: PeerConnectionLimits;
  /** Inbound connections per untrusted peer (a public node's strangers). */
  readonly perStranger?: PeerConnectionLimits;
  /** Inbound connections from all untrusted peers together. */
  readonly strangersTotal?: number;
}

export const DEFAULT_PORT_LIMITS: PortLimits = Object.freeze({
  maxPerPort: 4096,
  maxTotal: 8192,
  perPeer: Object.freeze({ established: 1024, halfOpen: 1024 }),
  perStranger: Object.freeze({ established: 64, halfOpen: 32 }),
  strangersTotal: 1024,
});

/** Why an inbound connection does not fit: the reason a refusal names. */
export type AdmitVerdict = "ok" | "port" | "total" | "peer" | "half-open" | "strangers";

interface InboundEntry {
  readonly peer: Address;
  halfOpen: boolean;
  readonly stranger: boolean;
  counted: boolean;
}

interface PeerCounts {
  established: number;
  halfOpen: number;
}

export class PortTable<L, B, C> {
  private readonly listeners = new Map<number, L>();
  private readonly bindings = new Map<number, B>();
  /** remote address -> (localPort * 65536 + remotePort) -> connection */
  private readonly byPeer = new Map<Address, Map<number, C>>();
  /** Connections per local port (all of them: a port in use is not handed out). */
  private readonly perLocalPort = new Map<number, number>();
  /** Connections per local port that count toward the limits (not lingering). */
  private readonly activePerLocalPort = new Map<number, number>();
  private readonly lingering = new Set<C>();
  private readonly inbound = new Map<C, InboundEntry>();
  private readonly perPeer = new Map<Address, PeerCounts>();
  private strangers = 0;
  private total = 0;
  private active = 0;
  private cursor = EPHEMERAL_MIN;

  constructor(readonly limits: PortLimits = DEFAULT_PORT_LIMITS) {}

  /** Connections that count toward the limits (TIME-WAIT ones do not). */
  get connectionCount(): number {
    return this.active;
  }

  /** Every connection held, lingering ones included. */
  get heldCount(): number {
    return this.total;
  }

  listener(port: number): L | undefined {
    return this.listeners.get(port);
  }

  addListener(port: number, listener: L): boolean {
    if (this.listeners.has(port)) return false;
    this.listeners.set(port, listener);
    return true;
  }

  removeListener(port: number, listener: L): void {
    if (this.listeners.get(port) === listener) this.listeners.delete(port);
  }

  listenerPorts(): number[] {
    return [...this.listeners.keys()].sort((a, b) => a - b);
  }

  binding(port: number): B | undefined {
    return this.bindings.get(port);
  }

  addBinding(port: number, binding: B): boolean {
    if (this.bindings.has(port)) return false;
    this.bindings.set(port, binding);
    return true;
  }

  removeBinding(port: number, binding: B): void {
    if (this.bindings.get(port) === binding) this.bindings.delete(port);
  }

  connection(remote: Address, remotePort: number, localPort: number): C | undefined {
    return this.byPeer.get(remote)?.get(localPort * 65536 + remotePort);
  }

  /** Whether a new connection on `localPort` fits the limits. */
  hasRoom(localPort: number): boolean {
    return this.active < this.limits.maxTotal && (this.activePerLocalPort.get(localPort) ?? 0) < this.limits.maxPerPort;
  }

  /** Whether one more inbound connection from `peer` on `localPort` fits every limit (per peer first). */
  admit(peer: Address, localPort: number, trusted: boolean): AdmitVerdict {
    const limits = trusted ? this.limits.perPeer : this.limits.perStranger;
    const counts = this.perPeer.get(peer);
    if (limits && counts) {
      if (counts.halfOpen >= limits.halfOpen) return "half-open";
      // Half-open ones count too: each may complete.
      if (counts.established + counts.halfOpen >= limits.established) return "peer";
    }
    if (!trusted && this.limits.strangersTotal !== undefined && this.strangers >= this.limits.strangersTotal) return "strangers";
    if (this.active >= this.limits.maxTotal) return "total";
    if ((this.activePerLocalPort.get(localPort) ?? 0) >= this.limits.maxPerPort) return "port";
    return "ok";
  }

  /** Counts `connection` (already added) as an inbound, half-open connection from `peer`. */
  trackInbound(peer: Address, connection: C, stranger: boolean): void {
    if (this.inbound.has(connection)) return;
    this.inbound.set(connection, { peer, halfOpen: true, stranger, counted: true });
    const counts = this.perPeer.get(peer) ?? { established: 0, halfOpen: 0 };
    counts.halfOpen++;
    this.perPeer.set(peer, counts);
    if (stranger) this.strangers++;
  }

  /** The inbound connection completed its handshake. */
  markEstablished(connection: C): void {
    const e = this.inbound.get(connection);
    if (!e || !e.halfOpen || !e.counted) return;
    e.halfOpen = false;
    const counts = this.perPeer.get(e.peer)!;
    counts.halfOpen--;
    counts.established++;
  }

  /** Inbound connections from `peer` now: established and half-open. */
  inboundFrom(peer: Address): { established: number; halfOpen: number } {
    const c = this.perPeer.get(peer);
    return { established: c?.established ?? 0, halfOpen: c?.halfOpen ?? 0 };
  }

  /** Inbound connections from untrusted peers, together. */
  get strangerConnections(): number {
    return this.strangers;
  }

  private untrackInbound(connection: C): void {
    const e = this.inbound.get(connection);
    if (!e || !e.counted) return;
    e.counted = false;
    const counts = this.perPeer.get(e.peer)!;
    if (e.halfOpen) counts.halfOpen--;
    else counts.established--;
    if (counts.halfOpen === 0 && counts.established === 0) this.perPeer.delete(e.peer);
    if (e.stranger) this.strangers--;
  }

  addConnection(remote: Address, remotePort: number, localPort: number, connection: C): void {
    let m = this.byPeer.get(remote);
    if (!m) this.byPeer.set(remote, (m = new Map()));
    const key = localPort * 65536 + remotePort;
    if (m.has(key)) throw new Error("connection already registered");
    m.set(key, connection);
    bump(this.perLocalPort, localPort, 1);
    bump(this.activePerLocalPort, localPort, 1);
    this.total++;
    this.active++;
  }

  /** The connection entered TIME-WAIT: it keeps its entry and port but stops counting toward the limits. */
  markLingering(remote: Address, remotePort: number, localPort: number, connection: C): void {
    if (this.byPeer.get(remote)?.get(localPort * 65536 + remotePort) !== connection || this.lingering.has(connection)) return;
    this.lingering.add(connection);
    this.untrackInbound(connection);
    bump(this.activePerLocalPort, localPort, -1);
    this.active--;
  }

  removeConnection(remote: Address, remotePort: number, localPort: number, connection: C): void {
    const m = this.byPeer.get(remote);
    const key = localPort * 65536 + remotePort;
    if (!m || m.get(key) !== connection) return;
    m.delete(key);
    if (m.size === 0) this.byPeer.delete(remote);
    bump(this.perLocalPort, localPort, -1);
    this.total--;
    this.untrackInbound(connection);
    this.inbound.delete(connection);
    if (this.lingering.delete(connection)) return;
    bump(this.activePerLocalPort, localPort, -1);
    this.active--;
  }

  connectionsWith(remote: Address): C[] {
    return [...(this.byPeer.get(remote)?.values() ?? [])];
  }

  *allConnections(): IterableIterator<C> {
    for (const m of this.byPeer.values()) yield* m.values();
  }

  /** A free ephemeral port, or undefined when all 16384 are taken. */
  allocateEphemeral(): number | undefined {
    const span = EPHEMERAL_MAX - EPHEMERAL_MIN + 1;
    for (let i = 0; i < span; i++) {
      const port = this.cursor;
      this.cursor = port === EPHEMERAL_MAX ? EPHEMERAL_MIN : port + 1;
      if (!this.listeners.has(port) && !this.bindings.has(port) && !this.perLocalPort.has(port)) return port;
    }
    return undefined;
  }
}

function bump(counts: Map<number, number>, key: number, by: number): void {
  const n = (counts.get(key) ?? 0) + by;
  if (n <= 0) counts.delete(key);
  else counts.set(key, n);
}
