import { describe, expect, test } from "bun:test";
import { Flag } from "../../src/protocol/packet.ts";
import { StreamConnection } from "../../src/transport/connection.ts";
import { resetFor } from "../../src/transport/segment.ts";
import { drain, events, SimulatedLink, packetCodec, StreamPeer, Sink, Source, testData, sha256 } from "../support/simulated-link.ts";

describe("three-way open", () => {
  test("SYN, SYN|ACK, ACK with the ISNs given; the responder waits for the final ACK", () => {
    const a = StreamConnection.connect({}, 0xdead_beef, 0);
    expect(a.state).toBe("syn-sent");
    const [syn] = drain(a, 0);
    expect(syn!.flags).toBe(Flag.SYN);
    expect(syn!.seq).toBe(0xdead_beef);

    const b = StreamConnection.accept({}, syn!, 0x1234_5678, 1);
    const [synAck] = drain(b, 1);
    expect(synAck!.flags).toBe(Flag.SYN | Flag.ACK);
    expect(synAck!.seq).toBe(0x1234_5678);
    expect(synAck!.ack).toBe(0xdead_bef0);
    expect(b.state).toBe("syn-received");
    expect(events(b)).toEqual([]);

    a.handleSegment(synAck!, 2);
    expect(a.state).toBe("established");
    expect(events(a)).toEqual([{ type: "connected" }]);
    const [ack] = drain(a, 2);
    expect(ack!.flags).toBe(Flag.ACK);
    expect(ack!.seq).toBe(0xdead_bef0);
    expect(ack!.ack).toBe(0x1234_5679);

    expect(b.state).toBe("syn-received");
    b.handleSegment(ack!, 3);
    expect(b.state).toBe("established");
    expect(events(b)).toEqual([{ type: "connected" }]);
    expect(a.stats().srtt).toBe(2);
    expect(b.stats().srtt).toBe(2);
  });

  test("a lost SYN is retransmitted with exponential backoff, then the attempt times out", () => {
    const a = StreamConnection.connect({ connectTimeout: 20_000 }, 1, 0);
    const sentAt: number[] = [];
    let now = 0;
    for (;;) {
      if (drain(a, now).some((s) => s.flags & Flag.SYN)) sentAt.push(now);
      now = a.nextTimeout();
      if (now === Number.POSITIVE_INFINITY) break;
      a.handleTimeout(now);
    }
    expect(sentAt).toEqual([0, 1000, 3000, 7000, 15_000]);
    expect(a.state).toBe("closed");
    expect(a.error?.code).toBe("timeout");
    const last = events(a).at(-1);
    expect(last?.type).toBe("closed");
  });

  test("a repeated SYN is answered with the same SYN|ACK; a lost SYN|ACK is resent", () => {
    const a = StreamConnection.connect({}, 10, 0);
    const [syn] = drain(a, 0);
    const b = StreamConnection.accept({}, syn!, 20, 0);
    const [first] = drain(b, 0); // lost
    b.handleSegment(syn!, 500); // the dialler's SYN again
    const [again] = drain(b, 500);
    expect(again!.seq).toBe(first!.seq);
    expect(again!.ack).toBe(first!.ack);
    // Lost again: b retransmits on its own timer (armed when the first one left).
    const t = b.nextTimeout();
    expect(t).toBe(1000);
    b.handleTimeout(t);
    const resent = drain(b, t);
    expect(resent.map((s) => s.flags)).toEqual([Flag.SYN | Flag.ACK]);
    expect(b.nextTimeout()).toBe(t + 2000); // backed off
    a.handleSegment(resent[0]!, t + 1);
    for (const s of drain(a, t + 1)) b.handleSegment(s, t + 2);
    expect(a.state).toBe("established");
    expect(b.state).toBe("established");
  });

  test("a SYN answered by RST is refused", () => {
    const a = StreamConnection.connect({}, 77, 0);
    const [syn] = drain(a, 0);
    const rst = resetFor(syn!)!;
    expect(rst.flags).toBe(Flag.RST | Flag.ACK);
    a.handleSegment(rst, 1);
    expect(a.state).toBe("closed");
    expect(a.error?.code).toBe("refused");
  });

  test("a RST without a matching ACK does not refuse (RFC 5961)", () => {
    const a = StreamConnection.connect({}, 77, 0);
    drain(a, 0);
    a.handleSegment({ flags: Flag.RST | Flag.ACK, seq: 0, ack: 12345, window: 0, sack: [], payload: new Uint8Array(0) }, 1);
    a.handleSegment({ flags: Flag.RST, seq: 0, ack: 0, window: 0, sack: [], payload: new Uint8Array(0) }, 1);
    expect(a.state).toBe("syn-sent");
  });

  test("simultaneous open: both SYNs cross, both sides establish and exchange data", () => {
    const a = StreamConnection.connect({}, 0xffff_fff0, 0);
    const b = StreamConnection.connect({}, 0x7000_0000, 0);
    const [synA] = drain(a, 0);
    const [synB] = drain(b, 0);
    a.handleSegment(synB!, 1);
    b.handleSegment(synA!, 1);
    expect(a.state).toBe("syn-received");
    expect(b.state).toBe("syn-received");
    const link = new SimulatedLink({ seed: 5, codec: packetCodec, ab: { delay: 1, loss: 0.1 }, start: 1 });
    const pa = new StreamPeer(undefined, a);
    const pb = new StreamPeer(undefined, b);
    link.attach(pa, pb);
    const dataA = testData(100_000, 1);
    const dataB = testData(70_000, 2);
    const sinkA = new Sink();
    const sinkB = new Sink();
    pa.apps.push(new Source(dataA), sinkA);
    pb.apps.push(new Source(dataB), sinkB);
    expect(link.run({ until: () => sinkA.eof && sinkB.eof, deadline: 60_000 })).toBe(true);
    expect(pa.has("connected") && pb.has("connected")).toBe(true);
    expect(sinkB.digest()).toBe(sha256(dataA));
    expect(sinkA.digest()).toBe(sha256(dataB));
  });

  test("accept() only takes a bare SYN", () => {
    expect(() =>
      StreamConnection.accept({}, { flags: Flag.SYN | Flag.ACK, seq: 1, ack: 1, window: 1, sack: [], payload: new Uint8Array(0) }, 1, 0),
    ).toThrow(RangeError);
  });

  test("config is validated", () => {
    expect(() => StreamConnection.connect({ mss: 20_000 }, 1, 0)).toThrow(RangeError);
    expect(() => StreamConnection.connect({ receiveBufferSize: 100 }, 1, 0)).toThrow(RangeError);
    expect(() => StreamConnection.connect({}, -1, 0)).toThrow(RangeError);
  });
});

