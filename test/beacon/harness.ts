/**
 * Data planes with a real beacon, all in one process over real UDP on
 * 127.0.0.1. A node can be cut off from direct contact with the others
 * (`blockDirect`, as a symmetric NAT would), and every datagram it sends or
 * receives passes through hooks a test can use to tamper with them.
 */
import { BeaconClient } from "../../src/beacon/client.ts";
import { BeaconServer, type BeaconLimits } from "../../src/beacon/server.ts";
import { generateIdentity, identityFromSeed, type Identity } from "../../src/crypto/identity.ts";
import { addressOf, type Address } from "../../src/protocol/address.ts";
import { DataPlane, type PeerInfo } from "../../src/daemon/data-plane.ts";
import { NodeError, type StreamEvent, type StreamHandle } from "../../src/daemon/local-node.ts";
import type { PathTimers } from "../../src/daemon/paths.ts";
import { UdpSocket } from "../../src/daemon/udp-socket.ts";
import { createLogger } from "../../src/util/log.ts";
import { RendezvousLinks } from "../../src/daemon/ws-relay-path.ts";

export const FAST_PATHS: Partial<PathTimers> = { probeInterval: 50, probeWindow: 600, upgradeFirst: 400, upgradeMax: 2000, suspect: 300, dead: 500, heartbeat: 1000 };

export interface World {
  readonly rendezvous: Identity;
  readonly beacon: BeaconServer;
  /** Every beacon of the world ([0] is `beacon`); with several, they are each other's mesh peers. */
  readonly beacons: BeaconServer[];
  readonly keys: Map<number, Uint8Array>;
  /** Who may reach whom through the beacon (default: everyone). */
  reach: (from: number, to: number) => boolean;
  readonly directory: Map<Address, PeerInfo>;
  readonly nodes: TestNode[];
  /** A UDP socket on 127.0.0.1 that swallows everything: a candidate that never answers. */
  readonly blackHole: UdpSocket;
  close(): Promise<void>;
}

export interface TestNode {
  readonly id: number;
  readonly address: Address;
  readonly identity: Identity;
  readonly plane: DataPlane;
  readonly udp: UdpSocket;
  readonly beacon: BeaconClient;
  /** With `relayWs`: the UDP beacon wrapped with the WebSocket relay as its fallback. */
  readonly links: RendezvousLinks | null;
  /** Drop datagrams to or from other nodes' tunnel sockets (the beacon still works). */
  blockDirect: boolean;
  /** Drop every datagram to or from the beacon (UDP to the rendezvous blocked). */
  blockBeacon: boolean;
  /** Called on every datagram this node sends; return null to drop it. */
  onSend?: (datagram: Uint8Array, host: string, port: number) => Uint8Array | null;
  /** Called on every datagram this node receives; return null to drop it. */
  onReceive?: (datagram: Uint8Array, host: string, port: number) => Uint8Array | null;
}

export async function world(options: { limits?: Partial<BeaconLimits>; beacons?: number } = {}): Promise<World> {
  const rendezvous = generateIdentity();
  const keys = new Map<number, Uint8Array>();
  const w: Partial<World> & { reach: World["reach"] } = { reach: () => true };
  const beacon = await BeaconServer.start({
    host: "127.0.0.1",
    port: 0,
    signer: rendezvous,
    directory: { nodeKey: (n) => keys.get(n), mayReach: (a, b) => keys.has(a) && keys.has(b) && w.reach(a, b) },
    limits: options.limits,
    ...((options.beacons ?? 1) > 1 ? { peers: [] } : {}),
  });
  const beacons = [beacon];
  for (let i = 1; i < (options.beacons ?? 1); i++) {
    beacons.push(
      await BeaconServer.start({
        host: "127.0.0.1",
        port: 0,
        signer: rendezvous,
        directory: { nodeKey: (n) => keys.get(n), mayReach: (a, b) => keys.has(a) && keys.has(b) && w.reach(a, b) },
        limits: options.limits,
        peers: [],
      }),
    );
  }
  for (const b of beacons) for (const other of beacons) if (other !== b) b.mesh!.addPeer("127.0.0.1", other.address.port);
  const blackHole = await UdpSocket.open({ hostname: "127.0.0.1", port: 0, onDatagram: () => {} });
  const nodes: TestNode[] = [];
  Object.assign(w, {
    rendezvous,
    beacon,
    beacons,
    keys,
    directory: new Map(),
    nodes,
    blackHole,
    async close() {
      for (const n of nodes.splice(0)) {
        n.links?.stop();
        n.beacon.stop();
        await n.plane.shutdown(50);
        n.udp.close();
      }
      for (const b of beacons) {
        try {
          b.close();
        } catch {
          // a test closed it already
        }
      }
      blackHole.close();
    },
  });
  return w as World;
}

export interface NodeOptions {
  public?: boolean;
  trusts?: Address[];
  /** What others learn as this node's direct candidates (default: its real endpoint). */
  candidates?: string[];
  blockDirect?: boolean;
  timers?: Partial<PathTimers>;
  keepaliveMs?: number;
  /** No beacon at all (direct paths only). */
  noBeacon?: boolean;
  /** The WebSocket relay's URL: the node falls back to it when the UDP beacon is silent (fast timers). */
  relayWs?: string;
  blockBeacon?: boolean;
  /** Indexes into `w.beacons`: the node registers with the first and fails over to the others (default [0]). */
  beacons?: number[];
  /** With several beacons: give one this long to answer before moving on. */
  failoverAfterMs?: number;
  /** Installed as `onReceive` before the node registers. */
  onReceive?: TestNode["onReceive"];
}

