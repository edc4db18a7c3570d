/**
 * The packed SDK (`bun run build:sdk --pack`) under each runtime, against one
 * real daemon: the app dials its own address, which loops back inside the
 * daemon, so every figure is the SDK + IPC + the daemon's stream plumbing,
 * without the tunnel. Each runtime runs the same .mjs app in its own process.
 *
 *   connect   connect() + close(): a new IPC connection and hello, p50/p99
 *   dial      a new stream to a listener of the same app, until established, p50/p99
 *   stream    one stream through the daemon and back, MB/s
 *
 *   bun scripts/bench/sdk-runtimes.ts [--mb 256] [--samples 300]
 *   PILOT_NODE22=/path/to/node22 bun scripts/bench/sdk-runtimes.ts     # adds Node 22
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startCluster } from "../../test/support/cluster.ts";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}
const mb = arg("mb", 256);
const samples = arg("samples", 300);

const APP = `
import { connect } from "pilot-sdk";
const home = process.env.PILOT_BENCH_HOME;
const mb = Number(process.env.PILOT_BENCH_MB);
const samples = Number(process.env.PILOT_BENCH_SAMPLES);
const q = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
const us = (xs) => ({ p50_us: Math.round(q(xs, 0.5) * 1000), p99_us: Math.round(q(xs, 0.99) * 1000) });
const out = { runtime: typeof Bun !== "undefined" ? "bun " + Bun.version : "node " + process.versions.node };

const connectMs = [];
for (let i = 0; i < samples + 20; i++) {
  const t = performance.now();
  const d = await connect({ home });
  if (i >= 20) connectMs.push(performance.now() - t);
  await d.close();
}
out.connect = us(connectMs);

const d = await connect({ home });
const server = await d.listen(7000);
let sink = null;
server.on("connection", (s) => (sink ? sink(s) : s.resume()));
const dialMs = [];
for (let i = 0; i < samples + 50; i++) {
  const t = performance.now();
  const s = await d.dial(d.address, 7000);
  if (i >= 50) dialMs.push(performance.now() - t);
  s.destroy();
}
out.dial = us(dialMs);

const total = mb * 1024 * 1024;
const done = new Promise((resolve) => {
  sink = (s) => {
    let n = 0;
    s.on("data", (c) => (n += c.length));
    s.on("end", () => resolve(n));
  };
});
const socket = await d.dial(d.address, 7000);
const chunk = Buffer.alloc(256 * 1024, 0x5a);
const started = performance.now();
let sent = 0;
await new Promise((resolve) => {
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
out.stream_MBps = Math.round(received / 1e6 / ((performance.now() - started) / 1000));
await server.close();
await d.close();
console.log(JSON.stringify(out));
`;

const dir = mkdtempSync(join(tmpdir(), "pilot-bench-sdk-"));
const cluster = await startCluster({ daemons: [{ name: "a", hostname: "bench-sdk" }] });
try {
  const build = spawnSync(process.execPath, [join(ROOT, "scripts", "build-sdk.ts"), "--pack", join(dir, "pack")], { cwd: ROOT, encoding: "utf8" });
  if (build.status !== 0) throw new Error(`build:sdk failed: ${build.stderr}`);
  const tarball = build.stdout.trim().split("\n").at(-1)!;
  const app = join(dir, "app");
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "bench", private: true, type: "module" }));
  const install = spawnSync("npm", ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", tarball], { cwd: app, encoding: "utf8" });
  if (install.status !== 0) throw new Error(`npm install failed: ${install.stderr}`);
  writeFileSync(join(app, "bench.mjs"), APP);
  const runtimes: [string, string][] = [["node", "node"], ["bun", process.execPath]];
  if (process.env.PILOT_NODE22) runtimes.splice(1, 0, ["node 22", process.env.PILOT_NODE22]);
  console.log(`The packed SDK by runtime, one daemon, self-dial (${mb} MiB stream, ${samples} samples)`);
  for (const [name, bin] of runtimes) {
    const r = spawnSync(bin, ["bench.mjs"], {
      cwd: app,
      encoding: "utf8",
      timeout: 300_000,
      env: { ...process.env, PILOT_BENCH_HOME: cluster.daemon("a").home, PILOT_BENCH_MB: String(mb), PILOT_BENCH_SAMPLES: String(samples) },
    });
    if (r.status !== 0) throw new Error(`${name} failed: ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    console.log(`${out.runtime.padEnd(14)} connect ${JSON.stringify(out.connect)}  dial ${JSON.stringify(out.dial)}  stream ${out.stream_MBps} MB/s`);
  }
} finally {
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}