describe("handshake edge cases", () => {
  test("when the final ACK is lost, the first data segment completes the handshake", () => {
    const a = StreamConnection.connect({}, 1, 0);
    const b = StreamConnection.accept({}, drain(a, 0)[0]!, 2, 0);
    for (const s of drain(b, 0)) a.handleSegment(s, 1);
    drain(a, 1); // the bare ACK is lost
    a.write(new TextEncoder().encode("hello"));
    const data = drain(a, 2);
    expect(data.length).toBe(1);
    b.handleSegment(data[0]!, 3);
    expect(b.state).toBe("established");
    expect(new TextDecoder().decode(b.read())).toBe("hello");
  });

  test("data written before the connection opens is sent once it does", () => {
    const a = StreamConnection.connect({}, 1, 0);
    expect(a.write(new Uint8Array(3000).fill(1))).toBe(3000);
    const [syn] = drain(a, 0);
    expect(syn!.payload.length).toBe(0);
    const b = StreamConnection.accept({}, syn!, 2, 0);
    for (const s of drain(b, 0)) a.handleSegment(s, 1);
    // Two full segments at once; Nagle holds the 520-byte tail until they are acknowledged.
    const out = drain(a, 1);
    expect(out.map((s) => s.payload.length)).toEqual([1240, 1240]);
    for (const s of out) b.handleSegment(s, 2);
    for (const s of drain(b, 2)) a.handleSegment(s, 3);
    for (const s of drain(a, 3)) b.handleSegment(s, 4);
    expect(b.read().length).toBe(3000);
  });
});
