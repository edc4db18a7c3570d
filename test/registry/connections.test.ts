/**
 * Connection floods against the registry, from many loopback source
 * addresses (any 127.a.b.c can be bound as a source on Linux): idle
 * connections that never authenticate, one network holding many, one node
 * holding many. Legitimate clients and a real `daemon start` must still get
 * in. Counts and times are scaled down through the limits' flags.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connect as tcpConnect, type Socket } from "node:net";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { RegistryClient } from "../../src/registry/client.ts";
import { FrameReader } from "../../src/registry/wire.ts";
import { runPilot } from "../support/cluster.ts";
import { codeOf, keyBytes, newNode, signedRequest, startRendezvous, stopAll, tempDir, type RendezvousProcess, type TestNode } from "./helpers.ts";
import { encodeFrame } from "../../src/registry/wire.ts";

const LIMITS = {
  total: 400,
  perIp: 8,
  perPrefix: 64,
  authTimeoutMs: 2000,
};

let r: RendezvousProcess;
const sockets = new Set<Socket>();
const daemons: number[] = [];

beforeAll(async () => {
  r = await startRendezvous({
    args: [
      "--registration-rate", "100000",
      "--prefix-registration-rate", "100000",
      "--request-rate", "100000",
      "--pow-free-rate", "100000",
      "--max-connections", String(LIMITS.total),
      "--max-connections-per-ip", String(LIMITS.perIp),
      "--max-connections-per-prefix", String(LIMITS.perPrefix),
      "--auth-timeout", `${LIMITS.authTimeoutMs}ms`,
    ],
  });
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const pid of daemons) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone
    }
  }
  await Bun.sleep(200);
  for (const pid of daemons) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  await stopAll();
});

interface Held {
  readonly socket: Socket;
  /** "hello" once greeted, "refused" if the registry refused it, "closed" once it is closed. */
  state: "connecting" | "hello" | "refused" | "closed";
  greeted: boolean;
}

/** An idle connection from `localAddress`: reads the hello (or the refusal) and then sends nothing. */
function idle(localAddress: string, send?: (socket: Socket) => void): Promise<Held> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: "127.0.0.1", port: r.port, localAddress });
    sockets.add(socket);
    const held: Held = { socket, state: "connecting", greeted: false };
    const reader = new FrameReader();
    let settled = false;
    const settle = () => {
      if (!settled) {
        settled = true;
        resolve(held);
      }
    };
    socket.on("data", (d: Buffer) => {
      for (const f of reader.push(d)) {
        if (f.kind !== "message") continue;
        if (held.state === "connecting") {
          held.state = f.value.type === "hello" ? "hello" : "refused";
          held.greeted = held.state === "hello";
          if (held.state === "hello") send?.(socket);
          settle();
        }
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      if (held.state !== "refused") held.state = "closed";
      sockets.delete(socket);
      settle();
    });
    setTimeout(settle, 5000);
  });
}

const open = (list: Held[]) => list.filter((h) => h.state === "hello").length;

async function waitFor(predicate: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!predicate() && Date.now() < deadline) await Bun.sleep(50);
  return predicate();
}

/** Ten daemons' clients, each from its own network, and one real detached daemon start (from 127.0.0.1). */
async function legitimateClients(tag: number): Promise<{ clients: string[]; daemon: string; ms: number }> {
  const started = Date.now();
  const clients = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      codeOf(
        (async () => {
          const client = await RegistryClient.connect({ host: r.host, port: r.port, localAddress: `127.${40 + tag}.${i}.1`, signer: generateIdentity(), registryKey: r.publicKey, reconnect: { attempts: 1 } });
          try {
            const me = await client.register();
            await client.lookup(me.node_id);
          } finally {
            client.close();
          }
        })(),
      ),
    ),
  );
  const home = tempDir();
  const daemon = await runPilot(["daemon", "start", "--json", "--registry", `127.0.0.1:${r.port}`, "--beacon", "off", "--listen", "127.0.0.1:0"], { env: { PILOT_HOME: home } });
  if (daemon.code === 0) daemons.push(daemon.json.data.pid);
  return { clients, daemon: daemon.json?.status ?? daemon.stderr, ms: Date.now() - started };
}

