/**
 * End-to-end figures through two real daemons (and a real rendezvous) on
 * 127.0.0.1, each beside its baseline measured in the same run:
 *
 *   stream throughput, app -> daemon A -> tunnel -> daemon B -> app   vs raw UDP and TCP loopback
 *   new connection over an existing tunnel, incl. IPC (dial p50)     vs TCP connect
 *   ping over the overlay (p50)                                      vs UDP echo RTT
 *
 *   bun scripts/bench/e2e.ts [--mb 256] [--samples 300]
 *   PILOT_BIN=dist/pilot bun scripts/bench/e2e.ts     # daemons from the compiled binary
 *
 * Sender and sink run in separate processes (as do the baselines'), so the
 * two daemons, the sender and the sink compete for the machine's cores just
 * as they would in real use.
 */
import { connect } from "../../src/driver/index.ts";
import { startCluster } from "../../test/support/cluster.ts";
import { child, stats, tcpLatency, tcpThroughput, udpRtt, udpThroughput, type Stats } from "./baseline.ts";

const print = (v: unknown) => process.stdout.write(JSON.stringify(v) + "\n");

/** Child role: accept one stream on `port` through the daemon at `home`, count it, report. */
async function sink(home: string, port: number) {
  const d = await connect({ home });
  const server = await d.listen(port);
  print({ ready: true });
  server.on("connection", (s) => {
    let got = 0;
    const t0 = performance.now();
    s.on("data", (c: Buffer) => (got += c.length));
    s.on("end", () => {
      print({ bytes: got, seconds: (performance.now() - t0) / 1000 });
      process.exit(0);
    });
  });
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const fmt = (s: Stats) => `p50 ${s.p50.toFixed(0)} us, p99 ${s.p99.toFixed(0)} us`;

async function main() {
  const mb = arg("mb", 256);
  const samples = arg("samples", 300);
  const bytes = mb << 20;
  console.log(`Pilot end-to-end benchmark (${mb} MiB transfers, ${samples} samples; daemons from ${process.env.PILOT_BIN ?? "source"})`);

  const udp = await udpThroughput(bytes);
  const tcp = await tcpThroughput(bytes);
  const udpEcho = await udpRtt(samples);
  const tcpLat = await tcpLatency(samples);

  const c = await startCluster({ daemons: [{ name: "a", hostname: "bench-a" }, { name: "b", hostname: "bench-b" }] });
  try {
    await c.trust("a", "b");
    const a = await connect({ home: c.daemon("a").home });

    // Throughput: one stream, sender here, sink in its own process.
    await a.call("ping", { target: "bench-b", seq: 0 }); // tunnel up before timing
    const sinkProc = child(["sink", c.daemon("b").home, "9000"], import.meta.path);
    await sinkProc.ready;
    const s = await a.dial("bench-b", 9000);
    const chunk = Buffer.alloc(256 * 1024, 7);
    for (let sent = 0; sent < bytes; sent += chunk.length) if (!s.write(chunk)) await new Promise((r) => s.once("drain", r));
    s.end();
    const r = await sinkProc.result;
    const pilot = r.bytes / r.seconds / 1e6;

    // New connections over the existing tunnel, to the echo service, including IPC.
    const dials: number[] = [];
    for (let i = 0; i < samples + 20; i++) {
      const t = performance.now();
      const sock = await a.dial("bench-b", 7);
      if (i >= 20) dials.push((performance.now() - t) * 1000);
      sock.destroy();
    }
    const dial = stats(dials);

    // Ping: the daemon-measured overlay RTT, and the total as an app sees it (through IPC).
    const overlay: number[] = [];
    const total: number[] = [];
    for (let i = 0; i < samples + 20; i++) {
      const t = performance.now();
      const p = (await a.call("ping", { target: "bench-b", seq: i + 1 })) as { rtt_ms: number };
      if (i >= 20) {
        overlay.push(p.rtt_ms * 1000);
        total.push((performance.now() - t) * 1000);
      }
    }
    const ping = stats(overlay);
    const pingTotal = stats(total);
    await a.close();

    console.log("");
    console.log(`stream throughput   pilot ${pilot.toFixed(1)} MB/s | raw UDP ${udp.toFixed(1)} MB/s | TCP ${tcp.toFixed(0)} MB/s | pilot/UDP ${(pilot / udp).toFixed(2)}x | target >= 125 MB/s and >= 0.4x UDP`);
    console.log(`new connection      pilot dial ${fmt(dial)} | TCP connect ${fmt(tcpLat.connect)} | target p50 <= 1000 us`);
    console.log(`ping (overlay)      pilot ${fmt(ping)} | UDP echo ${fmt(udpEcho)} | added p50 ${(ping.p50 - udpEcho.p50).toFixed(0)} us | target <= +150 us`);
    console.log(`ping (app, via IPC) pilot ${fmt(pingTotal)} | TCP echo ${fmt(tcpLat.rtt)}`);
  } finally {
    await c.stop();
  }
}

if (process.argv[2] === "sink") await sink(process.argv[3]!, Number(process.argv[4]));
else await main();
