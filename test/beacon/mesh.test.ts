/**
 * Several beacons of one deployment (src/beacon/mesh.ts), in one process over
 * real UDP on 127.0.0.1: nodes registered at different beacons relay and
 * punch to each other through their beacons; a mesh message without the
 * deployment's MAC, or from an address that is not a peer, is dropped; and a
 * node whose beacon dies moves to another without breaking its streams.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { BeaconServer } from "../../src/beacon/server.ts";
import { BeaconMesh, meshKeyOf } from "../../src/beacon/mesh.ts";
import { encodeMeshAnnounce, MESH_ANNOUNCE_TAG_AT } from "../../src/protocol/beacon-mesh.ts";
import { BeaconType } from "../../src/protocol/beacon-message.ts";
import type { StreamHandle } from "../../src/daemon/local-node.ts";
import { UdpSocket } from "../../src/daemon/udp-socket.ts";
import { addNode, pattern, readAll, relayedStream, until, world, writeAll, type World } from "./harness.ts";

let w: World | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

/** The beacon list for node `5000 + n` so that it starts at beacon `first` (the client starts at id % count). */
function startingAt(n: number, first: number, all: number[]): number[] {
  const rest = all.filter((b) => b !== first);
  const list: number[] = [];
  const at = (5000 + n) % all.length;
  for (let i = 0, r = 0; i < all.length; i++) list.push(i === at ? first : rest[r++]!);
  return list;
}