export async function addNode(w: World, n: number, options: NodeOptions = {}): Promise<TestNode> {
  const identity = identityFromSeed(new Uint8Array(32).fill(n));
  const id = 5000 + n;
  const address = addressOf(0, id);
  const trusted = new Set(options.trusts ?? []);
  let plane!: DataPlane;
  let self!: TestNode;
  const ports = () => new Set(w.nodes.filter((x) => x !== self).map((x) => x.udp.port));
  const udp = await UdpSocket.open({
    hostname: "127.0.0.1",
    port: 0,
    onDatagram: (d, h, p) => {
      if (self.blockDirect && ports().has(p)) return;
      if (self.blockBeacon && p === w.beacon.address.port) return;
      const data = self.onReceive ? self.onReceive(d, h, p) : d;
      if (data) plane.receiveDatagram(data, h, p);
    },
  });
  const send = (d: Uint8Array, h: string, p: number) => {
    if (self.blockDirect && ports().has(p)) return;
    if (self.blockBeacon && p === w.beacon.address.port) return;
    const data = self.onSend ? self.onSend(d, h, p) : d;
    if (data) udp.send(data, h, p);
  };
  const beacon = new BeaconClient({
    nodeId: id,
    identity,
    beaconKey: w.rendezvous.publicKey,
    beacon: { host: "127.0.0.1", port: w.beacons[options.beacons?.[0] ?? 0]!.address.port },
    ...(options.beacons && options.beacons.length > 1 ? { alternates: options.beacons.slice(1).map((i) => ({ host: "127.0.0.1", port: w.beacons[i]!.address.port })) } : {}),
    ...(options.failoverAfterMs ? { failoverAfterMs: options.failoverAfterMs } : {}),
    send,
    keepaliveMs: options.keepaliveMs ?? 2000,
  });
  const links = options.relayWs
    ? new RendezvousLinks({
        udp: beacon,
        ws: { url: options.relayWs, proxy: null },
        nodeId: id,
        identity,
        beaconKey: w.rendezvous.publicKey,
        log: createLogger("test", { level: "error" }),
        keepaliveMs: options.keepaliveMs ?? 2000,
        fallbackAfterMs: 300,
        udpRetryMs: 300,
        releaseAfterMs: 1000,
      })
    : null;
  plane = new DataPlane({
    address,
    identity,
    send,
    flush: () => udp.flush(),
    policy: {
      admitsSession: (a) => options.public === true || trusted.has(a),
      acceptsInbound: (a) => options.public === true || trusted.has(a),
    },
    lookupPeer: async (a) => {
      const info = w.directory.get(a);
      if (!info) throw new NodeError("not_found", "no such node");
      return info;
    },
    log: createLogger("test", { level: "error" }),
    streamConfig: { timeWait: 50 },
    rendezvous: options.noBeacon ? null : (links ?? beacon),
    pathTimers: { ...FAST_PATHS, ...options.timers },
  });
  self = { id, address, identity, plane, udp, beacon, links, blockDirect: options.blockDirect ?? false, blockBeacon: options.blockBeacon ?? false, onReceive: options.onReceive };
  w.keys.set(id, identity.publicKey);
  const real = `127.0.0.1:${udp.port}`;
  const candidates = options.candidates ?? [real];
  w.directory.set(address, { identityKey: identity.publicKey, endpoint: candidates[0]!, candidates, hostEndpoints: [real] });
  w.nodes.push(self);
  if (options.noBeacon) return self;
  if (links) {
    links.start();
    if (!(await links.waitRegistered(3000))) throw new Error(`node ${n} did not register with the beacon or the WebSocket relay`);
    return self;
  }
  beacon.start();
  if (!(await beacon.waitRegistered(2000))) throw new Error(`node ${n} did not register with the beacon`);
  return self;
}

/** Collects a stream's bytes until "end". */
export function readAll(s: StreamHandle): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  return new Promise((resolve, reject) => {
    s.onEvent = (e: StreamEvent) => {
      if (e.type === "readable") {
        let b: Uint8Array | null;
        while ((b = s.read(1 << 20)) !== null) chunks.push(b);
      } else if (e.type === "end") resolve(Buffer.concat(chunks));
      else if (e.type === "closed" && e.error) reject(e.error);
    };
  });
}

/** Writes all of `data` honouring backpressure, then half-closes. */
export function writeAll(s: StreamHandle, data: Uint8Array, end = true): Promise<void> {
  let off = 0;
  return new Promise((resolve) => {
    const more = () => {
      while (off < data.length) {
        const n = s.write(data.subarray(off, off + 256 * 1024));
        if (n === 0) return;
        off += n;
      }
      if (end) s.shutdown();
      resolve();
    };
    const prev = s.onEvent;
    s.onEvent = (e) => {
      if (e.type === "writable") more();
      prev?.(e);
    };
    more();
  });
}

export function pattern(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await Bun.sleep(10);
  }
}

/**
 * `a` dials port 80 of `b` and writes 64 KiB (pattern 5), which `b` reads into
 * `got` (until the end); resolves once `b` sees `a` on the relay path.
 */
export async function relayedStream(a: TestNode, b: TestNode): Promise<{ sa: StreamHandle; got: Promise<Uint8Array>; first: Uint8Array }> {
  const accepted = new Promise<StreamHandle>((r) => b.plane.listen(80, r));
  const sa = await a.plane.dial(b.address, 80);
  const got = readAll(await accepted);
  const first = pattern(64 * 1024, 5);
  await writeAll(sa, first, false);
  await until("the first part arrived through the relay", () => b.plane.paths.describe(a.address)?.path === "relay");
  return { sa, got, first };
}
