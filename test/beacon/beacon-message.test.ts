import { describe, expect, test } from "bun:test";
import {
  BEACON_SIGNATURE_SIZE,
  decodeBeaconMessage,
  DISCOVER_REPLY_V4_SIZE,
  DISCOVER_REPLY_V6_SIZE,
  DISCOVER_SIZE,
  discoverReplyBodyOf,
  encodeDiscover,
  encodeDiscoverReply,
  encodeDiscoverReplyBody,
  formatIp,
  appendSignature,
  encodeBeaconMessage,
  encodeChallenge,
  encodeNotRegistered,
  encodePunchBody,
  encodePunchProbe,
  encodePunchRequest,
  encodeRegisterAckBody,
  encodeRegisterBody,
  encodeRelay,
  encodeRelayDeliver,
  CHALLENGE_SIZE,
  PUNCH_REQUEST_SIZE,
  PUNCH_V4_SIZE,
  PUNCH_V6_SIZE,
  REGISTER_ACK_V4_SIZE,
  REGISTER_ACK_V6_SIZE,
  REGISTER_SIZE,
  RELAY_HEADER_SIZE,
  isBeaconDatagram,
  parseIp,
  type BeaconMessage,
} from "../../src/protocol/beacon-message.ts";
import { fuzz, randomBytes, seededRandom } from "../support/fuzz.ts";

const CASES = Number(process.env.PILOT_FUZZ_CASES ?? 100_000);
const nonce = new Uint8Array(16).map((_, i) => i + 1);
const sig = new Uint8Array(BEACON_SIGNATURE_SIZE).fill(0xab);

function reply(ip: string, port: number): Uint8Array {
  return encodeDiscoverReply(encodeDiscoverReplyBody({ nonce, ip, port }), sig);
}

