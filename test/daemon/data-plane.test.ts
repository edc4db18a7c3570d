/**
 * Two data planes in one process over real UDP sockets on 127.0.0.1: the
 * tunnel handshake, streams, datagrams, ping, trust enforcement and untrust.
 * (Full daemons with a registry are tested end to end elsewhere.)
 */
import { afterEach, describe, expect, test } from "bun:test";
import { identityFromSeed } from "../../src/crypto/identity.ts";
import { addressOf, type Address } from "../../src/protocol/address.ts";
import { DataPlane, type PeerInfo } from "../../src/daemon/data-plane.ts";
import { NodeError, type StreamEvent, type StreamHandle } from "../../src/daemon/local-node.ts";
import { UdpSocket } from "../../src/daemon/udp-socket.ts";
import { createLogger } from "../../src/util/log.ts";

interface TestNode {
  address: Address;
  plane: DataPlane;
  udp: UdpSocket;
  trusted: Set<Address>;
  public: boolean;
}

const directory = new Map<Address, PeerInfo>();
const open: TestNode[] = [];

async function node(n: number, options: { public?: boolean; limits?: { maxPerPort: number; maxTotal: number }; timeWait?: number } = {}): Promise<TestNode> {
  const identity = identityFromSeed(new Uint8Array(32).fill(n));
  const address = addressOf(0, 1000 + n);
  const trusted = new Set<Address>();
  const self: Partial<TestNode> = { address, trusted, public: options.public ?? false };
  let plane!: DataPlane;
  const udp = await UdpSocket.open({ hostname: "127.0.0.1", port: 0, onDatagram: (d, h, p) => plane.receiveDatagram(d, h, p) });
  plane = new DataPlane({
    address,
    identity,
    send: (f, h, p) => udp.send(f, h, p),
    flush: () => udp.flush(),
    policy: {
      admitsSession: (a) => self.public! || trusted.has(a),
      acceptsInbound: (a) => self.public! || trusted.has(a),
    },
    lookupPeer: async (a) => {
      const info = directory.get(a);
      if (!info) throw new NodeError("not_found", "no such node");
      return info;
    },
    log: createLogger("test", { level: "error" }),
    streamConfig: { timeWait: options.timeWait ?? 50 },
    limits: options.limits,
  });
  directory.set(address, { identityKey: identity.publicKey, endpoint: `127.0.0.1:${udp.port}` });
  Object.assign(self, { plane, udp });
  open.push(self as TestNode);
  return self as TestNode;
}

afterEach(async () => {
  for (const n of open.splice(0)) {
    await n.plane.shutdown(50);
    n.udp.close();
  }
});

