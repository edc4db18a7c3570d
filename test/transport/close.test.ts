import { describe, expect, test } from "bun:test";
import { Flag } from "../../src/protocol/packet.ts";
import type { StreamState } from "../../src/transport/connection.ts";
import type { Segment } from "../../src/transport/segment.ts";
import { drain, events, openedPair, Sink, Source, StreamPair, sha256, testData } from "../support/simulated-link.ts";

const EMPTY = new Uint8Array(0);

/** Records each distinct state a connection passes through (sampled after every step). */
function stateLog(): { states: StreamState[]; step(c: { state: StreamState }): void } {
  const states: StreamState[] = [];
  return {
    states,
    step(c) {
      if (states.at(-1) !== c.state) states.push(c.state);
    },
  };
}

describe("closing", () => {
  for (const closer of ["a", "b"] as const) {
    test(`half-close by ${closer}: the other side keeps sending until it closes too`, () => {
      const pair = new StreamPair({ seed: 31, link: { delay: 2, loss: 0.05 }, config: { timeWait: 1000 } });
      const early = testData(300_000, 1);
      const late = testData(500_000, 2);
      const [first, second] = closer === "a" ? [pair.a, pair.b] : [pair.b, pair.a];
      const earlySink = new Sink();
      const lateSink = new Sink();
      // `first` sends a little and shuts down at once; `second` keeps sending long after.
      first.apps.push(new Source(early), lateSink);
      const lateSource = new Source(late, { chunk: 20_000, shutdown: false });
      let writes = 0;
      second.apps.push(earlySink, {
        step(c) {
          if (earlySink.eof && writes++ % 3 === 0) lateSource.step(c); // trickle after EOF
          if (lateSource.done && c.state === "close-wait") c.shutdown();
        },
      });
      const firstLog = stateLog();
      const secondLog = stateLog();
      first.apps.unshift(firstLog);
      second.apps.unshift(secondLog);
      expect(pair.run(() => lateSink.eof && earlySink.eof, 60_000)).toBe(true);
      expect(earlySink.digest()).toBe(sha256(early));
      expect(lateSink.digest()).toBe(sha256(late));
      expect(pair.run(() => first.closedEvent !== undefined && second.closedEvent !== undefined, 60_000)).toBe(true);
      expect(firstLog.states.slice(1)).toEqual(["established", "fin-wait-1", "fin-wait-2", "time-wait", "closed"]);
      expect(secondLog.states.slice(1)).toEqual(["established", "close-wait", "last-ack", "closed"]);
      expect(first.closedEvent!.error).toBeUndefined();
      expect(second.closedEvent!.error).toBeUndefined();
    });
  }

  test("simultaneous close: both FINs cross, both sides pass CLOSING and TIME-WAIT", () => {
    const { a, b } = openedPair({ configA: { timeWait: 500 }, configB: { timeWait: 500 } });
    a.shutdown();
    b.shutdown();
    const finA = drain(a, 10);
    const finB = drain(b, 10);
    expect(finA.map((s) => s.flags)).toEqual([Flag.ACK | Flag.FIN]);
    expect(finB.map((s) => s.flags)).toEqual([Flag.ACK | Flag.FIN]);
    a.handleSegment(finB[0]!, 11);
    b.handleSegment(finA[0]!, 11);
    expect(a.state).toBe("closing");
    expect(b.state).toBe("closing");
    const ackA = drain(a, 11);
    const ackB = drain(b, 11);
    expect(ackA.map((s) => s.flags)).toEqual([Flag.ACK]); // a plain ACK, never FIN|ACK again
    a.handleSegment(ackB[0]!, 12);
    b.handleSegment(ackA[0]!, 12);
    expect(a.state).toBe("time-wait");
    expect(b.state).toBe("time-wait");
    expect(drain(a, 12)).toEqual([]);
    expect(drain(b, 12)).toEqual([]);
    expect(a.nextTimeout()).toBe(512);
    a.handleTimeout(512);
    b.handleTimeout(512);
    expect(a.state).toBe("closed");
    expect(b.state).toBe("closed");
    expect(events(a).map((e) => e.type)).toEqual(["finished", "closed"]);
  });

  test("TIME-WAIT lasts the configured time, re-ACKs a repeated FIN and restarts", () => {
    const { a, b } = openedPair({ configA: { timeWait: 2000 } });
    a.shutdown();
    for (const s of drain(a, 0)) b.handleSegment(s, 1);
    for (const s of drain(b, 1)) a.handleSegment(s, 2); // ACK of a's FIN
    b.shutdown();
    const [finB] = drain(b, 3);
    a.handleSegment(finB!, 4);
    expect(a.state).toBe("time-wait");
    expect(a.nextTimeout()).toBe(2004);
    drain(a, 4); // that ACK is lost; b retransmits its FIN
    b.handleTimeout(b.nextTimeout());
    const [again] = drain(b, 1000);
    expect(again!.flags & Flag.FIN).toBeTruthy();
    a.handleSegment(again!, 1000);
    const reply = drain(a, 1000);
    expect(reply.map((s) => s.flags)).toEqual([Flag.ACK]);
    expect(a.nextTimeout()).toBe(3000);
    b.handleSegment(reply[0]!, 1001);
    expect(b.state).toBe("closed");
    a.handleTimeout(2999);
    expect(a.state).toBe("time-wait");
    a.handleTimeout(3000);
    expect(a.state).toBe("closed");
    expect(a.error).toBeUndefined();
  });

  test("abort sends RST and the peer closes with 'reset'", () => {
    const { a, b } = openedPair();
    a.abort();
    expect(a.state).toBe("closed");
    expect(events(a)).toEqual([{ type: "closed", error: { code: "aborted", message: "connection aborted locally" } }]);
    const out = drain(a, 5);
    expect(out.map((s) => s.flags)).toEqual([Flag.RST | Flag.ACK]);
    b.handleSegment(out[0]!, 6);
    expect(b.state).toBe("closed");
    expect(b.error?.code).toBe("reset");
    expect(b.write(new Uint8Array(10))).toBe(0); // closed by the peer: nothing more is accepted
    expect(b.writableBytes).toBe(0);
  });

  test("write after shutdown is an error; shutdown twice is harmless", () => {
    const { a } = openedPair();
    a.shutdown();
    a.shutdown();
    expect(a.writableBytes).toBe(0);
    expect(() => a.write(new Uint8Array(1))).toThrow(/shut down/);
  });
});

