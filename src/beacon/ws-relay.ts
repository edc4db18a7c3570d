/**
 * The beacon's relay over WebSocket, for nodes whose network drops UDP
 * (corporate and hotel firewalls that pass only TCP 80/443, maybe through an
 * HTTP proxy). One TCP port (443 in production) serves `GET /pilot/v1/relay`
 * as a WebSocket, plain (tests, or behind a TLS-terminating load balancer) or
 * TLS with the operator's certificate.
 *
 * Every binary WebSocket message is exactly one beacon datagram, byte for byte
 * as over UDP (PROTOCOL.md §6): the node registers with the same signed
 * `register` (its token is this connection's random challenge), then sends
 * `relay` and receives `relay_deliver`, whose payloads are the end-to-end
 * encrypted tunnel frames. The routing, the visibility rule and the per-node
 * relay budget are the beacon's own (`BeaconServer.streamReceive`), so a node
 * on a WebSocket reaches nodes on UDP and the other way round, and the relay
 * learns nothing it would not learn over UDP.
 *
 * The same port serves the registry protocol at `GET /pilot/v1/registry`
 * (when the rendezvous passes its registry): the WebSocket carries the
 * registry's own byte stream (length-prefixed JSON frames, REGISTRY.md §2),
 * in binary messages cut anywhere, and the registry serves it exactly as a TCP
 * connection from the client's IP, with all its limits.
 *
 * Bounds: connections per source IP and in all; a connection that has not
 * registered within `authTimeoutMs` is closed; messages larger than a beacon
 * datagram close the connection; text messages close it; frames for a node
 * whose connection has more than `maxBufferedBytes` queued are dropped (as a
 * full UDP socket would), never buffered without limit.
 *
 * And a budget for the bytes queued on all relay connections together
 * (`maxQueuedBytes`), shared fairly: while the total has room anyone may
 * queue (up to its own cap); once it is full, a frame for a connection over
 * its fair share (the budget over the relay connections open) is dropped and
 * counted, and a frame for one within its share makes room by closing the
 * connection with the most queued (a client that does not read), so nodes
 * that read keep their frames flowing. The total is kept from each
 * connection's queue as seen at its last send or drain, and re-read from all
 * of them (at most every `QUEUE_RESYNC_MS`) before anything is dropped or
 * closed for the budget, so stale figures only ever overestimate it.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import type { Server, ServerWebSocket } from "bun";
import { BEACON_TOKEN_SIZE } from "../protocol/beacon-message.ts";
import { createLogger, type Logger } from "../util/log.ts";
import type { BeaconServer, StreamLink } from "./server.ts";

/** The path of the relay's WebSocket. */
export const WS_RELAY_PATH = "/pilot/v1/relay";
/** The path of the registry's WebSocket. */
export const WS_REGISTRY_PATH = "/pilot/v1/registry";
/** Registry frames are at most 64 KiB + 4; a WebSocket message may carry any part of the stream. */
const MAX_REGISTRY_MESSAGE = 128 * 1024;
/** The largest beacon datagram (1400 bytes) with room to spare; anything larger closes the connection. */
const MAX_MESSAGE = 2048;

export interface WsRelayLimits {
  readonly maxConnections: number;
  readonly maxConnectionsPerIp: number;
  /** A connection with no registered node after this is closed. */
  readonly authTimeoutMs: number;
  /** Frames for a connection with more than this queued are dropped. */
  readonly maxBufferedBytes: number;
  /** A connection silent for this long is closed (daemons re-register every 15 s). Seconds. */
  readonly idleTimeoutSec: number;
  /** Bytes queued on all relay connections together; past it, connections over their fair share lose frames or are closed. */
  readonly maxQueuedBytes: number;
}

export const DEFAULT_WS_RELAY_LIMITS: WsRelayLimits = {
  maxConnections: 10_000,
  maxConnectionsPerIp: 64,
  authTimeoutMs: 10_000,
  maxBufferedBytes: 4 * 1024 * 1024,
  idleTimeoutSec: 120,
  maxQueuedBytes: 64 * 1024 * 1024,
};

