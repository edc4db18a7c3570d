/**
 * Seed 000 (Run HTTP Services Over an Encrypted Agent Overlay) as written:
 * its `pilotctl gateway` commands, curls and Python `requests` one-liner,
 * each run as the seed prints it (through `sh -c`, with `pilotctl` and
 * `python3` found on PATH), against the programs this project ships in
 * place of the seed's Go ones: examples/http-server.ts (agent A, port 80),
 * examples/secure-server.ts (agent A, port 443), examples/mesh/*.ts, and the
 * clients http-client.ts (DialAddr, http.Client) and secure-client.ts
 * (DialSecure).
 *
 * The seed's addresses (1:0001.0002.0003, ...) are the real addresses of the
 * daemons here. Its sections do not share one gateway (agent A is 10.4.0.1 in
 * the first, Users in the mesh), so the gateway is stopped between them; the
 * port 443 section maps agent A on 80 first, as the sections before it
 * leave it.
 *
 * Everything runs inside a network namespace the lab of test/seeds/support.ts
 * creates and deletes (even on failure): the rendezvous, the daemons, the
 * examples, the gateway on its default 10.4.0.0/16 with real loopback
 * aliases, curl and python3.
 *
 * Skipped, loudly, when not root, when network namespaces are unavailable,
 * or when python3 with requests (Debian: python3-requests) or curl is missing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { dirname } from "node:path";
import type { RunResult } from "../support/cluster.ts";
import { SeedLab } from "./support.ts";

const lab = new SeedLab({ name: "pilot-http-seed", file: "test/seeds/seed000-http.test.ts", untested: "Seed 000's gateway commands, curls and Python one-liner are" });
const ME = "me"; // the daemon whose user runs the gateway, curl and python

/** What the seed's secure service answers on /api/secrets. */
const SECRETS = '{"message":"This payload is double-encrypted","tunnel":"AES-256-GCM (shared tunnel key)","conn":"AES-256-GCM (per-connection X25519 key)"}';

function addr(name: string): string {
  return lab.addresses.get(name)!;
}

/** A command line of the seed, run by sh as my user inside the namespace, with python3 (with requests) on PATH. */
function seed(line: string): Promise<RunResult> {
  const path = `${lab.binDir}:${dirname(lab.python!)}:${process.env.PATH ?? "/usr/bin:/bin"}`;
  return lab.run(["sh", "-c", line], { PILOT_HOME: lab.home(ME), PATH: path });
}

/**
 * Runs `line`, expects exit 0 and no error or warning on stderr (where a
 * gateway start reports its progress and the home it uses), returns stdout.
 */
async function ok(line: string): Promise<string> {
  const r = await seed(line);
  if (r.code !== 0) throw new Error(`${line}: exit ${r.code}\n${r.stdout}${r.stderr}`);
  expect(r.stderr).not.toMatch(/error|warn/i);
  return r.stdout;
}

/** Remembers the running gateway's pid (for cleanup even if `gateway stop` is never reached). */
async function noteGateway(): Promise<void> {
  const pid = (await lab.pilotctl(ME, ["--json", "gateway", "list"])).json?.data?.pid;
  if (typeof pid === "number") lab.pids.add(pid);
}

async function stopGateway(): Promise<void> {
  const r = await lab.pilotctl(ME, ["--json", "gateway", "stop"]);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
}

beforeAll(async () => {
  if (lab.skipReason) return;
  await lab.start();
  for (const [name, hostname] of [["a", "agent-a"], ["users", "users"], ["orders", "orders"], ["inventory", "inventory"], [ME, "agent-b"]] as const) {
    await lab.startDaemon(name, hostname);
  }
  await lab.trust("users", "orders"); // orders looks users up over Pilot
  for (const name of ["a", "users", "orders", "inventory"]) await lab.trust(name, ME);

  const server = lab.spawn([process.execPath, "examples/http-server.ts"], { PILOT_HOME: lab.home("a") });
  expect((await server.waitFor(/HTTP server listening on pilot port 80 \((\S+)\)/))[1]).toBe(addr("a"));
  const secure = lab.spawn([process.execPath, "examples/secure-server.ts"], { PILOT_HOME: lab.home("a") });
  expect((await secure.waitFor(/Secure HTTP server on pilot port 443 \((\S+)\)/))[1]).toBe(addr("a"));
  for (const s of ["users", "orders", "inventory"]) {
    await lab.spawn([process.execPath, `examples/mesh/${s}.ts`], { PILOT_HOME: lab.home(s) }).waitFor(new RegExp(`${s} service listening on pilot port 80`));
  }
}, 120_000);

afterAll(() => lab.stop([ME]), 30_000);

