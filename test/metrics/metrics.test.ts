/**
 * Prometheus metrics scraped from real processes: a rendezvous and daemons
 * started with --metrics on 127.0.0.1, traffic between two trusted daemons (a
 * message, a file, a bench stream through echo), and the values checked in the
 * text each listener serves. Also: request headers change nothing (no
 * forwarded-for trust), other paths are 404, bad values are usage errors.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runPilot, startCluster, type Cluster } from "../support/cluster.ts";
import { isLoopback, parseMetricsAddress } from "../../src/util/metrics-listener.ts";
import { connect } from "../../src/driver/index.ts";

type Samples = Map<string, number>;

/** `name{a="x",b="y"} value` lines -> map keyed by `name{a="x",b="y"}` exactly as written (prom-client's label order). */
function parse(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not exposition format: ${line}`);
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** The value of `name` whose labels include all of `labels` (sum over the rest), or undefined when absent. */
function value(s: Samples, name: string, labels: Record<string, string> = {}): number | undefined {
  let total: number | undefined;
  for (const [key, v] of s) {
    const brace = key.indexOf("{");
    if ((brace < 0 ? key : key.slice(0, brace)) !== name) continue;
    const body = brace < 0 ? "" : key.slice(brace);
    if (Object.entries(labels).every(([k, want]) => body.includes(`${k}="${want}"`))) total = (total ?? 0) + v;
  }
  return total;
}

async function scrape(url: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string | null; text: string }> {
  const r = await fetch(url, { headers });
  return { status: r.status, type: r.headers.get("content-type"), text: await r.text() };
}

let cluster: Cluster;
let aUrl = "";
let bUrl = "";
let rvUrl = "";

beforeAll(async () => {
  // Port 0: the kernel picks a free port and \`daemon start\` reports it (a port found free beforehand could be
  // taken by another socket before the daemon binds it).
  cluster = await startCluster({
    rendezvousArgs: ["--metrics", "127.0.0.1:0"],
    daemons: [
      { name: "a", hostname: "metrics-a", extraArgs: ["--metrics", "127.0.0.1:0"] },
      { name: "b", hostname: "metrics-b", extraArgs: ["--metrics", "127.0.0.1:0"] },
    ],
  });
  for (const name of ["a", "b"]) {
    const at = cluster.daemon(name).metrics;
    if (!at || at.endsWith(":0")) throw new Error(`daemon start did not report the metrics port it bound: ${at}`);
  }
  aUrl = `http://${cluster.daemon("a").metrics}/metrics`;
  bUrl = `http://${cluster.daemon("b").metrics}/metrics`;
  rvUrl = cluster.rendezvousReady.metrics;
  await cluster.trust("a", "b");
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

describe("metrics while traffic runs", () => {
  test("daemon and rendezvous counters move with a message, a file and a bench stream", async () => {
    const before = { a: parse((await scrape(aUrl)).text), b: parse((await scrape(bUrl)).text), rv: parse((await scrape(rvUrl)).text) };

    const msg = await cluster.pilot("a", ["send-message", "metrics-b", "--data", "hello from a"]);
    expect(msg.code).toBe(0);
    const file = join(cluster.dir, "payload.bin");
    writeFileSync(file, new Uint8Array(300_000).map((_, i) => i * 7));
    const sent = await cluster.pilot("a", ["send-file", "metrics-b", file]);
    expect(sent.code).toBe(0);
    const bench = await cluster.pilot("a", ["bench", "metrics-b", "2", "--no-baseline"], { timeoutMs: 60_000 });
    expect(bench.code).toBe(0);
    const published = await cluster.pilot("a", ["publish", "metrics-b", "metrics.test", "--data", "21.5"]);
    expect(published.code).toBe(0);

    const a = parse((await scrape(aUrl)).text);
    const b = parse((await scrape(bUrl)).text);
    const rv = parse((await scrape(rvUrl)).text);

    // Daemon a: one direct peer with a session; bytes out grew by at least the bench and the file.
    // One peer, on one tier: direct on loopback once the path is confirmed (the relay until then, on a loaded machine).
    expect(value(a, "pilot_peers")).toBe(1);
    expect(value(a, "pilot_peers", { path: "direct" })! + value(a, "pilot_peers", { path: "relay" })!).toBe(1);
    expect(value(a, "pilot_peers", { path: "punched" })).toBe(0);
    // The one peer, by its path's datagram size: 1360 (relay, or before the search) or a size proved on loopback.
    expect(value(a, "pilot_peers_by_datagram_size")).toBe(1);
    expect(value(a, "pilot_sessions")).toBe(1);
    expect(value(a, "pilot_handshakes_total", { result: "completed" })!).toBeGreaterThanOrEqual(1);
    const outGrowth = value(a, "pilot_tunnel_bytes_total", { direction: "out" })! - (value(before.a, "pilot_tunnel_bytes_total", { direction: "out" }) ?? 0);
    expect(outGrowth).toBeGreaterThan(2_000_000 + 300_000);
    const inGrowth = value(a, "pilot_tunnel_bytes_total", { direction: "in" })! - (value(before.a, "pilot_tunnel_bytes_total", { direction: "in" }) ?? 0);
    expect(inGrowth).toBeGreaterThan(2_000_000); // the echo came back
    expect(value(a, "pilot_packets_total", { direction: "out" })!).toBeGreaterThan(value(before.a, "pilot_packets_total", { direction: "out" })! + 100);
    // Three streams at least (message, file, bench); all finished, so counted as opened and none open.
    expect(value(a, "pilot_streams_opened_total")! - value(before.a, "pilot_streams_opened_total")!).toBeGreaterThanOrEqual(3);
    expect(value(a, "pilot_stream_retransmits_total")).toBeGreaterThanOrEqual(0);
    expect(value(a, "pilot_trusted_nodes")).toBe(1);
    expect(value(a, "pilot_registry_connected")).toBe(1);
    expect(value(a, "pilot_buffer_budget_bytes")).toBe(64 * 1024 * 1024);
    expect(value(a, "pilot_drops_total", { layer: "plane", cause: "not_trusted" })).toBe(0);
    expect(value(a, "pilot_process_resident_memory_bytes")!).toBeGreaterThan(1_000_000);
    expect(value(a, "pilot_messages_outbox", { state: "queued" })).toBe(0); // delivered
    expect(value(a, "pilot_file_transfers", { direction: "out" })).toBe(0); // finished

    // Daemon b: the message and the file arrived as events; it received the bytes.
    expect(value(b, "pilot_events_total", { type: "message.received" })).toBe(1);
    expect(value(b, "pilot_events_total", { type: "file.received" })).toBe(1);
    expect(value(b, "pilot_tunnel_bytes_total", { direction: "in" })!).toBeGreaterThan(2_300_000);
    expect(value(b, "pilot_peers")).toBe(1);
    expect(value(b, "pilot_pubsub_events_total", { direction: "in" })! - (value(before.b, "pilot_pubsub_events_total", { direction: "in" }) ?? 0)).toBe(1);
    expect(value(b, "pilot_pubsub_bytes_total", { direction: "in" })! - (value(before.b, "pilot_pubsub_bytes_total", { direction: "in" }) ?? 0)).toBe(4);

    // Rendezvous: both registrations, the trust handshake, lookups; latency histograms; nodes online.
    expect(value(rv, "pilot_rendezvous_requests_total", { type: "register", result: "ok" })!).toBeGreaterThanOrEqual(2);
    expect(value(rv, "pilot_rendezvous_requests_total", { type: "trust_request", result: "ok" })).toBe(1);
    expect(value(rv, "pilot_rendezvous_requests_total", { type: "trust_approve", result: "ok" })).toBe(1);
    expect(value(rv, "pilot_rendezvous_request_duration_seconds_count", { type: "register" })!).toBeGreaterThanOrEqual(2);
    expect(value(rv, "pilot_rendezvous_request_duration_seconds_bucket", { type: "register", le: "+Inf" })).toBe(value(rv, "pilot_rendezvous_request_duration_seconds_count", { type: "register" }));
    expect(value(rv, "pilot_rendezvous_nodes_online")).toBe(2);
    expect(value(rv, "pilot_rendezvous_nodes", { state: "registered" })).toBe(2);
    expect(value(rv, "pilot_rendezvous_trust_pairs")).toBe(1);
    expect(value(rv, "pilot_rendezvous_beacon_registrations_total", { result: "ok" })!).toBeGreaterThanOrEqual(2);
    // The first frames may go through the relay while the direct path is confirmed: bytes and frames agree.
    expect(value(rv, "pilot_rendezvous_relay_bytes_total")! > 0).toBe(value(rv, "pilot_rendezvous_relay_frames_total", { result: "ok" })! > 0);
    expect(value(rv, "pilot_rendezvous_refusals_total", { scope: "request" })).toBe(0);
    // More requests than before the traffic (the resolve/lookup of metrics-b at least).
    expect(value(rv, "pilot_rendezvous_requests_total")!).toBeGreaterThan(value(before.rv, "pilot_rendezvous_requests_total")!);
  }, 90_000);

  test("IPC clients are counted while connected", async () => {
    const d = await connect({ home: cluster.daemon("a").home });
    try {
      expect(value(parse((await scrape(aUrl)).text), "pilot_ipc_clients")!).toBeGreaterThanOrEqual(1);
    } finally {
      await d.close();
    }
    let n = 1;
    for (let i = 0; i < 40 && n > 0; i++) {
      await Bun.sleep(50);
      n = value(parse((await scrape(aUrl)).text), "pilot_ipc_clients")!;
    }
    expect(n).toBe(0);
  });

  test("the rendezvous exposes aggregate counts only: no address, hostname or node id", async () => {
    const { text } = await scrape(rvUrl);
    for (const d of cluster.daemons.values()) {
      expect(text).not.toContain(d.address);
      expect(text).not.toContain(`"${d.nodeId}"`);
    }
    expect(text).not.toContain("metrics-a");
    expect(text).not.toContain("metrics-b");
  });
});

describe("rendezvous refusals", () => {
  test("connections over the per-IP limit are counted as connection refusals", async () => {
    const before = value(parse((await scrape(rvUrl)).text), "pilot_rendezvous_refusals_total", { scope: "connection" })!;
    const [host, port] = [cluster.registry.slice(0, cluster.registry.lastIndexOf(":")), Number(cluster.registry.slice(cluster.registry.lastIndexOf(":") + 1))];
    const sockets: { end(): void }[] = [];
    try {
      // The default limit is 64 connections per source IP; the daemons hold a few already.
      for (let i = 0; i < 70; i++) sockets.push(await Bun.connect({ hostname: host, port, socket: { data() {}, error() {} } }));
      let after = before;
      for (let i = 0; i < 50 && after <= before; i++) {
        await Bun.sleep(50);
        after = value(parse((await scrape(rvUrl)).text), "pilot_rendezvous_refusals_total", { scope: "connection" })!;
      }
      expect(after).toBeGreaterThan(before);
    } finally {
      for (const s of sockets) s.end();
    }
  }, 30_000);
});

describe("hostile registry input", () => {
  test("frames that are not requests and requests of unknown types are counted, under fixed labels", async () => {
    const before = parse((await scrape(rvUrl)).text);
    const [host, port] = [cluster.registry.slice(0, cluster.registry.lastIndexOf(":")), Number(cluster.registry.slice(cluster.registry.lastIndexOf(":") + 1))];
    const frame = (body: string) => {
      const b = Buffer.from(body);
      const h = Buffer.alloc(4);
      h.writeUInt32BE(b.length);
      return Buffer.concat([h, b]);
    };
    const socket = await Bun.connect({ hostname: host, port, socket: { data() {}, error() {} } });
    try {
      socket.write(frame("this is not json"));
      socket.write(frame(JSON.stringify({ type: "drop_tables_<script>", id: 1 })));
      let after = before;
      for (let i = 0; i < 50; i++) {
        await Bun.sleep(50);
        after = parse((await scrape(rvUrl)).text);
        if ((value(after, "pilot_rendezvous_requests_total", { type: "invalid" }) ?? 0) > (value(before, "pilot_rendezvous_requests_total", { type: "invalid" }) ?? 0)) break;
      }
      expect(value(after, "pilot_rendezvous_malformed_frames_total")!).toBeGreaterThan(value(before, "pilot_rendezvous_malformed_frames_total")!);
      expect(value(after, "pilot_rendezvous_requests_total", { type: "invalid" })!).toBeGreaterThan(0);
      const text = (await scrape(rvUrl)).text;
      expect(text).not.toContain("drop_tables");
      expect(text).not.toContain("<script>");
    } finally {
      socket.end();
    }
  }, 30_000);
});

describe("the listener", () => {
  test("serves the Prometheus text format at /metrics, 404 elsewhere, 405 to other methods", async () => {
    const ok = await scrape(aUrl);
    expect(ok.status).toBe(200);
    expect(ok.type).toContain("text/plain");
    expect(ok.text).toContain("# TYPE pilot_tunnel_bytes_total counter");
    for (const path of ["/", "/metrics/", "/metrics.json", "/debug", "/../metrics"]) {
      const r = await fetch(aUrl.replace("/metrics", path));
      expect(r.status).toBe(path === "/../metrics" ? 200 : 404); // "/../metrics" is /metrics once the URL is normalised
    }
    expect((await fetch(aUrl, { method: "POST", body: "x" })).status).toBe(405);
    expect((await fetch(rvUrl.replace("/metrics", "/nodes"))).status).toBe(404);
  });

  test("forwarded headers change nothing", async () => {
    const plain = parse((await scrape(rvUrl)).text);
    const spoofed = await scrape(rvUrl, { "X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9", Forwarded: "for=203.0.113.9", Host: "metrics.example.com" });
    expect(spoofed.status).toBe(200);
    expect([...parse(spoofed.text).keys()].sort()).toEqual([...plain.keys()].sort());
    const notFound = await fetch(rvUrl.replace("/metrics", "/"), { headers: { "X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1" } });
    expect(notFound.status).toBe(404);
  });

  test("the metrics config key starts the listener on the next daemon start", async () => {
    const home = join(cluster.dir, "c");
    const set = await runPilot(["config", "--set", "metrics=127.0.0.1:0", "--json"], { env: { PILOT_HOME: home } });
    expect(set.code).toBe(0);
    const c = await cluster.startDaemon({ name: "c" });
    expect(c.address).toBeTruthy();
    expect(c.metrics).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    const r = parse((await scrape(`http://${c.metrics}/metrics`)).text);
    expect(value(r, "pilot_registry_connected")).toBe(1);
    await cluster.stopDaemon("c");
  }, 30_000);
});

describe("bad values", () => {
  test("--metrics and the config key reject what is not IP:PORT with exit 2 and a hint", async () => {
    for (const bad of ["nonsense", "127.0.0.1", "localhost:9100", "127.0.0.1:99999", "300.1.1.1:9100", ":9100"]) {
      const r = await runPilot(["daemon", "start", "--metrics", bad, "--json"], { env: { PILOT_HOME: join(cluster.dir, "bad") } });
      expect(r.code).toBe(2);
      expect(r.json?.code ?? JSON.parse(r.stderr).code).toBe("invalid_argument");
      expect(JSON.parse(r.stderr).hint).toContain("--metrics 127.0.0.1:9100");
    }
    const rv = await runPilot(["rendezvous", "--metrics", "0.0.0.0", "--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0", "--json"], { env: { PILOT_HOME: join(cluster.dir, "bad-rv") } });
    expect(rv.code).toBe(2);
    expect(JSON.parse(rv.stderr).code).toBe("invalid_argument");
    const taken = await runPilot(["daemon", "start", "--registry", cluster.registry, "--beacon", "off", "--listen", "127.0.0.1:0", "--metrics", rvUrl.replace(/^http:\/\/|\/metrics$/g, ""), "--json"], { env: { PILOT_HOME: join(cluster.dir, "taken") } });
    expect(taken.code).toBe(1);
    expect(JSON.parse(taken.stderr.trim().split("\n").pop()!).code).toBe("already_exists");
    const cfg = await runPilot(["config", "--set", "metrics=anywhere", "--json"], { env: { PILOT_HOME: join(cluster.dir, "bad-cfg") } });
    expect(cfg.code).toBe(2);
    expect(JSON.parse(cfg.stderr).hint).toContain("metrics=127.0.0.1:9100");
  }, 60_000);

  test("address parsing and the loopback check", () => {
    expect(parseMetricsAddress("127.0.0.1:9100")).toEqual({ host: "127.0.0.1", port: 9100 });
    expect(parseMetricsAddress("[::1]:0")).toEqual({ host: "::1", port: 0 });
    expect(() => parseMetricsAddress("example.com:9100")).toThrow(RangeError);
    expect(isLoopback("127.0.0.1")).toBe(true);
    expect(isLoopback("127.1.2.3")).toBe(true);
    expect(isLoopback("::1")).toBe(true);
    expect(isLoopback("0.0.0.0")).toBe(false);
    expect(isLoopback("10.0.0.1")).toBe(false);
  });
});
