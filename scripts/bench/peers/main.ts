/**
 * Pilot beside its peers, in one run (issue 13's table):
 *
 *   - userspace WireGuard (`wireguard-go`) between two network namespaces joined
 *     by a veth pair (MTU 1500), with iperf3, a TCP connect loop, node:http + wrk
 *     and ping over it; Pilot daemons in the same two namespaces;
 *   - js-libp2p (TCP + Noise + yamux) on Node and on Bun, on 127.0.0.1, beside
 *     two Pilot daemons on 127.0.0.1;
 *   - Pilot's memory: a daemon's idle floor, with 100 trusted peers holding one
 *     stream each, its peak during one bulk stream, and 1000 concurrent echo
 *     streams of 64 KiB.
 *
 * Rounds are interleaved (every figure once per round, Pilot and its peer in
 * alternating order) and the table shows medians over the rounds: these
 * machines are shared and noisy. A benchmark, not a test.
 *
 *   bun run bench:peers [--rounds 5] [--mb 128] [--samples 300] [--wrk-seconds 5] [--peers 100] [--streams 1000]
 *   bun run bench:peers --quick          # smoke run: one short round, small scenarios (< 60 s)
 *   PILOT_BIN=dist/pilot bun run bench:peers   # daemons from the compiled binary
 *
 * Needs root (namespaces) and `apt-get install wireguard-go wireguard-tools iperf3 wrk iputils-ping`;
 * without them the namespace rows are skipped and say what to install. js-libp2p lives in
 * scripts/bench/peers/libp2p with its own package.json; it is installed there (npm install) on
 * the first run. All traffic stays on 127.0.0.1 and inside the two namespaces made here, which
 * are removed afterwards (also on failure or ctrl-c); every process started is stopped by pid.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { pilotCommand, ROOT, runCommand, startCluster, type Cluster } from "../../../test/support/cluster.ts";
import { cpuSeconds } from "../../../test/tunnel/flood-probe.ts";
import { inNs, isRoot, makeLab, missingTools, removeLab, VETH_A, VETH_B, WG_B, type Lab } from "./netns.ts";

// ---------------------------------------------------------------- options

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
function opt(name: string, full: number, small: number): number {
  const i = argv.indexOf(`--${name}`);
  if (i >= 0) {
    const v = Number(argv[i + 1]);
    if (!Number.isFinite(v) || v <= 0) {
      console.error(`--${name} needs a positive number`);
      process.exit(2);
    }
    return v;
  }
  return quick ? small : full;
}
const ROUNDS = opt("rounds", 5, 1);
const MB = opt("mb", 128, 16);
const SAMPLES = opt("samples", 300, 40);
const WRK_SECONDS = opt("wrk-seconds", 5, 1);
const PEERS = opt("peers", 100, 10);
const STREAMS = opt("streams", 1000, 100);
const BYTES = MB << 20;
const HERE = import.meta.dir;
const ROLES = join(HERE, "roles.ts");
const LIBP2P = join(HERE, "libp2p");

// ---------------------------------------------------------------- processes

const started = new Set<ChildProcess>();
const pids = new Set<number>();

interface Role {
  proc: ChildProcess;
  next(): Promise<any>;
  kill(): void;
}

/** Runs argv; its stdout is JSON lines, read one by one with next(). Killed after `timeoutMs`. */
function run(args: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Role {
  const proc = spawn(args[0]!, args.slice(1), { cwd: ROOT, env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
  started.add(proc);
  let buffer = "";
  let stderr = "";
  const lines: any[] = [];
  const waiters: { resolve: (v: any) => void; reject: (e: Error) => void }[] = [];
  const timer = setTimeout(() => proc.kill("SIGKILL"), options.timeoutMs ?? 180_000);
  proc.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
  proc.stdout!.on("data", (d) => {
    buffer += d;
    let i;
    while ((i = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, i).trim();
      buffer = buffer.slice(i + 1);
      if (!line.startsWith("{")) continue;
      const v = JSON.parse(line);
      const w = waiters.shift();
      if (w) w.resolve(v);
      else lines.push(v);
    }
  });
  proc.on("exit", (code) => {
    clearTimeout(timer);
    started.delete(proc);
    for (const w of waiters.splice(0)) w.reject(new Error(`${args.slice(0, 6).join(" ")} exited (${code}): ${stderr.trim()}`));
  });
  return {
    proc,
    next: () => new Promise((resolve, reject) => (lines.length ? resolve(lines.shift()) : proc.exitCode !== null ? reject(new Error(`${args[0]} exited: ${stderr}`)) : waiters.push({ resolve, reject }))),
    kill: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
    },
  };
}

const bun = (role: string, ...args: (string | number)[]) => [process.execPath, ROLES, role, ...args.map(String)];

function killPid(pid: number): void {
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    // gone
  }
}

async function stopAll(): Promise<void> {
  for (const p of started) if (p.exitCode === null) p.kill("SIGTERM");
  for (const pid of pids) killPid(pid);
  await Bun.sleep(300);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  pids.clear();
}
let workDir: string | null = null;
// ctrl-c and kill: exit through the exit handlers (these, the lab's, the cluster's), which stop everything.
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => process.exit(130));
process.on("exit", () => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  for (const p of started) if (p.exitCode === null) p.kill("SIGKILL");
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
});

