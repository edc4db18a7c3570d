/**
 * Where the CPU goes in both daemons under one bulk stream: two foreground
 * daemons on 127.0.0.1 run under Bun's sampling profiler (--cpu-prof), a
 * sender and a sink move --mb MiB through them, the daemons stop, and the
 * self time of the top functions of each is printed (the .cpuprofile files
 * stay in --out for Chrome DevTools / speedscope).
 *
 * With --gateway: HTTP keep-alive requests instead (`wrk -t2 -c32` for
 * --seconds) through the gateway (unprivileged, 127.77.0.0/16) -> daemon
 * "sender" -> daemon "receiver" -> a `serveHttp` server, with the gateway and
 * the server under the profiler too; prints each process's busy CPU per
 * request besides its top functions.
 *
 *   bun scripts/bench/peers/profile.ts [--mb 256] [--out /tmp/pilot-prof] [--top 25]
 *   bun scripts/bench/peers/profile.ts --gateway [--seconds 8]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, runCommand } from "../../../test/support/cluster.ts";

const argv = process.argv.slice(2);
const val = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : fallback;
};
const BYTES = Number(val("mb", "256")) << 20;
const OUT = val("out", "/tmp/pilot-prof");
const TOP = Number(val("top", "25"));
const GATEWAY = argv.includes("--gateway");
const SECONDS = Number(val("seconds", "8"));
const ROLES = join(import.meta.dir, "roles.ts");
const MAIN = join(ROOT, "src/cli/main.ts");
const procs: ChildProcess[] = [];

function start(args: string[], env: Record<string, string> = {}): { proc: ChildProcess; line: Promise<any>; lines: () => Promise<any> } {
  const proc = spawn(args[0]!, args.slice(1), { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  procs.push(proc);
  let buf = "";
  const queue: any[] = [];
  const waiters: ((v: any) => void)[] = [];
  proc.stdout!.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const l = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (!l.startsWith("{")) continue;
      const v = JSON.parse(l);
      const w = waiters.shift();
      if (w) w(v);
      else queue.push(v);
    }
  });
  proc.stderr!.resume();
  const lines = () => new Promise<any>((r) => (queue.length ? r(queue.shift()) : waiters.push(r)));
  return { proc, line: lines(), lines };
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** Self time per function (by samples), as "share  function  file:line". */
function summarize(file: string): string[] {
  const p = JSON.parse(readFileSync(file, "utf8")) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i]!);
    if (!n) continue;
    const dt = p.timeDeltas[i] ?? 0;
    const f = n.callFrame;
    const where = f.url ? `${f.url.replace(ROOT + "/", "").replace(/^file:\/\//, "")}:${f.lineNumber + 1}` : "";
    const key = `${f.functionName || "(anonymous)"}  ${where}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  }
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP)
    .map(([k, v]) => `${((v / total) * 100).toFixed(1).padStart(5)} %  ${k}`);
}

/** Sampled time outside the idle loop, in microseconds. */
function busyMicros(file: string): number {
  const p = JSON.parse(readFileSync(file, "utf8")) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  let busy = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const name = byId.get(p.samples[i]!)?.callFrame.functionName;
    if (name !== "(idle)" && name !== "(program)" && name !== "(garbage collector)") busy += p.timeDeltas[i] ?? 0;
  }
  return busy;
}

async function main() {
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  const dir = mkdtempSync("/tmp/pilot-prof-run-");
  try {
    const rv = start([process.execPath, MAIN, "rendezvous", "--json", "--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0"], { PILOT_HOME: join(dir, "rv") });
    const registry = (await rv.line).data.registry as string;
    const daemons: { home: string; proc: ChildProcess; id: number }[] = [];
    for (const name of ["sender", "receiver"]) {
      const home = join(dir, name);
      const d = start(
        [process.execPath, "--cpu-prof", `--cpu-prof-dir=${OUT}`, `--cpu-prof-name=${name}.cpuprofile`, MAIN, "daemon", "start", "--foreground", "--json", "--registry", registry, "--beacon", "off", "--listen", "127.0.0.1:0", "--hostname", `prof-${name}`],
        { PILOT_HOME: home },
      );
      const ready = await d.line;
      daemons.push({ home, proc: d.proc, id: ready.data.node_id });
    }
    const [s, r] = daemons as [(typeof daemons)[0], (typeof daemons)[0]];
    const as = (home: string, args: string[]) => runCommand([process.execPath, MAIN, ...args, "--json"], { env: { ...process.env, PILOT_HOME: home } });
    await as(r.home, ["handshake", String(s.id), "profile"]);
    await as(s.home, ["approve", String(r.id)]);
    for (let i = 0; i < 100 && !(await as(r.home, ["trust"])).json?.data?.trusted?.length; i++) await Bun.sleep(50);
    const profiled = daemons.map((d) => d.proc);
    let requests = 0;
    if (GATEWAY) {
      const prof = (name: string) => ["--cpu-prof", `--cpu-prof-dir=${OUT}`, `--cpu-prof-name=${name}.cpuprofile`];
      const server = start([process.execPath, ...prof("server"), ROLES, "http-server", r.home, "127.0.0.1"]);
      await server.line;
      const gw = start([process.execPath, ...prof("gateway"), MAIN, "gateway", "start", "--foreground", "--json", "--subnet", "127.77.0.0/16", "--ports", "8080", "prof-receiver"], { PILOT_HOME: s.home });
      const mapped = await gw.line;
      const ip = mapped.data?.mappings?.[0]?.local_ip ?? "127.77.0.1";
      profiled.push(server.proc, gw.proc);
      const wrk = Bun.spawnSync(["wrk", "-t2", "-c32", `-d${SECONDS}s`, "--latency", `http://${ip}:8080/`]);
      const out = wrk.stdout.toString();
      requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
      console.log(`gateway under the profiler: ${/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]} req/s, p99 ${/\s99%\s+(\S+)/.exec(out)?.[1]} (${requests} requests; the profiler costs some)`);
    } else {
      const sink = start([process.execPath, ROLES, "pilot-sink", r.home]);
      await sink.line;
      const send = start([process.execPath, ROLES, "pilot-send", s.home, "prof-receiver", String(BYTES)]);
      await send.line;
      const result = await sink.lines();
      console.log(`bulk under the profiler: ${(result.bytes / result.seconds / 1e6).toFixed(0)} MB/s (the profiler costs some)`);
    }
    for (const p of profiled) p.kill("SIGTERM");
    await Promise.all(profiled.map((p) => new Promise((res) => (p.exitCode !== null ? res(null) : p.once("exit", res)))));
    rv.proc.kill("SIGTERM");
    for (const f of readdirSync(OUT).filter((f) => f.endsWith(".cpuprofile"))) {
      const busy = busyMicros(join(OUT, f));
      console.log(`\n== ${f} (self time, top ${TOP})${requests > 0 ? `: ${(busy / requests).toFixed(1)} us busy per request` : ""}`);
      for (const line of summarize(join(OUT, f))) console.log(line);
    }
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
