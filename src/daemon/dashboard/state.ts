/**
 * What the local dashboard shows, gathered from the daemon's own calls: the
 * same `info`, `peers`, `trusted`, `pending`, `expose_list` and service calls
 * that `pilot status` and friends make over IPC, plus the local event feed.
 * Nothing here reads state the node does not already show its own user.
 *
 * Cost: a sampler asks `info` (local, no registry) every second, for the
 * throughput history. The calls that may ask the registry (`peers` asks it for
 * scores, `trusted` and `pending` for a fresh trust mirror) run every second
 * only while someone is looking at the page (a state request in the last
 * WATCH_MS), and every 10 s otherwise (`peers`, for the RTT history) or not
 * at all (trust, services). So an unwatched daemon costs the registry nothing
 * when it has no tunnel peers, and one small request per 10 s when it has.
 */
import type { EventFeed, LocalEvent } from "../../shared/events.ts";
import { lookupPresence, PRESENCE_LOOKUPS_MAX } from "../../shared/presence.ts";

/** The daemon calls the dashboard makes: `LocalNode.call` and the event feed. */
export interface DashboardSource {
  call(method: string, params: Record<string, unknown>): Promise<unknown>;
  readonly events: EventFeed;
  /** The status of this home's gateway (`pilot gateway list`'s source), or null when none runs. */
  gateway?(): Promise<Row | null>;
}

export interface DashboardStateOptions {
  /** Sampling period; default 1000 ms. */
  readonly sampleMs?: number;
  /** Samples kept (the plots' span); default 300 (5 minutes at 1 s). */
  readonly historyLength?: number;
  /** Peers whose RTT is plotted; default 4. */
  readonly plottedPeers?: number;
  readonly clock?: () => number;
}

/** A request for the state in the last this many ms: someone is looking; sample everything each second. */
const WATCH_MS = 15_000;
/** Unwatched, `peers` is sampled every this many samples. */
const IDLE_PEER_EVERY = 10;
/** Watched, trust and services are refreshed every this many ms. */
const SLOW_MS = 3_000;
/** Trusted peers on the page (those with a tunnel first); `peers_total` counts all. */
const PEERS_SHOWN = 200;
/**
 * Trusted peers without a tunnel session: their online state is the
 * registry's (one `lookup` each, as `pilot status` does), for at most this
 * many, every PRESENCE_MS while watched, a few at a time (shared/presence.ts).
 */
const PRESENCE_PEERS = PRESENCE_LOOKUPS_MAX;
const PRESENCE_MS = 30_000;
/** Gateway mappings on the page; `gateway.total` counts all. */
const MAPPINGS_SHOWN = 100;
/** Events on the page. */
const EVENTS_SHOWN = 40;
/** An event's data is shown as JSON cut to this many characters. */
const EVENT_TEXT_MAX = 240;

type Row = Record<string, any>;

export interface History {
  /** Seconds since the epoch, one per sample. */
  readonly t: number[];
  /** Bytes per second over the tunnel (all peers), sent and received. */
  readonly tx: (number | null)[];
  readonly rx: (number | null)[];
  /** RTT (ms) to each plotted peer, aligned with `t` (null: no sample). */
  readonly rtt: { address: string; label: string; values: (number | null)[] }[];
}

export interface DashboardSnapshot {
  generated_at: number;
  node: Row | null;
  peers: Row[];
  peers_total: number;
  other_tunnel_peers: number;
  pending: Row[];
  outgoing: Row[];
  exposes: Row[] | null;
  /** This home's gateway (its own process, asked over its control socket), or null when none runs. */
  gateway: { pid: number; subnet: string; mappings: Row[]; total: number } | null;
  services: Record<string, Row | null>;
  events: { seq: number; time: number; type: string; text: string }[];
  history: History;
  errors: string[];
}

export class DashboardState {
  private readonly sampleMs: number;
  private readonly length: number;
  private readonly plotted: number;
  private readonly clock: () => number;
  private timer: ReturnType<typeof setInterval> | null = null;
  private tick = 0;
  private lastWatched = -Infinity;
  private sampling: Promise<void> | null = null;

