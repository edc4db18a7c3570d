import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeError } from "../../src/daemon/local-node.ts";
import { IpcClient, type IpcStream } from "../../src/ipc/client.ts";
import { encodeFrame, FrameType, MAX_FRAME_LENGTH, STREAM_WINDOW } from "../../src/ipc/frames.ts";
import { resolveSocketPath } from "../../src/ipc/paths.ts";
import { startIpcServer, type IpcServer } from "../../src/ipc/server.ts";
import { addressOf } from "../../src/protocol/address.ts";
import { createLogger } from "../../src/util/log.ts";
import { FakeNetwork, type FakeLocalNode } from "../support/fake-local-node.ts";

async function until(predicate: () => boolean, ms = 2000, what = "condition"): Promise<void> {
  const deadline = performance.now() + ms;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(2);
  }
}

let dir: string;
let network: FakeNetwork;
let node: FakeLocalNode;
let peer: FakeLocalNode;
let server: IpcServer;
let logs: string[];
let socketPath: string;
const clients: IpcClient[] = [];

async function client(): Promise<IpcClient> {
  const { client } = await IpcClient.connect(socketPath);
  clients.push(client);
  return client;
}

/** A raw unix socket to the server, for sending bytes no well-behaved client would. */
async function raw(): Promise<{ send(bytes: Uint8Array): void; closed: Promise<void>; received: Uint8Array[] }> {
  let onClose!: () => void;
  const closed = new Promise<void>((resolve) => (onClose = resolve));
  const received: Uint8Array[] = [];
  let queue: Uint8Array[] = [];
  const flush = (s: { write(b: Uint8Array): number }) => {
    while (queue.length > 0) {
      const n = s.write(queue[0]!);
      if (n < 0) return void (queue = []);
      if (n < queue[0]!.length) return void (queue[0] = queue[0]!.subarray(n));
      queue.shift();
    }
  };
  const socket = await Bun.connect({
    unix: socketPath,
    socket: { data: (_s, d) => void received.push(d), close: () => onClose(), drain: (s) => flush(s) },
  });
  return {
    send: (bytes) => {
      queue.push(bytes);
      if (queue.length === 1) flush(socket);
    },
    closed,
    received,
  };
}

function frame(f: Parameters<typeof encodeFrame>[0]): Uint8Array {
  const r = encodeFrame(f);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

/** Accepted streams on the peer side, reading everything they get. */
function sinkOn(target: FakeLocalNode, port: number): { received: () => number } {
  let received = 0;
  target.listen(port, (handle) => {
    handle.onEvent = (e) => {
      if (e.type === "readable") for (let c = handle.read(1 << 20); c; c = handle.read(1 << 20)) received += c.length;
    };
  });
  return { received: () => received };
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "pilot-ipcsrv-"));
  network = new FakeNetwork();
  node = network.addNode(10, { hostname: "alpha" });
  peer = network.addNode(11, { hostname: "beta" });
  logs = [];
  socketPath = join(dir, "pilot.sock");
  server = await startIpcServer({ node, socketPath, logger: createLogger("ipc", { level: "debug", sink: (l) => logs.push(l) }) });
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the socket file", () => {
  test("is created with mode 0600", () => {
    const st = statSync(socketPath);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
  });

  test("a stale socket left by a crashed daemon is replaced", async () => {
    const stale = join(dir, "stale.sock");
    const child = Bun.spawnSync(["bun", "-e", `Bun.listen({ unix: ${JSON.stringify(stale)}, socket: { data() {} } }); process.exit(0);`]);
    expect(child.exitCode).toBe(0);
    expect(statSync(stale).isSocket()).toBe(true);
    const second = await startIpcServer({ node: peer, socketPath: stale });
    try {
      const { client, hello } = await IpcClient.connect(stale);
      expect(hello.address).toBe("0:0000.0000.000B");
      client.close();
    } finally {
      await second.close();
    }
  });

  test("a live socket is not taken over: already_exists", async () => {
    const error = await startIpcServer({ node: peer, socketPath }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NodeError);
    expect((error as NodeError).code).toBe("already_exists");
    // The first server is untouched.
    const c = await client();
    expect(await c.request("echo", { x: 1 })).toEqual({ x: 1 });
  });

  test("a path that is not a socket is refused", async () => {
    const file = join(dir, "file");
    writeFileSync(file, "x");
    const error = await startIpcServer({ node: peer, socketPath: file }).catch((e: unknown) => e);
    expect((error as NodeError).code).toBe("invalid_argument");
  });

  test("close() removes the socket file", async () => {
    await server.close();
    expect(() => statSync(socketPath)).toThrow();
  });

  test("path resolution: explicit path, home, PILOT_SOCKET, PILOT_HOME", () => {
    expect(resolveSocketPath({ socketPath: "/x.sock", env: { PILOT_SOCKET: "/y.sock" } })).toBe("/x.sock");
    expect(resolveSocketPath({ home: "/h", env: { PILOT_SOCKET: "/y.sock" } })).toBe("/h/pilot.sock");
    expect(resolveSocketPath({ env: { PILOT_SOCKET: "/y.sock", PILOT_HOME: "/h" } })).toBe("/y.sock");
    expect(resolveSocketPath({ env: { PILOT_HOME: "/h" } })).toBe("/h/pilot.sock");
  });
});

