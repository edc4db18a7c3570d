/**
 * The beacon's relay over WebSocket on 127.0.0.1: frames per second and MB/s
 * from a node on the WebSocket (RendezvousLinks) to a node on UDP, through a
 * real BeaconServer + WsRelayServer, and the round trip of one frame each way.
 *
 *   bun scripts/bench/ws-relay.ts [frames=20000] [frameBytes=1360]
 */
import { BeaconClient } from "../../src/beacon/client.ts";
import { BeaconServer } from "../../src/beacon/server.ts";
import { WsRelayServer } from "../../src/beacon/ws-relay.ts";
import { generateIdentity, identityFromSeed } from "../../src/crypto/identity.ts";
import { UdpSocket } from "../../src/daemon/udp-socket.ts";
import { RendezvousLinks } from "../../src/daemon/ws-relay-path.ts";
import { createLogger } from "../../src/util/log.ts";

const frames = Number(process.argv[2] ?? 20_000);
const size = Number(process.argv[3] ?? 1360);
const rendezvous = generateIdentity();
const keys = new Map<number, Uint8Array>();
const beacon = await BeaconServer.start({
  host: "127.0.0.1",
  port: 0,
  signer: rendezvous,
  directory: { nodeKey: (n) => keys.get(n), mayReach: () => true },
  limits: { relayBytesPerSecond: 1 << 30, relayBurstBytes: 1 << 30 },
});
const relay = WsRelayServer.start({ host: "127.0.0.1", port: 0, beacon });
const a = { id: 11, identity: identityFromSeed(new Uint8Array(32).fill(1)) };
const b = { id: 12, identity: identityFromSeed(new Uint8Array(32).fill(2)) };
keys.set(a.id, a.identity.publicKey);
keys.set(b.id, b.identity.publicKey);

let gotB = 0;
let gotA = 0;
let client!: BeaconClient;
const udp = await UdpSocket.open({ hostname: "127.0.0.1", port: 0, onDatagram: (d, h, p) => client.receive(d, h, p) });
client = new BeaconClient({ nodeId: b.id, identity: b.identity, beaconKey: rendezvous.publicKey, beacon: { host: "127.0.0.1", port: beacon.address.port }, send: (d, h, p) => udp.send(d, h, p) });
client.events = { registered() {}, lost() {}, punch() {}, relayed: () => void gotB++ };
client.start();
await client.waitRegistered(2000);
const link = new RendezvousLinks({ udp: null, ws: { url: relay.url, proxy: null }, nodeId: a.id, identity: a.identity, beaconKey: rendezvous.publicKey, log: createLogger("bench", { level: "error" }) });
link.events = { registered() {}, lost() {}, punch() {}, relayed: () => void gotA++ };
link.start();
await link.waitRegistered(3000);

const frame = new Uint8Array(size).fill(7);
frame[0] = 0x04;
// Round trips: WebSocket -> UDP -> WebSocket, one frame at a time.
const rtts: number[] = [];
for (let i = 0; i < 200; i++) {
  const t0 = performance.now();
  const before = gotA;
  link.relay(b.id, frame);
  while (gotB <= i) await Bun.sleep(0);
  client.relay(a.id, frame);
  while (gotA === before) await Bun.sleep(0);
  rtts.push(performance.now() - t0);
}
rtts.sort((x, y) => x - y);
gotB = 0;
let refused = 0;
const t0 = performance.now();
for (let i = 0; i < frames; i++) {
  while (!link.relay(b.id, frame)) {
    refused++;
    await Bun.sleep(1);
  }
  if (i % 256 === 0) await Bun.sleep(0);
}
const deadline = performance.now() + 10_000;
while (gotB < frames && performance.now() < deadline) await Bun.sleep(1);
const ms = performance.now() - t0;
console.log(`ws relay, 127.0.0.1: ${frames} frames of ${size} B, ${gotB} delivered (${frames - gotB} lost at UDP), ${refused} waits on a full socket`);
console.log(`  ${((gotB * size) / 1e6 / (ms / 1000)).toFixed(1)} MB/s, ${(gotB / (ms / 1000)).toFixed(0)} frames/s; round trip WS->UDP->WS p50 ${rtts[100]!.toFixed(2)} ms, p99 ${rtts[198]!.toFixed(2)} ms`);
link.stop();
client.stop();
udp.close();
relay.close();
beacon.close();
process.exit(0);
