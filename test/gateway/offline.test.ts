/**
 * Agents that go offline, through the gateway and in the registry:
 *
 * - kill -9 of the agent's daemon: the next HTTP request through the gateway
 *   gets a 502 within 1.5 s (not the 20 s connect timeout) that says the
 *   agent is offline; `find` says online: false (the registry saw the
 *   daemon's connection close);
 * - `pilot daemon stop`: `find` says online: false at once, and the gateway
 *   answers the same quick 502;
 * - started again, the agent is online and reachable through the same mapping.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect, type Driver } from "../../src/driver/index.ts";
import { statusService } from "../../examples/http-server.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { curl, gw, privateSubnet, stopGateways, until } from "./support.ts";

const PORT = 8080;
const net = privateSubnet(74);
let c: Cluster;
const drivers: Driver[] = [];
const env = () => c.daemon("client").env;

async function serve(name: string): Promise<void> {
  const d = await connect({ home: c.daemon(name).home });
  drivers.push(d);
  await d.serveHttp(PORT, statusService(d.address));
}

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "killed", hostname: "killed-agent" }, { name: "stopped", hostname: "stopped-agent" }, { name: "client", hostname: "offline-client" }] });
  await c.trust("killed", "client");
  await c.trust("stopped", "client");
  await serve("killed");
  await serve("stopped");
  const r = await gw(env(), ["start", "--subnet", net.cidr, "--ports", String(PORT), "killed-agent", "stopped-agent"]);
  if (r.code !== 0) throw new Error(`gateway start failed: ${r.stderr}`);
  for (const ip of [net.ip(1), net.ip(2)]) expect((await curl(`http://${ip}:${PORT}/api/status`)).status).toBe(200);
}, 60_000);

afterAll(async () => {
  await stopGateways();
  for (const d of drivers) await d.close().catch(() => {});
  await c?.stop();
}, 30_000);

async function online(name: string): Promise<boolean> {
  const r = await c.pilot("client", ["find", name]);
  expect(r.code).toBe(0);
  return r.json.data.online;
}

describe("an agent that goes offline", () => {
  test("kill -9 of its daemon: the registry says offline, and curl through the gateway gets a 502 within 1.5 s", async () => {
    expect(await online("killed-agent")).toBe(true);
    process.kill(c.daemon("killed").pid, "SIGKILL");
    await until("the killed daemon's registry connection to close", async () => !(await online("killed-agent")), 5000);

    const t = performance.now();
    const r = await curl(`http://${net.ip(1)}:${PORT}/api/status`);
    const ms = performance.now() - t;
    expect({ status: r.status, fast: ms < 1500 }).toEqual({ status: 502, fast: true });
    expect(r.headers).toContain("X-Pilot-Error: unreachable");
    expect(r.body).toContain(`502 Bad Gateway: killed-agent (${c.daemon("killed").address}) is offline: no answer to the connection request within`);
    expect(r.body).toContain("the registry says its daemon is not running");
    expect(r.body).toContain("hint: start its daemon, then retry; check with: pilot find killed-agent");
    // The gateway itself is fine: the other agent still answers.
    expect((await curl(`http://${net.ip(2)}:${PORT}/api/status`)).status).toBe(200);
  }, 30_000);

  test("pilot daemon stop: find says online: false at once; the gateway answers a quick 502", async () => {
    expect(await online("stopped-agent")).toBe(true);
    const stop = await c.pilot("stopped", ["daemon", "stop"]);
    expect(stop.code).toBe(0);
    expect(await online("stopped-agent")).toBe(false);

    const t = performance.now();
    const r = await curl(`http://${net.ip(2)}:${PORT}/api/status`);
    expect({ status: r.status, fast: performance.now() - t < 1500 }).toEqual({ status: 502, fast: true });
    expect(r.body).toContain(`stopped-agent (${c.daemon("stopped").address}) is offline`);
  }, 30_000);

  test("started again: online, and the same mapping reaches it", async () => {
    await c.startDaemon({ name: "stopped", hostname: "stopped-agent" });
    expect(await online("stopped-agent")).toBe(true);
    await serve("stopped");
    const back = await until("the agent to answer through the gateway", async () => {
      const r = await curl(`http://${net.ip(2)}:${PORT}/api/status`);
      return r.status === 200 ? r : null;
    }, 20_000);
    expect(JSON.parse(back.body).agent).toBe(c.daemon("stopped").address);
  }, 40_000);
});
