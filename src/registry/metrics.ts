/**
 * The rendezvous's Prometheus metrics (`pilot rendezvous --metrics HOST:PORT`):
 * aggregate counts only. No metric carries a node id, address, hostname, tag
 * or trust pair, so a scrape says how busy the rendezvous is and nothing about
 * who uses it (docs/METRICS.md).
 *
 * The registry's request handler reports each request once (`request`: its
 * type, its result and how long it took); refusals before a request is read
 * (`refused`) are counted by where they happened. Everything else is read on
 * scrape: the registry's connections, the store's counts, the beacon's stats.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { REQUEST_TYPES } from "./wire.ts";
import type { BeaconStats } from "../beacon/server.ts";
import type { Logger } from "../util/log.ts";
import { startMetricsListener, type MetricsAddress, type MetricsListener } from "../util/metrics-listener.ts";

/** What the registry server tells the metrics (RegistryServerOptions.observer). */
export interface RegistryObserver {
  /** A request that reached the service: its claimed type, its outcome (ok or the error code), its duration. */
  request(type: unknown, result: { ok: boolean; error?: { code?: unknown } }, seconds: number): void;
  /** Refused before any request was handled: `connection` (connection limits), `frames` (a connection's frame budget). */
  refused(scope: "connection" | "frames"): void;
  /** A frame that could not be read as a request at all (bad length, not JSON). */
  malformed(): void;
}

/** What is read on scrape. */
export interface RendezvousSources {
  readonly registry: { readonly connectionCount: number; connectionStats(): { authenticatedNodes: number; subscribed: number; unauthenticated: number } };
  readonly store: { counts(): { nodes: number; active: number; trust: number; requests: number } | Promise<{ nodes: number; active: number; trust: number; requests: number }> };
  readonly beacon: { readonly stats: BeaconStats };
}

const KNOWN_TYPES = new Set<string>(REQUEST_TYPES);
/** Error codes are the registry's own words; anything else (it should not happen) is counted as "other". */
const CODE = /^[a-z_]{1,40}$/;

export class RendezvousMetrics implements RegistryObserver {
  readonly registry = new Registry();
  private sources: RendezvousSources | null = null;
  private readonly requests: Counter<"type" | "result">;
  private readonly latency: Histogram<"type">;
  private readonly refusals: Counter<"scope">;
  private readonly malformedFrames: Counter;