describe("several beacons", () => {
  test("nodes at different beacons relay to each other through both, byte exact", async () => {
    w = await world({ beacons: 2 });
    const a = await addNode(w, 1, { blockDirect: true, beacons: [0] });
    const b = await addNode(w, 2, { public: true, blockDirect: true, beacons: [1] });
    await until("b's registration announced to beacon 0", () => w!.beacon.mesh!.locate(b.id, Date.now()) !== undefined);
    await until("a's registration announced to beacon 1", () => w!.beacons[1]!.mesh!.locate(a.id, Date.now()) !== undefined);
    const accepted = new Promise<StreamHandle>((r) => b.plane.listen(80, r));
    const sa = await a.plane.dial(b.address, 80);
    const sb = await accepted;
    const data = pattern(256 * 1024, 3);
    const got = readAll(sb);
    await writeAll(sa, data);
    expect(Buffer.compare(await got, data)).toBe(0);
    expect(a.plane.paths.describe(b.address)?.path).toBe("relay");
    expect(w.beacon.mesh!.stats.forwarded).toBeGreaterThan(0);
    expect(w.beacons[1]!.mesh!.stats.delivered).toBeGreaterThan(0);
    expect(w.beacons[1]!.mesh!.stats.forwarded).toBeGreaterThan(0); // b's answers went back through beacon 1
  }, 20_000);

  test("punching works across beacons: both sides get a signed punch and go direct", async () => {
    w = await world({ beacons: 2 });
    const a = await addNode(w, 3, { beacons: [0] });
    const b = await addNode(w, 4, { public: true, beacons: [1] });
    await until("b's registration announced to beacon 0", () => w!.beacon.mesh!.locate(b.id, Date.now()) !== undefined);
    const punchesBefore = a.beacon.stats.punches + b.beacon.stats.punches;
    a.beacon.requestPunch(b.id);
    await until("both sides received a punch", () => a.beacon.stats.punches + b.beacon.stats.punches >= punchesBefore + 2);
    expect(w.beacon.stats.punches).toBeGreaterThan(0);
    expect(await a.plane.ping(b.address, 1, 3000)).toBeGreaterThan(0);
  }, 20_000);

  test("the visibility rule holds across beacons: a relay to a node its sender may not reach is refused at the sender's beacon", async () => {
    w = await world({ beacons: 2 });
    const a = await addNode(w, 5, { blockDirect: true, beacons: [0] });
    const b = await addNode(w, 6, { blockDirect: true, beacons: [1] });
    await until("b's registration announced to beacon 0", () => w!.beacon.mesh!.locate(b.id, Date.now()) !== undefined);
    w.reach = () => false;
    const refused = w.beacon.stats.relayRefused;
    a.beacon.relay(b.id, new Uint8Array(64).fill(1));
    await until("the relay was refused", () => w!.beacon.stats.relayRefused > refused);
    expect(w.beacon.mesh!.stats.forwarded).toBe(0);
  });

  test("mesh messages without the deployment's MAC, or from a stranger's address, are dropped", async () => {
    w = await world({ beacons: 2 });
    const b = await addNode(w, 8, { beacons: [1] });
    await until("b announced", () => w!.beacon.mesh!.locate(b.id, Date.now()) !== undefined);
    // A beacon with another key, configured as a peer: its announce fails the MAC.
    const other = await BeaconServer.start({ host: "127.0.0.1", port: 0, signer: generateIdentity(), peers: [] });
    try {
      w.beacon.mesh!.addPeer("127.0.0.1", other.address.port);
      const foreign = new BeaconMesh(meshKeyOf(generateIdentity()), [], { bytesPerSecond: 1e9, burstBytes: 1e9, maxNodes: 10 });
      foreign.addPeer("127.0.0.1", w.beacon.address.port);
      const forged = foreign.announce({ node: 4242, registeredAt: Date.now(), ip: "127.0.0.1", port: 1, ttlMs: 60_000 }, Date.now())!;
      const rejected = w.beacon.mesh!.stats.rejected;
      const sock = await UdpSocket.open({ hostname: "127.0.0.1", port: 0, onDatagram: () => {} });
      try {
        // From a stranger's address, with a valid-looking layout: dropped before any MAC is computed.
        const unsigned = encodeMeshAnnounce({ node: 4243, registeredAt: Date.now(), sentAt: Date.now(), ttlMs: 60_000, ip: "127.0.0.1", port: 1 });
        sock.send(unsigned, "127.0.0.1", w.beacon.address.port);
        // From the configured peer's address (the other beacon's socket), but keyed by another deployment.
        (other as any).socket.send(forged, w.beacon.address.port, "127.0.0.1");
        await until("the forged announce was rejected", () => w!.beacon.mesh!.stats.rejected > rejected);
        expect(w.beacon.mesh!.locate(4242, Date.now())).toBeUndefined();
        expect(w.beacon.mesh!.locate(4243, Date.now())).toBeUndefined();
        expect(unsigned.length).toBe(MESH_ANNOUNCE_TAG_AT + 16);
      } finally {
        sock.close();
      }
    } finally {
      other.close();
    }
  });

  test("a node whose beacon dies moves to another within 2 s; its relayed stream keeps flowing", async () => {
    w = await world({ beacons: 3 });
    // a starts at beacon 0 and may fail over to 2; b is at beacon 1.
    const a = await addNode(w, 10, { blockDirect: true, beacons: startingAt(10, 0, [0, 2]), keepaliveMs: 300, failoverAfterMs: 600 });
    const b = await addNode(w, 11, { public: true, blockDirect: true, beacons: [1], keepaliveMs: 300 });
    expect(a.beacon.endpoint).toBe(`127.0.0.1:${w.beacon.address.port}`);
    await until("b's registration announced to beacon 0", () => w!.beacon.mesh!.locate(b.id, Date.now()) !== undefined);
    const { sa, got, first } = await relayedStream(a, b);

    w.beacon.close();
    const killedAt = performance.now();
    await until("a registered with another beacon", () => a.beacon.available && a.beacon.endpoint === `127.0.0.1:${w!.beacons[2]!.address.port}`, 5000);
    const failoverMs = performance.now() - killedAt;
    console.log(`beacon failover: registered with the next beacon ${Math.round(failoverMs)} ms after its beacon died`);
    expect(failoverMs).toBeLessThan(2000);
    const second = pattern(64 * 1024, 6);
    await writeAll(sa, second, true);
    const all = await got;
    expect(Buffer.compare(all, Buffer.concat([first, second]))).toBe(0);
  }, 30_000);
});

