import { describe, expect, test } from "bun:test";
import { STREAM_MSS } from "../../src/protocol/limits.ts";
import { runTransfer, Sink, Source, StreamPair, sha256, testData } from "../support/simulated-link.ts";

const MiB = 1024 * 1024;

describe("bulk transfer over the simulated link", () => {
  test("lossless: 4 MiB each way, byte-exact, no retransmissions, segments <= MSS", () => {
    const pair = new StreamPair({ seed: 21, link: { delay: 5 } });
    pair.a.record = true;
    const up = testData(4 * MiB, 1);
    const down = testData(4 * MiB, 2);
    const sinkA = new Sink();
    const sinkB = new Sink();
    pair.a.apps.push(new Source(up), sinkA);
    pair.b.apps.push(new Source(down), sinkB);
    expect(pair.run(() => sinkA.eof && sinkB.eof, 60_000)).toBe(true);
    expect(sinkB.digest()).toBe(sha256(up));
    expect(sinkA.digest()).toBe(sha256(down));
    const a = pair.ca.stats();
    expect(a.retransmits).toBe(0);
    expect(a.timeouts).toBe(0);
    expect(Math.max(...pair.a.sent.map((s) => s.payload.length))).toBe(STREAM_MSS);
    // Both directions at once: the window (4 MiB) allows the whole transfer in a few round trips.
    expect(pair.now).toBeLessThan(200);
  });

  test("4 MiB each way with 20 % loss, 5 % duplication and heavy reordering", () => {
    const r = runTransfer({
      bytes: 4 * MiB,
      bytesBack: 4 * MiB,
      loss: 0.2,
      duplicate: 0.05,
      reorder: 0.3,
      jitter: 2,
      delay: 10,
      seed: 1,
      codec: "packet",
    });
    expect(r.intact).toBe(true);
    expect(r.ok).toBe(true);
    for (const s of [r.a, r.b]) {
      expect(s.fastRetransmits).toBeGreaterThan(0);
      expect(s.sackBlocksReceived).toBeGreaterThan(0);
      expect(s.duplicateSegmentsReceived).toBeGreaterThan(0);
      expect(s.outOfOrderSegmentsReceived).toBeGreaterThan(0);
      // Loss is found mostly by SACK, not by the retransmission timer.
      expect(s.fastRetransmits).toBeGreaterThan(2 * s.timeouts);
    }
    expect(r.link.ab.duplicated).toBeGreaterThan(0);
  });

  test("corrupted packets are rejected by the codec (CRC) and repaired by retransmission", () => {
    const r = runTransfer({ bytes: 2 * MiB, bytesBack: MiB, corrupt: 0.05, seed: 3, codec: "packet" });
    expect(r.ok).toBe(true);
    expect(r.link.ab.corrupted).toBeGreaterThan(0);
    expect(r.link.ab.rejected).toBe(r.link.ab.corrupted);
    expect(r.link.ba.rejected).toBe(r.link.ba.corrupted);
    expect(r.a.retransmits).toBeGreaterThan(0);
  });

  test("a bandwidth-limited link with a drop-tail queue: the transfer fills the pipe and finishes", () => {
    const bandwidth = 5_000_000; // bytes per second
    const r = runTransfer({ bytes: 4 * MiB, bandwidth, queueLimit: 64 * 1024, delay: 10, seed: 4 });
    expect(r.ok).toBe(true);
    const floor = ((4 * MiB) / bandwidth) * 1000;
    expect(r.virtualMs).toBeGreaterThan(floor);
    expect(r.virtualMs).toBeLessThan(floor * 1.6); // within 60 % of the line rate, drops included
    expect(r.a.fastRetransmits).toBeGreaterThan(0); // the queue overflowed and recovery handled it
  });

  test("sequence numbers wrap past 2^32 mid-transfer, with loss, reordering and SACK", () => {
    const r = runTransfer({
      bytes: MiB,
      bytesBack: MiB,
      loss: 0.1,
      reorder: 0.2,
      seed: 9,
      issA: 0xffff_ff00,
      issB: 0xfff8_0000, // wraps about 512 KiB in
      codec: "packet",
    });
    expect(r.ok).toBe(true);
    expect(r.a.sackBlocksReceived).toBeGreaterThan(0);
    expect(r.b.sackBlocksReceived).toBeGreaterThan(0);
  });

  test("deterministic: the same seed gives the same run", () => {
    const o = { bytes: 256 * 1024, loss: 0.1, reorder: 0.2, seed: 12 };
    const x = runTransfer(o);
    const y = runTransfer(o);
    expect(x.virtualMs).toBe(y.virtualMs);
    expect(x.a.segmentsSent).toBe(y.a.segmentsSent);
  });
});
