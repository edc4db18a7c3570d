/**
 * Root and non-root users sharing one gateway, as `sudo` makes them:
 *
 * - a user without root (`nobody`, through setpriv) runs its own daemon and
 *   its own gateway on a 127.x subnet and a port from 1024 up: no alias, no
 *   root, and curl works;
 * - root runs the gateway for that user's PILOT_HOME (what `sudo pilot
 *   gateway start` does): the gateway's files belong to the user, who can
 *   then list, map and stop it without root.
 *
 * Needs root (to become nobody) and setpriv; skipped with a message
 * otherwise (without root, gateway.test.ts already runs unprivileged).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { connect, type Driver } from "../../src/driver/index.ts";
import { statusService } from "../../examples/http-server.ts";
import { pilotCommand, ROOT, runCommand, runPilot, startCluster, type Cluster } from "../support/cluster.ts";
import { alive, curl, gw, IS_ROOT, privateSubnet, stopGateways } from "./support.ts";

const NOBODY = 65534;
const hasSetpriv = spawnSync("setpriv", ["--version"]).status === 0;
const skip = !IS_ROOT || !hasSetpriv;
if (skip) console.warn(`test/gateway/unprivileged.test.ts skipped: ${IS_ROOT ? "no setpriv" : "not root (gateway.test.ts runs unprivileged already)"}`);

const PORT = 8080;
const net = privateSubnet(75);
let c: Cluster;
let agent: Driver;
let home = "";
let nobodyDaemon = 0;
/** Gateways started as nobody (stopGateways only knows root's). */
const nobodyGateways = new Set<number>();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
}

/** `pilot ARGS --json` as nobody, with nobody's PILOT_HOME. */
function asNobody(args: string[]): Promise<Run> {
  return runCommand(["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--", ...pilotCommand(), ...args, "--json"], { env: { ...process.env, PILOT_HOME: home, HOME: home } });
}

function uidOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
}

beforeAll(async () => {
  if (skip) return;
  c = await startCluster({ daemons: [{ name: "agent", hostname: "agent-u" }] });
  agent = await connect({ home: c.daemon("agent").home });
  await agent.serveHttp(PORT, statusService(agent.address));

  home = mkdtempSync("/tmp/pilot-gw-user-");
  chownSync(home, NOBODY, NOBODY);
  chmodSync(home, 0o700);
  const d = await asNobody(["daemon", "start", "--registry", c.registry, "--beacon", c.beacon, "--listen", "127.0.0.1:0", "--hostname", "nobodys-laptop"]);
  if (d.code !== 0) throw new Error(`nobody's daemon did not start: ${d.stderr}`);
  nobodyDaemon = d.json.data.pid;
  expect(uidOf(nobodyDaemon)).toBe(NOBODY);
  expect((await asNobody(["handshake", String(c.daemon("agent").nodeId), "unprivileged gateway test"])).code).toBe(0);
  expect((await c.pilot("agent", ["approve", String(d.json.data.node_id)])).code).toBe(0);
  for (let i = 0; i < 100; i++) {
    if ((await asNobody(["trust"])).json?.data?.trusted?.length > 0) break;
    await Bun.sleep(50);
  }
}, 60_000);

afterAll(async () => {
  if (skip) return;
  await stopGateways();
  for (const pid of [...nobodyGateways, nobodyDaemon]) {
    if (!pid) continue;
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone
    }
    for (let i = 0; i < 100 && alive(pid); i++) await Bun.sleep(50);
    if (alive(pid)) process.kill(pid, "SIGKILL");
  }
  await agent?.close();
  await c?.stop();
  if (home) rmSync(home, { recursive: true, force: true });
}, 30_000);