describe("beacon failover right after registering", () => {
  const isPongFrom = (port: number) => (d: Uint8Array, _h: string, p: number) => (p === port && d[0] === BeaconType.Pong ? null : d);

  test("a beacon that dies before answering its first ping is left within ~2 s, not at the next register (15 s)", async () => {
    w = await world({ beacons: 3 });
    const first = w.beacons[0]!.address.port;
    // Default keepalive (a register every 15 s): only the pings can notice the death in time.
    // It dies before its first pong reaches us.
    const a = await addNode(w, 20, { beacons: startingAt(20, 0, [0, 2]), failoverAfterMs: 600, keepaliveMs: 15_000, onReceive: isPongFrom(first) });
    await until("a registered at beacon 0", () => a.beacon.available && a.beacon.endpoint === `127.0.0.1:${first}`);
    w.beacon.close();
    const killedAt = performance.now();
    await until("a registered with another beacon", () => a.beacon.available && a.beacon.endpoint === `127.0.0.1:${w!.beacons[2]!.address.port}`, 8000);
    const failoverMs = performance.now() - killedAt;
    console.log(`beacon dead before its first pong: registered with the next one ${Math.round(failoverMs)} ms later`);
    expect(failoverMs).toBeLessThan(4000);
  }, 30_000);

  test("a live beacon that never answers pings (an older version) is kept, and asked by register only", async () => {
    w = await world({ beacons: 2 });
    const first = w.beacons[0]!.address.port;
    const a = await addNode(w, 21, { beacons: startingAt(21, 0, [0, 1]), failoverAfterMs: 600, keepaliveMs: 15_000, onReceive: isPongFrom(first) });
    await until("a registered at beacon 0", () => a.beacon.available && a.beacon.endpoint === `127.0.0.1:${first}`);
    const registers = a.beacon.stats.registersSent;
    await Bun.sleep(3000);
    expect(a.beacon.failovers).toBe(0);
    expect(a.beacon.endpoint).toBe(`127.0.0.1:${first}`);
    // One register after the unanswered pings, then none until the keepalive (15 s).
    expect(a.beacon.stats.registersSent - registers).toBeLessThanOrEqual(1);
  }, 30_000);
});

describe("mesh codec", () => {
  test("announces round-trip IPv4, IPv6 and stream (no address) registrations", async () => {
    const { decodeMeshAnnounce } = await import("../../src/protocol/beacon-mesh.ts");
    for (const [ip, port] of [["203.0.113.7", 4000], ["2001:db8::1", 9001], ["", 0]] as const) {
      const bytes = encodeMeshAnnounce({ node: 0xfffffffe, registeredAt: 1_796_000_000_123, sentAt: 1_796_000_000_456, ttlMs: 60_000, ip, port });
      const back = decodeMeshAnnounce(bytes);
      expect(back.ok).toBe(true);
      if (back.ok) expect(back.value).toEqual({ node: 0xfffffffe, registeredAt: 1_796_000_000_123, sentAt: 1_796_000_000_456, ttlMs: 60_000, ip, port });
    }
  });

  test("decoding never throws on arbitrary bytes", async () => {
    const { decodeMeshAnnounce, decodeMeshDeliver } = await import("../../src/protocol/beacon-mesh.ts");
    for (let i = 0; i < 5000; i++) {
      const d = new Uint8Array(Math.floor(Math.random() * 120));
      crypto.getRandomValues(d);
      if (d.length > 0) d[0] = i % 2 ? 0x2b : 0x2c;
      expect(() => {
        decodeMeshAnnounce(d);
        decodeMeshDeliver(d);
      }).not.toThrow();
    }
  });

  test("a delivery is accepted once authentic and within the peer's byte budget", () => {
    const key = meshKeyOf(generateIdentity());
    const sender = new BeaconMesh(key, [{ host: "127.0.0.1", port: 1 }], { bytesPerSecond: 1000, burstBytes: 1000, maxNodes: 10 });
    const receiver = new BeaconMesh(key, [{ host: "127.0.0.1", port: 2 }], { bytesPerSecond: 1000, burstBytes: 1000, maxNodes: 10 });
    const peer = receiver.peerAt("127.0.0.1", 2)!;
    const now = Date.now();
    const wrapped = sender.wrap(7, new Uint8Array(600).fill(9), now);
    expect(receiver.unwrap(peer, wrapped, now)?.dest).toBe(7);
    expect(receiver.unwrap(peer, wrapped, now)).toBeNull(); // over the 1000-byte burst
    expect(receiver.stats.rateLimited).toBe(1);
    const tampered = sender.wrap(7, new Uint8Array(100).fill(9), now);
    tampered[tampered.length - 1] = tampered[tampered.length - 1]! ^ 1;
    expect(receiver.unwrap(peer, tampered, now + 10_000)).toBeNull();
    const stale = sender.wrap(7, new Uint8Array(100).fill(9), now - 60_000);
    expect(receiver.unwrap(peer, stale, now + 10_000)).toBeNull();
    expect(receiver.stats.rejected).toBe(2);
  });
});
