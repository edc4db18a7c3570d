/**
 * HTTP through the gateway, beside the same `node:http` server reached
 * directly over TCP, in the same run:
 *
 *   wrk -> gateway (127.x:8080) -> daemon B -> tunnel -> daemon A -> node:http on Pilot port 8080
 *   wrk -> node:http on 127.0.0.1 (the same handler, the same process)
 *
 * Four load runs (keep-alive, and a new connection per request, which makes
 * the gateway dial a new Pilot stream each time) and one bulk download.
 * Uses wrk (`apt-get install wrk`) if it is installed, else a small built-in
 * load generator (its numbers are lower than wrk's: compare ratios only).
 *
 *   bun scripts/bench/gateway.ts [--duration 10] [--connections 32] [--threads 2] [--bulk-mb 128]
 *   PILOT_BIN=dist/pilot bun scripts/bench/gateway.ts      # daemons and gateway from the binary
 *
 * Every process it starts is stopped by pid at the end.
 */
import http from "node:http";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { connect } from "../../src/driver/index.ts";
import { pilotCommand, ROOT, startCluster } from "../../test/support/cluster.ts";
import { child, stats } from "./baseline.ts";

const PORT = 8080;
const STATUS = JSON.stringify({ status: "healthy", agent: "bench", version: "1.0.0" }) + "\n";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const print = (v: unknown) => process.stdout.write(JSON.stringify(v) + "\n");

/** The seed's status route, and a bulk body for the download figure. */
function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://x");
  if (url.pathname === "/bulk") {
    const total = Number(url.searchParams.get("mb") ?? "64") << 20;
    res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": total });
    const chunk = Buffer.alloc(256 << 10, 0x61);
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const n = Math.min(chunk.length, total - sent);
        sent += n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
    return;
  }
  res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(STATUS) });
  res.end(STATUS);
}

/** Child role: one handler, served on TCP and on Pilot. */
async function server(home: string) {
  const tcp = http.createServer(handler);
  await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", r));
  const pilot = await connect({ home });
  await pilot.serveHttp(PORT, handler);
  print({ ready: true, tcpPort: (tcp.address() as { port: number }).port });
  await new Promise(() => {});
}

/** Child role: the fallback load generator. */
async function load(url: string, seconds: number, connections: number, close: boolean) {
  const agent = new http.Agent({ keepAlive: !close, maxSockets: connections });
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  print({ ready: true });
  const one = () =>
    new Promise<void>((resolve) => {
      const t = performance.now();
      const req = http.get(url, { agent, headers: close ? { Connection: "close" } : {} }, (res) => {
        res.on("data", () => {});
        res.on("end", () => {
          latencies.push((performance.now() - t) * 1000);
          resolve();
        });
      });
      req.on("error", () => {
        errors++;
        resolve();
      });
    });
  const started = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < end) await one();
    }),
  );
  const s = stats(latencies);
  print({ rps: latencies.length / ((performance.now() - started) / 1000), p50: s.p50, p99: s.p99, errors });
  process.exit(0);
}

interface LoadResult {
  rps: number;
  /** microseconds */
  p50: number;
  p99: number;
  errors: number;
  raw?: string;
}

function toMicros(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === "us" ? 1 : m[2] === "ms" ? 1000 : 1_000_000);
}

const hasWrk = spawnSync("wrk", ["--version"]).error === undefined;

async function runLoad(url: string, seconds: number, connections: number, threads: number, close: boolean): Promise<LoadResult> {
  if (hasWrk) {
    const args = ["-t", String(threads), "-c", String(connections), "-d", `${seconds}s`, "--latency", ...(close ? ["-H", "Connection: close"] : []), url];
    // Not spawnSync: this process must keep reading the gateway's log meanwhile.
    const proc = Bun.spawn(["wrk", ...args], { stdout: "pipe", stderr: "inherit" });
    const out = await new Response(proc.stdout).text();
    await proc.exited;
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
    const p50 = toMicros(/\s50%\s+(\S+)/.exec(out)?.[1] ?? "");
    const p99 = toMicros(/\s99%\s+(\S+)/.exec(out)?.[1] ?? "");
    const errLine = /Socket errors: (.*)/.exec(out)?.[1];
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
    const errors = (errLine ? errLine.split(",").reduce((n, part) => n + Number(part.trim().split(" ")[1] ?? 0), 0) : 0) + non2xx;
    return { rps, p50, p99, errors, raw: out };
  }
  const c = child(["load", url, String(seconds), String(connections), close ? "close" : "keep"], import.meta.path);
  await c.ready;
  return c.result;
}

/** `curl` download speed in MB/s (NaN if the answer was not a 200 of the expected size). */
function download(url: string, bytes: number): number {
  const r = spawnSync("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code} %{speed_download} %{size_download}", url], { encoding: "utf8" });
  const [status, speed, size] = r.stdout.trim().split(" ").map(Number);
  if (status !== 200 || size !== bytes) {
    console.log(`download of ${url} failed: HTTP ${status}, ${size} bytes ${r.stderr.trim()}`);
    return NaN;
  }
  return (speed ?? 0) / 1e6;
}

