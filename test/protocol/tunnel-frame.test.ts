import { describe, expect, test } from "bun:test";
import { addressOf } from "../../src/protocol/address.ts";
import { DATA_FRAME_OVERHEAD, LARGEST_STREAM_MSS, MAX_UDP_PAYLOAD, RELAY_ENVELOPE_RESERVE, STREAM_MSS, streamMssForFrame } from "../../src/protocol/limits.ts";
import { encodePacket, HEADER_SIZE, packet, Protocol } from "../../src/protocol/packet.ts";
import {
  BASE_DATA_FRAME,
  BASE_TUNNEL_PLAINTEXT,
  COOKIE_REPLY_SIZE,
  decodeCookieReply,
  decodeDataFrame,
  decodeInitiation,
  decodeResponse,
  decodeTunnelFrame,
  encodeCookieReply,
  encodeDataFrame,
  encodeInitiation,
  encodeResponse,
  INITIATION_NOISE_SIZE,
  INITIATION_SIZE,
  MAX_DATA_FRAME,
  MAX_TUNNEL_PLAINTEXT,
  MIN_DATA_FRAME,
  RESPONSE_NOISE_SIZE,
  RESPONSE_SIZE,
  type TunnelFrame,
} from "../../src/protocol/tunnel-frame.ts";
import { fuzz, randomBytes, seededRandom } from "../support/fuzz.ts";