describe("beacon messages", () => {
  test("discover is padded to the largest reply, so replies never amplify", () => {
    const d = encodeDiscover(nonce);
    expect(d.length).toBe(DISCOVER_SIZE);
    expect(DISCOVER_SIZE).toBeGreaterThanOrEqual(DISCOVER_REPLY_V6_SIZE);
    expect(decodeBeaconMessage(d)).toEqual({ ok: true, value: { type: "discover", nonce } });
  });

  test("discover_reply round-trips IPv4 and IPv6 with exact lengths", () => {
    const v4 = reply("127.0.0.1", 40123);
    expect(v4.length).toBe(DISCOVER_REPLY_V4_SIZE);
    expect(decodeBeaconMessage(v4)).toEqual({ ok: true, value: { type: "discover_reply", nonce, ip: "127.0.0.1", port: 40123, signature: sig } });
    const v6 = reply("2001:db8::1", 1);
    expect(v6.length).toBe(DISCOVER_REPLY_V6_SIZE);
    const d = decodeBeaconMessage(v6);
    expect(d.ok && d.value.type === "discover_reply" && d.value.ip).toBe("2001:db8::1");
    expect(discoverReplyBodyOf(v4).length).toBe(DISCOVER_REPLY_V4_SIZE - BEACON_SIGNATURE_SIZE);
  });

  test("wrong lengths, padding, families and types are refused with a code", () => {
    const d = encodeDiscover(nonce);
    const codeOf = (b: Uint8Array) => {
      const r = decodeBeaconMessage(b);
      return r.ok ? "ok" : r.error.code;
    };
    expect(codeOf(d.subarray(0, 99))).toBe("bad_length");
    expect(codeOf(new Uint8Array([...d, 0]))).toBe("bad_length");
    const padded = d.slice();
    padded[50] = 1;
    expect(codeOf(padded)).toBe("bad_padding");
    const v4 = reply("10.0.0.1", 5);
    expect(codeOf(v4.subarray(0, v4.length - 1))).toBe("bad_length");
    const fam = v4.slice();
    fam[1] = 5;
    expect(codeOf(fam)).toBe("bad_family");
    const six = v4.slice();
    six[1] = 6; // claims IPv6 but has the IPv4 length
    expect(codeOf(six)).toBe("bad_length");
    expect(codeOf(new Uint8Array([0x2f]))).toBe("unknown_type");
    expect(codeOf(new Uint8Array([0x01, 2, 3]))).toBe("not_beacon");
    expect(codeOf(new Uint8Array(0))).toBe("truncated");
  });

  test("the beacon's type range does not overlap the tunnel's", () => {
    for (let t = 0; t < 256; t++) expect(isBeaconDatagram(new Uint8Array([t]))).toBe(t >= 0x20 && t <= 0x2f);
    expect(isBeaconDatagram(new Uint8Array(0))).toBe(false);
  });

  test("punching and relay messages round-trip with exact lengths; requests are never smaller than what they draw", () => {
    const token = new Uint8Array(16).fill(7);
    const reg = appendSignature(encodeRegisterBody({ node: 0xf2910004, timestamp: 1_763_800_000_123, nonce, token }), sig);
    expect(reg.length).toBe(REGISTER_SIZE);
    const r = decodeBeaconMessage(reg);
    expect(r.ok && r.value).toMatchObject({ type: "register", node: 0xf2910004, timestamp: 1_763_800_000_123 });
    const ch = encodeChallenge(nonce, token);
    expect(ch.length).toBe(CHALLENGE_SIZE);
    const ack4 = appendSignature(encodeRegisterAckBody({ ip: "203.0.113.7", port: 40123, node: 9, ttlMs: 60_000, nonce }), sig);
    const ack6 = appendSignature(encodeRegisterAckBody({ ip: "2001:db8::7", port: 40123, node: 9, ttlMs: 60_000, nonce }), sig);
    expect([ack4.length, ack6.length]).toEqual([REGISTER_ACK_V4_SIZE, REGISTER_ACK_V6_SIZE]);
    const a = decodeBeaconMessage(ack6);
    expect(a.ok && a.value).toMatchObject({ type: "register_ack", ip: "2001:db8::7", port: 40123, node: 9, ttlMs: 60_000 });
    // A register answers with a challenge or an ack, never more bytes than it came with.
    expect(Math.max(CHALLENGE_SIZE, REGISTER_ACK_V6_SIZE)).toBeLessThanOrEqual(REGISTER_SIZE);
    const req = encodePunchRequest({ node: 4, target: 5, nonce });
    expect(req.length).toBe(PUNCH_REQUEST_SIZE);
    expect(PUNCH_V6_SIZE).toBeLessThanOrEqual(PUNCH_REQUEST_SIZE);
    const p4 = appendSignature(encodePunchBody({ ip: "198.51.100.3", port: 7, to: 4, peer: 5, timestamp: 2 ** 50, nonce }), sig);
    expect(p4.length).toBe(PUNCH_V4_SIZE);
    const p = decodeBeaconMessage(p4);
    expect(p.ok && p.value).toMatchObject({ type: "punch", ip: "198.51.100.3", port: 7, to: 4, peer: 5, timestamp: 2 ** 50 });
    const frame = new Uint8Array(1360).fill(4);
    const relay = encodeRelay(77, frame);
    expect(relay.length).toBe(1360 + RELAY_HEADER_SIZE);
    expect(relay.length).toBeLessThanOrEqual(1400); // fits the tunnel's UDP budget (limits.ts)
    const d = decodeBeaconMessage(encodeRelayDeliver(78, frame));
    expect(d.ok && d.value.type === "relay_deliver" && d.value.node).toBe(78);
    for (const m of [reg, ch, ack4, ack6, req, p4, relay, encodePunchProbe({ from: 1, to: 2, nonce: nonce.subarray(0, 8) }), encodeNotRegistered()]) {
      const back = decodeBeaconMessage(m);
      expect(back.ok).toBe(true);
      if (back.ok) expect(Buffer.compare(encodeBeaconMessage(back.value), m)).toBe(0);
    }
  });

  test("relay envelopes refuse frames outside the tunnel's sizes, and reserved bytes must be zero", () => {
    const codeOf = (b: Uint8Array) => {
      const r = decodeBeaconMessage(b);
      return r.ok ? "ok" : r.error.code;
    };
    expect(codeOf(encodeRelay(1, new Uint8Array(32)).subarray(0, 39))).toBe("bad_length");
    expect(codeOf(new Uint8Array(8 + 1361).fill(0).map((_, i) => (i === 0 ? 0x27 : 0)))).toBe("bad_length");
    const bad = encodeRelay(1, new Uint8Array(40));
    bad[2] = 1;
    expect(codeOf(bad)).toBe("bad_padding");
    const req = encodePunchRequest({ node: 4, target: 5, nonce });
    req[req.length - 1] = 1;
    expect(codeOf(req)).toBe("bad_padding");
    expect(() => encodeRelay(1, new Uint8Array(31))).toThrow(RangeError);
    expect(() => encodeRelay(1, new Uint8Array(1361))).toThrow(RangeError);
  });

  test("encoders refuse bad input", () => {
    expect(() => encodeDiscover(new Uint8Array(15))).toThrow(RangeError);
    expect(() => encodeDiscoverReplyBody({ nonce, ip: "localhost", port: 1 })).toThrow(RangeError);
    expect(() => encodeDiscoverReplyBody({ nonce, ip: "1.2.3.4", port: 70000 })).toThrow(RangeError);
    expect(() => encodeDiscoverReply(new Uint8Array(24), new Uint8Array(10))).toThrow(RangeError);
  });
});

