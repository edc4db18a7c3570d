/**
 * The secure channel with real daemons: the two daemon calls it rests on
 * (`secure_sign`, `peer_key`), a round trip and HTTP between two trusted
 * nodes, and an impostor: a server whose signature comes from another
 * node's daemon is refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { verifySignature } from "../../src/crypto/identity.ts";
import { SECURE_SIGN_CONTEXT } from "../../src/crypto/secure-channel.ts";
import { connect, type Driver, type SecureServer, type SecureSocket } from "../../src/driver/index.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";

let c: Cluster;
const drivers: Driver[] = [];
let a: Driver;
let b: Driver;

async function driverOf(name: string): Promise<Driver> {
  const d = await connect({ home: c.daemon(name).home });
  drivers.push(d);
  return d;
}

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "a", hostname: "secure-a" }, { name: "b", hostname: "secure-b" }, { name: "c", hostname: "secure-c" }] });
  await c.trust("a", "b");
  await c.trust("a", "c");
  a = await driverOf("a");
  b = await driverOf("b");
});

afterAll(async () => {
  for (const d of drivers) await d.close().catch(() => {});
  await c?.stop();
});

describe("daemon calls", () => {
  test("secure_sign signs only the channel context and a 32-byte hash, with the node identity the registry publishes", async () => {
    const hash = randomBytes(32);
    const r = (await a.call("secure_sign", { hash: hash.toString("base64") })) as { signature: string; public_key: string; address: string };
    expect(r.address).toBe(a.address);
    const published = await c.pilot("b", ["find", "secure-a"]);
    expect(r.public_key).toBe(published.json.data.public_key);
    const key = Buffer.from(r.public_key, "base64");
    const sig = Buffer.from(r.signature, "base64");
    expect(verifySignature(key, Buffer.concat([Buffer.from(SECURE_SIGN_CONTEXT), hash]), sig)).toBe(true);
    expect(verifySignature(key, hash, sig)).toBe(false);
    for (const bad of [randomBytes(31), randomBytes(33), Buffer.alloc(0)]) {
      const e = (await a.call("secure_sign", { hash: bad.toString("base64") }).catch((x) => x)) as { code: string };
      expect(e.code).toBe("invalid_argument");
    }
    for (const params of [{ hash: "not base64!" }, { message: "sign this" }]) {
      const e = (await a.call("secure_sign", params).catch((x) => x)) as { code: string };
      expect(e.code).toBe("invalid_argument");
    }
  });

  test("peer_key gives the key pinned for a node (the registry's), by address, node id or hostname; and our own", async () => {
    const published = await c.pilot("a", ["find", "secure-b"]);
    for (const target of [b.address, String(c.daemon("b").nodeId), "secure-b"]) {
      const r = (await a.call("peer_key", { target })) as { address: string; public_key: string; source: string };
      expect(r.address).toBe(b.address);
      expect(r.public_key).toBe(published.json.data.public_key);
      expect(["tunnel", "registry"]).toContain(r.source);
    }
    const self = (await a.call("peer_key", { target: a.address })) as { source: string; public_key: string };
    expect(self.source).toBe("self");
    const missing = (await a.call("peer_key", { target: "no-such-node-anywhere" }).catch((x) => x)) as { code: string };
    expect(missing.code).toBe("not_found");
  });
});

describe("listenSecure / dialSecure between two daemons", () => {
  test("a round trip, an HTTP exchange and fetch over https:, each connection with its own channel id", async () => {
    const server = await a.listenSecure();
    const ids: string[] = [];
    server.on("connection", (s: SecureSocket) => {
      ids.push(s.channelId!);
      s.on("error", () => {});
      s.pipe(s);
    });
    const c1 = await b.dialSecure("secure-a");
    c1.write("ping over the secure channel");
    const [echo] = (await new Promise((r) => c1.once("data", (d) => r([d])))) as [Buffer];
    expect(echo.toString()).toBe("ping over the secure channel");
    const c2 = await b.dialSecure(a.address, 443);
    expect(c2.channelId).not.toBe(c1.channelId);
    // The client counts itself connected once it has sent its signature; the server, once it checked it.
    for (let i = 0; i < 100 && ids.length < 2; i++) await Bun.sleep(10);
    expect(ids).toEqual([c1.channelId!, c2.channelId!]);
    c1.destroy();
    c2.destroy();
    await server.close();

    const served = await a.serveHttp(443, (req, res) => res.end(JSON.stringify({ from: req.socket.remoteAddress, path: req.url })), { secure: true });
    const r = await b.fetch("https://secure-a/api/secrets");
    expect(await r.json()).toEqual({ from: b.address, path: "/api/secrets" });
    await served.close();
  });

  test("a server that signs with another node's identity is refused by the client", async () => {
    const impostorDaemon = await driverOf("c");
    // The stream is a's, but the signature comes from c's daemon: the client checks it against a's key.
    const server: SecureServer = await a.listenSecure(4443, {
      identity: {
        sign: async (hash) => new Uint8Array(Buffer.from(((await impostorDaemon.call("secure_sign", { hash: Buffer.from(hash).toString("base64") })) as { signature: string }).signature, "base64")),
        peerKey: async (address) => new Uint8Array(Buffer.from(((await a.call("peer_key", { target: address })) as { public_key: string }).public_key, "base64")),
      },
    });
    const handshakeError = new Promise<any>((r) => server.once("handshakeError", r));
    const error = await b.dialSecure(a.address, 4443).then(
      () => null,
      (e) => e,
    );
    expect(error?.code).toBe("unauthorized");
    expect(error?.secureCode).toBe("auth_failed");
    expect((await handshakeError).secureCode).toBe("peer_alert");
    await server.close();
  });
});
