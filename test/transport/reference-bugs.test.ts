/**
 * One test per transport bug in the reference implementation (pilot-reference.md
 * §10, items 19-24), named after it, showing this engine does not have it.
 */
import { describe, expect, test } from "bun:test";
import { decodePacket, encodePacket, Flag } from "../../src/protocol/packet.ts";
import { STREAM_MSS } from "../../src/protocol/limits.ts";
import { addressOf } from "../../src/protocol/address.ts";
import { StreamConnection } from "../../src/transport/connection.ts";
import { toPacket, type Segment } from "../../src/transport/segment.ts";
import { drain, events, openedPair, runTransfer, Sink, Source, StreamPair, sha256, testData } from "../support/simulated-link.ts";

const isFin = (s: Segment) => (s.flags & Flag.FIN) !== 0;

describe("reference bug 19: FIN|ACK ping-pong", () => {
  test("after both sides close, a bounded number of packets flows and TIME-WAIT expires", () => {
    const pair = new StreamPair({ seed: 19, config: { timeWait: 3000 } });
    pair.a.record = pair.b.record = true;
    const sinkA = new Sink();
    const sinkB = new Sink();
    pair.a.apps.push(new Source(testData(10_000, 1)), sinkA);
    pair.b.apps.push(new Source(testData(10_000, 2)), sinkB);
    expect(pair.run(() => pair.a.closedEvent !== undefined && pair.b.closedEvent !== undefined, 60_000)).toBe(true);
    const all = [...pair.a.sent, ...pair.b.sent];
    expect(all.filter(isFin).length).toBe(2); // one FIN each, never answered with another FIN
    const firstFin = Math.min(pair.a.sent.findIndex(isFin), pair.b.sent.findIndex(isFin));
    expect(firstFin).toBeGreaterThanOrEqual(0);
    // Whoever closed first waits out TIME-WAIT; nothing is sent during it.
    const closedLast = Math.max(...[pair.a, pair.b].map((p) => p.sent.length));
    expect(closedLast).toBeLessThan(30);
    expect(pair.now).toBeGreaterThanOrEqual(3000);
    expect(pair.now).toBeLessThan(3100);
    expect(pair.a.closedEvent!.error).toBeUndefined();
    expect(pair.b.closedEvent!.error).toBeUndefined();
  });

  test("a FIN|ACK arriving in TIME-WAIT is answered by a plain ACK, not by another FIN", () => {
    const { a, b } = openedPair({ configA: { timeWait: 1000 } });
    a.shutdown();
    for (const s of drain(a, 1)) b.handleSegment(s, 2);
    b.shutdown();
    const finAck = drain(b, 3);
    expect(finAck.map((s) => s.flags)).toEqual([Flag.FIN | Flag.ACK]);
    a.handleSegment(finAck[0]!, 4);
    expect(a.state).toBe("time-wait");
    for (let i = 0; i < 5; i++) {
      a.handleSegment(finAck[0]!, 5 + i);
      expect(drain(a, 5 + i).map((s) => s.flags)).toEqual([Flag.ACK]);
    }
  });
});

describe("reference bug 20: no half-close, FIN not retransmitted", () => {
  test("half-close works and a lost FIN is retransmitted", () => {
    const pair = new StreamPair({ seed: 20, config: { timeWait: 500 } });
    let finsDropped = 0;
    pair.link.drop = (seg, toB) => toB && isFin(seg) && finsDropped++ === 0;
    const up = testData(50_000, 1);
    const down = testData(200_000, 2);
    const sinkA = new Sink();
    const sinkB = new Sink();
    pair.a.apps.push(new Source(up), sinkA); // a closes its side right after its data
    pair.b.apps.push(sinkB);
    const late = new Source(down);
    pair.b.apps.push({ step: (c) => (sinkB.eof ? late.step(c) : undefined) }); // b sends only after a's EOF
    expect(pair.run(() => sinkA.eof && sinkB.eof, 30_000)).toBe(true);
    expect(finsDropped).toBe(2); // the first FIN was dropped; the second got through
    expect(pair.ca.stats().retransmits).toBeGreaterThanOrEqual(1);
    expect(sinkB.digest()).toBe(sha256(up));
    expect(sinkA.digest()).toBe(sha256(down)); // b kept sending after a's FIN: half-close
    expect(pair.now).toBeLessThan(2000); // recovered by retransmission, not an idle timeout
  });

  test("the FIN takes a sequence number: ACK of the FIN is one past the last data byte", () => {
    const { a, b } = openedPair({ issA: 0xffff_ffff });
    a.write(new Uint8Array(10));
    a.shutdown();
    const [seg] = drain(a, 1);
    expect(isFin(seg!)).toBe(true);
    expect(seg!.seq).toBe(0); // ISN 0xffffffff: data starts at 0 after the wrap
    b.handleSegment(seg!, 2);
    expect(drain(b, 2)[0]!.ack).toBe(11); // 10 bytes + FIN
    expect(events(b).map((e) => e.type)).toEqual(["readable", "finished"]);
  });
});

