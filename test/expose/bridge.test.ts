/**
 * The expose bridge alone: an ExposeManager whose "data plane" is a fake
 * stream with a slow, bounded send buffer, against real TCP services on
 * 127.0.0.1. Checks what the cluster tests cannot pin down: the order of
 * end-of-stream events under backpressure, and that a stalled side stops
 * the other from reading.
 */
import { afterEach, describe, expect, test } from "bun:test";
import net from "node:net";
import { ExposeManager, isLoopbackHost, parseExposeTarget } from "../../src/daemon/expose.ts";
import type { PortBinding, StreamEvent, StreamHandle } from "../../src/daemon/local-node.ts";
import { NodeError } from "../../src/daemon/local-node.ts";
import { addressOf } from "../../src/protocol/address.ts";
import { createLogger } from "../../src/util/log.ts";

/** A Pilot stream as the bridge sees it: `write` takes at most `room` bytes, refilled every few ms. */
class SlowStream implements StreamHandle {
  readonly id = 1;
  readonly localPort = 8080;
  readonly remoteAddress = addressOf(0, 5);
  readonly remotePort = 49152;
  /** Bytes the "caller" sent, waiting to be read by the bridge. */
  private inbound: Uint8Array[] = [];
  private peerFin = false;
  private endSent = false;
  /** What the bridge wrote toward the caller. */
  readonly received: Uint8Array[] = [];
  bytesRead = 0;
  shutdownCalled = false;
  aborted = false;
  private room: number;
  private handler: ((e: StreamEvent) => void) | null = null;
  private held: StreamEvent[] = [];
  private timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly refill = 64 * 1024,
    everyMs = 2,
  ) {
    this.room = refill;
    this.timer = setInterval(() => {
      if (this.room === 0) {
        this.room = this.refill;
        this.emit({ type: "writable" });
      }
    }, everyMs);
  }

  get onEvent() {
    return this.handler;
  }
  set onEvent(h: ((e: StreamEvent) => void) | null) {
    this.handler = h;
    if (h) setImmediate(() => this.deliver());
  }
  private emit(e: StreamEvent): void {
    this.held.push(e);
    setImmediate(() => this.deliver());
  }
  private deliver(): void {
    while (this.handler && this.held.length > 0) this.handler(this.held.shift()!);
  }

  /** The caller sends. */
  send(data: Uint8Array, fin = false): void {
    if (data.length > 0) this.inbound.push(data);
    this.peerFin ||= fin;
    this.emit({ type: "readable" });
  }

  write(data: Uint8Array): number {
    if (this.shutdownCalled || this.aborted) return 0;
    const n = Math.min(this.room, data.length);
    this.room -= n;
    if (n > 0) this.received.push(data.slice(0, n));
    return n;
  }
  read(max: number): Uint8Array | null {
    const head = this.inbound[0];
    if (!head) {
      if (this.peerFin && !this.endSent) {
        this.endSent = true;
        this.emit({ type: "end" });
      }
      return null;
    }
    const out = head.subarray(0, max);
    if (out.length === head.length) this.inbound.shift();
    else this.inbound[0] = head.subarray(max);
    this.bytesRead += out.length;
    return out;
  }
  shutdown(): void {
    this.shutdownCalled = true;
  }
  close(): void {}
  abort(): void {
    this.aborted = true;
  }
  setNoDelay(): void {}
  /** The caller resets. */
  reset(): void {
    this.emit({ type: "closed", error: new NodeError("connection_reset", "the peer reset the connection") });
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

const log = createLogger("test", { level: "error", sink: () => {} });
const cleanups: (() => void)[] = [];

afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function service(onConnection: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, onConnection);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/** An ExposeManager on a fake host; returns a function that "accepts" a stream on the exposed port. */
function exposeTo(port: number): { accept: (s: StreamHandle) => void; manager: ExposeManager } {
  let onAccept: ((s: StreamHandle) => void) | null = null;
  const manager = new ExposeManager({
    host: {
      listen(p: number, cb: (s: StreamHandle) => void): PortBinding {
        onAccept = cb;
        return { port: p, close: () => (onAccept = null) };
      },
    },
    file: null,
    log,
  });
  manager.add(8080, { host: "127.0.0.1", port });
  cleanups.push(() => manager.close());
  return { accept: (s) => onAccept!(s), manager };
}

async function until(check: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(2);
  }
}

