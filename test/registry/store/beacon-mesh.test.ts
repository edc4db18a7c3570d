/**
 * Two `pilot rendezvous` processes on one PostgreSQL database, each with its
 * beacon, peered (`--beacon-peers`): daemon a registered at one beacon and
 * daemon b at the other reach each other through the relay (an nftables rule
 * drops the UDP between their tunnel sockets, as NATs that cannot be punched
 * would), across both beacons. Then a's beacon is killed with SIGKILL: a
 * registers with the other beacon (it was given both, `--beacon x,y`) within
 * seconds (1.0-1.8 s measured), and the stream a opened to b before the kill keeps flowing. Default
 * timers (no PILOT_NAT_KEEPALIVE_MS): a daemon given several beacons pings the
 * one in use every 0.75 s and leaves it after three unanswered pings (1 s).
 * The kill takes a registry down with the beacon (one process serves both):
 * a trust revocation a issues right after it still reaches its peer c.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type Driver } from "../../../src/driver/index.ts";
import { runCommand, runPilot } from "../../support/cluster.ts";
import { RELAXED, startRendezvous, stopAll, stopPids, tempDir, type RendezvousProcess } from "../helpers.ts";
import { postgresAvailable, startPostgres, type PostgresCluster } from "./postgres-cluster.ts";

const isRoot = process.getuid?.() === 0;
const hasNft = Bun.which("nft") !== null;
const enabled = postgresAvailable() && isRoot && hasNft;
if (!enabled) console.warn("beacon-mesh.test.ts skipped: needs PostgreSQL (initdb), root and nft");

const table = `pilot_mesh_${process.pid}`;
let cluster: PostgresCluster | undefined;
let r1: RendezvousProcess;
let r2: RendezvousProcess;
const daemons: { name: string; env: Record<string, string>; home: string; nodeId: number; pid: number; udpPort: number }[] = [];
const drivers: Driver[] = [];

/** Two UDP ports free now (bound, then released): the beacons must know each other's before they start. */
async function freeUdpPorts(n: number): Promise<number[]> {
  const sockets = await Promise.all(Array.from({ length: n }, () => Bun.udpSocket({ hostname: "127.0.0.1", port: 0 })));
  const ports = sockets.map((s) => s.port);
  for (const s of sockets) s.close();
  return ports;
}

async function startDaemon(name: string, beacons: string, registries: string): Promise<(typeof daemons)[number]> {
  const home = join(tempDir(), name);
  const env = { PILOT_HOME: home };
  const r = await runPilot(["daemon", "start", "--json", "--registry", registries, "--beacon", beacons, "--listen", "127.0.0.1:0", "--public"], { env });
  if (r.code !== 0) throw new Error(`daemon ${name} did not start: ${r.stderr}`);
  const info = await runPilot(["info", "--json"], { env });
  const udpPort = Number(String(info.json?.data?.endpoint ?? "").split(":").at(-1));
  const d = { name, env, home, nodeId: r.json.data.node_id, pid: r.json.data.pid, udpPort };
  daemons.push(d);
  return d;
}

beforeAll(async () => {
  if (!enabled) return;
  cluster = await startPostgres();
  const url = await cluster.createDatabase();
  const identity = join(tempDir(), "shared-identity.json");
  const [p1, p2] = await freeUdpPorts(2);
  r1 = await startRendezvous({ store: url, args: [...RELAXED, "--identity", identity, "--beacon-addr", `127.0.0.1:${p1}`, "--beacon-peers", `127.0.0.1:${p2}`] });
  r2 = await startRendezvous({ store: url, args: [...RELAXED, "--identity", identity, "--beacon-addr", `127.0.0.1:${p2}`, "--beacon-peers", `127.0.0.1:${p1}`] });
}, 120_000);

afterAll(async () => {
  for (const d of drivers) d.close();
  if (enabled) await runCommand(["nft", "delete", "table", "inet", table]);
  await stopPids(daemons.map((d) => d.pid));
  await stopAll();
  await cluster?.stop();
});

async function nft(...args: string[]): Promise<void> {
  const r = await runCommand(["nft", ...args]);
  if (r.code !== 0) throw new Error(`nft ${args.join(" ")}: ${r.stderr}`);
}

/** Waits for `check` (polled), failing with `what` after `ms`. */
async function until(what: string, check: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await Bun.sleep(50);
  }
}

