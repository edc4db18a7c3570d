/**
 * A token bucket with time as an argument (ms): `rate` tokens a second, at most
 * `burst` saved, full at the start. Pure: no clock of its own.
 *
 *   new TokenBucket(ratePerSecond, burst, now?)   without `now`, time starts at the first call
 *   take(now, n = 1): boolean                      takes n tokens if there are n
 *   has(n, now) / spend(n)                         check several buckets first, then spend from each
 *   idleSince(now) / isFull(now)                   for tables that forget idle buckets
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now = Number.NaN,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  private refill(now: number): void {
    if (this.last === this.last) this.tokens = Math.min(this.burst, this.tokens + (Math.max(0, now - this.last) / 1000) * this.rate);
    this.last = now;
  }

  take(now: number, n = 1): boolean {
    this.refill(now);
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  has(n: number, now: number): boolean {
    this.refill(now);
    return this.tokens >= n;
  }

  spend(n: number): void {
    this.tokens -= n;
  }

  idleSince(now: number): number {
    return this.last === this.last ? now - this.last : Infinity;
  }

  /** Full again by `now` (so forgetting it gives nothing away). */
  isFull(now: number): boolean {
    const since = this.last === this.last ? Math.max(0, now - this.last) : Infinity;
    return this.tokens + (since / 1000) * this.rate >= this.burst;
  }
}
