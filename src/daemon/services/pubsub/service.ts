/**
 * The pub/sub broker on port 1002: the daemon service that accepts client
 * streams, admits them (`context.admits`: trusted nodes, or anyone when the
 * operator opened the service with `--open-services pubsub`), speaks the
 * codec of src/protocol/pubsub.ts and hands subscriptions and publishes to
 * the sans-I/O Broker. This file is the I/O shell: streams, the end-of-turn
 * flush, timers, logging and the local event feed.
 *
 * Delivery is at-most-once fan-out to the subscribers connected at the time:
 * events are not stored, and a publish's ack means the broker accepted the
 * event and queued it for every matching subscriber. A subscriber that falls
 * behind by more than its queue bound is told (`slow_consumer`, after the
 * events already on their way) and cut; it never slows the others.
 *
 * Daemon call: `pubsub_status` -> connections, subscriptions, topics, counters, limits.
 * Local event: `pubsub.subscriber_cut {subscriber, topics, reason}`.
 */
import { formatAddress, type Address } from "../../../protocol/address.ts";
import {
  decodeClientFrame,
  encodeBrokerFrame,
  PUBLISH_OVERHEAD,
  PUBSUB_PORT,
  PUBSUB_VERSION,
  PubsubErrorCode,
  type ClientFrame,
} from "../../../protocol/pubsub.ts";
import { MAX_TOPIC_LENGTH } from "../../../protocol/topic.ts";
import { NodeError, type PortBinding, type StreamHandle } from "../../local-node.ts";
import type { DaemonService, ServiceContext } from "../service.ts";
import { Broker, type BrokerClient, type Cut } from "./broker.ts";
import { PubsubConnection } from "./connection.ts";
import { pubsubLimitsFrom, pubsubSettingsOf, type PubsubLimits } from "./limits.ts";

export interface PubsubServiceOptions {
  /** Overrides the limits from the context's settings (tests). */
  readonly limits?: Partial<PubsubLimits>;
  /** Milliseconds since the epoch (event times and rate buckets). */
  readonly clock?: () => number;
  /** How long a refused or cut client's stream may take to read its reason before it is reset (ms). */
  readonly lingerMs?: number;
}

/** A connection's unread acks above which the broker stops reading its publishes until they drain. */
const ACK_HIGH_WATER = 256 * 1024;
const DEFAULT_LINGER_MS = 5000;
const FLUSH_EVENTS = 256;

interface Session {
  conn: PubsubConnection;
  client: BrokerClient | null;
  linger: ReturnType<typeof setTimeout> | null;
}

export function createPubsubService(context: ServiceContext, options: PubsubServiceOptions = {}): DaemonService {
  return new PubsubService(context, options);
}

export class PubsubService implements DaemonService {
  readonly name = "pubsub" as const;
  readonly limits: PubsubLimits;
  private readonly broker: Broker;
  private readonly clock: () => number;
  private readonly lingerMs: number;
  private readonly maxFrame: number;
  private readonly sessions = new Map<PubsubConnection, Session>();
  private binding: PortBinding | null = null;
  private flushQueued = false;
  private stopped = false;
  /** Frames that did not decode, streams that broke the framing. */
  private malformed = 0;
  private refusedAdmission = 0;

  constructor(
    private readonly context: ServiceContext,
    options: PubsubServiceOptions = {},
  ) {
    let limits: PubsubLimits;
    try {
      limits = pubsubLimitsFrom(pubsubSettingsOf(context.config ?? {}));
    } catch (e) {
      throw new NodeError("invalid_argument", `config: ${(e as Error).message}`, "fix it with: pilot config --set (or --unset) and start the daemon again");
    }
    this.limits = options.limits ? Object.freeze({ ...limits, ...options.limits }) : limits;
    this.clock = options.clock ?? Date.now;
    this.lingerMs = options.lingerMs ?? DEFAULT_LINGER_MS;
    this.maxFrame = PUBLISH_OVERHEAD + 4 * MAX_TOPIC_LENGTH + this.limits.maxEvent;
    this.broker = new Broker(this.limits, this.clock());
  }

  methods(): Record<string, (params: Record<string, unknown>) => unknown> {
    return { pubsub_status: () => this.status() };
  }

  start(): void {
    this.binding = this.context.listen(PUBSUB_PORT, (stream) => this.accept(stream));
    this.context.log.debug("pub/sub broker listening", { port: PUBSUB_PORT, max_event: this.limits.maxEvent, queue: this.limits.queueBytes });
  }

  stop(): void {
    this.stopped = true;
    this.binding?.close();
    this.binding = null;
    for (const s of [...this.sessions.values()]) {
      if (s.client) this.broker.close(s.client);
      s.conn.dropQueued();
      s.conn.write(encodeBrokerFrame({ type: "error", id: 0, code: PubsubErrorCode.ShuttingDown, message: "the broker's daemon is stopping" }));
      s.conn.close();
    }
    this.sessions.clear();
  }

  status(): Record<string, unknown> {
    const l = this.limits;
    return {
      port: PUBSUB_PORT,
      ...this.broker.status(),
      malformed: this.malformed,
      refused_admission: this.refusedAdmission,
      limits: {
        max_event: l.maxEvent,
        queue_bytes: l.queueBytes,
        queue_events: l.queueEvents,
        queue_total: l.queueTotal,
        publish_rate: l.publishRate,
        publish_bytes_rate: l.publishBytesRate,
        publish_rate_total: l.publishRateTotal,
        subscriptions_per_connection: l.subscriptionsPerConnection,
        subscriptions_per_peer: l.subscriptionsPerPeer,
        subscriptions_total: l.subscriptionsTotal,
        connections_per_peer: l.connectionsPerPeer,
        connections_total: l.connectionsTotal,
      },
    };
  }

