/**
 * Received file data that waits for the disk, per transfer and for all
 * transfers together. Pure bookkeeping: the files service pauses a transfer's
 * stream when `add` says so and resumes the streams `remove` and `drop` hand
 * back. A paused stream stops reading, so its sender waits on the stream's
 * window: the data a slow disk makes us hold is bounded per transfer and in
 * total, and the transfers over their share are the ones that wait.
 */
export class WriteBehind<T> {
  private readonly held = new Map<T, number>();
  private readonly paused = new Set<T>();
  private total = 0;

  /**
   * @param perTransfer one transfer pauses past this many bytes waiting
   * @param limit all transfers together: past it, any transfer that receives more pauses
   */
  constructor(
    readonly perTransfer: number,
    readonly limit: number,
  ) {}

  /** Bytes waiting for the disk, all transfers together. */
  get bytes(): number {
    return this.total;
  }

  /** Transfers whose streams are paused for memory now. */
  get pausedCount(): number {
    return this.paused.size;
  }

  /** `n` bytes of `t` arrived and wait for the disk. True: pause `t`'s stream now. */
  add(t: T, n: number): boolean {
    const h = (this.held.get(t) ?? 0) + n;
    this.held.set(t, h);
    this.total += n;
    if (this.paused.has(t) || (h <= this.perTransfer && this.total <= this.limit)) return false;
    this.paused.add(t);
    return true;
  }

  /** `n` bytes of `t` reached the disk. Returns the transfers whose streams may read again. */
  remove(t: T, n: number): T[] {
    const h = this.held.get(t);
    if (h !== undefined) {
      const take = Math.min(n, h);
      this.total -= take;
      if (h - take > 0) this.held.set(t, h - take);
      else this.held.delete(t);
    }
    return this.resumable();
  }

  /** `t` is over: what it still held is released (written or abandoned). Returns the streams that may read again. */
  drop(t: T): T[] {
    this.total -= this.held.get(t) ?? 0;
    this.held.delete(t);
    this.paused.delete(t);
    return this.resumable();
  }

  /**
   * With hysteresis, so a stream is not paused and resumed for every frame: a transfer
   * goes on once it holds under half its own bound and all hold under 3/4 of theirs.
   */
  private resumable(): T[] {
    if (this.paused.size === 0 || this.total >= this.limit * 0.75) return [];
    const out: T[] = [];
    for (const t of this.paused) {
      if ((this.held.get(t) ?? 0) < this.perTransfer / 2) out.push(t);
    }
    for (const t of out) this.paused.delete(t);
    return out;
  }
}
