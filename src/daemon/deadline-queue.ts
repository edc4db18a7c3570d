/**
 * Earliest-deadline-first queue over many owners (stream engines, the tunnel
 * router), so the daemon needs one OS timer however many connections it has.
 * `set(owner, at)` replaces an owner's previous deadline; stale heap entries are
 * skipped lazily when they surface.
 *
 *   q.set(owner, at)        at = Infinity clears it
 *   q.peek(): number        earliest live deadline (Infinity when empty)
 *   q.popDue(now): T[]      owners whose deadline is <= now (each once), removed
 */
export class DeadlineQueue<T> {
  private heapAt: number[] = [];
  private heapOwner: T[] = [];
  private readonly current = new Map<T, number>();

  get size(): number {
    return this.current.size;
  }

  set(owner: T, at: number): void {
    if (at === Infinity || Number.isNaN(at)) {
      this.current.delete(owner);
      return;
    }
    if (this.current.get(owner) === at) return;
    this.current.set(owner, at);
    this.push(at, owner);
    // Keep stale entries from piling up when deadlines move often.
    if (this.heapAt.length > 64 && this.heapAt.length > 4 * this.current.size) this.rebuild();
  }

  delete(owner: T): void {
    this.current.delete(owner);
  }

  peek(): number {
    this.dropStale();
    return this.heapAt.length > 0 ? this.heapAt[0]! : Infinity;
  }

  popDue(now: number): T[] {
    const due: T[] = [];
    for (;;) {
      this.dropStale();
      if (this.heapAt.length === 0 || this.heapAt[0]! > now) return due;
      const owner = this.heapOwner[0]!;
      this.pop();
      this.current.delete(owner);
      due.push(owner);
    }
  }

  private dropStale(): void {
    while (this.heapAt.length > 0 && this.current.get(this.heapOwner[0]!) !== this.heapAt[0]) this.pop();
  }

  private rebuild(): void {
    this.heapAt = [];
    this.heapOwner = [];
    for (const [owner, at] of this.current) this.push(at, owner);
  }

  private push(at: number, owner: T): void {
    const a = this.heapAt;
    const o = this.heapOwner;
    let i = a.length;
    a.push(at);
    o.push(owner);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= at) break;
      a[i] = a[p]!;
      o[i] = o[p]!;
      i = p;
    }
    a[i] = at;
    o[i] = owner;
  }

  private pop(): void {
    const a = this.heapAt;
    const o = this.heapOwner;
    const lastAt = a.pop()!;
    const lastOwner = o.pop()!;
    const n = a.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && a[r]! < a[l]! ? r : l;
      if (a[c]! >= lastAt) break;
      a[i] = a[c]!;
      o[i] = o[c]!;
      i = c;
    }
    a[i] = lastAt;
    o[i] = lastOwner;
  }
}