describe.skipIf(lab.skipReason !== null)(`seed 000 as written, in network namespace ${lab.ns}`, () => {
  test("agent B calls agent A's /api/status over Pilot (the seed's DialAddr client and http.Client transport: examples/http-client.ts)", async () => {
    const out = await ok(`${JSON.stringify(process.execPath)} examples/http-client.ts ${addr("a")}`);
    expect(out).toContain(`Body:   {"status":"healthy","agent":"${addr("a")}","version":"1.0.0"}`);
    expect(out).toContain("http-client: all three calls succeeded; the echo matched what was sent");
  }, 30_000);

  test("pilotctl gateway start --ports 80 <agent A>; curl http://10.4.0.1/api/status; the Python requests one-liner", async () => {
    expect(await ok(`pilotctl gateway start --ports 80 ${addr("a")}`)).toBe(`Gateway active: ${addr("a")} -> 10.4.0.1:80\n`);
    await noteGateway();
    expect(await ok("curl http://10.4.0.1/api/status")).toBe(`{"status":"healthy","agent":"${addr("a")}","version":"1.0.0"}\n`);
    expect(await ok(`python3 -c "import requests; print(requests.get('http://10.4.0.1/api/status').json())"`)).toBe(
      `{'status': 'healthy', 'agent': '${addr("a")}', 'version': '1.0.0'}\n`,
    );
  }, 30_000);

  test("multiple agents, multiple local IPs: three starts -> 10.4.0.1-3, and pilotctl gateway list", async () => {
    // Agent A is still mapped from the section before: it keeps 10.4.0.1.
    expect(await ok(`pilotctl gateway start --ports 80 ${addr("a")}  # -> 10.4.0.1`)).toBe(`Gateway active: ${addr("a")} -> 10.4.0.1:80\n`);
    expect(await ok(`pilotctl gateway start --ports 80 ${addr("users")}  # -> 10.4.0.2`)).toBe(`Gateway active: ${addr("users")} -> 10.4.0.2:80\n`);
    expect(await ok(`pilotctl gateway start --ports 80 ${addr("orders")}  # -> 10.4.0.3`)).toBe(`Gateway active: ${addr("orders")} -> 10.4.0.3:80\n`);
    const list = (await ok("pilotctl gateway list")).trimEnd().split("\n");
    expect(list[0]).toMatch(/^ADDRESS\s+LOCAL IP\s+PORTS/);
    expect(list.slice(1).map((l) => l.split(/\s+/).slice(0, 3))).toEqual([
      [addr("a"), "10.4.0.1", "80"],
      [addr("users"), "10.4.0.2", "80"],
      [addr("orders"), "10.4.0.3", "80"],
    ]);
    await stopGateway();
  }, 30_000);

  test("the REST mesh through the gateway: Users -> 10.4.0.1, Orders -> 10.4.0.2, Inventory -> 10.4.0.3, and the seed's three curls", async () => {
    expect(await ok(`pilotctl gateway start --ports 80 ${addr("users")}  # Users  -> 10.4.0.1`)).toBe(`Gateway active: ${addr("users")} -> 10.4.0.1:80\n`);
    await noteGateway();
    expect(await ok(`pilotctl gateway start --ports 80 ${addr("orders")}  # Orders -> 10.4.0.2`)).toBe(`Gateway active: ${addr("orders")} -> 10.4.0.2:80\n`);
    expect(await ok(`pilotctl gateway start --ports 80 ${addr("inventory")}  # Inventory -> 10.4.0.3`)).toBe(`Gateway active: ${addr("inventory")} -> 10.4.0.3:80\n`);

    expect(await ok("curl http://10.4.0.1/api/users")).toBe('[{"id":"u1","name":"Alice","email":"alice@example.com"},{"id":"u2","name":"Bob","email":"bob@example.com"}]\n');
    expect(await ok('curl "http://10.4.0.2/api/orders?user_id=u1"')).toBe(
      '[{"id":"o1","user_id":"u1","item":"GPU Cluster Hours","total":250,"status":"completed"},{"id":"o3","user_id":"u1","item":"Model Training Run","total":1200,"status":"active"}]\n',
    );
    expect(await ok('curl "http://10.4.0.3/api/inventory/check?sku=gpu-a100"')).toBe('{"sku":"gpu-a100","available":true,"count":48}\n');
    // Service-to-service: orders enriches an order with its user, looked up over Pilot.
    const enriched = JSON.parse(await ok("curl http://10.4.0.2/api/orders/o1"));
    expect(enriched).toMatchObject({ order: { id: "o1", user_id: "u1" }, user: { id: "u1", name: "Alice" } });
    await stopGateway();
  }, 30_000);

  test("port 443: agent A mapped on 80, then --ports 443 --secure; curl http://10.4.0.1:443/api/secrets; the DialSecure client", async () => {
    expect(await ok(`pilotctl gateway start --ports 80 ${addr("a")}`)).toBe(`Gateway active: ${addr("a")} -> 10.4.0.1:80\n`);
    await noteGateway();
    expect(await ok(`pilotctl gateway start --ports 443 --secure ${addr("a")}`)).toBe(`Gateway active: ${addr("a")} -> 10.4.0.1:80,443 (secure channel on 443)\n`);
    expect(await ok("curl http://10.4.0.1:443/api/secrets")).toBe(`${SECRETS}\n`);
    expect(await ok("curl http://10.4.0.1/api/status")).toBe(`{"status":"healthy","agent":"${addr("a")}","version":"1.0.0"}\n`); // 80 still plain
    // The seed's client side: DialSecure to 443 and a hand-written GET /api/secrets, agent to agent.
    expect(await ok(`${JSON.stringify(process.execPath)} examples/secure-client.ts ${addr("a")}`)).toBe(`Status: 200\nBody: ${SECRETS}\n`);
    await stopGateway();
  }, 30_000);
});