describe("requests", () => {
  test("hello gives the node's address and hostname", async () => {
    const { client, hello } = await IpcClient.connect(socketPath);
    clients.push(client);
    expect(hello).toEqual({ protocol: 2, address: "0:0000.0000.000A", hostname: "alpha" });
  });

  test("unknown methods pass through to LocalNode.call, errors keep code and hint", async () => {
    node.methods.set("set_hostname", (p) => ({ hostname: p.hostname }));
    node.methods.set("picky", () => {
      throw new NodeError("rate_limited", "slow down", "wait a minute");
    });
    const c = await client();
    expect(await c.request("set_hostname", { hostname: "gamma" })).toEqual({ hostname: "gamma" });
    expect(node.calls.at(-1)).toEqual({ method: "set_hostname", params: { hostname: "gamma" } });
    const error = (await c.request("picky").catch((e: unknown) => e)) as NodeError;
    expect(error).toBeInstanceOf(NodeError);
    expect([error.code, error.message, error.hint]).toEqual(["rate_limited", "slow down", "wait a minute"]);
  });

  test("a non-NodeError thrown by the node is reported as internal, and the client lives on", async () => {
    node.methods.set("broken", () => {
      throw new TypeError("oops");
    });
    const c = await client();
    const error = (await c.request("broken").catch((e: unknown) => e)) as NodeError;
    expect(error.code).toBe("internal");
    expect(await c.request("echo", { ok: 1 })).toEqual({ ok: 1 });
  });

  test("answers are matched by id, not by order: a slow call does not hold up fast ones", async () => {
    node.methods.set("slow", async () => {
      await Bun.sleep(150);
      return "slow";
    });
    const c = await client();
    const order: string[] = [];
    const slow = c.request("slow").then((r) => order.push(r as string));
    const fast = Promise.all(Array.from({ length: 20 }, (_, i) => c.request("echo", { i }).then((r) => order.push(`fast${(r as { i: number }).i}`))));
    await fast;
    expect(order.length).toBe(20);
    await slow;
    expect(order.at(-1)).toBe("slow");
  });

  test("many dials in flight at once on one client", async () => {
    node.dialDelayMs = 50;
    sinkOn(peer, 80);
    const c = await client();
    const started = performance.now();
    const streams = await Promise.all(Array.from({ length: 100 }, () => c.dial(peer.address, 80)));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(new Set(streams.map((s) => s.id)).size).toBe(100);
  });

  test("dial errors come back as NodeErrors for that dial only", async () => {
    const c = await client();
    const refused = (await c.dial(peer.address, 81).catch((e: unknown) => e)) as NodeError;
    expect(refused.code).toBe("connection_refused");
    const unknown = (await c.dial(addressOf(0, 999), 80).catch((e: unknown) => e)) as NodeError;
    expect(unknown.code).toBe("not_found");
    const bad = (await c.request("dial", { address: "nonsense", port: 80 }).catch((e: unknown) => e)) as NodeError;
    expect(bad.code).toBe("invalid_argument");
    const badPort = (await c.request("listen", { port: 70000 }).catch((e: unknown) => e)) as NodeError;
    expect(badPort.code).toBe("invalid_argument");
  });

  test("listen reports port_in_use across clients; unlisten really unbinds", async () => {
    const c1 = await client();
    const c2 = await client();
    const { listener } = await c1.listen(80, () => {});
    const taken = (await c2.listen(80, () => {}).catch((e: unknown) => e)) as NodeError;
    expect(taken.code).toBe("port_in_use");
    await c1.unlisten(listener);
    expect(node.listeners.has(80)).toBe(false);
    await c2.listen(80, () => {});
    expect(node.listeners.has(80)).toBe(true);
  });
});

