/**
 * The app side of IPC by socket implementation (src/ipc/connection.ts):
 * `Bun.connect` against `node:net`, both in the same run, alternating rounds,
 * because the machine is shared and noisy. Two in-memory fake nodes behind
 * real IPC servers on real unix sockets (test/driver/harness.ts), so every
 * streamed byte crosses two IPC sockets; only the app side's socket changes.
 *
 *   connect   new IPC connection + hello (what `connect()` costs), p50/p99
 *   stream    one stream, bare IPC clients, MB/s
 *   dial      new stream over an open connection until established, p50/p99
 *   call      control round trip (echo), p50/p99
 *
 *   bun scripts/bench/ipc-client.ts [--mb 256] [--rounds 3] [--json]
 *   node --experimental-strip-types ... is not supported: run the Node figures through the built SDK instead.
 */
import { IpcClient } from "../../src/ipc/client.ts";
import type { IpcTransport } from "../../src/ipc/connection.ts";
import { startHarness } from "../../test/driver/harness.ts";
import { stats, type Stats } from "./baseline.ts";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const mb = arg("mb", 256);
const rounds = arg("rounds", 3);
const asJson = process.argv.includes("--json");
const h = await startHarness();
let port = 6000;

async function connectLatency(transport: IpcTransport, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const { client } = await IpcClient.connect(h.a.socketPath, { transport });
    out.push(performance.now() - t);
    client.close();
  }
  return out;
}

async function streamMBps(transport: IpcTransport): Promise<number> {
  const total = mb * 1024 * 1024;
  const { client: ca } = await IpcClient.connect(h.a.socketPath, { transport });
  const { client: cb } = await IpcClient.connect(h.b.socketPath, { transport });
  let received = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  const p = port++;
  await cb.listen(p, (s) => {
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
  const stream = await ca.dial(h.b.node.address, p);
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
  const mbps = received / 1e6 / ((performance.now() - started) / 1000);
  ca.close();
  cb.close();
  return mbps;
}

async function dialAndCall(transport: IpcTransport, n: number): Promise<{ dial: number[]; call: number[] }> {
  const { client: ca } = await IpcClient.connect(h.a.socketPath, { transport });
  const { client: cb } = await IpcClient.connect(h.b.socketPath, { transport });
  const p = port++;
  await cb.listen(p, (s) => {
    s.handler = { onData: (d) => s.consumed(d.length), onWritable() {}, onEnd() {}, onClosed() {} };
  });
  const dial: number[] = [];
  const call: number[] = [];
  for (let i = 0; i < n + 100; i++) {
    let t = performance.now();
    const s = await ca.dial(h.b.node.address, p);
    if (i >= 100) dial.push(performance.now() - t);
    s.handler = { onData() {}, onWritable() {}, onEnd() {}, onClosed() {} };
    s.close();
    t = performance.now();
    await ca.request("echo", { i });
    if (i >= 100) call.push(performance.now() - t);
  }
  ca.close();
  cb.close();
  return { dial, call };
}

const transports: IpcTransport[] = ["bun", "node"];
const acc: Record<IpcTransport, { connect: number[]; stream: number[]; dial: number[]; call: number[] }> = {
  bun: { connect: [], stream: [], dial: [], call: [] },
  node: { connect: [], stream: [], dial: [], call: [] },
};
await connectLatency("bun", 50);
await connectLatency("node", 50);
for (let r = 0; r < rounds; r++) {
  for (const t of r % 2 === 0 ? transports : [...transports].reverse()) {
    acc[t].connect.push(...(await connectLatency(t, 200)));
    acc[t].stream.push(await streamMBps(t));
    const dc = await dialAndCall(t, 500);
    acc[t].dial.push(...dc.dial);
    acc[t].call.push(...dc.call);
  }
}
await h.close();

const us = (s: Stats) => ({ p50_us: Math.round(s.p50 * 1000), p99_us: Math.round(s.p99 * 1000) });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const result = Object.fromEntries(
  transports.map((t) => [
    t === "bun" ? "Bun.connect" : "node:net",
    {
      connect_hello: us(stats(acc[t].connect)),
      stream_MBps_median: Math.round(median(acc[t].stream)),
      stream_MBps_rounds: acc[t].stream.map(Math.round),
      dial: us(stats(acc[t].dial)),
      call: us(stats(acc[t].call)),
    },
  ]),
);
if (asJson) console.log(JSON.stringify({ runtime: `bun ${Bun.version}`, mb, rounds, ...result }));
else {
  console.log(`IPC client by socket implementation (bun ${Bun.version}, ${mb} MiB streams, ${rounds} rounds)`);
  for (const [name, r] of Object.entries(result)) console.log(`${name.padEnd(12)} ${JSON.stringify(r)}`);
}
process.exit(0);
