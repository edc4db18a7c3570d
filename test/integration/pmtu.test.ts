/**
 * Path MTU discovery between real daemons on 127.0.0.1 (MTU 65536): a bulk
 * stream makes the sender's path search upward; the search completes on a
 * jumbo frame (as a rule the largest, MAX_DATA_FRAME; `pilot peers --json`
 * datagram_size) and 8 MiB arrive byte-exact. A daemon started with PILOT_PMTU=0 keeps its own
 * direction at the base size (it still answers the other side's probes).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { connect, type Driver, type PilotSocket } from "../../src/driver/index.ts";
import { BASE_DATA_FRAME } from "../../src/protocol/tunnel-frame.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";

let c: Cluster;
const drivers: Driver[] = [];

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "a" }, { name: "b" }] });
  const before = process.env.PILOT_PMTU;
  process.env.PILOT_PMTU = "0";
  try {
    await c.startDaemon({ name: "off" });
  } finally {
    if (before === undefined) delete process.env.PILOT_PMTU;
    else process.env.PILOT_PMTU = before;
  }
  await c.trust("a", "b");
  await c.trust("a", "off");
}, 60_000);

afterAll(async () => {
  for (const d of drivers) await d.close().catch(() => {});
  await c?.stop();
});

async function driver(name: string): Promise<Driver> {
  const d = await connect({ socketPath: join(c.daemon(name).home, "pilot.sock") });
  drivers.push(d);
  return d;
}

/** Sends `size` bytes from `from` to a listener on `to`; resolves with the sha256 of what arrived. */
async function transfer(from: Driver, to: Driver, port: number, data: Buffer): Promise<string> {
  const server = await to.listen(port);
  const arrived = new Promise<string>((resolve, reject) => {
    server.once("connection", (s: PilotSocket) => {
      const hash = createHash("sha256");
      let got = 0;
      s.on("data", (d: Buffer) => {
        hash.update(d);
        got += d.length;
        if (got >= data.length) resolve(hash.digest("hex"));
      });
      s.once("error", reject);
    });
  });
  const socket = await from.dial(to.address, port);
  socket.write(data);
  const digest = await arrived;
  socket.destroy();
  await server.close();
  return digest;
}

async function peerView(of: string, peer: string): Promise<{ datagram_size: number; pmtu: string; path: string }> {
  const r = await c.pilot(of, ["peers"]);
  expect(r.code).toBe(0);
  const row = r.json.data.peers.find((p: any) => p.node_id === c.daemon(peer).nodeId);
  expect(row).toBeDefined();
  return row;
}

/**
 * The search climbs one size at a time, probes only while there is bulk to send, and waits 1 s for
 * a lost probe: one short transfer may end before it completes. Transfers again (for at most
 * `seconds`) until `from`'s view of `to` says the search is complete; returns that view.
 */
async function settled(from: Driver, to: Driver, fromName: string, toName: string, port: number, data: Buffer, seconds = 20) {
  const deadline = performance.now() + seconds * 1000;
  let view = await peerView(fromName, toName);
  while (view.pmtu !== "complete" && performance.now() < deadline) {
    expect(await transfer(from, to, port, data)).toBe(createHash("sha256").update(data).digest("hex"));
    view = await peerView(fromName, toName);
  }
  return view;
}

/** The smallest jumbo size the search tries on 127.0.0.1 (a 9000-byte link, IPv4); above the 1472 of a 1500 one. */
const JUMBO = 9000 - 28;

describe("path MTU discovery on loopback", () => {
  test("a bulk stream settles on the largest frame and 8 MiB arrive byte-exact", async () => {
    const a = await driver("a");
    const b = await driver("b");
    const data = Buffer.alloc(8 << 20);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    const digest = await transfer(a, b, 1300, data);
    expect(digest).toBe(createHash("sha256").update(data).digest("hex"));
    const view = await settled(a, b, "a", "b", 1303, data.subarray(0, 2 << 20));
    expect(view.path).toBe("direct");
    expect(view.pmtu).toBe("complete");
    // The largest frame as a rule; a loaded machine can lose all three probes of one size to the
    // bulk's own congestion, and the search then completes a step lower (the raise timer tries again).
    expect(view.datagram_size).toBeGreaterThanOrEqual(JUMBO);
    // b only acknowledged: it had no bulk of its own to search for.
    expect((await peerView("b", "a")).datagram_size).toBe(BASE_DATA_FRAME);
  }, 60_000);

  test("PILOT_PMTU=0: that daemon's direction stays at the base; the other side's search still completes", async () => {
    const a = await driver("a");
    const off = await driver("off");
    const data = Buffer.alloc(2 << 20, 9);
    const hash = createHash("sha256").update(data).digest("hex");
    expect(await transfer(off, a, 1301, data)).toBe(hash);
    const offView = await peerView("off", "a");
    expect(offView.datagram_size).toBe(BASE_DATA_FRAME);
    expect(offView.pmtu).toBe("disabled");
    expect(await transfer(a, off, 1302, data)).toBe(hash);
    const view = await settled(a, off, "a", "off", 1304, data);
    expect(view.pmtu).toBe("complete");
    expect(view.datagram_size).toBeGreaterThanOrEqual(JUMBO);
  }, 60_000);
});
