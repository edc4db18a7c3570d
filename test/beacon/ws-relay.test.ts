/**
 * The beacon's relay over WebSocket (src/beacon/ws-relay.ts) and the daemon's
 * side of it (src/daemon/ws-relay-path.ts), over real sockets on 127.0.0.1:
 * a node on the WebSocket and a node on UDP relay to each other through one
 * beacon; registration needs the node's signature over this connection's own
 * token; nothing is relayed for an unregistered connection; the bounds hold,
 * the relay-wide queue budget too (clients that sign in and never read);
 * and HTTPS_PROXY (HTTP CONNECT with basic auth) is honoured.
 */
import { afterEach, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { connect as tcpConnect, type Socket } from "node:net";
import { join } from "node:path";
import { BeaconClient } from "../../src/beacon/client.ts";
import { BeaconServer, type BeaconLimits } from "../../src/beacon/server.ts";
import { WS_RELAY_PATH, WsRelayServer, type WsRelayLimits } from "../../src/beacon/ws-relay.ts";
import { generateIdentity, identityFromSeed, type Identity } from "../../src/crypto/identity.ts";
import { appendSignature, BeaconType, encodeRegisterBody, encodeRelay, registerSignedBytes } from "../../src/protocol/beacon-message.ts";
import { UdpSocket } from "../../src/daemon/udp-socket.ts";
import { proxyFromEnv, relayWsUrl, RendezvousLinks } from "../../src/daemon/ws-relay-path.ts";
import { createLogger } from "../../src/util/log.ts";
import { startConnectProxy } from "../support/connect-proxy.ts";

const quiet = createLogger("test", { level: "error" });
const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function until(what: string, check: () => boolean, timeoutMs = 5000, everyMs = 10): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

interface Rig {
  rendezvous: Identity;
  beacon: BeaconServer;
  relay: WsRelayServer;
  keys: Map<number, Uint8Array>;
  url: string;
}

async function rig(limits: Partial<WsRelayLimits> = {}, tls?: { cert: string; key: string }, beaconLimits: Partial<BeaconLimits> = {}): Promise<Rig> {
  const rendezvous = generateIdentity();
  const keys = new Map<number, Uint8Array>();
  const beacon = await BeaconServer.start({ host: "127.0.0.1", port: 0, signer: rendezvous, limits: beaconLimits, directory: { nodeKey: (n) => keys.get(n), mayReach: (a, b) => keys.has(a) && keys.has(b) } });
  const relay = WsRelayServer.start({ host: "127.0.0.1", port: 0, beacon, limits, ...(tls ? { tls } : {}) });
  cleanups.push(() => {
    relay.close();
    beacon.close();
  });
  return { rendezvous, beacon, relay, keys, url: relay.url };
}

function node(r: Rig, n: number): { id: number; identity: Identity } {
  const identity = identityFromSeed(new Uint8Array(32).fill(n));
  const id = 7000 + n;
  r.keys.set(id, identity.publicKey);
  return { id, identity };
}

/** A daemon's link with only the WebSocket (no UDP beacon): it connects at once. */
function wsLink(r: Rig, n: { id: number; identity: Identity }, proxy: string | null = null, ca?: string) {
  const got: { source: number; frame: Uint8Array }[] = [];
  const link = new RendezvousLinks({ udp: null, ws: { url: r.url, proxy, ...(ca ? { ca } : {}) }, nodeId: n.id, identity: n.identity, beaconKey: r.rendezvous.publicKey, log: quiet });
  link.events = { registered() {}, lost() {}, punch() {}, relayed: (source, frame) => got.push({ source, frame: frame.slice() }) };
  link.start();
  cleanups.push(() => link.stop());
  return { link, got };
}

async function udpNode(r: Rig, n: { id: number; identity: Identity }) {
  const got: { source: number; frame: Uint8Array }[] = [];
  let client!: BeaconClient;
  const udp = await UdpSocket.open({ hostname: "127.0.0.1", port: 0, onDatagram: (d, h, p) => client.receive(d, h, p) });
  client = new BeaconClient({ nodeId: n.id, identity: n.identity, beaconKey: r.rendezvous.publicKey, beacon: { host: "127.0.0.1", port: r.beacon.address.port }, send: (d, h, p) => udp.send(d, h, p) });
  client.events = { registered() {}, lost() {}, punch() {}, relayed: (source, frame) => got.push({ source, frame: frame.slice() }) };
  client.start();
  cleanups.push(() => {
    client.stop();
    udp.close();
  });
  expect(await client.waitRegistered(3000)).toBe(true);
  return { client, got };
}

function frame(tag: number, size = 200): Uint8Array {
  const f = new Uint8Array(size).fill(tag);
  f[0] = 0x04; // a tunnel data frame's type byte (the relay carries only tunnel frames)
  return f;
}

/** A raw WebSocket to the relay that collects the messages it receives. */
async function rawSocket(url: string): Promise<{ ws: WebSocket; messages: Uint8Array[]; closed: Promise<number> }> {
  const ws = new WebSocket(relayWsUrl(url).href);
  ws.binaryType = "arraybuffer";
  const messages: Uint8Array[] = [];
  ws.onmessage = (e) => messages.push(new Uint8Array(e.data as ArrayBuffer));
  const closed = new Promise<number>((resolve) => (ws.onclose = (e) => resolve(e.code)));
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error("websocket failed"));
  });
  cleanups.push(() => ws.close());
  return { ws, messages, closed };
}

