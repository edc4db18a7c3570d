import { describe, expect, test } from "bun:test";
import {
  addressOf,
  decodePacket,
  encodePacket,
  encodedSize,
  Flag,
  HEADER_SIZE,
  packet,
  Protocol,
  type Packet,
} from "../../src/protocol/index.ts";

/** An independent bitwise CRC-32 (IEEE), to check the native one. */
function referenceCrc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));
}

/** Appends the checksum the spec describes: CRC-32 over header (checksum zeroed) + payload. */
function withChecksum(headerWithoutCrc: Uint8Array, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + payload.length);
  out.set(headerWithoutCrc);
  out.set(payload, HEADER_SIZE);
  new DataView(out.buffer).setUint32(30, referenceCrc32(out));
  return out;
}

const A1 = addressOf(0, 1);
const A2 = addressOf(0, 2);

describe("the v0.5 spec's wire examples, byte for byte", () => {
  test("SYN from 0:0000.0000.0001 port 49152 to 0:0000.0000.0002 port 1000", () => {
    const expected = withChecksum(
      hex(`11 01 0000  0000 00000001  0000 00000002  C000 03E8  00000000 00000000  0200`),
    );
    const bytes = encodePacket(
      packet({ protocol: Protocol.Stream, flags: Flag.SYN, src: A1, dst: A2, srcPort: 49152, dstPort: 1000, window: 512 }),
    );
    expect(bytes.length).toBe(34);
    expect(bytes[0]).toBe(0x11);
    expect(bytes[1]).toBe(0x01);
    expect(Buffer.from(bytes).toString("hex")).toBe(Buffer.from(expected).toString("hex"));
    const decoded = decodePacket(expected);
    expect(decoded.ok).toBe(true);
    if (decoded.ok) {
      expect(decoded.value).toMatchObject({ flags: Flag.SYN, protocol: Protocol.Stream, src: A1, dst: A2, srcPort: 49152, dstPort: 1000, seq: 0, ack: 0, window: 512 });
    }
  });

  test('ACK data packet carrying "hello" is 39 bytes', () => {
    const payload = new TextEncoder().encode("hello");
    const expected = withChecksum(
      hex(`12 01 0005  0000 00000001  0000 00000002  C000 03E8  00000001 00000001  01F6`),
      payload,
    );
    const bytes = encodePacket(
      packet({ protocol: Protocol.Stream, flags: Flag.ACK, src: A1, dst: A2, srcPort: 49152, dstPort: 1000, seq: 1, ack: 1, window: 502, payload }),
    );
    expect(bytes.length).toBe(39);
    expect(bytes[0]).toBe(0x12);
    expect(Buffer.from(bytes).toString("hex")).toBe(Buffer.from(expected).toString("hex"));
    const decoded = decodePacket(expected);
    expect(decoded.ok && new TextDecoder().decode(decoded.value.payload)).toBe("hello");
  });
});

