/**
 * `pilot status` against real daemons: this node with its registry, beacon and
 * path to the internet; two trusted peers, one talked to (path, RTT, traffic)
 * and one stopped (offline at the registry); a pending trust request; the
 * registry gone (online states unknown, said so); no daemon (not_running).
 *
 * The registry calls a node offline 90 s after its last heartbeat. Rather
 * than wait that long, the test moves the stopped peer's last heartbeat back
 * in the registry's own store, as if the time had passed.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { runPilot, startCluster, type Cluster } from "../support/cluster.ts";
import { internetPathOf } from "../../src/cli/commands/status.ts";

let c: Cluster;

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "a", hostname: "status-a" }, { name: "b", hostname: "status-b" }, { name: "c" }, { name: "d", hostname: "status-d" }] });
  await c.trust("a", "b");
  await c.trust("a", "c");
  expect((await c.pilot("d", ["handshake", String(c.daemon("a").nodeId), "may I use your API?"])).code).toBe(0);
  expect((await c.pilot("a", ["ping", "status-b", "--count", "3", "--interval", "50ms"])).code).toBe(0);
  await c.stopDaemon("c");
  // As if 10 minutes had passed since c's last heartbeat.
  const db = new Database(join(c.dir, "rendezvous", "rendezvous", "registry.db"));
  try {
    db.exec("PRAGMA busy_timeout = 5000");
    db.query("UPDATE nodes SET last_seen = last_seen - 600000 WHERE id = ?").run(c.daemon("c").nodeId);
  } finally {
    db.close();
  }
}, 60_000);

afterAll(async () => {
  await c?.stop();
});

describe("pilot status", () => {
  test("--json: this node, its peers (online, offline), paths and traffic, and the pending request", async () => {
    const r = await c.pilot("a", ["status"]);
    expect(r.code).toBe(0);
    const d = r.json.data;
    const a = c.daemon("a");
    expect(d.node).toMatchObject({
      node_id: a.nodeId,
      address: a.address,
      hostname: "status-a",
      public: false,
      registry: c.registry,
      registry_connected: true,
      beacon_registered: true,
      // Everything is on 127.0.0.1: the beacon sees the host's own address.
      internet: "public",
    });
    expect(d.node.observed_endpoint).toBe(d.node.endpoint);
    expect(d.node.internet_detail).toBe(`the beacon sees this host's own address ${d.node.endpoint}`);
    expect(d.peers.map((p: any) => p.node_id)).toEqual([c.daemon("b").nodeId, c.daemon("c").nodeId]);
    const [b, cc] = d.peers;
    expect(b).toMatchObject({ address: c.daemon("b").address, hostname: "status-b", online: true, session: "up" });
    expect(["direct", "punched", "relay"]).toContain(b.path);
    expect(b.rtt_ms).toBeNumber();
    expect(b.bytes_sent).toBeGreaterThan(0);
    expect(b.bytes_recv).toBeGreaterThan(0);
    expect(Date.now() - Date.parse(b.last_seen)).toBeLessThan(120_000);
    expect(cc).toMatchObject({ address: c.daemon("c").address, hostname: null, online: false, path: "none", rtt_ms: null, session: null, bytes_sent: 0 });
    expect(Date.now() - Date.parse(cc.last_seen)).toBeGreaterThan(590_000);
    expect(d.pending).toEqual([{ node_id: c.daemon("d").nodeId, address: c.daemon("d").address, hostname: "status-d", reason: "may I use your API?", received_at: expect.any(String) }]);
    expect(d.outgoing).toEqual([]);
    expect(d.presence_limited).toBe(false);
  }, 30_000);

  test("text: one screen with the node, a peer table and the request with what to do about it", async () => {
    const r = await c.pilot("a", ["status"], { json: false });
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toStartWith(`status-a  ${c.daemon("a").address}  private  (node ${c.daemon("a").nodeId}`);
    expect(r.stdout).toContain(`Registry:  ${c.registry} connected`);
    expect(r.stdout).toContain("Beacon:    registered, sees this node at 127.0.0.1:");
    expect(r.stdout).toContain("Internet:  public (no NAT): the beacon sees this host's own address 127.0.0.1:");
    const header = lines.findIndex((l) => l.startsWith("PEER "));
    expect(lines[header]).toMatch(/^PEER\s+ADDRESS\s+STATUS\s+PATH\s+RTT\s+LAST SEEN\s+SENT\s+RECEIVED$/);
    expect(lines[header + 1]).toMatch(new RegExp(`^status-b\\s+${c.daemon("b").address.replace(/\./g, "\\.")}\\s+online\\s+(direct|punched|relay)\\s+[0-9.]+ ms\\s+(just now|\\d+s ago)`)); // the registry's last heartbeat: seconds old on a loaded machine
    expect(lines[header + 2]).toMatch(new RegExp(`^node ${c.daemon("c").nodeId}\\s+\\S+\\s+offline\\s+none\\s+-\\s+10m \\d+s ago\\s+-\\s+-$`));
    expect(r.stdout).toContain("1 trust request waiting for you:");
    expect(r.stdout).toContain("may I use your API?");
    expect(r.stdout).toContain(`approve with: pilot approve ${c.daemon("d").nodeId}`);
  }, 30_000);

  test("the asking side sees its unanswered request", async () => {
    const r = await c.pilot("d", ["status"]);
    expect(r.code).toBe(0);
    expect(r.json.data.peers).toEqual([]);
    expect(r.json.data.outgoing.map((o: any) => o.node_id)).toEqual([c.daemon("a").nodeId]);
    const text = await c.pilot("d", ["status"], { json: false });
    expect(text.stdout).toContain("No trusted peers yet");
    expect(text.stdout).toContain(`waiting for 1 node to approve your request: ${c.daemon("a").address}`);
  }, 30_000);

  test("with the registry gone: online states are unknown, and status says why", async () => {
    process.kill(c.rendezvousPid, "SIGTERM");
    const deadline = Date.now() + 20_000;
    let r;
    for (;;) {
      r = await c.pilot("a", ["status"]);
      if (r.json?.data?.node?.registry_connected === false) break;
      if (Date.now() > deadline) throw new Error("the daemon never noticed the registry going away");
      await Bun.sleep(200);
    }
    expect(r.code).toBe(0);
    expect(r.json.data.peers.map((p: any) => p.online)).toEqual([null, null]);
    expect(r.json.data.peers[0].last_seen).toBeNull();
    const text = await c.pilot("a", ["status"], { json: false });
    expect(text.stdout).toContain("unreachable (retrying; online states unknown)");
    expect(text.stdout).toMatch(/status-b\s+\S+\s+unknown\s+/);
  }, 40_000);
});

describe("without a daemon", () => {
  test("not_running, with the hint to start one, exit 1", async () => {
    const home = mkdtempSync("/tmp/pilot-ops-status-");
    try {
      const r = await runPilot(["status", "--json"], { env: { PILOT_HOME: home } });
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.json).toEqual({ status: "error", code: "not_running", message: "the Pilot daemon is not running", hint: "start it with: pilot daemon start" });
      const text = await runPilot(["status"], { env: { PILOT_HOME: home } });
      expect(text.stderr).toBe("error: the Pilot daemon is not running\nhint:  start it with: pilot daemon start\n");
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  test("--help teaches", async () => {
    const r = await runPilot(["status", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith("pilot status: ");
    expect(r.stdout).toContain("pilot --json status");
  });
});

describe("the path to the internet, from what the beacon tells", () => {
  const local = new Set(["127.0.0.1", "192.168.1.10", "::1"]);
  test("public, cone, nat, unknown", () => {
    expect(internetPathOf("192.168.1.10:4000", 4000, local, []).path).toBe("public");
    // Our own IP but another port: something translated the port.
    expect(internetPathOf("192.168.1.10:61000", 4000, local, []).path).toBe("nat");
    expect(internetPathOf("203.0.113.11:61000", 4000, local, ["relay", "direct"])).toEqual({ path: "nat", detail: expect.stringContaining("not known until a hole punch succeeds") });
    expect(internetPathOf("203.0.113.11:61000", 4000, local, ["relay", "punched"]).path).toBe("cone");
    expect(internetPathOf("[::1]:4000", 4000, local, []).path).toBe("public");
    expect(internetPathOf(null, 4000, local, ["punched"]).path).toBe("unknown");
  });
});
