/**
 * The registry over the rendezvous's WebSocket port (src/beacon/ws-relay.ts
 * serving /pilot/v1/registry; src/daemon/ws-registry.ts on the daemon's side),
 * over real sockets on 127.0.0.1: an unchanged RegistryClient registers and
 * looks up through it when TCP to the registry fails, straight away through an
 * HTTP CONNECT proxy, and the registry sees the client's own IP.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { registryConnector } from "../../src/daemon/ws-registry.ts";
import { RegistryClient } from "../../src/registry/client.ts";
import { startRendezvous, type Rendezvous } from "../../src/registry/rendezvous.ts";
import { startConnectProxy } from "../support/connect-proxy.ts";

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function rendezvous(): Promise<Rendezvous> {
  const dir = mkdtempSync("/tmp/pilot-ws-registry-");
  const r = await startRendezvous({ registry: { host: "127.0.0.1", port: 0 }, beacon: { host: "127.0.0.1", port: 0 }, wsRelay: { host: "127.0.0.1", port: 0 }, storePath: join(dir, "registry.db") });
  cleanups.push(async () => {
    await r.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return r;
}

/** A TCP port with nothing listening (the registry's port behind a firewall that refuses it). */
async function closedPort(): Promise<number> {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

test("TCP to the registry fails: the client registers and looks up over the WebSocket, seen from its own IP", async () => {
  const r = await rendezvous();
  const port = await closedPort();
  const client = await RegistryClient.connect({
    host: "127.0.0.1",
    port,
    signer: generateIdentity(),
    reconnect: { attempts: 3, baseDelayMs: 50, maxDelayMs: 200 },
    connect: registryConnector({ relayWs: r.wsRelay!.url, tcp: { host: "127.0.0.1", port }, proxy: null }),
  });
  cleanups.push(() => client.close());
  expect(toB64(client.registryKey)).toBe(r.publicKey);
  const reg = await client.register({ endpoints: ["0.0.0.0:4000"], public: true });
  expect(reg.observed_ip).toBe("127.0.0.1");
  const found = await client.lookup(reg.node_id);
  expect(found.node_id).toBe(reg.node_id);
});

test("behind HTTPS_PROXY the registry goes through the CONNECT proxy at once", async () => {
  const r = await rendezvous();
  const proxy = await startConnectProxy({ host: "127.0.0.1", port: 0, auth: "agent:pw" });
  cleanups.push(() => proxy.close());
  const client = await RegistryClient.connect({
    host: "127.0.0.1",
    port: r.registry.port,
    signer: generateIdentity(),
    connect: registryConnector({ relayWs: r.wsRelay!.url, tcp: r.registry, proxy: `http://agent:pw@127.0.0.1:${proxy.port}` }),
  });
  cleanups.push(() => client.close());
  const reg = await client.register({ endpoints: ["0.0.0.0:4001"] });
  expect(reg.node_id).toBeGreaterThan(0);
  expect(proxy.connects).toEqual([`127.0.0.1:${r.wsRelay!.port}`]);
});

test("a registry connection over the WebSocket is bounded like a TCP one: garbage gets an invalid_argument answer, not a crash", async () => {
  const r = await rendezvous();
  const ws = new WebSocket(`${r.wsRelay!.url}/pilot/v1/registry`);
  ws.binaryType = "arraybuffer";
  const got: Uint8Array[] = [];
  ws.onmessage = (e) => got.push(new Uint8Array(e.data as ArrayBuffer));
  const closed = new Promise<void>((resolve) => (ws.onclose = () => resolve()));
  await new Promise<void>((resolve) => (ws.onopen = () => resolve()));
  // A hello first, then a frame with a hostile length: an invalid_argument answer and the connection closes.
  ws.send(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
  await closed;
  const text = Buffer.concat(got).toString("latin1");
  expect(text).toContain('"type":"hello"');
  expect(text).toContain("invalid_argument");
});

function toB64(key: Uint8Array): string {
  return Buffer.from(key).toString("base64");
}
