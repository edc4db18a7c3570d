import { describe, expect, test } from "bun:test";
import { Flag } from "../../src/protocol/packet.ts";
import { drain, events, openedPair, Sink, Source, StreamPair, sha256, testData } from "../support/simulated-link.ts";

describe("a peer that goes silent", () => {
  test("with data outstanding: fails with a timeout error within the user timeout", () => {
    const pair = new StreamPair({ seed: 41, config: { userTimeout: 10_000 } });
    pair.a.apps.push(new Source(testData(3_000_000, 1)));
    pair.b.apps.push(new Sink());
    pair.run(() => pair.ca.stats().bytesAcked > 1_000_000, 10_000);
    const diedAt = pair.now;
    pair.b.deaf = pair.b.mute = true;
    expect(pair.run(() => pair.a.closedEvent !== undefined, 120_000)).toBe(true);
    expect(pair.a.closedEvent!.error?.code).toBe("timeout");
    expect(pair.a.closedEvent!.error?.message).toMatch(/stopped acknowledging/);
    expect(pair.now - diedAt).toBeLessThanOrEqual(10_000 + 50);
    expect(pair.ca.stats().timeouts).toBeGreaterThan(3); // it did retry, with backoff
  });

  test("while idle: keepalive probes find it dead", () => {
    const config = { keepaliveIdle: 5000, keepaliveInterval: 1000, keepaliveCount: 3 };
    const pair = new StreamPair({ seed: 42, config });
    expect(pair.run(() => pair.b.has("connected"), 1000)).toBe(true);
    const diedAt = pair.now;
    pair.b.deaf = pair.b.mute = true;
    expect(pair.run(() => pair.a.closedEvent !== undefined, 60_000)).toBe(true);
    expect(pair.a.closedEvent!.error).toEqual({ code: "timeout", message: "peer did not answer 3 keepalive probes" });
    expect(pair.now - diedAt).toBeLessThanOrEqual(5000 + 3 * 1000 + 10);
    expect(pair.ca.stats().keepalivesSent).toBe(3);
  });

  test("keepalive keeps an idle, healthy connection open (probes are answered)", () => {
    const config = { keepaliveIdle: 5000, keepaliveInterval: 1000, keepaliveCount: 3 };
    const pair = new StreamPair({ seed: 43, config, link: { loss: 0.1 } });
    pair.run(undefined, 120_000);
    expect(pair.ca.state).toBe("established");
    expect(pair.cb.state).toBe("established");
    expect(pair.ca.stats().keepalivesSent).toBeGreaterThan(10);
  });
});

describe("delayed ACKs", () => {
  test("one full segment: ACK after the delay; two: ACK at once; out of order: ACK at once with SACK", () => {
    const { a, b } = openedPair({ configB: { delayedAckTimeout: 40 } });
    a.write(new Uint8Array(10 * 1240));
    const segs = drain(a, 100);
    expect(segs.length).toBe(10);

    b.handleSegment(segs[0]!, 101);
    expect(drain(b, 101)).toEqual([]);
    expect(b.nextTimeout()).toBe(141);
    b.handleTimeout(141);
    expect(drain(b, 141).length).toBe(1);

    b.handleSegment(segs[1]!, 150);
    b.handleSegment(segs[2]!, 150);
    const both = drain(b, 150);
    expect(both.length).toBe(1);
    expect(both[0]!.ack).toBe((segs[3]!.seq) >>> 0);

    b.handleSegment(segs[5]!, 160); // segs[3] and segs[4] missing
    const ooo = drain(b, 160);
    expect(ooo.length).toBe(1);
    expect(ooo[0]!.ack).toBe(segs[3]!.seq);
    expect(ooo[0]!.sack).toEqual([{ start: segs[5]!.seq, end: segs[6]!.seq }]);

    b.handleSegment(segs[3]!, 165); // part of the hole: still out of order, ACK at once
    expect(drain(b, 165).map((s) => s.ack)).toEqual([segs[4]!.seq]);
    b.handleSegment(segs[4]!, 170); // fills the hole: ACK at once
    const filled = drain(b, 170);
    expect(filled.length).toBe(1);
    expect(filled[0]!.ack).toBe(segs[6]!.seq);
    expect(filled[0]!.sack).toEqual([]);
  });

  test("data going the other way carries the ACK (no separate ACK)", () => {
    const { a, b } = openedPair();
    a.write(new Uint8Array(1240));
    b.handleSegment(drain(a, 1)[0]!, 2);
    b.write(new Uint8Array(500));
    const out = drain(b, 3);
    expect(out.length).toBe(1);
    expect(out[0]!.payload.length).toBe(500);
    expect(out[0]!.ack).toBe((1000 + 1 + 1240) >>> 0);
    b.handleTimeout(2 + 40); // when the delayed ACK would have fired: nothing
    expect(drain(b, 42)).toEqual([]);
  });
});

