import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { NodeError, PilotSocketError, type Driver, type PilotServer, type PilotSocket } from "../../src/driver/index.ts";
import { connect } from "../../src/driver/index.ts";
import { pattern, readAll, startHarness, until, type Harness } from "./harness.ts";

let h: Harness;
let alpha: Driver;
let beta: Driver;

beforeEach(async () => {
  h = await startHarness();
  alpha = await h.a.connect();
  beta = await h.b.connect();
});

afterEach(async () => {
  await h.close();
});

function nextConnection(server: PilotServer): Promise<PilotSocket> {
  return new Promise((resolve) => server.once("connection", resolve));
}

describe("connect", () => {
  test("knows its address and hostname", () => {
    expect(alpha.address).toBe("0:0000.0000.000A");
    expect(alpha.hostname).toBe("alpha");
  });

  test("no daemon: NodeError not_running with a hint to start it", async () => {
    const error = (await connect({ socketPath: `${h.dir}/none.sock` }).catch((e: unknown) => e)) as NodeError;
    expect(error).toBeInstanceOf(NodeError);
    expect(error.code).toBe("not_running");
    expect(error.hint).toContain("pilot daemon start");
    const viaHome = (await connect({ home: `${h.dir}/nohome` }).catch((e: unknown) => e)) as NodeError;
    expect(viaHome.message).toContain(`${h.dir}/nohome/pilot.sock`);
  });

  test("resolve: full address, node id, URL forms, hostname, unknown name", async () => {
    expect(await alpha.resolve("0:0000.0000.000b")).toBe("0:0000.0000.000B");
    expect(await alpha.resolve("11")).toBe("0:0000.0000.000B");
    expect(await alpha.resolve("0000.0000.000B")).toBe("0:0000.0000.000B");
    expect(await alpha.resolve("0.0.0.11")).toBe("0:0000.0000.000B");
    expect(await alpha.resolve("beta")).toBe("0:0000.0000.000B");
    expect(((await alpha.resolve("nobody").catch((e: unknown) => e)) as NodeError).code).toBe("not_found");
    expect(((await alpha.resolve("1:0002.0000.0001").catch((e: unknown) => e)) as NodeError).code).toBe("invalid_argument");
    expect(((await alpha.resolve("bad name!").catch((e: unknown) => e)) as NodeError).code).toBe("invalid_argument");
  });

  test("call passes any method through; info refreshes the hostname", async () => {
    expect(await alpha.call("echo", { a: [1, 2] })).toEqual({ a: [1, 2] });
    h.a.node.hostname = "alpha2";
    const info = await alpha.info();
    expect(info.address).toBe("0:0000.0000.000A");
    expect(alpha.hostname).toBe("alpha2");
  });
});