const CASES = Number(process.env.PILOT_FUZZ_CASES ?? 100_000);
const rand = seededRandom(42);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("tunnel frame layout", () => {
  test("sizes fit the UDP budget of limits.ts", () => {
    expect(INITIATION_SIZE).toBe(154);
    expect(RESPONSE_SIZE).toBe(76);
    expect(COOKIE_REPLY_SIZE).toBe(76);
    // A cookie reply is never larger than the initiation that draws it: no amplification.
    expect(COOKIE_REPLY_SIZE).toBeLessThan(INITIATION_SIZE);
    expect(MIN_DATA_FRAME).toBe(DATA_FRAME_OVERHEAD);
    expect(BASE_DATA_FRAME).toBe(MAX_UDP_PAYLOAD - RELAY_ENVELOPE_RESERVE);
    expect(BASE_TUNNEL_PLAINTEXT + DATA_FRAME_OVERHEAD + RELAY_ENVELOPE_RESERVE).toBeLessThanOrEqual(MAX_UDP_PAYLOAD);
    // The largest stream segment the transport builds at the base size fits in one base frame.
    expect(HEADER_SIZE + 35 + STREAM_MSS).toBeLessThanOrEqual(BASE_TUNNEL_PLAINTEXT);
    // A discovered path: a segment of streamMssForFrame(size) fits a frame of that size, up to the largest.
    for (const size of [BASE_DATA_FRAME, 1472, 8972, MAX_DATA_FRAME]) {
      expect(DATA_FRAME_OVERHEAD + HEADER_SIZE + 35 + streamMssForFrame(size)).toBeLessThanOrEqual(size);
    }
    expect(streamMssForFrame(MAX_DATA_FRAME)).toBe(LARGEST_STREAM_MSS);
    expect(MAX_DATA_FRAME).toBeLessThanOrEqual(65_507); // one UDP datagram, never more
  });

  test("initiation round-trips; mac1 covers everything before it, mac2 everything before mac2", () => {
    const noise = randomBytes(rand, INITIATION_NOISE_SIZE);
    const mac = randomBytes(rand, 16);
    const mac2 = randomBytes(rand, 16);
    const bytes = encodeInitiation(noise, mac, mac2);
    expect(bytes[0]).toBe(0x01);
    expect(hex(bytes.subarray(1, 4))).toBe("000000");
    const r = decodeInitiation(bytes);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(hex(r.value.noise)).toBe(hex(noise));
    expect(hex(r.value.mac1)).toBe(hex(mac));
    expect(hex(r.value.mac2)).toBe(hex(mac2));
    expect(r.value.macInput.length).toBe(INITIATION_SIZE - 32);
    expect(hex(r.value.mac2Input)).toBe(hex(bytes.subarray(0, INITIATION_SIZE - 16)));
    // Without macs: zeros where they go, the rest identical.
    const bare = encodeInitiation(noise);
    expect(hex(bare).slice(0, -64)).toBe(hex(bytes).slice(0, -64));
    expect(hex(bare.subarray(INITIATION_SIZE - 32))).toBe("00".repeat(32));
  });

  test("cookie reply round-trips: echoed mac1, nonce, sealed cookie", () => {
    const mac1 = randomBytes(rand, 16);
    const nonce = randomBytes(rand, 24);
    const sealed = randomBytes(rand, 32);
    const bytes = encodeCookieReply(mac1, nonce, sealed);
    expect(bytes.length).toBe(COOKIE_REPLY_SIZE);
    expect(hex(bytes.subarray(0, 4))).toBe("03000000");
    const r = decodeTunnelFrame(bytes);
    if (!r.ok || r.value.kind !== "cookie_reply") throw new Error("expected a cookie reply");
    expect(hex(r.value.mac1)).toBe(hex(mac1));
    expect(hex(r.value.nonce)).toBe(hex(nonce));
    expect(hex(r.value.sealedCookie)).toBe(hex(sealed));
    expect(() => encodeCookieReply(mac1, nonce.subarray(1), sealed)).toThrow(RangeError);
    expect(() => encodeCookieReply(mac1, nonce, sealed.subarray(1))).toThrow(RangeError);
  });

  test("response round-trips with its receiver index", () => {
    const noise = randomBytes(rand, RESPONSE_NOISE_SIZE);
    const bytes = encodeResponse(0xdeadbeef, noise, new Uint8Array(16).fill(7));
    expect(hex(bytes.subarray(0, 8))).toBe("02000000deadbeef");
    const r = decodeResponse(bytes);
    expect(r.ok && r.value.receiverIndex).toBe(0xdeadbeef);
    if (r.ok) expect(hex(r.value.noise)).toBe(hex(noise));
  });

  test("data frame header: type, reserved, receiver index, u64 counter", () => {
    const sealed = randomBytes(rand, 16 + 5);
    const bytes = encodeDataFrame(0x01020304, 0x0a0b_0c0d_0e0f, sealed);
    expect(hex(bytes.subarray(0, 16))).toBe("04000000010203040000" + "0a0b0c0d0e0f");
    const r = decodeDataFrame(bytes);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.receiverIndex).toBe(0x01020304);
    expect(r.value.counter).toBe(0x0a0b_0c0d_0e0f);
    expect(hex(r.value.header)).toBe(hex(bytes.subarray(0, 16)));
    expect(hex(r.value.sealed)).toBe(hex(sealed));
  });

  test("a keepalive is a 32-byte data frame; data frames cap at MAX_DATA_FRAME", () => {
    expect(decodeDataFrame(encodeDataFrame(1, 0, new Uint8Array(16))).ok).toBe(true);
    const big = encodeDataFrame(1, 0, new Uint8Array(MAX_DATA_FRAME - 16));
    expect(decodeDataFrame(big).ok).toBe(true);
    const tooBig = new Uint8Array(MAX_DATA_FRAME + 1);
    tooBig.set(big);
    expect(decodeDataFrame(tooBig).ok).toBe(false);
    expect(() => encodeDataFrame(1, 0, new Uint8Array(MAX_DATA_FRAME - 15))).toThrow(RangeError);
  });

  test("exact lengths: one byte more or less is rejected", () => {
    const init = encodeInitiation(new Uint8Array(INITIATION_NOISE_SIZE));
    const resp = encodeResponse(1, new Uint8Array(RESPONSE_NOISE_SIZE));
    const cookie = encodeCookieReply(new Uint8Array(16), new Uint8Array(24), new Uint8Array(32));
    for (const [bytes, decode] of [
      [init, decodeInitiation],
      [resp, decodeResponse],
      [cookie, decodeCookieReply],
    ] as const) {
      expect(decode(bytes.subarray(0, bytes.length - 1)).ok).toBe(false);
      const longer = new Uint8Array(bytes.length + 1);
      longer.set(bytes);
      const r = decode(longer);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.code).toBe("bad_length");
    }
    expect(decodeDataFrame(new Uint8Array([4, 0, 0, 0])).ok).toBe(false);
  });

  test("non-zero reserved bytes are rejected", () => {
    for (const frame of [
      encodeInitiation(new Uint8Array(INITIATION_NOISE_SIZE)),
      encodeResponse(1, new Uint8Array(RESPONSE_NOISE_SIZE)),
      encodeCookieReply(new Uint8Array(16), new Uint8Array(24), new Uint8Array(32)),
      encodeDataFrame(1, 1, new Uint8Array(16)),
    ]) {
      for (const at of [1, 2, 3]) {
        const bad = frame.slice();
        bad[at] = 1;
        const r = decodeTunnelFrame(bad);
        expect(r.ok).toBe(false);
        if (!r.ok) expect(r.error.code).toBe("reserved_nonzero");
      }
    }
  });

  test("counters beyond 2^53 - 1 are rejected rather than rounded", () => {
    const bytes = encodeDataFrame(1, 0, new Uint8Array(16));
    bytes[8] = 0x00;
    bytes[9] = 0x20; // 2^53
    const r = decodeDataFrame(bytes);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe("counter_out_of_range");
    bytes[9] = 0x1f;
    bytes.fill(0xff, 10, 16);
    const max = decodeDataFrame(bytes);
    expect(max.ok && max.value.counter).toBe(Number.MAX_SAFE_INTEGER);
  });

  test("a plaintext Pilot packet is not a tunnel frame", () => {
    const raw = encodePacket(packet({ protocol: Protocol.Datagram, src: addressOf(1, 5), dst: addressOf(1, 6), payload: new Uint8Array(10) }));
    const r = decodeTunnelFrame(raw);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe("unknown_type");
    for (const type of [0x00, 0x03, 0x05, 0x10, 0x1f, 0x30, 0x50, 0xff]) {
      // (0x03 is a cookie reply, but 7 bytes is not one.)
      const d = decodeTunnelFrame(new Uint8Array([type, 0, 0, 0, 1, 2, 3]));
      expect(d.ok).toBe(false);
    }
    expect(decodeTunnelFrame(new Uint8Array(0)).ok).toBe(false);
  });

  test("beacon types 0x20-0x2F pass through undecoded", () => {
    for (const type of [0x20, 0x2f]) {
      const bytes = new Uint8Array([type, 9, 9]);
      const r = decodeTunnelFrame(bytes);
      expect(r.ok).toBe(true);
      if (r.ok && r.value.kind === "beacon") {
        expect(r.value.type).toBe(type);
        expect(r.value.bytes).toBe(bytes);
      } else throw new Error("expected a beacon frame");
    }
  });
});

