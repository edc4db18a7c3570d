/**
 * The pub/sub broker's bounds, their defaults, and the daemon config keys
 * that change them (`pilot config --set pubsub_queue=4MiB`). Every resource a
 * peer can make the broker hold is bounded per peer first, then in total.
 */
import { formatByteSize, parseByteSize } from "../../../util/byte-size.ts";
import { DEFAULT_MAX_EVENT, MAX_EVENT_LIMIT } from "../../../protocol/pubsub.ts";

export interface PubsubLimits {
  /** Largest event data, in bytes (config `pubsub_max_event`). */
  readonly maxEvent: number;
  /** Bytes waiting for one subscriber before it is cut as a slow consumer (config `pubsub_queue`). */
  readonly queueBytes: number;
  /** Events waiting for one subscriber before it is cut. */
  readonly queueEvents: number;
  /** Bytes waiting for all subscribers together; over it the furthest behind is cut (config `pubsub_queue_total`). */
  readonly queueTotal: number;
  /** Publishes per second from one peer, also its burst (config `pubsub_rate`). */
  readonly publishRate: number;
  /** Published data bytes per second from one peer, also its burst. */
  readonly publishBytesRate: number;
  /** Publishes per second from everyone together (config `pubsub_rate_total`). */
  readonly publishRateTotal: number;
  readonly subscriptionsPerConnection: number;
  /** Subscriptions one peer may hold over all its connections (config `pubsub_subscriptions`). */
  readonly subscriptionsPerPeer: number;
  readonly subscriptionsTotal: number;
  readonly connectionsPerPeer: number;
  readonly connectionsTotal: number;
}

const KiB = 1024;
const MiB = 1024 * 1024;

export const DEFAULT_PUBSUB_LIMITS: PubsubLimits = Object.freeze({
  maxEvent: DEFAULT_MAX_EVENT,
  queueBytes: 4 * MiB,
  queueEvents: 65_536,
  queueTotal: 64 * MiB,
  publishRate: 10_000,
  publishBytesRate: 16 * MiB,
  publishRateTotal: 50_000,
  subscriptionsPerConnection: 64,
  subscriptionsPerPeer: 512,
  subscriptionsTotal: 8192,
  connectionsPerPeer: 128,
  connectionsTotal: 2048,
});

/** The config keys (without their `pubsub_` prefix), what they mean, and how each is read. */
export const PUBSUB_SETTINGS = {
  max_event: { meaning: "largest event a broker accepts, e.g. 64KiB (default 64KiB, at most 1MiB)", kind: "size", min: 1 * KiB, max: MAX_EVENT_LIMIT, field: "maxEvent" },
  queue: { meaning: "bytes waiting for one subscriber before the broker cuts it as a slow consumer (default 4MiB)", kind: "size", min: 64 * KiB, max: 256 * MiB, field: "queueBytes" },
  queue_total: { meaning: "bytes waiting for all subscribers together (default 64MiB); over it the furthest behind is cut", kind: "size", min: 1 * MiB, max: 4096 * MiB, field: "queueTotal" },
  rate: { meaning: "publishes per second from one peer (default 10000)", kind: "count", min: 1, max: 1_000_000, field: "publishRate" },
  rate_total: { meaning: "publishes per second from all peers together (default 50000)", kind: "count", min: 1, max: 10_000_000, field: "publishRateTotal" },
  subscriptions: { meaning: "subscriptions one peer may hold (default 512)", kind: "count", min: 1, max: 65_535, field: "subscriptionsPerPeer" },
} as const;

export type PubsubSettingName = keyof typeof PUBSUB_SETTINGS;

/** The daemon config keys (`pubsub_<name>`) and what each means, for `pilot config`. */
export const PUBSUB_CONFIG_KEYS = Object.fromEntries(Object.entries(PUBSUB_SETTINGS).map(([name, spec]) => [`pubsub_${name}`, spec.meaning])) as {
  readonly [K in PubsubSettingName as `pubsub_${K}`]: string;
};

const show = formatByteSize;

/** Reads one setting's text; throws RangeError with a sentence that says what a good value looks like. */
export function parsePubsubSetting(name: string, text: string): number {
  const spec = (PUBSUB_SETTINGS as Record<string, (typeof PUBSUB_SETTINGS)[PubsubSettingName]>)[name];
  if (!spec) throw new RangeError(`unknown pub/sub setting "pubsub_${name}" (settings: ${Object.keys(PUBSUB_SETTINGS).map((k) => `pubsub_${k}`).join(", ")})`);
  const t = text.trim();
  let n = NaN;
  if (spec.kind === "size") {
    n = parseByteSize(t);
    if (!(n >= spec.min && n <= spec.max)) throw new RangeError(`pubsub_${name} must be a size from ${show(spec.min)} to ${show(spec.max)} (such as ${show(Math.max(spec.min, Math.min(spec.max, 4 * MiB)))}), got "${t}"`);
  } else {
    if (/^[0-9]{1,12}$/.test(t)) n = Number(t);
    if (!(n >= spec.min && n <= spec.max)) throw new RangeError(`pubsub_${name} must be a whole number from ${spec.min} to ${spec.max}, got "${t}"`);
  }
  return n;
}

/**
 * The limits from settings text (`{queue: "4MiB", rate: "500"}`, the config
 * keys without `pubsub_`), over the defaults. Throws RangeError on a bad value.
 */
export function pubsubLimitsFrom(settings: Readonly<Record<string, string>> = {}, base: PubsubLimits = DEFAULT_PUBSUB_LIMITS): PubsubLimits {
  const out: Record<string, number> = { ...base };
  for (const [name, text] of Object.entries(settings)) {
    const value = parsePubsubSetting(name, text);
    out[PUBSUB_SETTINGS[name as PubsubSettingName].field] = value;
  }
  // A subscriber must be able to hold at least one event of the largest size.
  out.queueBytes = Math.max(out.queueBytes!, out.maxEvent! + 1024);
  out.queueTotal = Math.max(out.queueTotal!, out.queueBytes!);
  out.publishBytesRate = Math.max(out.publishBytesRate!, out.maxEvent!);
  return Object.freeze(out as unknown as PubsubLimits);
}

/** The `pubsub_*` keys of a config, without the prefix (what `pubsubLimitsFrom` reads). */
export function pubsubSettingsOf(config: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(config)) if (key.startsWith("pubsub_")) out[key.slice("pubsub_".length)] = value;
  return out;
}