/** How stale the queued total may be before it is re-read from every connection, when the budget is full. */
const QUEUE_RESYNC_MS = 50;
/** The most a server's WebSocket frame header adds to a message (unmasked, 64-bit length). */
const WS_FRAME_HEADER = 10;
/** Connections re-read per frame while looking for one over its fair share to close. */
const MAX_HOG_LOOKS = 16;

export interface WsRelayServerOptions {
  readonly host: string;
  readonly port: number;
  readonly beacon: BeaconServer;
  /** PEM certificate chain and key: serve wss://. Without: plain ws:// (tests, or TLS terminated in front). */
  readonly tls?: { readonly cert: string; readonly key: string };
  readonly limits?: Partial<WsRelayLimits>;
  /** Serve the registry protocol at WS_REGISTRY_PATH too (RegistryServer.acceptStream). */
  readonly registry?: { acceptStream(socket: Socket): void };
  readonly log?: Logger;
}

export interface WsRelayStats {
  connections: number;
  refused: number;
  authTimeouts: number;
  badMessages: number;
  dropped: number;
  /** Frames dropped because the relay's queue budget was full and their connection over its fair share. */
  budgetDropped: number;
  /** Connections closed to make room in the queue budget for a connection within its share. */
  budgetClosed: number;
}

interface ConnData {
  readonly ip: string;
  /** A registry connection: its net.Socket look-alike. */
  registry?: RegistryStreamSocket;
  link: StreamLink | null;
  timer: ReturnType<typeof setTimeout> | null;
  /** A relay connection's queued bytes as last seen (its part of WsRelayServer's queued total). */
  queued: number;
}

export class WsRelayServer {
  readonly stats: WsRelayStats = { connections: 0, refused: 0, authTimeouts: 0, badMessages: 0, dropped: 0, budgetDropped: 0, budgetClosed: 0 };
  private server!: Server<ConnData>;
  private readonly limits: WsRelayLimits;
  private readonly log: Logger;
  private readonly perIp = new Map<string, number>();
  private open = 0;
  /** The relay connections (not the registry's), for the queue budget. */
  private readonly relayConns = new Set<ServerWebSocket<ConnData>>();
  /** Sum of their `queued`. */
  private queuedTotal = 0;
  private resyncedAt = -Infinity;
  /** `resyncedAt` when a scan last found no connection over its fair share. */
  private noHogAt = NaN;

  private constructor(private readonly options: WsRelayServerOptions) {
    this.limits = { ...DEFAULT_WS_RELAY_LIMITS, ...options.limits };
    this.log = options.log ?? createLogger("ws-relay", { sink: () => {} });
  }

  static start(options: WsRelayServerOptions): WsRelayServer {
    const relay = new WsRelayServer(options);
    relay.server = Bun.serve<ConnData>({
      hostname: options.host,
      port: options.port,
      ...(options.tls ? { tls: { cert: options.tls.cert, key: options.tls.key } } : {}),
      fetch: (req, server) => relay.upgrade(req, server),
      websocket: {
        maxPayloadLength: MAX_MESSAGE,
        idleTimeout: relay.limits.idleTimeoutSec,
        backpressureLimit: relay.limits.maxBufferedBytes,
        closeOnBackpressureLimit: false,
        perMessageDeflate: false,
        sendPings: true,
        open: (ws) => relay.opened(ws),
        message: (ws, message) => relay.message(ws, message),
        drain: (ws) => void relay.noteQueued(ws),
        close: (ws) => relay.closed(ws),
      },
    });
    return relay;
  }

  get address(): { host: string; port: number } {
    return { host: this.options.host, port: this.server.port ?? this.options.port };
  }