  private accept(stream: StreamHandle): void {
    if (this.stopped) return stream.abort();
    const peer = stream.remoteAddress;
    // Events go out once per turn as one batch per subscriber: no reason to hold a partial segment back (Nagle).
    stream.setNoDelay(true);
    const session: Session = { conn: null as unknown as PubsubConnection, client: null, linger: null };
    session.conn = new PubsubConnection(stream, this.maxFrame, {
      onFrame: (body) => this.onFrame(session, body),
      onEnd: () => {
        // The client is done (a publisher after its last publish, or a subscriber that closed):
        // what was answered goes out, then our FIN.
        if (session.client) this.broker.close(session.client);
        session.conn.end();
      },
      onViolation: (reason) => {
        this.malformed++;
        this.context.log.debug("pub/sub client broke the framing", { peer: formatAddress(peer), reason });
      },
      onClose: () => this.closed(session),
      onDrain: () => session.conn.resume(),
    });
    this.sessions.set(session.conn, session);
    if (!this.admits(peer)) {
      this.refusedAdmission++;
      return this.refuse(session, PubsubErrorCode.NotTrusted, `this broker admits only nodes it trusts; ${formatAddress(peer)} is not one of them`);
    }
    const client = this.broker.open(peer, session.conn, this.clock());
    if ("refused" in client) return this.refuse(session, client.code, client.message);
    session.client = client;
    session.conn.write(encodeBrokerFrame({ type: "welcome", version: PUBSUB_VERSION, maxEvent: this.limits.maxEvent, maxTopic: MAX_TOPIC_LENGTH, maxSubscriptions: this.limits.subscriptionsPerConnection }));
  }

  private onFrame(session: Session, body: Uint8Array): void {
    const client = session.client;
    if (!client || client.gone) return; // refused or cut: nothing it sends matters any more
    const decoded = decodeClientFrame(body);
    if (!decoded.ok) {
      this.malformed++;
      this.broker.close(client);
      return this.refuse(session, PubsubErrorCode.Malformed, `the broker could not read a frame: ${decoded.error.message}`);
    }
    const frame: ClientFrame = decoded.value;
    // Trust can be withdrawn while a connection is open.
    if (!this.admits(client.peer)) {
      this.refusedAdmission++;
      this.broker.close(client);
      return this.refuse(session, PubsubErrorCode.NotTrusted, `this broker no longer trusts ${formatAddress(client.peer)}`);
    }
    switch (frame.type) {
      case "subscribe": {
        const r = this.broker.subscribe(client, frame.id, frame.pattern);
        this.reply(session, frame.id, r, 0, 0);
        break;
      }
      case "unsubscribe": {
        const r = this.broker.unsubscribe(client, frame.id);
        this.reply(session, frame.id, r, 0, 0);
        break;
      }
      case "publish": {
        const r = this.broker.publish(client, frame.topic, frame.topicBytes ?? new TextEncoder().encode(frame.topic), frame.data, this.clock());
        if ("refused" in r) this.reply(session, frame.id, r, 0, 0);
        else {
          this.reply(session, frame.id, null, r.count, r.seq);
          // One batch per turn, but a burst is written out every FLUSH_EVENTS events so what a turn holds stays small.
          const pending = this.broker.pendingEvents;
          if (pending >= FLUSH_EVENTS) this.flush();
          else if (pending > 0) this.scheduleFlush();
        }
        break;
      }
    }
    // A client that does not read what we send it stops being read (no more acks pile up).
    if (session.conn.backlog > ACK_HIGH_WATER) {
      session.conn.pause();
      session.conn.notifyDrain();
    }
  }

  /** This node's own apps (loopback through its daemon), trusted nodes, or anyone when the service is open. */
  private admits(peer: Address): boolean {
    return peer === this.context.address || this.context.admits(peer);
  }

  private reply(session: Session, id: number, refusal: { code: string; message: string } | null, count: number, seq: number): void {
    session.conn.write(refusal ? encodeBrokerFrame({ type: "error", id, code: refusal.code, message: refusal.message }) : encodeBrokerFrame({ type: "ack", id, count, seq }));
  }

  /** Writes this turn's events once every publish of the turn is in (all streams pumped this turn). */
  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  private flush(): void {
    const cuts = this.broker.flush();
    for (const cut of cuts) this.cutSubscriber(cut);
  }

  private cutSubscriber(cut: Cut): void {
    const session = this.sessions.get(cut.client.outlet as PubsubConnection);
    const subscriber = formatAddress(cut.client.peer);
    this.context.log.info("cut a slow pub/sub subscriber", { subscriber, topics: cut.topics.join(","), reason: cut.message });
    this.context.events.publish("pubsub.subscriber_cut", { subscriber, topics: cut.topics, reason: cut.message });
    if (session) this.refuse(session, PubsubErrorCode.SlowConsumer, cut.message);
  }

  /**
   * Tells the client why (after anything it is already being sent), closes our
   * side, and resets the stream if it has not read that within the linger time.
   * What was queued for it and not yet begun is dropped at once.
   */
  private refuse(session: Session, code: string, message: string): void {
    const { conn } = session;
    if (conn.isClosed || session.linger) return;
    conn.dropQueued();
    conn.write(encodeBrokerFrame({ type: "error", id: 0, code, message }));
    conn.end();
    session.linger = setTimeout(() => conn.abort(), this.lingerMs);
    session.linger.unref?.();
  }

  private closed(session: Session): void {
    if (session.client) this.broker.close(session.client);
    if (session.linger) clearTimeout(session.linger);
    this.sessions.delete(session.conn);
  }

  /** For tests and status: the peer of every open session. */
  peers(): Address[] {
    return [...this.sessions.keys()].map((c) => c.remoteAddress);
  }
}
