/**
 * Paths between data planes with a real beacon on 127.0.0.1: direct when the
 * peers can reach each other, relay when they cannot (and the first bytes do
 * not wait for the punch), the relay cannot read or alter what it carries,
 * and a relayed pair moves to a direct path, without breaking its streams,
 * once one opens. (The NAT lab in test/natlab does the same across real NATs.)
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { StreamHandle } from "../../src/daemon/local-node.ts";
import { BeaconType } from "../../src/protocol/beacon-message.ts";
import { addNode, pattern, readAll, relayedStream, until, world, writeAll, type World } from "./harness.ts";

let w: World | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

describe("paths", () => {
  test("reachable peers go direct; the handshake response proves it at once", async () => {
    w = await world();
    const a = await addNode(w, 1);
    const b = await addNode(w, 2, { public: true });
    expect(await a.plane.ping(b.address, 1, 2000)).toBeGreaterThan(0);
    await until("a direct path", () => a.plane.paths.describe(b.address)?.path === "direct");
    expect(a.plane.paths.describe(b.address)).toMatchObject({ path: "direct", endpoint: `127.0.0.1:${b.udp.port}`, confirmed: true });
    await until("b direct too", () => b.plane.paths.describe(a.address)?.path === "direct");
  });

  test("without a beacon, a wrong first candidate costs nothing: the initiation also goes to the others", async () => {
    w = await world();
    const b = await addNode(w, 30, { public: true, noBeacon: true });
    const entry = w.directory.get(b.address)!;
    // What the registry would say: an address that swallows everything first, the real one second.
    w.directory.set(b.address, { ...entry, endpoint: `127.0.0.1:${w.blackHole.port}`, candidates: [`127.0.0.1:${w.blackHole.port}`, entry.endpoint!] });
    const a = await addNode(w, 31, { noBeacon: true });
    const started = performance.now();
    expect(await a.plane.ping(b.address, 1, 2000)).toBeGreaterThan(0);
    expect(performance.now() - started).toBeLessThan(500); // no handshake retry was needed
    await until("the real address is proven", () => a.plane.paths.describe(b.address)?.confirmed === true);
    expect(a.plane.paths.describe(b.address)).toMatchObject({ path: "direct", endpoint: entry.endpoint });
  });

  test("peers that cannot reach each other directly talk through the relay at once, byte exact", async () => {
    w = await world();
    const a = await addNode(w, 3, { blockDirect: true });
    const b = await addNode(w, 4, { public: true, blockDirect: true });
    const accepted = new Promise<StreamHandle>((r) => b.plane.listen(80, r));
    const started = performance.now();
    const sa = await a.plane.dial(b.address, 80);
    const setupMs = performance.now() - started;
    // The dial did not wait for the punch to fail (probeWindow is 600 ms here).
    expect(setupMs).toBeLessThan(400);
    const sb = await accepted;
    const data = pattern(1 << 20, 7);
    const got = readAll(sb);
    await writeAll(sa, data);
    expect(Buffer.compare(await got, data)).toBe(0);
    expect(a.plane.paths.describe(b.address)).toMatchObject({ path: "relay", endpoint: `127.0.0.1:${w.beacon.address.port}` });
    expect(b.plane.paths.describe(a.address)?.path).toBe("relay");
    expect(w.beacon.stats.relayedFrames).toBeGreaterThan(800);
  });

  test("a relayed pair upgrades to direct when the path opens, and the open stream carries on", async () => {
    w = await world();
    const a = await addNode(w, 5, { blockDirect: true });
    const b = await addNode(w, 6, { public: true, blockDirect: true });
    const accepted = new Promise<StreamHandle>((r) => b.plane.listen(80, r));
    const sa = await a.plane.dial(b.address, 80);
    const sb = await accepted;
    const got = readAll(sb);
    const first = pattern(256 << 10, 11);
    await writeAll(sa, first, false);
    // Past the first probing round: settled on the relay, with upgrade attempts scheduled.
    await Bun.sleep(900);
    expect(a.plane.paths.describe(b.address)?.path).toBe("relay");
    a.blockDirect = false;
    b.blockDirect = false;
    await until("direct on both sides", () => a.plane.paths.describe(b.address)?.path === "direct" && b.plane.paths.describe(a.address)?.path === "direct", 8000);
    const relayedBefore = w.beacon.stats.relayedFrames;
    const second = pattern(1 << 20, 12);
    await writeAll(sa, second);
    const all = await got;
    expect(all.length).toBe(first.length + second.length);
    expect(Buffer.compare(all.subarray(0, first.length), first)).toBe(0);
    expect(Buffer.compare(all.subarray(first.length), second)).toBe(0);
    // The megabyte after the upgrade did not go through the relay (a few probes may have).
    expect(w.beacon.stats.relayedFrames - relayedBefore).toBeLessThan(50);
    expect(a.plane.paths.describe(b.address)!.changes).toBeGreaterThanOrEqual(1);
  });

  test("when the beacon goes away, relayed peers try their direct candidates again", async () => {
    w = await world({ limits: { registrationTtlMs: 1500 } });
    // No upgrade attempts of their own during the test: only the beacon's loss may move them.
    const timers = { upgradeFirst: 60_000, upgradeMax: 60_000 };
    const a = await addNode(w, 32, { blockDirect: true, timers });
    const b = await addNode(w, 33, { public: true, blockDirect: true, timers });
    expect(await a.plane.ping(b.address, 1, 2000)).toBeGreaterThan(0);
    await Bun.sleep(800); // past the first probing round
    expect(a.plane.paths.describe(b.address)?.path).toBe("relay");
    w.beacon.close(); // registrations lapse after 1.5 s without an ack
    a.blockDirect = false;
    b.blockDirect = false;
    await until("direct without the beacon", () => a.plane.paths.describe(b.address)?.path === "direct" && a.plane.paths.describe(b.address)?.confirmed === true, 8000);
    expect(a.beacon.available).toBe(false);
    expect(await a.plane.ping(b.address, 2, 2000)).toBeGreaterThan(0);
  });

  test("the relay cannot alter frames unnoticed: tampered frames fail authentication, the stream stays exact", async () => {
    w = await world();
    const a = await addNode(w, 7, { blockDirect: true });
    const b = await addNode(w, 8, { public: true, blockDirect: true });
    const accepted = new Promise<StreamHandle>((r) => b.plane.listen(80, r));
    const sa = await a.plane.dial(b.address, 80);
    const sb = await accepted;
    // From now on, a malicious relay flips one byte in every 5th frame it delivers to b.
    let n = 0;
    let tampered = 0;
    b.onReceive = (d) => {
      if (d[0] !== BeaconType.RelayDeliver || ++n % 5 !== 0) return d;
      const at = 8 + 16 + (n % (d.length - 8 - 16)); // anywhere in the ciphertext or its tag
      const copy = d.slice();
      copy[at]! ^= 0x40;
      tampered++;
      return copy;
    };
    const data = pattern(512 << 10, 13);
    const got = readAll(sb);
    await writeAll(sa, data);
    expect(Buffer.compare(await got, data)).toBe(0);
    expect(tampered).toBeGreaterThan(50);
    const peer = b.plane.router.peer(a.address)!;
    expect(peer.stats.drops.auth_failed).toBe(tampered);
    expect(a.plane.paths.describe(b.address)?.path).toBe("relay");
  });

  test("relay bandwidth per node is limited", async () => {
    w = await world({ limits: { relayBytesPerSecond: 256 * 1024, relayBurstBytes: 64 * 1024 } });
    const a = await addNode(w, 9, { blockDirect: true });
    const b = await addNode(w, 10, { public: true, blockDirect: true });
    const accepted = new Promise<StreamHandle>((r) => b.plane.listen(80, r));
    const sa = await a.plane.dial(b.address, 80);
    const sb = await accepted;
    const data = pattern(512 << 10, 14);
    const got = readAll(sb);
    const t = performance.now();
    await writeAll(sa, data);
    expect(Buffer.compare(await got, data)).toBe(0);
    const seconds = (performance.now() - t) / 1000;
    // 512 KiB at 256 KiB/s after a 64 KiB burst takes well over a second.
    expect(seconds).toBeGreaterThan(1.2);
    expect(w.beacon.stats.relayRateLimited).toBeGreaterThan(0);
  });
});

describe("after an outage", () => {
  test("a relayed stream resumes as soon as the beacon answers again, not when its backed-off timer fires", async () => {
    w = await world();
    const a = await addNode(w, 40, { blockDirect: true, keepaliveMs: 2000 });
    const b = await addNode(w, 41, { public: true, blockDirect: true, keepaliveMs: 2000 });
    const { sa, got, first } = await relayedStream(a, b);
    // 16 s without the beacon: the retransmission timer backs off to several seconds between tries.
    a.blockBeacon = true;
    const second = pattern(256 * 1024, 6);
    const written = writeAll(sa, second, true);
    await Bun.sleep(16_000);
    a.blockBeacon = false;
    const back = performance.now();
    const all = await got;
    const resumedMs = performance.now() - back;
    console.log(`relayed stream finished ${Math.round(resumedMs)} ms after a 16 s beacon outage ended`);
    await written;
    expect(Buffer.compare(all, Buffer.concat([first, second]))).toBe(0);
    expect(resumedMs).toBeLessThan(5000); // re-registration (retry <= 2 s here) and a round trip
  }, 60_000);
});
