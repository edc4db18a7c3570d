/**
 * IPC and driver figures through two in-memory fake nodes, one process:
 *   app A (driver) -> unix socket -> IPC server A -> fake node A -> pipe ->
 *   fake node B -> IPC server B -> unix socket -> app B (driver)
 * so every byte crosses two IPC sockets, in and out of two daemons' shells.
 *
 *   bun test/ipc/bench-ipc.ts [--mb 512] [--json]
 */
import http from "node:http";
import { IpcClient } from "../../src/ipc/client.ts";
import type { PilotSocket } from "../../src/driver/index.ts";
import { startHarness } from "../driver/harness.ts";

const args = process.argv.slice(2);
const MB = Number(args[args.indexOf("--mb") + 1] ?? 0) || 512;
const asJson = args.includes("--json");

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function stats(samplesMs: number[]): { p50_us: number; p99_us: number } {
  const s = [...samplesMs].sort((a, b) => a - b);
  return { p50_us: Math.round(percentile(s, 50) * 1000), p99_us: Math.round(percentile(s, 99) * 1000) };
}

const h = await startHarness();
const alpha = await h.a.connect();
const beta = await h.b.connect();
const results: Record<string, unknown> = {};

// 1. Driver sockets: one stream, app A writes MB megabytes, app B reads them.
{
  const total = MB * 1024 * 1024;
  const server = await beta.listen(5001);
  const done = new Promise<number>((resolve) => {
    server.on("connection", (s: PilotSocket) => {
      let n = 0;
      s.on("data", (d: Buffer) => (n += d.length));
      s.on("end", () => resolve(n));
    });
  });
  const socket = await alpha.dial("beta", 5001);
  const chunk = Buffer.alloc(256 * 1024, 0x5a);
  const started = performance.now();
  let sent = 0;
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (sent < total) {
        sent += chunk.length;
        if (!socket.write(chunk)) return void socket.once("drain", pump);
      }
      socket.end();
      resolve();
    };
    pump();
  });
  const received = await done;
  const seconds = (performance.now() - started) / 1000;
  results.driver_stream_MBps = Math.round(received / 1e6 / seconds);
  await server.close();
}

// 2. The same through the bare IPC clients (no Node streams): the IPC layer's own ceiling.
{
  const total = MB * 1024 * 1024;
  const { client: ca } = await IpcClient.connect(h.a.socketPath);
  const { client: cb } = await IpcClient.connect(h.b.socketPath);
  let received = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  await cb.listen(5002, (s) => {
    s.handler = {
      onData(d) {
        received += d.length;
        s.consumed(d.length);
      },
      onWritable() {},
      onEnd: () => resolveDone(),
      onClosed() {},
    };
  });
  const stream = await ca.dial(h.b.node.address, 5002);
  const chunk = new Uint8Array(256 * 1024);
  let sent = 0;
  const started = performance.now();
  const pump = () => {
    while (sent < total) {
      const want = Math.min(chunk.length, total - sent);
      const n = stream.write(chunk, 0, want);
      sent += n;
      if (n < want) return;
    }
    stream.shutdown();
  };
  stream.handler = { onData() {}, onWritable: pump, onEnd() {}, onClosed() {} };
  pump();
  await done;
  results.ipc_client_stream_MBps = Math.round(received / 1e6 / ((performance.now() - started) / 1000));
  ca.close();
  cb.close();
}

// 3. Four streams at once.
{
  const perStream = (MB / 4) * 1024 * 1024;
  const server = await beta.listen(5003);
  let ended = 0;
  let received = 0;
  const allDone = new Promise<void>((resolve) => {
    server.on("connection", (s: PilotSocket) => {
      s.on("data", (d: Buffer) => (received += d.length));
      s.on("end", () => ++ended === 4 && resolve());
    });
  });
  const chunk = Buffer.alloc(256 * 1024, 1);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      const socket = await alpha.dial("beta", 5003);
      let sent = 0;
      await new Promise<void>((resolve) => {
        const pump = () => {
          while (sent < perStream) {
            sent += chunk.length;
            if (!socket.write(chunk)) return void socket.once("drain", pump);
          }
          socket.end();
          resolve();
        };
        pump();
      });
    }),
  );
  await allDone;
  results.driver_4_streams_MBps = Math.round(received / 1e6 / ((performance.now() - started) / 1000));
  await server.close();
}

// 4. Control round trip and dial latency.
{
  for (let i = 0; i < 200; i++) await alpha.call("echo", { i });
  const call: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const t = performance.now();
    await alpha.call("echo", { i });
    call.push(performance.now() - t);
  }
  results.call_rtt = stats(call);

  const server = await beta.listen(5004);
  server.on("connection", (s: PilotSocket) => s.on("data", (d: Buffer) => s.write(d)));
  const dial: number[] = [];
  const firstByte: number[] = [];
  for (let i = 0; i < 1200; i++) {
    const t = performance.now();
    const s = await alpha.dial("0:0000.0000.000B", 5004);
    const established = performance.now();
    const echoed = new Promise((resolve) => s.once("data", resolve));
    s.write("x");
    await echoed;
    if (i >= 200) {
      dial.push(established - t);
      firstByte.push(performance.now() - t);
    }
    s.destroy();
  }
  results.dial_established = stats(dial);
  results.dial_plus_echo_1_byte = stats(firstByte);
  await server.close();
}

// 5. HTTP over Pilot (serveHttp + keep-alive agent) beside the same server on a TCP port.
{
  const handler: http.RequestListener = (_req, res) => res.end('{"status":"healthy"}');
  await beta.serveHttp(80, handler);
  const tcp = http.createServer(handler);
  await new Promise<void>((resolve) => tcp.listen(0, "127.0.0.1", resolve));
  const tcpPort = (tcp.address() as { port: number }).port;
  const pilotAgent = alpha.httpAgent();
  const tcpAgent = new http.Agent({ keepAlive: true });
  const get = (agent: http.Agent, url: string) =>
    new Promise<void>((resolve, reject) => {
      http.get(url, { agent }, (res) => {
        res.resume();
        res.on("end", resolve);
      }).on("error", reject);
    });
  const run = async (agent: http.Agent, url: string, concurrency: number, requests: number) => {
    for (let i = 0; i < 100; i++) await get(agent, url);
    let left = requests;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (left-- > 0) await get(agent, url);
      }),
    );
    return Math.round(requests / ((performance.now() - started) / 1000));
  };
  results.http_rps_sequential = { pilot: await run(pilotAgent, "http://beta/", 1, 3000), tcp: await run(tcpAgent, `http://127.0.0.1:${tcpPort}/`, 1, 3000) };
  results.http_rps_16_concurrent = { pilot: await run(pilotAgent, "http://beta/", 16, 6000), tcp: await run(tcpAgent, `http://127.0.0.1:${tcpPort}/`, 16, 6000) };
  const fetchTimes: number[] = [];
  for (let i = 0; i < 500; i++) {
    const t = performance.now();
    await (await alpha.fetch("http://beta/")).text();
    fetchTimes.push(performance.now() - t);
  }
  results.driver_fetch_latency = stats(fetchTimes);
  pilotAgent.destroy();
  tcpAgent.destroy();
  tcp.close();
}

await h.close();
results.megabytes = MB;
results.runtime = `bun ${Bun.version}`;
if (asJson) console.log(JSON.stringify(results));
else for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(24)} ${typeof v === "object" ? JSON.stringify(v) : v}`);
process.exit(0);
