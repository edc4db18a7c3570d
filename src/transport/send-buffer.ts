/**
 * The sender's byte store: everything written and not yet acknowledged.
 *
 *   write(bytes, max): number   copies up to `max` bytes in; returns how many
 *   slice(offset, length)       bytes [offset, offset+length) as one Uint8Array
 *   release(upTo)               drops bytes below stream offset `upTo`
 *   start / end / length        stream offsets of the oldest and next byte
 *
 * Offsets count bytes since the stream began (they never wrap). Storage is a
 * queue of fixed-size chunks, filled in order, so the chunk that holds an offset
 * is found by division, a segment is a zero-copy `subarray` unless it straddles
 * two chunks (then one small copy), and acknowledged chunks are dropped whole.
 * Chunks are never reused, so a segment view handed out stays valid for as long
 * as its holder keeps it.
 */
export const SEND_CHUNK_SIZE = 16 * 1024;

export class SendBuffer {
  private chunks: Uint8Array[] = [];
  /** Stream offset of chunks[0][0]; chunk i starts at base + i * SEND_CHUNK_SIZE. */
  private base = 0;
  /** Oldest byte still held. */
  start = 0;
  /** One past the newest byte written. */
  end = 0;

  get length(): number {
    return this.end - this.start;
  }

  write(src: Uint8Array, max: number): number {
    const total = Math.min(src.length, max);
    let done = 0;
    while (done < total) {
      const within = this.end - this.base - (this.chunks.length - 1) * SEND_CHUNK_SIZE;
      let chunk = this.chunks[this.chunks.length - 1];
      let at = within;
      if (chunk === undefined || within >= SEND_CHUNK_SIZE) {
        chunk = Buffer.allocUnsafeSlow(SEND_CHUNK_SIZE); // every byte is written before it is read
        this.chunks.push(chunk);
        at = 0;
      }
      const n = Math.min(total - done, SEND_CHUNK_SIZE - at);
      chunk.set(n === src.length ? src : src.subarray(done, done + n), at);
      done += n;
      this.end += n;
    }
    return total;
  }

  slice(offset: number, length: number): Uint8Array {
    const rel = offset - this.base;
    const ci = Math.floor(rel / SEND_CHUNK_SIZE);
    const at = rel - ci * SEND_CHUNK_SIZE;
    const chunk = this.chunks[ci]!;
    if (at + length <= SEND_CHUNK_SIZE) return chunk.subarray(at, at + length);
    const out = new Uint8Array(length);
    let copied = 0;
    let index = ci;
    let from = at;
    while (copied < length) {
      const c = this.chunks[index++]!;
      const n = Math.min(length - copied, SEND_CHUNK_SIZE - from);
      out.set(c.subarray(from, from + n), copied);
      copied += n;
      from = 0;
    }
    return out;
  }

  release(upTo: number): void {
    if (upTo <= this.start) return;
    this.start = Math.min(upTo, this.end);
    // Whole chunks below `start` go; a partly filled last chunk stays for new writes.
    const drop = Math.floor((this.start - this.base) / SEND_CHUNK_SIZE);
    if (drop > 0) {
      this.chunks.splice(0, drop);
      this.base += drop * SEND_CHUNK_SIZE;
    }
  }
}