describe("misbehaving clients are dropped alone", () => {
  test("a declared frame length over the limit", async () => {
    const good = await client();
    const bad = await raw();
    const header = new Uint8Array(5);
    new DataView(header.buffer).setUint32(0, MAX_FRAME_LENGTH + 1);
    bad.send(header);
    await bad.closed;
    expect(logs.some((l) => l.includes("malformed") && l.includes("bad_length"))).toBe(true);
    expect(await good.request("echo", { still: "here" })).toEqual({ still: "here" });
    await until(() => server.clientCount === 1);
  });

  test("garbage, an unknown frame type, and a daemon-only frame", async () => {
    const good = await client();
    for (const bytes of [
      new Uint8Array([0, 0, 0, 3, 0x42, 1, 2]),
      frame({ type: FrameType.Accept, listener: 1, stream: 1, remoteAddress: addressOf(0, 1), remotePort: 1, localPort: 1 }),
      new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
    ]) {
      const bad = await raw();
      bad.send(bytes);
      await bad.closed;
    }
    expect(await good.request("echo", { n: 1 })).toEqual({ n: 1 });
  });

  test("DATA beyond the stream's credit", async () => {
    // The peer never reads: its pipe takes one window, after which nothing more is credited.
    peer.listen(80, () => {});
    const bad = await raw();
    bad.send(frame({ type: FrameType.Request, id: 1, method: "dial", params: { address: "0:0000.0000.000B", port: 80 } }));
    await until(() => bad.received.length > 0);
    const big = new Uint8Array(60_000);
    for (let sent = 0; sent <= STREAM_WINDOW * 4; sent += big.length) bad.send(frame({ type: FrameType.Data, stream: 1, data: big }));
    await bad.closed;
    expect(logs.some((l) => l.includes("credit_exceeded"))).toBe(true);
  });

  test("a client that disconnects mid-frame leaves nothing behind", async () => {
    const bad = await raw();
    bad.send(new Uint8Array([0, 0, 1, 0, FrameType.Request, 0, 0]));
    await Bun.sleep(10);
    expect(server.clientCount).toBe(1);
  });
});

describe("cleanup when a client disconnects", () => {
  test("its streams are closed and its ports and datagram bindings released", async () => {
    const c = await client();
    const accepted: IpcStream[] = [];
    await c.listen(80, (s) => {
      s.handler = { onData: () => {}, onWritable: () => {}, onEnd: () => {}, onClosed: () => {} };
      accepted.push(s);
    });
    await c.bindDatagrams(5000, () => {});
    const peerSink = sinkOn(peer, 90);
    const out = await c.dial(peer.address, 90);
    out.handler = { onData: () => {}, onWritable: () => {}, onEnd: () => {}, onClosed: () => {} };
    out.write(new Uint8Array(1000));
    const inbound = await peer.dial(node.address, 80);
    await until(() => accepted.length === 1);
    expect(node.listeners.has(80)).toBe(true);
    expect(node.datagramPorts.has(5000)).toBe(true);
    expect(node.streams.size).toBe(2);
    await until(() => peerSink.received() === 1000);

    c.close();
    await until(() => server.clientCount === 0);
    expect(node.listeners.has(80)).toBe(false);
    expect(node.datagramPorts.has(5000)).toBe(false);
    await until(() => node.streams.size === 0, 2000, "streams closed");
    // The remote ends see an orderly end of stream.
    let ended = false;
    inbound.onEvent = (e) => {
      if (e.type === "end") ended = true;
      if (e.type === "readable") while (inbound.read(1 << 16));
    };
    await until(() => ended);
  });

  test("a dial that completes after its client left is closed at once", async () => {
    node.dialDelayMs = 100;
    sinkOn(peer, 80);
    const c = await client();
    const pending = c.dial(peer.address, 80).catch((e: unknown) => e);
    await Bun.sleep(10);
    c.close();
    expect(((await pending) as NodeError).code).toBe("closed");
    await Bun.sleep(150);
    expect(node.streams.size).toBe(0);
  });
});

