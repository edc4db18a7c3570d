/**
 * Token buckets and the replay cache: the registry's defences against floods
 * and against captured requests. Both take time as an argument and hold a
 * bounded amount of memory.
 */

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
