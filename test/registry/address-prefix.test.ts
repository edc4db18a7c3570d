/**
 * The network an address counts as for the registry's per-prefix limits
 * (src/registry/limits.ts addressPrefix): IPv4 /24, IPv6 /56, IPv4-mapped IPv6
 * as the IPv4 address it carries, in any spelling; what does not parse is a
 * prefix of its own (never merged with anyone else's).
 */
import { describe, expect, test } from "bun:test";
import { addressPrefix } from "../../src/registry/limits.ts";

describe("addressPrefix", () => {
  test("IPv4: the /24", () => {
    expect(addressPrefix("192.0.2.1")).toBe("192.0.2.0/24");
    expect(addressPrefix("192.0.2.255")).toBe("192.0.2.0/24");
    expect(addressPrefix("192.0.3.1")).not.toBe(addressPrefix("192.0.2.1"));
    expect(addressPrefix("10.0.0.1")).toBe("10.0.0.0/24");
  });

  test("IPv6: the /56, one site's many addresses counting as one", () => {
    const site = addressPrefix("2001:db8:1:2300::1");
    expect(site).toBe("20010db8000123/56");
    // Anywhere in the same /56: 2001:db8:1:2300:: to 2001:db8:1:23ff:ffff:ffff:ffff:ffff.
    for (const a of ["2001:db8:1:2300::2", "2001:db8:1:23ab:1:2:3:4", "2001:db8:1:23ff:ffff:ffff:ffff:ffff", "2001:0DB8:0001:2300:0000:0000:0000:0009"]) {
      expect(addressPrefix(a)).toBe(site);
    }
    // The neighbouring /56s are other networks.
    expect(addressPrefix("2001:db8:1:2400::1")).toBe("20010db8000124/56");
    expect(addressPrefix("2001:db8:1:22ff::1")).toBe("20010db8000122/56");
    expect(addressPrefix("::1")).toBe("00000000000000/56");
  });

  test("IPv4-mapped IPv6 counts as its IPv4 /24, in every spelling", () => {
    for (const a of ["::ffff:192.0.2.7", "::FFFF:192.0.2.7", "::ffff:c000:207", "0:0:0:0:0:ffff:192.0.2.7", "0000:0000:0000:0000:0000:ffff:c000:0207"]) {
      expect(addressPrefix(a)).toBe("192.0.2.0/24");
    }
    // Not IPv6's all-zero /56: mapped addresses of different IPv4 networks stay apart.
    expect(addressPrefix("::ffff:c633:6401")).toBe("198.51.100.0/24");
    expect(addressPrefix("::ffff:c633:6401")).not.toBe(addressPrefix("::1"));
  });

  test("what does not parse is its own prefix, never another's", () => {
    expect(addressPrefix("garbage")).toBe("?garbage");
    expect(addressPrefix("192.0.2")).toBe("?192.0.2");
    expect(addressPrefix("192.0.2.256")).toBe("?192.0.2.256");
    expect(addressPrefix("")).toBe("?");
    expect(addressPrefix("192.0.2.1")).not.toBe(addressPrefix("?192.0.2.1"));
  });
});
