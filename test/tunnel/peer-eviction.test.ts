/**
 * Issue 9: peers were never evicted; ten minutes of one-shot public
 * identities grew a public daemon's peer table to 1,711 entries and its RSS
 * from 40 to 83 MiB. Here 300 one-shot identities (real data planes on real
 * UDP sockets on 127.0.0.1, each one handshake and one ping) meet a public
 * node: once they are idle, every table the node keeps per peer is back to
 * its trusted peer alone; and with a cap, the table never holds more than it.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { identityFromSeed } from "../../src/crypto/identity.ts";
import { DataPlane, type PeerInfo, type PeerLimits } from "../../src/daemon/data-plane.ts";
import { NodeError } from "../../src/daemon/local-node.ts";
import { UdpSocket } from "../../src/daemon/udp-socket.ts";
import { addressOf, type Address } from "../../src/protocol/address.ts";
import { createLogger } from "../../src/util/log.ts";

interface TestNode {
  address: Address;
  plane: DataPlane;
  udp: UdpSocket;
  trusted: Set<Address>;
}

const directory = new Map<Address, PeerInfo>();
const open: TestNode[] = [];
let lookups = 0;

/** Strangers here all come from 127.0.0.1: the per-source budgets would make 300 of them wait, which is not the subject. */
const RELAXED = {
  handshakeLimits: { loadThreshold: 100_000, strangerRate: 100_000, strangerBurst: 100_000 },
  introductionLimits: { perSourceRate: 100_000, perSourceBurst: 100_000, lookupRate: 100_000, lookupBurst: 100_000, maxConcurrent: 64 },
};

async function node(n: number, options: { public?: boolean; peerLimits?: Partial<PeerLimits> } = {}): Promise<TestNode> {
  const seed = new Uint8Array(32);
  new DataView(seed.buffer).setUint32(0, 0x5eed_0000 + n);
  const identity = identityFromSeed(seed);
  const address = addressOf(0, 20_000 + n);
  const trusted = new Set<Address>();
  let plane!: DataPlane;
  const udp = await UdpSocket.open({ hostname: "127.0.0.1", port: 0, onDatagram: (d, h, p) => plane.receiveDatagram(d, h, p) });
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
      lookups++;
      const info = directory.get(a);
      if (!info) throw new NodeError("not_found", "no such node");
      return info;
    },
    log: createLogger("test", { level: "error" }),
    peerLimits: options.peerLimits,
    ...RELAXED,
  });
  directory.set(address, { identityKey: identity.publicKey, endpoint: `127.0.0.1:${udp.port}` });
  const self = { address, plane, udp, trusted };
  open.push(self);
  return self;
}

async function close(n: TestNode): Promise<void> {
  await n.plane.shutdown(0);
  n.udp.close();
  open.splice(open.indexOf(n), 1);
}

afterEach(async () => {
  for (const n of open.slice()) await close(n);
});

