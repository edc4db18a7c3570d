/**
 * Secure sockets through the driver, against in-memory daemons (real IPC,
 * fake data plane): round trips, per-connection keys seen on the wire,
 * identity mismatches, HTTP and fetch over the channel, half-close,
 * tampering and truncation of the underlying stream, timeouts.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import { generateIdentity, type Identity } from "../../src/crypto/identity.ts";
import { signTranscriptHash } from "../../src/crypto/secure-channel.ts";
import type { Driver, PilotSocketError, SecureServer, SecureSocket } from "../../src/driver/index.ts";
import { formatAddress, parseAddress } from "../../src/protocol/address.ts";
import type { FakeLocalNode } from "../support/fake-local-node.ts";
import { startHarness, until, type Harness } from "../driver/harness.ts";

let h: Harness;
let alpha: Driver;
let beta: Driver;
const identities = new Map<string, Identity>();

/** Gives a fake node an identity and the two daemon calls of the secure channel. */
function secureCalls(node: FakeLocalNode, identity: Identity): void {
  identities.set(formatAddress(node.address), identity);
  node.methods.set("secure_sign", (p) => ({ signature: Buffer.from(signTranscriptHash(identity, Buffer.from(String(p.hash), "base64"))).toString("base64") }));
  node.methods.set("peer_key", (p) => {
    const parsed = parseAddress(String(p.target));
    const id = parsed.ok ? identities.get(formatAddress(parsed.value)) : undefined;
    if (!id) throw new Error(`no key for ${String(p.target)}`);
    return { public_key: Buffer.from(id.publicKey).toString("base64") };
  });
}

/** Records every byte `node`'s streams hand to the (fake) data plane. */
function tap(node: FakeLocalNode): Uint8Array[][] {
  const perStream: Uint8Array[][] = [];
  const dial = node.dial.bind(node);
  node.dial = async (...args: Parameters<typeof dial>) => {
    const stream = await dial(...args);
    const captured: Uint8Array[] = [];
    perStream.push(captured);
    const write = stream.write.bind(stream);
    stream.write = (data: Uint8Array) => {
      const n = write(data);
      captured.push(data.slice(0, n));
      return n;
    };
    return stream;
  };
  return perStream;
}

function nextConnection(server: SecureServer): Promise<SecureSocket> {
  return new Promise((resolve) => server.once("connection", resolve));
}

function readAll(socket: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.once("end", () => resolve(Buffer.concat(chunks)));
    socket.once("error", reject);
  });
}

function secureEcho(server: SecureServer): void {
  server.on("connection", (s: SecureSocket) => {
    s.on("error", () => {});
    s.pipe(s);
  });
}

beforeEach(async () => {
  identities.clear();
  h = await startHarness();
  secureCalls(h.a.node, generateIdentity());
  secureCalls(h.b.node, generateIdentity());
  alpha = await h.a.connect();
  beta = await h.b.connect();
});

afterEach(async () => {
  await h.close();
});

