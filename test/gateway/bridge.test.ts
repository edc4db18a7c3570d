/**
 * The bridge on its own: TCP on both sides (the "Pilot" side is a TCP socket
 * to a local server, which has the same Duplex surface), so half-close,
 * backpressure, resets, early bytes and the 502 are checked without a daemon.
 * Everything listens on 127.0.0.1 and is closed in afterEach.
 */
import { afterEach, describe, expect, test } from "bun:test";
import net from "node:net";
import { bridge, looksLikeSecureAlert, type PilotStream } from "../../src/gateway/bridge.ts";
import { GatewayError } from "../../src/gateway/errors.ts";

const servers: net.Server[] = [];
const sockets: net.Socket[] = [];

afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

async function listen(onConnection: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    onConnection(s);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return (server.address() as net.AddressInfo).port;
}

/** A gateway-like front: each connection is bridged with `dial`. */
async function front(dial: () => Promise<PilotStream>, onDone?: (r: any) => void): Promise<number> {
  return listen((client) => bridge(client, { dial, label: "agent (0:0000.0000.0007)", name: "agent", port: 80, onDone }));
}

function tcpTo(port: number): () => Promise<PilotStream> {
  return () =>
    new Promise((resolve, reject) => {
      const s = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
      sockets.push(s);
      s.once("connect", () => resolve(s as unknown as PilotStream));
      s.once("error", reject);
    });
}

function connectTo(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    sockets.push(s);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

function readAll(s: net.Socket): Promise<{ data: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on("data", (c: Buffer) => chunks.push(c));
    s.once("end", () => resolve({ data: Buffer.concat(chunks) }));
    s.once("error", (e: NodeJS.ErrnoException) => resolve({ data: Buffer.concat(chunks), error: e.code ?? e.message }));
  });
}

