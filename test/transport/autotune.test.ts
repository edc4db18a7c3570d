/**
 * Receive autotuning (src/transport/connection.ts, `autotuneReceive`): a stream's
 * receive buffer starts small (initialReceiveBuffer, 64 KiB) and grows with the
 * bandwidth-delay product of its path while the application keeps reading, as far
 * as its BufferAllocator allows; it does not grow for a link that does not need it,
 * nor at all while the application does not read. Simulated link, virtual time.
 */
import { describe, expect, test } from "bun:test";
import type { BufferAllocator } from "../../src/transport/buffer-allocator.ts";
import { DEFAULT_STREAM_CONFIG } from "../../src/transport/config.ts";
import type { StreamConnection } from "../../src/transport/connection.ts";
import { Sink, Source, StreamPair, testData, type LinkProfile } from "../support/simulated-link.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const INITIAL = DEFAULT_STREAM_CONFIG.initialReceiveBuffer;
const MAX = DEFAULT_STREAM_CONFIG.receiveBufferSize;

/** Sends `bytes` from a to b over `link` (both ways) and reports b's largest receive buffer and the goodput. */
function transfer(link: LinkProfile, bytes: number, allocB?: BufferAllocator) {
  const pair = new StreamPair({ seed: 5, link, allocB });
  const sink = new Sink({ hash: false });
  let largest = 0;
  pair.a.apps.push(new Source(testData(bytes, 1)));
  pair.b.apps.push(sink, { step: (c: StreamConnection) => (largest = Math.max(largest, c.stats().receiveBufferCap)) });
  const done = pair.run(() => sink.eof, 120_000);
  return { done, largest, growths: pair.cb.stats().receiveBufferGrowths, rate: (bytes * 1000) / pair.now };
}

describe("receive autotuning", () => {
  test("grows to the bandwidth-delay product of a long fat path, and the path runs near its rate", () => {
    const rate = 12.5e6; // 100 Mbit/s
    const rtt = 40;
    const bdp = (rate * rtt) / 1000; // 500 kB, far above the initial 64 KiB
    const r = transfer({ delay: rtt / 2, bandwidth: rate }, 16 * MiB);
    console.log(`BDP ${bdp / 1000} kB: largest receive buffer ${(r.largest / KiB).toFixed(0)} KiB after ${r.growths} growths, ${(r.rate / 1e6).toFixed(1)} MB/s`);
    expect(r.done).toBe(true);
    expect(r.largest).toBeGreaterThanOrEqual(bdp);
    expect(r.largest).toBeLessThanOrEqual(MAX);
    // With 64 KiB it would be capped at 64 KiB per 40 ms = 1.6 MB/s.
    expect(r.rate).toBeGreaterThan(0.6 * rate);
  });

  test("grows with the bandwidth-delay product: a short path needs (and gets) far less than a long one", () => {
    const rate = 12.5e6;
    const short = transfer({ delay: 1, bandwidth: rate }, 8 * MiB); // BDP 25 kB
    const long = transfer({ delay: 20, bandwidth: rate }, 8 * MiB); // BDP 500 kB
    console.log(`largest receive buffer: BDP 25 kB ${(short.largest / KiB).toFixed(0)} KiB, BDP 500 kB ${(long.largest / KiB).toFixed(0)} KiB`);
    expect(short.done && long.done).toBe(true);
    expect(short.rate).toBeGreaterThan(0.8 * rate); // the short path is not held back
    expect(short.largest).toBeLessThanOrEqual(MAX / 4); // 1 MiB (before the window-dependent RTT sample was a minimum: 1.7 MB)
    expect(long.largest).toBeGreaterThan(2 * short.largest);
  });

  test("an application that does not read never makes it grow; once it reads, it grows", () => {
    const pair = new StreamPair({ seed: 7, link: { delay: 20, bandwidth: 12.5e6 } });
    const sink = new Sink({ hash: false });
    sink.paused = true;
    pair.a.apps.push(new Source(testData(16 * MiB, 2)));
    pair.b.apps.push(sink);
    pair.run(undefined, 10_000);
    const held = pair.cb.stats();
    expect(held.receiveBufferGrowths).toBe(0);
    expect(held.receiveBufferCap).toBe(INITIAL);
    expect(held.receiveBuffered).toBeLessThanOrEqual(INITIAL);
    sink.paused = false;
    pair.run(() => sink.eof, 60_000);
    expect(sink.eof).toBe(true);
    expect(pair.cb.stats().receiveBufferGrowths).toBeGreaterThan(0);
  });

  test("grows only as far as its allocator grants", () => {
    let granted = 0;
    const room = 256 * KiB;
    const alloc: BufferAllocator = {
      grow: (want, atLeast = 0) => {
        const n = Math.max(atLeast, Math.min(want, room - granted));
        granted += n;
        return n;
      },
      release: (n) => (granted -= n),
    };
    const r = transfer({ delay: 20, bandwidth: 12.5e6 }, 4 * MiB, alloc);
    expect(r.done).toBe(true);
    // The allocator holds both buffers (send and receive) of b; the receive buffer gets what is left.
    expect(r.largest).toBeLessThanOrEqual(room);
    expect(r.largest).toBeGreaterThan(INITIAL);
  });
});
