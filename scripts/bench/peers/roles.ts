/**
 * The processes scripts/bench/peers/main.ts starts, one role each
 * (`bun roles.ts <role> ...`, inside a namespace where the role needs one).
 * Every role prints JSON lines on stdout: `{ready...}` first, then its result.
 * Pilot roles reach their daemon through its IPC socket (a file, so they work
 * from any namespace).
 */
import http from "node:http";
import net from "node:net";
import { connect } from "../../../src/driver/index.ts";
import { startDaemon, type RunningDaemon } from "../../../src/daemon/run.ts";

const print = (v: unknown) => process.stdout.write(JSON.stringify(v) + "\n");
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const PORT = 9000;
const ECHO = 7;

/** Accepts one stream on port 9000 and counts it; reports bytes, seconds, its CPU seconds. */
async function pilotSink(home: string) {
  const d = await connect({ home });
  const server = await d.listen(PORT);
  print({ ready: true });
  server.on("connection", (s) => {
    let got = 0;
    const t0 = performance.now();
    const c0 = cpu();
    s.on("data", (c: Buffer) => (got += c.length));
    s.on("end", () => {
      print({ bytes: got, seconds: (performance.now() - t0) / 1000, cpu: cpu() - c0 });
      process.exit(0);
    });
  });
}

/** Sends `bytes` on one stream to `target`:9000 in 256 KiB writes; reports its CPU seconds. */
async function pilotSend(home: string, target: string, bytes: number) {
  const d = await connect({ home });
  print({ ready: true });
  const s = await d.dial(target, PORT);
  const chunk = Buffer.alloc(256 * 1024, 7);
  const c0 = cpu();
  for (let sent = 0; sent < bytes; sent += chunk.length) if (!s.write(chunk)) await new Promise((r) => s.once("drain", r));
  await new Promise<void>((r) => s.end(r));
  print({ cpu: cpu() - c0 });
  process.exit(0);
}

/** New streams to the echo service, one after another: microseconds from dial to connected. */
async function pilotDial(home: string, target: string, samples: number) {
  const d = await connect({ home });
  print({ ready: true });
  const out: number[] = [];
  for (let i = 0; i < samples + 20; i++) {
    const t = performance.now();
    const s = await d.dial(target, ECHO);
    if (i >= 20) out.push((performance.now() - t) * 1000);
    s.destroy();
  }
  print({ samples: out });
  process.exit(0);
}

/** One byte to the echo service and back, on one open stream. */
async function pilotRtt(home: string, target: string, samples: number) {
  const d = await connect({ home });
  print({ ready: true });
  const s = await d.dial(target, ECHO);
  s.setNoDelay?.(true);
  let waiter: (() => void) | null = null;
  s.on("data", () => waiter?.());
  const one = Buffer.from([1]);
  const out: number[] = [];
  for (let i = 0; i < samples + 50; i++) {
    const t = performance.now();
    await new Promise<void>((r) => {
      waiter = r;
      s.write(one);
    });
    if (i >= 50) out.push((performance.now() - t) * 1000);
  }
  print({ samples: out });
  process.exit(0);
}

/** `pilot ping`'s figure: the daemon's own RTT for each ping (microseconds). */
async function pilotPing(home: string, target: string, samples: number) {
  const d = await connect({ home });
  print({ ready: true });
  const out: number[] = [];
  for (let i = 0; i < samples + 10; i++) {
    const r = (await d.call("ping", { target, seq: i })) as { rtt_ms: number };
    if (i >= 10) out.push(r.rtt_ms * 1000);
    await Bun.sleep(10);
  }
  print({ samples: out });
  process.exit(0);
}

/** TCP listener that accepts and closes (the peer of tcp-connect). */
async function tcpAccept(host: string) {
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, host, r));
  print({ ready: true, port: (server.address() as net.AddressInfo).port });
  await new Promise(() => {});
}

/** TCP connects, one after another: microseconds from connect() to connected. */
async function tcpConnect(host: string, port: number, samples: number) {
  print({ ready: true });
  const out: number[] = [];
  for (let i = 0; i < samples + 20; i++) {
    const t = performance.now();
    await new Promise<void>((resolve, reject) => {
      const s = net.connect({ host, port }, () => {
        if (i >= 20) out.push((performance.now() - t) * 1000);
        s.destroy();
        resolve();
      });
      s.on("error", reject);
    });
  }
  print({ samples: out });
  process.exit(0);
}

const STATUS = JSON.stringify({ status: "healthy", agent: "bench", version: "1.0.0" }) + "\n";
function handler(_req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(STATUS) });
  res.end(STATUS);
}