describe("bridge", () => {
  test("client half-closes first: the agent sees EOF, answers, and the answer arrives", async () => {
    const agent = await listen((s) => {
      let n = 0;
      s.on("data", (c: Buffer) => (n += c.length));
      s.on("end", () => s.end(`got ${n} bytes`));
    });
    const port = await front(tcpTo(agent));
    const c = await connectTo(port);
    const reply = readAll(c);
    c.write(Buffer.alloc(100_000, 1));
    c.end(Buffer.alloc(23, 2));
    expect((await reply).data.toString()).toBe("got 100023 bytes");
  });

  test("agent half-closes first: the client can still send, and all of it arrives", async () => {
    let received: (n: number) => void;
    const total = new Promise<number>((r) => (received = r));
    const agent = await listen((s) => {
      s.end("hello, then silence\n");
      let n = 0;
      s.on("data", (c: Buffer) => (n += c.length));
      s.on("end", () => received(n));
    });
    const port = await front(tcpTo(agent));
    const c = await connectTo(port);
    const reply = readAll(c);
    expect((await reply).data.toString()).toBe("hello, then silence\n");
    // Our side is still open after the agent's FIN.
    c.write(Buffer.alloc(50_000, 3));
    c.end();
    expect(await total).toBe(50_000);
  });

  test("backpressure: a client that does not read stops the agent; nothing is lost", async () => {
    const TOTAL = 64 << 20;
    let written = 0;
    const agent = await listen((s) => {
      const chunk = Buffer.alloc(256 << 10, 7);
      const pump = () => {
        while (written < TOTAL) {
          written += chunk.length;
          if (!s.write(chunk)) return void s.once("drain", pump);
        }
        s.end();
      };
      pump();
    });
    const port = await front(tcpTo(agent));
    const c = await connectTo(port);
    c.pause();
    await Bun.sleep(600);
    const stalledAt = written;
    expect(stalledAt).toBeLessThan(TOTAL / 2); // held back by the bridge, not buffered in it
    let got = 0;
    let bad = false;
    c.on("data", (b: Buffer) => {
      got += b.length;
      if (b[0] !== 7 || b[b.length - 1] !== 7) bad = true;
    });
    const ended = new Promise((r) => c.once("end", r));
    c.resume();
    await ended;
    expect({ got, bad }).toEqual({ got: TOTAL, bad: false });
  }, 20_000);

  test("bytes the client sends while the dial is in flight are delivered first, in order", async () => {
    const agent = await listen((s) => readAll(s).then(({ data }) => s.end(data)));
    const slowDial = async () => {
      await Bun.sleep(200);
      return tcpTo(agent)();
    };
    const port = await front(slowDial);
    const c = await connectTo(port);
    const reply = readAll(c);
    const payload = Buffer.from(Array.from({ length: 200_000 }, (_, i) => i % 251));
    c.end(payload);
    expect((await reply).data.equals(payload)).toBe(true);
  });

  test("a reset on either side resets the other", async () => {
    let agentSide: net.Socket | null = null;
    const agentClosed = new Promise<string>((resolve) => {
      void listen((s) => {
        agentSide = s;
        s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
        s.on("close", () => resolve("closed"));
      }).then((agent) => front(tcpTo(agent)).then(async (port) => {
        const c = await connectTo(port);
        c.write("x");
        await Bun.sleep(100);
        c.resetAndDestroy();
      }));
    });
    expect(["ECONNRESET", "closed"]).toContain(await agentClosed);
    expect(agentSide).not.toBeNull();

    const agent2 = await listen((s) => s.once("data", () => s.resetAndDestroy()));
    const port2 = await front(tcpTo(agent2));
    const c2 = await connectTo(port2);
    const r = readAll(c2);
    c2.write("GET / HTTP/1.1\r\n\r\n");
    expect((await r).error).toBe("ECONNRESET"); // the agent's side failed mid-stream; a TCP reset is not a Pilot failure
  });

  test("a failed dial: an HTTP client gets a 502 that says why, anything else a reset", async () => {
    const done: any[] = [];
    const port = await front(() => Promise.reject(new GatewayError("not_trusted", "trust revoked by the peer")), (r) => done.push(r));

    const c = await connectTo(port);
    const reply = readAll(c);
    c.write("GET /api/status HTTP/1.1\r\nHost: 10.4.0.1\r\n\r\n");
    const text = (await reply).data.toString();
    c.end();
    expect(text.split("\r\n")[0]).toBe("HTTP/1.1 502 Bad Gateway");
    expect(text).toContain("X-Pilot-Error: not_trusted");
    expect(text).toContain("agent (0:0000.0000.0007) refused the connection: trust with it is missing or was revoked");

    const t = performance.now();
    const c2 = await connectTo(port);
    const r2 = readAll(c2);
    c2.write("\x16\x03\x01\x00\x05hello");
    expect((await r2).error).toBe("ECONNRESET");
    expect(performance.now() - t).toBeLessThan(1000);

    // A client that says nothing (a server-speaks-first protocol) is reset after a short wait.
    const c3 = await connectTo(port);
    const t3 = performance.now();
    expect((await readAll(c3)).error).toBe("ECONNRESET");
    expect(performance.now() - t3).toBeGreaterThan(1000);
    await Bun.sleep(50);
    expect(done.filter((d) => d.error?.code === "not_trusted").length).toBe(3);
    expect(done.filter((d) => d.answered502).length).toBe(1);
  });

  test("the request may arrive in pieces after the dial failed", async () => {
    const port = await front(() => Promise.reject(new GatewayError("connection_refused", "nothing listens")));
    const c = await connectTo(port);
    const reply = readAll(c);
    await Bun.sleep(50);
    c.write("GE");
    await Bun.sleep(50);
    c.write("T /x HTTP/1.1\r\n\r\n");
    const text = (await reply).data.toString();
    expect(text).toContain("502 Bad Gateway: nothing listens on Pilot port 80 of agent (0:0000.0000.0007)");
  });

  test("looksLikeSecureAlert: only a complete secure-channel Alert frame (15 00 00 01, code 1-5)", () => {
    const b = (...x: number[]) => Buffer.from(x);
    expect(looksLikeSecureAlert(b())).toBe("maybe");
    expect(looksLikeSecureAlert(b(0x15))).toBe("maybe");
    expect(looksLikeSecureAlert(b(0x15, 0, 0))).toBe("maybe");
    expect(looksLikeSecureAlert(b(0x15, 0, 0, 1, 3))).toBe("yes");
    expect(looksLikeSecureAlert(b(0x15, 0, 0, 1, 1, 0x99))).toBe("yes");
    expect(looksLikeSecureAlert(b(0x15, 0, 0, 1, 0))).toBe("no");
    expect(looksLikeSecureAlert(b(0x15, 0, 0, 1, 6))).toBe("no");
    expect(looksLikeSecureAlert(b(0x15, 1))).toBe("no");
    expect(looksLikeSecureAlert(b(0x15, 0, 0, 2))).toBe("no");
    expect(looksLikeSecureAlert(Buffer.from("HTTP/1.1 200 OK\r\n"))).toBe("no");
  });

  test("a plain port whose agent answers with a secure-channel alert: an HTTP client gets a 502 saying --secure", async () => {
    // The agent's alert arrives in pieces, then its FIN.
    const agent = await listen((s) => {
      s.once("data", async () => {
        s.write(Buffer.from([0x15, 0]));
        await Bun.sleep(30);
        s.write(Buffer.from([0, 1]));
        await Bun.sleep(30);
        s.end(Buffer.from([3]));
      });
    });
    const done: any[] = [];
    const port = await front(tcpTo(agent), (r) => done.push(r));
    const c = await connectTo(port);
    const reply = readAll(c);
    c.write("GET /api/secrets HTTP/1.1\r\nHost: x\r\n\r\n");
    const text = (await reply).data.toString();
    expect(text).toStartWith("HTTP/1.1 502 Bad Gateway\r\n");
    expect(text).toContain("X-Pilot-Error: secure_channel_required\r\n");
    expect(text).toContain("X-Pilot-Hint: map the port with --secure: pilot gateway unmap agent --ports 80 && pilot gateway map agent --ports 80 --secure\r\n");
    expect(text).toContain("agent (0:0000.0000.0007) serves Pilot port 80 only over the secure channel, and this port is mapped without --secure");
    expect(text).not.toContain("\x15");
    c.end();
    for (let i = 0; i < 40 && done.length === 0; i++) await Bun.sleep(25);
    expect(done[0]).toMatchObject({ answered502: true, error: { code: "secure_channel_required" }, bytesDown: 0 });

    // A HEAD request gets the head only.
    const h = await connectTo(port);
    const head = readAll(h);
    h.write("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    const headText = (await head).data.toString();
    expect(headText).toContain("X-Pilot-Error: secure_channel_required");
    expect(headText.endsWith("\r\n\r\n")).toBe(true);
  });

  test("0x15 that is not an alert, or a client that is not HTTP: the agent's bytes pass unchanged", async () => {
    const notAlert = Buffer.from([0x15, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const alert = Buffer.from([0x15, 0, 0, 1, 3]);
    let answer = notAlert;
    const agent = await listen((s) => s.once("data", () => s.end(answer)));
    const port = await front(tcpTo(agent));

    const c = await connectTo(port);
    const reply = readAll(c);
    c.write("GET / HTTP/1.1\r\n\r\n");
    expect((await reply).data).toEqual(notAlert);

    answer = alert;
    const raw = await connectTo(port);
    const rawReply = readAll(raw);
    raw.write(Buffer.from([0x01, 0x00, 0x00, 0x21]));
    expect((await rawReply).data).toEqual(alert);

    // A lone 0x15 followed by the agent's FIN is delivered too.
    answer = Buffer.from([0x15]);
    const lone = await connectTo(port);
    const loneReply = readAll(lone);
    lone.write("GET / HTTP/1.1\r\n\r\n");
    expect((await loneReply).data).toEqual(Buffer.from([0x15]));
  });

  test("an HTTP response is forwarded at once, not held for the alert check", async () => {
    const agent = await listen((s) => s.once("data", () => s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")));
    const port = await front(tcpTo(agent));
    const c = await connectTo(port);
    const first = new Promise<Buffer>((r) => c.once("data", r));
    c.write("GET / HTTP/1.1\r\n\r\n");
    expect((await first).toString()).toStartWith("HTTP/1.1 200 OK");
  });
});