function register(r: Rig, n: { id: number; identity: Identity }, token: Uint8Array, signer: Identity = n.identity): Uint8Array {
  const body = encodeRegisterBody({ node: n.id, timestamp: Date.now(), nonce: new Uint8Array(16).fill(9), token });
  return appendSignature(body, signer.sign(registerSignedBytes(r.rendezvous.publicKey, body)));
}

test("a node on the WebSocket and a node on UDP relay frames to each other; the rendezvous names the sender", async () => {
  const r = await rig();
  const a = node(r, 1);
  const b = node(r, 2);
  const ws = wsLink(r, a);
  const udp = await udpNode(r, b);
  expect(await ws.link.waitRegistered(5000)).toBe(true);
  expect(ws.link.relayKind).toBe("relay-tcp");
  expect(ws.link.endpoint).toBe(r.url);
  expect(r.relay.connections).toBe(1);
  // WebSocket -> UDP
  expect(ws.link.relay(b.id, frame(0x11))).toBe(true);
  await until("the UDP node got the frame", () => udp.got.length === 1);
  expect(udp.got[0]!.source).toBe(a.id);
  expect(udp.got[0]!.frame).toEqual(frame(0x11));
  // UDP -> WebSocket, many frames in order
  for (let i = 0; i < 100; i++) udp.client.relay(a.id, frame(i, 1000));
  await until("the WebSocket node got 100 frames", () => ws.got.length === 100);
  expect(ws.got.every((g, i) => g.source === b.id && g.frame[1] === i && g.frame.length === 1000)).toBe(true);
  expect(r.beacon.stats.relayedFrames).toBe(101);
});

test("registration needs the node's signature over this connection's own token; nothing is relayed before it", async () => {
  const r = await rig();
  const a = node(r, 1);
  const b = node(r, 2);
  const udp = await udpNode(r, b);
  const s1 = await rawSocket(r.url);
  const s2 = await rawSocket(r.url);
  // A relay before registering: refused, nothing delivered.
  s1.ws.send(encodeRelay(b.id, frame(0x22)));
  // No token yet: a challenge comes back, carrying this connection's token.
  s1.ws.send(register(r, a, new Uint8Array(16)));
  s2.ws.send(register(r, a, new Uint8Array(16)));
  await until("two challenges", () => s1.messages.length === 1 && s2.messages.length === 1);
  expect(s1.messages[0]![0]).toBe(BeaconType.Challenge);
  const token1 = s1.messages[0]!.slice(-16);
  const token2 = s2.messages[0]!.slice(-16);
  expect(Buffer.from(token1).equals(Buffer.from(token2))).toBe(false);
  // Connection 1's token on connection 2: only another challenge.
  s2.ws.send(register(r, a, token1));
  // The right token signed by the wrong key: refused.
  s1.ws.send(register(r, a, token1, identityFromSeed(new Uint8Array(32).fill(66))));
  await until("the second challenge and the refusal", () => s2.messages.length === 2 && r.beacon.stats.badRegistrations === 1);
  expect(s2.messages[1]![0]).toBe(BeaconType.Challenge);
  expect(s1.messages.length).toBe(1);
  expect(r.beacon.stats.relayRefused).toBe(1);
  expect(udp.got.length).toBe(0);
  // Properly signed over its own token: acknowledged, and now it relays.
  s1.ws.send(register(r, a, token1));
  await until("the ack", () => s1.messages.length === 2);
  expect(s1.messages[1]![0]).toBe(BeaconType.RegisterAck);
  s1.ws.send(encodeRelay(b.id, frame(0x33)));
  await until("the relayed frame", () => udp.got.length === 1);
  expect(udp.got[0]!.source).toBe(a.id);
  // Another connection registering the same node takes over; the old one is closed.
  s2.ws.send(register(r, a, token2));
  expect(await s1.closed).toBe(4000);
});

