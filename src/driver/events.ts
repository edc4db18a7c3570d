/**
 * The daemon's local events in the SDK: what happened on this node (a trust
 * request, a message, a file, a peer going offline), as an async iterator or
 * as EventEmitter events on the Driver.
 *
 * ```ts
 * for await (const e of pilot.events({ types: ["trust.request"] })) {
 *   await pilot.approve(e.data.address as string);
 * }
 *
 * pilot.on("trust.request", (e) => console.log(e.data.address, e.data.reason));
 * pilot.on("message", (e) => ...);        // a prefix: message.received, ...
 * pilot.on("*", (e) => ...);              // everything
 * ```
 *
 * Filters: `*` passes everything; `trust` (or `trust.*`) passes every
 * `trust.` type; `trust.request` passes itself. An `events.gap` event says
 * which seqs a subscriber missed (it read too slowly, or asked `since` for
 * events no longer kept); it passes every filter.
 */
import { NodeError } from "./errors.ts";
import type { IpcClient } from "../ipc/client.ts";
import { isEventFilter, type LocalEvent } from "../shared/events.ts";

export type { CoreEvent, CoreEventData, CoreEventType, LocalEvent } from "../shared/events.ts";
/** For webhook receivers written with the SDK: checks X-Pilot-Signature against the raw body. */
export { verifyWebhookSignature, type SignatureCheck } from "../shared/webhook-signature.ts";

export interface EventsOptions {
  /** Event types or prefixes to receive (default: all). */
  readonly types?: readonly string[];
  /** Replay the kept events after this seq first (the daemon keeps the last 1000), then live ones. */
  readonly since?: number;
  /**
   * Events held for a consumer that has not asked for them yet (default 1000).
   * Beyond it the oldest are dropped and an `events.gap` event says so.
   */
  readonly queueLimit?: number;
}

const DEFAULT_QUEUE_LIMIT = 1000;

/** EventEmitter names the Driver uses itself: never local event filters. */
export const RESERVED_EMITTER_EVENTS: ReadonlySet<string> = new Set(["close", "error", "newListener", "removeListener"]);

/** Checks filters before anything is sent, so a typo fails at the call. */
export function checkFilters(types: readonly string[] | undefined): void {
  if (types === undefined) return;
  if (!Array.isArray(types)) throw new NodeError("invalid_argument", "types must be an array of event types");
  for (const t of types) {
    if (!isEventFilter(t)) throw new NodeError("invalid_argument", `"${String(t)}" is not an event type or prefix`, 'for example "trust.request", "message", "peer.*" or "*"');
  }
}

/**
 * One subscription as an async iterator. It starts at once; `for await`
 * ending early (break, return, throw) unsubscribes, and so does `close()`.
 * If the daemon goes away the iterator throws its NodeError (`not_running`);
 * if the Driver is closed it simply ends.
 */
export class EventStream implements AsyncIterableIterator<LocalEvent>, AsyncDisposable {
  private queue: LocalEvent[] = [];
  private waiter: { resolve: (r: IteratorResult<LocalEvent>) => void; reject: (e: Error) => void } | null = null;
  private subscription: number | null = null;
  private done = false;
  private failure: NodeError | null = null;
  private retained = false;
  private readonly limit: number;
  /** Events this iterator dropped because it was not read (the daemon's own drops arrive as events.gap). */
  dropped = 0;
  /** The daemon's last seq when the subscription started, and its run's id: known once `ready` resolves. */
  lastSeq: number | undefined;
  boot: string | undefined;
  /** Resolves once the daemon confirmed the subscription; rejects (and the iterator throws) if it refused it. */
  readonly ready: Promise<void>;