describe.skipIf(skip)("gateway without root, and with sudo for a user", () => {
  test("a user without root: 127.x subnet, port 8080, no alias; curl works", async () => {
    const r = await asNobody(["gateway", "start", "--subnet", net.cidr, "--ports", String(PORT), "agent-u"]);
    expect({ code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ code: 0, stderr: "" });
    const pid = r.json.data.pid;
    nobodyGateways.add(pid); // stopped in afterAll if this test fails before it stops it
    expect(uidOf(pid)).toBe(NOBODY);
    expect(r.json.data.mappings[0]).toEqual({ local_ip: net.ip(1), pilot_addr: agent.address, hostname: "agent-u", ports: [PORT], secure_ports: [], secure: false });
    const res = await curl(`http://${net.ip(1)}:${PORT}/api/status`);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).agent).toBe(agent.address);
    const ledger = JSON.parse(readFileSync(join(home, "gateway", "state.json"), "utf8"));
    expect(ledger.aliases).toEqual([]);

    // Port 80 needs root: a clear error, and the gateway keeps running.
    const low = await asNobody(["gateway", "map", "agent-u", "--ports", "80"]);
    expect(low.json).toMatchObject({ code: "unauthorized", message: "listening on TCP port 80 needs root (ports below 1024 are privileged)" });
    expect(low.json.hint).toContain("--ports 8080");

    const stop = await asNobody(["gateway", "stop"]);
    expect(stop.json.data).toMatchObject({ pid, removed_aliases: [] });
    expect(alive(pid)).toBe(false);
  }, 30_000);

  test("sudo: root follows no symlink the user planted in the gateway directory", async () => {
    const victim = join(mkdtempSync("/tmp/pilot-gw-victim-"), "secret");
    writeFileSync(victim, "root's file\n", { mode: 0o600 });
    const gdir = join(home, "gateway");
    try {
      // The log name points at a root file: refused, the file untouched and still root's.
      rmSync(gdir, { recursive: true, force: true });
      mkdirSync(gdir, { mode: 0o700 });
      chownSync(gdir, NOBODY, NOBODY);
      symlinkSync(victim, join(gdir, "gateway.log"));
      const r = await gw({ PILOT_HOME: home }, ["start", "--subnet", net.cidr, "--ports", String(PORT), "agent-u"]);
      expect(r.code).toBe(1);
      expect(r.json.message).toContain("cannot open the gateway log");
      expect(readFileSync(victim, "utf8")).toBe("root's file\n");
      expect(statSync(victim).uid).toBe(0);

      // The directory itself is a symlink: refused.
      rmSync(gdir, { recursive: true, force: true });
      symlinkSync(dirname(victim), gdir);
      const r2 = await gw({ PILOT_HOME: home }, ["start", "--subnet", net.cidr, "--ports", String(PORT), "agent-u"]);
      expect(r2.code).toBe(1);
      expect(r2.json.code).toBe("unauthorized");
      expect(statSync(dirname(victim)).uid).toBe(0);
    } finally {
      rmSync(gdir, { recursive: true, force: true });
      rmSync(dirname(victim), { recursive: true, force: true });
    }
  }, 30_000);

  test("sudo: root's gateway for the user's PILOT_HOME belongs to the user, who lists, maps and stops it without root", async () => {
    const r = await gw({ PILOT_HOME: home }, ["start", "--subnet", net.cidr, "--ports", String(PORT), "agent-u"]);
    expect({ code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ code: 0, stderr: "" });
    const pid = r.json.data.pid;
    expect(uidOf(pid)).toBe(0);
    for (const f of ["", "gateway.sock", "state.json", "gateway.log"]) {
      expect({ f, uid: statSync(join(home, "gateway", f)).uid }).toEqual({ f, uid: NOBODY });
    }
    expect(statSync(join(home, "gateway", "gateway.sock")).mode & 0o777).toBe(0o600);

    const list = await asNobody(["gateway", "list"]);
    expect(list.json.data).toMatchObject({ pid, subnet: net.cidr, total: 1 });
    const map = await asNobody(["gateway", "map", "agent-u", "--ports", "8081"]);
    expect(map.json.data).toMatchObject({ local_ip: net.ip(1), ports: [PORT, 8081], created: false });
    expect((await curl(`http://${net.ip(1)}:${PORT}/api/status`)).status).toBe(200);

    const stop = await asNobody(["gateway", "stop"]);
    expect(stop.code).toBe(0);
    expect(stop.json.data.pid).toBe(pid);
    expect(alive(pid)).toBe(false);
    expect((await runPilot(["gateway", "list", "--json"], { env: { PILOT_HOME: home } })).json.code).toBe("not_running");
  }, 30_000);
});
