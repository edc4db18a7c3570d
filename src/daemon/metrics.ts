/**
 * The daemon's Prometheus metrics (`pilot daemon start --metrics HOST:PORT`),
 * read on scrape from the counters the daemon keeps anyway (what `pilot info`,
 * `pilot peers`, `pilot connections` and the services' status calls show):
 * nothing here runs on the per-packet path. docs/METRICS.md lists every name.
 *
 * Totals that live on objects that go away (a peer's tunnel counters, a
 * stream's retransmits) are kept monotonic here: a stream's totals are added
 * when the data plane says it closed (`onStreamClosed`), a peer's when a scrape
 * finds it gone (its values at the previous scrape; a peer is forgotten only
 * after minutes of silence, so nothing moved in between unless trust was cut
 * off since).
 *
 * Labels take values from fixed sets only (path tiers, drop causes, event
 * types of the daemon's own vocabulary; apps' `app.*` events count as one),
 * never a peer's address or anything a remote node names.
 */
import { Counter, Gauge, Registry } from "prom-client";
import type { Peer, PeerStats } from "../tunnel/peer.ts";
import type { DaemonNode } from "./node.ts";
import type { DaemonStream } from "./stream.ts";
import type { LocalEvent } from "../shared/events.ts";
import { formatAddress } from "../protocol/address.ts";
import type { Logger } from "../util/log.ts";
import { startMetricsListener, type MetricsAddress, type MetricsListener } from "../util/metrics-listener.ts";

export interface DaemonMetricsOptions {
  readonly node: DaemonNode;
  /** IPC clients connected now. */
  readonly ipcClients: () => number;
}

export interface DaemonMetrics {
  readonly registry: Registry;
  render(): Promise<{ contentType: string; text: string }>;
  /** Stops counting events (the daemon is stopping). */
  close(): void;
}

type Labels = Record<string, string>;
type Reading = number | [Labels, number][];

/** Event types counted under their own name; others under their first segment (`app.*` from apps). */
const EVENT_TYPE_LABEL = /^(trust|peer|message|file|task|pubsub|events)\.[a-z_]{1,32}$/;

interface PeerTotals {
  bytesIn: number;
  bytesOut: number;
  framesIn: number;
  framesOut: number;
  handshakesCompleted: number;
  handshakesFailed: number;
  initiationsSent: number;
  keepalivesSent: number;
  drops: Record<string, number>;
}

interface StreamTotals {
  opened: number;
  retransmits: number;
  fastRetransmits: number;
  timeouts: number;
  bytesRetransmitted: number;
}

function peerTotals(s: PeerStats): PeerTotals {
  return {
    bytesIn: s.bytesReceived,
    bytesOut: s.bytesSent,
    framesIn: s.framesReceived,
    framesOut: s.framesSent,
    handshakesCompleted: s.handshakesCompleted,
    handshakesFailed: s.handshakesFailed,
    initiationsSent: s.initiationsSent,
    keepalivesSent: s.keepalivesSent,
    drops: { ...s.drops },
  };
}

function addPeer(into: PeerTotals, p: PeerTotals): void {
  into.bytesIn += p.bytesIn;
  into.bytesOut += p.bytesOut;
  into.framesIn += p.framesIn;
  into.framesOut += p.framesOut;
  into.handshakesCompleted += p.handshakesCompleted;
  into.handshakesFailed += p.handshakesFailed;
  into.initiationsSent += p.initiationsSent;
  into.keepalivesSent += p.keepalivesSent;
  for (const [k, v] of Object.entries(p.drops)) into.drops[k] = (into.drops[k] ?? 0) + v;
}

function emptyPeerTotals(): PeerTotals {
  return { bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0, handshakesCompleted: 0, handshakesFailed: 0, initiationsSent: 0, keepalivesSent: 0, drops: {} };
}

/** A reading as a metric value: a count that is missing or not a number reads 0 (never throws in a scrape). */
function sane(v: number): number {
  return Number.isFinite(v) && v >= 0 ? v : 0;
}

/** snake_case of a camelCase counter name (the way `pilot info` shows it). */
function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Data-plane counters that count packets dropped or refused, by cause. */
const PLANE_DROPS = ["badPackets", "wrongDestination", "notTrusted", "synRateLimited", "connectionLimit", "peerConnectionLimit", "datagramsDropped", "foreignBeacon", "relayUnavailable", "loopbackDropped", "peerLimit"] as const;
/** Router counters that count datagrams dropped before reaching a peer, by cause. */
const ROUTER_DROPS = ["malformed", "unknownIndex", "badInitiation", "rejectedInitiation", "replayedInitiation", "unknownInitiator", "wrongRelaySender", "throttledInitiation", "unexpectedCookieReply"] as const;

