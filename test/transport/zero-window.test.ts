/**
 * The zero-window timeout (StreamConfig.zeroWindowTimeout): a sender whose peer
 * keeps its window closed that long while data waits fails the connection,
 * giving back its buffers, and tells the peer why (a RST whose one-byte payload
 * is ResetReason.WindowClosed), so the side that was not reading gets a clear
 * error instead of a bare reset. Simulated link, virtual time.
 */
import { describe, expect, test } from "bun:test";
import { Sink, Source, StreamPair, testData } from "../support/simulated-link.ts";

describe("zero-window timeout", () => {
  test("fails the sender after the bound, and the peer that did not read learns why", () => {
    const pair = new StreamPair({ seed: 3, link: { delay: 5 }, configA: { zeroWindowTimeout: 4000 } });
    const sink = new Sink({ hash: false });
    sink.paused = true;
    pair.a.apps.push(new Source(testData(4 * 1024 * 1024, 9)));
    pair.b.apps.push(sink);
    pair.a.record = true;
    expect(pair.run(() => pair.a.closedEvent !== undefined, 30_000)).toBe(true);
    const a = pair.a.closedEvent!.error!;
    expect(a.code).toBe("timeout");
    expect(a.message).toMatch(/kept its receive window closed for [0-9]+ s \(it is not reading\)/);
    expect(pair.ca.stats().zeroWindowProbesSent).toBeGreaterThan(0);
    // Closed about 4 s after the window shut, not at once and not never.
    expect(pair.now).toBeGreaterThan(4000);
    expect(pair.now).toBeLessThan(8000);
    const rst = pair.a.sent.at(-1)!;
    expect(rst.payload).toEqual(Uint8Array.of(3));
    pair.run(() => pair.b.closedEvent !== undefined, 1000);
    const b = pair.b.closedEvent?.error;
    expect(b?.code).toBe("reset");
    expect(b?.message).toBe("the peer ended the connection: this side kept its receive window closed too long (the application was not reading)");
  });

  test("a reader that reads again before the bound keeps its connection", () => {
    const pair = new StreamPair({ seed: 4, link: { delay: 5 }, configA: { zeroWindowTimeout: 4000 } });
    const sink = new Sink({ hash: false });
    sink.paused = true;
    pair.a.apps.push(new Source(testData(1024 * 1024, 9)));
    pair.b.apps.push(sink);
    pair.run(undefined, 3000);
    sink.paused = false;
    expect(pair.run(() => sink.eof, 30_000)).toBe(true);
    expect(pair.a.closedEvent?.error).toBeUndefined();
    expect(sink.bytes).toBe(1024 * 1024);
  });
});
