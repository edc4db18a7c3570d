/**
 * The SDK against a real daemon, addressing the node itself (loopback to
 * self, as TCP has it): dial, listen, serveHttp + fetch, datagrams and ping
 * to our own address work with no trust and no tunnel; refusals behave as
 * for any peer. And URLs: an address is written `N-NNNN-HHHH-LLLL` in a URL
 * host; `http://0:0000.0000.0004/` fails with a hint naming that spelling.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { connect, NodeError, parseTarget, urlHostOf, type Driver, type PilotSocket, type PilotSocketError } from "../../src/driver/index.ts";
import { formatAddress } from "../../src/protocol/address.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";

let c: Cluster;
let me: Driver;
/** A second daemon, never trusted: loopback must not open anything to strangers. */
let stranger: Driver;

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "self", hostname: "loop-self" }, { name: "stranger", hostname: "loop-stranger" }] });
  me = await connect({ socketPath: join(c.daemon("self").home, "pilot.sock") });
  stranger = await connect({ socketPath: join(c.daemon("stranger").home, "pilot.sock") });
});

afterAll(async () => {
  await me?.close();
  await stranger?.close();
  await c?.stop();
});

function readN(socket: PilotSocket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= n) {
        socket.off("data", onData);
        resolve(Buffer.concat(chunks));
      }
    };
    socket.on("data", onData);
    socket.once("error", reject);
  });
}

describe("loopback to self", () => {
  test("dial our own echo port (7) by address, hostname and node id: bytes come back", async () => {
    for (const target of [me.address, "loop-self", String(c.daemon("self").nodeId)]) {
      const socket = await me.dial(target, 7);
      expect(socket.remoteAddress).toBe(me.address);
      socket.write("hello, me");
      expect((await readN(socket, 9)).toString()).toBe("hello, me");
      socket.destroy();
    }
  });

  test("listen + dial to ourselves: both directions, 1 MB intact, half-close, and the accepted side sees our own address", async () => {
    const server = await me.listen(1200, { allowHalfOpen: true });
    const accepted = new Promise<PilotSocket>((resolve) => server.once("connection", resolve));
    const client = await me.dial(me.address, 1200);
    const peer = await accepted;
    expect(peer.remoteAddress).toBe(me.address);
    expect(peer.remotePort).toBe(client.localPort);
    const big = Buffer.alloc(1024 * 1024, 7);
    const received = readN(peer, big.length);
    client.write(big);
    expect(Buffer.compare(await received, big)).toBe(0);
    // Half-close: the client finishes, the server still answers, then finishes too.
    const ended = new Promise<void>((resolve) => peer.once("end", resolve));
    client.end();
    await ended;
    const reply = readN(client, 5);
    peer.end("bye!!");
    expect((await reply).toString()).toBe("bye!!");
    await server.close();
  });

  test("a port nobody listens on refuses, as for any peer", async () => {
    const error = (await me.dial(me.address, 4321).catch((e: unknown) => e)) as NodeError;
    expect(error.code).toBe("connection_refused");
  });

  test("serveHttp + fetch to ourselves, by hostname, node id and the dashed address", async () => {
    const served = await me.serveHttp(80, (req, res) => {
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify({ path: req.url, from: req.socket.remoteAddress }));
    });
    try {
      for (const host of ["loop-self", String(c.daemon("self").nodeId), urlHostOf(parseAddressOf(me.address))]) {
        const res = await me.fetch(`http://${host}/api/status`);
        expect({ host, status: res.status }).toEqual({ host, status: 200 });
        expect(await res.json()).toEqual({ path: "/api/status", from: me.address });
      }
    } finally {
      await served.close();
    }
  });

  test("the secure channel to ourselves (https: fetch): both ends are this node's identity", async () => {
    const served = await me.serveHttp(443, (_req, res) => res.end("secret"), { secure: true });
    try {
      const res = await me.fetch("https://loop-self/");
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("secret");
    } finally {
      await served.close();
    }
  });

  test("datagrams to ourselves arrive, from our own address", async () => {
    const socket = await me.bindDatagrams(5005);
    const got = new Promise<{ from: string; data: string }>((resolve) => socket.once("message", (m) => resolve({ from: m.from, data: Buffer.from(m.data).toString() })));
    await me.sendTo(me.address, 5005, "postcard to self");
    expect(await got).toEqual({ from: me.address, data: "postcard to self" });
    await socket.close();
  });

  test("ping ourselves: a reply on path self, and no tunnel session with ourselves", async () => {
    const r = (await me.call("ping", { target: me.address, seq: 1, timeout_ms: 3000 })) as { rtt_ms: number; path: string };
    expect(r.path).toBe("self");
    expect(r.rtt_ms).toBeGreaterThanOrEqual(0);
    const peers = (await me.call("peers")) as { peers: { node_id: number }[] };
    expect(peers.peers.map((p) => p.node_id)).not.toContain(c.daemon("self").nodeId);
  });

  test("loopback opens nothing to others: a stranger still cannot reach our listener", async () => {
    const server = await me.listen(1201);
    try {
      const error = (await stranger.dial(me.address, 1201, { timeoutMs: 3000 }).catch((e: unknown) => e)) as NodeError;
      expect(error.code).toBe("not_found"); // private, and we do not trust it: invisible, as before
    } finally {
      await server.close();
    }
  });
});

function parseAddressOf(text: string) {
  const t = parseTarget(text);
  if (t.kind !== "address") throw new Error(`${text} is not an address`);
  return t.address;
}

describe("an address in a URL", () => {
  test("the dashed spelling names the address; `http://0:0000.0000.000N/` fails with a hint that shows it", async () => {
    const address = parseAddressOf(me.address);
    const dashed = urlHostOf(address);
    expect(dashed).toBe(formatAddress(address).replace(":", "-").replaceAll(".", "-").toLowerCase());
    const t = parseTarget(dashed);
    expect(t.kind === "address" && t.address === address).toBe(true);

    const error = (await me.fetch(`http://${me.address}/api/status`).catch((e: unknown) => e)) as NodeError;
    expect(error).toBeInstanceOf(NodeError);
    expect(error.code).toBe("invalid_argument");
    expect(error.message).toContain(`"http://${me.address}/api/status"`);
    expect(error.hint).toContain(`http://${dashed}/api/status`);
    expect(error.hint).toContain(`http://${c.daemon("self").nodeId}/api/status`);
    // With a port, the port stays.
    const withPort = (await me.fetch(`http://${me.address}:8080/x`).catch((e: unknown) => e)) as NodeError;
    expect(withPort.hint).toContain(`http://${dashed}:8080/x`);
  });

  test("NNNN.HHHH.LLLL that a URL parser would read as another IPv4 node is refused with the dashed spelling", async () => {
    const error = (await me.fetch("http://0000.0100.0000/").catch((e: unknown) => e)) as NodeError;
    expect(error.code).toBe("invalid_argument");
    expect(error.message).toContain("0.64.0.0");
    expect(error.hint).toContain("http://0-0000-0100-0000/");
  });

  test("an unreachable dashed address fails like any unknown node (not as a URL error)", async () => {
    const error = (await me.fetch("http://0-0000-0fff-0000/").catch((e: unknown) => e)) as PilotSocketError;
    expect(error).toBeInstanceOf(Error);
    expect((error as { code?: string }).code).not.toBe("invalid_argument");
  });
});
