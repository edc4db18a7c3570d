/**
 * IPv6 on loopback: the beacon on [::1], a dual-stack daemon ([::]:0), one on
 * [::1] only and one on 127.0.0.1 only. The dual-stack daemon reaches the
 * IPv6 one over IPv6 and the IPv4 one over IPv4 on its one socket; IPv4
 * senders are seen as plain dotted IPv4 (never ::ffff:a.b.c.d), and the
 * beacon registers and answers over IPv6. (Global addresses and NATs: the
 * NAT lab's IPv6 case.)
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { connect, type Driver, type PilotSocket } from "../../src/driver/index.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";

let c: Cluster;
let a: Driver;

beforeAll(async () => {
  c = await startCluster({
    beaconAddr: "[::1]:0",
    daemons: [
      { name: "dual", hostname: "v6-dual", public: true, extraArgs: ["--listen", "[::]:0"] },
      { name: "six", hostname: "v6-only", public: true, extraArgs: ["--listen", "[::1]:0"] },
      { name: "four", hostname: "v4-only", public: true },
    ],
  });
  a = await connect({ socketPath: c.daemon("dual").socket });
});

afterAll(async () => {
  await a?.close();
  await c?.stop();
});

function echoExact(socket: PilotSocket, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    socket.on("data", (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= payload.length) resolve(Buffer.concat(chunks));
    });
    socket.once("error", reject);
    socket.write(payload);
  });
}

async function peer(from: string, nodeId: number): Promise<any> {
  for (let i = 0; i < 100; i++) {
    const r = await c.pilot(from, ["peers"]);
    const p = r.json?.data?.peers?.find((x: any) => x.node_id === nodeId);
    if (p && p.path === "direct" && p.endpoint) return p;
    await Bun.sleep(100);
  }
  throw new Error(`${from} has no direct path to node ${nodeId}`);
}

describe("IPv6", () => {
  test("the beacon answers over IPv6; the daemons show their listen addresses", async () => {
    expect(c.beacon).toMatch(/^\[::1\]:\d+$/);
    for (const [name, endpoint] of [["dual", /^\[::\]:\d+$/], ["six", /^\[::1\]:\d+$/]] as const) {
      let node: any;
      for (let i = 0; i < 100; i++) {
        node = (await c.pilot(name, ["status"])).json.data.node;
        if (node.beacon_registered) break;
        await Bun.sleep(100);
      }
      expect(node.endpoint).toMatch(endpoint);
      expect(node.beacon_registered).toBe(true);
      // Over [::1] the beacon sees the host's own address: no NAT.
      expect(node.observed_endpoint).toMatch(/^\[::1\]:\d+$/);
    }
  });

  test("dual stack → IPv6-only node: a direct IPv6 path, 1 MiB byte-exact", async () => {
    const six = c.daemon("six");
    const payload = randomBytes(1 << 20);
    const socket = await a.dial(six.address, 7);
    expect((await echoExact(socket, payload)).equals(payload)).toBe(true);
    socket.destroy();
    const p = await peer("dual", six.nodeId);
    expect(p.endpoint).toMatch(/^\[::1\]:\d+$/);
  });

  test("dual stack → IPv4-only node on the same socket: the endpoint is plain IPv4, not IPv4-mapped", async () => {
    const four = c.daemon("four");
    const payload = randomBytes(256 << 10);
    const socket = await a.dial(four.address, 7);
    expect((await echoExact(socket, payload)).equals(payload)).toBe(true);
    socket.destroy();
    const p = await peer("dual", four.nodeId);
    expect(p.endpoint).toMatch(/^127\.0\.0\.1:\d+$/);
    // And the IPv4 node sees the dual-stack node as plain IPv4 too.
    const back = await peer("four", c.daemon("dual").nodeId);
    expect(back.endpoint).toMatch(/^127\.0\.0\.1:\d+$/);
  });
});

describe("a dual-stack beacon ([::]:P)", () => {
  test("an IPv4 daemon registers with it over IPv4 and is seen as plain IPv4", async () => {
    const d = await startCluster({ beaconAddr: "[::]:0" });
    try {
      const port = Number(d.beacon.split(":").pop());
      await d.startDaemon({ name: "v4", public: true, extraArgs: ["--beacon", `127.0.0.1:${port}`] });
      let node: any;
      for (let i = 0; i < 100; i++) {
        node = (await d.pilot("v4", ["status"])).json.data.node;
        if (node.beacon_registered) break;
        await Bun.sleep(100);
      }
      expect(node.beacon_registered).toBe(true);
      expect(node.observed_endpoint).toBe(node.endpoint);
      expect(node.observed_endpoint).toMatch(/^127\.0\.0\.1:\d+$/);
    } finally {
      await d.stop();
    }
  });
});

describe("the relay over WebSocket on IPv6 ([::1])", () => {
  test("a daemon whose beacon does not answer over UDP relays over a WebSocket to [::1]", async () => {
    const d = await startCluster({ beaconAddr: "[::1]:0", rendezvousArgs: ["--ws-addr", "[::1]:0"] });
    try {
      const url = d.rendezvousReady.ws_relay as string;
      expect(url).toMatch(/^ws:\/\/\[::1\]:\d+/);
      // A beacon address nobody answers at: UDP "does not work", so the daemon falls back.
      await d.startDaemon({ name: "w", public: true, extraArgs: ["--listen", "[::1]:0", "--beacon", "[::1]:9", "--relay-ws", url] });
      let node: any;
      for (let i = 0; i < 150; i++) {
        node = (await d.pilot("w", ["status"])).json.data.node;
        if (node.relay_tcp?.connected) break;
        await Bun.sleep(100);
      }
      expect(node.relay_tcp).toMatchObject({ connected: true });
    } finally {
      await d.stop();
    }
  });
});