describe("streams", () => {
  test("dial and listen: net.Socket properties on both ends", async () => {
    const server = await beta.listen(1000);
    expect(server.address()).toEqual({ address: "0:0000.0000.000B", family: "pilot", port: 1000 });
    const accepted = nextConnection(server);
    const client = await alpha.dial("beta", 1000);
    const serverSide = await accepted;
    expect(client.remoteAddress).toBe("0:0000.0000.000B");
    expect(client.remotePort).toBe(1000);
    expect(client.localAddress).toBe("0:0000.0000.000A");
    expect(client.localPort).toBeGreaterThanOrEqual(49152);
    expect(client.connecting).toBe(false);
    expect(client.readyState).toBe("open");
    expect(client.address()).toEqual({ address: "0:0000.0000.000A", family: "pilot", port: client.localPort! });
    expect(serverSide.remoteAddress).toBe("0:0000.0000.000A");
    expect(serverSide.remotePort).toBe(client.localPort!);
    expect(serverSide.localPort).toBe(1000);
    expect(client.setNoDelay(true)).toBe(client);
    expect(client.setKeepAlive(true, 1000)).toBe(client);
    await until(() => [...h.a.node.streams].some((s) => s.noDelay === true));
    client.destroy();
    serverSide.destroy();
  });

  test("echo with half-close: the client ends, then still reads the whole answer", async () => {
    const server = await beta.listen(7);
    server.on("connection", (s: PilotSocket) => s.pipe(s));
    const client = await alpha.dial("11", 7);
    const data = pattern(3 * 1024 * 1024 + 17);
    client.end(data);
    const back = await readAll(client);
    expect(back.length).toBe(data.length);
    expect(Buffer.compare(back, Buffer.from(data))).toBe(0);
    expect(client.bytesWritten).toBe(data.length);
    expect(client.bytesRead).toBe(data.length);
    await until(() => client.destroyed);
  });

  test("allowHalfOpen: the writable side stays open after the peer's end", async () => {
    const server = await beta.listen(8, { allowHalfOpen: true });
    const received: Buffer[] = [];
    server.on("connection", (s: PilotSocket) => {
      s.on("data", (d: Buffer) => received.push(d));
      s.on("end", () => {
        // Peer half-closed; we can still answer.
        expect(s.readyState).toBe("writeOnly");
        s.end("answer after your FIN");
      });
    });
    const client = await alpha.dial("beta", 8, { allowHalfOpen: true });
    client.end("question");
    expect(client.readyState).toBe("readOnly");
    expect((await readAll(client)).toString()).toBe("answer after your FIN");
    expect(Buffer.concat(received).toString()).toBe("question");
  });

  test("without allowHalfOpen, the side that gets FIN ends its own side", async () => {
    const server = await beta.listen(9);
    const closed = new Promise<void>((resolve) => server.on("connection", (s: PilotSocket) => { s.resume(); s.on("close", () => resolve()); }));
    const client = await alpha.dial("beta", 9);
    client.end();
    client.resume();
    await closed;
    await new Promise((resolve) => client.on("close", resolve));
  });

  test("one 20 MB write goes through whole (no write size limit)", async () => {
    const server = await beta.listen(10);
    const got = new Promise<Buffer>((resolve) => server.on("connection", (s: PilotSocket) => resolve(readAll(s))));
    const client = await alpha.dial("beta", 10);
    const data = pattern(20 * 1024 * 1024, 9);
    client.end(data);
    const back = await got;
    expect(back.length).toBe(data.length);
    expect(Buffer.compare(back, Buffer.from(data))).toBe(0);
  });

  test("many streams at once on one driver, interleaved", async () => {
    const server = await beta.listen(7);
    server.on("connection", (s: PilotSocket) => s.pipe(s));
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const s = await alpha.dial("beta", 7);
        const data = pattern(50_000 + i, i + 1);
        s.end(data);
        return Buffer.compare(await readAll(s), Buffer.from(data));
      }),
    );
    expect(results.every((r) => r === 0)).toBe(true);
  });

  test("writes made while connecting are sent once connected (Driver.connect)", async () => {
    const server = await beta.listen(7);
    server.on("connection", (s: PilotSocket) => s.pipe(s));
    let connected = false;
    const s = alpha.connect(7, "beta", {}, () => (connected = true));
    expect(s.connecting).toBe(true);
    expect(s.readyState).toBe("opening");
    s.end("early bird");
    expect((await readAll(s)).toString()).toBe("early bird");
    expect(connected).toBe(true);
  });
});

