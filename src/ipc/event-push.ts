/**
 * Local events pushed to one IPC client (protocol 2): its subscriptions, each
 * with a type filter and a bounded queue, and the `events_*` methods.
 *
 *   events_subscribe {types?, since?}   -> {subscription, last_seq, boot}; EVENT frames follow
 *   events_unsubscribe {subscription}   -> {}
 *   events_recent {types?, since?, limit?} -> {events, last_seq, oldest_seq, boot, truncated?}
 *   events_publish {type: "app.…", data?} -> {seq, type}   (publishAppEvent)
 *
 * Isolation: an event goes straight into the client's frame writer while the
 * writer holds at most its high-water mark; otherwise it waits in the
 * subscription's queue (at most `queueEvents` events; `queueBytes` bytes for
 * all the client's queues together). When that is full the oldest queued
 * event is dropped (from the longest queue when the bytes overflow) and counted, and the
 * client gets one `events.gap` event saying which seqs it missed before the
 * next event it does get. So a client that never reads costs the daemon one
 * writer's high-water mark plus its queues, and nobody else waits for it.
 */
import { NodeError } from "../shared/errors.ts";
import {
  APP_EVENT_PREFIX,
  eventJson,
  eventMatchesAny,
  isEventFilter,
  isEventType,
  MAX_EVENT_FILTERS,
  MAX_EVENT_JSON,
  type EventFeed,
  type LocalEvent,
} from "../shared/events.ts";
import { encodeEventFrame, MAX_JSON_LENGTH } from "./frames.ts";
import type { FrameWriter } from "./writer.ts";

export interface EventPushLimits {
  /** Subscriptions one client may hold at once. */
  readonly maxSubscriptions: number;
  /** Events one subscription may queue while its client does not read. */
  readonly queueEvents: number;
  /** Bytes (event JSON) one client may have queued, over all its subscriptions. */
  readonly queueBytes: number;
}

export const DEFAULT_EVENT_PUSH_LIMITS: EventPushLimits = { maxSubscriptions: 16, queueEvents: 1000, queueBytes: 1024 * 1024 };

/** An `events_recent` answer stays below this many bytes of events (the newest are kept). */
const RECENT_MAX_BYTES = 192 * 1024;

interface Gap {
  first: number;
  last: number;
  dropped: number;
}

interface Subscription {
  readonly id: number;
  readonly filters: readonly string[] | undefined;
  queue: { seq: number; json: Uint8Array }[];
  queuedBytes: number;
  gap: Gap | null;
  dropped: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Each event is turned into JSON once, however many clients get it. */
const jsonCache = new WeakMap<LocalEvent, Uint8Array>();

function jsonBytes(event: LocalEvent): Uint8Array {
  let bytes = jsonCache.get(event);
  if (!bytes) {
    bytes = encoder.encode(eventJson(event));
    jsonCache.set(event, bytes);
  }
  return bytes;
}

export interface ClientEventsStats {
  readonly subscriptions: number;
  readonly queued_events: number;
  readonly queued_bytes: number;
  readonly dropped: number;
}

/** One client's subscriptions. */
export class ClientEvents {
  private readonly subs = new Map<number, Subscription>();
  /** Subscriptions with something queued. */
  private readonly waiting = new Set<Subscription>();
  private nextId = 1;
  private stopFeed: (() => void) | null = null;
  private closed = false;
  /** Bytes queued over all subscriptions. */
  private queuedBytes = 0;
  /** Events dropped for this client so far, over all its subscriptions. */
  dropped = 0;
  /** Called when this client first loses events (the server logs it once). */
  onFirstDrop: (() => void) | null = null;

