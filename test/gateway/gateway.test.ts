/**
 * The gateway against a real rendezvous and real daemons on 127.0.0.1, with a
 * subnet inside 127.0.0.0/8 (no loopback aliases, no root needed for them):
 * the seed's walkthroughs (`gateway start` three times in a row, `list`,
 * curl against the mapped IPs), map/unmap, untrust -> 502, a quiet SSE
 * stream, a slow reader beside a fast one, half-close, stop and a crash.
 *
 * The seed serves on port 80, which needs root to listen on; CI runs as
 * root. Without root the same flows use port 8080, and the REST mesh (whose
 * examples serve on 80) is skipped with a message.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { connect, type Driver, type PilotServer } from "../../src/driver/index.ts";
import { statusService } from "../../examples/http-server.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { runExample, stopAll, type Spawned } from "../examples/support.ts";
import { alive, curl, gw, IS_ROOT, privateSubnet, readAll, stopGateways, tcp, until } from "./support.ts";

const PORT = IS_ROOT ? 80 : 8080;
const SSE = 8001;
const BULK = 8002;
const WC = 8003;
const net = privateSubnet(77);
const SECURE = 8443;
const BULK_BYTES = 48 << 20;

if (!IS_ROOT) console.warn(`test/gateway: not root, so the HTTP service uses port ${PORT} and the REST mesh (examples on port 80) is skipped`);

let c: Cluster;
let analyst: Driver;
let vault: Driver;
const servers: { close(): Promise<void> | void }[] = [];
const mesh = new Map<string, Spawned>();
let bulkWritten = 0;
const env = () => c.daemon("client").env;

beforeAll(async () => {
  const daemons = [{ name: "analyst", hostname: "data-analyst" }, { name: "client", hostname: "client-b" }, { name: "vault", hostname: "vault" }];
  if (IS_ROOT) daemons.push({ name: "users", hostname: "users" }, { name: "orders", hostname: "orders" }, { name: "inventory", hostname: "inventory" });
  c = await startCluster({ daemons });
  await c.trust("analyst", "client");
  await c.trust("vault", "client");
  if (IS_ROOT) {
    await c.trust("users", "orders");
    for (const s of ["users", "orders", "inventory"]) await c.trust(s, "client");
    for (const s of ["users", "orders", "inventory"]) mesh.set(s, runExample(`mesh/${s}.ts`, c.daemon(s)));
  }

  // The analyst's services, served from this process through its daemon.
  analyst = await connect({ home: c.daemon("analyst").home });
  servers.push(await analyst.serveHttp(PORT, statusService(analyst.address)));
  servers.push(
    await analyst.serveHttp(SSE, (_req, res) => {
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
      res.write("data: first\n\n");
      const timer = setTimeout(() => res.end("data: after 12 s of silence\n\n"), 12_000);
      res.on("close", () => clearTimeout(timer));
    }),
  );
  servers.push(
    await analyst.serveHttp(BULK, (_req, res) => {
      res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": BULK_BYTES });
      const chunk = Buffer.alloc(64 << 10, 0x5a);
      let sent = 0;
      const pump = () => {
        while (sent < BULK_BYTES) {
          sent += chunk.length;
          bulkWritten = sent;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
        res.end();
      };
      pump();
    }),
  );
  // A byte counter that answers only after the client's FIN, on a raw stream.
  const wc: PilotServer = await analyst.listen(WC, { allowHalfOpen: true });
  wc.on("connection", (s) => {
    let n = 0;
    s.on("data", (b: Buffer) => (n += b.length));
    s.on("end", () => s.end(`${n} bytes\n`));
    s.on("error", () => {});
  });
  servers.push({ close: () => wc.close() });

  // vault serves HTTP over the secure channel on SECURE, and plainly on PORT.
  vault = await connect({ home: c.daemon("vault").home });
  servers.push(await vault.serveHttp(SECURE, statusService(vault.address), { secure: true }));
  servers.push(await vault.serveHttp(PORT, statusService(vault.address)));

  for (const [s, p] of mesh) await p.waitFor(new RegExp(`${s} service listening on pilot port 80`));
}, 60_000);

afterAll(async () => {
  await stopGateways();
  for (const s of servers) await s.close();
  await analyst?.close();
  await vault?.close();
  await stopAll();
  await c?.stop();
}, 60_000);

describe("gateway on a 127.x subnet", () => {
  let pid = 0;

  test("start maps the agent to .1 and returns once it listens: curl and fetch work unchanged", async () => {
    const ports = [PORT, SSE, BULK, WC].join(",");
    const r = await gw(env(), ["start", "--subnet", net.cidr, "--ports", ports, "data-analyst"]);
    expect(r.code).toBe(0);
    pid = r.json.data.pid;
    expect(r.json.data).toEqual({
      pid,
      subnet: net.cidr,
      started: true,
      pilot_home: c.daemon("client").home,
      pilot_home_from: "PILOT_HOME",
      mappings: [{ local_ip: net.ip(1), pilot_addr: c.daemon("analyst").address, hostname: "data-analyst", ports: [PORT, SSE, BULK, WC].sort((a, b) => a - b), secure_ports: [], secure: false }],
    });
    expect(alive(pid)).toBe(true);

    const base = `http://${net.ip(1)}${PORT === 80 ? "" : `:${PORT}`}`;
    const res = await curl(`${base}/api/status`);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ status: "healthy", agent: c.daemon("analyst").address, version: "1.0.0" });

    const echo = await fetch(`${base}/api/echo`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ hello: "pilot", n: [1, 2, 3] }) });
    expect(echo.status).toBe(200);
    expect(await echo.json()).toEqual({ hello: "pilot", n: [1, 2, 3] });

    // Keep-alive: many requests over one fetch connection pool.
    const many = await Promise.all(Array.from({ length: 20 }, () => fetch(`${base}/api/status`).then((x) => x.json())));
    expect(many.every((m: any) => m.status === "healthy")).toBe(true);
  }, 30_000);

  test.skipIf(!IS_ROOT)("start three more times: each call adds to the running gateway (the REST mesh on .2-.4)", async () => {
    const lines: string[] = [];
    for (const s of ["users", "orders", "inventory"]) {
      const r = await gw(env(), ["start", "--ports", "80", s], { json: false });
      expect({ s, code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ s, code: 0, stderr: "" });
      lines.push(r.stdout.trim());
    }
    expect(lines).toEqual([
      `Gateway active: ${c.daemon("users").address} -> ${net.ip(2)}:80`,
      `Gateway active: ${c.daemon("orders").address} -> ${net.ip(3)}:80`,
      `Gateway active: ${c.daemon("inventory").address} -> ${net.ip(4)}:80`,
    ]);
    const users = await curl(`http://${net.ip(2)}/api/users`);
    expect(JSON.parse(users.body).map((u: any) => u.name)).toEqual(["Alice", "Bob"]);
    const orders = await curl(`http://${net.ip(3)}/api/orders?user_id=u1`);
    expect(JSON.parse(orders.body).map((o: any) => o.id)).toEqual(["o1", "o3"]);
    const check = await curl(`http://${net.ip(4)}/api/inventory/check?sku=gpu-a100`);
    expect(JSON.parse(check.body)).toEqual({ sku: "gpu-a100", available: true, count: 48 });
    // orders calls users over Pilot by itself; through the gateway it looks like any REST call.
    const o1 = await curl(`http://${net.ip(3)}/api/orders/o1`);
    expect(JSON.parse(o1.body).user.name).toBe("Alice");
  }, 30_000);

  test("a start with a different --subnet is refused while a gateway runs", async () => {
    const r = await gw(env(), ["start", "--subnet", "127.99.0.0/24", "data-analyst"]);
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("already_exists");
    expect(r.json.message).toContain(`a gateway is already running with subnet ${net.cidr} (pid ${pid})`);
  });

  test("list: ADDRESS  LOCAL IP  PORTS, and --json", async () => {
    const text = await gw(env(), ["list"], { json: false });
    expect(text.code).toBe(0);
    const rows = text.stdout.trim().split("\n");
    expect(rows[0]).toMatch(/^ADDRESS\s+LOCAL IP\s+PORTS\s+HOSTNAME\s+CONNS$/);
    expect(rows[1]).toMatch(new RegExp(`^${c.daemon("analyst").address}\\s+${net.ip(1).replace(/\./g, "\\.")}\\s+${[PORT, SSE, BULK, WC].sort((a, b) => a - b).join(",")}\\s+data-analyst\\s+\\d+$`));
    expect(rows.length).toBe(IS_ROOT ? 5 : 2);
    const json = await gw(env(), ["list"]);
    expect(json.json.data.pid).toBe(pid);
    expect(json.json.data.subnet).toBe(net.cidr);
    expect(json.json.data.total).toBe(IS_ROOT ? 4 : 1);
    const m = json.json.data.mappings[0];
    expect(m.local_ip).toBe(net.ip(1));
    expect(m.total_connections).toBeGreaterThan(0);
    expect(m.bytes_down).toBeGreaterThan(0);
  });

  test("map prints the local IP; the same agent keeps its IP; errors say what to do", async () => {
    // (The ports are named: without root, the default port 80 could not be bound.)
    const again = await gw(env(), ["map", "data-analyst", "--ports", String(PORT)], { json: false });
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(`${net.ip(1)}\n`);
    const byAddress = await gw(env(), ["map", c.daemon("analyst").address, "--ports", String(PORT)]);
    expect(byAddress.json.data).toMatchObject({ local_ip: net.ip(1), created: false });
    const byId = await gw(env(), ["map", String(c.daemon("analyst").nodeId), "--ports", String(PORT)]);
    expect(byId.json.data.local_ip).toBe(net.ip(1));

    const unknown = await gw(env(), ["map", "nobody-here", "--ports", String(PORT)]);
    expect(unknown.code).toBe(1);
    expect(unknown.json.code).toBe("not_found");
    expect(unknown.json.hint).toContain('pilot handshake nobody-here "why"');

    const outside = await gw(env(), ["map", "data-analyst", "--ip", "10.1.2.3", "--ports", String(PORT)]);
    expect(outside.json.code).toBe("already_exists"); // mapped already, at another address
    const badPorts = await gw(env(), ["map", "data-analyst", "--ports", "80,x"]);
    expect(badPorts.json.code).toBe("invalid_argument");
  });

  test("unmap by IP or hostname: listeners close; the next map takes the lowest free address", async () => {
    const self = await gw(env(), ["map", "client-b", "--ports", String(PORT)]);
    expect(self.code).toBe(0);
    const ip = self.json.data.local_ip;
    expect(ip).toBe(net.ip(IS_ROOT ? 5 : 2));
    const un = await gw(env(), ["unmap", ip]);
    expect(un.json.data).toMatchObject({ local_ip: ip, hostname: "client-b", alias_removed: false });
    const refused = await curl(`http://${ip}:${PORT}/`);
    expect(refused.code).toBe(7); // connection refused: nothing listens there now
    const missing = await gw(env(), ["unmap", ip]);
    expect(missing.json).toMatchObject({ code: "not_found", message: `no mapping for ${ip}` });

    if (IS_ROOT) {
      const byName = await gw(env(), ["unmap", "orders"], { json: false });
      expect(byName.stdout.trim()).toBe(`unmapped ${net.ip(3)} (orders, ${c.daemon("orders").address})`);
      const back = await gw(env(), ["map", "orders"]);
      expect(back.json.data.local_ip).toBe(net.ip(3));
    }
  });

  test("--secure is per port: the same agent plain on one port and secure on another, at one IP", async () => {
    const plain = await gw(env(), ["map", "vault", "--ports", String(PORT)]);
    expect(plain.json.data).toMatchObject({ hostname: "vault", ports: [PORT], secure_ports: [], secure: false, created: true });
    const ip = plain.json.data.local_ip;
    const secure = await gw(env(), ["map", "vault", "--secure", "--ports", String(SECURE)]);
    expect(secure.code).toBe(0);
    expect(secure.json.data).toMatchObject({ local_ip: ip, ports: [PORT, SECURE], secure_ports: [SECURE], secure: false, created: false });

    for (const port of [PORT, SECURE]) {
      const res = await curl(`http://${ip}:${port}/api/status`);
      expect({ port, status: res.status }).toEqual({ port, status: 200 });
      expect(JSON.parse(res.body).agent).toBe(c.daemon("vault").address);
    }
    const list = await gw(env(), ["list"], { json: false });
    expect(list.stdout).toMatch(new RegExp(`${ip.replace(/\./g, "\\.")}\\s+${PORT},${SECURE} \\(secure: ${SECURE}\\)\\s+vault`));
    const json = (await gw(env(), ["list"])).json.data.mappings.find((m: any) => m.hostname === "vault");
    expect(json).toMatchObject({ local_ip: ip, ports: [PORT, SECURE], secure_ports: [SECURE], secure: false });

    // Mapping a port again in the other mode: an error that says how to change it; nothing changes.
    const again = await gw(env(), ["map", "vault", "--ports", String(SECURE)]);
    expect(again.code).toBe(1);
    expect(again.json.code).toBe("already_exists");
    expect(again.json.message).toBe(`port ${SECURE} of vault (${c.daemon("vault").address}) is already mapped on ${ip} with --secure`);
    expect(again.json.hint).toBe(`a port is either plain or secure; to change it: pilot gateway unmap vault --ports ${SECURE}, then map it again without --secure`);
    const same = await gw(env(), ["map", "vault", "--secure", "--ports", String(SECURE)]);
    expect(same.json.data).toMatchObject({ ports: [PORT, SECURE], secure_ports: [SECURE], created: false });
    expect((await curl(`http://${ip}:${SECURE}/api/status`)).status).toBe(200);

    // unmap --ports removes one port; the agent keeps its IP and its other port.
    const un = await gw(env(), ["unmap", "vault", "--ports", String(SECURE)]);
    expect(un.json.data).toMatchObject({ local_ip: ip, removed_ports: [SECURE], remaining_ports: [PORT], alias_removed: false });
    expect((await curl(`http://${ip}:${SECURE}/api/status`)).code).toBe(7);
    expect((await curl(`http://${ip}:${PORT}/api/status`)).status).toBe(200);
    const text = await gw(env(), ["unmap", "vault", "--ports", String(SECURE)], { json: false });
    expect(text.code).toBe(1);
    expect(text.stderr).toContain(`vault (${c.daemon("vault").address}) is not mapped on port ${SECURE}`);
  }, 30_000);

  test("a plain port on a secure-only service: 502 that says to map it with --secure, at once", async () => {
    const wrong = await gw(env(), ["map", "vault", "--ports", String(SECURE)]);
    expect(wrong.json.data).toMatchObject({ ports: [PORT, SECURE], secure_ports: [] });
    const ip = wrong.json.data.local_ip;
    const t = performance.now();
    const bad = await curl(`http://${ip}:${SECURE}/api/status`);
    expect(performance.now() - t).toBeLessThan(1500);
    expect(bad.status).toBe(502);
    expect(bad.headers).toContain("X-Pilot-Error: secure_channel_required");
    expect(bad.headers).toContain(`X-Pilot-Hint: map the port with --secure: pilot gateway unmap vault --ports ${SECURE} && pilot gateway map vault --ports ${SECURE} --secure`);
    expect(bad.body).toContain(`502 Bad Gateway: vault (${c.daemon("vault").address}) serves Pilot port ${SECURE} only over the secure channel, and this port is mapped without --secure`);
    expect(bad.body).toContain(`hint: map the port with --secure: pilot gateway unmap vault --ports ${SECURE} && pilot gateway map vault --ports ${SECURE} --secure`);
    // A client that is not HTTP gets the agent's bytes as they are (the gateway is a TCP bridge).
    const s = await tcp(ip, SECURE);
    const raw = readAll(s);
    s.write(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]));
    const r = await raw;
    expect(r.data.length === 0 || r.data[0] === 0x15).toBe(true);
    s.destroy();
    // The hint's commands fix it.
    expect((await gw(env(), ["unmap", "vault", "--ports", String(SECURE)])).code).toBe(0);
    expect((await gw(env(), ["map", "vault", "--ports", String(SECURE), "--secure"])).code).toBe(0);
    expect((await curl(`http://${ip}:${SECURE}/api/status`)).status).toBe(200);

    // The other way round: --secure on a plain service is a 502 that says so too.
    expect((await gw(env(), ["unmap", "vault", "--ports", String(PORT)])).code).toBe(0);
    expect((await gw(env(), ["map", "vault", "--ports", String(PORT), "--secure"])).json.data).toMatchObject({ ports: [PORT, SECURE], secure_ports: [PORT, SECURE], secure: true });
    const other = await curl(`http://${ip}:${PORT}/api/status`);
    expect(other.status).toBe(502);
    expect(other.headers).toContain("X-Pilot-Error: secure_channel_unsupported");
    expect(other.body).toContain(`vault (${c.daemon("vault").address}) does not speak the secure channel on Pilot port ${PORT}, which is mapped with --secure`);
    expect(other.body).toContain(`hint: map the port without --secure: pilot gateway unmap vault --ports ${PORT} && pilot gateway map vault --ports ${PORT}`);
    expect((await gw(env(), ["unmap", "vault"])).json.data).toMatchObject({ removed_ports: [PORT, SECURE], remaining_ports: [] });
  }, 30_000);

  test("half-close: the client's FIN reaches the agent, whose answer still comes back", async () => {
    const s = await tcp(net.ip(1), WC);
    const reply = readAll(s);
    s.write(Buffer.alloc(300_000, 1));
    s.end(Buffer.alloc(1234, 2));
    const r = await reply;
    expect(r.data.toString()).toBe("301234 bytes\n");
    s.destroy();
  });

  test("an SSE stream quiet for 12 s is not cut, while a slow reader does not stall anyone else", async () => {
    const sse = (async () => {
      const res = await fetch(`http://${net.ip(1)}:${SSE}/events`);
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let text = "";
      const started = performance.now();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
      return { text, seconds: (performance.now() - started) / 1000 };
    })();

    // A client that asks for 48 MiB and does not read.
    bulkWritten = 0;
    const slow = await tcp(net.ip(1), BULK);
    slow.pause();
    slow.write(`GET /bulk HTTP/1.1\r\nHost: ${net.ip(1)}\r\n\r\n`);
    await until("the bulk response to start", () => bulkWritten > 0);
    await Bun.sleep(1000);
    const stalledAt = bulkWritten;
    expect(stalledAt).toBeLessThan(BULK_BYTES / 2); // held back end to end, not buffered by the gateway

    // Meanwhile other clients are served at once.
    const t = performance.now();
    for (let i = 0; i < 10; i++) {
      const r = await curl(`http://${net.ip(1)}:${PORT}/api/status`);
      expect(r.status).toBe(200);
    }
    expect((performance.now() - t) / 10).toBeLessThan(500);
    expect(bulkWritten).toBeLessThan(BULK_BYTES / 2);

    // The slow reader gets every byte once it reads.
    let got = 0;
    let head = "";
    const done = new Promise<void>((resolve) => {
      slow.on("data", (b: Buffer) => {
        if (head.length < 4096 && !head.includes("\r\n\r\n")) head += b.toString("latin1", 0, Math.min(b.length, 4096));
        got += b.length;
        if (got >= BULK_BYTES) resolve();
      });
    });
    slow.resume();
    await done;
    expect(head.startsWith("HTTP/1.1 200 OK")).toBe(true);
    slow.destroy();

    const { text, seconds } = await sse;
    expect(text).toBe("data: first\n\ndata: after 12 s of silence\n\n");
    expect(seconds).toBeGreaterThan(11);
  }, 40_000);

  test("the local daemon restarts: 502 while it is down, then the gateway reconnects by itself", async () => {
    await c.stopDaemon("client");
    const down = await curl(`http://${net.ip(1)}:${PORT}/api/status`);
    expect(down.status).toBe(502);
    expect(down.headers).toContain("X-Pilot-Error: not_running");
    expect(down.body).toContain("the local Pilot daemon is not running");
    expect(down.body).toContain("hint: start it with: pilot daemon start");
    expect((await gw(env(), ["list"])).json.data.pid).toBe(pid); // the gateway itself stays up

    await c.startDaemon({ name: "client", hostname: "client-b" });
    const back = await until("the gateway to reach the agent again", async () => {
      const r = await curl(`http://${net.ip(1)}:${PORT}/api/status`);
      return r.status === 200 ? r : null;
    }, 20_000);
    expect(JSON.parse(back.body).agent).toBe(c.daemon("analyst").address);
  }, 40_000);

  test("untrust: the next request fails at once with a 502 that says why", async () => {
    const before = await curl(`http://${net.ip(1)}:${PORT}/api/status`);
    expect(before.status).toBe(200);
    const u = await c.pilot("analyst", ["untrust", "client-b"]);
    expect(u.code).toBe(0);
    const t = performance.now();
    const after = await curl(`http://${net.ip(1)}:${PORT}/api/status`);
    expect(performance.now() - t).toBeLessThan(1500);
    expect(after.status).toBe(502);
    expect(after.headers).toMatch(/X-Pilot-Error: (not_found|not_trusted)/);
    expect(after.body).toContain(`data-analyst (${c.daemon("analyst").address})`);
    expect(after.body).toMatch(/trust/);
    expect(after.body).toContain('pilot handshake data-analyst "why"');
    // Trust again (once the client has seen the revocation): the same mapping works again.
    await until("the client to see the revocation", async () => {
      const t = await c.pilot("client", ["trust"]);
      return t.json?.data?.trusted?.every((x: any) => x.node_id !== c.daemon("analyst").nodeId) === true;
    });
    await c.trust("analyst", "client");
    const again = await until("the mapping to work again", async () => {
      const r = await curl(`http://${net.ip(1)}:${PORT}/api/status`);
      return r.status === 200 ? r : null;
    });
    expect(JSON.parse(again.body).status).toBe("healthy");
  }, 30_000);

  test("stop: everything closes, and every command then says not_running", async () => {
    const r = await gw(env(), ["stop"]);
    expect(r.code).toBe(0);
    expect(r.json.data).toMatchObject({ pid, removed_aliases: [], forced: false });
    expect(alive(pid)).toBe(false);
    const curlAfter = await curl(`http://${net.ip(1)}:${PORT}/api/status`);
    expect(curlAfter.code).toBe(7);
    for (const args of [["list"], ["map", "data-analyst"], ["unmap", net.ip(1)], ["stop"]]) {
      const x = await gw(env(), args);
      expect({ args, code: x.code, error: x.json?.code }).toEqual({ args, code: 1, error: "not_running" });
      expect(x.json.hint).toContain("pilot gateway start");
    }
    const dir = join(c.daemon("client").home, "gateway");
    expect(existsSync(join(dir, "gateway.sock"))).toBe(false);
    expect(existsSync(join(dir, "state.json"))).toBe(false);
  });

  test("a crashed gateway (SIGKILL) is replaced cleanly by the next start", async () => {
    const first = await gw(env(), ["start", "--subnet", net.cidr, "--ports", String(PORT), "data-analyst"]);
    expect(first.code).toBe(0);
    const crashed = first.json.data.pid;
    process.kill(crashed, "SIGKILL");
    await until("the gateway to die", () => !alive(crashed));
    const list = await gw(env(), ["list"]);
    expect(list.json.code).toBe("not_running");

    const second = await gw(env(), ["start", "--subnet", net.cidr, "--ports", String(PORT), "data-analyst"]);
    expect(second.code).toBe(0);
    expect(second.json.data.started).toBe(true);
    expect(second.json.data.pid).not.toBe(crashed);
    expect(second.json.data.mappings[0].local_ip).toBe(net.ip(1));
    const res = await curl(`http://${net.ip(1)}:${PORT}/api/status`);
    expect(res.status).toBe(200);
    expect((await gw(env(), ["stop"])).code).toBe(0);
  }, 30_000);

  test("a start whose target is not visible starts nothing", async () => {
    const r = await gw(env(), ["start", "--subnet", net.cidr, "--ports", String(PORT), "data-analyst", "nobody-here"]);
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("not_found");
    expect(r.json.hint).toContain("pilot handshake nobody-here");
    const list = await gw(env(), ["list"]);
    expect(list.json.code).toBe("not_running");
  }, 30_000);
});
