/**
 * Publish and subscribe through a broker: any node whose daemon runs the
 * pub/sub service (port 1002) brokers topics for the nodes it admits
 * (trusted ones; anyone if its operator opened the service). The client side
 * needs no service of its own: it is a Pilot stream through this app's daemon.
 *
 * ```ts
 * const pilot = await connect();
 * // Agent B: every event under sensors., from the broker on agent-a.
 * const sub = pilot.subscribe("agent-a", "sensors.>");
 * await sub.ready;                                   // the broker has the subscription
 * for await (const event of sub) {
 *   console.log(event.topic, event.from, event.text());
 *   if (event.topic === "sensors.stop") break;       // break closes the subscription
 * }
 * // Agent C: publish; resolves on the broker's ack.
 * const { delivered } = await pilot.publish("agent-a", "sensors.kitchen.temp", "21.5");
 * ```
 *
 * Delivery is at-most-once to the subscribers connected when the event
 * arrives: nothing is stored. `from` is the publisher's address as the
 * broker's daemon authenticated it; a publisher cannot choose it. Events
 * from one publisher arrive in the order it published them.
 *
 * A subscriber that does not read falls behind: the iterator buffers up to
 * `maxBuffered` events, then stops reading, so the broker's queue for it
 * grows, and past the broker's bound (default 4 MiB) the broker cuts it: the
 * iterator then throws a PubsubError with reason `slow_consumer` (code
 * `limit_exceeded`) after the events that reached it.
 *
 * Topics are dot-separated words (`sensors.kitchen.temp`); a subscription may
 * use `*` for one segment and `>` (or `#`) for the rest. See docs/SERVICES.md.
 */
import { formatAddress } from "../protocol/address.ts";
import { decodeBrokerFrame, encodeClientFrame, FrameReader, MAX_EVENT_LIMIT, MAX_TOPIC_FIELD, EVENT_OVERHEAD, PUBSUB_PORT, PubsubErrorCode, type ClientFrame, type EventFrame, type WelcomeFrame } from "../protocol/pubsub.ts";
import { parsePattern, parseTopic } from "../protocol/topic.ts";
import { NodeError, type NodeErrorCode } from "./errors.ts";
import type { PilotSocket } from "./socket.ts";

/** What pub/sub needs from a Driver. */
export interface PubsubDriver {
  dial(hostOrAddr: string, port: number, options?: { timeoutMs?: number }): Promise<PilotSocket>;
}

export interface BrokerOptions {
  /** Give up if the broker has not answered within this many ms (dial and welcome). Default 15000. */
  timeoutMs?: number;
}

export interface SubscribeOptions extends BrokerOptions {
  /** Events the iterator holds before it stops reading (the broker then queues for it). Default 1024. */
  maxBuffered?: number;
}

export interface PublishResult {
  /** The broker's address. */
  target: string;
  topic: string;
  /** Bytes of data published. */
  bytes: number;
  /** Subscriber connections the broker queued the event for. */
  delivered: number;
  /** The broker's number for this event (increasing; events of other topics take numbers too). */
  seq: number;
}

/** An error from a broker: `code` is the NodeError code, `reason` the broker's own (`slow_consumer`, `too_large`, ...). */
export class PubsubError extends NodeError {
  constructor(
    code: NodeErrorCode,
    readonly reason: string,
    message: string,
    hint?: string,
  ) {
    super(code, message, hint);
    this.name = "PubsubError";
  }
}

/** One event as a subscriber receives it. */
export class PubsubEvent {
  constructor(
    readonly topic: string,
    readonly data: Uint8Array,
    /** The publisher's Pilot address, set by the broker from its authenticated stream. */
    readonly from: string,
    /** When the broker accepted it: ms since the epoch, by the broker's clock. */
    readonly time: number,
    /** The broker's number for this event. */
    readonly seq: number,
  ) {}

  /** The data as UTF-8 text. */
  text(): string {
    return new TextDecoder().decode(this.data);
  }

