/**
 * `pilot expose` with real daemons: a rendezvous, node A exposing local TCP
 * services (run by this test on 127.0.0.1), node B trusted by A, node C a
 * stranger. Bridging both ways with integrity and backpressure, half-close
 * in both directions, refused targets, trust, loopback-only targets,
 * list/remove, and restore after a daemon restart.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { connect, type Driver, type PilotSocket } from "../../src/driver/index.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";

let c: Cluster;
const servers: net.Server[] = [];
const drivers: Driver[] = [];

/** A TCP service on 127.0.0.1; returns its port. */
async function tcpService(onConnection: (socket: net.Socket) => void): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    accepted++;
    onConnection(socket);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as net.AddressInfo).port, accepted: () => accepted };
}

/** A port on 127.0.0.1 where nothing listens (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function driverOf(name: string): Promise<Driver> {
  const d = await connect({ home: c.daemon(name).home });
  drivers.push(d);
  return d;
}

function readAll(socket: PilotSocket | net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.once("end", () => resolve(Buffer.concat(chunks)));
    socket.once("error", reject);
  });
}

let echo: { port: number; accepted: () => number };

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "a", hostname: "expose-a" }, { name: "b" }, { name: "c" }, { name: "d" }] });
  await c.trust("a", "b");
  await c.trust("a", "d");
  // Echo: every byte back; our FIN after theirs.
  echo = await tcpService((s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
});

afterAll(async () => {
  for (const d of drivers) await d.close().catch(() => {});
  for (const s of servers) s.close();
  await c?.stop();
});

describe("pilot expose", () => {
  test("a trusted node reaches the local service through the exposed port (CLI both ends)", async () => {
    const r = await c.pilot("a", ["expose", "8080", "--to", `127.0.0.1:${echo.port}`]);
    expect(r.code).toBe(0);
    expect(r.json.data).toMatchObject({ port: 8080, target: `127.0.0.1:${echo.port}`, allow_remote_target: false, active: true, connections: 0 });
    const reply = await c.pilot("b", ["connect", "expose-a", "8080", "--message", "hello through the bridge"]);
    expect(reply.code).toBe(0);
    expect(reply.json.data.response).toBe("hello through the bridge");
    const text = await c.pilot("a", ["expose", "list"], { json: false });
    expect(text.stdout).toContain(`127.0.0.1:${echo.port}`);
    expect(text.stdout).toMatch(/^PORT\s+TARGET\s+STATE/);
  });

  test("8 MiB each way with integrity: backpressure both ways, the echo completes after our FIN", async () => {
    const b = await driverOf("b");
    const socket = await b.dial(c.daemon("a").address, 8080, { allowHalfOpen: true });
    const data = randomBytes(8 * 1024 * 1024);
    const back = readAll(socket);
    socket.end(data);
    const got = await back;
    expect(got.length).toBe(data.length);
    expect(createHash("sha256").update(got).digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
    socket.destroy();
    const list = await c.pilot("a", ["expose", "list"]);
    const e = list.json.data.exposes.find((x: any) => x.port === 8080);
    expect(e.bytes_in).toBeGreaterThanOrEqual(data.length);
    expect(e.bytes_out).toBeGreaterThanOrEqual(data.length);
  }, 60_000);

  test("half-close from the service: it sends, ends its side, and still receives what the caller sends after", async () => {
    let resolveHeard!: (b: Buffer) => void;
    const heard = new Promise<Buffer>((r) => (resolveHeard = r));
    const svc = await tcpService((s) => {
      s.on("error", () => {});
      s.end("banner then FIN\n");
      readAll(s).then(resolveHeard, () => {});
    });
    expect((await c.pilot("a", ["expose", "8083", "--to", `localhost:${svc.port}`])).code).toBe(0);
    const b = await driverOf("b");
    const socket = await b.dial(c.daemon("a").address, 8083, { allowHalfOpen: true });
    const first = await readAll(socket);
    expect(first.toString()).toBe("banner then FIN\n");
    socket.end("sent after the service's FIN");
    expect((await heard).toString()).toBe("sent after the service's FIN");
    socket.destroy();
  });

  test("a refused target resets the caller's stream; the failure is counted", async () => {
    const dead = await closedPort();
    expect((await c.pilot("a", ["expose", "8081", "--to", `127.0.0.1:${dead}`])).code).toBe(0);
    const b = await driverOf("b");
    const socket = await b.dial(c.daemon("a").address, 8081);
    const error = await new Promise<any>((resolve) => {
      socket.once("error", resolve);
      socket.once("end", () => resolve(null));
      socket.resume();
    });
    expect(error?.code).toBe("ECONNRESET");
    expect(error?.pilotCode).toBe("connection_reset");
    const cli = await c.pilot("b", ["connect", "expose-a", "8081", "--message", "anyone?"]);
    expect(cli.code).toBe(1);
    expect(cli.json.code).toBe("connection_reset");
    const list = await c.pilot("a", ["expose", "list"]);
    expect(list.json.data.exposes.find((x: any) => x.port === 8081).failed_connections).toBe(2);
    expect((await c.pilot("a", ["expose", "remove", "8081"])).code).toBe(0);
  });

  test("a stranger cannot reach an exposed port, and the service never sees a connection", async () => {
    const before = echo.accepted();
    const stranger = await driverOf("c");
    const error = await stranger.dial(c.daemon("a").address, 8080, { timeoutMs: 3000 }).then(
      (s) => {
        s.destroy();
        return null;
      },
      (e) => e,
    );
    expect(error).not.toBeNull();
    expect(["not_found", "not_trusted", "unreachable", "timeout", "connection_refused"]).toContain(error.code);
    expect(echo.accepted()).toBe(before);
  });

  test("untrust cuts a bridged connection at once and keeps the node out afterwards", async () => {
    let serviceClosed!: () => void;
    const closed = new Promise<void>((r) => (serviceClosed = r));
    const svc = await tcpService((s) => {
      s.on("error", () => {});
      s.on("close", () => serviceClosed());
      s.pipe(s);
    });
    expect((await c.pilot("a", ["expose", "8084", "--to", `127.0.0.1:${svc.port}`])).code).toBe(0);
    const d = await driverOf("d");
    const socket = await d.dial(c.daemon("a").address, 8084);
    socket.write("still trusted");
    await new Promise((r) => socket.once("data", r));
    const cut = new Promise<any>((resolve) => {
      socket.once("error", resolve);
      socket.once("close", () => resolve(null));
    });
    expect((await c.pilot("a", ["untrust", String(c.daemon("d").nodeId)])).code).toBe(0);
    expect((await cut)?.pilotCode).toMatch(/not_trusted|connection_reset/);
    await closed; // the bridge let go of the TCP side too
    const again = await d.dial(c.daemon("a").address, 8084, { timeoutMs: 3000 }).then(
      (s) => {
        s.destroy();
        return null;
      },
      (e) => e,
    );
    expect(again).not.toBeNull();
    expect(svc.accepted()).toBe(1);
    expect((await c.pilot("a", ["expose", "remove", "8084"])).code).toBe(0);
  });

  test("only loopback targets by default; --allow-remote-target lets one through; the file never holds a refused one", async () => {
    for (const to of ["10.1.2.3:80", "example.com:80", "[fe80::1]:80", "0.0.0.0:80"]) {
      const r = await c.pilot("a", ["expose", "9000", "--to", to]);
      expect(r.code).toBe(2);
      expect(r.json.code).toBe("invalid_argument");
      expect(r.json.message).toContain("only loopback targets");
      expect(r.json.hint).toContain("--allow-remote-target");
    }
    const file = join(c.daemon("a").home, "expose.json");
    expect(existsSync(file) ? readFileSync(file, "utf8") : "").not.toContain('"port": 9000');
    for (const to of ["127.0.0.2:80", "[::1]:80", "LOCALHOST:80"]) {
      const r = await c.pilot("a", ["expose", "9000", "--to", to]);
      expect(r.code).toBe(0);
      expect((await c.pilot("a", ["expose", "remove", "9000"])).code).toBe(0);
    }
    // Accepted with the flag (nothing connects to it in this test: no traffic leaves the machine).
    const allowed = await c.pilot("a", ["expose", "9001", "--to", "db.internal:5432", "--allow-remote-target"]);
    expect(allowed.code).toBe(0);
    expect(allowed.json.data.allow_remote_target).toBe(true);
    const removed = await c.pilot("a", ["expose", "remove", "9001"]);
    expect(removed.json.data).toMatchObject({ port: 9001, target: "db.internal:5432", connections_closed: 0 });
  });

  test("usage and argument errors exit 2, clear codes for taken ports", async () => {
    expect((await c.pilot("a", ["expose", "8090"])).code).toBe(2);
    expect((await c.pilot("a", ["expose"])).code).toBe(2);
    expect((await c.pilot("a", ["expose", "remove"])).code).toBe(2);
    const badPort = await c.pilot("a", ["expose", "70000", "--to", "8000"]);
    expect(badPort.code).toBe(2);
    expect(badPort.json.code).toBe("invalid_argument");
    const badTarget = await c.pilot("a", ["expose", "8090", "--to", "127.0.0.1"]);
    expect(badTarget.code).toBe(2);
    expect(badTarget.json.code).toBe("invalid_argument");
    const taken = await c.pilot("a", ["expose", "8080", "--to", "8000"]);
    expect(taken.json.code).toBe("already_exists");
    const echoPort = await c.pilot("a", ["expose", "7", "--to", "8000"]);
    expect(echoPort.json.code).toBe("port_in_use");
    const missing = await c.pilot("a", ["expose", "remove", "8099"]);
    expect(missing.code).toBe(1);
    expect(missing.json.code).toBe("not_found");
  });

  test("remove resets open connections; new ones are refused", async () => {
    const b = await driverOf("b");
    const socket = await b.dial(c.daemon("a").address, 8080);
    socket.write("ping");
    await new Promise((r) => socket.once("data", r));
    const closed = new Promise<any>((resolve) => {
      socket.once("error", resolve);
      socket.once("close", () => resolve(null));
    });
    const r = await c.pilot("a", ["expose", "remove", "8080"]);
    expect(r.json.data.connections_closed).toBe(1);
    expect((await closed)?.code).toBe("ECONNRESET");
    const again = await b.dial(c.daemon("a").address, 8080).then(
      () => null,
      (e) => e,
    );
    expect(again?.code).toBe("connection_refused");
  });

  test("exposes are kept in $PILOT_HOME/expose.json and restored when the daemon restarts", async () => {
    expect((await c.pilot("a", ["expose", "8080", "--to", `127.0.0.1:${echo.port}`])).code).toBe(0);
    const file = join(c.daemon("a").home, "expose.json");
    expect(existsSync(file)).toBe(true);
    const saved = JSON.parse(readFileSync(file, "utf8"));
    expect(saved.version).toBe(1);
    expect(saved.exposes.map((e: any) => e.port)).toContain(8080);
    await c.stopDaemon("a");
    await c.startDaemon({ name: "a", hostname: "expose-a" });
    const list = await c.pilot("a", ["expose", "list"]);
    const e = list.json.data.exposes.find((x: any) => x.port === 8080);
    expect(e).toMatchObject({ target: `127.0.0.1:${echo.port}`, active: true, total_connections: 0 });
    // Reaching a restarted node takes a fresh tunnel session (the lifecycle tests cover that part).
    const deadline = Date.now() + 20_000;
    while ((await c.pilot("b", ["ping", "expose-a", "--count", "1", "--timeout", "2s"])).json?.data?.received !== 1) {
      if (Date.now() > deadline) throw new Error("b never reached the restarted a");
    }
    const reply = await c.pilot("b", ["connect", "expose-a", "8080", "--message", "after a restart"]);
    expect(reply.code).toBe(0);
    expect(reply.json.data.response).toBe("after a restart");
  }, 60_000);
});