/** This process's RSS and JS heap after a full collection. */
function memory(): { rss: number; heap: number } {
  Bun.gc(true);
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

/** `count` one-shot identities, `batch` at a time: each pings the victim once and goes away. */
async function oneShotVisitors(victim: TestNode, first: number, count: number, batch: number, each?: () => void): Promise<number> {
  let answered = 0;
  for (let i = 0; i < count; i += batch) {
    const visitors = await Promise.all(Array.from({ length: Math.min(batch, count - i) }, (_, k) => node(first + i + k)));
    const rtts = await Promise.allSettled(visitors.map((v) => v.plane.ping(victim.address, 1, 3000)));
    answered += rtts.filter((r) => r.status === "fulfilled").length;
    for (const v of visitors) await close(v);
    each?.();
  }
  return answered;
}

describe("untrusted peers are forgotten", () => {
  test("300 one-shot identities: once idle, every per-peer table is back to the trusted peer alone", async () => {
    const victim = await node(1, { public: true, peerLimits: { idleAfter: 1500, maxUntrusted: 1000 } });
    const friend = await node(2);
    victim.trusted.add(friend.address);
    friend.trusted.add(victim.address);
    await friend.plane.ping(victim.address, 1, 3000);
    const before = memory();

    const answered = await oneShotVisitors(victim, 100, 300, 50);
    expect(answered).toBe(300);
    const full = victim.plane.tableSizes();
    const atPeak = memory(); // the visitors are closed: what is left is (mostly) the victim's 301 peers
    expect(full.peers).toBe(301);
    expect(full.paths).toBeGreaterThanOrEqual(300);

    // The friend keeps talking now and then; the strangers are gone.
    const deadline = performance.now() + 6000;
    let sizes = victim.plane.tableSizes();
    while (performance.now() < deadline && sizes.peers > 1) {
      await Bun.sleep(250);
      await friend.plane.ping(victim.address, 2, 3000);
      sizes = victim.plane.tableSizes();
    }
    expect(victim.plane.router.peer(friend.address)).toBeDefined();
    expect(sizes.peers).toBe(1);
    expect(victim.plane.router.stats.peersEvicted).toBe(300);
    // Everything keyed by peer: at most the friend's entries (and the bounded replay memory).
    const { indices, cookieRoutes, ...rest } = sizes;
    expect(indices).toBeLessThanOrEqual(3); // the friend's sessions (current, previous, next)
    expect(cookieRoutes).toBeLessThanOrEqual(1);
    expect(rest).toMatchObject({ sources: 1, unknown: 0, paths: 1, outbound: 0, refreshed: 0, synBuckets: 0, lookups: 0, introductionsRunning: 0 });
    expect(sizes.timestamps).toBeLessThanOrEqual(301); // kept for replay protection, bounded (4096)
    const after = memory();
    const mib = (n: number) => (n / 2 ** 20).toFixed(1);
    console.log(
      `this process (victim, friend, visitors closed; after a full GC): RSS ${mib(before.rss)} -> ${mib(atPeak.rss)} MiB with 301 peers -> ${mib(after.rss)} MiB once evicted; ` +
        `JS heap ${mib(before.heap)} -> ${mib(atPeak.heap)} -> ${mib(after.heap)} MiB`,
    );
    // What 300 forgotten strangers leave behind on the heap: the bounded replay timestamps, little else.
    expect(after.heap - before.heap).toBeLessThan(8 * 2 ** 20);
    // And a visitor that comes back is simply introduced again.
    const again = await oneShotVisitors(victim, 100, 1, 1);
    expect(again).toBe(1);
  }, 60_000);

  test("a cap of 50 untrusted peers holds while 300 strangers come, the newest are served, the trusted peer stays", async () => {
    const victim = await node(3, { public: true, peerLimits: { idleAfter: 60_000, maxUntrusted: 50 } });
    const friend = await node(4);
    victim.trusted.add(friend.address);
    friend.trusted.add(victim.address);
    await friend.plane.ping(victim.address, 1, 3000);
    let largest = 0;
    const answered = await oneShotVisitors(victim, 1000, 300, 25, () => {
      largest = Math.max(largest, victim.plane.router.peerCount);
    });
    expect(answered).toBe(300);
    // The cap, the trusted peer, and introductions that were already running when the table filled.
    expect(largest).toBeLessThanOrEqual(50 + 1 + 25);
    expect(victim.plane.router.peerCount).toBeLessThanOrEqual(50 + 1);
    expect(victim.plane.router.peer(friend.address)).toBeDefined();
    expect(await friend.plane.ping(victim.address, 2, 3000)).toBeGreaterThan(0);
    expect(victim.plane.tableSizes().paths).toBeLessThanOrEqual(50 + 1);
  }, 60_000);

  test("a peer with an open stream is never evicted, however idle", async () => {
    const victim = await node(5, { public: true, peerLimits: { idleAfter: 300, maxUntrusted: 10 } });
    const client = await node(6);
    victim.plane.listen(80, () => {});
    const stream = await client.plane.dial(victim.address, 80, 3000);
    await Bun.sleep(1500);
    expect(victim.plane.router.peer(client.address)).toBeDefined();
    stream.abort();
    const deadline = performance.now() + 5000;
    while (performance.now() < deadline && victim.plane.router.peer(client.address)) await Bun.sleep(100);
    expect(victim.plane.router.peer(client.address)).toBeUndefined();
  }, 30_000);
});