  /** The data parsed as JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }
}

const CODES: Record<string, { code: NodeErrorCode; hint?: string }> = {
  [PubsubErrorCode.NotTrusted]: { code: "not_trusted", hint: "ask the broker's node for trust (pilot handshake TARGET), or its operator can open the service: pilot daemon start --open-services pubsub" },
  [PubsubErrorCode.InvalidTopic]: { code: "invalid_argument", hint: "topics are dot-separated words such as sensors.kitchen.temp; subscriptions may use * (one word) and > or # (the rest)" },
  [PubsubErrorCode.TooLarge]: { code: "limit_exceeded", hint: "send less per event, or ask the broker's operator to raise pubsub_max_event" },
  [PubsubErrorCode.RateLimited]: { code: "rate_limited", hint: "publish more slowly, and retry after a moment" },
  [PubsubErrorCode.LimitExceeded]: { code: "limit_exceeded", hint: "close subscriptions you no longer need" },
  [PubsubErrorCode.SlowConsumer]: { code: "limit_exceeded", hint: "read events as fast as they are published, or ask the broker's operator for a larger pubsub_queue" },
  [PubsubErrorCode.NotFound]: { code: "not_found" },
  [PubsubErrorCode.ShuttingDown]: { code: "closed", hint: "the broker's daemon stopped; subscribe again once it is back" },
  [PubsubErrorCode.Malformed]: { code: "internal", hint: "check that both nodes run the same Pilot release" },
};

function brokerError(reason: string, message: string): PubsubError {
  const c = CODES[reason] ?? { code: "internal" as const };
  return new PubsubError(c.code, reason, message, c.hint);
}

function toBytes(data: Uint8Array | string): Uint8Array {
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  throw new NodeError("invalid_argument", "event data must be a string or a Uint8Array");
}

function checkTopic(topic: string): void {
  const r = parseTopic(topic);
  if (!r.ok) throw new PubsubError("invalid_argument", PubsubErrorCode.InvalidTopic, r.error.message, CODES[PubsubErrorCode.InvalidTopic]!.hint);
}

function checkPattern(pattern: string): void {
  const r = parsePattern(pattern);
  if (!r.ok) throw new PubsubError("invalid_argument", PubsubErrorCode.InvalidTopic, r.error.message, CODES[PubsubErrorCode.InvalidTopic]!.hint);
}

type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;

interface Waiter {
  resolve(ack: { count: number; seq: number }): void;
  reject(error: Error): void;
}

/** One stream to a broker: the welcome, requests answered by id, events to `onEvent`. */
class BrokerConnection {
  readonly broker: string;
  private readonly reader = new FrameReader(EVENT_OVERHEAD + MAX_TOPIC_FIELD + MAX_EVENT_LIMIT);
  private readonly waiters = new Map<number, Waiter>();
  private nextId = 1;
  private failure: Error | null = null;
  welcome: WelcomeFrame | null = null;
  onEvent: ((event: EventFrame) => void) | null = null;
  /** Called once when the connection ends: with the broker's reason, or null when we closed it. */
  onEnd: ((error: Error | null) => void) | null = null;
  private onWelcome: ((error: Error | null) => void) | null = null;
  private closing = false;

  private constructor(
    readonly socket: PilotSocket,
    readonly label: string,
  ) {
    this.broker = socket.remoteAddress ?? label;
    socket.on("data", (chunk: Buffer) => this.received(chunk));
    socket.on("error", (e: Error & { pilotCode?: NodeErrorCode; hint?: string }) => this.fail(new PubsubError(e.pilotCode ?? "connection_reset", "connection_lost", `the connection to the broker on ${label} failed: ${e.message}`, e.hint)));
    socket.on("end", () => this.fail(new PubsubError("closed", "closed", `the broker on ${label} closed the connection`)));
    socket.on("close", () => this.fail(new PubsubError("closed", "closed", `the connection to the broker on ${label} closed`)));
  }

