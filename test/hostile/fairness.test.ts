/**
 * Hostile load, fairness between peers: one peer's flood of half-open SYNs, its
 * thousand idle streams or its burst of dials must not cost any other peer its
 * connections. Data planes in one process over real UDP sockets on 127.0.0.1
 * (real tunnels, real stream engines); the attacker's half-open SYNs are real
 * SYN packets sent through its real tunnel session, whose SYN|ACKs it ignores.
 *
 * Before per-peer limits, one trusted peer could fill a port's shared limit
 * (other peers got 0/15 dials), drain the daemon-wide SYN budget, and a burst of
 * 1000 dials took ~3 s because SYNs over the budget were dropped silently.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { identityFromSeed } from "../../src/crypto/identity.ts";
import { addressOf, type Address } from "../../src/protocol/address.ts";
import { encodePacket, Flag, packet, Protocol } from "../../src/protocol/packet.ts";
import { DataPlane, type PeerInfo } from "../../src/daemon/data-plane.ts";
import { NodeError, type StreamHandle } from "../../src/daemon/local-node.ts";
import { UdpSocket } from "../../src/daemon/udp-socket.ts";
import { createLogger } from "../../src/util/log.ts";

interface TestNode {
  address: Address;
  plane: DataPlane;
  udp: UdpSocket;
  trusted: Set<Address>;
  /** Drop every datagram that arrives (an attacker ignoring the SYN|ACKs to its SYNs). */
  deaf: boolean;
}

const directory = new Map<Address, PeerInfo>();
const open: TestNode[] = [];

async function node(n: number, options: { public?: boolean } = {}): Promise<TestNode> {
  const identity = identityFromSeed(new Uint8Array(32).fill(n));
  const address = addressOf(0, 2000 + n);
  const trusted = new Set<Address>();
  let plane!: DataPlane;
  const self = { deaf: false } as TestNode;
  const udp = await UdpSocket.open({ hostname: "127.0.0.1", port: 0, onDatagram: (d, h, p) => self.deaf || plane.receiveDatagram(d, h, p) });
  plane = new DataPlane({
    address,
    identity,
    send: (f, h, p) => udp.send(f, h, p),
    flush: () => udp.flush(),
    policy: {
      admitsSession: (a) => options.public === true || trusted.has(a),
      acceptsInbound: (a) => options.public === true || trusted.has(a),
      trusts: (a) => trusted.has(a),
    },
    lookupPeer: async (a) => {
      const info = directory.get(a);
      if (!info) throw new NodeError("not_found", "no such node");
      return info;
    },
    log: createLogger("test", { level: "error" }),
    streamConfig: { timeWait: 50 },
  });
  directory.set(address, { identityKey: identity.publicKey, endpoint: `127.0.0.1:${udp.port}` });
  Object.assign(self, { address, plane, udp, trusted });
  open.push(self);
  return self;
}

function trustEachOther(a: TestNode, b: TestNode): void {
  a.trusted.add(b.address);
  b.trusted.add(a.address);
}

afterEach(async () => {
  for (const n of open.splice(0)) {
    await n.plane.shutdown(50);
    n.udp.close();
  }
});

/** A listener that accepts and keeps every connection open, reading what comes. */
function holdOpen(n: TestNode, port: number): void {
  n.plane.listen(port, (s) => {
    s.onEvent = (e) => {
      if (e.type === "readable") while (s.read(65536));
    };
  });
}

