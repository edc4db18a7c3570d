/**
 * Daemons and the rendezvous as processes: starting, stopping, crashing and
 * restarting, with names and trust surviving, through the real CLI.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { runPilot, startCluster, type Cluster } from "../support/cluster.ts";

// Each test starts or restarts real processes.
setDefaultTimeout(60_000);

let c: Cluster;

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "a", hostname: "life-a" }, { name: "b", hostname: "life-b" }] });
  await c.trust("a", "b");
});
afterAll(async () => {
  await c?.stop();
});

async function pingOk(from: string, target: string): Promise<boolean> {
  const r = await c.pilot(from, ["ping", target, "--count", "1", "--timeout", "3s"]);
  return r.code === 0 && r.json?.data?.received === 1;
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await Bun.sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("daemon lifecycle", () => {
  test("a second start is refused while one runs; status --check speaks through its exit code", async () => {
    const again = await c.pilot("a", ["daemon", "start", "--registry", c.registry, "--listen", "127.0.0.1:0"]);
    expect(again.code).toBe(1);
    expect(again.json.code).toBe("already_exists");
    expect(again.json.hint).toContain("pilot daemon stop");
    const check = await runPilot(["daemon", "status", "--check"], { env: c.daemon("a").env });
    expect(check.code).toBe(0);
    expect(check.stdout + check.stderr).toBe("");
    const status = await c.pilot("a", ["daemon", "status"]);
    expect(status.json.data).toMatchObject({ running: true, address: c.daemon("a").address, hostname: "life-a" });
  });

  test("restarting a daemon keeps its address, hostname and trust; the peer reaches it again", async () => {
    const before = c.daemon("b").address;
    const stop = await c.pilot("b", ["daemon", "stop"]);
    expect(stop.code).toBe(0);
    expect(stop.json.data.forced).toBe(false);
    const down = await runPilot(["daemon", "status", "--check"], { env: c.daemon("b").env });
    expect(down.code).toBe(1);
    const gone = await c.pilot("b", ["info"]);
    expect(gone.json.code).toBe("not_running");
    await c.startDaemon({ name: "b" }); // no --hostname: the registry remembers it
    expect(c.daemon("b").address).toBe(before);
    const info = await c.pilot("b", ["info"]);
    expect(info.json.data.hostname).toBe("life-b");
    const trust = await c.pilot("b", ["trust"]);
    expect(trust.json.data.trusted.map((t: any) => t.node_id)).toContain(c.daemon("a").nodeId);
    await waitFor("a to reach the restarted b", () => pingOk("a", "life-b"));
    expect(await pingOk("b", "life-a")).toBe(true);
  });

  test("after a crash (SIGKILL) the stale socket and pid file do not block the next start", async () => {
    const b = c.daemon("b");
    process.kill(b.pid, "SIGKILL");
    await waitFor("b to die", async () => {
      try {
        process.kill(b.pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    expect(existsSync(b.socket)).toBe(true);
    const status = await c.pilot("b", ["daemon", "status"]);
    expect(status.json.code).toBe("not_running");
    await c.startDaemon({ name: "b" });
    await waitFor("a to reach b after its crash", () => pingOk("a", "life-b"));
  });
});

describe("rendezvous restart and outage", () => {
  test("while the rendezvous is down, trusted peers keep talking over their tunnels", async () => {
    expect(await pingOk("a", "life-b")).toBe(true);
    process.kill(c.rendezvousPid, "SIGSTOP"); // frozen: connections stay up but nothing answers
    try {
      expect(await pingOk("a", "life-b")).toBe(true);
      expect(await pingOk("b", "life-a")).toBe(true);
    } finally {
      process.kill(c.rendezvousPid, "SIGCONT");
    }
  });

  test("a restarted rendezvous keeps names, trust and pending requests; daemons reconnect", async () => {
    // A third node leaves a pending request to a.
    await c.startDaemon({ name: "x", hostname: "life-x" });
    const ask = await c.pilot("x", ["handshake", String(c.daemon("a").nodeId), "still there after a restart?"]);
    expect(ask.json.data.status).toBe("pending");
    await c.restartRendezvous();
    await waitFor("a's registry session to come back", async () => (await c.pilot("a", ["info"])).json?.data?.registry_connected === true);
    const found = await c.pilot("b", ["find", "life-a"]);
    expect(found.json.data.address).toBe(c.daemon("a").address);
    const pending = await c.pilot("a", ["pending"]);
    expect(pending.json.data.pending.map((p: any) => [p.node_id, p.reason])).toContainEqual([c.daemon("x").nodeId, "still there after a restart?"]);
    const trust = await c.pilot("a", ["trust"]);
    expect(trust.json.data.trusted.map((t: any) => t.node_id)).toContain(c.daemon("b").nodeId);
    // New tunnels still need the registry: stop b and start it again, then reach it.
    await c.stopDaemon("b");
    await c.startDaemon({ name: "b" });
    await waitFor("a to reach b through the restarted rendezvous", () => pingOk("a", "life-b"));
  });
});
