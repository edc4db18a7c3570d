/**
 * A deterministic two-node (or more) world for Peer tests: identities from
 * seeds, a seeded random source, a fake wall clock for timestamps, and a
 * network that carries datagrams between peers when told to.
 */
import type { Identity } from "../../src/crypto/identity.ts";
import { localHandshakeKeys } from "../../src/crypto/handshake.ts";
import { TimestampClock } from "../../src/crypto/timestamp.ts";
import { addressOf, type Address } from "../../src/protocol/address.ts";
import { encodePacket, packet, Protocol } from "../../src/protocol/packet.ts";
import { IndexTable } from "../../src/tunnel/index-table.ts";
import { Peer, type PeerPathMtuOptions, type Transmit } from "../../src/tunnel/peer.ts";
import type { TunnelTimers } from "../../src/tunnel/timers.ts";
import { seededBytes, testIdentity } from "../crypto/support.ts";

export interface TestNode {
  readonly name: string;
  readonly identity: Identity;
  readonly address: Address;
  readonly endpoint: string;
  readonly indices: IndexTable<unknown>;
  readonly clock: TimestampClock;
}

let wallClock = 1_700_000_000_000;
/** Advances the fake wall clock that handshake timestamps read. */
export function advanceWallClock(ms: number): void {
  wallClock += ms;
}

export function testNode(name: string, seed: number, node: number): TestNode {
  return {
    name,
    identity: testIdentity(seed),
    address: addressOf(1, node),
    endpoint: `10.0.0.${node}:4000`,
    indices: new IndexTable(seededBytes(seed + 1000)),
    clock: new TimestampClock(() => wallClock),
  };
}

export function peerOf(
  self: TestNode,
  other: TestNode,
  options: {
    timers?: Partial<TunnelTimers>;
    pinned?: Uint8Array;
    endpoint?: string | null;
    seed?: number;
    queueLimit?: number;
    persistentKeepalive?: number;
    pathMtu?: PeerPathMtuOptions<string>;
    isRelay?: (e: string) => boolean;
  } = {},
): Peer<string> {
  return new Peer<string>({
    localAddress: self.address,
    remoteAddress: other.address,
    local: localHandshakeKeys(self.identity),
    remoteIdentityKey: options.pinned ?? other.identity.publicKey,
    indices: self.indices,
    timestamps: self.clock,
    endpoint: options.endpoint === undefined ? other.endpoint : options.endpoint,
    random: seededBytes(options.seed ?? self.address),
    timers: options.timers,
    queueLimit: options.queueLimit,
    persistentKeepalive: options.persistentKeepalive,
    pathMtu: options.pathMtu,
    isRelay: options.isRelay,
  });
}

/** An encoded datagram-protocol Pilot packet from `src` to `dst`. */
export function pilotPacket(src: Address, dst: Address, payload: Uint8Array | string): Uint8Array {
  const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  return encodePacket(packet({ protocol: Protocol.Datagram, src, dst, srcPort: 1000, dstPort: 1001, payload: bytes }));
}

export interface Sent {
  readonly from: string;
  readonly to: string;
  readonly frame: Uint8Array;
}

/**
 * Carries frames between two peers. `pump` repeats until quiet; `drop` decides
 * which frames are lost; every frame that was sent is kept in `log`.
 */
export class Link {
  readonly log: Sent[] = [];
  drop: (s: Sent) => boolean = () => false;
  /** The endpoint each side's frames appear to come from (roaming tests change it). */
  sourceOf: Record<string, string>;

  constructor(
    readonly a: Peer<string>,
    readonly aNode: TestNode,
    readonly b: Peer<string>,
    readonly bNode: TestNode,
  ) {
    this.sourceOf = { [aNode.name]: aNode.endpoint, [bNode.name]: bNode.endpoint };
  }

  /** Moves frames until neither side has anything to send; returns how many were delivered. */
  pump(now: number): number {
    let delivered = 0;
    for (let round = 0; round < 100; round++) {
      const fromA = this.a.takeTransmits().map((t) => this.record(this.aNode, t));
      const fromB = this.b.takeTransmits().map((t) => this.record(this.bNode, t));
      if (fromA.length === 0 && fromB.length === 0) return delivered;
      for (const s of fromA) if (this.carry(s, this.b, this.bNode, now)) delivered++;
      for (const s of fromB) if (this.carry(s, this.a, this.aNode, now)) delivered++;
    }
    throw new Error("link never went quiet");
  }

  private record(from: TestNode, t: Transmit<string>): Sent {
    const s = { from: from.name, to: t.endpoint, frame: t.frame };
    this.log.push(s);
    return s;
  }

  private carry(s: Sent, to: Peer<string>, toNode: TestNode, now: number): boolean {
    if (s.to !== toNode.endpoint || this.drop(s)) return false;
    to.receive(s.frame, this.sourceOf[s.from]!, now);
    return true;
  }
}

export function twoNodes(
  options: { timers?: Partial<TunnelTimers>; queueLimit?: number; pathMtu?: PeerPathMtuOptions<string>; isRelay?: (e: string) => boolean } = {},
) {
  const aNode = testNode("a", 1, 10);
  const bNode = testNode("b", 2, 20);
  const a = peerOf(aNode, bNode, options);
  const b = peerOf(bNode, aNode, options);
  const link = new Link(a, aNode, b, bNode);
  return { a, b, aNode, bNode, link };
}

/** Two nodes with a confirmed session (A initiated) at time `now`. */
export function establishedPair(now = 0, options: Parameters<typeof twoNodes>[0] = {}) {
  const world = twoNodes(options);
  world.a.connect(now);
  world.link.pump(now);
  world.a.takeEvents();
  world.b.takeEvents();
  return world;
}

export const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes.subarray(34));
