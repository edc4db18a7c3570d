/**
 * A set of half-open integer ranges `[start, end)`, kept sorted, disjoint and
 * merged (touching ranges coalesce). Used for positions in sequence space: the
 * sender's SACK scoreboard and the receiver's out-of-order map.
 *
 *   add(start, end): number         bytes newly covered
 *   removeBelow(x)                  forget everything below x
 *   indexContaining(x): number      range index holding x, or -1
 *   firstIndexEndingAfter(x)        first range whose end > x (binary search)
 *   start(i) / end(i) / count / total / isEmpty / clear()
 *
 * Storage is one flat number array `[s0, e0, s1, e1, ...]`; lookups are binary
 * searches and edits are one `splice` (a memmove), so the cost stays small even
 * with thousands of holes.
 */
export class RangeSet {
  private edges: number[] = [];
  /** Sum of the lengths of all ranges. */
  total = 0;

  get count(): number {
    return this.edges.length >> 1;
  }

  get isEmpty(): boolean {
    return this.edges.length === 0;
  }

  start(i: number): number {
    return this.edges[2 * i]!;
  }

  end(i: number): number {
    return this.edges[2 * i + 1]!;
  }

  /** Start of the lowest range (undefined behaviour when empty: returns NaN). */
  get first(): number {
    return this.edges.length === 0 ? Number.NaN : this.edges[0]!;
  }

  /** End of the highest range (NaN when empty). */
  get last(): number {
    return this.edges.length === 0 ? Number.NaN : this.edges[this.edges.length - 1]!;
  }

  clear(): void {
    this.edges.length = 0;
    this.total = 0;
  }

  /** Index of the first range whose end is greater than `x` (count if none). */
  firstIndexEndingAfter(x: number): number {
    const e = this.edges;
    let lo = 0;
    let hi = e.length >> 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (e[2 * mid + 1]! > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  indexContaining(x: number): number {
    const i = this.firstIndexEndingAfter(x);
    return i < this.count && this.edges[2 * i]! <= x ? i : -1;
  }

  /** True if every point of `[start, end)` is in the set. */
  covers(start: number, end: number): boolean {
    if (start >= end) return true;
    const i = this.indexContaining(start);
    return i >= 0 && this.edges[2 * i + 1]! >= end;
  }

  /** Adds `[start, end)`; returns how many points were not in the set before. */
  add(start: number, end: number): number {
    if (start >= end) return 0;
    const e = this.edges;
    const n = e.length >> 1;
    // First range that ends at or after `start` (touching counts: it merges).
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (e[2 * mid + 1]! >= start) hi = mid;
      else lo = mid + 1;
    }
    const i = lo;
    // Fast path: append past the last range.
    if (i === n) {
      e.push(start, end);
      this.total += end - start;
      return end - start;
    }
    // Ranges i..j-1 touch or overlap [start, end].
    let j = i;
    let covered = 0;
    while (j < n && e[2 * j]! <= end) {
      covered += e[2 * j + 1]! - e[2 * j]!;
      j++;
    }
    if (j === i) {
      e.splice(2 * i, 0, start, end);
      this.total += end - start;
      return end - start;
    }
    const s = Math.min(start, e[2 * i]!);
    const t = Math.max(end, e[2 * (j - 1) + 1]!);
    const added = t - s - covered;
    e[2 * i] = s;
    e[2 * i + 1] = t;
    if (j - i > 1) e.splice(2 * (i + 1), 2 * (j - i - 1));
    this.total += added;
    return added;
  }

  /** Removes every point below `x`. */
  removeBelow(x: number): void {
    const e = this.edges;
    if (e.length === 0 || e[0]! >= x) return;
    const i = this.firstIndexEndingAfter(x);
    let removed = 0;
    for (let k = 0; k < i; k++) removed += e[2 * k + 1]! - e[2 * k]!;
    if (i < e.length >> 1 && e[2 * i]! < x) {
      removed += x - e[2 * i]!;
      e[2 * i] = x;
    }
    if (i > 0) e.splice(0, 2 * i);
    this.total -= removed;
  }

  /** Points of `[start, end)` that are in the set. */
  coveredWithin(start: number, end: number): number {
    let sum = 0;
    const e = this.edges;
    for (let i = this.firstIndexEndingAfter(start); i < e.length >> 1; i++) {
      const s = e[2 * i]!;
      if (s >= end) break;
      sum += Math.min(end, e[2 * i + 1]!) - Math.max(start, s);
    }
    return sum;
  }
}