describe("reference bug 21: fast retransmit almost never fires", () => {
  test("fast retransmit fires on SACK-bearing duplicate ACKs before any RTO, also when ACKs ride on data", () => {
    const config = { minRto: 2000, initialRto: 2000 };
    const pair = new StreamPair({ seed: 21, config, link: { delay: 5 } });
    pair.b.record = true;
    let dataSegments = 0;
    let dropped: Segment | undefined;
    pair.link.drop = (seg, toB) => {
      if (!toB || seg.payload.length === 0) return false;
      if (++dataSegments === 30 && !dropped) {
        dropped = seg;
        return true;
      }
      return false;
    };
    const up = testData(500_000, 1);
    const down = testData(500_000, 2);
    const sinkA = new Sink();
    const sinkB = new Sink();
    pair.a.apps.push(new Source(up), sinkA);
    pair.b.apps.push(new Source(down), sinkB);
    expect(pair.run(() => sinkA.eof && sinkB.eof, 30_000)).toBe(true);
    expect(sinkB.digest()).toBe(sha256(up));
    const a = pair.ca.stats();
    expect(a.fastRetransmits).toBe(1);
    expect(a.timeouts).toBe(0);
    expect(a.tailLossProbes).toBe(0);
    expect(a.dupAcksReceived).toBeGreaterThanOrEqual(1);
    // b's duplicate ACKs carried SACK blocks, and some of them carried data too.
    const dupAcks = pair.b.sent.filter((s) => s.ack === dropped!.seq && s.sack.length > 0);
    expect(dupAcks.length).toBeGreaterThanOrEqual(1);
    expect(dupAcks.some((s) => s.payload.length > 0)).toBe(true);
    expect(pair.now).toBeLessThan(1000); // well before the 2 s RTO could have fired
  });
});

describe("reference bug 22: window 0 means unlimited", () => {
  test("window 0 means stop: the sender sends nothing beyond the advertised window", () => {
    const cap = 32 * 1024;
    const pair = new StreamPair({ seed: 22, config: { receiveBufferSize: cap } });
    pair.b.record = true;
    pair.a.record = true;
    const sink = new Sink();
    sink.paused = true;
    pair.a.apps.push(new Source(testData(200_000, 1)));
    pair.b.apps.push(sink);
    pair.run(undefined, 10_000);
    const lastWindow = pair.b.sent.at(-1)!.window;
    expect(lastWindow).toBe(0);
    expect(pair.ca.stats().bytesSent).toBeLessThanOrEqual(cap);
    expect(pair.cb.stats().receiveBuffered).toBeLessThanOrEqual(cap);
    // While the window is zero the sender only probes (no payload).
    const zeroAt = pair.b.sent.findIndex((s) => s.window === 0);
    const sentAfterZero = pair.a.sent.slice(pair.a.sent.length - 5);
    expect(zeroAt).toBeGreaterThan(0);
    expect(sentAfterZero.every((s) => s.payload.length === 0)).toBe(true);
    expect(pair.ca.stats().zeroWindowProbesSent).toBeGreaterThan(0);
  });
});

describe("reference bug 23: in-band SACK", () => {
  test("user data beginning with the bytes 'SACK' is delivered intact through the real codec", () => {
    const route = { src: addressOf(1, 1), dst: addressOf(1, 2), srcPort: 49152, dstPort: 80 };
    const { a, b } = openedPair();
    // The reference's SACK encoding: "SACK", count 1, one block.
    const tricky = new Uint8Array([0x53, 0x41, 0x43, 0x4b, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0x21]);
    a.setNoDelay(true);
    a.write(tricky);
    for (const seg of drain(a, 1)) {
      const wire = encodePacket(toPacket(seg, route));
      const decoded = decodePacket(wire);
      if (!decoded.ok) throw new Error(decoded.error.message);
      b.handleSegment(decoded.value, 2);
    }
    expect(b.read()).toEqual(tricky);
  });

  test("SACK blocks travel in the options block and survive the codec", () => {
    const route = { src: addressOf(1, 1), dst: addressOf(1, 2), srcPort: 49152, dstPort: 80 };
    const { a, b } = openedPair();
    a.write(new Uint8Array(5 * STREAM_MSS).fill(0x53));
    const segs = drain(a, 1);
    b.handleSegment(segs[2]!, 2); // out of order
    const [ack] = drain(b, 2);
    const decoded = decodePacket(encodePacket(toPacket(ack!, route)));
    if (!decoded.ok) throw new Error(decoded.error.message);
    expect(decoded.value.sack).toEqual([{ start: segs[2]!.seq, end: segs[3]!.seq }]);
    expect(decoded.value.payload.length).toBe(0);
  });
});

