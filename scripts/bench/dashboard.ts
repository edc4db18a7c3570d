/**
 * What the local dashboard costs a daemon: CPU time of two otherwise equal
 * daemons (one with the dashboard, one with --dashboard off, each with one
 * trusted peer and a tunnel) while nobody looks, then while a client polls
 * /api/state once a second as the page does; and that request's latency and
 * size. Real daemons and a rendezvous on 127.0.0.1.
 *
 *   bun scripts/bench/dashboard.ts [--seconds 30]
 *   PILOT_BIN=dist/pilot bun scripts/bench/dashboard.ts
 *
 * CPU comes from /proc/PID/stat (Linux; 10 ms ticks, so short runs are coarse).
 */
import { readFileSync } from "node:fs";
import { startCluster } from "../../test/support/cluster.ts";

const arg = process.argv.indexOf("--seconds");
const seconds = arg > 0 ? Number(process.argv[arg + 1]) : 30;
const print = (v: unknown) => process.stdout.write(JSON.stringify(v) + "\n");

/** User + system CPU of `pid`, in ms. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const c = await startCluster({ daemons: [{ name: "on" }, { name: "off", extraArgs: ["--dashboard", "off"] }, { name: "peer" }] });
try {
  const peer = c.daemon("peer").address;
  for (const n of ["on", "off"]) {
    await c.trust(n, "peer");
    await c.pilot(n, ["ping", peer, "--count", "1"]);
  }
  const on = c.daemon("on").pid;
  const off = c.daemon("off").pid;
  await Bun.sleep(2000);

  let a = cpuMs(on);
  let b = cpuMs(off);
  await Bun.sleep(seconds * 1000);
  print({ phase: "unwatched", seconds, cpu_ms_dashboard_on: cpuMs(on) - a, cpu_ms_dashboard_off: cpuMs(off) - b });

  const url = (await c.pilot("on", ["dashboard"])).json.data.url as string;
  const headers = { authorization: `Bearer ${new URL(url).searchParams.get("token")}` };
  const state = new URL("/api/state", url).toString();
  const times: number[] = [];
  let bytes = 0;
  a = cpuMs(on);
  b = cpuMs(off);
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    const started = performance.now();
    const r = await fetch(state, { headers });
    bytes = (await r.arrayBuffer()).byteLength;
    times.push(performance.now() - started);
    await Bun.sleep(1000);
  }
  print({ phase: "watched (1 request/s)", seconds, cpu_ms_dashboard_on: cpuMs(on) - a, cpu_ms_dashboard_off: cpuMs(off) - b });
  times.sort((x, y) => x - y);
  const q = (p: number) => Math.round(times[Math.min(times.length - 1, Math.floor(times.length * p))]! * 100) / 100;
  print({ request: "GET /api/state", n: times.length, p50_ms: q(0.5), p95_ms: q(0.95), max_ms: q(1), body_bytes: bytes });
} finally {
  await c.stop();
}
