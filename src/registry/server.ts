/**
 * The registry's TCP shell around RegistryService: accepts connections, greets
 * each with `hello`, frames requests, signs responses and pushes signed events
 * to subscribed connections. All request logic lives in service.ts.
 *
 * Per connection it holds at most one partial frame (64 KiB) and a bounded
 * write queue; it refuses connections beyond a per-IP and a total limit and
 * closes idle ones. Hostile input gets an `invalid_argument` reply, or the
 * connection is closed when framing is lost; it never affects other clients.
 */
import { createServer, type Server, type Socket } from "node:net";
import { unmapIpv4 } from "../protocol/beacon-message.ts";
import { TokenBuckets, type BucketConfig } from "./limits.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { DEFAULT_SERVICE_LIMITS, RegistryService, type Outcome, type ServiceLimits } from "./service.ts";
import type { Signer } from "./signer.ts";
import type { RegistryStore } from "./store.ts";
import { encodeFrame, eventSigningBytes, FrameReader, PROTOCOL_VERSION, responseSigningBytes, toBase64 } from "./wire.ts";

export interface ServerLimits extends ServiceLimits {
  /** Frames per connection, before any signature work. Default 50/s, burst 200. */
  readonly framesPerConnection: BucketConfig;
  readonly maxConnectionsPerIp: number;
  readonly maxConnections: number;
  /** A connection that sends nothing for this long is closed. */
  readonly idleTimeoutMs: number;
  /** A connection whose unsent output grows past this is closed (a reader that does not read). */
  readonly maxQueuedBytes: number;
  /** Malformed frames tolerated on one connection before it is closed. */
  readonly maxMalformedFrames: number;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  ...DEFAULT_SERVICE_LIMITS,
  framesPerConnection: { rate: 50, burst: 200 },
  maxConnectionsPerIp: 64,
  maxConnections: 10_000,
  idleTimeoutMs: 5 * 60_000,
  maxQueuedBytes: 1 << 20,
  maxMalformedFrames: 16,
};

export interface RegistryServerOptions {
  readonly host: string;
  readonly port: number;
  readonly store: RegistryStore;
  readonly signer: Signer;
  readonly clock?: () => number;
  readonly limits?: Partial<ServerLimits>;
  readonly log?: Logger;
}

interface Connection {
  readonly id: number;
  readonly socket: Socket;
  readonly ip: string;
  readonly reader: FrameReader;
  malformed: number;
  subscription?: { nodeId: number; nonce: Uint8Array; seq: number };
}

export class RegistryServer {
  private readonly service: RegistryService;
  private readonly connections = new Set<Connection>();
  private readonly perIp = new Map<string, number>();
  private readonly subscribers = new Map<number, Set<Connection>>();
  private readonly frames: TokenBuckets;
  private readonly limits: ServerLimits;
  private readonly log: Logger;
  private readonly clock: () => number;
  private nextConnectionId = 1;
  private closed = false;

  private constructor(
    private readonly server: Server,
    private readonly options: RegistryServerOptions,
  ) {
    this.limits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
    this.log = options.log ?? createLogger("registry", { sink: () => {} });
    this.clock = options.clock ?? Date.now;
    this.frames = new TokenBuckets(this.limits.framesPerConnection);
    this.service = new RegistryService({
      store: options.store,
      registryKey: options.signer.publicKey,
      clock: this.clock,
      limits: this.limits,
    });
  }