describe("IP literals", () => {
  test.each([
    ["0.0.0.0", "0.0.0.0"],
    ["255.255.255.255", "255.255.255.255"],
    ["::", "::"],
    ["::1", "::1"],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["fe80::", "fe80::"],
    ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
    ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"],
  ])("%s formats as %s", (input, formatted) => {
    const r = parseIp(input);
    expect(r.ok).toBe(true);
    if (r.ok) expect(formatIp(r.value)).toBe(formatted);
  });

  test.each(["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1::2::3", ":::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::", "fe80::1%eth0", "localhost", "12345::", "::1.2.3"])(
    "%p is refused",
    (input) => {
      expect(parseIp(input).ok).toBe(false);
    },
  );
});

function seeds(): Uint8Array[] {
  const rand = seededRandom(11);
  const out: Uint8Array[] = [];
  for (let i = 0; i < 32; i++) {
    const n = randomBytes(rand, 16);
    out.push(encodeDiscover(n));
    const ip = i % 2 === 0 ? `${i}.${(i * 7) % 256}.1.${i}` : `2001:db8::${i.toString(16)}`;
    out.push(encodeDiscoverReply(encodeDiscoverReplyBody({ nonce: n, ip, port: (i * 977) % 65536 }), randomBytes(rand, 64)));
    const sig = randomBytes(rand, 64);
    out.push(appendSignature(encodeRegisterBody({ node: i * 1001, timestamp: 1_763_800_000_000 + i, nonce: n, token: randomBytes(rand, 16) }), sig));
    out.push(encodeChallenge(n, randomBytes(rand, 16)));
    out.push(appendSignature(encodeRegisterAckBody({ ip, port: i * 31, node: i, ttlMs: 60_000, nonce: n }), sig));
    out.push(encodePunchRequest({ node: i, target: i + 1, nonce: n }));
    out.push(appendSignature(encodePunchBody({ ip, port: i * 17, to: i, peer: i + 2, timestamp: 1_763_800_000_000 - i, nonce: n }), sig));
    out.push(encodeRelay(i, randomBytes(rand, 32 + i * 40)));
    out.push(encodeRelayDeliver(i, randomBytes(rand, 32 + i * 41)));
    out.push(encodePunchProbe({ from: i, to: i * 3, nonce: randomBytes(rand, 8) }));
    out.push(encodeNotRegistered());
  }
  return out;
}

test(`decodeBeaconMessage survives ${CASES} random and mutated inputs, and what it accepts re-encodes exactly`, () => {
  let accepted = 0;
  const codes = new Set<string>();
  fuzz({ seed: 5, cases: CASES, seeds: seeds(), maxRandomLength: 128 }, (input) => {
    const r = decodeBeaconMessage(input);
    if (!r.ok) {
      codes.add(r.error.code);
      expect(r.error.message.length).toBeGreaterThan(0);
      return;
    }
    accepted++;
    const m: BeaconMessage = r.value;
    expect(Buffer.compare(encodeBeaconMessage(m), input)).toBe(0);
  });
  expect(accepted).toBeGreaterThan(CASES / 20);
  for (const code of ["bad_length", "bad_padding", "bad_family", "not_beacon", "unknown_type"]) expect(codes.has(code)).toBe(true);
});