test("bounds: connections per IP, text and oversized messages, connections that never register", async () => {
  const r = await rig({ maxConnectionsPerIp: 2, authTimeoutMs: 300 });
  const s1 = await rawSocket(r.url);
  const s2 = await rawSocket(r.url);
  const third = await fetch(r.url.replace(/^ws/, "http") + WS_RELAY_PATH, { headers: { Upgrade: "websocket", Connection: "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13" } });
  expect(third.status).toBe(429);
  // Other paths are not the relay.
  expect((await fetch(r.url.replace(/^ws/, "http") + "/anything")).status).toBe(404);
  s1.ws.send("hello");
  expect(await s1.closed).toBe(1003);
  s2.ws.send(new Uint8Array(4096));
  expect(await s2.closed).not.toBe(1000);
  // A connection that never registers is closed after authTimeoutMs.
  const s3 = await rawSocket(r.url);
  expect(await s3.closed).toBe(4001);
  await until("all closed", () => r.relay.connections === 0);
});

test("HTTPS_PROXY: the relay connection goes through an HTTP CONNECT proxy, with basic auth from the URL", async () => {
  const r = await rig();
  const proxy = await startConnectProxy({ host: "127.0.0.1", port: 0, auth: "agent:s3cret" });
  cleanups.push(() => proxy.close());
  const a = node(r, 1);
  const b = node(r, 2);
  const udp = await udpNode(r, b);
  const url = relayWsUrl(r.url);
  const fromEnv = proxyFromEnv(url, { HTTPS_PROXY: `http://agent:s3cret@127.0.0.1:${proxy.port}` });
  expect(fromEnv).toBe(`http://agent:s3cret@127.0.0.1:${proxy.port}`);
  expect(proxyFromEnv(url, { https_proxy: `127.0.0.1:${proxy.port}` })).toBe(`http://127.0.0.1:${proxy.port}`);
  expect(proxyFromEnv(url, { HTTPS_PROXY: "http://p:1", NO_PROXY: "example.com,127.0.0.1" })).toBeNull();
  const ws = wsLink(r, a, fromEnv);
  expect(await ws.link.waitRegistered(5000)).toBe(true);
  expect(proxy.connects).toEqual([`127.0.0.1:${r.relay.address.port}`]);
  ws.link.relay(b.id, frame(0x44));
  await until("relayed through the proxy", () => udp.got.length === 1);
  // A wrong password: the proxy refuses, and the link never comes up.
  const c = node(r, 3);
  const bad = wsLink(r, c, `http://agent:wrong@127.0.0.1:${proxy.port}`);
  expect(await bad.link.waitRegistered(800)).toBe(false);
  expect(proxy.refused).toBeGreaterThan(0);
});

test("wss: the relay serves TLS with the operator's certificate; a client that does not trust it never registers", async () => {
  const cert = readFileSync(join(import.meta.dir, "fixtures/relay-cert.pem"), "utf8");
  const key = readFileSync(join(import.meta.dir, "fixtures/relay-key.pem"), "utf8");
  const r = await rig({}, { cert, key });
  expect(r.url).toStartWith("wss://127.0.0.1:");
  const a = node(r, 1);
  const b = node(r, 2);
  const udp = await udpNode(r, b);
  const ws = wsLink(r, a, null, cert);
  expect(await ws.link.waitRegistered(5000)).toBe(true);
  ws.link.relay(b.id, frame(0x55));
  await until("relayed over wss", () => udp.got.length === 1);
  expect(udp.got[0]!.source).toBe(a.id);
  // Without the certificate's CA the TLS handshake fails: no registration, nothing relayed.
  const c = node(r, 3);
  const untrusting = wsLink(r, c);
  expect(await untrusting.link.waitRegistered(800)).toBe(false);
});

/**
 * A client on a plain TCP socket that speaks just enough WebSocket (RFC 6455)
 * to sign in as node `n`, then stops reading: whatever the relay sends it
 * stays queued in the relay. `relay` still sends (masked) frames.
 */