  static async start(options: RegistryServerOptions): Promise<RegistryServer> {
    const server = createServer({ noDelay: true });
    const registry = new RegistryServer(server, options);
    server.on("connection", (socket) => registry.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: options.host, port: options.port }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (e) => registry.log.error("registry server error", { error: String(e) }));
    return registry;
  }

  /** The address actually bound (the real port when asked for port 0). */
  get address(): { host: string; port: number } {
    const a = this.server.address();
    if (a === null || typeof a === "string") return { host: this.options.host, port: this.options.port };
    return { host: a.address, port: a.port };
  }

  /** What the beacon asks of the registry: node keys and the visibility rule. */
  get directory(): { nodeKey(node: number): Uint8Array | undefined; mayReach(from: number, to: number): boolean } {
    return {
      nodeKey: (node) => this.service.activeNodeKey(node),
      mayReach: (from, to) => this.service.mayReach(from, to),
    };
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.connections) c.socket.destroy();
    await done;
  }

  private accept(socket: Socket): void {
    const ip = unmapIpv4(socket.remoteAddress ?? "");
    const fromIp = this.perIp.get(ip) ?? 0;
    if (this.closed || this.connections.size >= this.limits.maxConnections || fromIp >= this.limits.maxConnectionsPerIp) {
      this.log.warn("connection refused", { source_ip: ip, reason: this.closed ? "closing" : "too many connections" });
      // Say why before closing: a signed error in place of the hello.
      const refusal: Record<string, unknown> = { type: "response", id: null, ok: false, error: { code: "rate_limited", message: "too many connections from this address; close some or retry later" } };
      refusal.sig = toBase64(this.options.signer.sign(responseSigningBytes(refusal, new Uint8Array(0))));
      socket.on("error", () => {});
      socket.end(encodeFrame(refusal));
      return;
    }
    const conn: Connection = { id: this.nextConnectionId++, socket, ip, reader: new FrameReader(), malformed: 0 };
    this.connections.add(conn);
    this.perIp.set(ip, fromIp + 1);
    socket.setNoDelay(true);
    socket.setTimeout(this.limits.idleTimeoutMs, () => socket.destroy());
    socket.on("data", (chunk: Buffer) => this.receive(conn, chunk));
    socket.on("error", () => {});
    socket.on("close", () => this.drop(conn));
    this.send(conn, {
      type: "hello",
      registry_key: toBase64(this.options.signer.publicKey),
      version: PROTOCOL_VERSION,
      time: this.clock(),
    });
  }

  private drop(conn: Connection): void {
    if (!this.connections.delete(conn)) return;
    const n = (this.perIp.get(conn.ip) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(conn.ip);
    else this.perIp.set(conn.ip, n);
    const node = conn.subscription?.nodeId;
    this.unsubscribe(conn);
    // A daemon keeps its subscription open while it runs: once none is left, it is offline.
    if (node !== undefined && !this.subscribers.has(node) && !this.closed) this.service.nodeDisconnected(node);
  }

  private unsubscribe(conn: Connection): void {
    if (!conn.subscription) return;
    const set = this.subscribers.get(conn.subscription.nodeId);
    set?.delete(conn);
    if (set && set.size === 0) this.subscribers.delete(conn.subscription.nodeId);
    conn.subscription = undefined;
  }

  private receive(conn: Connection, chunk: Buffer): void {
    if (conn.socket.destroyed) return;
    for (const frame of conn.reader.push(chunk)) {
      if (conn.socket.destroyed) return;
      if (frame.kind === "fatal") {
        this.respond(conn, RegistryService.malformed(frame.reason));
        conn.socket.end();
        setTimeout(() => conn.socket.destroy(), 1000).unref();
        return;
      }
      if (frame.kind === "malformed") {
        this.respond(conn, RegistryService.malformed(frame.reason));
        if (++conn.malformed >= this.limits.maxMalformedFrames) conn.socket.end();
        continue;
      }
      if (!this.frames.take(`c:${conn.id}`, this.clock())) {
        const id = typeof frame.value.id === "number" ? frame.value.id : null;
        this.respond(conn, { ...RegistryService.malformed("too many requests on this connection"), id, body: { ok: false, error: { code: "rate_limited", message: "too many requests on this connection; slow down" } } });
        continue;
      }
      let outcome: Outcome;
      try {
        outcome = this.service.handle(frame.value, { sourceIp: conn.ip });
      } catch (e) {
        this.log.error("request failed", { error: String(e) });
        outcome = { ...RegistryService.malformed("internal error"), body: { ok: false, error: { code: "internal", message: "internal error" } } };
      }
      if (outcome.note?.internal) this.log.error("request failed", outcome.note);
      else if (outcome.note) this.log.info(String(outcome.note.event ?? "request"), outcome.note);
      if (outcome.subscribe) {
        this.unsubscribe(conn);
        conn.subscription = { nodeId: outcome.subscribe.nodeId, nonce: outcome.subscribe.nonce, seq: 0 };
        let set = this.subscribers.get(outcome.subscribe.nodeId);
        if (!set) this.subscribers.set(outcome.subscribe.nodeId, (set = new Set()));
        set.add(conn);
      }
      this.respond(conn, outcome);
      for (const e of outcome.events) this.push(e.to, e.event);
    }
  }

  private respond(conn: Connection, outcome: Outcome): void {
    const response: Record<string, unknown> = { type: "response", id: outcome.id, ...outcome.body };
    response.sig = toBase64(this.options.signer.sign(responseSigningBytes(response, outcome.nonce)));
    this.send(conn, response);
  }

  private push(nodeId: number, event: Record<string, unknown>): void {
    const set = this.subscribers.get(nodeId);
    if (!set) return;
    for (const conn of set) {
      const sub = conn.subscription!;
      const frame: Record<string, unknown> = { type: "event", node_id: nodeId, ...event, seq: ++sub.seq };
      frame.sig = toBase64(this.options.signer.sign(eventSigningBytes(frame, sub.nonce)));
      this.send(conn, frame);
    }
  }

  private send(conn: Connection, message: Record<string, unknown>): void {
    if (conn.socket.destroyed || !conn.socket.writable) return;
    conn.socket.write(encodeFrame(message));
    if (conn.socket.writableLength > this.limits.maxQueuedBytes) {
      this.log.warn("closing a connection that does not read", { source_ip: conn.ip });
      conn.socket.destroy();
    }
  }
}
