/**
 * Pub/sub fan-out through one broker, with real daemons and processes:
 *
 *   figure: 100 subscribers on one broker each receive 5,000 events/s of
 *   256 B with 0 loss while they keep up, and one stalled subscriber changes
 *   nothing for the rest.
 *
 *   bun scripts/bench/pubsub.ts [--subs 100] [--daemons 4] [--rate 5000] [--size 256] [--seconds 5]
 *
 * Layout: a broker daemon; `--daemons` subscriber daemons, each with one
 * subscriber process holding subs/daemons subscriptions (one stream each,
 * SDK `subscribe` iterators); a publisher daemon with one publisher process
 * (SDK `publisher`, acks pipelined) publishing `--rate` events/s of `--size`
 * bytes to one topic for `--seconds`. Every event carries a counter and its
 * send time, so each subscriber counts what it got, sees gaps and measures
 * latency (publisher -> broker -> subscriber, one machine, one clock).
 *
 * A 1 s warm-up (JIT, buffer autotuning) is not reported. Phase 1:
 * everybody keeps up. Phase 2: the same, plus one subscriber that
 * never reads (on the first subscriber daemon, so it shares a tunnel with
 * working ones): it must be cut and the others must lose nothing.
 *
 * Everything runs on this machine, so the broker, 2 + --daemons daemons and
 * their clients share its cores: the delivered rate is what this machine
 * allows, reported beside the target. To tell the broker's limit from the
 * generator's, each phase also reports what was offered to the broker (acked
 * events x subscribers), what the broker itself wrote to its subscribers'
 * queues (its `delivered` counter), and each part's CPU per delivered event;
 * the summary multiplies those by the target rate: the cores the whole chain
 * (broker, subscriber daemons, subscriber processes, publisher) would need on
 * this machine.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { connect, type Subscription } from "../../src/driver/index.ts";
import { startCluster } from "../../test/support/cluster.ts";
import { stats } from "./baseline.ts";
import { addressOf } from "../../src/protocol/address.ts";
import { Broker, type BrokerOutlet } from "../../src/daemon/services/pubsub/broker.ts";
import { DEFAULT_PUBSUB_LIMITS } from "../../src/daemon/services/pubsub/limits.ts";

const TOPIC = "bench.events";
const print = (v: unknown) => process.stdout.write(JSON.stringify(v) + "\n");
const now = () => performance.timeOrigin + performance.now();

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

function argText(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : "";
}

/** Lines from stdin, one at a time. */
function stdinLines(): () => Promise<string> {
  let buffer = "";
  const waiting: ((l: string) => void)[] = [];
  const lines: string[] = [];
  process.stdin.on("data", (d) => {
    buffer += d;
    let i;
    while ((i = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      const w = waiting.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  return () => new Promise((r) => (lines.length ? r(lines.shift()!) : waiting.push(r)));
}

// ---- child roles ----------------------------------------------------------------

/** Subscriber process: `n` subscriptions; counts, gaps and latency samples per subscription until "stop". */
async function subscriberRole() {
  const d = await connect({ home: argText("home") });
  const n = arg("n", 25);
  const subs: Subscription[] = [];
  for (let i = 0; i < n; i++) subs.push(d.subscribe(argText("target"), TOPIC, { maxBuffered: 4096 }));
  await Promise.all(subs.map((s) => s.ready));
  const counts = new Array<number>(n).fill(0);
  const gaps = new Array<number>(n).fill(0);
  const errors: string[] = [];
  const latencies: number[] = [];
  subs.forEach(async (sub, i) => {
    let next = -1;
    try {
      for await (const e of sub) {
        const view = new DataView(e.data.buffer, e.data.byteOffset, e.data.byteLength);
        const counter = view.getUint32(0);
        if (next >= 0 && counter !== next) gaps[i]! += counter > next ? counter - next : 1;
        next = counter + 1;
        counts[i]!++;
        if ((counter & 15) === 0) latencies.push(now() - view.getFloat64(4));
      }
    } catch (e) {
      errors.push(`${(e as { reason?: string }).reason ?? ""} ${(e as Error).message}`);
    }
  });
  print({ ready: true, subscriptions: n });
  const line = stdinLines();
  await line(); // "stop"
  const l = stats(latencies);
  print({ counts, gaps, errors, latency_p50_ms: l.p50, latency_p99_ms: l.p99, latency_samples: l.n });
  for (const s of subs) await s.close();
  await d.close();
  process.exit(0);
}

/** A subscriber that never reads, until "stop": then it reads what reached it and reports whether it was cut. */
async function stalledRole() {
  const d = await connect({ home: argText("home") });
  const sub = d.subscribe(argText("target"), TOPIC, { maxBuffered: 1 });
  await sub.ready;
  print({ ready: true });
  const line = stdinLines();
  await line();
  let got = 0;
  let reason = "";
  const reading = (async () => {
    try {
      for await (const _ of sub) got++;
    } catch (e) {
      reason = (e as { reason?: string }).reason ?? (e as Error).message;
    }
  })();
  await Promise.race([reading, Bun.sleep(3000)]);
  print({ got, cut: reason === "slow_consumer", reason });
  await sub.close();
  await d.close();
  process.exit(0);
}

/** Publisher process: `rate` events/s of `size` bytes for `seconds`, acks pipelined. */
async function publisherRole() {
  const d = await connect({ home: argText("home") });
  const rate = arg("rate", 5000);
  const size = Math.max(12, arg("size", 256));
  const seconds = arg("seconds", 5);
  const publisher = await d.publisher(argText("target"));
  print({ ready: true });
  const line = stdinLines();
  await line(); // "go"
  const total = Math.round(rate * seconds);
  const refused: Record<string, number> = {};
  const ackLatency: number[] = [];
  let acked = 0;
  let sent = 0;
  const inFlight: Promise<void>[] = [];
  const t0 = performance.now();
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
    while (sent < due) {
      const data = new Uint8Array(size);
      const view = new DataView(data.buffer);
      view.setUint32(0, sent);
      view.setFloat64(4, now());
      const t = performance.now();
      inFlight.push(
        publisher.publish(TOPIC, data).then(
          () => {
            acked++;
            if ((acked & 15) === 0) ackLatency.push(performance.now() - t);
          },
          (e) => {
            const r = (e as { reason?: string }).reason ?? "error";
            refused[r] = (refused[r] ?? 0) + 1;
          },
        ),
      );
      sent++;
    }
    if (inFlight.length > 4096) await Promise.all(inFlight.splice(0));
    await Bun.sleep(2);
  }
  const sendSeconds = (performance.now() - t0) / 1000;
  await Promise.all(inFlight);
  const elapsed = (performance.now() - t0) / 1000;
  const a = stats(ackLatency);
  print({ sent, acked, refused, send_seconds: sendSeconds, seconds: elapsed, rate: acked / elapsed, ack_p50_ms: a.p50, ack_p99_ms: a.p99 });
  await publisher.close();
  await d.close();
  process.exit(0);
}

// ---- the run ----------------------------------------------------------------------

interface Child {
  proc: ChildProcess;
  next(): Promise<any>;
  send(line: string): void;
}

function spawnRole(args: string[]): Child {
  const proc = spawn(process.execPath, [import.meta.path, ...args], { stdio: ["pipe", "pipe", "inherit"] });
  let buffer = "";
  const lines: any[] = [];
  const waiters: ((v: any) => void)[] = [];
  proc.stdout!.on("data", (d) => {
    buffer += d;
    let i;
    while ((i = buffer.indexOf("\n")) >= 0) {
      const v = JSON.parse(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
      const w = waiters.shift();
      if (w) w(v);
      else lines.push(v);
    }
  });
  return {
    proc,
    next: () => new Promise((r) => (lines.length ? r(lines.shift()) : waiters.push(r))),
    send: (line) => proc.stdin!.write(line + "\n"),
  };
}

async function cpuSeconds(pids: number[]): Promise<number> {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const f = (await Bun.file(`/proc/${pid}/stat`).text()).split(") ")[1]!.split(" ");
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // gone
    }
  }
  return ticks / 100;
}

/**
 * The broker's own share, without streams or daemons: the sans-I/O Broker
 * (match, encode once, one batch per subscriber per turn, queue bounds) with
 * `subs` subscribers whose outlets take everything at once, fed turns of
 * `perTurn` events of `size` bytes. Deliveries per second of one core.
 */
function brokerCore(subs: number, size: number, perTurn: number, seconds = 1): { deliveriesPerS: number; usPerDelivery: number } {
  const limits = { ...DEFAULT_PUBSUB_LIMITS, publishRate: 1e9, publishBytesRate: 1e12, publishRateTotal: 1e9 };
  let clock = 0;
  const broker = new Broker(limits, clock);
  const sink: BrokerOutlet = { write() {}, backlog: 0, backlogEvents: 0 };
  const publisher = broker.open(addressOf(0, 1), sink, clock);
  if ("refused" in publisher) throw new Error(publisher.message);
  for (let i = 0; i < subs; i++) {
    const c = broker.open(addressOf(0, 100 + i), { write() {}, backlog: 0, backlogEvents: 0 }, clock);
    if ("refused" in c) throw new Error(c.message);
    broker.subscribe(c, 1, TOPIC);
  }
  const topicBytes = new TextEncoder().encode(TOPIC);
  const data = new Uint8Array(size);
  let deliveries = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    clock += 1;
    for (let i = 0; i < perTurn; i++) {
      const r = broker.publish(publisher, TOPIC, topicBytes, data, clock);
      if ("refused" in r) throw new Error(r.message);
      deliveries += r.count;
    }
    broker.flush();
  }
  const elapsed = (performance.now() - t0) / 1000;
  return { deliveriesPerS: Math.round(deliveries / elapsed), usPerDelivery: Number(((elapsed / deliveries) * 1e6).toFixed(3)) };
}

async function main() {
  const subsTotal = arg("subs", 100);
  const daemons = Math.max(1, Math.min(subsTotal, arg("daemons", 4)));
  const rate = arg("rate", 5000);
  const size = arg("size", 256);
  const seconds = arg("seconds", 5);
  const core = brokerCore(subsTotal, size, 10);
  console.log(
    `broker core  the sans-I/O broker alone (match, encode once, batch per subscriber; outlets that take everything): ${core.deliveriesPerS}/s deliveries on one core ` +
      `(${core.usPerDelivery} us each; turns of 10 events to ${subsTotal} subscribers), load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`,
  );
  console.log(`Pilot pub/sub fan-out: ${subsTotal} subscribers on ${daemons} daemons, ${rate} events/s of ${size} B for ${seconds} s (daemons from ${process.env.PILOT_BIN ?? "source"})`);
  const names = Array.from({ length: daemons }, (_, i) => `s${i}`);
  const c = await startCluster({ daemons: [{ name: "broker", hostname: "bench-broker" }, { name: "pub" }, ...names.map((name) => ({ name }))] });
  const children: Child[] = [];
  try {
    for (const n of ["pub", ...names]) await c.trust("broker", n);
    const brokerPid = c.daemon("broker").pid;
    console.log(`machine: ${navigator.hardwareConcurrency} cores, load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`);
    const broker = await connect({ home: c.daemon("broker").home });
    const results: Record<string, any> = {};

    for (const phase of ["warm-up", "keep-up", "one-stalled"] as const) {
      const phaseSeconds = phase === "warm-up" ? 1 : seconds;
      const subs = names.map((name, i) => {
        const n = Math.floor(subsTotal / daemons) + (i < subsTotal % daemons ? 1 : 0);
        const ch = spawnRole(["sub", "--home", c.daemon(name).home, "--target", "bench-broker", "--n", String(n)]);
        children.push(ch);
        return ch;
      });
      const stalled = phase === "one-stalled" ? spawnRole(["stall", "--home", c.daemon(names[0]!).home, "--target", "bench-broker"]) : null;
      if (stalled) children.push(stalled);
      await Promise.all([...subs.map((s) => s.next()), stalled?.next()]);
      const pub = spawnRole(["pub", "--home", c.daemon("pub").home, "--target", "bench-broker", "--rate", String(rate), "--size", String(size), "--seconds", String(phaseSeconds)]);
      children.push(pub);
      await pub.next();
      const before = (await broker.call("pubsub_status")) as any;
      const groups = {
        broker: [brokerPid],
        subscriber_daemons: names.map((n) => c.daemon(n).pid),
        subscriber_processes: [...subs.map((s) => s.proc.pid!), ...(stalled ? [stalled.proc.pid!] : [])],
        publisher: [c.daemon("pub").pid, pub.proc.pid!],
      };
      const cpuBefore = await Promise.all(Object.values(groups).map(cpuSeconds));
      const t0 = performance.now();
      pub.send("go");
      const p = await pub.next();
      const cpuAfter = await Promise.all(Object.values(groups).map(cpuSeconds));
      const cpu = Object.fromEntries(Object.keys(groups).map((k, i) => [k, Number(((cpuAfter[i]! - cpuBefore[i]!) / ((performance.now() - t0) / 1000)).toFixed(2))]));
      const wall = (performance.now() - t0) / 1000;
      await Bun.sleep(2000); // let the last events drain
      for (const s of subs) s.send("stop");
      const reports = await Promise.all(subs.map((s) => s.next()));
      stalled?.send("stop");
      const st = stalled ? await stalled.next() : null;
      const after = (await broker.call("pubsub_status")) as any;
      const counts: number[] = reports.flatMap((r) => r.counts);
      const lost = counts.map((n) => Math.max(0, p.acked - n));
      const lossTotal = lost.reduce((a, b) => a + b, 0);
      const gaps = reports.flatMap((r) => r.gaps).reduce((a: number, b: number) => a + b, 0);
      const errors = reports.flatMap((r) => r.errors);
      const delivered = counts.reduce((a, b) => a + b, 0);
      const span = Math.max(wall, phaseSeconds);
      // What the broker wrote to its subscribers' queues (its own counter) beside what was offered to it:
      // every acked event once per subscription that matched it.
      const brokerDelivered = after.delivered - before.delivered;
      const offered = p.acked * counts.length;
      const usPerDelivery = Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, delivered > 0 ? Number(((((v as number) * wall) / delivered) * 1e6).toFixed(2)) : 0]));
      results[phase] = {
        published: p.acked,
        publish_rate: Math.round(p.rate),
        refused: p.refused,
        subscribers: counts.length,
        min_received: Math.min(...counts),
        lost_total: lossTotal,
        gaps,
        errors: errors.slice(0, 3),
        delivered_per_s: Math.round(delivered / Math.max(wall, phaseSeconds)),
        per_subscriber_per_s: Math.round(Math.min(...counts) / Math.max(wall, phaseSeconds)),
        latency_p50_by_daemon_ms: reports.map((r) => Math.round(r.latency_p50_ms)),
        latency_p50_ms: Math.max(...reports.map((r) => r.latency_p50_ms)),
        latency_p99_ms: Math.max(...reports.map((r) => r.latency_p99_ms)),
        ack_p50_ms: p.ack_p50_ms,
        ack_p99_ms: p.ack_p99_ms,
        cpu_s_per_s: cpu,
        offered_per_s: Math.round(offered / span),
        broker_delivered_per_s: Math.round(brokerDelivered / span),
        broker_delivered_share: offered > 0 ? Number((brokerDelivered / offered).toFixed(4)) : 1,
        cpu_us_per_delivery: usPerDelivery,
        broker_cut: after.cut - before.cut,
        stalled: st,
      };
      print({ phase, ...results[phase] });
      for (const ch of [...subs, pub, ...(stalled ? [stalled] : [])]) await new Promise((r) => (ch.proc.exitCode !== null ? r(null) : ch.proc.once("exit", r)));
    }
    await broker.close();

    const k = results["keep-up"];
    const s = results["one-stalled"];
    const keptUp = (r: any) => r.lost_total === 0 && r.gaps === 0 && r.errors.length === 0 && r.publish_rate >= rate * 0.95;
    console.log("");
    console.log(`keep-up      ${k.subscribers} subscribers x ${k.published} events: min ${k.min_received} received, lost ${k.lost_total}, per subscriber ${k.per_subscriber_per_s}/s (target ${rate}/s), all together ${k.delivered_per_s}/s, latency p50 ${k.latency_p50_ms.toFixed(1)} ms p99 ${k.latency_p99_ms.toFixed(1)} ms, CPU s/s ${JSON.stringify(k.cpu_s_per_s)}`);
    // A cut subscriber that never reads cannot read the reason either: after the broker's linger time its stream is reset.
    const stalledCut = s.stalled?.cut === true || (s.stalled?.reason === "connection_lost" && s.broker_cut > 0);
    console.log(`one stalled  ${s.subscribers} subscribers x ${s.published} events: min ${s.min_received} received, lost ${s.lost_total}, latency p50 ${s.latency_p50_ms.toFixed(1)} ms p99 ${s.latency_p99_ms.toFixed(1)} ms; stalled one cut: ${stalledCut} (${s.stalled?.reason === "connection_lost" ? "connection_lost: reset after the linger time, its reason unread" : s.stalled?.reason || "not cut"}, it got ${s.stalled?.got} events)`);
    // Where the limit is: the CPU each part of the chain spends per delivered event (measured in keep-up),
    // times the deliveries the figure asks for, against the cores this machine has.
    const perDelivery = k.cpu_us_per_delivery as Record<string, number>;
    const need = Object.fromEntries(Object.entries(perDelivery).map(([g, us]) => [g, Number(((us * subsTotal * rate) / 1e6).toFixed(2))]));
    const needTotal = Object.values(need).reduce((a, b) => a + b, 0);
    console.log(
      `broker       offered ${k.offered_per_s}/s deliveries (acked events x subscribers), broker wrote ${k.broker_delivered_per_s}/s to its subscribers' queues (${(k.broker_delivered_share * 100).toFixed(1)} %${k.broker_delivered_share < 1 ? ": the rest were for subscribers it had cut" : ""}); subscribers counted ${k.delivered_per_s}/s`,
    );
    console.log(
      `CPU budget   us per delivered event ${JSON.stringify(perDelivery)}; ${subsTotal} x ${rate}/s would need cores ${JSON.stringify(need)} = ${needTotal.toFixed(2)} of this machine's ${navigator.hardwareConcurrency} (load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")})`,
    );
    const met = keptUp(k) && keptUp(s) && stalledCut && subsTotal >= 100 && rate >= 5000 && size >= 256;
    console.log(`figure (100 subscribers x 5000 events/s of 256 B, 0 loss; one stalled changes nothing): ${met ? "MET" : "NOT MET"} with these settings`);
  } finally {
    for (const ch of children) if (ch.proc.exitCode === null) ch.proc.kill("SIGKILL");
    await c.stop();
  }
}

switch (process.argv[2]) {
  case "sub":
    await subscriberRole();
    break;
  case "stall":
    await stalledRole();
    break;
  case "pub":
    await publisherRole();
    break;
  default:
    await main();
}