  private info: Row | null = null;
  private peers: Row[] = [];
  private trusted: Row[] | null = null;
  private pendingR: Row | null = null;
  private exposes: Row[] | null = null;
  private gatewayStatus: Row | null = null;
  /** address -> the registry's answer (online, last seen) for trusted peers without a tunnel. */
  private presence = new Map<string, { online: boolean | null; last_seen: number | null }>();
  private presenceAt = -Infinity;
  private presenceAsking = false;
  private services: Record<string, Row | null> = {};
  private slowAt = -Infinity;
  private slowing: Promise<void> | null = null;
  private errors = new Map<string, string>();

  private readonly t: number[] = [];
  private readonly tx: (number | null)[] = [];
  private readonly rx: (number | null)[] = [];
  /** address -> RTT samples aligned with `t`. */
  private readonly rtt = new Map<string, { label: string; values: (number | null)[] }>();
  private lastTotals: { at: number; sent: number; recv: number } | null = null;

  constructor(
    private readonly source: DashboardSource,
    options: DashboardStateOptions = {},
  ) {
    this.sampleMs = options.sampleMs ?? 1000;
    this.length = options.historyLength ?? 300;
    this.plotted = options.plottedPeers ?? 4;
    this.clock = options.clock ?? Date.now;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.sample(), this.sampleMs);
    this.timer.unref?.();
    void this.sample();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The state as the page shows it; marks the page as watched (so sampling covers everything). */
  async snapshot(): Promise<DashboardSnapshot> {
    const now = this.clock();
    const wasIdle = now - this.lastWatched > WATCH_MS;
    this.lastWatched = now;
    // The first look after a while: fetch now rather than show what is up to 10 s old.
    if (wasIdle || this.info === null) await this.sample();
    if (this.trusted === null) await this.refreshSlow();
    else if (now - this.slowAt > SLOW_MS) void this.refreshSlow();
    return this.compose(now);
  }

  private watched(now: number): boolean {
    return now - this.lastWatched <= WATCH_MS;
  }

  /** One sample: info always, peers when watched or every IDLE_PEER_EVERY samples. */
  sample(): Promise<void> {
    this.sampling ??= (async () => {
      try {
        const now = this.clock();
        const withPeers = this.watched(now) || this.tick % IDLE_PEER_EVERY === 0 || this.info === null;
        this.tick++;
        const info = await this.ask("info", {});
        if (info) this.info = info;
        if (withPeers) {
          const peers = await this.ask("peers", {});
          if (peers && Array.isArray(peers.peers)) this.peers = peers.peers;
        }
        this.record(now, info, withPeers);
        if (this.watched(now) && now - this.slowAt > SLOW_MS) void this.refreshSlow();
      } finally {
        this.sampling = null;
      }
    })();
    return this.sampling;
  }

  private record(now: number, info: Row | null, withPeers: boolean): void {
    let tx: number | null = null;
    let rx: number | null = null;
    if (info && typeof info.bytes_sent === "number" && typeof info.bytes_recv === "number") {
      const last = this.lastTotals;
      if (last && now > last.at) {
        const secs = (now - last.at) / 1000;
        // A peer that went away takes its counters with it: never a negative rate.
        tx = Math.max(0, info.bytes_sent - last.sent) / secs;
        rx = Math.max(0, info.bytes_recv - last.recv) / secs;
      }
      this.lastTotals = { at: now, sent: info.bytes_sent, recv: info.bytes_recv };
    }
    this.t.push(now / 1000);
    this.tx.push(tx);
    this.rx.push(rx);
    const seen = new Set<string>();
    if (withPeers) {
      for (const p of this.peers) {
        if (typeof p.address !== "string") continue;
        let series = this.rtt.get(p.address);
        if (!series) {
          if (this.rtt.size >= this.plotted) continue;
          series = { label: String(p.hostname ?? p.address), values: new Array(this.t.length - 1).fill(null) };
          this.rtt.set(p.address, series);
        }
        series.values.push(typeof p.rtt_ms === "number" ? p.rtt_ms : null);
        seen.add(p.address);
      }
    }
    for (const [address, series] of this.rtt) if (!seen.has(address)) series.values.push(null);
    if (this.t.length > this.length) {
      const cut = this.t.length - this.length;
      this.t.splice(0, cut);
      this.tx.splice(0, cut);
      this.rx.splice(0, cut);
      for (const [address, series] of this.rtt) {
        series.values.splice(0, cut);
        // A peer with no sample left in the window gives its place to another.
        if (series.values.every((v) => v === null)) this.rtt.delete(address);
      }
    }
  }