describe("Nagle", () => {
  function smallWrites(noDelay: boolean): number[] {
    const { a, b } = openedPair({ configA: { noDelay } });
    const sizes: number[] = [];
    for (let i = 0; i < 10; i++) {
      a.write(new Uint8Array(100).fill(i));
      for (const s of drain(a, 10 + i)) sizes.push(s.payload.length), b.handleSegment(s, 10 + i);
    }
    // b's delayed ACK fires; a sends what it held back.
    b.handleTimeout(b.nextTimeout());
    for (const s of drain(b, 100)) a.handleSegment(s, 101);
    for (const s of drain(a, 101)) sizes.push(s.payload.length), b.handleSegment(s, 102);
    expect(b.read().length).toBe(1000);
    return sizes;
  }

  test("small writes are coalesced while data is unacknowledged", () => {
    expect(smallWrites(false)).toEqual([100, 900]);
  });

  test("with no-delay every write goes out at once", () => {
    expect(smallWrites(true)).toEqual(Array(10).fill(100));
  });

  test("setNoDelay switches at run time", () => {
    const { a } = openedPair();
    a.write(new Uint8Array(10));
    expect(drain(a, 1).length).toBe(1);
    a.write(new Uint8Array(10));
    expect(drain(a, 2).length).toBe(0);
    a.setNoDelay(true);
    expect(drain(a, 3).length).toBe(1);
  });
});

describe("flow control", () => {
  test("a receiver that stops reading stalls the sender without loss; probes; then everything resumes exactly", () => {
    const cap = 64 * 1024;
    const pair = new StreamPair({ seed: 51, config: { receiveBufferSize: cap, sendBufferSize: 256 * 1024 }, link: { delay: 5 } });
    const data = testData(1_000_000, 5);
    const sink = new Sink();
    sink.paused = true;
    pair.a.apps.push(new Source(data));
    pair.b.apps.push(sink);
    pair.run(undefined, 20_000);
    const a = pair.ca.stats();
    const b = pair.cb.stats();
    expect(b.receiveBuffered).toBeLessThanOrEqual(cap);
    expect(b.receiveBuffered).toBeGreaterThan(cap - 2048);
    expect(a.bytesSent).toBeLessThanOrEqual(cap); // never beyond the window
    expect(a.retransmits).toBe(0);
    expect(a.timeouts).toBe(0);
    expect(a.zeroWindowProbesSent).toBeGreaterThan(3);
    expect(a.zeroWindowProbesSent).toBeLessThan(20); // backed off
    expect(pair.ca.state).toBe("established"); // a live receiver answers probes: no timeout

    sink.paused = false;
    expect(pair.run(() => sink.eof, 60_000)).toBe(true);
    expect(sink.digest()).toBe(sha256(data));
    expect(pair.cb.stats().windowUpdatesSent).toBeGreaterThan(0);
  });

  test("a lost window update is recovered by the next zero-window probe", () => {
    const cap = 16 * 1024;
    const { a, b } = openedPair({ configB: { receiveBufferSize: cap } });
    a.write(new Uint8Array(40_000).fill(3));
    let now = 10;
    // Deliver until b's window closes.
    for (let i = 0; i < 10; i++) {
      for (const s of drain(a, now)) b.handleSegment(s, now + 1);
      for (const s of drain(b, now + 1)) a.handleSegment(s, now + 2);
      b.handleTimeout(b.nextTimeout() <= now + 2 ? now + 2 : now);
      for (const s of drain(b, now + 2)) a.handleSegment(s, now + 2);
      now += 3;
    }
    expect(b.readableBytes).toBeGreaterThan(cap - 2048);
    expect(drain(a, now)).toEqual([]); // stopped by the zero window
    const t = a.nextTimeout();
    expect(t).toBeLessThan(Number.POSITIVE_INFINITY); // the persist timer

    b.read(); // window opens; the update is lost
    expect(drain(b, now).length).toBe(1);
    a.handleTimeout(t);
    const probe = drain(a, t);
    expect(probe.length).toBe(1);
    expect(probe[0]!.payload.length).toBe(0);
    b.handleSegment(probe[0]!, t + 1);
    const answer = drain(b, t + 1);
    expect(answer.length).toBe(1);
    expect(answer[0]!.window).toBeGreaterThan(0);
    a.handleSegment(answer[0]!, t + 2);
    expect(drain(a, t + 2).some((s) => s.payload.length > 0)).toBe(true);
  });

  test("write() takes only what fits in the send buffer and signals writable later", () => {
    const { a, b } = openedPair({ configA: { sendBufferSize: 10_000 } });
    expect(a.write(new Uint8Array(25_000))).toBe(10_000);
    expect(a.writableBytes).toBe(0);
    for (const s of drain(a, 1)) b.handleSegment(s, 2);
    for (const s of drain(b, 2)) a.handleSegment(s, 3);
    expect(events(a).map((e) => e.type)).toContain("writable");
    expect(a.writableBytes).toBeGreaterThan(0);
  });

  test("a zero-length segment with an old sequence number (a probe) is answered with an ACK", () => {
    const { a, b } = openedPair();
    expect(drain(a, 0)).toEqual([]);
    // a's ISN is 1000, so its next sequence number is 1001; a probe uses 1000.
    b.handleSegment({ flags: Flag.ACK, seq: 1000, ack: 5001, window: 4, sack: [], payload: new Uint8Array(0) }, 1);
    const answer = drain(b, 1);
    expect(answer.length).toBe(1);
    expect(answer[0]!.ack).toBe(1001);
  });
});