function rssMiB(pid: number, field = "VmRSS"): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Samples the RSS of `pidList` every 50 ms until stopped; the peak of each. */
function rssSampler(pidList: number[]): () => number[] {
  const peak = pidList.map((p) => rssMiB(p));
  const t = setInterval(() => pidList.forEach((p, i) => (peak[i] = Math.max(peak[i]!, rssMiB(p)))), 50);
  return () => {
    clearInterval(t);
    pidList.forEach((p, i) => (peak[i] = Math.max(peak[i]!, rssMiB(p))));
    return peak;
  };
}

// ---------------------------------------------------------------- statistics

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const quantile = (xs: number[], q: number) => {
  const s = sorted(xs);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN;
};
const median = (xs: number[]) => {
  const s = sorted(xs.filter((x) => Number.isFinite(x)));
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Per figure, the value of each round. */
const figures = new Map<string, number[]>();
function record(name: string, value: number): void {
  if (!figures.has(name)) figures.set(name, []);
  figures.get(name)!.push(value);
}
const med = (name: string) => median(figures.get(name) ?? []);

// ---------------------------------------------------------------- Pilot set-ups

interface PilotPair {
  homeA: string;
  homeB: string;
  pidA: number;
  pidB: number;
  hostB: string;
}

async function rendezvous(home: string, host: string, ns: string | null, extra: string[] = []): Promise<string> {
  const args = [...pilotCommand(), "rendezvous", "--json", "--registry-addr", `${host}:0`, "--beacon-addr", `${host}:0`, ...extra];
  const r = run(ns ? inNs(ns, args) : args, { env: { PILOT_HOME: home }, timeoutMs: 3_600_000 });
  const ready = await r.next();
  return ready.data.registry as string;
}

async function daemon(home: string, registry: string, listen: string, hostname: string, ns: string | null): Promise<{ pid: number; nodeId: number }> {
  const args = [...pilotCommand(), "daemon", "start", "--json", "--registry", registry, "--beacon", "off", "--listen", `${listen}:0`, "--hostname", hostname];
  const r = await runCommand(ns ? inNs(ns, args) : args, { env: { ...process.env, PILOT_HOME: home }, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`daemon ${hostname} did not start: ${r.stderr || r.stdout}`);
  pids.add(r.json.data.pid);
  return { pid: r.json.data.pid, nodeId: r.json.data.node_id };
}

async function pilotAs(home: string, args: string[]) {
  return runCommand([...pilotCommand(), ...args, "--json"], { env: { ...process.env, PILOT_HOME: home } });
}

/** `b` asks `a` for trust, `a` approves; resolves once `b` sees it. */
async function trust(homeA: string, idA: number, homeB: string, idB: number): Promise<void> {
  const req = await pilotAs(homeB, ["handshake", String(idA), "bench"]);
  if (req.code !== 0) throw new Error(`handshake failed: ${req.stderr}`);
  const ok = await pilotAs(homeA, ["approve", String(idB)]);
  if (ok.code !== 0) throw new Error(`approve failed: ${ok.stderr}`);
  for (let i = 0; i < 100; i++) {
    const t = await pilotAs(homeB, ["trust"]);
    if (t.json?.data?.trusted?.some((x: any) => x.node_id === idA)) return;
    await Bun.sleep(50);
  }
  throw new Error("trust never arrived");
}

async function netnsPilot(lab: Lab, dir: string): Promise<PilotPair> {
  const registry = await rendezvous(join(dir, "rv"), VETH_A, lab.a);
  const homeA = join(dir, "a");
  const homeB = join(dir, "b");
  const a = await daemon(homeA, registry, VETH_A, "pb-a", lab.a);
  const b = await daemon(homeB, registry, VETH_B, "pb-b", lab.b);
  await trust(homeA, a.nodeId, homeB, b.nodeId);
  return { homeA, homeB, pidA: a.pid, pidB: b.pid, hostB: "pb-b" };
}

// ---------------------------------------------------------------- scenarios

async function pilotBulk(p: PilotPair): Promise<{ mbps: number; cpuMsPerMB: number; peakRss: number[] }> {
  const sink = run(bun("pilot-sink", p.homeB));
  await sink.next();
  const send = run(bun("pilot-send", p.homeA, p.hostB, BYTES));
  await send.next();
  const cpu0 = cpuSeconds(p.pidA) + cpuSeconds(p.pidB);
  const stop = rssSampler([p.pidA, p.pidB]);
  const [r, s] = await Promise.all([sink.next(), send.next()]);
  const peakRss = stop();
  const cpu = cpuSeconds(p.pidA) + cpuSeconds(p.pidB) - cpu0 + r.cpu + s.cpu;
  return { mbps: r.bytes / r.seconds / 1e6, cpuMsPerMB: (cpu * 1000) / (r.bytes / 1e6), peakRss };
}

async function iperfBulk(lab: Lab): Promise<{ mbps: number; peakRss: number[] }> {
  const server = run(inNs(lab.b, ["iperf3", "-s", "-1", "-B", WG_B]));
  await Bun.sleep(300);
  const stop = rssSampler(lab.wgPids);
  const r = spawnSync("ip", ["netns", "exec", lab.a, "iperf3", "-c", WG_B, "-n", String(BYTES), "-J"], { encoding: "utf8", timeout: 120_000 });
  const peakRss = stop();
  server.kill();
  const j = JSON.parse(r.stdout);
  return { mbps: j.end.sum_received.bits_per_second / 8 / 1e6, peakRss };
}

async function libp2pBulk(runtime: string, addr: string): Promise<{ mbps: number; cpuMsPerMB: number }> {
  const c = run([runtime, join(LIBP2P, "peer.mjs"), "bulk", addr, String(BYTES)]);
  const r = await c.next();
  return { mbps: r.bytes / r.seconds / 1e6, cpuMsPerMB: ((r.cpu + r.sinkCpu) * 1000) / (r.bytes / 1e6) };
}

async function samplesOf(args: string[]): Promise<number[]> {
  const c = run(args);
  const first = await c.next();
  return first.samples ?? (await c.next()).samples;
}

async function wrk(ns: string, url: string, seconds: number): Promise<{ rps: number; p99: number; errors: number }> {
  const r = spawnSync("ip", ["netns", "exec", ns, "wrk", "-t2", "-c32", `-d${seconds}s`, "--latency", url], { encoding: "utf8", timeout: (seconds + 30) * 1000 });
  const out = r.stdout ?? "";
  const micros = (t: string) => {
    const m = /^([\d.]+)(us|ms|s)$/.exec(t.trim());
    return m ? Number(m[1]) * (m[2] === "us" ? 1 : m[2] === "ms" ? 1000 : 1e6) : NaN;
  };
  const errLine = /Socket errors: (.*)/.exec(out)?.[1];
  const errors = (errLine ? errLine.split(",").reduce((n, part) => n + Number(part.trim().split(" ")[1] ?? 0), 0) : 0) + Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]), p99: micros(/\s99%\s+(\S+)/.exec(out)?.[1] ?? ""), errors };
}

