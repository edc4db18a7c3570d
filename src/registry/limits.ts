/**
 * Token buckets, the replay cache and address prefixes: the registry's
 * defences against floods and against captured requests. All take time as an
 * argument and hold a bounded amount of memory.
 */
import { parseIp, unmapIpv4 } from "../protocol/beacon-message.ts";

export interface BucketConfig {
  /** Tokens added per second. */
  readonly rate: number;
  /** Most tokens a bucket holds (the largest burst). */
  readonly burst: number;
}

/** One token bucket per key; buckets that have refilled completely are forgotten. */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private lastSweep = 0;

  constructor(
    private readonly config: BucketConfig,
    private readonly maxKeys = 100_000,
  ) {}

  /** Takes one token for `key` at time `now` (ms); false when the bucket is empty. */
  take(key: string, now: number): boolean {
    this.sweep(now);
    const { rate, burst } = this.config;
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) return false;
      b = { tokens: burst, at: now };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + (Math.max(0, now - b.at) / 1000) * rate);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Gives back one token taken for `key` (the work it paid for turned out to be cheap or legitimate). */
  refund(key: string): void {
    const b = this.buckets.get(key);
    if (b) b.tokens = Math.min(this.config.burst, b.tokens + 1);
  }

  /** Milliseconds until `key` has a token again (0 if it has one now). */
  retryAfter(key: string, now: number): number {
    const b = this.buckets.get(key);
    if (!b) return 0;
    const tokens = Math.min(this.config.burst, b.tokens + (Math.max(0, now - b.at) / 1000) * this.config.rate);
    return tokens >= 1 ? 0 : Math.ceil(((1 - tokens) / this.config.rate) * 1000);
  }

  /** Forgets `key`'s bucket (a closed connection). */
  forget(key: string): void {
    this.buckets.delete(key);
  }

  get size(): number {
    return this.buckets.size;
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 10_000) return;
    this.lastSweep = now;
    const full = (this.config.burst / this.config.rate) * 1000;
    for (const [key, b] of this.buckets) if (now - b.at >= full) this.buckets.delete(key);
  }
}

/**
 * Nonces of accepted requests, each kept until its request's timestamp leaves
 * the acceptance window: after that the request is refused as stale anyway.
 */
export class ReplayCache {
  private readonly seen = new Map<string, number>();
  private lastSweep = 0;

  constructor(
    private readonly windowMs: number,
    private readonly maxEntries = 2_000_000,
  ) {}

  /** Records `nonce` for a request stamped `ts`; false if it was already seen (a replay) or the cache is full. */
  remember(nonce: string, ts: number, now: number): "fresh" | "replayed" | "full" {
    this.sweep(now);
    const expiry = this.seen.get(nonce);
    if (expiry !== undefined && expiry >= now) return "replayed";
    if (this.seen.size >= this.maxEntries) return "full";
    this.seen.set(nonce, ts + this.windowMs);
    return "fresh";
  }

  get size(): number {
    return this.seen.size;
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 5_000) return;
    this.lastSweep = now;
    for (const [nonce, expiry] of this.seen) if (expiry < now) this.seen.delete(nonce);
  }
}

/**
 * The network an address belongs to for fairness and limits: IPv4 /24 and
 * IPv6 /56 (what one site or one customer typically holds, so one host with
 * many addresses counts as one). IPv4-mapped IPv6 counts as IPv4. Anything
 * that does not parse is its own prefix.
 */
export function addressPrefix(ip: string): string {
  const plain = unmapIpv4(ip);
  const bytes = parseIp(plain);
  if (!bytes.ok) return `?${plain}`;
  let b = bytes.value;
  // IPv4-mapped in any spelling (::ffff:102:304, 0:0:0:0:0:ffff:1.2.3.4), not only
  // the dotted ::ffff:1.2.3.4 that unmapIpv4 knows: else all of IPv4 would be one /56.
  if (b.length === 16 && isV4Mapped(b)) b = b.subarray(12);
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.0/24`;
  return `${Buffer.from(b.subarray(0, 7)).toString("hex")}/56`;
}

/** ::ffff:0:0/96 */
function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/**
 * Counts per key with the heaviest key at hand in O(1): the registry asks
 * "which network holds the most connections?" on every accept while full.
 */
export class CountIndex {
  private readonly counts = new Map<string, number>();
  /** count -> keys holding exactly that many */
  private readonly byCount = new Map<number, Set<string>>();
  private max = 0;

  count(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  add(key: string): void {
    this.move(key, this.count(key), this.count(key) + 1);
  }

  remove(key: string): void {
    const n = this.count(key);
    if (n > 0) this.move(key, n, n - 1);
  }

  /** A key holding the most, and how many it holds (undefined when empty). */
  heaviest(): { key: string; count: number } | undefined {
    const keys = this.byCount.get(this.max);
    const key = keys?.values().next().value;
    return key === undefined ? undefined : { key, count: this.max };
  }

  private move(key: string, from: number, to: number): void {
    if (from > 0) {
      const set = this.byCount.get(from)!;
      set.delete(key);
      if (set.size === 0) this.byCount.delete(from);
    }
    if (to > 0) {
      let set = this.byCount.get(to);
      if (!set) this.byCount.set(to, (set = new Set()));
      set.add(key);
      this.counts.set(key, to);
    } else {
      this.counts.delete(key);
    }
    if (to > this.max) this.max = to;
    while (this.max > 0 && !this.byCount.has(this.max)) this.max--;
  }
}
