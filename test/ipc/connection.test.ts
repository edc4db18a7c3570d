/**
 * Both IPC socket implementations (src/ipc/connection.ts) under the same
 * client: Bun.connect (the default on Bun) and node:net (the default on
 * Node.js), run here on Bun so the node:net adapter's backpressure and close
 * paths are covered by the ordinary suite too; test/sdk-package runs it on
 * real Node.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { NodeError } from "../../src/shared/errors.ts";
import { IpcClient, type IpcStream } from "../../src/ipc/client.ts";
import { defaultIpcTransport, type IpcTransport } from "../../src/ipc/connection.ts";
import { STREAM_WINDOW } from "../../src/ipc/frames.ts";
import { pattern, startHarness, until, type Harness } from "../driver/harness.ts";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.close();
});

test("Bun picks Bun.connect by default", () => {
  expect(defaultIpcTransport()).toBe("bun");
});

/** Collects a stream's bytes; `consumed` only when `slow` lets it (to hold the sender back). */
function sink(stream: IpcStream): { bytes: () => Uint8Array; ended: Promise<void>; total: () => number } {
  const chunks: Uint8Array[] = [];
  let total = 0;
  let resolveEnd!: () => void;
  const ended = new Promise<void>((resolve) => (resolveEnd = resolve));
  stream.handler = {
    onData(d) {
      chunks.push(d.slice());
      total += d.length;
      stream.consumed(d.length);
    },
    onWritable() {},
    onEnd: () => resolveEnd(),
    onClosed() {},
  };
  return { bytes: () => Buffer.concat(chunks), ended, total: () => total };
}

function pump(stream: IpcStream, data: Uint8Array): void {
  let at = 0;
  const go = () => {
    while (at < data.length) {
      const n = stream.write(data, at, Math.min(data.length, at + 256 * 1024));
      at += n;
      if (n === 0) return;
    }
    stream.shutdown();
  };
  stream.handler = { onData() {}, onWritable: go, onEnd() {}, onClosed() {} };
  go();
}

for (const transport of ["bun", "node"] satisfies IpcTransport[]) {
  describe(`transport ${transport}`, () => {
    test("hello, then 16 MiB each way at once, byte for byte", async () => {
      const { client: ca, hello } = await IpcClient.connect(h.a.socketPath, { transport });
      const { client: cb } = await IpcClient.connect(h.b.socketPath, { transport });
      try {
        expect(hello.address).toBe("0:0000.0000.000A");
        const up = pattern(16 << 20, 7);
        const down = pattern(16 << 20, 9);
        let accepted!: (s: IpcStream) => void;
        const acceptedP = new Promise<IpcStream>((resolve) => (accepted = resolve));
        await cb.listen(7100, (s) => {
          accepted(s);
          s.handler = { onData() {}, onWritable() {}, onEnd() {}, onClosed() {} };
        });
        const sa = await ca.dial(h.b.node.address, 7100);
        const sb = await acceptedP;
        // Each side both sends and receives: one handler per stream carries both.
        const got = { a: [] as Uint8Array[], b: [] as Uint8Array[] };
        const ends = { a: false, b: false };
        const duplex = (s: IpcStream, data: Uint8Array, into: Uint8Array[], side: "a" | "b") => {
          let at = 0;
          const go = () => {
            while (at < data.length) {
              const n = s.write(data, at, Math.min(data.length, at + 256 * 1024));
              at += n;
              if (n === 0) return;
            }
            s.shutdown();
          };
          s.handler = {
            onData(d) {
              into.push(d.slice());
              s.consumed(d.length);
            },
            onWritable: go,
            onEnd: () => (ends[side] = true),
            onClosed() {},
          };
          go();
        };
        duplex(sa, up, got.a, "a");
        duplex(sb, down, got.b, "b");
        await until(() => ends.a && ends.b, 20_000, "both directions");
        expect(Buffer.compare(Buffer.concat(got.b), up)).toBe(0);
        expect(Buffer.compare(Buffer.concat(got.a), down)).toBe(0);
      } finally {
        ca.close();
        cb.close();
      }
    });

    test("a receiver that stops consuming holds the sender at one window; the rest waits, nothing is lost", async () => {
      const { client: ca } = await IpcClient.connect(h.a.socketPath, { transport });
      const { client: cb } = await IpcClient.connect(h.b.socketPath, { transport });
      try {
        let held: IpcStream | undefined;
        const chunks: Uint8Array[] = [];
        let ended = false;
        await cb.listen(7101, (s) => {
          held = s;
          s.handler = { onData: (d) => void chunks.push(d.slice()), onWritable() {}, onEnd: () => (ended = true), onClosed() {} };
        });
        const sa = await ca.dial(h.b.node.address, 7101);
        const data = pattern(4 * STREAM_WINDOW, 3);
        pump(sa, data);
        await until(() => held !== undefined && chunks.reduce((n, c) => n + c.length, 0) >= STREAM_WINDOW, 5000, "one window");
        await Bun.sleep(50);
        expect(sa.writableBytes).toBe(0);
        const first = chunks.reduce((n, c) => n + c.length, 0);
        expect(first).toBeLessThanOrEqual(STREAM_WINDOW);
        // Now consume everything as it comes.
        held!.consumed(first);
        held!.handler = { onData: (d) => (chunks.push(d.slice()), held!.consumed(d.length)), onWritable() {}, onEnd: () => (ended = true), onClosed() {} };
        await until(() => ended, 10_000, "the end");
        expect(Buffer.compare(Buffer.concat(chunks), data)).toBe(0);
      } finally {
        ca.close();
        cb.close();
      }
    });

    test("no daemon: not_running with a hint", async () => {
      const error = (await IpcClient.connect(join(h.dir, "nobody.sock"), { transport }).catch((e: unknown) => e)) as NodeError;
      expect(error).toBeInstanceOf(NodeError);
      expect(error.code).toBe("not_running");
      expect(error.hint).toContain("pilot daemon start");
    });

    test("close() ends the connection: calls in flight and later fail, the daemon forgets the client", async () => {
      const { client } = await IpcClient.connect(h.a.socketPath, { transport });
      const before = h.a.server.clientCount;
      const inFlight = client.request("echo", { x: 1 });
      client.close();
      expect(((await inFlight.catch((e: unknown) => e)) as NodeError).code).toBe("closed");
      expect(((await client.request("echo").catch((e: unknown) => e)) as NodeError).code).toBe("closed");
      await until(() => h.a.server.clientCount === before - 1, 2000, "the server to drop the client");
    });
  });
}