describe("datagrams", () => {
  test("go only to the client that bound the port", async () => {
    const c1 = await client();
    const c2 = await client();
    const got1: string[] = [];
    const got2: string[] = [];
    await c1.bindDatagrams(5000, (d) => got1.push(new TextDecoder().decode(d.data)));
    await c2.bindDatagrams(5001, (d) => got2.push(new TextDecoder().decode(d.data)));
    await peer.sendDatagram(0, node.address, 5000, new TextEncoder().encode("for one"));
    await peer.sendDatagram(0, node.address, 5001, new TextEncoder().encode("for two"));
    await peer.sendDatagram(0, node.address, 5002, new TextEncoder().encode("for nobody"));
    await until(() => got1.length === 1 && got2.length === 1);
    await Bun.sleep(20);
    expect(got1).toEqual(["for one"]);
    expect(got2).toEqual(["for two"]);
  });

  test("a client may send only from 0 or a port it bound; errors are that send's own", async () => {
    const c1 = await client();
    const c2 = await client();
    await c1.bindDatagrams(5000, () => {});
    const received: number[] = [];
    peer.bindDatagrams(7000, (m) => received.push(m.srcPort));
    await c1.sendDatagram(5000, peer.address, 7000, new Uint8Array([1]));
    await c1.sendDatagram(0, peer.address, 7000, new Uint8Array([2]));
    const stolen = (await c2.sendDatagram(5000, peer.address, 7000, new Uint8Array([3])).catch((e: unknown) => e)) as NodeError;
    expect(stolen.code).toBe("invalid_argument");
    const tooBig = (await c1.sendDatagram(0, peer.address, 7000, new Uint8Array(5000)).catch((e: unknown) => e)) as NodeError;
    expect(tooBig.code).toBe("invalid_argument");
    await until(() => received.length === 2);
    expect(received[0]).toBe(5000);
  });
});

describe("the daemon going away", () => {
  test("fails calls in flight at once and closes streams with not_running", async () => {
    node.methods.set("forever", () => new Promise(() => {}));
    sinkOn(peer, 80);
    const c = await client();
    const stream = await c.dial(peer.address, 80);
    let closedWith: NodeError | undefined;
    stream.handler = { onData: () => {}, onWritable: () => {}, onEnd: () => {}, onClosed: (e) => (closedWith = e) };
    const call = c.request("forever").catch((e: unknown) => e);
    await Bun.sleep(10);
    const started = performance.now();
    await server.close();
    const error = (await call) as NodeError;
    expect(performance.now() - started).toBeLessThan(500);
    expect(error.code).toBe("not_running");
    expect(error.hint).toContain("pilot daemon start");
    expect(closedWith?.code).toBe("not_running");
    expect(((await c.request("echo").catch((e: unknown) => e)) as NodeError).code).toBe("not_running");
  });

  test("connecting with no daemon: not_running with a hint", async () => {
    const error = (await IpcClient.connect(join(dir, "nobody.sock")).catch((e: unknown) => e)) as NodeError;
    expect(error).toBeInstanceOf(NodeError);
    expect(error.code).toBe("not_running");
    expect(error.hint).toContain("pilot daemon start");
  });
});
