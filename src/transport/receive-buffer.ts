/**
 * The receiver's two stores. Both keep the payload views they are given (no
 * per-byte copies); the engine's caller hands over memory it will not reuse.
 *
 * ReceiveQueue — in-order bytes the application has not read yet.
 *   push(bytes); length
 *   read(max): Uint8Array     zero-copy when it fits in one piece, else one new buffer
 *   readInto(dest, at): n     copies into the caller's buffer (no allocation)
 *
 * ReorderBuffer — out-of-order pieces above the next expected position.
 *   insert(start, bytes)        stores what is not already held (overlaps trimmed)
 *   drain(next, queue): number  moves pieces that became contiguous; returns the new next
 *   sackBlocks(base)            up to 4 SACK blocks (wire numbers), most recent first (RFC 2018)
 *   ranges / bytes / isEmpty
 * Pieces live in sorted parallel arrays (binary search + splice); arrivals at the
 * top, the common case under loss, are appends.
 */
import { MAX_SACK_BLOCKS, type SackBlock } from "../protocol/packet.ts";
import { RangeSet } from "./range-set.ts";
import { NO_SACK } from "./segment.ts";
import { wrap } from "./seq.ts";

const EMPTY = new Uint8Array(0);

export class ReceiveQueue {
  private pieces: Uint8Array[] = [];
  private head = 0;
  length = 0;

  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.pieces.push(bytes);
    this.length += bytes.length;
  }

  read(max = Number.POSITIVE_INFINITY): Uint8Array {
    const want = Math.min(max, this.length);
    if (want <= 0) return EMPTY;
    const first = this.pieces[this.head]!;
    if (first.length >= want) {
      if (first.length === want) this.shift();
      else this.pieces[this.head] = first.subarray(want);
      this.length -= want;
      return first.length === want ? first : first.subarray(0, want);
    }
    const out = Buffer.allocUnsafeSlow(want); // filled completely below
    let filled = 0;
    while (filled < want) {
      const piece = this.pieces[this.head]!;
      const n = Math.min(piece.length, want - filled);
      out.set(n === piece.length ? piece : piece.subarray(0, n), filled);
      filled += n;
      if (n === piece.length) this.shift();
      else this.pieces[this.head] = piece.subarray(n);
    }
    this.length -= want;
    return out;
  }

  readInto(dest: Uint8Array, at = 0): number {
    const want = Math.min(dest.length - at, this.length);
    let filled = 0;
    while (filled < want) {
      const piece = this.pieces[this.head]!;
      const n = Math.min(piece.length, want - filled);
      dest.set(n === piece.length ? piece : piece.subarray(0, n), at + filled);
      filled += n;
      if (n === piece.length) this.shift();
      else this.pieces[this.head] = piece.subarray(n);
    }
    this.length -= filled;
    return filled;
  }

  private shift(): void {
    this.pieces[this.head++] = EMPTY;
    if (this.head === this.pieces.length) {
      this.pieces.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.pieces.length) {
      this.pieces.splice(0, this.head);
      this.head = 0;
    }
  }
}

export class ReorderBuffer {
  private starts: number[] = [];
  private pieces: Uint8Array[] = [];
  private head = 0;
  /** The union of stored pieces, merged: what we SACK. */
  readonly ranges = new RangeSet();
  /** Positions of recent arrivals, most recent first, for SACK block order. */
  private recent: number[] = [];
  private cachedBlocks: readonly SackBlock[] = NO_SACK;
  private cacheValid = true;

  get isEmpty(): boolean {
    return this.head === this.starts.length;
  }

  get bytes(): number {
    return this.ranges.total;
  }

  /** Stores the parts of `[start, start + bytes.length)` not already held; returns their size. */
  insert(start: number, bytes: Uint8Array): number {
    const end = start + bytes.length;
    if (bytes.length === 0) return 0;
    this.cacheValid = false;
    this.noteRecent(start);
    const starts = this.starts;
    const pieces = this.pieces;
    // Fast path: beyond everything held.
    const n = starts.length;
    if (n === this.head || starts[n - 1]! + pieces[n - 1]!.length <= start) {
      starts.push(start);
      pieces.push(bytes);
      this.ranges.add(start, end);
      return bytes.length;
    }
    // First piece that ends after `start`.
    let lo = this.head;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid]! + pieces[mid]!.length > start) hi = mid;
      else lo = mid + 1;
    }
    let i = lo;
    let at = start;
    let stored = 0;
    while (at < end) {
      if (i < starts.length && starts[i]! <= at) {
        at = starts[i]! + pieces[i]!.length;
        i++;
        continue;
      }
      const stop = i < starts.length ? Math.min(end, starts[i]!) : end;
      starts.splice(i, 0, at);
      pieces.splice(i, 0, bytes.subarray(at - start, stop - start));
      stored += stop - at;
      i++;
      at = stop;
    }
    if (stored > 0) this.ranges.add(start, end);
    return stored;
  }

  /** Moves everything contiguous with `next` into `queue`; returns the new `next`. */
  drain(next: number, queue: ReceiveQueue): number {
    const starts = this.starts;
    const pieces = this.pieces;
    let h = this.head;
    while (h < starts.length && starts[h]! <= next) {
      const s = starts[h]!;
      const piece = pieces[h]!;
      const e = s + piece.length;
      if (e > next) {
        queue.push(s === next ? piece : piece.subarray(next - s));
        next = e;
      }
      pieces[h] = EMPTY;
      h++;
    }
    if (h !== this.head) {
      this.cacheValid = false;
      if (h === starts.length) {
        starts.length = 0;
        pieces.length = 0;
        h = 0;
      } else if (h >= 256 && h * 2 >= starts.length) {
        starts.splice(0, h);
        pieces.splice(0, h);
        h = 0;
      }
      this.head = h;
    }
    this.ranges.removeBelow(next);
    return next;
  }

  /**
   * SACK blocks as wire numbers (position + base): the range holding the most
   * recent arrival first, then other recently reported ranges (RFC 2018 §4).
   */
  sackBlocks(base: number): readonly SackBlock[] {
    if (this.cacheValid) return this.cachedBlocks;
    this.cacheValid = true;
    const ranges = this.ranges;
    if (ranges.isEmpty) return (this.cachedBlocks = NO_SACK);
    const blocks: SackBlock[] = [];
    const used: number[] = [];
    // The ranges holding recent arrivals, newest first; then, if the option still
    // has room, the lowest ranges (the oldest holes).
    for (let k = 0; k < this.recent.length + ranges.count && blocks.length < MAX_SACK_BLOCKS; k++) {
      const i = k < this.recent.length ? ranges.indexContaining(this.recent[k]!) : k - this.recent.length;
      if (i < 0 || used.includes(i)) continue;
      used.push(i);
      blocks.push({ start: wrap(ranges.start(i), base), end: wrap(ranges.end(i), base) });
    }
    this.cachedBlocks = blocks;
    return blocks;
  }

  private noteRecent(position: number): void {
    const r = this.recent;
    if (r.length >= 2 * MAX_SACK_BLOCKS) r.pop();
    r.unshift(position);
  }
}