function icmpPing(ns: string, host: string, count: number): number[] {
  const r = spawnSync("ip", ["netns", "exec", ns, "ping", "-c", String(count + 5), "-i", "0.01", host], { encoding: "utf8", timeout: 60_000 });
  return [...(r.stdout ?? "").matchAll(/time=([\d.]+) ms/g)].slice(5).map((m) => Number(m[1]) * 1000);
}

// ---------------------------------------------------------------- main

async function main() {
  const t0 = performance.now();
  console.log(`bench:peers — ${ROUNDS} round(s), ${MB} MiB bulk, ${SAMPLES} samples, wrk ${WRK_SECONDS} s, ${PEERS} peers, ${STREAMS} streams; Pilot from ${process.env.PILOT_BIN ?? "source"}; ${new Date().toISOString()}`);
  const missing = missingTools();
  const netns = isRoot() && missing === null && existsSync("/dev/net/tun");
  if (!netns) console.log(`namespace rows skipped: ${!isRoot() ? "needs root" : missing ? `missing tools (${missing})` : "no /dev/net/tun"}`);
  if (!existsSync(join(LIBP2P, "node_modules", "libp2p"))) {
    console.log("installing js-libp2p into scripts/bench/peers/libp2p (npm install, first run only)");
    const r = spawnSync("npm", ["install", "--no-audit", "--no-fund"], { cwd: LIBP2P, stdio: "inherit" });
    if (r.status !== 0) throw new Error("npm install in scripts/bench/peers/libp2p failed; run it there by hand");
  }

  const dir = mkdtempSync("/tmp/pbench-");
  workDir = dir;
  let lab: Lab | null = null;
  let lo: Cluster | null = null;
  try {
    // 127.0.0.1: two Pilot daemons, js-libp2p listeners on Node and Bun.
    lo = await startCluster({ daemons: [{ name: "a", hostname: "lo-a" }, { name: "b", hostname: "lo-b" }] });
    const idleFloor = rssMiB(lo.daemon("b").pid);
    await lo.trust("a", "b");
    const loPair: PilotPair = { homeA: lo.daemon("a").home, homeB: lo.daemon("b").home, pidA: lo.daemon("a").pid, pidB: lo.daemon("b").pid, hostB: "lo-b" };
    const p2pNode = run(["node", join(LIBP2P, "peer.mjs"), "listen"], { timeoutMs: 3_600_000 });
    const p2pBun = run([process.execPath, join(LIBP2P, "peer.mjs"), "listen"], { timeoutMs: 3_600_000 });
    const nodeAddr = (await p2pNode.next()).addr as string;
    const bunAddr = (await p2pBun.next()).addr as string;

    // The namespaces: WireGuard, Pilot, the servers.
    let ns: PilotPair | null = null;
    let tcpPort = 0;
    let httpPort = 0;
    let gatewayUrl = "";
    if (netns) {
      lab = await makeLab();
      ns = await netnsPilot(lab, dir);
      tcpPort = (await run(inNs(lab.b, bun("tcp-accept", WG_B)), { timeoutMs: 3_600_000 }).next()).port;
      httpPort = (await run(inNs(lab.b, bun("http-server", ns.homeB, WG_B)), { timeoutMs: 3_600_000 }).next()).port;
      const gw = run(inNs(lab.a, [...pilotCommand(), "gateway", "start", "--foreground", "--json", "--subnet", "127.79.250.0/24", "--ports", "8080", "pb-b"]), { env: { PILOT_HOME: ns.homeA }, timeoutMs: 3_600_000 });
      await gw.next();
      gatewayUrl = "http://127.79.250.1:8080/api/status";
      // Warm-up: tunnel, JIT, keep-alive pools.
      await wrk(lab.a, gatewayUrl, 1);
      await wrk(lab.a, `http://${WG_B}:${httpPort}/api/status`, 1);
    }

    for (let round = 0; round < ROUNDS; round++) {
      const pilotFirst = round % 2 === 0;
      const both = async (pilot: () => Promise<void>, peer: () => Promise<void>) => {
        if (pilotFirst) {
          await pilot();
          await peer();
        } else {
          await peer();
          await pilot();
        }
      };
      if (lab && ns) {
        const n = ns;
        const l = lab;
        await both(
          async () => {
            const r = await pilotBulk(n);
            record("bulk.ns.pilot", r.mbps);
            record("rss.bulk.pilot", Math.max(...r.peakRss));
          },
          async () => {
            const r = await iperfBulk(l);
            record("bulk.ns.wg", r.mbps);
            record("rss.bulk.wg", Math.max(...r.peakRss));
          },
        );
        await both(
          async () => {
            const s = await samplesOf(bun("pilot-dial", n.homeA, n.hostB, SAMPLES));
            record("dial.pilot.p50", quantile(s, 0.5));
            record("dial.pilot.p99", quantile(s, 0.99));
          },
          async () => {
            const s = await samplesOf(inNs(l.a, bun("tcp-connect", WG_B, tcpPort, SAMPLES)));
            record("dial.wg.p50", quantile(s, 0.5));
            record("dial.wg.p99", quantile(s, 0.99));
          },
        );
        await both(
          async () => {
            const r = await wrk(l.a, gatewayUrl, WRK_SECONDS);
            record("http.pilot.rps", r.rps);
            record("http.pilot.p99", r.p99);
            record("http.pilot.errors", r.errors);
          },
          async () => {
            const r = await wrk(l.a, `http://${WG_B}:${httpPort}/api/status`, WRK_SECONDS);
            record("http.wg.rps", r.rps);
            record("http.wg.p99", r.p99);
            record("http.wg.errors", r.errors);
          },
        );
        await both(
          async () => record("ping.pilot", quantile(await samplesOf(bun("pilot-ping", n.homeA, n.hostB, SAMPLES)), 0.5)),
          async () => record("ping.wg", quantile(icmpPing(l.a, WG_B, SAMPLES), 0.5)),
        );
      }
      await both(
        async () => {
          const r = await pilotBulk(loPair);
          record("bulk.lo.pilot", r.mbps);
          record("cpu.pilot", r.cpuMsPerMB);
        },
        async () => {
          const r = await libp2pBulk("node", nodeAddr);
          record("bulk.lo.p2p", r.mbps);
          record("cpu.p2p", r.cpuMsPerMB);
          const b = await libp2pBulk(process.execPath, bunAddr);
          record("bulk.lo.p2pbun", b.mbps);
          record("cpu.p2pbun", b.cpuMsPerMB);
        },
      );
      await both(
        async () => record("rtt.pilot", quantile(await samplesOf(bun("pilot-rtt", loPair.homeA, loPair.hostB, SAMPLES * 3)), 0.5)),
        async () => {
          record("rtt.p2p", quantile(await samplesOf(["node", join(LIBP2P, "peer.mjs"), "rtt", nodeAddr, String(SAMPLES * 3)]), 0.5));
          record("rtt.p2pbun", quantile(await samplesOf([process.execPath, join(LIBP2P, "peer.mjs"), "rtt", bunAddr, String(SAMPLES * 3)]), 0.5));
        },
      );
      const show = [...figures].map(([k, v]) => `${k}=${v.at(-1)!.toFixed(k.startsWith("cpu") ? 2 : 0)}`).join(" ");
      console.log(`round ${round + 1}/${ROUNDS} (${((performance.now() - t0) / 1000).toFixed(0)} s): ${show}`);
    }
    p2pNode.kill();
    p2pBun.kill();

    // Memory: 1000 concurrent echo streams (127.0.0.1 pair), then 100 trusted peers on a fresh daemon.
    {
      const c = run(bun("many-streams", loPair.homeA, loPair.hostB, STREAMS, 64 << 10));
      await c.next();
      const stop = rssSampler([loPair.pidA, loPair.pidB]);
      const r = await c.next();
      const peak = stop();
      record("streams.rss", Math.max(...peak));
      record("streams.seconds", r.seconds);
      console.log(`${STREAMS} streams x 64 KiB echo: ${r.seconds.toFixed(2)} s, opens p50 ${r.openP50Ms?.toFixed(0)} ms max ${r.openMaxMs?.toFixed(0)} ms, failed ${r.failed} ${JSON.stringify(r.errors)}, peak RSS A ${peak[0]!.toFixed(0)} / B ${peak[1]!.toFixed(0)} MiB`);
    }
    {
      const relaxed = ["--registration-rate", "100000", "--prefix-registration-rate", "100000", "--pow-free-rate", "100000", "--request-rate", "100000", "--max-connections-per-ip", "100000", "--max-connections-per-prefix", "100000"];
      const registry = await rendezvous(join(dir, "rv-many"), "127.0.0.1", null, relaxed);
      const home = join(dir, "subject");
      const s = await daemon(home, registry, "127.0.0.1", "subject", null);
      await Bun.sleep(1000);
      const floor = rssMiB(s.pid);
      const peers = run(bun("many-peers", registry, home, String(s.nodeId), PEERS, join(dir, "many")), { timeoutMs: 600_000 });
      const ready = await peers.next();
      await Bun.sleep(2000);
      record("peers.rss", rssMiB(s.pid));
      record("peers.floor", floor);
      console.log(`subject daemon: idle ${floor.toFixed(0)} MiB, with ${ready.peers} trusted peers holding one stream each ${med("peers.rss").toFixed(0)} MiB (127.0.0.1 pair's daemon idle: ${idleFloor.toFixed(0)} MiB)`);
      peers.kill();
    }
    printTable();
    console.log(`\n(${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  } finally {
    await stopAll();
    await lo?.stop();
    removeLab();
    rmSync(dir, { recursive: true, force: true });
  }
}

function printTable(): void {
  const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : "n/a");
  const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "n/a");
  const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : "n/a");
  const rows: [string, string, string, string, string][] = [];
  rows.push(["bulk, 1 stream, app to app (netns)", `${f0(med("bulk.ns.pilot"))} MB/s`, `wireguard-go + iperf3: ${f0(med("bulk.ns.wg"))} MB/s`, ratio(med("bulk.ns.pilot"), med("bulk.ns.wg")), ">= 2.5x"]);
  rows.push(["bulk, 1 stream (127.0.0.1)", `${f0(med("bulk.lo.pilot"))} MB/s`, `js-libp2p on Node: ${f0(med("bulk.lo.p2p"))} MB/s (on Bun: ${f0(med("bulk.lo.p2pbun"))})`, ratio(med("bulk.lo.pilot"), med("bulk.lo.p2p")), ">= 1.0x"]);
  rows.push(["CPU per MB moved, all processes (127.0.0.1)", `${f1(med("cpu.pilot"))} ms`, `js-libp2p on Node: ${f1(med("cpu.p2p"))} ms (on Bun: ${f1(med("cpu.p2pbun"))})`, ratio(med("cpu.pilot"), med("cpu.p2p")), "<= 1.0x"]);
  rows.push(["new connection over an existing tunnel, p50 / p99 (netns)", `${f0(med("dial.pilot.p50"))} / ${f0(med("dial.pilot.p99"))} us`, `TCP connect over wireguard-go: ${f0(med("dial.wg.p50"))} / ${f0(med("dial.wg.p99"))} us`, `${ratio(med("dial.pilot.p50"), med("dial.wg.p50"))} / ${ratio(med("dial.pilot.p99"), med("dial.wg.p99"))}`, "<= 1.0x"]);
  rows.push(["1 B round trip on an open stream, p50 (127.0.0.1)", `${f0(med("rtt.pilot"))} us`, `js-libp2p on Node: ${f0(med("rtt.p2p"))} us (on Bun: ${f0(med("rtt.p2pbun"))})`, ratio(med("rtt.pilot"), med("rtt.p2p")), "<= 1.0x"]);
  rows.push([
    "HTTP keep-alive through the gateway (wrk -t2 -c32, netns)",
    `${f1(med("http.pilot.rps") / 1000)}k req/s, p99 ${f1(med("http.pilot.p99") / 1000)} ms`,
    `node:http over wireguard-go: ${f1(med("http.wg.rps") / 1000)}k req/s, p99 ${f1(med("http.wg.p99") / 1000)} ms`,
    `${ratio(med("http.pilot.rps"), med("http.wg.rps"))}, p99 ${ratio(med("http.pilot.p99"), med("http.wg.p99"))}`,
    ">= 1.0x, p99 <= 1.0x",
  ]);
  rows.push(["ping RTT p50 (netns)", `${f0(med("ping.pilot"))} us`, `ping over wireguard-go: ${f0(med("ping.wg"))} us`, ratio(med("ping.pilot"), med("ping.wg")), "<= 0.5x"]);
  rows.push([`daemon RSS, ${PEERS} trusted peers with one stream each`, `${f0(med("peers.rss"))} MiB (idle floor ${f0(med("peers.floor"))} MiB)`, "the Go reference's published figure: 24 MB", ratio(med("peers.rss"), 24), "<= 24 MB"]);
  rows.push(["daemon peak RSS during one bulk stream (netns)", `${f0(med("rss.bulk.pilot"))} MiB`, `wireguard-go: ${f0(med("rss.bulk.wg"))} MiB`, ratio(med("rss.bulk.pilot"), med("rss.bulk.wg")), "<= 1.0x"]);
  rows.push([`${STREAMS} concurrent streams x 64 KiB echo, peak RSS per daemon`, `${f0(med("streams.rss"))} MiB (${f1(med("streams.seconds"))} s)`, "—", "—", "<= 100 MB"]);
  const errs = med("http.pilot.errors") + med("http.wg.errors");
  console.log(`\nmedians of ${ROUNDS} round(s); ratio = Pilot / peer\n`);
  console.log("| figure | Pilot | peer, same run | ratio | goal |");
  console.log("|---|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
  if (errs > 0) console.log(`\nwrk reported errors (median per run): gateway ${med("http.pilot.errors")}, wireguard-go ${med("http.wg.errors")}`);
}

await main();
process.exit(0);
