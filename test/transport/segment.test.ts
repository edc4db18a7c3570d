import { describe, expect, test } from "bun:test";
import { addressOf } from "../../src/protocol/address.ts";
import { decodePacket, encodePacket, Flag, Protocol } from "../../src/protocol/packet.ts";
import { describeSegment, resetFor, segmentLength, toPacket, type Segment } from "../../src/transport/segment.ts";

const seg = (flags: number, seq: number, ack: number, len = 0): Segment => ({
  flags,
  seq,
  ack,
  window: 7,
  sack: [],
  payload: new Uint8Array(len),
});

describe("segments", () => {
  test("SYN and FIN each take one sequence number", () => {
    expect(segmentLength(seg(Flag.SYN, 0, 0))).toBe(1);
    expect(segmentLength(seg(Flag.ACK | Flag.FIN, 0, 0, 10))).toBe(11);
    expect(segmentLength(seg(Flag.ACK, 0, 0, 10))).toBe(10);
  });

  test("resetFor follows RFC 9293: RST seq=ACK for an ACK, RST|ACK ack=seq+len otherwise, never a RST for a RST", () => {
    expect(resetFor(seg(Flag.ACK, 10, 0x1234, 5))).toMatchObject({ flags: Flag.RST, seq: 0x1234 });
    expect(resetFor(seg(Flag.SYN, 0xffff_ffff, 0))).toMatchObject({ flags: Flag.RST | Flag.ACK, seq: 0, ack: 0 });
    expect(resetFor(seg(Flag.RST, 1, 1))).toBeUndefined();
  });

  test("toPacket adds the route; a decoded packet is usable as a segment", () => {
    const route = { src: addressOf(1, 2), dst: addressOf(1, 3), srcPort: 49200, dstPort: 7 };
    const s: Segment = { ...seg(Flag.ACK, 5, 6, 3), sack: [{ start: 9, end: 20 }] };
    const p = toPacket(s, route);
    expect(p.protocol).toBe(Protocol.Stream);
    const back = decodePacket(encodePacket(p));
    if (!back.ok) throw new Error(back.error.message);
    const asSegment: Segment = back.value;
    expect(asSegment.seq).toBe(5);
    expect(asSegment.sack).toEqual([{ start: 9, end: 20 }]);
    expect(describeSegment(asSegment)).toBe("ACK seq=5 ack=6 win=7 len=3 sack=9-20");
  });
});
