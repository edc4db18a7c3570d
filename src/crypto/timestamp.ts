/**
 * Handshake timestamps (replay protection for initiations, as in WireGuard).
 * 12 bytes: u64 seconds since the Unix epoch, then u32 nanoseconds, both
 * big-endian, so byte order is time order. Each sender's timestamps strictly
 * increase: within a process the clock never repeats or steps back, and
 * across restarts they follow the wall clock. A responder accepts an
 * initiation only if its timestamp is greater than the last one it accepted
 * from that peer.
 *
 *   new TimestampClock(wallClockMs = Date.now).next(): Uint8Array
 *   compareTimestamps(a, b): -1 | 0 | 1
 *   timestampToMs(ts): number
 */
export const TIMESTAMP_SIZE = 12;

const NS_PER_MS = 1_000_000n;
const NS_PER_S = 1_000_000_000n;

export class TimestampClock {
  private last = -1n;

  constructor(private readonly wallClockMs: () => number = Date.now) {}

  next(): Uint8Array {
    const ms = this.wallClockMs();
    const whole = Math.floor(ms);
    let ns = BigInt(whole) * NS_PER_MS + BigInt(Math.floor((ms - whole) * 1e6));
    if (ns <= this.last) ns = this.last + 1n;
    this.last = ns;
    const out = new Uint8Array(TIMESTAMP_SIZE);
    const view = new DataView(out.buffer);
    view.setBigUint64(0, ns / NS_PER_S);
    view.setUint32(8, Number(ns % NS_PER_S));
    return out;
  }
}

export function compareTimestamps(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

export function timestampToMs(ts: Uint8Array): number {
  const view = new DataView(ts.buffer, ts.byteOffset, ts.byteLength);
  return Number(view.getBigUint64(0)) * 1000 + view.getUint32(8) / 1e6;
}