/** Collects a stream's bytes until "end"; resolves with them (or rejects on an error close). */
function readAll(s: StreamHandle): Promise<Uint8Array> {
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
function writeAll(s: StreamHandle, data: Uint8Array): Promise<void> {
  let off = 0;
  return new Promise((resolve) => {
    const more = () => {
      while (off < data.length) {
        const n = s.write(data.subarray(off, off + 256 * 1024));
        if (n === 0) return;
        off += n;
      }
      s.shutdown();
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

describe("data plane over real UDP", () => {
  test("a trusted pair exchanges a 4 MiB stream both ways, byte exact, with half-close", async () => {
    const [a, b] = [await node(1), await node(2)];
    a.trusted.add(b.address);
    b.trusted.add(a.address);
    const payloadA = new Uint8Array(4 << 20).map((_, i) => (i * 7) & 0xff);
    const payloadB = new Uint8Array(4 << 20).map((_, i) => (i * 13) & 0xff);
    const accepted = new Promise<StreamHandle>((r) => b.plane.listen(80, r));
    const sa = await a.plane.dial(b.address, 80);
    const sb = await accepted;
    expect(sb.remoteAddress).toBe(a.address);
    const [gotAtB, gotAtA] = [readAll(sb), readAll(sa)];
    await Promise.all([writeAll(sa, payloadA), writeAll(sb, payloadB)]);
    expect(Buffer.compare(await gotAtB, payloadA)).toBe(0);
    expect(Buffer.compare(await gotAtA, payloadB)).toBe(0);
  });

  test("ping measures a round trip; datagrams reach only a bound port", async () => {
    const [a, b] = [await node(3), await node(4)];
    a.trusted.add(b.address);
    b.trusted.add(a.address);
    const rtt = await a.plane.ping(b.address, 1, 2000);
    expect(rtt).toBeGreaterThan(0);
    expect(await a.plane.ping(b.address, 2, 2000)).toBeLessThan(50);
    const got = new Promise<string>((r) => b.plane.bindDatagrams(5000, (m) => r(new TextDecoder().decode(m.data))));
    await a.plane.sendDatagram(0, b.address, 5001, new TextEncoder().encode("nobody"));
    await a.plane.sendDatagram(0, b.address, 5000, new TextEncoder().encode("hello"));
    expect(await got).toBe("hello");
    expect(b.plane.counters.datagramsDropped).toBe(1);
  });

  test("a private node refuses a stranger's handshake; a dial to it fails, nothing is delivered", async () => {
    const [a, b] = [await node(5), await node(6)];
    b.plane.listen(80, () => {
      throw new Error("must not accept");
    });
    // a "trusts" b, b does not trust a.
    a.trusted.add(b.address);
    await expect(a.plane.dial(b.address, 80, 1500)).rejects.toBeInstanceOf(NodeError);
    expect(b.plane.router.stats.rejectedInitiation).toBeGreaterThan(0);
  });

  test("a private node that dialed a public stranger still refuses inbound streams from it", async () => {
    const [a, b] = [await node(7), await node(8, { public: true })];
    b.plane.listen(80, () => {});
    const s = await a.plane.dial(b.address, 80);
    expect(s.remotePort).toBe(80);
    a.plane.listen(22, () => {
      throw new Error("must not accept");
    });
    await expect(b.plane.dial(a.address, 22, 1500)).rejects.toMatchObject({ code: "connection_refused" });
    expect(a.plane.counters.notTrusted).toBe(1);
  });

  test("dropPeer (untrust) resets live streams on both sides at once", async () => {
    const [a, b] = [await node(9), await node(10)];
    a.trusted.add(b.address);
    b.trusted.add(a.address);
    const accepted = new Promise<StreamHandle>((r) => b.plane.listen(80, r));
    const sa = await a.plane.dial(b.address, 80);
    const sb = await accepted;
    const closedAtB = new Promise<StreamEvent>((r) => (sb.onEvent = (e) => e.type === "closed" && r(e)));
    const closedAtA = new Promise<StreamEvent>((r) => (sa.onEvent = (e) => e.type === "closed" && r(e)));
    a.trusted.delete(b.address);
    const n = a.plane.dropPeer(b.address, new NodeError("not_trusted", "trust was revoked"));
    expect(n).toBe(1);
    expect(((await closedAtA) as any).error.code).toBe("not_trusted");
    expect(((await closedAtB) as any).error.code).toBe("connection_reset");
    // And a new connection is refused at the tunnel.
    await expect(b.plane.dial(a.address, 80, 1500)).rejects.toBeInstanceOf(NodeError);
  });

  test("dialing a closed port is refused quickly", async () => {
    const [a, b] = [await node(11), await node(12)];
    a.trusted.add(b.address);
    b.trusted.add(a.address);
    const t = performance.now();
    await expect(a.plane.dial(b.address, 9999)).rejects.toMatchObject({ code: "connection_refused" });
    expect(performance.now() - t).toBeLessThan(1000);
  });

  test("connections in TIME-WAIT do not use up a port's connection limit", async () => {
    const [a, b] = [await node(13), await node(14, { limits: { maxPerPort: 5, maxTotal: 100 }, timeWait: 60_000 })];
    a.trusted.add(b.address);
    b.trusted.add(a.address);
    // The server closes first, so each connection lingers in TIME-WAIT on b's port 80.
    b.plane.listen(80, (s) => {
      s.onEvent = (e) => {
        if (e.type === "readable") while (s.read(65536));
        if (e.type === "end") s.shutdown();
      };
      s.write(new TextEncoder().encode("bye"));
      s.shutdown();
    });
    for (let i = 0; i < 20; i++) {
      const s = await a.plane.dial(b.address, 80);
      await readAll(s);
      s.shutdown();
    }
    await Bun.sleep(50);
    expect(b.plane.counters.connectionLimit).toBe(0);
    expect(b.plane.ports.heldCount).toBeGreaterThan(5);
    expect(b.plane.ports.connectionCount).toBe(0);
  });
});