describe("a path that comes back (pathRestored)", () => {
  test("the backed-off retransmission goes at once, without more backoff, and the transfer completes", () => {
    const data = testData(400_000, 7);
    const pair = new StreamPair({ seed: 44, config: { userTimeout: 300_000, maxRetransmits: 30 } });
    pair.a.apps.push(new Source(data, { shutdown: true }));
    const sink = new Sink();
    pair.b.apps.push(sink);
    pair.run(() => pair.ca.stats().bytesAcked > 100_000, 10_000);
    // The path goes down long enough for the timer to back off eight times (seconds between tries).
    pair.b.deaf = pair.b.mute = true;
    expect(pair.run(() => pair.ca.stats().timeouts >= 8, 120_000)).toBe(true);
    pair.run(undefined, 200);
    pair.b.deaf = pair.b.mute = false;
    const timeouts = pair.ca.stats().timeouts;
    const acked = pair.ca.stats().bytesAcked;
    expect(pair.ca.nextTimeout() - pair.now).toBeGreaterThan(5_000); // without the hint: seconds of silence
    expect(pair.ca.pathRestored(pair.now)).toBe(true);
    expect(pair.ca.pathRestored(pair.now)).toBe(false); // at most once per 250 ms
    const restoredAt = pair.now;
    expect(pair.run(() => pair.ca.stats().bytesAcked > acked, 2_000)).toBe(true);
    expect(pair.now - restoredAt).toBeLessThan(500); // a round trip, not the old deadline
    expect(pair.ca.stats().timeouts).toBe(timeouts); // not counted as a timeout, no further backoff
    expect(pair.run(() => sink.eof, 60_000)).toBe(true);
    expect(sink.digest()).toBe(sha256(data));
  });

  test("nothing to bring forward: no backoff, or nothing outstanding", () => {
    const pair = new StreamPair({ seed: 45 });
    pair.b.apps.push(new Sink());
    expect(pair.run(() => pair.b.has("connected"), 1000)).toBe(true);
    expect(pair.ca.pathRestored(pair.now)).toBe(false); // idle, healthy
    pair.a.apps.push(new Source(testData(50_000, 8)));
    pair.run(() => pair.ca.stats().bytesAcked > 10_000, 5_000);
    expect(pair.ca.pathRestored(pair.now)).toBe(false); // data moving, no backoff
  });
});