test("480 idle connections from 60 addresses: at most a fifth of the table waits unauthenticated, legitimate clients get in, the idle ones are closed", async () => {
  // 12 networks x 5 addresses x 8 connections.
  const attack: Promise<Held>[] = [];
  for (let net = 0; net < 12; net++) for (let host = 1; host <= 5; host++) for (let i = 0; i < LIMITS.perIp; i++) attack.push(idle(`127.30.${net}.${host}`));
  const held = await Promise.all(attack);
  await waitFor(() => open(held) <= LIMITS.total / 5, 2000);
  const holding = open(held);
  expect(held.filter((h) => h.greeted).length).toBeGreaterThan(LIMITS.total);
  expect(holding).toBeLessThanOrEqual(LIMITS.total / 5);

  const legit = await legitimateClients(0);
  console.log(`idle flood: ${held.length} connections, ${holding} held at once; legitimate: ${legit.clients.filter((c) => c === "ok").length}/10 clients, daemon start ${legit.daemon}, ${legit.ms} ms`);
  expect(legit.clients).toEqual(Array(10).fill("ok"));
  expect(legit.daemon).toBe("ok");

  // Nobody authenticated on the idle ones: they are all closed after the deadline.
  expect(await waitFor(() => open(held) === 0, LIMITS.authTimeoutMs + 3000)).toBe(true);
}, 60_000);

test("50 registered nodes x 8 authenticated connections fill the table: legitimate clients still get in, the attacker keeps the rest", async () => {
  const key = keyBytes(r.publicKey);
  const held: Held[] = [];
  const nodes: TestNode[] = [];
  // 50 nodes on 10 networks (5 addresses each), 8 connections per node: 400 in all.
  // In groups of ten, so the connections waiting to authenticate stay within their pool.
  for (let group = 0; group < 5; group++) await Promise.all(
    Array.from({ length: 10 }, async (_, k) => {
      const j = group * 10 + k;
      const address = `127.33.${j % 10}.${Math.floor(j / 10) + 1}`;
      const node = await newNode(r, {}, { subscribe: false, localAddress: address });
      nodes.push(node);
      const more = await Promise.all(
        Array.from({ length: 7 }, () => idle(address, (socket) => socket.write(encodeFrame(signedRequest(node.identity, key, { type: "heartbeat", node_id: node.id }))))),
      );
      held.push(...more);
    }),
  );
  await Bun.sleep(300);
  const before = open(held);
  // (The first test's daemon holds one more: the table made room for it.)
  expect(before).toBeGreaterThanOrEqual(345);

  const legit = await legitimateClients(1);
  console.log(`authenticated flood: ${before + 50} connections held by 50 nodes (table ${LIMITS.total}); legitimate: ${legit.clients.filter((c) => c === "ok").length}/10 clients, daemon start ${legit.daemon}, ${legit.ms} ms; attacker still holds ${open(held) + 50 - 11}`);
  expect(legit.clients).toEqual(Array(10).fill("ok"));
  expect(legit.daemon).toBe("ok");
  // Each newcomer took one connection from the fullest network; the attacker keeps the rest.
  expect(open(held)).toBeGreaterThanOrEqual(before - 22);
  for (const h of held) h.socket.destroy();
  for (const n of nodes) n.client.close();
  await Bun.sleep(500);
}, 60_000);

test("one network holds at most its share: 100 addresses in one /24", async () => {
  const held = await Promise.all(Array.from({ length: 100 }, (_, i) => idle(`127.31.0.${i + 1}`)));
  expect(open(held)).toBe(LIMITS.perPrefix);
  expect(held.filter((h) => h.state === "refused").length).toBe(100 - LIMITS.perPrefix);
  for (const h of held) h.socket.destroy();
}, 30_000);

test("one node holds at most 8 authenticated connections", async () => {
  const node = await newNode(r, {}, { subscribe: false });
  const key = keyBytes(r.publicKey);
  const held = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      idle(`127.32.${i}.1`, (socket) => socket.write(encodeFrame(signedRequest(node.identity, key, { type: "heartbeat", node_id: node.id })))),
    ),
  );
  await Bun.sleep(LIMITS.authTimeoutMs + 1000);
  expect(open(held)).toBe(8);
  for (const h of held) h.socket.destroy();
}, 30_000);
