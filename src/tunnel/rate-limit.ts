/**
 * Token buckets with time as an argument (ms), for the tunnel's admission
 * limits. A table of buckets holds at most `maxKeys` keys: a new key pushes
 * out the one used least recently (which, having been idle longest, is the
 * fullest anyway), so its memory is bounded whatever the keys are.
 *
 *   const b = new TokenBucket(ratePerSecond, burst)
 *   b.take(now): boolean
 *   const t = new BucketTable(ratePerSecond, burst, maxKeys)
 *   t.take(key, now): boolean        t.size
 */
export { TokenBucket } from "../util/token-bucket.ts";

interface Entry {
  tokens: number;
  at: number;
}

export class BucketTable<K = string> {
  private readonly entries = new Map<K, Entry>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly maxKeys: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  take(key: K, now: number): boolean {
    let e = this.entries.get(key);
    if (e === undefined) {
      if (this.entries.size >= this.maxKeys) this.entries.delete(this.entries.keys().next().value as K);
      e = { tokens: this.burst, at: now };
    } else {
      this.entries.delete(key); // re-inserted below: the map's order is least recently used first
      e.tokens = Math.min(this.burst, e.tokens + (Math.max(0, now - e.at) / 1000) * this.rate);
      e.at = now;
    }
    this.entries.set(key, e);
    if (e.tokens < 1) return false;
    e.tokens -= 1;
    return true;
  }

  delete(key: K): void {
    this.entries.delete(key);
  }
}