  /** Trust, exposed ports and the service queues: every SLOW_MS while watched. */
  private refreshSlow(): Promise<void> {
    this.slowing ??= (async () => {
      try {
        this.slowAt = this.clock();
        const [trusted, pending, exposes, inbox, outbox, received, transfers, tasks, pubsub, gateway] = await Promise.all([
          this.ask("trusted", {}),
          this.ask("pending", {}),
          this.ask("expose_list", {}),
          this.ask("inbox_list", { limit: 1 }, true),
          this.ask("outbox_list", { limit: 1 }, true),
          this.ask("files_received", {}, true),
          this.ask("file_transfers", {}, true),
          this.ask("task_queue", {}, true),
          this.ask("pubsub_status", {}, true),
          this.source.gateway ? this.source.gateway().catch(() => null) : Promise.resolve(null),
        ]);
        this.gatewayStatus = gateway;
        if (trusted && Array.isArray(trusted.trusted)) this.trusted = trusted.trusted;
        else this.trusted ??= [];
        if (!this.presenceAsking && (this.slowAt - this.presenceAt >= PRESENCE_MS || this.unaskedPeer())) {
          this.presenceAt = this.slowAt;
          void this.refreshPresence();
        }
        if (pending) this.pendingR = pending;
        this.exposes = exposes && Array.isArray(exposes.exposes) ? exposes.exposes : null;
        this.services = {
          messages: inbox || outbox ? { inbox: inbox?.total ?? null, unread: inbox?.unread ?? null, inbox_bytes: inbox?.bytes ?? null, outbox_queued: outbox?.queued ?? null, outbox_failed: outbox?.failed ?? null } : null,
          files: received || transfers ? { received: received?.total ?? null, received_bytes: received?.bytes ?? null, partial: received?.partial ?? null, transfers: Array.isArray(transfers?.transfers) ? transfers.transfers.length : null } : null,
          tasks: tasks ? { active: tasks.count, queued: tasks.queued, accepted: tasks.accepted, running: tasks.running, limit: tasks.limit } : null,
          pubsub: pubsub ? { connections: pubsub.connections ?? null, subscribers: pubsub.subscribers ?? null, subscriptions: pubsub.subscriptions ?? null, queued_bytes: pubsub.queued_bytes ?? null } : null,
        };
      } finally {
        this.slowing = null;
      }
    })();
    return this.slowing;
  }

  /** A peer newly trusted (no session, never asked about) while fewer than PRESENCE_PEERS are known: ask now, not in 30 s. */
  private unaskedPeer(): boolean {
    if (this.presence.size >= PRESENCE_PEERS) return false;
    const up = new Set(this.peers.filter((p) => p.established === true).map((p) => p.address));
    return (this.trusted ?? []).some((t) => !up.has(t.address) && !this.presence.has(t.address));
  }

  /** The registry's online state of trusted peers that have no tunnel session (those with one are online: we hear them). */
  private async refreshPresence(): Promise<void> {
    const up = new Set(this.peers.filter((p) => p.established === true).map((p) => p.address));
    const asked = (this.trusted ?? []).map((t) => String(t.address)).filter((a) => !up.has(a)).slice(0, PRESENCE_PEERS);
    this.presenceAsking = true;
    try {
      const found = await lookupPresence((method, params) => this.source.call(method, params), asked);
      this.presence = new Map([...found].map(([address, p]) => [address, { online: p.online, last_seen: typeof p.lastSeen === "number" ? p.lastSeen : null }]));
    } finally {
      this.presenceAsking = false;
    }
  }

