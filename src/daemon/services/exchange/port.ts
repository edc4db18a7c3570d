/**
 * Port 1001, shared by the messages and files services: one listener per
 * daemon that reads a stream's first frame and hands the stream to the
 * service that frame belongs to (0x01-0x0F messages, 0x10-0x1F files).
 *
 * - A service that is switched off is not registered: its frames are refused
 *   with `service_disabled`. With both off, nothing listens on 1001.
 * - Each service's own admission decides (`context.admits`): a node that may
 *   not use it is refused with `not_trusted`. A node always admits itself.
 * - Streams are bounded per peer and in total (`busy` beyond), must send their
 *   first frame promptly, and are cut when idle.
 *
 * The two services are built separately from their own contexts; they meet
 * here through the daemon's event bus, the one object both contexts share.
 */
import { formatAddress, type Address } from "../../../protocol/address.ts";
import { ExchangeError, serviceOfKind, type ExchangeFrame, type ExchangeService } from "../../../protocol/exchange.ts";
import { WellKnownPort } from "../../../protocol/ports.ts";
import type { EventBus } from "../../event-bus.ts";
import type { PortBinding, StreamHandle } from "../../local-node.ts";
import type { ServiceContext } from "../service.ts";
import { ExchangeConnection } from "./connection.ts";

export interface ExchangeHandler {
  /** May `node` use this service? (the service's context.admits) */
  admits(node: Address): boolean;
  /** Takes the stream over; `first` is its first frame. */
  accept(connection: ExchangeConnection, first: ExchangeFrame): void;
}

export interface ExchangePortLimits {
  /** Streams one peer may have open on port 1001 at once. */
  readonly perPeer: number;
  readonly total: number;
  /** A stream must send its first frame within this. */
  readonly firstFrameMs: number;
  /** A stream with no frame either way for this long is cut. */
  readonly idleMs: number;
}

export const DEFAULT_PORT_LIMITS: ExchangePortLimits = { perPeer: 8, total: 128, firstFrameMs: 10_000, idleMs: 120_000 };

export class ExchangePort {
  private static readonly ports = new WeakMap<EventBus, ExchangePort>();

  /** The port-1001 router of the daemon `context` belongs to. */
  static of(context: ServiceContext): ExchangePort {
    let port = ExchangePort.ports.get(context.events);
    if (!port) {
      port = new ExchangePort(context);
      ExchangePort.ports.set(context.events, port);
    }
    return port;
  }

  limits: ExchangePortLimits = DEFAULT_PORT_LIMITS;
  /** Streams refused or cut, by reason (for logs and tests). */
  readonly refused = new Map<string, number>();
  private readonly handlers = new Map<ExchangeService, ExchangeHandler>();
  private binding: PortBinding | null = null;
  private readonly open = new Map<Address, Set<ExchangeConnection>>();
  private openTotal = 0;
  /** Streams that have not sent their first frame yet, with when they opened. */
  private readonly awaitingFirst = new Map<ExchangeConnection, number>();
  private sweeper: ReturnType<typeof setInterval> | null = null;

  private constructor(private readonly context: ServiceContext) {}

  /** Starts routing `service`'s frames to `handler` (binding port 1001 if nothing did yet); returns the undo. */
  register(service: ExchangeService, handler: ExchangeHandler): () => void {
    this.handlers.set(service, handler);
    if (!this.binding) {
      this.binding = this.context.listen(WellKnownPort.DataExchange, (stream) => this.accept(stream));
      this.sweeper = setInterval(() => this.sweep(), 5_000);
      this.sweeper.unref?.();
    }
    return () => {
      if (this.handlers.get(service) !== handler) return;
      this.handlers.delete(service);
      if (this.handlers.size === 0) {
        this.binding?.close();
        this.binding = null;
        if (this.sweeper) clearInterval(this.sweeper);
        this.sweeper = null;
        for (const set of this.open.values()) for (const c of set) c.abort();
      }
    };
  }

  private count(reason: string): void {
    this.refused.set(reason, (this.refused.get(reason) ?? 0) + 1);
  }

  private accept(stream: StreamHandle): void {
    const node = stream.remoteAddress;
    const log = this.context.log;
    const connection = new ExchangeConnection(stream, (reason) => {
      this.count("bad_frame");
      log.debug("port 1001: a peer broke the framing", { peer: formatAddress(node), reason });
    });
    let set = this.open.get(node);
    if (!set) this.open.set(node, (set = new Set()));
    set.add(connection);
    this.openTotal++;
    connection.onceClosed(() => {
      set!.delete(connection);
      if (set!.size === 0) this.open.delete(node);
      this.openTotal--;
      this.awaitingFirst.delete(connection);
    });
    if (set.size > this.limits.perPeer || this.openTotal > this.limits.total) {
      this.count("busy");
      return connection.refuse(ExchangeError.Busy, `too many open streams${set.size > this.limits.perPeer ? " from your node" : ""}; retry in a moment`);
    }
    this.awaitingFirst.set(connection, Date.now());
    connection.handler = {
      onFrame: (first) => {
        this.awaitingFirst.delete(connection);
        this.route(connection, first);
      },
      onEnd: () => connection.close(),
    };
  }

  private route(connection: ExchangeConnection, first: ExchangeFrame): void {
    const node = connection.remote;
    const service = serviceOfKind(KIND_BYTES[first.kind]);
    if (!service) {
      this.count("bad_frame");
      return connection.refuse(ExchangeError.BadFrame, `a stream cannot start with ${first.kind}`);
    }
    const handler = this.handlers.get(service);
    if (!handler) {
      this.count("service_disabled");
      return connection.refuse(ExchangeError.ServiceDisabled, `this node does not accept ${service} (its ${service} service is switched off)`);
    }
    if (node !== this.context.address && !handler.admits(node)) {
      this.count("not_trusted");
      return connection.refuse(ExchangeError.NotTrusted, `this node accepts ${service} only from nodes it trusts`);
    }
    connection.handler = null;
    handler.accept(connection, first);
  }

  /** Cuts streams that never sent a first frame, or went idle. */
  private sweep(): void {
    const now = Date.now();
    for (const [c, opened] of this.awaitingFirst) {
      if (now - opened <= this.limits.firstFrameMs) continue;
      this.awaitingFirst.delete(c);
      this.count("timeout");
      c.refuse(ExchangeError.Timeout, "no request within the time allowed");
    }
    for (const set of this.open.values()) {
      for (const c of set) {
        if (now - c.lastActivity <= this.limits.idleMs) continue;
        this.count("idle");
        c.abort();
      }
    }
  }
}

/** The kind byte of each decoded frame kind (to tell which service a first frame is for). */
const KIND_BYTES: Record<ExchangeFrame["kind"], number> = {
  message: 0x01,
  message_more: 0x02,
  message_ack: 0x03,
  file_offer: 0x10,
  file_accept: 0x11,
  file_data: 0x12,
  file_end: 0x13,
  file_done: 0x14,
  error: 0x7f,
};