test.skipIf(!enabled)("daemons at different beacons relay to each other; kill -9 one rendezvous: its daemon moves to the other beacon within seconds, noticed by its pings (default timers), its stream keeps flowing, a revocation issued meanwhile takes effect", async () => {
  const registries = `127.0.0.1:${r1.port},127.0.0.1:${r2.port}`;
  const beacon1 = `127.0.0.1:${r1.beaconPort}`;
  const beacon2 = `127.0.0.1:${r2.beaconPort}`;
  // a is given both beacons and starts at the one its node id picks; b is given the other one only.
  const a = await startDaemon("a", `${beacon1},${beacon2}`, registries);
  const aBeacon = a.nodeId % 2 === 0 ? r1 : r2;
  const bBeacon = aBeacon === r1 ? r2 : r1;
  const b = await startDaemon("b", `127.0.0.1:${bBeacon.beaconPort}`, registries);
  const c = await startDaemon("c", `${beacon1},${beacon2}`, registries);
  expect(a.udpPort).toBeGreaterThan(0);
  expect(b.udpPort).toBeGreaterThan(0);

  // No direct path between a and b: only through the beacons.
  await nft("add", "table", "inet", table);
  await nft("add", "chain", "inet", table, "out", "{ type filter hook output priority 0; }");
  await nft("add", "rule", "inet", table, "out", "udp", "sport", String(a.udpPort), "udp", "dport", String(b.udpPort), "drop");
  await nft("add", "rule", "inet", table, "out", "udp", "sport", String(b.udpPort), "udp", "dport", String(a.udpPort), "drop");

  const da = await connect({ home: a.home });
  const db = await connect({ home: b.home });
  drivers.push(da, db);
  const server = await db.listen(1000);
  server.on("connection", (socket: any) => socket.pipe(socket));
  const socket = await da.dial(String(b.nodeId), 1000);
  let echoed = "";
  socket.on("data", (d: Buffer) => (echoed += d.toString()));
  const roundTrip = async (text: string, ms = 20_000) => {
    const before = echoed.length;
    socket.write(text);
    await until(`the echo of ${text}`, () => echoed.length >= before + text.length, ms);
  };
  await roundTrip("before-the-kill;");

  // c and a trust each other before the failure.
  const pilot = (d: typeof a, args: string[]) => runPilot([...args, "--json"], { env: d.env });
  const trusts = async (d: typeof a, peer: number) => ((await pilot(d, ["trust"])).json?.data?.trusted ?? []).some((t: any) => t.node_id === peer);
  expect((await pilot(c, ["handshake", String(a.nodeId), "before the failure"])).code).toBe(0);
  await until("a sees c's request", async () => (await pilot(a, ["pending"])).json?.data?.pending?.length === 1);
  expect((await pilot(a, ["approve", String(c.nodeId)])).code).toBe(0);
  await until("c trusts a", () => trusts(c, a.nodeId));

  const peers = await runPilot(["peers", "--json"], { env: a.env });
  const toB = (peers.json?.data?.peers ?? []).find((p: any) => p.node_id === b.nodeId);
  expect(toB).toMatchObject({ path: "relay", endpoint: `127.0.0.1:${aBeacon.beaconPort}` });

  aBeacon.proc.kill("SIGKILL");
  const killedAt = Date.now();
  // A revocation issued at once, while the daemons on the dead registry are moving, takes effect.
  const revoked = pilot(a, ["untrust", String(c.nodeId)]);
  // The stream keeps flowing through the other beacon.
  await roundTrip("after-the-kill;", 30_000);
  const flowingMs = Date.now() - killedAt;
  expect((await revoked).code).toBe(0);
  await until("c no longer trusts a", async () => !(await trusts(c, a.nodeId)), 30_000);
  const revokedMs = Date.now() - killedAt;

  // When a registered with the other beacon, from its log (text lines that start with the time).
  const lines = readFileSync(join(a.home, "pilot.log"), "utf8").split("\n");
  const timeOf = (l: string) => Date.parse(l.split(" ")[0]!);
  const moved = lines.findIndex((l) => l.includes("beacon not answering; registering with the next one"));
  expect(moved).toBeGreaterThanOrEqual(0);
  expect(lines[moved]).toContain("pings unanswered"); // noticed by its pings, not at the next register (15 s)
  const restored = lines.slice(moved).find((l) => l.includes("registered with the next beacon"));
  expect(restored).toBeDefined();
  const failoverMs = timeOf(restored!) - killedAt;
  console.log(`beacon kill -9: the daemon registered with the other beacon ${failoverMs} ms later; the stream's next echo came back after ${flowingMs} ms; the revocation reached c ${revokedMs} ms after the kill`);
  // Measured 1.0-1.8 s (printed above). The bound leaves room for timer delays on a loaded machine;
  // that pings (not the 15 s register) noticed the kill is asserted above.
  expect(failoverMs).toBeLessThanOrEqual(5000);

  const after = await runPilot(["peers", "--json"], { env: a.env });
  expect((after.json?.data?.peers ?? []).find((p: any) => p.node_id === b.nodeId)).toMatchObject({ path: "relay", endpoint: `127.0.0.1:${bBeacon.beaconPort}` });
  expect(echoed).toBe("before-the-kill;after-the-kill;");
}, 120_000);
