/**
 * The relay-tcp tier between data planes on 127.0.0.1, with a real beacon and
 * a real WebSocket relay: a node whose UDP to the beacon is dropped
 * (`blockBeacon`) falls back to the WebSocket on its own, talks to its peers
 * byte-exact both ways, and when UDP works again moves to the UDP relay and
 * then a direct path, with the open stream untouched. (The NAT lab does the
 * same behind a real firewall: test/natlab/firewall.test.ts.)
 */
import { afterEach, expect, test } from "bun:test";
import { WsRelayServer } from "../../src/beacon/ws-relay.ts";
import type { StreamHandle } from "../../src/daemon/local-node.ts";
import { addNode, pattern, readAll, until, world, writeAll, type World } from "./harness.ts";

let w: World | undefined;
let relay: WsRelayServer | undefined;
afterEach(async () => {
  relay?.close();
  relay = undefined;
  await w?.close();
  w = undefined;
});

test("a node without UDP to the beacon relays over the WebSocket (relay-tcp), byte exact both ways", async () => {
  w = await world();
  relay = WsRelayServer.start({ host: "127.0.0.1", port: 0, beacon: w.beacon });
  const a = await addNode(w, 41, { public: true, blockDirect: true, blockBeacon: true, relayWs: relay.url });
  const b = await addNode(w, 42, { public: true, blockDirect: true });
  expect(a.beacon.available).toBe(false);
  expect(a.links!.relayKind).toBe("relay-tcp");
  expect(a.links!.tcpRelay).toEqual({ url: relay.url, connected: true, in_use: true });

  const toB = new Promise<StreamHandle>((r) => b.plane.listen(80, r));
  const sa = await a.plane.dial(b.address, 80);
  const sb = await toB;
  const data = pattern(1 << 20, 3);
  const got = readAll(sb);
  await writeAll(sa, data);
  expect(Buffer.compare(await got, data)).toBe(0);
  expect(a.plane.paths.describe(b.address)).toMatchObject({ path: "relay-tcp", endpoint: relay.url });
  expect(b.plane.paths.describe(a.address)?.path).toBe("relay");

  const toA = new Promise<StreamHandle>((r) => a.plane.listen(81, r));
  const back = await b.plane.dial(a.address, 81);
  const inA = await toA;
  const data2 = pattern(512 << 10, 4);
  const got2 = readAll(inA);
  await writeAll(back, data2);
  expect(Buffer.compare(await got2, data2)).toBe(0);
  expect(w.beacon.stats.relayedFrames).toBeGreaterThan(1000);
});

test("UDP to the beacon works again: relay-tcp -> relay -> direct, the open stream carries on, the WebSocket is released", async () => {
  w = await world();
  relay = WsRelayServer.start({ host: "127.0.0.1", port: 0, beacon: w.beacon });
  const a = await addNode(w, 43, { public: true, blockDirect: true, blockBeacon: true, relayWs: relay.url });
  const b = await addNode(w, 44, { public: true, blockDirect: true });
  const accepted = new Promise<StreamHandle>((r) => b.plane.listen(80, r));
  const sa = await a.plane.dial(b.address, 80);
  const sb = await accepted;
  const got = readAll(sb);
  const first = pattern(256 << 10, 5);
  await writeAll(sa, first, false);
  expect(a.plane.paths.describe(b.address)?.path).toBe("relay-tcp");

  a.blockBeacon = false;
  await until("the UDP relay", () => a.beacon.available && a.plane.paths.describe(b.address)?.path === "relay", 8000);
  const middle = pattern(256 << 10, 6);
  await writeAll(sa, middle, false);
  a.blockDirect = false;
  b.blockDirect = false;
  await until("direct on both sides", () => a.plane.paths.describe(b.address)?.path === "direct" && b.plane.paths.describe(a.address)?.path === "direct", 10_000);
  const last = pattern(1 << 20, 7);
  await writeAll(sa, last);
  const all = await got;
  expect(all.length).toBe(first.length + middle.length + last.length);
  expect(Buffer.compare(all, Buffer.concat([first, middle, last]))).toBe(0);
  // UDP has worked for longer than releaseAfterMs: the WebSocket is closed.
  await until("the WebSocket released", () => relay!.connections === 0, 5000);
  expect(a.links!.tcpRelay).toMatchObject({ connected: false, in_use: false });
});