async function main() {
  const seconds = arg("duration", 10);
  const connections = arg("connections", 32);
  const threads = arg("threads", 2);
  const bulkMb = arg("bulk-mb", 128);
  const third = (process.pid % 250) + 1;
  const subnet = `127.79.${third}.0/24`;
  const gatewayIp = `127.79.${third}.1`;
  console.log(`Gateway benchmark: ${hasWrk ? `wrk -t${threads} -c${connections} -d${seconds}s` : `built-in load generator (wrk not found), ${connections} connections, ${seconds} s`}; pilot from ${process.env.PILOT_BIN ?? "source"}`);

  const c = await startCluster({ daemons: [{ name: "srv", hostname: "bench-srv" }, { name: "cli", hostname: "bench-cli" }] });
  let gateway: ChildProcess | null = null;
  let gatewayLog = "";
  const srv = child(["server", c.daemon("srv").home], import.meta.path);
  try {
    await c.trust("srv", "cli");
    const { tcpPort } = await srv.ready;

    const [cmd, ...base] = pilotCommand();
    gateway = spawn(cmd!, [...base, "gateway", "start", "--foreground", "--json", "--subnet", subnet, "--ports", String(PORT), "bench-srv"], {
      cwd: ROOT,
      env: { ...process.env, ...c.daemon("cli").env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    gateway.stderr!.on("data", (d) => (gatewayLog += d));
    await new Promise<void>((resolve, reject) => {
      let out = "";
      gateway!.stdout!.on("data", (d) => {
        out += d;
        if (out.includes('"status":"ok"')) resolve();
      });
      gateway!.on("exit", (code) => reject(new Error(`the gateway exited (${code}): ${out}`)));
    });

    const direct = `http://127.0.0.1:${tcpPort}/api/status`;
    const viaGateway = `http://${gatewayIp}:${PORT}/api/status`;
    // Warm-up: tunnel, JIT, connection pools.
    await runLoad(viaGateway, 2, connections, threads, false);
    await runLoad(direct, 1, connections, threads, false);

    const rows: [string, LoadResult, LoadResult][] = [];
    const keepAlive = [await runLoad(direct, seconds, connections, threads, false), await runLoad(viaGateway, seconds, connections, threads, false)] as const;
    rows.push(["keep-alive", ...keepAlive]);
    const bulkDirect = download(`http://127.0.0.1:${tcpPort}/bulk?mb=${bulkMb}`, bulkMb << 20);
    const bulkGateway = download(`http://${gatewayIp}:${PORT}/bulk?mb=${bulkMb}`, bulkMb << 20);
    // Last: connection churn leaves the agent's daemon with many streams in TIME_WAIT.
    const churn = [await runLoad(direct, seconds, connections, threads, true), await runLoad(viaGateway, seconds, connections, threads, true)] as const;
    rows.push(["new connection per request", ...churn]);

    const ms = (us: number) => `${(us / 1000).toFixed(2)} ms`;
    console.log("");
    console.log(`${"".padEnd(28)} | ${"direct TCP (node:http)".padEnd(40)} | ${"through the gateway (Pilot)".padEnd(40)} | gateway/direct`);
    for (const [name, d, g] of rows) {
      const cell = (r: LoadResult) => `${r.rps.toFixed(0).padStart(6)} req/s p50 ${ms(r.p50).padStart(8)} p99 ${ms(r.p99).padStart(8)}`;
      console.log(`${name.padEnd(28)} | ${cell(d)} | ${cell(g)} | ${(g.rps / d.rps).toFixed(2)}x req/s, p50 ${(g.p50 / d.p50).toFixed(1)}x`);
      if (d.errors || g.errors) console.log(`${"".padEnd(28)} | errors: direct ${d.errors}, gateway ${g.errors}`);
    }
    console.log(`${`bulk GET ${bulkMb} MiB (curl)`.padEnd(28)} | ${`${bulkDirect.toFixed(0)} MB/s`.padEnd(31)} | ${`${bulkGateway.toFixed(1)} MB/s`.padEnd(31)} | ${(bulkGateway / bulkDirect).toFixed(2)}x`);
    await Bun.sleep(200); // the gateway's last log lines
    const failures = new Map<string, number>();
    for (const m of gatewayLog.matchAll(/connection failed.*? code=(\w+)/g)) failures.set(m[1]!, (failures.get(m[1]!) ?? 0) + 1);
    if (failures.size > 0) console.log(`gateway: Pilot connections that failed, by code: ${[...failures].map(([k, v]) => `${k} ${v}`).join(", ")}`);
    const counters = ((await c.pilot("srv", ["info"])).json?.data?.packets ?? {}) as Record<string, number>;
    if (counters.syn_rate_limited) console.log(`agent's daemon: ${counters.syn_rate_limited} SYNs dropped by its per-peer SYN rate limit (each costs the client a SYN retransmit, ~1 s)`);
    if (counters.connection_limit) console.log(`agent's daemon: ${counters.connection_limit} connections refused by its per-port connection limit (streams in TIME_WAIT count against it)`);
    if (process.argv.includes("--log")) console.log(gatewayLog);
    if (process.argv.includes("--raw")) for (const [name, d, g] of rows) console.log(`\n== ${name}: direct\n${d.raw ?? ""}\n== ${name}: gateway\n${g.raw ?? ""}`);
  } finally {
    if (gateway && gateway.exitCode === null) {
      gateway.kill("SIGTERM");
      await new Promise((r) => gateway!.once("exit", r));
    }
    srv.kill();
    await c.stop();
  }
}

const role = process.argv[2];
if (role === "server") await server(process.argv[3]!);
else if (role === "load") await load(process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]), process.argv[6] === "close");
else await main();
