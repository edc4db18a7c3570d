/**
 * A/B of one lever in the same run: two pairs of Pilot daemons on 127.0.0.1,
 * "A" as built and "B" with the environment given by --env (how a lever is
 * switched off or on), measured in alternating rounds; medians per figure.
 *
 *   bun scripts/bench/peers/ab.ts --env PILOT_NATIVE_AEAD=0 [--rounds 5] [--mb 128] [--samples 300] [--streams 1000]
 *
 * Figures: bulk MB/s on one stream, CPU ms per MB (both daemons, sender and
 * sink), 1 B round trip p50 on an open stream, new stream p50/p99, peak RSS
 * of the two daemons during bulk; with --streams N also N concurrent 64 KiB
 * echo streams (seconds, peak RSS of the two daemons), and RSS at the end.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, startCluster, type Cluster } from "../../../test/support/cluster.ts";
import { cpuSeconds } from "../../../test/tunnel/flood-probe.ts";

const argv = process.argv.slice(2);
const val = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : fallback;
};
const ROUNDS = Number(val("rounds", "5"));
const BYTES = Number(val("mb", "128")) << 20;
const SAMPLES = Number(val("samples", "300"));
const STREAMS = Number(val("streams", "0"));
const envText = val("env", "");
const envB = Object.fromEntries(envText.split(",").filter(Boolean).map((kv) => kv.split("=") as [string, string]));
const ROLES = join(import.meta.dir, "roles.ts");

function role(args: (string | number)[]): { next(): Promise<any>; proc: ChildProcess } {
  const proc = spawn(process.execPath, [ROLES, ...args.map(String)], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  let buf = "";
  const lines: any[] = [];
  const waiters: ((v: any) => void)[] = [];
  proc.stdout!.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const v = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(v);
      else lines.push(v);
    }
  });
  return { proc, next: () => new Promise((r) => (lines.length ? r(lines.shift()) : waiters.push(r))) };
}

const rss = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN) / 1024;
const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
const median = (xs: number[]) => q(xs, 0.5);

async function measure(c: Cluster, out: Record<string, number[]>) {
  const a = c.daemon("a");
  const b = c.daemon("b");
  const push = (k: string, v: number) => (out[k] ??= []).push(v);
  const sink = role(["pilot-sink", b.home]);
  await sink.next();
  const send = role(["pilot-send", a.home, "ab-b", BYTES]);
  await send.next();
  const cpu0 = cpuSeconds(a.pid) + cpuSeconds(b.pid);
  let peak = 0;
  const t = setInterval(() => (peak = Math.max(peak, rss(a.pid), rss(b.pid))), 50);
  const [r, s] = await Promise.all([sink.next(), send.next()]);
  clearInterval(t);
  const cpu = cpuSeconds(a.pid) + cpuSeconds(b.pid) - cpu0 + r.cpu + s.cpu;
  push("bulk MB/s", r.bytes / r.seconds / 1e6);
  push("CPU ms/MB", (cpu * 1000) / (r.bytes / 1e6));
  push("peak RSS MiB", peak);
  const rtt = role(["pilot-rtt", a.home, "ab-b", SAMPLES * 3]);
  await rtt.next();
  push("1 B RTT p50 us", q((await rtt.next()).samples, 0.5));
  const dial = role(["pilot-dial", a.home, "ab-b", SAMPLES]);
  await dial.next();
  const d = (await dial.next()).samples;
  push("dial p50 us", q(d, 0.5));
  push("dial p99 us", q(d, 0.99));
  if (STREAMS > 0) {
    const many = role(["many-streams", a.home, "ab-b", STREAMS, 64 << 10]);
    await many.next();
    let peak = 0;
    const t = setInterval(() => (peak = Math.max(peak, rss(a.pid), rss(b.pid))), 50);
    const m = await many.next();
    clearInterval(t);
    push(`${STREAMS} streams s`, m.seconds);
    push(`${STREAMS} streams peak RSS MiB`, peak);
  }
  push("RSS after, MiB", Math.max(rss(a.pid), rss(b.pid)));
  await Bun.sleep(3000);
  push("RSS after 3 s idle, MiB", Math.max(rss(a.pid), rss(b.pid)));
}

async function pair(env: Record<string, string>): Promise<Cluster> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const c = await startCluster({ daemons: [{ name: "a", hostname: "ab-a" }, { name: "b", hostname: "ab-b" }] });
    await c.trust("a", "b");
    return c;
  } finally {
    for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
}

const A = await pair({});
const B = await pair(envB);
try {
  const ra: Record<string, number[]> = {};
  const rb: Record<string, number[]> = {};
  console.log(`A/B: A = as built, B = ${envText || "(same)"}; ${ROUNDS} rounds, ${BYTES >> 20} MiB bulk, ${SAMPLES} samples`);
  for (let i = 0; i < ROUNDS; i++) {
    if (i % 2 === 0) {
      await measure(A, ra);
      await measure(B, rb);
    } else {
      await measure(B, rb);
      await measure(A, ra);
    }
    console.log(`round ${i + 1}: A ${Object.entries(ra).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(1)}`).join(", ")}`);
    console.log(`         B ${Object.entries(rb).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(1)}`).join(", ")}`);
  }
  console.log(`\n| figure | A (as built) | B (${envText}) | A/B |\n|---|---|---|---|`);
  for (const k of Object.keys(ra)) console.log(`| ${k} | ${median(ra[k]!).toFixed(1)} | ${median(rb[k]!).toFixed(1)} | ${(median(ra[k]!) / median(rb[k]!)).toFixed(2)} |`);
} finally {
  await A.stop();
  await B.stop();
}
process.exit(0);
