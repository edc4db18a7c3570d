import { describe, expect, test } from "bun:test";
import {
  ADDRESS_ZERO,
  addressOf,
  broadcastAddress,
  formatAddress,
  formatSocketAddress,
  isBroadcastAddress,
  isReservedNode,
  isZeroAddress,
  networkOf,
  nodeOf,
  parseAddress,
  parseSocketAddress,
} from "../../src/protocol/index.ts";

describe("address text form", () => {
  test.each([
    [0, 1, "0:0000.0000.0001"],
    [1, 0xf2910004, "1:0001.F291.0004"],
    [23, 1, "23:0017.0000.0001"],
    [0, 0x2a, "0:0000.0000.002A"],
    [65535, 0xffffffff, "65535:FFFF.FFFF.FFFF"],
  ])("{%d, %d} prints as %s and parses back", (network, node, text) => {
    const a = addressOf(network, node);
    expect(formatAddress(a)).toBe(text);
    const parsed = parseAddress(text);
    expect(parsed.ok && parsed.value).toBe(a);
    expect(networkOf(a)).toBe(network);
    expect(nodeOf(a)).toBe(node);
  });

  test("hex input is case-insensitive, output uppercase; leading zeros in the network are accepted", () => {
    const p = parseAddress("1:0001.f291.000a");
    expect(p.ok && formatAddress(p.value)).toBe("1:0001.F291.000A");
    const q = parseAddress("007:0007.0000.0001");
    expect(q.ok && formatAddress(q.value)).toBe("7:0007.0000.0001");
  });

  test.each([
    "",
    "0",
    "0:0000",
    "0:0000.0000",
    "0:0000.0000.0000.0000",
    "0:000.0000.0000",
    "0:0000.000.0000",
    "99999:0000.0000.0000",
    "0:ZZZZ.0000.0000",
    "1:0000.0000.0001",
    "1:00A3.F291.0004",
    "-1:FFFF.0000.0000",
    "+1:0001.0000.0000",
    " 0:0000.0000.0001",
    "0:0000.0000.0001 ",
    "0:0x00.0000.0001",
    "0:0000.0000.+001",
    "0:0000..0000",
    "123456:0000.0000.0000",
  ])("rejects %p with a typed error", (text) => {
    const r = parseAddress(text);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe("invalid_address");
      expect(r.error.message.length).toBeGreaterThan(0);
    }
  });

  test("special addresses", () => {
    expect(formatAddress(ADDRESS_ZERO)).toBe("0:0000.0000.0000");
    expect(isZeroAddress(ADDRESS_ZERO)).toBe(true);
    expect(formatAddress(broadcastAddress(0))).toBe("0:0000.FFFF.FFFF");
    expect(formatAddress(broadcastAddress(5))).toBe("5:0005.FFFF.FFFF");
    expect(isBroadcastAddress(broadcastAddress(5))).toBe(true);
    for (const node of [0, 1, 2, 3, 0xffffffff]) expect(isReservedNode(node)).toBe(true);
    expect(isReservedNode(4)).toBe(false);
  });

  test("addressOf rejects out-of-range parts", () => {
    expect(() => addressOf(65536, 0)).toThrow(RangeError);
    expect(() => addressOf(0, 2 ** 32)).toThrow(RangeError);
    expect(() => addressOf(-1, 0)).toThrow(RangeError);
    expect(() => addressOf(0, 1.5)).toThrow(RangeError);
  });
});

describe("socket addresses", () => {
  test("round trip, split on the last colon", () => {
    const r = parseSocketAddress("1:0001.F291.0004:1000");
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.value.port).toBe(1000);
      expect(formatSocketAddress(r.value)).toBe("1:0001.F291.0004:1000");
    }
  });

  test.each(["0:0000.0000.0001", "0:0000.0000.0001:", "0:0000.0000.0001:65536", "0:0000.0000.0001:-1", "0:0000.0000.0001:8o", "x:80"])(
    "rejects %p",
    (text) => {
      expect(parseSocketAddress(text).ok).toBe(false);
    },
  );
});