describe("RST acceptance (RFC 5961)", () => {
  function setup() {
    const { a, b } = openedPair({ issA: 0xffff_fff0, issB: 77 });
    a.write(new Uint8Array(100));
    const [data] = drain(a, 1);
    b.handleSegment(data!, 2);
    drain(b, 50);
    const next = (data!.seq + 100) >>> 0; // b's next expected sequence number (wrapped)
    const rst = (seq: number): Segment => ({ flags: Flag.RST, seq: seq >>> 0, ack: 0, window: 0, sack: [], payload: EMPTY });
    return { a, b, next, rst };
  }

  test("exactly at the next expected sequence number: the connection resets", () => {
    const { b, next, rst } = setup();
    b.handleSegment(rst(next), 60);
    expect(b.state).toBe("closed");
    expect(b.error?.code).toBe("reset");
    expect(b.write(new Uint8Array(10))).toBe(0); // closed by the peer: nothing more is accepted
    expect(b.writableBytes).toBe(0);
  });

  test("inside the window but not exact: a challenge ACK, no reset", () => {
    const { b, next, rst } = setup();
    b.handleSegment(rst(next + 5000), 60);
    expect(b.state).toBe("established");
    const out = drain(b, 60);
    expect(out.map((s) => s.flags)).toEqual([Flag.ACK]);
    expect(out[0]!.ack).toBe(next);
  });

  test("outside the window (behind or far ahead): ignored silently", () => {
    const { b, next, rst } = setup();
    b.handleSegment(rst(next - 1), 60);
    b.handleSegment(rst(next + 0x7000_0000), 60);
    expect(b.state).toBe("established");
    expect(drain(b, 60)).toEqual([]);
  });

  test("answers to invalid segments are rate-limited, so confused endpoints cannot ACK each other forever", () => {
    const { b, next } = setup();
    let replies = 0;
    for (let t = 100; t < 300; t += 10) {
      // A pure ACK from behind the window (a probe, or a stale peer), every 10 ms.
      b.handleSegment({ flags: Flag.ACK, seq: (next - 1) >>> 0, ack: 0, window: 4, sack: [], payload: EMPTY }, t);
      replies += drain(b, t).length;
    }
    expect(replies).toBe(2); // one per 100 ms
  });

  test("in TIME-WAIT a RST is ignored (RFC 1337)", () => {
    const { a, b } = openedPair({ configA: { timeWait: 1000 } });
    a.shutdown();
    for (const s of drain(a, 0)) b.handleSegment(s, 1);
    b.shutdown();
    for (const s of drain(b, 1)) a.handleSegment(s, 2);
    expect(a.state).toBe("time-wait");
    const ack = drain(a, 2)[0]!;
    a.handleSegment({ flags: Flag.RST, seq: ack.ack, ack: 0, window: 0, sack: [], payload: EMPTY }, 3);
    expect(a.state).toBe("time-wait");
  });
});