function reencode(frame: TunnelFrame): Uint8Array {
  switch (frame.kind) {
    case "initiation":
      return encodeInitiation(frame.noise, frame.mac1, frame.mac2);
    case "response":
      return encodeResponse(frame.receiverIndex, frame.noise, frame.mac1);
    case "cookie_reply":
      return encodeCookieReply(frame.mac1, frame.nonce, frame.sealedCookie);
    case "data":
      return encodeDataFrame(frame.receiverIndex, frame.counter, frame.sealed);
    case "beacon":
      return frame.bytes;
  }
}

test(`decodeTunnelFrame survives ${CASES} random and mutated inputs; what it accepts re-encodes exactly`, () => {
  const seeds = [
    encodeInitiation(randomBytes(rand, INITIATION_NOISE_SIZE), randomBytes(rand, 16)),
    encodeInitiation(randomBytes(rand, INITIATION_NOISE_SIZE), randomBytes(rand, 16), randomBytes(rand, 16)),
    encodeCookieReply(randomBytes(rand, 16), randomBytes(rand, 24), randomBytes(rand, 32)),
    encodeResponse(7, randomBytes(rand, RESPONSE_NOISE_SIZE), randomBytes(rand, 16)),
    encodeDataFrame(9, 12345, randomBytes(rand, 16)),
    encodeDataFrame(0xffffffff, 2 ** 40, randomBytes(rand, 1200)),
    encodeDataFrame(3, 0, randomBytes(rand, MAX_DATA_FRAME - 16)),
    new Uint8Array([0x21, 1, 2, 3]),
  ];
  const kinds = new Map<string, number>();
  fuzz({ seed: 9, cases: CASES, seeds, maxRandomLength: 200 }, (input) => {
    // Also force the interesting type bytes onto random input.
    if (input.length > 0 && input[0]! > 0x30) input[0] = [1, 2, 3, 4][input[0]! % 4]!;
    const r = decodeTunnelFrame(input);
    if (r.ok) {
      kinds.set(r.value.kind, (kinds.get(r.value.kind) ?? 0) + 1);
      expect(hex(reencode(r.value))).toBe(hex(input));
    } else {
      expect(r.error.message.length).toBeGreaterThan(0);
    }
  });
  for (const kind of ["initiation", "response", "cookie_reply", "data", "beacon"]) expect(kinds.get(kind) ?? 0).toBeGreaterThan(0);
});