  constructor() {
    const registers = [this.registry];
    this.requests = new Counter({ name: "pilot_rendezvous_requests_total", help: "Registry requests by type and result (ok, or the error code answered)", labelNames: ["type", "result"], registers });
    this.latency = new Histogram({
      name: "pilot_rendezvous_request_duration_seconds",
      help: "Time from reading a registry request to its signed answer queued (verify, check, store, sign), by type",
      labelNames: ["type"],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.refusals = new Counter({ name: "pilot_rendezvous_refusals_total", help: "Rate-limit and connection-limit refusals: connection (too many connections), frames (a connection's frame budget), request (a node's request budget or registration rate)", labelNames: ["scope"], registers });
    for (const scope of ["connection", "frames", "request"]) this.refusals.inc({ scope }, 0);
    this.malformedFrames = new Counter({ name: "pilot_rendezvous_malformed_frames_total", help: "Registry frames that could not be read as a request (bad length, not JSON)", registers });
    const read = () => this.sources;
    // The store's counts once per scrape (they are COUNT(*) queries), shared by the gauges that show them.
    let counts: { at: number; value: Promise<{ nodes: number; active: number; trust: number; requests: number }> } | null = null;
    const storeCounts = (s: RendezvousSources) => {
      const now = performance.now();
      if (!counts || now - counts.at > 50) counts = { at: now, value: Promise.resolve().then(() => s.store.counts()) };
      return counts.value;
    };
    const gauge = (name: string, help: string, labelNames: string[], value: (s: RendezvousSources) => number | [Record<string, string>, number][] | Promise<[Record<string, string>, number][]>) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        async collect() {
          const s = read();
          if (!s) return;
          const v = await value(s);
          this.reset();
          if (typeof v === "number") this.set(v);
          else for (const [l, n] of v) this.set(l, n);
        },
      });
    const counter = (name: string, help: string, labelNames: string[], value: (s: RendezvousSources) => number | [Record<string, string>, number][]) =>
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          const s = read();
          if (!s) return;
          const v = value(s);
          this.reset();
          if (typeof v === "number") this.inc(v);
          else for (const [l, n] of v) this.inc(l, n);
        },
      });
    gauge("pilot_rendezvous_nodes_online", "Nodes with an authenticated registry connection now (a running daemon keeps one)", [], (s) => s.registry.connectionStats().authenticatedNodes);
    gauge("pilot_rendezvous_nodes", "Nodes in the store: registered (all keys ever registered and not reaped) and active (not deregistered)", ["state"], async (s) => {
      const c = await storeCounts(s);
      return [
        [{ state: "registered" }, c.nodes],
        [{ state: "active" }, c.active],
      ];
    });
    gauge("pilot_rendezvous_trust_pairs", "Trust pairs in the store", [], async (s) => [[{}, (await storeCounts(s)).trust]]);
    gauge("pilot_rendezvous_connections", "Registry TCP connections now, by state", ["state"], (s) => {
      const c = s.registry.connectionStats();
      return [
        [{ state: "all" }, s.registry.connectionCount],
        [{ state: "unauthenticated" }, c.unauthenticated],
        [{ state: "subscribed" }, c.subscribed],
      ];
    });
    counter("pilot_rendezvous_beacon_registrations_total", "Beacon registrations accepted (a node's public endpoint learned or refreshed), and refused ones", ["result"], (s) => [
      [{ result: "ok" }, s.beacon.stats.registrations],
      [{ result: "refused" }, s.beacon.stats.badRegistrations],
    ]);
    counter("pilot_rendezvous_beacon_discovers_total", "Endpoint discovery requests answered by the beacon", [], (s) => s.beacon.stats.answered);
    counter("pilot_rendezvous_beacon_dropped_total", "Beacon datagrams dropped (malformed, unauthenticated, unknown) or rate-limited", ["cause"], (s) => [
      [{ cause: "dropped" }, s.beacon.stats.dropped],
      [{ cause: "rate_limited" }, s.beacon.stats.rateLimited],
    ]);
    counter("pilot_rendezvous_punches_total", "Hole punches the beacon brokered, and refused", ["result"], (s) => [
      [{ result: "ok" }, s.beacon.stats.punches],
      [{ result: "refused" }, s.beacon.stats.punchesRefused],
    ]);
    counter("pilot_rendezvous_relay_bytes_total", "Tunnel bytes relayed by the beacon between nodes that cannot reach each other", [], (s) => s.beacon.stats.relayedBytes);
    counter("pilot_rendezvous_relay_frames_total", "Tunnel frames relayed, refused (not allowed) and rate-limited (over a node's relay bandwidth)", ["result"], (s) => [
      [{ result: "ok" }, s.beacon.stats.relayedFrames],
      [{ result: "refused" }, s.beacon.stats.relayRefused],
      [{ result: "rate_limited" }, s.beacon.stats.relayRateLimited],
    ]);
  }

  /** The registry, store and beacon to read on scrape (once they run). */
  attach(sources: RendezvousSources): void {
    this.sources = sources;
  }

  request(type: unknown, result: { ok: boolean; error?: { code?: unknown } }, seconds: number): void {
    const t = typeof type === "string" && KNOWN_TYPES.has(type) ? type : "invalid";
    const code = result.ok ? "ok" : typeof result.error?.code === "string" && CODE.test(result.error.code) ? result.error.code : "other";
    this.requests.inc({ type: t, result: code });
    this.latency.observe({ type: t }, seconds);
    if (code === "rate_limited") this.refusals.inc({ scope: "request" });
  }

  refused(scope: "connection" | "frames"): void {
    this.refusals.inc({ scope });
  }

  malformed(): void {
    this.malformedFrames.inc();
  }

  async render(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }

  serve(address: MetricsAddress, log?: Logger): MetricsListener {
    return startMetricsListener({ ...address, render: () => this.render(), log });
  }
}
