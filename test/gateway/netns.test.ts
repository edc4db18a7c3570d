/**
 * The gateway as the seeds run it: root, the default 10.4.0.0/16 subnet,
 * real loopback aliases, port 80. All of it happens inside a network
 * namespace this test creates (`ip netns add pilot-gw-<pid>`) and deletes in
 * afterAll, even on failure, so the host's own interfaces are never touched:
 * the rendezvous, five daemons, the seed's HTTP service, its secure service
 * (examples/secure-server.ts) and REST mesh, the gateway and curl all run
 * under `ip netns exec`.
 *
 * Skipped, loudly, when not root or when network namespaces are unavailable.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { pilotCommand, ROOT, runCommand } from "../support/cluster.ts";
import { alive, IS_ROOT } from "./support.ts";

const NS = `pilot-gw-${process.pid}`;

function netnsAvailable(): string | null {
  if (!IS_ROOT) return "not root";
  const probe = spawnSync("ip", ["netns", "add", NS], { encoding: "utf8" });
  if (probe.error) return `no ip command (${probe.error.message})`;
  if (probe.status !== 0) return `ip netns add failed: ${probe.stderr.trim()}`;
  const up = spawnSync("ip", ["-n", NS, "link", "set", "lo", "up"], { encoding: "utf8" });
  if (up.status !== 0) return `cannot bring lo up in ${NS}: ${up.stderr.trim()}`;
  return null;
}

const skipReason = netnsAvailable();
if (skipReason) {
  console.warn(`\n*** test/gateway/netns.test.ts SKIPPED: ${skipReason}. The root flow (default subnet 10.4.0.0/16, loopback aliases) is NOT tested. ***\n`);
}

const dir = skipReason ? "" : mkdtempSync("/tmp/pilot-gw-netns-");
const pids = new Set<number>();
const homes = new Map<string, string>();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
}

/** Runs argv inside the namespace. */
function inNs(argv: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<Run> {
  return runCommand(["ip", "netns", "exec", NS, ...argv], { env: { ...process.env, ...env }, timeoutMs });
}

/** `pilot ARGS --json` as the user of `name`, inside the namespace. */
function pilot(name: string, args: string[]): Promise<Run> {
  return inNs([...pilotCommand(), ...args, "--json"], { PILOT_HOME: homes.get(name)! });
}

/** A long-running process inside the namespace; resolves with its first output line matching `ready`. */
async function spawnInNs(argv: string[], env: Record<string, string>, ready: RegExp): Promise<{ pid: number; match: RegExpMatchArray }> {
  const proc = Bun.spawn(["ip", "netns", "exec", NS, ...argv], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1", ...env }, stdout: "pipe", stderr: "pipe" });
  pids.add(proc.pid);
  let text = "";
  const decoder = new TextDecoder();
  const reader = proc.stdout.getReader();
  const deadline = Date.now() + 20_000;
  // One read in flight at a time: a read that loses the race is awaited again, not dropped.
  let pending = reader.read();
  for (;;) {
    const m = text.match(ready);
    if (m) {
      void (async () => {
        for (let r = await pending; !r.done; r = await reader.read()); // keep draining
      })();
      return { pid: proc.pid, match: m };
    }
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`${argv.join(" ")} did not print ${ready}: ${text}`);
    }
    const r = await Promise.race([pending, Bun.sleep(200).then(() => null)]);
    if (r === null) continue;
    if (r.done) throw new Error(`${argv.join(" ")} exited: ${text}${await new Response(proc.stderr).text()}`);
    text += decoder.decode(r.value, { stream: true });
    pending = reader.read();
  }
}

function aliases(): string[] {
  const r = spawnSync("ip", ["-n", NS, "-4", "-o", "addr", "show", "dev", "lo"], { encoding: "utf8" });
  return [...r.stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\/(\d+)/g)].map((m) => `${m[1]}/${m[2]}`).filter((a) => !a.startsWith("127."));
}

function curl(url: string): Promise<Run> {
  return inNs(["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", url]);
}

function body(r: Run): { status: number; json: any } {
  const lines = r.stdout.trimEnd().split("\n");
  const status = Number(lines.pop());
  return { status, json: JSON.parse(lines.join("\n")) };
}