describe("backpressure", () => {
  test("a reader that stops makes the writer block, with bounded bytes in flight, and resumes it", async () => {
    const server = await beta.listen(20);
    const accepted = nextConnection(server);
    const client = await alpha.dial("beta", 20);
    const serverSide = await accepted;
    serverSide.pause();
    const chunk = Buffer.alloc(64 * 1024, 1);
    let written = 0;
    // Write until a 'drain' does not come within 100 ms: the writer is blocked.
    for (;;) {
      written += chunk.length;
      if (client.write(chunk)) continue;
      const drained = await Promise.race([
        new Promise((resolve) => client.once("drain", () => resolve(true))),
        Bun.sleep(100).then(() => false),
      ]);
      if (!drained) break;
    }
    // The chain holds a few windows (driver, daemon, node, daemon, driver) and no more.
    expect(written).toBeLessThan(2 * 1024 * 1024);
    expect(serverSide.readableLength).toBeLessThanOrEqual(256 * 1024 + 64 * 1024);
    const drained = new Promise((resolve) => client.once("drain", resolve));
    let read = 0;
    serverSide.on("data", (d: Buffer) => (read += d.length));
    serverSide.resume();
    await drained;
    client.end();
    await new Promise((resolve) => serverSide.once("end", resolve));
    expect(read).toBe(written);
  });

  test("one stream not read at all never stalls another stream or another client", async () => {
    const server = await beta.listen(21);
    const sockets: PilotSocket[] = [];
    server.on("connection", (s: PilotSocket) => sockets.push(s));

    // Stream 1: the receiver never reads; the sender fills everything it can.
    const stalled = await alpha.dial("beta", 21);
    await until(() => sockets.length === 1);
    sockets[0]!.pause();
    const filler = Buffer.alloc(64 * 1024, 7);
    while (stalled.write(filler));

    // Stream 2 on the same drivers, and stream 3 from a second client of the same daemon: megabytes each.
    const gamma = await h.a.connect();
    const total = 16 * 1024 * 1024;
    const run = async (from: Driver, index: number) => {
      const s = await from.dial("beta", 21);
      await until(() => sockets.length > index);
      const receiver = sockets[index]!;
      const done = new Promise<number>((resolve) => {
        let n = 0;
        receiver.on("data", (d: Buffer) => (n += d.length));
        receiver.on("end", () => resolve(n));
      });
      s.end(Buffer.alloc(total, index));
      return done;
    };
    const started = performance.now();
    expect(await run(alpha, 1)).toBe(total);
    expect(await run(gamma, 2)).toBe(total);
    expect(performance.now() - started).toBeLessThan(10_000);
    // And the stalled stream still works once read.
    const rest = new Promise((resolve) => sockets[0]!.once("data", resolve));
    sockets[0]!.resume();
    await rest;
  });
});

describe("errors", () => {
  test("dial to a closed port or an unknown node rejects with the NodeError", async () => {
    const refused = (await alpha.dial("beta", 4444).catch((e: unknown) => e)) as NodeError;
    expect(refused).toBeInstanceOf(NodeError);
    expect(refused.code).toBe("connection_refused");
    expect(((await alpha.dial("0:0000.0000.0063", 80).catch((e: unknown) => e)) as NodeError).code).toBe("not_found");
    expect(((await alpha.dial("beta", 70000).catch((e: unknown) => e)) as NodeError).code).toBe("invalid_argument");
  });

  test("connect() failures are 'error' events with errno-style codes", async () => {
    const s = alpha.connect(4444, "beta");
    const error = (await new Promise((resolve) => s.once("error", resolve))) as PilotSocketError;
    expect(error).toBeInstanceOf(PilotSocketError);
    expect(error.code).toBe("ECONNREFUSED");
    expect(error.pilotCode).toBe("connection_refused");
    const s2 = alpha.connect(80, "nobody");
    expect(((await new Promise((resolve) => s2.once("error", resolve))) as PilotSocketError).code).toBe("ENOTFOUND");
  });

  test("a reset by the peer is ECONNRESET on the other side", async () => {
    const server = await beta.listen(30);
    server.on("connection", (s: PilotSocket) => s.once("data", () => s.resetAndDestroy()));
    const client = await alpha.dial("beta", 30);
    client.write("hi");
    const error = (await new Promise((resolve) => client.once("error", resolve))) as PilotSocketError;
    expect(error.code).toBe("ECONNRESET");
    expect(error.pilotCode).toBe("connection_reset");
  });

  test("destroy(err) resets the peer; destroy() closes it gracefully", async () => {
    const server = await beta.listen(31);
    const sides: PilotSocket[] = [];
    server.on("connection", (s: PilotSocket) => sides.push(s));
    const a1 = await alpha.dial("beta", 31);
    const a2 = await alpha.dial("beta", 31);
    await until(() => sides.length === 2);
    const errors: string[] = [];
    const ends: number[] = [];
    sides[0]!.on("error", (e: PilotSocketError) => errors.push(e.code));
    sides[1]!.on("error", (e: PilotSocketError) => errors.push(`unexpected ${e.code}`));
    sides[1]!.on("end", () => ends.push(1));
    sides[1]!.resume();
    a1.on("error", () => {});
    a1.destroy(new Error("boom"));
    a2.destroy();
    await until(() => errors.length === 1 && ends.length === 1);
    expect(errors).toEqual(["ECONNRESET"]);
  });

  test("the daemon going away resets sockets, fails calls and closes servers promptly", async () => {
    const server = await beta.listen(32);
    const accepted = nextConnection(server);
    const client = await alpha.dial("beta", 32);
    const serverSide = await accepted;
    const serverErrors: string[] = [];
    server.on("error", (e: PilotSocketError) => serverErrors.push(e.pilotCode));
    const serverClosed = new Promise((resolve) => server.once("close", resolve));
    const sideError = new Promise<PilotSocketError>((resolve) => serverSide.once("error", resolve));
    const driverClosed = new Promise<NodeError | undefined>((resolve) => beta.once("close", resolve));
    h.b.node.methods.set("hang", () => new Promise(() => {}));
    const call = beta.call("hang").catch((e: unknown) => e);
    await Bun.sleep(5);
    const started = performance.now();
    await h.b.server.close();
    expect(((await call) as NodeError).code).toBe("not_running");
    expect((await sideError).code).toBe("ECONNRESET");
    await serverClosed;
    expect(serverErrors).toEqual(["not_running"]);
    expect((await driverClosed)?.code).toBe("not_running");
    expect(performance.now() - started).toBeLessThan(500);
    expect(beta.closed).toBe(true);
    expect(((await beta.dial("alpha", 1).catch((e: unknown) => e)) as NodeError).code).toBe("not_running");
    client.destroy();
  });

  test("writing after the daemon closed the stream fails with EPIPE; what arrived before stays readable", async () => {
    const server = await beta.listen(33);
    server.on("connection", (s: PilotSocket) => s.write("last words"));
    const client = await alpha.dial("beta", 33, { allowHalfOpen: true });
    const first = await new Promise<Buffer>((resolve) => client.once("data", resolve));
    expect(first.toString()).toBe("last words");
    const mine = [...h.a.node.streams][0]!;
    mine.terminate();
    await new Promise((resolve) => client.once("end", resolve));
    const error = await new Promise<PilotSocketError>((resolve) => {
      client.once("error", resolve);
      client.write("too late");
    });
    expect(error.code).toBe("EPIPE");
  });
});