  constructor(
    private readonly feed: EventFeed,
    private readonly writer: FrameWriter,
    private readonly limits: EventPushLimits = DEFAULT_EVENT_PUSH_LIMITS,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Registers a subscription and returns its answer. The caller sends the
   * answer, then calls `start(id)` at once (same turn), so the client knows
   * the id before the first EVENT frame.
   */
  subscribe(params: Record<string, unknown>): { subscription: number; last_seq: number; boot: string } {
    const filters = filtersParam(params.types);
    const since = sinceParam(params.since, this.feed.lastSeq);
    if (this.subs.size >= this.limits.maxSubscriptions) {
      throw new NodeError("limit_exceeded", `at most ${this.limits.maxSubscriptions} event subscriptions per connection`, "unsubscribe (break out of the iterator, or remove the on() handler) before subscribing again");
    }
    const sub: Subscription = { id: this.nextId++, filters, queue: [], queuedBytes: 0, gap: null, dropped: 0 };
    this.subs.set(sub.id, sub);
    this.pendingReplay.set(sub.id, since);
    this.stopFeed ??= this.feed.subscribe((event) => this.onEvent(event));
    return { subscription: sub.id, last_seq: this.feed.lastSeq, boot: this.feed.boot };
  }

  private readonly pendingReplay = new Map<number, number | undefined>();

  /** Replays what `since` asked for (after the answer went out); live events follow. */
  start(id: number): void {
    const sub = this.subs.get(id);
    if (!sub || !this.pendingReplay.has(id)) return;
    const since = this.pendingReplay.get(id);
    this.pendingReplay.delete(id);
    if (since === undefined) return;
    const kept = this.feed.recent({ since });
    const oldest = kept.length > 0 ? kept[0]!.seq : this.feed.lastSeq + 1;
    if (oldest > since + 1) {
      const gap = { first: since + 1, last: oldest - 1, dropped: oldest - 1 - since };
      this.send(sub.id, this.gapJson(gap, "not_kept"));
    }
    for (const event of kept) this.deliver(sub, event);
  }

  unsubscribe(params: Record<string, unknown>): Record<string, never> {
    const id = params.subscription;
    const sub = typeof id === "number" ? this.subs.get(id) : undefined;
    if (!sub) throw new NodeError("not_found", `no event subscription ${String(id)} on this connection`);
    this.remove(sub);
    return {};
  }

  stats(): ClientEventsStats {
    let events = 0;
    let bytes = 0;
    for (const sub of this.subs.values()) {
      events += sub.queue.length;
      bytes += sub.queuedBytes;
    }
    return { subscriptions: this.subs.size, queued_events: events, queued_bytes: bytes, dropped: this.dropped };
  }

  /** The writer has room again: queued events go out, oldest first, a pending gap before them. */
  pump(): void {
    if (this.waiting.size === 0 || this.closed) return;
    for (const sub of this.waiting) {
      while (this.writer.backlog <= this.writer.highWater) {
        if (sub.gap) {
          const gap = sub.gap;
          sub.gap = null;
          this.send(sub.id, this.gapJson(gap, "slow_client"));
          continue;
        }
        const item = sub.queue.shift();
        if (!item) break;
        sub.queuedBytes -= item.json.length;
        this.queuedBytes -= item.json.length;
        this.send(sub.id, item.json);
      }
      if (sub.queue.length === 0 && sub.gap === null) this.waiting.delete(sub);
      if (this.writer.backlog > this.writer.highWater) return;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopFeed?.();
    this.stopFeed = null;
    this.subs.clear();
    this.waiting.clear();
    this.pendingReplay.clear();
    this.queuedBytes = 0;
  }

  private remove(sub: Subscription): void {
    this.queuedBytes -= sub.queuedBytes;
    this.subs.delete(sub.id);
    this.waiting.delete(sub);
    this.pendingReplay.delete(sub.id);
    if (this.subs.size === 0) {
      this.stopFeed?.();
      this.stopFeed = null;
    }
  }

  private onEvent(event: LocalEvent): void {
    if (this.closed) return;
    for (const sub of this.subs.values()) if (!this.pendingReplay.has(sub.id)) this.deliver(sub, event);
  }

  private deliver(sub: Subscription, event: LocalEvent): void {
    if (!eventMatchesAny(sub.filters, event.type)) return;
    const json = jsonBytes(event);
    if (sub.queue.length === 0 && sub.gap === null && this.writer.backlog <= this.writer.highWater) {
      this.send(sub.id, json);
      return;
    }
    sub.queue.push({ seq: event.seq, json });
    sub.queuedBytes += json.length;
    this.queuedBytes += json.length;
    this.waiting.add(sub);
    while (sub.queue.length > this.limits.queueEvents) this.dropOldest(sub);
    while (this.queuedBytes > this.limits.queueBytes) this.dropOldest(this.longestQueue());
  }

  private longestQueue(): Subscription {
    let longest: Subscription | null = null;
    for (const s of this.waiting) if (!longest || s.queuedBytes > longest.queuedBytes) longest = s;
    return longest!;
  }

  private dropOldest(sub: Subscription): void {
    const old = sub.queue.shift()!;
    sub.queuedBytes -= old.json.length;
    this.queuedBytes -= old.json.length;
    if (sub.gap) {
      sub.gap.last = old.seq;
      sub.gap.dropped++;
    } else sub.gap = { first: old.seq, last: old.seq, dropped: 1 };
    sub.dropped++;
    if (this.dropped++ === 0) this.onFirstDrop?.();
  }

  private gapJson(gap: Gap, reason: "slow_client" | "not_kept"): Uint8Array {
    const event: LocalEvent = { seq: gap.last, time: this.clock(), type: "events.gap", data: { dropped: gap.dropped, first_seq: gap.first, last_seq: gap.last, reason } };
    return encoder.encode(eventJson(event));
  }

  private send(id: number, json: Uint8Array): void {
    const frame = encodeEventFrame(id, json);
    if (frame.ok) this.writer.append(frame.value);
  }
}

/** `events_publish`: an app's own event (`app.` types only: daemon events cannot be forged). */
export function publishAppEvent(feed: EventFeed, params: Record<string, unknown>): { seq: number; type: string } {
  const type = params.type;
  if (!isEventType(type) || !type.startsWith(APP_EVENT_PREFIX)) {
    throw new NodeError("invalid_argument", `event type ${JSON.stringify(type)} is not an app event type`, 'apps publish types that start with "app.", e.g. app.task.done (lower-case words joined by dots)');
  }
  const data = params.data ?? {};
  if (typeof data !== "object" || data === null || Array.isArray(data)) throw new NodeError("invalid_argument", "event data must be a JSON object");
  const size = Buffer.byteLength(JSON.stringify(data));
  if (size > MAX_APP_EVENT_DATA) throw new NodeError("limit_exceeded", `event data of ${size} bytes is larger than ${MAX_APP_EVENT_DATA}`, "publish a reference (a path, an id) instead of the content");
  const event = feed.publish(type, data as Record<string, unknown>);
  return { seq: event.seq, type: event.type };
}

/** The largest `data` an app may publish (its JSON), so the whole event stays below MAX_EVENT_JSON. */
export const MAX_APP_EVENT_DATA = MAX_EVENT_JSON - 1024;

/** `events_recent`: the events kept, oldest first, newest kept when the answer would be too large. */
export function recentEvents(feed: EventFeed, params: Record<string, unknown>): unknown {
  const filters = filtersParam(params.types);
  const since = sinceParam(params.since, feed.lastSeq) ?? 0;
  const limit = limitParam(params.limit);
  const all = feed.recent({ since });
  const out: unknown[] = [];
  let bytes = 0;
  let truncated = false;
  for (let i = all.length - 1; i >= 0 && out.length < limit; i--) {
    const event = all[i]!;
    if (!eventMatchesAny(filters, event.type)) continue;
    const json = jsonBytes(event);
    if (bytes + json.length > Math.min(RECENT_MAX_BYTES, MAX_JSON_LENGTH - 1024)) {
      truncated = true;
      break;
    }
    bytes += json.length;
    out.push(JSON.parse(decoder.decode(json)));
  }
  out.reverse();
  const kept = feed.recent();
  return {
    events: out,
    last_seq: feed.lastSeq,
    oldest_seq: kept.length > 0 ? kept[0]!.seq : null,
    boot: feed.boot,
    ...(truncated ? { truncated: true } : {}),
  };
}

function filtersParam(value: unknown): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.length > MAX_EVENT_FILTERS || !value.every(isEventFilter)) {
    throw new NodeError("invalid_argument", `types must be a list of at most ${MAX_EVENT_FILTERS} event types or prefixes`, 'for example ["trust.request", "message", "peer.*"], or "*" for all');
  }
  return value.length === 0 || value.includes("*") ? undefined : value;
}

function sinceParam(value: unknown, lastSeq: number): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw new NodeError("invalid_argument", "since must be a seq: a whole number, 0 or more");
  if (value > lastSeq) {
    throw new NodeError("invalid_argument", `seq ${value} is ahead of this daemon's last event (${lastSeq}): the daemon was restarted since`, "resume from 0 (the events this daemon still keeps)");
  }
  return value;
}

function limitParam(value: unknown): number {
  if (value === undefined || value === null) return Number.MAX_SAFE_INTEGER;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) throw new NodeError("invalid_argument", "limit must be a whole number, 1 or more");
  return value;
}