async function trust(a: string, b: string): Promise<void> {
  const ida = (await pilot(a, ["info"])).json.data.node_id;
  const idb = (await pilot(b, ["info"])).json.data.node_id;
  expect((await pilot(b, ["handshake", String(ida), "netns test"])).code).toBe(0);
  expect((await pilot(a, ["approve", String(idb)])).code).toBe(0);
  for (let i = 0; i < 100; i++) {
    const t = await pilot(b, ["trust"]);
    if (t.json?.data?.trusted?.some((x: any) => x.node_id === ida)) return;
    await Bun.sleep(50);
  }
  throw new Error(`${b} never saw trust with ${a}`);
}

const addresses = new Map<string, string>();
const gatewayPids = new Set<number>();
const client = "client";

beforeAll(async () => {
  if (skipReason) return;
  const rv = await spawnInNs([...pilotCommand(), "rendezvous", "--json", "--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0"], { PILOT_HOME: join(dir, "rendezvous") }, /\{.*"registry".*\}/);
  const ready = JSON.parse(rv.match[0]).data;
  for (const [name, hostname] of [["analyst", "data-analyst"], ["users", "users"], ["orders", "orders"], ["inventory", "inventory"], [client, "client-b"]]) {
    homes.set(name!, join(dir, name!));
    const r = await pilot(name!, ["daemon", "start", "--registry", ready.registry, "--beacon", ready.beacon, "--listen", "127.0.0.1:0", "--hostname", hostname!]);
    if (r.code !== 0) throw new Error(`daemon ${name} did not start: ${r.stderr}`);
    pids.add(r.json.data.pid);
    addresses.set(name!, r.json.data.address);
  }
  await trust("users", "orders");
  for (const s of ["analyst", "users", "orders", "inventory"]) await trust(s, client);
  await spawnInNs([process.execPath, "examples/http-server.ts"], { PILOT_HOME: homes.get("analyst")! }, /listening on pilot port 80/);
  for (const s of ["users", "orders", "inventory"]) await spawnInNs([process.execPath, `examples/mesh/${s}.ts`], { PILOT_HOME: homes.get(s)! }, new RegExp(`${s} service listening`));
  // The seed's secure service on the analyst's port 443: the shipped example, next to http-server.ts on 80.
  await spawnInNs([process.execPath, "examples/secure-server.ts"], { PILOT_HOME: homes.get("analyst")! }, /Secure HTTP server on pilot port 443/);
}, 90_000);

