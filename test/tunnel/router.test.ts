import { describe, expect, test } from "bun:test";
import { TimestampClock } from "../../src/crypto/timestamp.ts";
import { addressOf, formatAddress, type Address } from "../../src/protocol/address.ts";
import { TunnelRouter, type AdmitDecision } from "../../src/tunnel/router.ts";
import { seededBytes, testIdentity } from "../crypto/support.ts";
import { pilotPacket } from "./harness.ts";

interface Node {
  address: Address;
  endpoint: string;
  identity: ReturnType<typeof testIdentity>;
  router: TunnelRouter<string>;
  policy: Map<Address, AdmitDecision>;
}

let wall = 1_700_000_000_000;

function node(n: number, options: { defaultAdmit?: AdmitDecision } = {}): Node {
  const identity = testIdentity(n);
  const address = addressOf(0, 100 + n);
  const policy = new Map<Address, AdmitDecision>();
  const router = new TunnelRouter<string>({
    localAddress: address,
    identity,
    admit: (a) => policy.get(a) ?? options.defaultAdmit ?? "accept",
    random: seededBytes(n * 31),
    timestamps: new TimestampClock(() => wall),
  });
  return { address, endpoint: `127.0.0.1:${4000 + n}`, identity, router, policy };
}

/** Carries every pending transmit until the network is quiet. */
function pump(nodes: Node[], now: number, tamper?: (frame: Uint8Array, to: Node) => Uint8Array | null): void {
  const byEndpoint = new Map(nodes.map((n) => [n.endpoint, n]));
  for (let round = 0; round < 20; round++) {
    let moved = 0;
    for (const from of nodes) {
      for (const t of from.router.takeTransmits()) {
        const to = byEndpoint.get(t.endpoint);
        if (!to) continue;
        const frame = tamper ? tamper(t.frame, to) : t.frame;
        if (frame) to.router.receive(frame, from.endpoint, now);
        moved++;
      }
    }
    if (moved === 0) return;
  }
}

/** Introduces `b` to `a` the way the daemon shell does: look up the initiator's key, add it, accept. */
function resolveUnknown(a: Node, all: Node[], now: number): number {
  let n = 0;
  for (const u of a.router.takeUnknownInitiators()) {
    const who = all.find((x) => x.address === u.address)!;
    a.router.addPeer(u.address, who.identity.publicKey, null);
    if (a.router.acceptPending(u, now)) n++;
  }
  return n;
}

const text = (p: Uint8Array) => new TextDecoder().decode(p.subarray(34));