describe("servers", () => {
  test("close() unbinds the port: dials are refused, and the port can be bound again", async () => {
    const server = await beta.listen(40);
    const again = (await beta.listen(40).catch((e: unknown) => e)) as NodeError;
    expect(again.code).toBe("port_in_use");
    let closed = false;
    server.on("close", () => (closed = true));
    await server.close();
    expect(closed).toBe(true);
    expect(server.listening).toBe(false);
    expect(((await alpha.dial("beta", 40).catch((e: unknown) => e)) as NodeError).code).toBe("connection_refused");
    const second = await beta.listen(40);
    expect(second.port).toBe(40);
  });

  test("connections accepted before close() live on", async () => {
    const server = await beta.listen(41);
    server.on("connection", (s: PilotSocket) => s.pipe(s));
    const client = await alpha.dial("beta", 41);
    await server.close();
    client.end("still here");
    expect((await readAll(client)).toString()).toBe("still here");
  });

  test("listen(0) picks a free port", async () => {
    const server = await beta.listen(0);
    expect(server.port).toBeGreaterThan(0);
    expect(server.address().port).toBe(server.port);
  });
});

describe("timeouts", () => {
  test("setTimeout emits 'timeout' after idleness and keeps the socket open", async () => {
    const server = await beta.listen(50);
    const accepted = nextConnection(server);
    const client = await alpha.dial("beta", 50);
    await accepted;
    const started = performance.now();
    await new Promise<void>((resolve) => client.setTimeout(60, resolve));
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(55);
    expect(client.destroyed).toBe(false);
    expect(client.timeout).toBe(60);
    client.setTimeout(0);
    client.destroy();
  });

  test("activity postpones the timeout", async () => {
    const server = await beta.listen(51);
    server.on("connection", (s: PilotSocket) => s.resume());
    const client = await alpha.dial("beta", 51);
    let timedOut = false;
    client.setTimeout(200, () => (timedOut = true));
    for (let i = 0; i < 10; i++) {
      await Bun.sleep(30);
      client.write("x");
    }
    expect(timedOut).toBe(false);
    await until(() => timedOut, 1000, "timeout");
    client.destroy();
  });
});
