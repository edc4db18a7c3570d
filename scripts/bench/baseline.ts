/**
 * Baselines measured in the same run as the thing being benchmarked, because
 * these machines are shared and noisy: raw UDP throughput and echo RTT, TCP
 * loopback throughput, connect time and RTT. Each side runs in its own process
 * (`bun scripts/bench/baseline.ts <role> ...`) so that, like Pilot's own
 * measurement, sender and receiver do not share one event loop.
 */
import { spawn } from "node:child_process";

export interface Stats {
  p50: number;
  p99: number;
  mean: number;
  n: number;
}

export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { p50: at(0.5), p99: at(0.99), mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length), n: s.length };
}

/**
 * Runs `script` (default: this file) in a child process with `args`. The child
 * prints JSON lines: the first is `ready`, the second `result`.
 */
export function child(args: string[], script: string = import.meta.path): { ready: Promise<any>; result: Promise<any>; kill(): void } {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  let buffer = "";
  const lines: any[] = [];
  const waiters: ((v: any) => void)[] = [];
  proc.stdout.on("data", (d) => {
    buffer += d;
    let i;
    while ((i = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      const v = JSON.parse(line);
      const w = waiters.shift();
      if (w) w(v);
      else lines.push(v);
    }
  });
  const next = () => new Promise<any>((r) => (lines.length ? r(lines.shift()) : waiters.push(r)));
  return { ready: next(), result: next().then((v) => v), kill: () => proc.kill() };
}

const print = (v: unknown) => process.stdout.write(JSON.stringify(v) + "\n");

/** Raw UDP: a sink that counts 1400-byte datagrams until it has seen `bytes` or goes quiet. */
async function udpSink(expectBytes: number) {
  let got = 0;
  let first = 0;
  let last = 0;
  const sock = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(_s, d) {
        if (got === 0) first = performance.now();
        got += d.length;
        last = performance.now();
      },
    },
  });
  const fd = (sock as any).fd;
  try {
    const { dlopen, FFIType, ptr } = await import("bun:ffi");
    const lib = dlopen("libc.so.6", { setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 } });
    lib.symbols.setsockopt(fd, 1, 33, ptr(new Int32Array([16 << 20])), 4);
  } catch {}
  print({ port: sock.port });
  for (;;) {
    await Bun.sleep(100);
    if ((got > 0 && performance.now() - last > 300) || got >= expectBytes) break;
  }
  print({ bytes: got, seconds: (last - first) / 1000 });
  process.exit(0);
}

/** Sends `bytes` of 1400-byte datagrams as fast as the socket takes them, paced in batches. */
export async function udpThroughput(bytes: number): Promise<number> {
  const sink = child(["udp-sink", String(bytes)]);
  const { port } = await sink.ready;
  const sock = await Bun.udpSocket({ connect: { hostname: "127.0.0.1", port } });
  const payload = new Uint8Array(1400);
  const batch = Array.from({ length: 32 }, () => payload);
  let sent = 0;
  while (sent < bytes) {
    sock.sendMany(batch);
    sent += 32 * 1400;
    if ((sent / 1400) % 256 === 0) await Bun.sleep(0);
  }
  const r = await sink.result;
  sock.close();
  return r.bytes / r.seconds / 1e6;
}

async function udpEcho() {
  const sock = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port: 0,
    socket: { data: (s, d, port, addr) => void s.send(d, port, addr) },
  });
  print({ port: sock.port });
  await new Promise(() => {});
}

/** UDP echo round trips with 64-byte datagrams. */
export async function udpRtt(samples: number): Promise<Stats> {
  const echo = child(["udp-echo"]);
  const { port } = await echo.ready;
  let resolveOne: (() => void) | null = null;
  const sock = await Bun.udpSocket({ connect: { hostname: "127.0.0.1", port }, socket: { data: () => resolveOne?.() } });
  const rtts: number[] = [];
  const payload = new Uint8Array(64);
  for (let i = 0; i < samples + 20; i++) {
    const t = performance.now();
    await new Promise<void>((r) => {
      resolveOne = r;
      sock.send(payload);
    });
    if (i >= 20) rtts.push((performance.now() - t) * 1000);
  }
  sock.close();
  echo.kill();
  return stats(rtts);
}

async function tcpSink() {
  let got = 0;
  let first = 0;
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open() {
        first = performance.now();
      },
      data(_s, d) {
        got += d.length;
      },
      close() {
        print({ bytes: got, seconds: (performance.now() - first) / 1000 });
        process.exit(0);
      },
    },
  });
  print({ port: server.port });
  await new Promise(() => {});
}

/** TCP loopback: one connection, 256 KiB writes, sender and sink in separate processes. */
export async function tcpThroughput(bytes: number): Promise<number> {
  const sink = child(["tcp-sink"]);
  const { port } = await sink.ready;
  const { connect } = await import("node:net");
  const s = connect(port, "127.0.0.1");
  await new Promise((r) => s.once("connect", r));
  const chunk = Buffer.alloc(256 * 1024, 1);
  for (let sent = 0; sent < bytes; sent += chunk.length) if (!s.write(chunk)) await new Promise((r) => s.once("drain", r));
  s.end();
  const r = await sink.result;
  return r.bytes / r.seconds / 1e6;
}

async function tcpEcho() {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (s, d) => void s.write(d) } });
  print({ port: server.port });
  await new Promise(() => {});
}

/** TCP connect time and 64-byte round trips over one connection, against a server in another process. */
export async function tcpLatency(samples: number): Promise<{ connect: Stats; rtt: Stats }> {
  const echo = child(["tcp-echo"]);
  const { port } = await echo.ready;
  const { connect } = await import("node:net");
  const connects: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t = performance.now();
    const s = connect(port, "127.0.0.1");
    await new Promise((r) => s.once("connect", r));
    connects.push((performance.now() - t) * 1000);
    s.destroy();
  }
  const s = connect(port, "127.0.0.1");
  s.setNoDelay(true);
  await new Promise((r) => s.once("connect", r));
  const rtts: number[] = [];
  const payload = Buffer.alloc(64, 1);
  for (let i = 0; i < samples + 20; i++) {
    const t = performance.now();
    await new Promise<void>((r) => {
      let n = 0;
      const on = (d: Buffer) => {
        n += d.length;
        if (n >= 64) {
          s.off("data", on);
          r();
        }
      };
      s.on("data", on);
      s.write(payload);
    });
    if (i >= 20) rtts.push((performance.now() - t) * 1000);
  }
  s.destroy();
  echo.kill();
  return { connect: stats(connects), rtt: stats(rtts) };
}

if (import.meta.main) {
  const [role, arg] = process.argv.slice(2);
  if (role === "udp-sink") await udpSink(Number(arg));
  else if (role === "udp-echo") await udpEcho();
  else if (role === "tcp-sink") await tcpSink();
  else if (role === "tcp-echo") await tcpEcho();
  else {
    console.log(`udp ${(await udpThroughput(256 << 20)).toFixed(0)} MB/s`);
    console.log(`tcp ${(await tcpThroughput(512 << 20)).toFixed(0)} MB/s`);
    console.log("udp rtt", await udpRtt(500));
    console.log("tcp", await tcpLatency(200));
  }
}
