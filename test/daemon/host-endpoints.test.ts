import { expect, test } from "bun:test";
import { isAdvertisableIpv6, registeredEndpoints } from "../../src/daemon/host-endpoints.ts";

const ifaces = [
  { address: "127.0.0.1", family: "IPv4", internal: true },
  { address: "::1", family: "IPv6", internal: true },
  { address: "192.168.1.10", family: "IPv4", internal: false },
  { address: "fe80::1", family: "IPv6", internal: false },
  { address: "fd00:1::10", family: "IPv6", internal: false },
  { address: "2001:db8:1::10", family: "IPv6", internal: false },
  { address: "2001:db8:1::11", family: "IPv6", internal: false },
  { address: "2001:db8:1::12", family: "IPv6", internal: false },
];

test("only global unicast IPv6 is advertised; ULA only when allowed; never link-local, loopback, mapped or junk", () => {
  expect(isAdvertisableIpv6("2001:db8::1", false)).toBe(true);
  expect(isAdvertisableIpv6("3fff::1", false)).toBe(true);
  expect(isAdvertisableIpv6("fd00:1::10", false)).toBe(false);
  expect(isAdvertisableIpv6("fd00:1::10", true)).toBe(true);
  expect(isAdvertisableIpv6("fc00::1", true)).toBe(false);
  for (const bad of ["fe80::1", "::1", "::", "::ffff:192.0.2.1", "ff02::1", "192.0.2.1", "fe80::1%eth0", "2001:db8::zz", ""]) {
    expect(isAdvertisableIpv6(bad, true)).toBe(false);
  }
});

test("an IPv4 wildcard registers exactly what it did before IPv6; a dual-stack one adds at most two IPv6 addresses", () => {
  expect(registeredEndpoints("0.0.0.0", 4000, false, ifaces, true)).toEqual(["0.0.0.0:4000", "192.168.1.10:4000"]);
  expect(registeredEndpoints("::", 4000, true, ifaces, false)).toEqual(["0.0.0.0:4000", "[2001:db8:1::10]:4000", "[2001:db8:1::11]:4000", "192.168.1.10:4000"]);
  expect(registeredEndpoints("::", 4000, true, ifaces.slice(0, 5), true)).toEqual(["0.0.0.0:4000", "[fd00:1::10]:4000", "192.168.1.10:4000"]);
  expect(registeredEndpoints("127.0.0.1", 4000, false, ifaces, true)).toEqual(["127.0.0.1:4000"]);
  expect(registeredEndpoints("::1", 4000, false, ifaces, true)).toEqual(["[::1]:4000"]);
  const many = Array.from({ length: 12 }, (_, i) => ({ address: `10.0.0.${i + 1}`, family: "IPv4", internal: false }));
  const out = registeredEndpoints("::", 5, true, [...many, ...ifaces], false);
  expect(out.length).toBeLessThanOrEqual(8);
  expect(out.filter((e) => e.startsWith("[")).length).toBe(2);
  expect(registeredEndpoints("0.0.0.0", 5, false, many, false).length).toBe(7);
});