describe("TunnelRouter", () => {
  test("routes sessions with several peers over one table, and an unknown initiator waits for its key", () => {
    const [a, b, c] = [node(1), node(2), node(3)];
    b.router.addPeer(a.address, a.identity.publicKey, a.endpoint);
    c.router.addPeer(a.address, a.identity.publicKey, a.endpoint);
    b.router.send(a.address, pilotPacket(b.address, a.address, "from b"), 0);
    c.router.send(a.address, pilotPacket(c.address, a.address, "from c"), 0);
    pump([a, b, c], 0);
    // a knew neither: both initiations are parked, not answered.
    expect(a.router.stats.unknownInitiator).toBe(2);
    expect(resolveUnknown(a, [b, c], 1)).toBe(2);
    pump([a, b, c], 1);
    const got = a.router.takeDelivered().map((d) => `${formatAddress(d.from)} ${text(d.packet)}`).sort();
    expect(got).toEqual([`${formatAddress(b.address)} from b`, `${formatAddress(c.address)} from c`]);
    // And back: a answers each over the session the peer opened.
    a.router.send(b.address, pilotPacket(a.address, b.address, "to b"), 2);
    a.router.send(c.address, pilotPacket(a.address, c.address, "to c"), 2);
    pump([a, b, c], 2);
    expect(b.router.takeDelivered().map((d) => text(d.packet))).toEqual(["to b"]);
    expect(c.router.takeDelivered().map((d) => text(d.packet))).toEqual(["to c"]);
  });

  test("the admission policy is asked for every initiation; a rejected node gets nothing", () => {
    const [a, b] = [node(4, { defaultAdmit: "reject" }), node(5)];
    a.router.addPeer(b.address, b.identity.publicKey, b.endpoint);
    b.router.addPeer(a.address, a.identity.publicKey, a.endpoint);
    b.router.send(a.address, pilotPacket(b.address, a.address, "let me in"), 0);
    pump([a, b], 0);
    expect(a.router.stats.rejectedInitiation).toBe(1);
    expect(a.router.takeDelivered()).toEqual([]);
    expect(a.router.takeTransmits()).toEqual([]);
    a.policy.set(b.address, "accept");
    b.router.tick(1500); // b's retry
    pump([a, b], 1500);
    expect(a.router.takeDelivered().map((d) => text(d.packet))).toEqual(["let me in"]);
  });

  test("after removePeer its sessions are gone, and a replayed old initiation is refused even once the peer is re-added", () => {
    const [a, b] = [node(6), node(7)];
    a.router.addPeer(b.address, b.identity.publicKey, b.endpoint);
    b.router.addPeer(a.address, a.identity.publicKey, a.endpoint);
    let captured: Uint8Array | null = null;
    b.router.send(a.address, pilotPacket(b.address, a.address, "hello"), 0);
    pump([a, b], 0, (frame) => {
      if (frame[0] === 0x01 && !captured) captured = frame.slice();
      return frame;
    });
    expect(a.router.takeDelivered().length).toBe(1);
    a.router.removePeer(b.address);
    b.router.send(a.address, pilotPacket(b.address, a.address, "after removal"), 10);
    pump([a, b], 10);
    expect(a.router.takeDelivered()).toEqual([]);
    expect(a.router.stats.unknownIndex).toBeGreaterThan(0);
    a.router.addPeer(b.address, b.identity.publicKey, b.endpoint);
    expect(a.router.receive(captured!, b.endpoint, 20)).toBe("dropped");
    expect(a.router.stats.replayedInitiation).toBe(1);
    expect(a.router.takeTransmits()).toEqual([]);
  });

  test("beacon messages are handed back to the shell, junk is counted", () => {
    const a = node(8);
    expect(a.router.receive(new Uint8Array([0x20, 1, 2]), "x", 0)).toBe("beacon");
    expect(a.router.receive(new Uint8Array([]), "x", 0)).toBe("dropped");
    expect(a.router.receive(new Uint8Array([0x12, 0x01, 0, 0]), "x", 0)).toBe("dropped");
    expect(a.router.receive(new Uint8Array(40).fill(4), "x", 0)).toBe("dropped");
    expect(a.router.stats).toMatchObject({ beacon: 1, malformed: 2, unknownIndex: 1 });
  });

  test("initiations for someone else's key never reach a peer", () => {
    const [a, b, c] = [node(9), node(10), node(11)];
    // b thinks a's key is c's: its initiation is sealed to the wrong static and fails mac1 at a.
    b.router.addPeer(a.address, c.identity.publicKey, a.endpoint);
    b.router.send(a.address, pilotPacket(b.address, a.address, "x"), 0);
    pump([a, b, c], 0);
    expect(a.router.stats.badInitiation).toBe(1);
    expect(a.router.stats.unknownInitiator).toBe(0);
  });

  test("evictIdle forgets unprotected peers idle long enough, then the least recently active beyond the cap; replay memory stays bounded", () => {
    const a = node(12);
    const others = [node(13), node(14), node(15), node(16)];
    const [b, c, d, e] = others;
    // Each of b..e talks to a at a different time; b is protected (say, trusted).
    others.forEach((o, i) => {
      o.router.addPeer(a.address, a.identity.publicKey, a.endpoint, 0);
      o.router.send(a.address, pilotPacket(o.address, a.address, "hi"), i * 1000);
      pump([a, ...others], i * 1000);
      resolveUnknown(a, others, i * 1000);
      pump([a, ...others], i * 1000);
    });
    expect(a.router.peerCount).toBe(4);
    const keep = (x: Address) => x === b!.address;
    // Idle 2.5 s at t = 3.5 s: b (protected) and c (idle since 1 s) ... c goes, d and e stay.
    expect(a.router.evictIdle(3500, { idleAfter: 2500, maxPeers: 10, keep })).toEqual([c!.address]);
    // Cap of 1 unprotected peer: the least recently active of d and e goes.
    expect(a.router.evictIdle(3500, { idleAfter: 60_000, maxPeers: 1, keep })).toEqual([d!.address]);
    expect([...a.router.allPeers()].map((p) => p.remoteAddress).sort()).toEqual([b!.address, e!.address].sort());
    expect(a.router.stats.peersEvicted).toBe(2);
    expect(a.router.tableSizes.sources).toBe(2);
    // A forgotten peer's frames are dropped; its replayed initiation is still refused (timestamps outlive it).
    expect(a.router.tableSizes.timestamps).toBe(4);
  });
});