  /** A daemon call's result, or null (its error kept for the page, unless `quiet`: a switched-off service). */
  private async ask(method: string, params: Record<string, unknown>, quiet = false): Promise<Row | null> {
    try {
      const r = (await this.source.call(method, params)) as Row;
      this.errors.delete(method);
      return r && typeof r === "object" ? r : null;
    } catch (e) {
      if (!quiet) this.errors.set(method, `${method}: ${(e as Error).message}`);
      return null;
    }
  }

  private compose(now: number): DashboardSnapshot {
    const tunnels = new Map<string, Row>(this.peers.map((p) => [p.address, p]));
    const trusted = this.trusted ?? [];
    const peers = trusted.map((t) => {
      const tunnel = tunnels.get(t.address);
      const session = tunnel ? tunnel.established === true : t.connected === true;
      const seen = this.presence.get(t.address);
      return {
        node_id: t.node_id,
        address: t.address,
        hostname: t.hostname || null,
        // A session that is up: online, we hear it. Otherwise the registry's word (null: not asked, or no answer).
        online: session ? true : (seen?.online ?? null),
        session,
        last_seen: seen?.last_seen ?? null,
        path: tunnel ? tunnel.path : "none",
        endpoint: tunnel?.endpoint ?? null,
        rtt_ms: tunnel?.rtt_ms ?? null,
        bytes_sent: tunnel?.bytes_sent ?? 0,
        bytes_recv: tunnel?.bytes_recv ?? 0,
        since: t.since ?? null,
      };
    });
    const trustedAddresses = new Set(trusted.map((t) => t.address));
    // With a tunnel first, then by name: the ones that matter now fit on the page.
    peers.sort((a, b) => Number(b.path !== "none") - Number(a.path !== "none") || String(a.hostname ?? a.address).localeCompare(String(b.hostname ?? b.address)));
    return {
      generated_at: now,
      node: this.info,
      peers: peers.slice(0, PEERS_SHOWN),
      peers_total: peers.length,
      other_tunnel_peers: this.peers.filter((p) => !trustedAddresses.has(p.address)).length,
      pending: Array.isArray(this.pendingR?.pending) ? this.pendingR.pending : [],
      outgoing: Array.isArray(this.pendingR?.outgoing) ? this.pendingR.outgoing : [],
      exposes: this.exposes,
      gateway: gatewayView(this.gatewayStatus),
      services: this.services,
      events: this.source.events.recent({ limit: EVENTS_SHOWN }).map(eventLine).reverse(),
      history: {
        t: [...this.t],
        tx: [...this.tx],
        rx: [...this.rx],
        rtt: [...this.rtt].map(([address, s]) => ({ address, label: s.label, values: [...s.values] })),
      },
      errors: [...this.errors.values()],
    };
  }
}

function gatewayView(status: Row | null): DashboardSnapshot["gateway"] {
  if (!status || !Array.isArray(status.mappings)) return null;
  const mappings = status.mappings.slice(0, MAPPINGS_SHOWN).map((m: Row) => ({
    local_ip: m.local_ip,
    pilot_addr: m.pilot_addr,
    hostname: m.hostname ?? null,
    ports: Array.isArray(m.ports) ? m.ports : [],
    secure_ports: Array.isArray(m.secure_ports) ? m.secure_ports : [],
    connections: m.connections ?? 0,
    bytes_up: m.bytes_up ?? 0,
    bytes_down: m.bytes_down ?? 0,
  }));
  return { pid: Number(status.pid), subnet: String(status.subnet), mappings, total: status.mappings.length };
}

function eventLine(e: LocalEvent): { seq: number; time: number; type: string; text: string } {
  let text: string;
  try {
    text = JSON.stringify(e.data);
  } catch {
    text = "";
  }
  if (text.length > EVENT_TEXT_MAX) text = text.slice(0, EVENT_TEXT_MAX - 1) + "…";
  return { seq: e.seq, time: e.time, type: e.type, text };
}