  /** @internal Use `driver.events()`. */
  constructor(
    private readonly client: IpcClient,
    options: EventsOptions,
    private readonly onEnd: (stream: EventStream) => void,
  ) {
    this.limit = Math.max(1, options.queueLimit ?? DEFAULT_QUEUE_LIMIT);
    this.client.retain();
    this.retained = true;
    this.ready = (async () => {
      checkFilters(options.types);
      const r = await client.subscribeEvents({ types: options.types, since: options.since }, (event) => this.push(event));
      this.subscription = r.subscription;
      this.lastSeq = r.lastSeq;
      this.boot = r.boot;
      // Closed while the subscription was on its way.
      if (this.done) void this.client.unsubscribeEvents(r.subscription).catch(() => {});
    })();
    this.ready.catch((error: unknown) => this.end(error instanceof NodeError ? error : new NodeError("internal", String(error))));
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<LocalEvent>> {
    const event = this.queue.shift();
    if (event) return Promise.resolve({ value: event, done: false });
    if (this.failure) {
      const error = this.failure;
      this.failure = null;
      return Promise.reject(error);
    }
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    if (this.waiter) return Promise.reject(new NodeError("invalid_argument", "next() called again before the previous call settled"));
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  async return(): Promise<IteratorResult<LocalEvent>> {
    await this.close();
    return { value: undefined, done: true };
  }

  /** Unsubscribes; events already queued are discarded and the iterator ends. */
  async close(): Promise<void> {
    if (this.done) return;
    this.queue = [];
    this.end(null);
    if (this.subscription !== null) await this.client.unsubscribeEvents(this.subscription).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** @internal The connection to the daemon ended (`error` unless the driver was closed). */
  lost(error: NodeError | undefined): void {
    this.end(error ?? null);
  }

  private push(event: LocalEvent): void {
    if (this.done) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value: event, done: false });
      return;
    }
    this.queue.push(event);
    if (this.queue.length > this.limit) this.dropOldest();
  }

  /** Drops the oldest queued event into a gap at the head of the queue. */
  private dropOldest(): void {
    const head = this.queue[0]!;
    const second = this.queue[1];
    const isGap = (e: LocalEvent | undefined) => e?.type === "events.gap";
    // The oldest real event to drop: right behind a gap we already hold, or the head itself.
    const victimIndex = isGap(head) && second ? 1 : 0;
    const victim = this.queue[victimIndex]!;
    const lost = isGap(victim) ? Number(victim.data.dropped) || 0 : 1;
    const first = isGap(victim) ? Number(victim.data.first_seq) || victim.seq : victim.seq;
    this.queue.splice(victimIndex, 1);
    this.dropped += lost;
    if (victimIndex === 1) {
      const g = head.data as { dropped: number; first_seq: number; last_seq: number };
      this.queue[0] = gapEvent(Math.min(g.first_seq, first), victim.seq, g.dropped + lost, head.time);
    } else {
      this.queue.unshift(gapEvent(first, victim.seq, lost, victim.time));
    }
  }

  private end(error: NodeError | null): void {
    if (this.done) return;
    this.done = true;
    if (this.retained) {
      this.retained = false;
      this.client.release();
    }
    this.onEnd(this);
    const w = this.waiter;
    this.waiter = null;
    if (w) {
      if (error) w.reject(error);
      else w.resolve({ value: undefined, done: true });
    } else if (error) this.failure = error;
  }
}

function gapEvent(first: number, last: number, dropped: number, time: number): LocalEvent {
  return { seq: last, time, type: "events.gap", data: { dropped, first_seq: first, last_seq: last, reason: "slow_client" } };
}

/** Every name a local event is emitted under on the Driver: its type, each shorter prefix, `prefix.*`, and `*`. */
export function emitterNames(type: string): string[] {
  const parts = type.split(".");
  const names = [type];
  for (let n = parts.length - 1; n >= 1; n--) {
    const prefix = parts.slice(0, n).join(".");
    names.push(prefix, `${prefix}.*`);
  }
  names.push("*");
  return names.filter((n) => !RESERVED_EMITTER_EVENTS.has(n));
}

/** Is this EventEmitter name a local event filter (as opposed to the Driver's own 'close')? */
export function isLocalEventName(name: string | symbol): name is string {
  return typeof name === "string" && !RESERVED_EMITTER_EVENTS.has(name) && isEventFilter(name);
}