describe("listenSecure / dialSecure", () => {
  test("a round trip; both ends name the same channel; the default port is 443", async () => {
    const server = await alpha.listenSecure();
    expect(server.port).toBe(443);
    const accepted = nextConnection(server);
    const client = await beta.dialSecure(alpha.address);
    const s = await accepted;
    expect(client.encrypted).toBe(true);
    expect(client.connecting).toBe(false);
    expect(client.remoteAddress).toBe(alpha.address);
    expect(s.remoteAddress).toBe(beta.address);
    expect(client.channelId).toMatch(/^[0-9a-f]{32}$/);
    expect(s.channelId).toBe(client.channelId!);
    client.write("hello over two layers");
    const [got] = (await new Promise((r) => s.once("data", (d) => r([d])))) as [Buffer];
    expect(got.toString()).toBe("hello over two layers");
    s.write("and back");
    const [back] = (await new Promise((r) => client.once("data", (d) => r([d])))) as [Buffer];
    expect(back.toString()).toBe("and back");
    client.destroy();
    s.destroy();
    await server.close();
  });

  test("each connection has its own key: the same plaintext twice gives unrelated bytes on the wire", async () => {
    const wire = tap(h.b.node);
    const server = await alpha.listenSecure(443);
    secureEcho(server);
    const secret = "the same secret, twice: " + "x".repeat(64);
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const c = await beta.dialSecure(alpha.address, 443);
      ids.push(c.channelId!);
      const echoed = readAll(c);
      c.end(secret);
      expect((await echoed).toString()).toBe(secret);
    }
    expect(ids[0]).not.toBe(ids[1]);
    expect(wire.length).toBe(2);
    const bytes = wire.map((chunks) => Buffer.concat(chunks));
    for (const b of bytes) expect(b.includes(Buffer.from("the same secret"))).toBe(false);
    // Frames: ClientHello (37), ClientAuth (68), then the data record: compare the records.
    const record = (b: Buffer) => b.subarray(37 + 68, 37 + 68 + 4 + 8 + secret.length + 16);
    expect(record(bytes[0]!).subarray(0, 12).equals(record(bytes[1]!).subarray(0, 12))).toBe(true); // header and sequence 0
    expect(record(bytes[0]!).subarray(12).equals(record(bytes[1]!).subarray(12))).toBe(false);
    // The ephemeral keys differ too.
    expect(bytes[0]!.subarray(5, 37).equals(bytes[1]!.subarray(5, 37))).toBe(false);
    await server.close();
  });

  test("a server whose key is not the one pinned for its address is refused (unauthorized), and it is told", async () => {
    const server = await alpha.listenSecure(443);
    const refused = new Promise<any>((r) => server.once("handshakeError", (e, peer) => r({ e, peer })));
    // Beta's daemon pins another key for alpha's address.
    identities.set(alpha.address, generateIdentity());
    const error = await beta.dialSecure(alpha.address).then(
      () => null,
      (e) => e,
    );
    expect(error?.code).toBe("unauthorized");
    expect(error?.secureCode).toBe("auth_failed");
    expect(error?.message).toContain("server's signature");
    const { e, peer } = await refused;
    expect(e.secureCode).toBe("peer_alert");
    expect(peer.remoteAddress).toBe(beta.address);
    await server.close();
  });

  test("a client signing with another identity is refused by the server; the client's socket fails with unauthorized", async () => {
    const server = await alpha.listenSecure(443);
    let connections = 0;
    server.on("connection", () => connections++);
    const refused = new Promise<any>((r) => server.once("handshakeError", r));
    const impostor = generateIdentity();
    const client = beta.connectSecure(443, alpha.address, {
      identity: { sign: async (hash) => signTranscriptHash(impostor, hash), peerKey: async () => identities.get(alpha.address)!.publicKey },
    });
    const clientError = new Promise<PilotSocketError>((r) => client.once("error", r));
    const serverError = await refused;
    expect(serverError.secureCode).toBe("auth_failed");
    expect(serverError.pilotCode).toBe("unauthorized");
    const e = (await clientError) as PilotSocketError & { secureCode: string };
    expect(e.pilotCode).toBe("unauthorized");
    expect(e.secureCode).toBe("peer_alert");
    expect(e.message).toContain("refused this node's identity");
    expect(connections).toBe(0);
    await server.close();
  });

  test("dialing a port that is not a secure listener fails clearly (the peer answers with something else)", async () => {
    const plain = await alpha.listen(7);
    plain.on("connection", (s) => s.pipe(s)); // an echo reflects our ClientHello
    const error = await beta.dialSecure(alpha.address, 7).then(
      () => null,
      (e) => e,
    );
    expect(error?.code).toBe("connection_reset");
    expect(error?.secureCode).toBe("unexpected_message");
    expect(error?.hint).toContain("listenSecure");
    await plain.close();
  });

  test("a plain client on a secure port is answered with an alert and closed; the server reports the handshake error", async () => {
    const server = await alpha.listenSecure(443);
    const refused = new Promise<any>((r) => server.once("handshakeError", r));
    const raw = await beta.dial(alpha.address, 443, { allowHalfOpen: true });
    const reply = readAll(raw);
    raw.write("GET / HTTP/1.1\r\nHost: alpha\r\n\r\n");
    expect((await refused).secureCode).toBe("unexpected_message");
    expect([...(await reply)]).toEqual([0x15, 0, 0, 1, 3]); // alert: unexpected_message
    raw.destroy();
    await server.close();
  });

  test("a handshake that never comes times out on the server", async () => {
    const server = await alpha.listenSecure(443, { handshakeTimeoutMs: 150 });
    const refused = new Promise<any>((r) => server.once("handshakeError", r));
    const raw = await beta.dial(alpha.address, 443);
    raw.on("error", () => {});
    const e = await refused;
    expect(e.pilotCode).toBe("timeout");
    expect(e.code).toBe("ETIMEDOUT");
    raw.destroy();
    await server.close();
  });

  test("half-close: the client ends its side after a request and still reads the whole reply", async () => {
    const server = await alpha.listenSecure(443, { allowHalfOpen: true });
    server.on("connection", async (s: SecureSocket) => {
      const request = await readAll(s);
      s.end(`got ${request.length} bytes after your end`);
    });
    const c = await beta.dialSecure(alpha.address, 443, { allowHalfOpen: true });
    const reply = readAll(c);
    c.end("twelve bytes");
    expect((await reply).toString()).toBe("got 12 bytes after your end");
    await server.close();
  });

  test("4 MiB each way with integrity", async () => {
    const server = await alpha.listenSecure(443);
    secureEcho(server);
    const c = await beta.dialSecure(alpha.address, 443, { allowHalfOpen: true });
    const data = randomBytes(4 * 1024 * 1024);
    const back = readAll(c);
    c.end(data);
    const got = await back;
    expect(createHash("sha256").update(got).digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
    expect(c.bytesWritten).toBe(data.length);
    expect(c.bytesRead).toBe(data.length);
    await server.close();
  }, 30_000);

  test("a record tampered with on the way is detected: the receiver fails with bad_record_mac and the stream is reset", async () => {
    const server = await alpha.listenSecure(443);
    const failed = new Promise<any>((r) => server.once("connection", (s: SecureSocket) => s.once("error", r)));
    // Flip one bit in the tag of the first record after the handshake (it may share a write with ClientAuth).
    const dial = h.b.node.dial.bind(h.b.node);
    h.b.node.dial = async (...args: Parameters<typeof dial>) => {
      const stream = await dial(...args);
      const write = stream.write.bind(stream);
      let writes = 0;
      let tampered = false;
      stream.write = (data: Uint8Array) => {
        writes++;
        if (writes >= 2 && data.length > 68 && !tampered) {
          tampered = true;
          const bad = data.slice();
          bad[bad.length - 1]! ^= 0x01;
          return write(bad);
        }
        return write(data);
      };
      return stream;
    };
    const c = await beta.dialSecure(alpha.address);
    c.on("error", () => {});
    c.write("this record will be altered");
    const e = await failed;
    expect(e.secureCode).toBe("bad_record_mac");
    expect(e.code).toBe("EPROTO");
    await server.close();
  });

  test("a stream that ends without the secure channel's end is reported as truncated, not as a clean end", async () => {
    const server = await alpha.listenSecure(443);
    const accepted = nextConnection(server);
    const c = await beta.dialSecure(alpha.address);
    const s = await accepted;
    s.on("error", () => {}); // the client resets the stream when it sees the cut
    const failure = new Promise<any>((r) => c.once("error", r));
    // Cut below the secure layer: a FIN on the Pilot stream with no authenticated end before it.
    (s as unknown as { inner: { end(): void } }).inner.end();
    const e = await failure;
    expect(e.secureCode).toBe("truncated");
    expect(e.code).toBe("ECONNRESET");
    await server.close();
  });

  test("destroy() after the handshake sends the authenticated end: the peer sees a clean end", async () => {
    const server = await alpha.listenSecure(443, { allowHalfOpen: true });
    const accepted = nextConnection(server);
    const c = await beta.dialSecure(alpha.address);
    const s = await accepted;
    const ended = readAll(s);
    c.write("last words");
    await until(() => s.bytesRead > 0 || s.readableLength > 0, 2000, "data");
    c.destroy();
    expect((await ended).toString()).toBe("last words");
    await server.close();
  });
});