test("a daemon that goes away fails the client at once, on both transports", async () => {
  const site = await h.site(20, "gone");
  const clients = await Promise.all((["bun", "node"] as const).map((transport) => IpcClient.connect(site.socketPath, { transport })));
  const errors: (NodeError | undefined)[] = [];
  for (const { client } of clients) client.onClose = (e) => errors.push(e);
  await site.server.close();
  await until(() => errors.length === 2, 2000, "both clients to see the daemon go");
  for (const e of errors) expect(e?.code).toBe("not_running");
});

test("node:net adapter: takes everything until the socket asks for a drain, then nothing until 'drain'; -1 once closed", async () => {
  const { createServer } = await import("node:net");
  const { connectNodeNet } = await import("../../src/ipc/connection-node.ts");
  const path = join(h.dir, "raw-node.sock");
  let peer!: import("node:net").Socket;
  let received = 0;
  let notFive = 0;
  const server = createServer((s) => {
    peer = s;
    s.pause();
    s.on("data", (d: Buffer) => {
      received += d.length;
      for (const b of d) if (b !== 5) notFive++;
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  try {
    const conn = await connectNodeNet(path);
    let drains = 0;
    let closed = 0;
    conn.handler = { data() {}, drain: () => drains++, closed: () => closed++ };
    await until(() => peer !== undefined, 2000, "the accept");
    const chunk = new Uint8Array(1 << 20).fill(5);
    let written = 0;
    let n = 0;
    for (let i = 0; i < 256 && (n = conn.write(chunk, 0, chunk.length)) > 0; i++) written += n;
    expect(n).toBe(0);
    expect(written).toBeGreaterThan(0);
    // The writer's buffer is reused after a write: the adapter must have copied.
    chunk.fill(0);
    peer.resume();
    await until(() => drains > 0 && received === written, 10_000, "the drain");
    expect(notFive).toBe(0);
    expect(conn.write(chunk, 0, 10)).toBe(10);
    peer.destroy();
    await until(() => closed === 1, 2000, "the close");
    expect(conn.write(chunk, 0, 10)).toBe(-1);
    expect(closed).toBe(1);
  } finally {
    server.close();
  }
});

test("a daemon that accepts but never answers hello: timeout, and the socket is closed, on both transports", async () => {
  const { createServer } = await import("node:net");
  const path = join(h.dir, "mute.sock");
  let closedByClient = 0;
  const server = createServer((s) => {
    s.on("data", () => {});
    s.on("close", () => closedByClient++);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  try {
    for (const transport of ["bun", "node"] as const) {
      const started = performance.now();
      const error = (await IpcClient.connect(path, { transport, connectTimeoutMs: 200 }).catch((e: unknown) => e)) as NodeError;
      expect(error).toBeInstanceOf(NodeError);
      expect(error.code).toBe("timeout");
      expect(performance.now() - started).toBeLessThan(2000);
    }
    await until(() => closedByClient === 2, 2000, "both sockets closed");
  } finally {
    server.close();
  }
});