export function createDaemonMetrics(options: DaemonMetricsOptions): DaemonMetrics {
  const { node } = options;
  const plane = node.plane;
  const registry = new Registry();

  // ---- what survives the objects that go away ----
  const retiredPeers = emptyPeerTotals();
  let lastPeers = new Map<Peer<string>, PeerTotals>();
  const closedStreams: StreamTotals = { opened: 0, retransmits: 0, fastRetransmits: 0, timeouts: 0, bytesRetransmitted: 0 };
  const counted = new WeakSet<DaemonStream>();
  plane.onStreamClosed = (s) => {
    if (counted.has(s)) return;
    counted.add(s);
    const st = s.engine.stats();
    closedStreams.opened++;
    closedStreams.retransmits += st.retransmits;
    closedStreams.fastRetransmits += st.fastRetransmits;
    closedStreams.timeouts += st.timeouts;
    closedStreams.bytesRetransmitted += st.bytesRetransmitted;
  };
  const events = new Map<string, number>(["message.received", "file.received", "task.received", "task.result", "trust.request", "peer.online", "peer.offline"].map((t) => [t, 0]));
  const unsubscribe = node.events.subscribe((e: LocalEvent) => {
    const label = EVENT_TYPE_LABEL.test(e.type) ? e.type : e.type.startsWith("app.") ? "app.*" : "other";
    events.set(label, (events.get(label) ?? 0) + 1);
  });

  /** One reading of the peers and streams per scrape, shared by every metric collected in it. */
  let snapshot: { at: number; value: Snapshot } | null = null;
  interface Snapshot {
    peers: PeerTotals;
    byPath: Record<string, number>;
    /** Peers by the largest tunnel datagram their path carries now (path MTU discovery): a fixed set of sizes. */
    bySize: Record<string, number>;
    sessions: number;
    streams: StreamTotals & { open: number };
  }
  const read = (): Snapshot => {
    const now = performance.now();
    if (snapshot && now - snapshot.at < 50) return snapshot.value;
    const peers = emptyPeerTotals();
    addPeer(peers, retiredPeers);
    const current = new Map<Peer<string>, PeerTotals>();
    const byPath: Record<string, number> = { direct: 0, punched: 0, relay: 0 };
    const bySize: Record<string, number> = {};
    let sessions = 0;
    for (const peer of plane.router.allPeers()) {
      const t = peerTotals(peer.stats);
      current.set(peer, t);
      addPeer(peers, t);
      const path = plane.paths.describe(peer.remoteAddress)?.path ?? "direct";
      byPath[path] = (byPath[path] ?? 0) + 1;
      const size = String(peer.pathFrameSize);
      bySize[size] = (bySize[size] ?? 0) + 1;
      if (peer.isEstablished(now)) sessions++;
    }
    for (const [peer, t] of lastPeers) {
      if (current.has(peer)) continue;
      addPeer(retiredPeers, t);
      addPeer(peers, t);
    }
    lastPeers = current;
    const streams = { ...closedStreams, open: 0 };
    for (const s of plane.streams()) {
      if (counted.has(s)) continue;
      const st = s.engine.stats();
      streams.opened++;
      if (!s.isClosedForOwner) streams.open++;
      streams.retransmits += st.retransmits;
      streams.fastRetransmits += st.fastRetransmits;
      streams.timeouts += st.timeouts;
      streams.bytesRetransmitted += st.bytesRetransmitted;
    }
    const value = { peers, byPath, bySize, sessions, streams };
    snapshot = { at: now, value };
    return value;
  };

  /** A daemon call's answer, shared by the metrics collected in one scrape; null when it fails (a service switched off). */
  const answers = new Map<string, { at: number; value: Promise<Record<string, any> | null> }>();
  const answer = (method: string, params: Record<string, unknown> = {}): Promise<Record<string, any> | null> => {
    const now = performance.now();
    const kept = answers.get(method);
    if (kept && now - kept.at < 50) return kept.value;
    const value = Promise.resolve()
      .then(() => node.call(method, params) as Promise<Record<string, any>>)
      .catch(() => null);
    answers.set(method, { at: now, value });
    return value;
  };
  const serviceStatus = answer;

  const counter = (name: string, help: string, labelNames: string[], reading: () => Reading | Promise<Reading>) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const r = await reading();
        this.reset();
        if (typeof r === "number") this.inc(sane(r));
        else for (const [labels, v] of r) this.inc(labels, sane(v));
      },
    });
  const gauge = (name: string, help: string, labelNames: string[], reading: () => Reading | Promise<Reading>) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const r = await reading();
        this.reset();
        if (typeof r === "number") this.set(sane(r));
        else for (const [labels, v] of r) this.set(labels, sane(v));
      },
    });

  const info = async () => (await answer("info")) ?? {};
  const startedAt = Date.now();

  gauge("pilot_info", "Always 1; labels: this daemon's version and address", ["version", "address"], async () => [[{ version: String((await info()).version ?? ""), address: formatAddress(node.address) }, 1]]);
  gauge("pilot_uptime_seconds", "Seconds since the metrics (and the daemon) started", [], () => (Date.now() - startedAt) / 1000);
  gauge("pilot_registry_connected", "1 while the registry session is up, 0 while it is retried", [], async () => ((await info()).registry_connected ? 1 : 0));
  gauge("pilot_beacon_registered", "1 while registered with the beacon (relay and hole punching available)", [], async () => ((await info()).beacon_registered ? 1 : 0));
  gauge("pilot_trusted_nodes", "Nodes this node trusts", [], async () => Number((await info()).trusted ?? 0));
  gauge("pilot_trust_requests_pending", "Trust requests waiting for approve/reject", [], async () => Number((await info()).pending ?? 0));

  gauge("pilot_peers", "Tunnel peers by path tier (direct, punched through a NAT, relayed by the beacon)", ["path"], () => Object.entries(read().byPath).map(([path, n]) => [{ path }, n]));
  gauge("pilot_peers_by_datagram_size", "Tunnel peers by the largest UDP datagram their path carries now (1360: the base; larger only on direct paths that path MTU discovery proved)", ["size"], () => Object.entries(read().bySize).map(([size, n]) => [{ size }, n]));
  gauge("pilot_sessions", "Peers with an established encrypted session", [], () => read().sessions);
  counter("pilot_handshakes_total", "Tunnel handshakes with current and past peers, by result", ["result"], () => {
    const p = read().peers;
    return [
      [{ result: "completed" }, p.handshakesCompleted],
      [{ result: "failed" }, p.handshakesFailed],
    ];
  });
  counter("pilot_handshake_initiations_total", "Handshake initiations sent by this node, and received ones that got Diffie-Hellman work", ["direction"], () => [
    [{ direction: "out" }, read().peers.initiationsSent],
    [{ direction: "in" }, plane.router.stats.initiationsDecrypted],
  ]);
  counter("pilot_cookie_replies_total", "Initiations answered with a cookie reply (handshake load protection)", [], () => plane.router.stats.cookieRepliesSent);

  gauge("pilot_streams", "Open streams", [], () => read().streams.open);
  counter("pilot_streams_opened_total", "Streams opened (dialed or accepted)", [], () => read().streams.opened);
  counter("pilot_stream_retransmits_total", "Segments sent again by streams", [], () => read().streams.retransmits);
  counter("pilot_stream_fast_retransmits_total", "Fast-recovery episodes of streams", [], () => read().streams.fastRetransmits);
  counter("pilot_stream_timeouts_total", "Retransmission timer expiries of streams", [], () => read().streams.timeouts);
  counter("pilot_stream_retransmitted_bytes_total", "Application bytes sent again by streams", [], () => read().streams.bytesRetransmitted);

  counter("pilot_tunnel_bytes_total", "Encrypted tunnel bytes (UDP payload) to and from peers", ["direction"], () => {
    const p = read().peers;
    return [
      [{ direction: "in" }, p.bytesIn],
      [{ direction: "out" }, p.bytesOut],
    ];
  });
  counter("pilot_tunnel_frames_total", "Encrypted tunnel frames to and from peers", ["direction"], () => {
    const p = read().peers;
    return [
      [{ direction: "in" }, p.framesIn],
      [{ direction: "out" }, p.framesOut],
    ];
  });
  counter("pilot_packets_total", "Pilot packets (stream segments, pings) through the data plane", ["direction"], () => [
    [{ direction: "in" }, plane.counters.packetsIn],
    [{ direction: "out" }, plane.counters.packetsOut],
  ]);
  counter("pilot_datagrams_total", "Pilot datagrams (pilot send/recv) through the data plane", ["direction"], () => [
    [{ direction: "in" }, plane.counters.datagramsIn],
    [{ direction: "out" }, plane.counters.datagramsOut],
  ]);
  counter("pilot_drops_total", "Packets and frames dropped or refused, by layer (tunnel: a peer's session; router: before a peer is known; plane: Pilot packets) and cause", ["layer", "cause"], () => {
    const out: [Labels, number][] = [];
    for (const [cause, n] of Object.entries(read().peers.drops)) out.push([{ layer: "tunnel", cause }, n]);
    for (const cause of ROUTER_DROPS) out.push([{ layer: "router", cause: snake(cause) }, plane.router.stats[cause]]);
    for (const cause of PLANE_DROPS) out.push([{ layer: "plane", cause: snake(cause) }, plane.counters[cause]]);
    return out;
  });
  counter("pilot_resets_sent_total", "Stream resets sent (no listener, refused, aborted)", [], () => plane.counters.resetsSent);

  gauge("pilot_ipc_clients", "Local apps and commands connected to the IPC socket", [], () => options.ipcClients());
  counter("pilot_events_total", "Local events published (message.received, file.received, task.*, trust.*, peer.*, ...; apps' own as app.*)", ["type"], () => [...events].map(([type, n]) => [{ type }, n]));
  counter("pilot_pubsub_events_total", "Pub/sub broker events published to it and delivered by it", ["direction"], async () => {
    const s = await serviceStatus("pubsub_status");
    return s
      ? [
          [{ direction: "in" }, Number(s.published ?? 0)],
          [{ direction: "out" }, Number(s.delivered ?? 0)],
        ]
      : [];
  });
  counter("pilot_pubsub_bytes_total", "Pub/sub broker bytes published to it and delivered by it", ["direction"], async () => {
    const s = await serviceStatus("pubsub_status");
    return s
      ? [
          [{ direction: "in" }, Number(s.bytes_in ?? 0)],
          [{ direction: "out" }, Number(s.bytes_out ?? 0)],
        ]
      : [];
  });
  gauge("pilot_pubsub_subscriptions", "Pub/sub subscriptions held by the broker", [], async () => Number((await serviceStatus("pubsub_status"))?.subscriptions ?? 0));
  gauge("pilot_pubsub_queued_bytes", "Bytes queued by the broker for slow subscribers", [], async () => Number((await serviceStatus("pubsub_status"))?.queued_bytes ?? 0));
  gauge("pilot_messages_outbox", "Messages in this node's outbox: queued (delivery continues) and failed (given up)", ["state"], async () => {
    const s = await answer("outbox_list", { limit: 1 });
    return s
      ? [
          [{ state: "queued" }, Number(s.queued ?? 0)],
          [{ state: "failed" }, Number(s.failed ?? 0)],
        ]
      : [];
  });
  gauge("pilot_file_transfers", "File transfers running now, sending (out) and receiving (in)", ["direction"], async () => {
    const s = await answer("file_transfers");
    const list = Array.isArray(s?.transfers) ? (s!.transfers as { direction?: string }[]) : null;
    if (!list) return [];
    return [
      [{ direction: "out" }, list.filter((t) => t.direction === "out").length],
      [{ direction: "in" }, list.filter((t) => t.direction === "in").length],
    ];
  });
  counter("pilot_tasks_total", "Task service: tasks received, results delivered, requests refused, duplicates, protocol violations", ["outcome"], async () => {
    const s = await serviceStatus("task_policy");
    const c = (s?.counters ?? {}) as Record<string, unknown>;
    return Object.entries(c)
      .filter(([, v]) => typeof v === "number")
      .map(([outcome, v]) => [{ outcome }, v as number]);
  });

  gauge("pilot_buffer_budget_bytes", "Memory budget for all stream buffers (--buffer-budget)", [], () => plane.buffers.snapshot().limits.total);
  gauge("pilot_buffer_held_bytes", "Stream buffer memory granted now, in all and to untrusted peers' streams", ["peers"], () => {
    const b = plane.buffers.snapshot();
    return [
      [{ peers: "all" }, b.held],
      [{ peers: "strangers" }, b.heldByStrangers],
    ];
  });
  counter("pilot_buffer_refusals_total", "Buffer growth refused because a budget limit was reached", [], () => plane.buffers.snapshot().refusals);
  counter("pilot_buffer_trimmed_bytes_total", "Buffer space given back by idle or over-budget streams", [], () => plane.counters.bufferBytesTrimmed);
  gauge("pilot_process_resident_memory_bytes", "Resident memory of the daemon process", [], () => process.memoryUsage.rss());
  gauge("pilot_process_heap_used_bytes", "JavaScript heap in use", [], () => process.memoryUsage().heapUsed);

  return {
    registry,
    async render() {
      return { contentType: registry.contentType, text: await registry.metrics() };
    },
    close() {
      unsubscribe();
      if (plane.onStreamClosed) plane.onStreamClosed = null;
    },
  };
}

/** Starts the metrics and their listener (run.ts, `--metrics`); a bind failure throws (EADDRINUSE, EADDRNOTAVAIL). */
export function serveDaemonMetrics(options: DaemonMetricsOptions & { address: MetricsAddress; log?: Logger }): MetricsListener {
  const metrics = createDaemonMetrics(options);
  try {
    const listener = startMetricsListener({ ...options.address, render: () => metrics.render(), log: options.log });
    return {
      ...listener,
      close() {
        listener.close();
        metrics.close();
      },
    };
  } catch (e) {
    metrics.close();
    throw e;
  }
}