describe("HTTP over the secure channel", () => {
  test("serveHttp(443, handler, { secure: true }), then fetch('https://…') and a secure httpAgent", async () => {
    const served = await alpha.serveHttp(
      443,
      (req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          res.setHeader("content-type", "application/json");
          res.end(JSON.stringify({ path: req.url, method: req.method, body: Buffer.concat(chunks).toString(), secure: (req.socket as unknown as SecureSocket).encrypted === true }));
        });
      },
      { secure: true },
    );
    expect(served.port).toBe(443);
    const r1 = await beta.fetch(`https://${alpha.address.slice(alpha.address.indexOf(":") + 1)}/api/secrets`);
    expect(r1.status).toBe(200);
    expect(await r1.json()).toEqual({ path: "/api/secrets", method: "GET", body: "", secure: true });
    const r2 = await beta.fetch(`https://alpha/api/echo`, { method: "POST", body: "double-encrypted" });
    expect(await r2.json()).toMatchObject({ method: "POST", body: "double-encrypted" });

    const agent = beta.httpAgent({ secure: true });
    let connections = 0;
    served.listener.on("connection", () => connections++);
    const get = (path: string) =>
      new Promise<{ body: string; port: number }>((resolve, reject) => {
        http
          .get({ host: "alpha", path, agent }, (res) => {
            const port = (res.socket as unknown as SecureSocket).localPort!;
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (d: string) => (body += d));
            res.on("end", () => resolve({ body, port }));
          })
          .on("error", reject);
      });
    const ports = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const r = await get(`/n/${i}`);
      expect(JSON.parse(r.body)).toMatchObject({ path: `/n/${i}`, secure: true });
      ports.add(r.port);
    }
    expect(ports.size).toBe(1); // keep-alive: one secure connection for all five
    expect(connections).toBe(1);
    agent.destroy();
    await served.close();
  });

  test("a secure server does not answer plain HTTP, and a plain agent refuses https: URLs", async () => {
    const served = await alpha.serveHttp(443, (_req, res) => res.end("secret"), { secure: true });
    const plain = await beta.fetch("http://alpha:443/").then(
      () => null,
      (e) => e,
    );
    expect(plain).not.toBeNull();
    const { pilotFetch, PilotAgent } = await import("../../src/driver/index.ts");
    const agent = new PilotAgent(beta);
    const wrong = await pilotFetch(agent, "https://alpha/").then(
      () => null,
      (e) => e,
    );
    expect(wrong?.code).toBe("invalid_argument");
    agent.destroy();
    await served.close();
  });
});
