/**
 * What the Prometheus metrics cost (docs/METRICS.md), through real daemons and
 * a real rendezvous on 127.0.0.1:
 *
 *   scrape time of a daemon's /metrics: idle, and with N open streams
 *   scrape time of the rendezvous's /metrics
 *   stream throughput (pilot bench) with nobody scraping vs a scrape every 100 ms
 *     (150 times Prometheus's usual 15 s), runs alternated
 *
 *   bun scripts/bench/metrics.ts [--streams 200] [--scrapes 200] [--mb 64] [--runs 3]
 */
import { connect } from "../../src/driver/index.ts";
import { startCluster } from "../../test/support/cluster.ts";
import { stats } from "./baseline.ts";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

async function freePort(): Promise<number> {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

async function scrapeTimes(url: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await fetch(url);
    await r.text();
    out.push(performance.now() - t0);
  }
  return out;
}

const streamsWanted = arg("streams", 200);
const scrapes = arg("scrapes", 200);
const mb = arg("mb", 64);
const runs = arg("runs", 3);

const port = await freePort();
const url = `http://127.0.0.1:${port}/metrics`;
const cluster = await startCluster({
  rendezvousArgs: ["--metrics", "127.0.0.1:0"],
  daemons: [
    { name: "a", hostname: "bench-a", extraArgs: ["--metrics", `127.0.0.1:${port}`] },
    { name: "b", hostname: "bench-b" },
  ],
});
try {
  await cluster.trust("a", "b");
  await cluster.pilot("a", ["ping", "bench-b", "--count", "1"]);
  const report: Record<string, unknown> = {};
  const summary = (xs: number[]) => {
    const s = stats(xs);
    return { p50_ms: +s.p50.toFixed(2), p99_ms: +s.p99.toFixed(2) };
  };
  report.scrape_idle = summary(await scrapeTimes(url, scrapes));
  report.scrape_rendezvous = summary(await scrapeTimes(cluster.rendezvousReady.metrics, scrapes));

  // N open streams a -> b (held open while scraping).
  const da = await connect({ home: cluster.daemon("a").home });
  const db = await connect({ home: cluster.daemon("b").home });
  const server = await db.listen(1000);
  server.on("connection", () => {});
  const sockets = [];
  for (let i = 0; i < streamsWanted; i++) sockets.push(await da.dial("bench-b", 1000));
  report[`scrape_with_${streamsWanted}_streams`] = summary(await scrapeTimes(url, scrapes));
  report.pilot_streams_seen = Number(/^pilot_streams (\d+)$/m.exec(await (await fetch(url)).text())?.[1]);
  for (const s of sockets) s.destroy();
  await Bun.sleep(500);

  // Throughput with and without a 10 Hz scraper, alternated.
  const bench = async () => {
    const r = await cluster.pilot("a", ["bench", "bench-b", String(mb), "--no-baseline"], { timeoutMs: 300_000 });
    if (r.code !== 0) throw new Error(`bench failed: ${r.stderr}`);
    return r.json.data.send_mbps as number;
  };
  const quiet: number[] = [];
  const scraped: number[] = [];
  for (let i = 0; i < runs; i++) {
    quiet.push(await bench());
    let on = true;
    const loop = (async () => {
      while (on) {
        await (await fetch(url)).text();
        await Bun.sleep(100);
      }
    })();
    scraped.push(await bench());
    on = false;
    await loop;
  }
  report.bench_send_mbps_no_scrape = quiet;
  report.bench_send_mbps_scrape_10hz = scraped;
  report.bench_mb = mb;
  process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  await da.close?.();
  await db.close?.();
} finally {
  await cluster.stop();
}