/** `count` dials from `from` to `to`:port, `parallel` at a time; how many succeeded, and the errors. */
async function dials(from: TestNode, to: TestNode, port: number, count: number, parallel: number, timeoutMs: number) {
  let ok = 0;
  const errors: string[] = [];
  const streams: StreamHandle[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      try {
        streams.push(await from.plane.dial(to.address, port, timeoutMs));
        ok++;
      } catch (e) {
        errors.push((e as NodeError).code);
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return { ok, errors, streams };
}

/** Sends raw SYNs from `attacker` to `victim`:port through the attacker's tunnel session, never completing them. */
function sendHalfOpenSyns(attacker: TestNode, victim: TestNode, port: number, count: number, firstPort: number): void {
  for (let i = 0; i < count; i++) {
    const syn = packet({ protocol: Protocol.Stream, flags: Flag.SYN, src: attacker.address, dst: victim.address, srcPort: firstPort + i, dstPort: port, seq: (Math.random() * 2 ** 32) >>> 0, window: 64 });
    attacker.plane.router.send(victim.address, encodePacket(syn), performance.now());
  }
  // The data plane sends what its router produced at the end of a turn; this test speaks for it.
  (attacker.plane as unknown as { flushRouter(): void }).flushRouter();
}

describe("fairness between peers", () => {
  test("one trusted peer's half-open SYN flood (~1000/s) does not cost another trusted peer its dials", async () => {
    const [victim, attacker, good] = [await node(1), await node(2), await node(3)];
    trustEachOther(victim, attacker);
    trustEachOther(victim, good);
    holdOpen(victim, 80);
    await attacker.plane.ping(victim.address, 1, 2000); // a session exists
    attacker.deaf = true; // from now on its SYNs are never completed (nor reset)
    let flooding = true;
    let sent = 0;
    const flood = (async () => {
      let srcPort = 1024;
      while (flooding) {
        sendHalfOpenSyns(attacker, victim, 80, 10, srcPort);
        sent += 10;
        srcPort = srcPort >= 60000 ? 1024 : srcPort + 10;
        await Bun.sleep(10);
      }
    })();
    await Bun.sleep(2500); // long enough to fill any shared limit at this rate
    let ok = 0;
    const errors: string[] = [];
    const pending: Promise<void>[] = [];
    for (let i = 0; i < 100; i++) {
      pending.push(
        good.plane.dial(victim.address, 80, 3000).then(
          () => void ok++,
          (e: NodeError) => void errors.push(e.code),
        ),
      );
      await Bun.sleep(20);
    }
    await Promise.all(pending);
    const r = { ok, errors };
    flooding = false;
    await flood;
    const half = victim.plane.ports.inboundFrom(attacker.address);
    console.log(`flood: ${sent} half-open SYNs; good peer: ${r.ok}/100 dials (${[...new Set(r.errors)].join(", ")}); attacker half-open held: ${half.halfOpen}; refused by the per-peer limit: ${victim.plane.counters.peerConnectionLimit}`);
    expect(r.ok).toBeGreaterThanOrEqual(99);
    expect(half.halfOpen).toBeLessThanOrEqual(1024);
    expect(half.halfOpen).toBeGreaterThan(100); // the flood did arrive
  }, 30_000);

  test("1024 idle streams from one trusted peer leave room on the port for every other peer", async () => {
    const [victim, attacker, good] = [await node(4), await node(5), await node(6)];
    trustEachOther(victim, attacker);
    trustEachOther(victim, good);
    holdOpen(victim, 80);
    const a = await dials(attacker, victim, 80, 1100, 64, 5000);
    console.log(`attacker: ${a.ok} streams open, ${a.errors.length} refused (${[...new Set(a.errors)].join(", ")})`);
    expect(a.ok).toBeLessThanOrEqual(1024);
    expect(a.errors.every((c) => c === "limit_exceeded")).toBe(true);
    const g = await dials(good, victim, 80, 15, 5, 3000);
    console.log(`good peer: ${g.ok}/15 dials while the attacker holds ${a.ok}`);
    expect(g.ok).toBe(15);
  }, 60_000);

  test("a burst of 1000 dials from one trusted peer is admitted at once, none dropped for rate", async () => {
    const [server, client] = [await node(7), await node(8)];
    trustEachOther(server, client);
    holdOpen(server, 80);
    await client.plane.ping(server.address, 1, 2000);
    const t0 = performance.now();
    const results = await Promise.allSettled(Array.from({ length: 1000 }, () => client.plane.dial(server.address, 80, 10_000)));
    const ms = performance.now() - t0;
    const ok = results.filter((r) => r.status === "fulfilled").length;
    console.log(`1000 dials at once: ${ok} open in ${ms.toFixed(0)} ms; SYNs refused for rate: ${server.plane.counters.synRateLimited}`);
    expect(ok).toBe(1000);
    expect(server.plane.counters.synRateLimited).toBe(0);
  }, 60_000);

  test("a SYN over a stranger's limit is refused at once, saying why", async () => {
    const [publicNode, stranger] = [await node(9, { public: true }), await node(10)];
    holdOpen(publicNode, 80);
    const a = await dials(stranger, publicNode, 80, 64, 16, 5000);
    expect(a.ok).toBe(64);
    const t0 = performance.now();
    const err = await stranger.plane.dial(publicNode.address, 80, 10_000).then(
      () => null,
      (e: NodeError) => e,
    );
    const ms = performance.now() - t0;
    console.log(`65th stream from a stranger: ${err?.code} in ${ms.toFixed(0)} ms: ${err?.message}`);
    expect(err?.code).toBe("limit_exceeded");
    expect(ms).toBeLessThan(2000);
  }, 30_000);
});