describe("reference bug 24: small protocol gaps", () => {
  test("wrap-safe out-of-order buffering and SACK: holes straddling 2^32 fill correctly", () => {
    const { a, b } = openedPair({ issA: 0xffff_f000 }); // data crosses 2^32 after ~4 KiB
    const data = testData(20 * STREAM_MSS, 24);
    a.write(data);
    const segs = drain(a, 1);
    expect(segs[0]!.seq > segs[5]!.seq).toBe(true); // the numbers wrapped inside this burst
    // Deliver in a scrambled order with holes on both sides of the wrap.
    const order = [5, 9, 3, 7, 1, 0, 4, 8, 2, 6];
    for (const i of order) {
      b.handleSegment(segs[i]!, 2);
      for (const ack of drain(b, 2)) {
        for (const block of ack.sack) {
          // Every block is a well-formed range of segments b actually holds.
          const start = segs.findIndex((s) => s.seq === block.start);
          expect(start).toBeGreaterThanOrEqual(0);
        }
        a.handleSegment(ack, 3);
      }
    }
    // The rest flows normally.
    for (let t = 4; t < 20; t++) {
      for (const s of drain(a, t)) b.handleSegment(s, t);
      for (const s of drain(b, t)) a.handleSegment(s, t);
    }
    expect(b.read()).toEqual(data);
  });

  test("retransmissions that partially overlap data already held are trimmed and accepted", () => {
    const { a, b } = openedPair({ issA: 0xffff_fe00 });
    const data = testData(3000, 7);
    a.write(data);
    const [first] = drain(a, 1); // bytes 0..1239, positions 1..1240
    const base = first!.seq;
    const seg = (from: number, to: number): Segment => ({
      flags: Flag.ACK,
      seq: (base + from) >>> 0,
      ack: first!.ack,
      window: first!.window,
      sack: [],
      payload: data.subarray(from, to),
    });
    b.handleSegment(seg(0, 1000), 2);
    b.handleSegment(seg(1500, 2500), 2); // out of order
    b.handleSegment(seg(500, 1800), 2); // overlaps both sides
    b.handleSegment(seg(2400, 3000), 2); // overlaps the end of the held piece
    b.handleSegment(seg(0, 3000), 2); // a full duplicate
    expect(b.read()).toEqual(data);
    expect(b.stats().duplicateSegmentsReceived).toBe(1);
  });

  test("cwnd = 1 MSS after an RTO and = ssthresh (deflated) after fast recovery", () => {
    const pair = new StreamPair({ seed: 24, link: { delay: 5, loss: 0.03 } });
    const conn = pair.ca;
    const afterTimeout: number[] = [];
    const recoveryExits: { cwnd: number; ssthresh: number }[] = [];
    const handleTimeout = conn.handleTimeout.bind(conn);
    conn.handleTimeout = (now) => {
      const before = conn.stats().timeouts;
      handleTimeout(now);
      const s = conn.stats();
      if (s.timeouts > before) afterTimeout.push(s.cwnd);
    };
    const handleSegment = conn.handleSegment.bind(conn);
    conn.handleSegment = (seg, now) => {
      const before = conn.stats().recovery;
      handleSegment(seg, now);
      const s = conn.stats();
      if (before === "fast" && s.recovery === "none") recoveryExits.push({ cwnd: s.cwnd, ssthresh: s.ssthresh });
    };
    const sink = new Sink();
    pair.a.apps.push(new Source(testData(2_000_000, 1)));
    pair.b.apps.push(sink);
    // A blackout long enough for the retransmission timer.
    let blackout = false;
    pair.link.drop = () => blackout;
    pair.run(() => conn.stats().bytesAcked > 500_000, 60_000);
    blackout = true;
    pair.run(undefined, 1500);
    blackout = false;
    expect(pair.run(() => sink.eof, 120_000)).toBe(true);
    expect(afterTimeout.length).toBeGreaterThan(0);
    expect(afterTimeout.every((c) => c === STREAM_MSS)).toBe(true);
    expect(recoveryExits.length).toBeGreaterThan(0);
    expect(recoveryExits.every((r) => r.cwnd === r.ssthresh)).toBe(true);
  });

  test("segments never exceed STREAM_MSS, even with SACK blocks", () => {
    const r = new StreamPair({ seed: 25, link: { loss: 0.1 } });
    r.a.record = true;
    const sink = new Sink();
    r.a.apps.push(new Source(testData(500_000, 1)));
    r.b.apps.push(sink);
    r.run(() => sink.eof, 60_000);
    expect(r.a.sent.every((s) => s.payload.length <= STREAM_MSS)).toBe(true);
  });
});

test("StreamConnection never reads a clock or randomness: same inputs, same outputs", () => {
  const run = () => runTransfer({ bytes: 100_000, loss: 0.05, seed: 99, issA: 1, issB: 2 });
  const x = run();
  const y = run();
  expect(x.a).toEqual(y.a);
  expect(x.b).toEqual(y.b);
  expect(StreamConnection.connect({}, 5, 0).pollTransmit(0)!.seq).toBe(5);
});