/** One node:http handler, served on TCP at `host` and on Pilot port 8080 through the daemon at `home`. */
async function httpServer(home: string, host: string) {
  const tcp = http.createServer({ keepAliveTimeout: 60_000 }, handler);
  await new Promise<void>((r) => tcp.listen(0, host, r));
  const pilot = await connect({ home });
  await pilot.serveHttp(8080, handler);
  process.on("SIGTERM", () => process.exit(0)); // a clean exit, so that --cpu-prof writes its profile
  print({ ready: true, port: (tcp.address() as net.AddressInfo).port });
  await new Promise(() => {});
}

/** `count` streams at once to the echo service, `bytes` each way on each; reports seconds and failures. */
async function manyStreams(home: string, target: string, count: number, bytes: number) {
  const d = await connect({ home });
  print({ ready: true });
  const payload = Buffer.alloc(bytes, 0x5a);
  const t0 = performance.now();
  const opens: number[] = [];
  let failed = 0;
  const errors = new Map<string, number>();
  await Promise.all(
    Array.from({ length: count }, async () => {
      try {
        const t = performance.now();
        const s = await d.dial(target, ECHO);
        opens.push(performance.now() - t);
        await new Promise<void>((resolve, reject) => {
          let got = 0;
          s.on("data", (c: Buffer) => {
            got += c.length;
            if (got >= bytes) {
              s.destroy();
              resolve();
            }
          });
          s.on("error", reject);
          s.write(payload);
        });
      } catch (e) {
        failed++;
        const code = (e as { code?: string }).code ?? String(e);
        errors.set(code, (errors.get(code) ?? 0) + 1);
      }
    }),
  );
  opens.sort((a, b) => a - b);
  print({ seconds: (performance.now() - t0) / 1000, failed, errors: Object.fromEntries(errors), openP50Ms: opens[opens.length >> 1], openMaxMs: opens.at(-1) });
  process.exit(0);
}

/**
 * `count` daemons in this one process (to keep the machine's load down; the
 * daemon measured is a process of its own), each trusted by the subject and
 * holding one open stream to its echo service. Reports ready once all
 * streams are open, then waits to be killed.
 */
async function manyPeers(registry: string, subjectHome: string, subjectId: string, count: number, dir: string) {
  const [host, port] = [registry.slice(0, registry.lastIndexOf(":")), Number(registry.slice(registry.lastIndexOf(":") + 1))];
  const daemons: RunningDaemon[] = [];
  const subject = await connect({ home: subjectHome });
  const streams: unknown[] = [];
  for (let i = 0; i < count; i += 10) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(10, count - i) }, (_, j) =>
        startDaemon({ home: `${dir}/peer-${i + j}`, registry: { host, port }, beacon: null, listen: { host: "127.0.0.1", port: 0 }, logLevel: "error", logFile: { path: `${dir}/peer-${i + j}/pilot.log` } }),
      ),
    );
    daemons.push(...batch);
    await Promise.all(
      batch.map(async (rd, j) => {
        const d = await connect({ home: `${dir}/peer-${i + j}` });
        const me = (await d.info()) as { node_id?: number; address?: string };
        await d.handshake(subjectId, "bench");
        const id = String(me.node_id ?? me.address);
        for (let k = 0; ; k++) {
          try {
            await subject.approve(id);
            break;
          } catch (e) {
            if (k > 50) throw e;
            await Bun.sleep(100);
          }
        }
        for (let k = 0; ; k++) {
          try {
            const s = await d.dial(subjectId, ECHO);
            s.write(Buffer.from("x"));
            await new Promise((r) => s.once("data", r));
            streams.push(s, d, rd);
            break;
          } catch (e) {
            if (k > 50) throw e;
            await Bun.sleep(100);
          }
        }
      }),
    );
  }
  print({ ready: true, peers: daemons.length });
  await new Promise(() => {});
}

const [role, ...a] = process.argv.slice(2);
const n = (i: number) => Number(a[i]);
switch (role) {
  case "pilot-sink": await pilotSink(a[0]!); break;
  case "pilot-send": await pilotSend(a[0]!, a[1]!, n(2)); break;
  case "pilot-dial": await pilotDial(a[0]!, a[1]!, n(2)); break;
  case "pilot-rtt": await pilotRtt(a[0]!, a[1]!, n(2)); break;
  case "pilot-ping": await pilotPing(a[0]!, a[1]!, n(2)); break;
  case "tcp-accept": await tcpAccept(a[0]!); break;
  case "tcp-connect": await tcpConnect(a[0]!, n(1), n(2)); break;
  case "http-server": await httpServer(a[0]!, a[1]!); break;
  case "many-streams": await manyStreams(a[0]!, a[1]!, n(2), n(3)); break;
  case "many-peers": await manyPeers(a[0]!, a[1]!, a[2]!, n(3), a[4]!); break;
  default:
    console.error(`unknown role ${role}`);
    process.exit(2);
}