  /** Dials the broker and waits for its welcome (or its refusal). */
  static async open(driver: PubsubDriver, target: string, options: BrokerOptions = {}): Promise<BrokerConnection> {
    const timeoutMs = options.timeoutMs ?? 15_000;
    let socket: PilotSocket;
    try {
      socket = await driver.dial(target, PUBSUB_PORT, { timeoutMs });
    } catch (e) {
      if (e instanceof NodeError && e.code === "connection_refused") {
        throw new PubsubError("connection_refused", "no_broker", `${target} does not run a pub/sub broker (port ${PUBSUB_PORT} refused the connection)`, "its daemon may have been started with --no-pubsub (or disabled_services=pubsub)");
      }
      throw e;
    }
    const conn = new BrokerConnection(socket, target);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        conn.fail(new PubsubError("timeout", "timeout", `the broker on ${target} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      conn.onWelcome = (error) => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
    });
    return conn;
  }

  get closed(): boolean {
    return this.failure !== null || this.closing;
  }

  /** Sends a request; resolves with its ack (count, seq), rejects with the broker's error for it. */
  request(frame: WithoutId<ClientFrame>): Promise<{ count: number; seq: number }> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.allocateId();
    return new Promise((resolve, reject) => {
      this.waiters.set(id, { resolve, reject });
      this.socket.write(encodeClientFrame({ ...frame, id } as ClientFrame));
    });
  }

  private allocateId(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffff_ffff ? 1 : this.nextId + 1;
    return id;
  }

  get inFlight(): number {
    return this.waiters.size;
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.fail(new PubsubError("closed", "closed", "the connection to the broker was closed"), true);
    this.socket.destroy();
  }

  private received(chunk: Uint8Array): void {
    const frames = this.reader.push(chunk);
    if (!frames.ok) return this.protocolError(frames.error.message);
    for (const body of frames.value) {
      if (this.failure) return;
      const f = decodeBrokerFrame(body);
      if (!f.ok) return this.protocolError(f.error.message);
      const frame = f.value;
      if (!this.welcome && frame.type !== "welcome" && !(frame.type === "error" && frame.id === 0)) return this.protocolError(`a ${frame.type} frame before the welcome`);
      switch (frame.type) {
        case "welcome":
          this.welcome = frame;
          this.onWelcome?.(null);
          this.onWelcome = null;
          break;
        case "event":
          this.onEvent?.(frame);
          break;
        case "ack": {
          const w = this.waiters.get(frame.id);
          this.waiters.delete(frame.id);
          w?.resolve({ count: frame.count, seq: frame.seq });
          break;
        }
        case "error": {
          if (frame.id === 0) {
            this.fail(brokerError(frame.code, `the broker on ${this.label} ${frame.code === PubsubErrorCode.SlowConsumer ? "cut this subscription" : "refused"}: ${frame.message}`));
            this.socket.end();
            return;
          }
          const w = this.waiters.get(frame.id);
          this.waiters.delete(frame.id);
          w?.reject(brokerError(frame.code, frame.message));
          break;
        }
      }
    }
  }

  private protocolError(message: string): void {
    this.fail(new PubsubError("internal", PubsubErrorCode.Malformed, `the broker on ${this.label} sent something this client cannot read: ${message}`, CODES[PubsubErrorCode.Malformed]!.hint));
    this.socket.destroy();
  }

  private fail(error: Error, quiet = false): void {
    if (this.failure) return;
    this.failure = error;
    for (const w of this.waiters.values()) w.reject(error);
    this.waiters.clear();
    if (this.onWelcome) {
      this.onWelcome(error);
      this.onWelcome = null;
      this.socket.destroy();
    }
    this.onEnd?.(quiet ? null : error);
    this.onEnd = null;
  }
}

/**
 * A long-lived publishing connection to one broker: `publish` many events
 * over one stream, each resolving on the broker's ack. Close it when done.
 */
export class Publisher {
  /** The broker's address. */
  readonly target: string;
  /** The broker's largest event, in bytes. */
  readonly maxEvent: number;
  private readonly slots: (() => void)[] = [];
  private idleUnref = false;

  /** @internal Use `driver.publisher(target)`. */
  constructor(
    private readonly conn: BrokerConnection,
    /** Publishes waiting for their ack at most; more wait for a free slot. */
    private readonly maxInFlight = 1024,
  ) {
    this.target = conn.broker;
    this.maxEvent = conn.welcome!.maxEvent;
  }

  get closed(): boolean {
    return this.conn.closed;
  }

  /** Publishes one event; resolves on the broker's ack. Errors: PubsubError (`too_large`, `rate_limited`, `invalid_topic`, ...). */
  async publish(topic: string, data: Uint8Array | string): Promise<PublishResult> {
    checkTopic(topic);
    const bytes = toBytes(data);
    if (bytes.length > this.maxEvent) {
      throw new PubsubError("limit_exceeded", PubsubErrorCode.TooLarge, `an event of ${bytes.length} bytes is larger than the broker's limit of ${this.maxEvent}`, CODES[PubsubErrorCode.TooLarge]!.hint);
    }
    while (this.conn.inFlight >= this.maxInFlight && !this.conn.closed) await new Promise<void>((resolve) => this.slots.push(resolve));
    // Do not pile data up in the socket faster than the daemon takes it.
    const socket = this.conn.socket;
    if (socket.writableNeedDrain && !this.conn.closed) {
      await new Promise<void>((resolve) => {
        const done = () => {
          socket.off("drain", done);
          socket.off("close", done);
          resolve();
        };
        socket.on("drain", done);
        socket.on("close", done);
      });
    }
    if (this.idleUnref) this.conn.socket.ref();
    try {
      const ack = await this.conn.request({ type: "publish", topic, data: bytes });
      return { target: this.target, topic, bytes: bytes.length, delivered: ack.count, seq: ack.seq };
    } finally {
      this.slots.shift()?.();
      if (this.idleUnref && this.conn.inFlight === 0) this.conn.socket.unref();
    }
  }

  /** @internal Let the process exit while no publish is in flight (the driver's shared publishers). */
  unrefWhenIdle(): void {
    this.idleUnref = true;
    if (this.conn.inFlight === 0) this.conn.socket.unref();
  }

  /** @internal */
  set onClose(fn: () => void) {
    this.conn.onEnd = () => fn();
  }

  async close(): Promise<void> {
    this.conn.close();
    for (const s of this.slots.splice(0)) s();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * The events of one or more subscriptions on one broker, as an async
 * iterator (`for await`). `break` or `return()` closes it; so does `close()`.
 * It fails (the loop throws) if the broker refuses the subscription or cuts
 * it, or the connection breaks; events that arrived before are delivered first.
 */
export class Subscription implements AsyncIterableIterator<PubsubEvent> {
  /** The patterns subscribed to. */
  readonly topics: readonly string[];
  /** Resolves once the broker accepted every pattern; rejects if it refused (then the iterator throws too). */
  readonly ready: Promise<void>;
  /** The broker's address, once connected. */
  broker: string | undefined;
  private readonly buffered: PubsubEvent[] = [];
  private head = 0;
  private waiting: { resolve(r: IteratorResult<PubsubEvent>): void; reject(e: Error): void } | null = null;
  private failure: Error | null = null;
  private done = false;
  private conn: BrokerConnection | null = null;
  private paused = false;
  private readonly maxBuffered: number;

  /** @internal Use `driver.subscribe(target, topics)`. */
  constructor(driver: PubsubDriver, target: string, topics: readonly string[], options: SubscribeOptions = {}) {
    this.topics = topics;
    this.maxBuffered = Math.max(1, options.maxBuffered ?? 1024);
    this.ready = this.start(driver, target, options);
    this.ready.catch(() => {}); // reported through the iterator as well
  }

  private async start(driver: PubsubDriver, target: string, options: SubscribeOptions): Promise<void> {
    let conn: BrokerConnection;
    try {
      conn = await BrokerConnection.open(driver, target, options);
    } catch (e) {
      this.end(e as Error);
      throw e;
    }
    if (this.done) {
      conn.close();
      return;
    }
    this.conn = conn;
    this.broker = conn.broker;
    conn.onEvent = (f) => this.deliver(new PubsubEvent(f.topic, f.data, formatAddress(f.from), f.time, f.seq));
    conn.onEnd = (error) => this.end(error);
    try {
      await Promise.all(this.topics.map((pattern) => conn.request({ type: "subscribe", pattern })));
    } catch (e) {
      this.end(e as Error);
      conn.close();
      throw e;
    }
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<PubsubEvent>> {
    if (this.head < this.buffered.length) {
      const value = this.buffered[this.head]!;
      this.buffered[this.head++] = undefined as unknown as PubsubEvent;
      if (this.head === this.buffered.length) {
        this.buffered.length = 0;
        this.head = 0;
      }
      if (this.paused && this.buffered.length - this.head <= this.maxBuffered / 2) {
        this.paused = false;
        this.conn?.socket.resume();
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.failure) {
      const e = this.failure;
      this.failure = null;
      this.done = true;
      return Promise.reject(e);
    }
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  async return(): Promise<IteratorResult<PubsubEvent>> {
    await this.close();
    return { value: undefined, done: true };
  }

  /** Ends the subscription: the stream to the broker closes, and the iterator finishes. */
  async close(): Promise<void> {
    this.failure = null;
    this.buffered.length = 0;
    this.head = 0;
    this.end(null);
    this.conn?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private deliver(event: PubsubEvent): void {
    if (this.done) return;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w.resolve({ value: event, done: false });
      return;
    }
    this.buffered.push(event);
    if (!this.paused && this.buffered.length - this.head >= this.maxBuffered) {
      this.paused = true;
      this.conn?.socket.pause();
    }
  }

  private end(error: Error | null): void {
    if (this.done) return;
    this.done = true;
    if (error) this.failure = error;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      if (error) {
        this.failure = null;
        w.reject(error);
      } else w.resolve({ value: undefined, done: true });
    }
  }
}

/** Opens a Publisher on `target`'s broker. */
export async function openPublisher(driver: PubsubDriver, target: string, options: BrokerOptions = {}): Promise<Publisher> {
  return new Publisher(await BrokerConnection.open(driver, target, options));
}

/** Subscribes to one or more patterns on `target`'s broker. Throws invalid_argument at once for a bad pattern. */
export function subscribe(driver: PubsubDriver, target: string, topics: string | readonly string[], options: SubscribeOptions = {}): Subscription {
  const list = typeof topics === "string" ? [topics] : [...topics];
  if (list.length === 0) throw new NodeError("invalid_argument", "subscribe to at least one topic");
  for (const t of list) checkPattern(t);
  return new Subscription(driver, target, list, options);
}

const shared = new WeakMap<PubsubDriver, Map<string, Promise<Publisher>>>();

/**
 * Publishes one event to `target`'s broker; resolves on its ack. Publishes
 * from one driver to one broker share one connection, opened on first use,
 * which does not keep the process alive while idle.
 */
export async function publish(driver: PubsubDriver, target: string, topic: string, data: Uint8Array | string, options: BrokerOptions = {}): Promise<PublishResult> {
  checkTopic(topic);
  const bytes = toBytes(data);
  let byTarget = shared.get(driver);
  if (!byTarget) shared.set(driver, (byTarget = new Map()));
  let pending = byTarget.get(target);
  if (!pending) {
    const opened = openPublisher(driver, target, options);
    byTarget.set(target, opened);
    opened.then(
      (p) => {
        p.unrefWhenIdle();
        p.onClose = () => byTarget!.get(target) === opened && byTarget!.delete(target);
      },
      () => byTarget!.get(target) === opened && byTarget!.delete(target),
    );
    pending = opened;
  }
  const publisher = await pending;
  return publisher.publish(topic, bytes);
}