describe("expose bridge", () => {
  test("the service's reply and FIN arrive after the caller's FIN, through a slow stream: all bytes, then shutdown, no reset", async () => {
    const port = await service((s) => {
      s.on("error", () => {});
      s.pipe(s);
    });
    const { accept } = exposeTo(port);
    const stream = new SlowStream(32 * 1024, 3);
    cleanups.push(() => stream.stop());
    accept(stream);
    const data = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 31) & 0xff);
    stream.send(data, true); // request and FIN at once: the service's side ends long before ours drains
    await until(() => stream.shutdownCalled || stream.aborted, 20_000, "the bridge to finish");
    expect(stream.aborted).toBe(false);
    const got = Buffer.concat(stream.received);
    expect(got.length).toBe(data.length);
    expect(got.equals(Buffer.from(data))).toBe(true);
  }, 30_000);

  test("a service that does not read stops the bridge from reading the stream (the window closes upstream)", async () => {
    let paused: net.Socket | null = null;
    const port = await service((s) => {
      s.on("error", () => {});
      s.pause();
      paused = s;
    });
    const { accept } = exposeTo(port);
    const stream = new SlowStream();
    cleanups.push(() => stream.stop());
    accept(stream);
    const offered = 256 * 1024 * 1024;
    const chunk = new Uint8Array(1024 * 1024);
    for (let i = 0; i < offered / chunk.length; i++) stream.send(chunk);
    await until(() => paused !== null, 5000, "the service to accept");
    await Bun.sleep(300);
    const readWhileStalled = stream.bytesRead;
    expect(readWhileStalled).toBeGreaterThan(0);
    expect(readWhileStalled).toBeLessThan(offered / 4); // kernel and socket buffers, not everything
    paused!.resume();
    await until(() => stream.bytesRead > readWhileStalled, 5000, "reading to resume");
  }, 30_000);

  test("a refused connection resets the stream; a reset stream destroys the TCP connection", async () => {
    const closedPort = await (async () => {
      const s = net.createServer();
      await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
      const p = (s.address() as net.AddressInfo).port;
      await new Promise<void>((r) => s.close(() => r()));
      return p;
    })();
    const refused = exposeTo(closedPort);
    const a = new SlowStream();
    cleanups.push(() => a.stop());
    refused.accept(a);
    await until(() => a.aborted, 5000, "the reset");
    expect(a.shutdownCalled).toBe(false);
    expect(refused.manager.list()[0]!.failed_connections).toBe(1);

    let closed = false;
    const port = await service((s) => {
      s.on("error", () => {});
      s.on("close", () => (closed = true));
    });
    const live = exposeTo(port);
    const b = new SlowStream();
    cleanups.push(() => b.stop());
    live.accept(b);
    await until(() => live.manager.list()[0]!.connections === 1, 5000, "the bridge");
    await Bun.sleep(50);
    b.reset();
    await until(() => closed, 5000, "the TCP side to close");
    await until(() => live.manager.list()[0]!.connections === 0, 5000, "the bridge to be forgotten");
  });
});

describe("targets", () => {
  test("parsing and the loopback rule", () => {
    expect(parseExposeTarget("8000")).toEqual({ host: "127.0.0.1", port: 8000 });
    expect(parseExposeTarget("[::1]:80")).toEqual({ host: "::1", port: 80 });
    expect(parseExposeTarget("localhost:3000")).toEqual({ host: "localhost", port: 3000 });
    for (const bad of ["", "host", "host:0", "host:70000", "[nope]:80", "a b:80", "http://x:80"]) expect(() => parseExposeTarget(bad)).toThrow();
    for (const yes of ["127.0.0.1", "127.255.0.9", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "localhost", "LocalHost"]) expect(isLoopbackHost(yes)).toBe(true);
    for (const no of ["10.0.0.1", "0.0.0.0", "::", "::ffff:10.0.0.1", "fe80::1", "localhost.example.com", "128.0.0.1", "example.com"]) expect(isLoopbackHost(no)).toBe(false);
  });
});
