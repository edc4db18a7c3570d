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
  // Default limits, except new keys per IP: every test node registers from 127.0.0.1.
  r = await startRendezvous({ args: ["--registration-rate", "100000"] });
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