  /** The URL daemons are given (`--relay-ws`), for this server's own address. */
  get url(): string {
    const { host, port } = this.address;
    return `${this.options.tls ? "wss" : "ws"}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  }

  /** Connections open now. */
  get connections(): number {
    return this.open;
  }

  /** Bytes queued now on all relay connections, read from each (not the kept total). */
  get queuedBytes(): number {
    let sum = 0;
    for (const ws of this.relayConns) sum += ws.getBufferedAmount();
    return sum;
  }

  close(): void {
    this.server.stop(true);
  }

  private upgrade(req: Request, server: Server<ConnData>): Response | undefined {
    const path = new URL(req.url).pathname;
    const registry = path === WS_REGISTRY_PATH && this.options.registry !== undefined;
    if (path !== WS_RELAY_PATH && !registry) return new Response("not found\n", { status: 404 });
    const ip = unmapIp(server.requestIP(req)?.address ?? "");
    if (this.open >= this.limits.maxConnections || (this.perIp.get(ip) ?? 0) >= this.limits.maxConnectionsPerIp) {
      this.stats.refused++;
      return new Response("too many connections\n", { status: 429 });
    }
    if (server.upgrade(req, { data: { ip, link: null, timer: null, queued: 0, ...(registry ? { registry: undefined } : {}) } })) return undefined;
    return new Response("a WebSocket upgrade is required\n", { status: 426 });
  }

  private opened(ws: ServerWebSocket<ConnData>): void {
    const { ip } = ws.data;
    this.open++;
    this.stats.connections++;
    this.perIp.set(ip, (this.perIp.get(ip) ?? 0) + 1);
    if ("registry" in ws.data) {
      // The registry applies its own limits (connections per IP, authentication timeout, queue).
      const socket = new RegistryStreamSocket(ws);
      ws.data.registry = socket;
      this.options.registry!.acceptStream(socket as unknown as Socket);
      return;
    }
    this.relayConns.add(ws);
    const link: StreamLink = {
      ip,
      token: new Uint8Array(randomBytes(BEACON_TOKEN_SIZE)),
      node: null,
      send: (message) => this.send(ws, message),
      close: () => ws.close(4000, "registered on another connection"),
    };
    ws.data.link = link;
    ws.data.timer = setTimeout(() => {
      if (link.node === null) {
        this.stats.authTimeouts++;
        ws.close(4001, "no registration");
      }
    }, this.limits.authTimeoutMs);
    ws.data.timer.unref?.();
  }

  /** Queues one beacon message on a relay connection, within its own cap and the relay's budget. */
  private send(ws: ServerWebSocket<ConnData>, message: Uint8Array): boolean {
    if (ws.data.link?.closed) return false;
    const queued = this.noteQueued(ws);
    if (queued > this.limits.maxBufferedBytes) {
      this.stats.dropped++;
      return false;
    }
    if (!this.makeRoom(ws, message.length + WS_FRAME_HEADER)) {
      this.stats.budgetDropped++;
      return false;
    }
    const sent = ws.send(message) !== 0;
    this.noteQueued(ws);
    return sent;
  }

  /**
   * Whether `size` more bytes for `ws` fit the queue budget: at once if the
   * total has room; else not if `ws` would be over its fair share; else after
   * closing the connections with the most queued (over their share) until
   * they fit.
   */
  private makeRoom(ws: ServerWebSocket<ConnData>, size: number): boolean {
    const budget = this.limits.maxQueuedBytes;
    if (this.queuedTotal + size <= budget) return true;
    const now = performance.now();
    if (now - this.resyncedAt >= QUEUE_RESYNC_MS) {
      this.resyncedAt = now;
      for (const c of this.relayConns) this.noteQueued(c);
      if (this.queuedTotal + size <= budget) return true;
    }
    const fairShare = Math.floor(budget / Math.max(1, this.relayConns.size));
    if (ws.data.queued + size > fairShare) return false;
    // Nobody was over its share at the last look, and nothing was re-read since: no scan per frame.
    if (this.noHogAt === this.resyncedAt) return false;
    for (let looks = 0; this.queuedTotal + size > budget; looks++) {
      let hog: ServerWebSocket<ConnData> | undefined;
      for (const c of this.relayConns) if (c !== ws && (!hog || c.data.queued > hog.data.queued)) hog = c;
      if (!hog || hog.data.queued <= fairShare || looks >= MAX_HOG_LOOKS) {
        this.noHogAt = this.resyncedAt;
        return false;
      }
      // A kept figure may be stale (high): re-read it before closing anything for it.
      if (this.noteQueued(hog) <= fairShare) continue;
      this.stats.budgetClosed++;
      this.log.warn("closed a relay connection that does not read: the relay's queue budget is full", {
        ip: hog.data.ip,
        node: hog.data.link?.node ?? null,
        queued: hog.data.queued,
        fair_share: fairShare,
        budget,
      });
      this.forget(hog);
      // Its queue is the point: close() would wait behind it, terminate() frees it. After this
      // frame's delivery, not inside it (the beacon is in the middle of forwarding).
      const victim = hog;
      queueMicrotask(() => victim.terminate());
    }
    return true;
  }

  /** Re-reads a relay connection's queue into the total; returns it. */
  private noteQueued(ws: ServerWebSocket<ConnData>): number {
    if (!this.relayConns.has(ws)) return 0;
    const queued = ws.getBufferedAmount();
    this.queuedTotal += queued - ws.data.queued;
    ws.data.queued = queued;
    return queued;
  }

  /** Takes a relay connection out of the queue budget (closed, or being closed). */
  private forget(ws: ServerWebSocket<ConnData>): void {
    if (!this.relayConns.delete(ws)) return;
    this.queuedTotal -= ws.data.queued;
    ws.data.queued = 0;
    if (ws.data.link) ws.data.link.closed = true;
  }

  private message(ws: ServerWebSocket<ConnData>, message: string | Buffer): void {
    const registry = ws.data.registry;
    if (registry) {
      if (typeof message === "string" || message.length > MAX_REGISTRY_MESSAGE) {
        this.stats.badMessages++;
        ws.close(1003, "binary registry stream only");
        return;
      }
      registry.received(message);
      return;
    }
    const link = ws.data.link;
    if (typeof message === "string" || !link) {
      this.stats.badMessages++;
      ws.close(1003, "binary beacon messages only");
      return;
    }
    this.options.beacon.streamReceive(link, message);
  }

  private closed(ws: ServerWebSocket<ConnData>): void {
    const { ip, link, timer, registry } = ws.data;
    if (timer) clearTimeout(timer);
    this.forget(ws);
    registry?.closed();
    if (link) {
      link.closed = true;
      this.options.beacon.streamClosed(link);
    }
    ws.data.link = null;
    this.open--;
    const n = (this.perIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(ip);
    else this.perIp.set(ip, n);
  }
}

/**
 * A registry connection over a WebSocket, seen by the registry server as the
 * net.Socket it expects (write, end, destroy, setTimeout, writableLength and
 * the data, close and error events).
 */
class RegistryStreamSocket extends EventEmitter {
  readonly remoteAddress: string;
  destroyed = false;
  private idleMs = 0;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  private onIdle: (() => void) | null = null;

  constructor(private readonly ws: ServerWebSocket<ConnData>) {
    super();
    this.remoteAddress = ws.data.ip;
  }

  get writable(): boolean {
    return !this.destroyed;
  }

  get writableLength(): number {
    return this.destroyed ? 0 : this.ws.getBufferedAmount();
  }

  setNoDelay(): this {
    return this;
  }

  setTimeout(ms: number, onTimeout?: () => void): this {
    this.idleMs = ms;
    this.onIdle = onTimeout ?? null;
    this.touch();
    return this;
  }

  write(data: Uint8Array | string): boolean {
    if (this.destroyed) return false;
    this.touch();
    this.ws.send(typeof data === "string" ? Buffer.from(data) : data);
    return true;
  }

  end(data?: Uint8Array | string): this {
    if (data !== undefined) this.write(data);
    if (!this.destroyed) this.ws.close(1000, "");
    return this;
  }

  destroy(): this {
    if (!this.destroyed) {
      this.ws.terminate();
      this.closed();
    }
    return this;
  }

  /** A message from the client: the next bytes of the registry stream. */
  received(data: Buffer): void {
    if (this.destroyed) return;
    this.touch();
    this.emit("data", data);
  }

  /** The WebSocket closed. */
  closed(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit("close", false);
  }

  private touch(): void {
    if (this.idleMs <= 0 || this.destroyed) return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.emit("timeout");
      this.onIdle?.();
    }, this.idleMs);
    this.idleTimer.unref?.();
  }
}

function unmapIp(ip: string): string {
  const lower = ip.toLowerCase();
  return lower.startsWith("::ffff:") && /^\d+\.\d+\.\d+\.\d+$/.test(lower.slice(7)) ? lower.slice(7) : ip;
}
