/**
 * The local event feed's vocabulary, shared by the daemon (which publishes),
 * the IPC layer (which pushes events to apps), webhooks and the SDK (which
 * receive them). Types and pure functions only: nothing here touches a
 * socket or a clock.
 *
 * An event is `{seq, time, type, data}`: `seq` counts from 1 for the daemon's
 * lifetime, `time` is milliseconds since the epoch, `type` is dot-separated
 * (`trust.request`), and `data` is a JSON object whose node addresses are
 * `N:NNNN.HHHH.LLLL` strings. docs/SERVICES.md "Local events" lists them.
 */

export interface LocalEvent<T extends string = string, D = Readonly<Record<string, unknown>>> {
  /** Increases by one per event, from 1, for the daemon's lifetime. */
  readonly seq: number;
  /** Milliseconds since the epoch. */
  readonly time: number;
  /** Dot-separated, e.g. "trust.request", "message.received", "file.received", "peer.offline". */
  readonly type: T;
  readonly data: D;
}

/** Payloads of the events the daemon core publishes (services add their own: message.*, file.*, pubsub.*). */
export interface CoreEventData {
  /** Another node asks this node for trust (`pilot approve` / `reject` it). */
  "trust.request": { address: string; node_id: number; reason: string };
  /** Trust with a node is established (it approved our request, or we approved its). */
  "trust.approved": { address: string; node_id: number };
  /** A node rejected our trust request. */
  "trust.rejected": { address: string; node_id: number; reason?: string };
  /** A node ended trust with this node. */
  "trust.revoked": { address: string; node_id: number };
  /** A trusted peer's tunnel session came up (first contact, or again after peer.offline). */
  "peer.online": { address: string; node_id: number; hostname: string | null; endpoint: string | null; path: string };
  /**
   * A trusted peer that was online is gone: the tunnel gave up reaching it
   * (`unreachable`: no answer to a new handshake for 90 s, tried after 15 s
   * of silence), or trust with it ended (`untrusted`).
   */
  "peer.offline": { address: string; node_id: number; hostname: string | null; reason: "unreachable" | "untrusted" };
  /**
   * Only in a subscription (IPC, SDK, `pilot events --follow`): events this
   * subscriber did not get. `slow_client`: it did not read fast enough and
   * the oldest queued were dropped; `not_kept`: a `since` older than what the
   * daemon keeps. Its `seq` is `last_seq`, so resuming from it skips the gap.
   */
  "events.gap": { dropped: number; first_seq: number; last_seq: number; reason: "slow_client" | "not_kept" };
}

export type CoreEventType = keyof CoreEventData;
/** A typed event of the core vocabulary. */
export type CoreEvent<T extends CoreEventType = CoreEventType> = { [K in T]: LocalEvent<K, CoreEventData[K]> }[T];

/** Types apps may publish themselves (`events_publish`): `app.` and at least one more segment. */
export const APP_EVENT_PREFIX = "app.";

/** An event type: lower-case dot-separated words, 2 to 8 segments, at most 128 characters. */
const EVENT_TYPE = /^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*){1,7}$/;
/** A filter: an event type or a prefix of one (whole segments), optionally ending in ".*"; or "*". */
const EVENT_FILTER = /^(\*|[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*){0,7}(\.\*)?)$/;

export const MAX_EVENT_TYPE_LENGTH = 128;
/** Filters one subscription may name. */
export const MAX_EVENT_FILTERS = 32;
/**
 * The largest event JSON pushed to apps or POSTed to webhooks. An event whose
 * JSON is larger is delivered with `data: {truncated: true, bytes}` instead.
 */
export const MAX_EVENT_JSON = 64 * 1024;

export function isEventType(type: unknown): type is string {
  return typeof type === "string" && type.length <= MAX_EVENT_TYPE_LENGTH && EVENT_TYPE.test(type);
}

export function isEventFilter(filter: unknown): filter is string {
  return typeof filter === "string" && filter.length <= MAX_EVENT_TYPE_LENGTH && EVENT_FILTER.test(filter);
}

/**
 * Does `type` pass `filter`? `*` passes everything; `trust` and `trust.*`
 * pass `trust.request` and every other `trust.` type; `trust.request` passes
 * itself (and any deeper `trust.request.` type).
 */
export function eventMatches(filter: string, type: string): boolean {
  if (filter === "*") return true;
  const prefix = filter.endsWith(".*") ? filter.slice(0, -2) : filter;
  return type === prefix || type.startsWith(prefix + ".");
}

/** True if any filter passes `type`; no filters (undefined or empty) passes everything. */
export function eventMatchesAny(filters: readonly string[] | undefined, type: string): boolean {
  if (!filters || filters.length === 0) return true;
  for (const f of filters) if (eventMatches(f, type)) return true;
  return false;
}

/**
 * The event's JSON as apps and webhooks get it, at most MAX_EVENT_JSON bytes:
 * an event too large (or whose data is not JSON) keeps its seq, time and
 * type, and its data says so. `extra` fields (the webhook's `node`, `id`)
 * come first.
 */
export function eventJson(event: LocalEvent, extra: Record<string, unknown> = {}): string {
  const head = { ...extra, seq: event.seq, time: event.time, type: event.type };
  let text: string | undefined;
  try {
    text = JSON.stringify({ ...head, data: event.data });
  } catch {
    text = undefined;
  }
  if (text === undefined) return JSON.stringify({ ...head, data: { unserializable: true } });
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_EVENT_JSON) return JSON.stringify({ ...head, data: { truncated: true, bytes } });
  return text;
}

/** Reads an event from untrusted JSON (an IPC frame); null if it is not one. */
export function parseEvent(value: unknown): LocalEvent | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const v = value as Record<string, unknown>;
  if (!isCount(v.seq) || typeof v.time !== "number" || !Number.isFinite(v.time) || !isEventType(v.type)) return null;
  if (typeof v.data !== "object" || v.data === null || Array.isArray(v.data)) return null;
  return { seq: v.seq, time: v.time, type: v.type, data: v.data as Record<string, unknown> };
}

function isCount(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

/** What the IPC layer needs of the daemon's event feed (src/daemon/event-bus.ts implements it). */
export interface EventFeed {
  /** Random per daemon run: a `seq` means nothing across runs. */
  readonly boot: string;
  readonly lastSeq: number;
  /** Events kept (the last 1000), oldest first, with seq > since. */
  recent(options?: { since?: number; limit?: number }): LocalEvent[];
  /** `fn` gets every later event, synchronously, on the daemon's event loop. */
  subscribe(fn: (event: LocalEvent) => void): () => void;
  publish(type: string, data: Record<string, unknown>): LocalEvent;
}
