/**
 * The segment size follows the tunnel path (path MTU discovery): a connection
 * already open takes a larger MSS at once, and a smaller one when the path
 * shrinks, re-cutting what it retransmits (retransmissions are byte ranges).
 * Through the real packet codec on the simulated link, byte-exact.
 */
import { describe, expect, test } from "bun:test";
import { LARGEST_STREAM_MSS, STREAM_MSS } from "../../src/protocol/limits.ts";
import { Sink, Source, StreamPair, sha256, testData } from "../support/simulated-link.ts";

describe("segment size changes on an open connection", () => {
  test("a bulk stream opened at the base speeds up to the larger MSS mid-transfer", () => {
    const pair = new StreamPair({ seed: 11, link: { delay: 1 } });
    pair.a.record = true;
    const data = testData(4 << 20, 5);
    const sink = new Sink();
    pair.a.apps.push(new Source(data));
    pair.b.apps.push(sink);
    let raised = false;
    expect(
      pair.run(() => {
        if (!raised && sink.bytes > 256 * 1024) {
          pair.ca.setMss(LARGEST_STREAM_MSS);
          raised = true;
        }
        return sink.eof;
      }, 60_000),
    ).toBe(true);
    expect(sink.digest()).toBe(sha256(data));
    const sizes = pair.a.sent.map((s) => s.payload.length);
    expect(Math.max(...sizes)).toBe(LARGEST_STREAM_MSS);
    expect(sizes.slice(0, 20).every((n) => n <= STREAM_MSS)).toBe(true);
    // Far fewer segments than at the base size.
    expect(sizes.filter((n) => n > 0).length).toBeLessThan((4 << 20) / STREAM_MSS / 4);
  });

  test("the path shrinks mid-transfer (large segments black-holed): after the RTO the MSS drops and the retransmissions are re-cut", () => {
    const pair = new StreamPair({ seed: 12, config: { mss: LARGEST_STREAM_MSS }, link: { delay: 2 } });
    pair.a.record = true;
    const data = testData(4 << 20, 6);
    const sink = new Sink();
    pair.a.apps.push(new Source(data));
    pair.b.apps.push(sink);
    let blackHole = false;
    let lowered = false;
    let lostLarge = 0;
    pair.link.drop = (seg, toB) => {
      if (toB && blackHole && seg.payload.length > STREAM_MSS) {
        lostLarge++;
        return true;
      }
      return false;
    };
    let sentAtChange = 0;
    expect(
      pair.run(() => {
        if (!blackHole && sink.bytes > 1 << 20) blackHole = true;
        // What the data plane does on a stream's RTO at a size above the base (path MTU black hole).
        if (blackHole && !lowered && pair.ca.stats().timeouts > 0) {
          pair.ca.setMss(STREAM_MSS);
          lowered = true;
          sentAtChange = pair.a.sent.length;
        }
        return sink.eof;
      }, 120_000),
    ).toBe(true);
    expect(sink.digest()).toBe(sha256(data));
    expect(lowered).toBe(true);
    expect(lostLarge).toBeGreaterThan(0);
    const after = pair.a.sent.slice(sentAtChange).map((s) => s.payload.length);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every((n) => n <= STREAM_MSS)).toBe(true);
    // Before the change large segments were in use.
    expect(Math.max(...pair.a.sent.slice(0, sentAtChange).map((s) => s.payload.length))).toBe(LARGEST_STREAM_MSS);
  });

  test("a larger MSS on a connection whose window is smaller than one new segment does not stall (the window is floored at two segments)", () => {
    const pair = new StreamPair({ seed: 13, link: { delay: 1 } });
    const data = testData(256 * 1024, 7);
    const sink = new Sink();
    pair.b.apps.push(sink);
    // Open the connection and let it settle with a window of 10 base segments (12,400 bytes).
    expect(pair.run(() => pair.ca.state === "established" && pair.b.conn?.state === "established", 5_000)).toBe(true);
    pair.ca.setMss(LARGEST_STREAM_MSS);
    pair.a.apps.push(new Source(data));
    expect(pair.run(() => sink.eof || sink.bytes >= data.length, 5_000)).toBe(true);
    expect(sink.bytes).toBe(data.length);
  });
});