afterAll(async () => {
  if (skipReason && !existsSync(`/run/netns/${NS}`)) return;
  for (const pid of [...gatewayPids, ...pids]) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone
    }
  }
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && [...gatewayPids, ...pids].some(alive)) await Bun.sleep(50);
  for (const pid of [...gatewayPids, ...pids]) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  spawnSync("ip", ["netns", "del", NS]);
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe.skipIf(skipReason !== null)(`gateway as root in network namespace ${NS}`, () => {
  test("sudo pilot gateway start --ports 80 data-analyst: 10.4.0.1 on lo, and curl http://10.4.0.1/api/status", async () => {
    const r = await pilot(client, ["gateway", "start", "--ports", "80", "data-analyst"]);
    expect({ code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ code: 0, stderr: "" });
    gatewayPids.add(r.json.data.pid);
    expect(r.json.data).toMatchObject({
      subnet: "10.4.0.0/16",
      started: true,
      mappings: [{ local_ip: "10.4.0.1", pilot_addr: addresses.get("analyst"), hostname: "data-analyst", ports: [80] }],
    });
    expect(aliases()).toEqual(["10.4.0.1/32"]);
    const ledger = JSON.parse(readFileSync(join(homes.get(client)!, "gateway", "state.json"), "utf8"));
    expect(ledger).toMatchObject({ pid: r.json.data.pid, subnet: "10.4.0.0/16", aliases: ["10.4.0.1"] });

    const res = body(await curl("http://10.4.0.1/api/status"));
    expect(res).toEqual({ status: 200, json: { status: "healthy", agent: addresses.get("analyst"), version: "1.0.0" } });

    const stop = await pilot(client, ["gateway", "stop"]);
    expect(stop.json.data).toMatchObject({ pid: r.json.data.pid, removed_aliases: ["10.4.0.1"], forced: false });
    expect(aliases()).toEqual([]);
    expect((await curl("http://10.4.0.1/api/status")).code).not.toBe(0);
  }, 30_000);

  test("the seed's port 443: the agent stays mapped on 80 and gets --secure 443 at the same IP; a plain 443 says to use --secure", async () => {
    const first = await inNs([...pilotCommand(), "gateway", "start", "--ports", "80", "data-analyst"], { PILOT_HOME: homes.get(client)! });
    expect({ code: first.code, stderr: first.code === 0 ? "" : first.stderr }).toEqual({ code: 0, stderr: "" });
    expect(first.stdout.trim()).toBe(`Gateway active: ${addresses.get("analyst")} -> 10.4.0.1:80`);
    const second = await inNs([...pilotCommand(), "gateway", "start", "--ports", "443", "--secure", "data-analyst"], { PILOT_HOME: homes.get(client)! });
    expect({ code: second.code, stderr: second.code === 0 ? "" : second.stderr }).toEqual({ code: 0, stderr: "" });
    expect(second.stdout.trim()).toBe(`Gateway active: ${addresses.get("analyst")} -> 10.4.0.1:80,443 (secure channel on 443)`);
    const list = await pilot(client, ["gateway", "list"]);
    gatewayPids.add(list.json.data.pid);
    expect(list.json.data.mappings).toMatchObject([{ local_ip: "10.4.0.1", ports: [80, 443], secure_ports: [443], secure: false }]);
    expect(aliases()).toEqual(["10.4.0.1/32"]);

    expect(body(await curl("http://10.4.0.1/api/status")).json.status).toBe("healthy");
    expect(body(await curl("http://10.4.0.1:443/api/secrets"))).toEqual({
      status: 200,
      json: { message: "This payload is double-encrypted", tunnel: "AES-256-GCM (shared tunnel key)", conn: "AES-256-GCM (per-connection X25519 key)" },
    });

    // 443 mapped without --secure (as a reader who skipped the flag would): a 502 that says so.
    expect((await pilot(client, ["gateway", "unmap", "data-analyst", "--ports", "443"])).json.data.remaining_ports).toEqual([80]);
    expect((await pilot(client, ["gateway", "map", "data-analyst", "--ports", "443"])).code).toBe(0);
    const plain = await inNs(["curl", "-sS", "-i", "--max-time", "10", "http://10.4.0.1:443/api/secrets"]);
    expect(plain.stdout).toStartWith("HTTP/1.1 502 Bad Gateway");
    expect(plain.stdout).toContain("X-Pilot-Error: secure_channel_required");
    expect(plain.stdout).toContain("pilot gateway map data-analyst --ports 443 --secure");

    const stop = await pilot(client, ["gateway", "stop"]);
    expect(stop.json.data.removed_aliases).toEqual(["10.4.0.1"]);
    expect(aliases()).toEqual([]);
  }, 60_000);

  test("the REST mesh: start three times -> 10.4.0.1-3, the seed's curls, list, unmap", async () => {
    const out: string[] = [];
    for (const s of ["users", "orders", "inventory"]) {
      const r = await inNs([...pilotCommand(), "gateway", "start", "--ports", "80", s], { PILOT_HOME: homes.get(client)! });
      expect({ s, code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ s, code: 0, stderr: "" });
      out.push(r.stdout.trim());
    }
    expect(out).toEqual([
      `Gateway active: ${addresses.get("users")} -> 10.4.0.1:80`,
      `Gateway active: ${addresses.get("orders")} -> 10.4.0.2:80`,
      `Gateway active: ${addresses.get("inventory")} -> 10.4.0.3:80`,
    ]);
    const list = await pilot(client, ["gateway", "list"]);
    gatewayPids.add(list.json.data.pid);
    expect(list.json.data.mappings.map((m: any) => [m.pilot_addr, m.local_ip, m.ports])).toEqual([
      [addresses.get("users"), "10.4.0.1", [80]],
      [addresses.get("orders"), "10.4.0.2", [80]],
      [addresses.get("inventory"), "10.4.0.3", [80]],
    ]);
    const text = await inNs([...pilotCommand(), "gateway", "list"], { PILOT_HOME: homes.get(client)! });
    expect(text.stdout.split("\n")[0]).toMatch(/^ADDRESS\s+LOCAL IP\s+PORTS/);
    expect(aliases().sort()).toEqual(["10.4.0.1/32", "10.4.0.2/32", "10.4.0.3/32"]);

    expect(body(await curl("http://10.4.0.1/api/users")).json.map((u: any) => u.id)).toEqual(["u1", "u2"]);
    expect(body(await curl("http://10.4.0.2/api/orders?user_id=u1")).json.map((o: any) => o.id)).toEqual(["o1", "o3"]);
    expect(body(await curl("http://10.4.0.3/api/inventory/check?sku=gpu-a100")).json).toEqual({ sku: "gpu-a100", available: true, count: 48 });

    const un = await pilot(client, ["gateway", "unmap", "10.4.0.2"]);
    expect(un.json.data).toMatchObject({ local_ip: "10.4.0.2", hostname: "orders", alias_removed: true });
    expect(aliases().sort()).toEqual(["10.4.0.1/32", "10.4.0.3/32"]);
    expect((await curl("http://10.4.0.2/api/orders")).code).not.toBe(0);
    const back = await pilot(client, ["gateway", "map", "orders"]);
    expect(back.json.data.local_ip).toBe("10.4.0.2");
    expect(body(await curl("http://10.4.0.2/api/orders/o1")).json.user.name).toBe("Alice");
  }, 60_000);

  test("a crashed gateway's aliases are removed by the next start, and by stop", async () => {
    const pid = (await pilot(client, ["gateway", "list"])).json.data.pid;
    process.kill(pid, "SIGKILL");
    for (let i = 0; i < 100 && alive(pid); i++) await Bun.sleep(50);
    expect(aliases().sort()).toEqual(["10.4.0.1/32", "10.4.0.2/32", "10.4.0.3/32"]); // left behind

    // The next start cleans up before it maps.
    const r = await pilot(client, ["gateway", "start", "--ports", "80", "inventory"]);
    expect(r.code).toBe(0);
    gatewayPids.add(r.json.data.pid);
    expect(r.json.data.mappings[0].local_ip).toBe("10.4.0.1");
    expect(aliases()).toEqual(["10.4.0.1/32"]);
    expect(readFileSync(join(homes.get(client)!, "gateway", "gateway.log"), "utf8")).toContain("removed loopback aliases a previous gateway left behind");
    expect(body(await curl("http://10.4.0.1/api/inventory")).status).toBe(200);

    // Crash again; this time `stop` cleans up.
    process.kill(r.json.data.pid, "SIGKILL");
    for (let i = 0; i < 100 && alive(r.json.data.pid); i++) await Bun.sleep(50);
    expect(aliases()).toEqual(["10.4.0.1/32"]);
    const stop = await pilot(client, ["gateway", "stop"]);
    expect(stop.json.data).toEqual({ pid: null, removed_aliases: ["10.4.0.1"], forced: false });
    expect(aliases()).toEqual([]);
    expect((await pilot(client, ["gateway", "stop"])).json.code).toBe("not_running");
  }, 60_000);

  test("an address someone else configured is never taken or removed", async () => {
    expect(spawnSync("ip", ["-n", NS, "addr", "add", "10.4.0.1/32", "dev", "lo"]).status).toBe(0);
    const r = await pilot(client, ["gateway", "start", "--ports", "80", "users"]);
    expect(r.code).toBe(0);
    gatewayPids.add(r.json.data.pid);
    expect(r.json.data.mappings[0].local_ip).toBe("10.4.0.2");
    const stop = await pilot(client, ["gateway", "stop"]);
    expect(stop.json.data.removed_aliases).toEqual(["10.4.0.2"]);
    expect(aliases()).toEqual(["10.4.0.1/32"]);
    spawnSync("ip", ["-n", NS, "addr", "del", "10.4.0.1/32", "dev", "lo"]);
  }, 30_000);

  test("SIGTERM removes the aliases too", async () => {
    const r = await pilot(client, ["gateway", "start", "--ports", "80", "users", "orders"]);
    expect(r.code).toBe(0);
    gatewayPids.add(r.json.data.pid);
    expect(aliases().sort()).toEqual(["10.4.0.1/32", "10.4.0.2/32"]);
    process.kill(r.json.data.pid, "SIGTERM");
    for (let i = 0; i < 100 && alive(r.json.data.pid); i++) await Bun.sleep(50);
    expect(alive(r.json.data.pid)).toBe(false);
    expect(aliases()).toEqual([]);
    expect(existsSync(join(homes.get(client)!, "gateway", "state.json"))).toBe(false);
  }, 30_000);
});