describe("packet codec", () => {
  const sample: Packet = packet({
    protocol: Protocol.Stream,
    flags: Flag.ACK,
    src: addressOf(7, 0xdeadbeef),
    dst: addressOf(65535, 0xffffffff),
    srcPort: 65535,
    dstPort: 0,
    seq: 0xffffffff,
    ack: 0x80000000,
    window: 0xffff,
    payload: new Uint8Array([1, 2, 3]),
  });

  test("round trip keeps every field", () => {
    const d = decodePacket(encodePacket(sample));
    expect(d.ok && d.value).toEqual(sample);
  });

  test("encodes into a caller's buffer at an offset", () => {
    const out = new Uint8Array(100).fill(0xaa);
    const view = encodePacket(sample, out, 10);
    expect(view.byteOffset).toBe(10);
    expect(out[9]).toBe(0xaa);
    expect(out[10 + encodedSize(sample)]).toBe(0xaa);
    expect(decodePacket(view).ok).toBe(true);
  });

  test("SACK blocks travel in an options block under protocol 0x04, never in the payload", () => {
    const p = packet({
      protocol: Protocol.Stream,
      flags: Flag.ACK,
      src: A1,
      dst: A2,
      ack: 100,
      sack: [
        { start: 200, end: 300 },
        { start: 0xfffffff0, end: 16 },
      ],
      payload: new TextEncoder().encode("data"),
    });
    const bytes = encodePacket(p);
    expect(bytes[1]).toBe(Protocol.StreamWithOptions);
    expect(bytes.length).toBe(HEADER_SIZE + 1 + 2 + 16 + 4);
    const d = decodePacket(bytes);
    expect(d.ok && d.value).toEqual(p);
  });

  test('user data that starts with "SACK" is just data', () => {
    const payload = new Uint8Array([0x53, 0x41, 0x43, 0x4b, 1, 0, 0, 0, 1, 0, 0, 0, 2]);
    const bytes = encodePacket(packet({ protocol: Protocol.Stream, flags: Flag.ACK, src: A1, dst: A2, payload }));
    expect(bytes[1]).toBe(Protocol.Stream);
    const d = decodePacket(bytes);
    expect(d.ok && [...d.value.payload]).toEqual([...payload]);
    expect(d.ok && d.value.sack).toEqual([]);
  });

  test("unknown options are skipped by their length", () => {
    const bytes = encodePacket(packet({ protocol: Protocol.Stream, flags: Flag.ACK, src: A1, dst: A2, sack: [{ start: 1, end: 2 }], payload: new Uint8Array([9]) }));
    // Rewrite the option kind to an unknown one; re-checksum.
    bytes[HEADER_SIZE + 1] = 0x7e;
    new DataView(bytes.buffer, bytes.byteOffset).setUint32(30, 0);
    new DataView(bytes.buffer, bytes.byteOffset).setUint32(30, referenceCrc32(bytes));
    const d = decodePacket(bytes);
    expect(d.ok && d.value.sack).toEqual([]);
    expect(d.ok && [...d.value.payload]).toEqual([9]);
  });

  test("a 65535-byte payload is the maximum", () => {
    const big = packet({ protocol: Protocol.Datagram, src: A1, dst: A2, payload: new Uint8Array(65535) });
    expect(decodePacket(encodePacket(big)).ok).toBe(true);
    expect(() => encodePacket({ ...big, payload: new Uint8Array(65536) })).toThrow(RangeError);
  });

  const reject = (name: string, bytes: Uint8Array, code: string) =>
    test(`rejects ${name} as ${code}`, () => {
      const r = decodePacket(bytes);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.code).toBe(code);
    });

  const good = encodePacket(sample);
  reject("an empty buffer", new Uint8Array(0), "truncated");
  reject("a 33-byte header", good.subarray(0, 33), "truncated");
  reject("a missing payload byte", good.subarray(0, good.length - 1), "bad_length");
  reject("a trailing byte", Uint8Array.from([...good, 0]), "bad_length");
  reject("a flipped payload bit", (() => { const b = good.slice(); b[b.length - 1]! ^= 1; return b; })(), "bad_checksum");
  reject("a flipped header bit", (() => { const b = good.slice(); b[20]! ^= 0x80; return b; })(), "bad_checksum");
  reject("version 2", (() => { const b = good.slice(); b[0] = 0x22; return b; })(), "bad_version");
  reject("protocol 9", withChecksum(hex(`12 09 0000 0000 00000001 0000 00000002 0000 0000 00000000 00000000 0000`)), "bad_protocol");
  reject("SYN on a datagram", withChecksum(hex(`11 02 0000 0000 00000001 0000 00000002 0000 0000 00000000 00000000 0000`)), "bad_flags");
  reject("an options block longer than the payload", withChecksum(hex(`12 04 0001 0000 00000001 0000 00000002 0000 0000 00000000 00000000 0000`), hex("05")), "bad_options");
  reject("a SACK option with 5 blocks", withChecksum(hex(`12 04 002B 0000 00000001 0000 00000002 0000 0000 00000000 00000000 0000`), hex("2A 01 28" + "00".repeat(40))), "bad_options");
  reject("a SACK option of 7 bytes", withChecksum(hex(`12 04 000A 0000 00000001 0000 00000002 0000 0000 00000000 00000000 0000`), hex("09 01 07" + "00".repeat(7))), "bad_options");
});
