/**
 * The registry as a real daemon meets it: 100 peers ask one daemon for trust
 * at once and its app approves each (every approval and the daemon's own
 * trust sync must succeed; no answer may fail its signature check), and a
 * detached `daemon start` with a taken hostname says `already_exists`.
 * Daemons run in temporary PILOT_HOMEs and are stopped by pid.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connect as connectDriver } from "../../src/driver/driver.ts";
import { runPilot } from "../support/cluster.ts";
import { newNode, startRendezvous, stopAll, tempDir, type RendezvousProcess, type TestNode } from "./helpers.ts";

let r: RendezvousProcess;
const daemons: number[] = [];

beforeAll(async () => {
  // Default limits, except for new keys: the test nodes are created in bulk.
  r = await startRendezvous({ args: ["--registration-rate", "100000", "--prefix-registration-rate", "100000", "--pow-free-rate", "100000"] });
});

afterAll(async () => {
  for (const pid of daemons) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone
    }
  }
  for (const pid of daemons) {
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      await Bun.sleep(50);
    }
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  await stopAll();
});

async function startDaemon(home: string, extra: string[] = []) {
  const result = await runPilot(["daemon", "start", "--json", "--registry", `127.0.0.1:${r.port}`, "--beacon", "off", "--listen", "127.0.0.1:0", ...extra], { env: { PILOT_HOME: home } });
  if (result.code === 0) daemons.push(result.json.data.pid);
  return result;
}

test("100 peers ask one daemon for trust at once and its app approves each: all succeed, no forged-looking answer", async () => {
  const home = tempDir();
  const started = await startDaemon(home);
  expect(started.code).toBe(0);
  const nodeId = started.json.data.node_id as number;
  const askers: TestNode[] = await Promise.all(Array.from({ length: 100 }, (_, i) => newNode(r, {}, { subscribe: true, localAddress: `127.20.${i}.1` })));
  await Promise.all(askers.map((a) => a.client.trustRequest(nodeId, `asker ${a.id}`)));
  const app = await connectDriver({ home });
  try {
    const results = await Promise.all(
      askers.map((a) =>
        app.call("approve", { target: String(a.id) }).then(
          () => "ok",
          (e) => `${e.code}: ${e.message}`,
        ),
      ),
    );
    const failed = results.filter((x) => x !== "ok");
    expect(failed).toEqual([]);
    const trusted = (await app.call("trusted")) as { total: number };
    expect(trusted.total).toBe(100);
    const heard = await Promise.all(askers.map((a) => a.nextEvent((e) => e.event === "trust_approved", 15_000).then(() => true, () => false)));
    expect(heard.filter((h) => !h).length).toBe(0);
  } finally {
    app.close();
  }
  const log = readFileSync(join(home, "pilot.log"), "utf8");
  expect(log).not.toContain("signature check");
  expect(log).not.toContain("trust sync with the registry failed");
}, 90_000);

test("a detached daemon start with a taken hostname fails with already_exists, as documented", async () => {
  const name = `taken-${process.pid}`;
  await newNode(r, { hostname: name }, { subscribe: false });
  const result = await startDaemon(tempDir(), ["--hostname", name]);
  expect(result.code).toBe(1);
  expect(result.json).toMatchObject({ status: "error", code: "already_exists" });
  expect(result.json.message).toContain(name);
}, 30_000);

test("pilot pending lists the oldest and the newest, counts the rest, and pages through all of them newest first", async () => {
  const home = tempDir();
  const started = await startDaemon(home);
  expect(started.code).toBe(0);
  const nodeId = started.json.data.node_id as number;
  const askers: TestNode[] = await Promise.all(Array.from({ length: 120 }, (_, i) => newNode(r, {}, { subscribe: false, localAddress: `127.21.${i}.1` })));
  // Asked in id order, so requests made within the same millisecond keep that order too.
  askers.sort((a, b) => a.id - b.id);
  for (const a of askers) await a.client.trustRequest(nodeId, `asker ${a.id}`);
  const newest = askers.at(-1)!.id;
  const pilot = (args: string[]) => runPilot([...args, "--json"], { env: { PILOT_HOME: home } });

  const plain = await pilot(["pending"]);
  expect(plain.code).toBe(0);
  expect(plain.json.data.total).toBe(120);
  expect(plain.json.data.pending.length).toBe(100);
  expect(plain.json.data.pending.map((p: { node_id: number }) => p.node_id)).toContain(newest);

  const top = await pilot(["pending", "--limit", "10"]);
  expect(top.json.data).toMatchObject({ total: 120, offset: 0 });
  expect(top.json.data.pending.map((p: { node_id: number }) => p.node_id)).toEqual(askers.slice(-10).map((a) => a.id).reverse());

  const tail = await pilot(["pending", "--offset", "110", "--limit", "20"]);
  expect(tail.json.data.pending.map((p: { node_id: number }) => p.node_id)).toEqual(askers.slice(0, 10).map((a) => a.id).reverse());

  const all = await pilot(["pending", "--all"]);
  expect(all.json.data.pending.length).toBe(120);
  expect(new Set(all.json.data.pending.map((p: { node_id: number }) => p.node_id)).size).toBe(120);

  const text = await runPilot(["pending"], { env: { PILOT_HOME: home } });
  expect(text.stdout).toContain("120 trust requests waiting for you (100 listed: the oldest and the newest)");
  expect(text.stdout).toContain("20 more not listed: pilot pending --all");
  expect((await pilot(["pending", "--all", "--limit", "3"])).json.code).toBe("invalid_argument");
  expect((await pilot(["pending", "--limit", "0"])).json.code).toBe("invalid_argument");
}, 90_000);