async function silentClient(r: Rig, n: { id: number; identity: Identity }): Promise<{ socket: Socket; relay(to: number, frame: Uint8Array): void }> {
  const { port } = r.relay.address;
  const socket = tcpConnect({ host: "127.0.0.1", port });
  socket.on("error", () => {});
  cleanups.push(() => void socket.destroy());
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  let buffered = Buffer.alloc(0);
  const messages: Uint8Array[] = [];
  let upgraded = false;
  socket.on("data", (d: Buffer) => {
    buffered = Buffer.concat([buffered, d]);
    if (!upgraded) {
      const end = buffered.indexOf("\r\n\r\n");
      if (end < 0) return;
      if (!buffered.subarray(0, end).toString().startsWith("HTTP/1.1 101")) throw new Error(`no upgrade: ${buffered.subarray(0, end)}`);
      upgraded = true;
      buffered = buffered.subarray(end + 4);
    }
    for (;;) {
      if (buffered.length < 2) return;
      let len = buffered[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buffered.length < 4) return;
        len = buffered.readUInt16BE(2);
        at = 4;
      }
      if (buffered.length < at + len) return;
      if ((buffered[0]! & 0x0f) === 2) messages.push(new Uint8Array(buffered.subarray(at, at + len)));
      buffered = buffered.subarray(at + len);
    }
  });
  const send = (payload: Uint8Array) => {
    // A client's frames are masked; an all-zero mask leaves the payload as it is.
    const head = payload.length < 126 ? Buffer.from([0x82, 0x80 | payload.length]) : Buffer.from([0x82, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
    socket.write(Buffer.concat([head, Buffer.alloc(4), payload]));
  };
  socket.write(`GET ${WS_RELAY_PATH} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await until("the upgrade", () => upgraded);
  send(register(r, n, new Uint8Array(16)));
  await until("the challenge", () => messages.length === 1);
  send(register(r, n, messages[0]!.slice(-16)));
  await until("the ack", () => messages.length === 2);
  expect(messages[1]![0]).toBe(BeaconType.RegisterAck);
  socket.pause();
  return { socket, relay: (to, f) => send(encodeRelay(to, f)) };
}

test("the queue budget: 50 signed-in clients that never read cannot pin more than the relay-wide budget, and a pair that reads keeps relaying", async () => {
  const budget = 1 << 20;
  // 52 clients sign in from one IP (each a challenge and a register): the per-IP signing-in rate out of the way.
  const r = await rig({ maxQueuedBytes: budget }, undefined, { perIp: { rate: 1000, burst: 1000 }, relayBytesPerSecond: 64 << 20, relayBurstBytes: 64 << 20 });
  const hogs = [];
  for (let i = 0; i < 50; i++) hogs.push({ node: node(r, 10 + i), client: await silentClient(r, node(r, 10 + i)) });
  const a = node(r, 1);
  const b = node(r, 2);
  const wa = wsLink(r, a);
  const wb = wsLink(r, b);
  expect(await wa.link.waitRegistered(5000)).toBe(true);
  expect(await wb.link.waitRegistered(5000)).toBe(true);
  let maxQueued = 0;
  const sampler = setInterval(() => (maxQueued = Math.max(maxQueued, r.relay.queuedBytes)), 2);
  cleanups.push(() => clearInterval(sampler));
  // Every silent client sends to one of ten of them, which never read, 2 MiB more each than the
  // kernel takes before the relay queues anything (a send buffer autotuned up to tcp_wmem's
  // maximum: 4 MiB here): about 60 MB in all, and without the budget some 20 MB queued.
  const wmemMax = Number(readFileSync("/proc/sys/net/ipv4/tcp_wmem", "utf8").trim().split(/\s+/)[2] ?? 4 << 20);
  const rounds = Math.ceil(((wmemMax + (2 << 20)) * 10) / hogs.length / 1000 / 100);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < hogs.length; i++) {
      const to = hogs[i % 10]!.node.id === hogs[i]!.node.id ? hogs[(i % 10) + 1]!.node.id : hogs[i % 10]!.node.id;
      for (let k = 0; k < 100; k++) hogs[i]!.client.relay(to, frame(k & 0xff, 1000));
    }
    // Meanwhile the pair that reads relays both ways.
    for (let k = 0; k < 20; k++) {
      wa.link.relay(b.id, frame(round, 1000));
      wb.link.relay(a.id, frame(round, 1000));
    }
    await Bun.sleep(20);
  }
  await until("the pair's frames, every one, each way", () => wa.got.length === rounds * 20 && wb.got.length === rounds * 20, 20_000);
  // Until the relay has taken in what the silent clients sent (or closed them): no change for 300 ms.
  let seen = -1;
  await until(
    "the relay to settle",
    () => {
      const now = r.beacon.stats.relayedFrames + r.relay.stats.budgetDropped + r.relay.stats.budgetClosed;
      const settled = now === seen;
      seen = now;
      return settled;
    },
    20_000,
    300,
  );
  clearInterval(sampler);
  maxQueued = Math.max(maxQueued, r.relay.queuedBytes);
  console.log(
    `queue budget ${budget} B: max queued ${maxQueued} B; relayed ${r.beacon.stats.relayedFrames} frames; ` +
      `dropped for the budget ${r.relay.stats.budgetDropped}, silent clients closed ${r.relay.stats.budgetClosed} of ${hogs.length}`,
  );
  expect(maxQueued).toBeLessThanOrEqual(budget);
  expect(r.relay.stats.budgetDropped + r.relay.stats.budgetClosed).toBeGreaterThan(0);
  expect(wb.got.every((g) => g.source === a.id && g.frame.length === 1000)).toBe(true);
  expect(wa.got.every((g) => g.source === b.id && g.frame.length === 1000)).toBe(true);
  // Only silent clients were closed for it.
  expect(wa.link.tcpAvailable && wb.link.tcpAvailable).toBe(true);
}, 60_000);
