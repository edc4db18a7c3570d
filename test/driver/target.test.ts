/**
 * Pilot addresses in URLs: the dashed spelling `N-NNNN-HHHH-LLLL` round-trips;
 * the spellings URL parsers cannot read as meant are caught with a hint that
 * shows the dashed one (pure functions; the fetch path is in loopback.test.ts).
 */
import { describe, expect, test } from "bun:test";
import { misspelledUrl, parseTarget, urlHostOf } from "../../src/driver/target.ts";
import { addressOf, formatAddress } from "../../src/protocol/address.ts";

const addr = (text: string) => {
  const t = parseTarget(text);
  if (t.kind !== "address") throw new Error(`${text} parsed as a hostname`);
  return formatAddress(t.address);
};

describe("the dashed address", () => {
  test("round-trips, in either case, for any network and node", () => {
    for (const a of [addressOf(0, 4), addressOf(0, 0x0100_0000), addressOf(1, 0xf291_0004), addressOf(65535, 0xffff_fffe)]) {
      const host = urlHostOf(a);
      expect(host).toMatch(/^[0-9]+-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$/);
      expect(addr(host)).toBe(formatAddress(a));
      expect(addr(host.toUpperCase())).toBe(formatAddress(a));
      // What a URL parser keeps of it: the same host.
      expect(new URL(`http://${host}:8080/x`).hostname).toBe(host);
    }
    expect(addr("0-0000-0000-0004")).toBe("0:0000.0000.0004");
  });

  test("a dashed address whose network does not repeat is refused, not read as a hostname", () => {
    expect(() => parseTarget("1-0000-0000-0004")).toThrow(/first hex group must repeat the network/);
  });
});

describe("misspelled URLs", () => {
  test("the colon form: not a URL; the hint shows the dashed form (and the node id on network 0), port and path kept", () => {
    const e = misspelledUrl("http://0:0000.0000.0004/");
    expect(e?.code).toBe("invalid_argument");
    expect(e?.hint).toBe("write the address with dashes: http://0-0000-0000-0004/, or by node id: http://4/ (or use the node's hostname)");
    expect(misspelledUrl("https://0:0000.0000.002A:8443/a?b=1")?.hint).toContain("https://0-0000-0000-002a:8443/a?b=1");
    expect(misspelledUrl("http://1:0001.F291.0004/")?.hint).toBe("write the address with dashes: http://1-0001-f291-0004/ (or use the node's hostname)");
  });

  test("the dotted form when a URL parser would read another node (octal) or refuse it; fine when it reads the same node", () => {
    expect(misspelledUrl("http://0000.0100.0000/")?.message).toContain("IPv4 address 0.64.0.0");
    expect(misspelledUrl("http://0010.0000.0001/")?.hint).toContain("http://16-0010-0000-0001/");
    expect(misspelledUrl("http://0001.F291.0004/")?.message).toContain("refuse");
    expect(misspelledUrl("http://0000.0000.0004/")).toBeNull();
  });

  test("ordinary URLs are left alone", () => {
    for (const u of ["http://agent-a/api", "http://4/", "http://0-0000-0000-0004:80/", "https://data-analyst/.well-known/agent-card.json", "http://127.0.0.1:8080/", "not a url"]) {
      expect({ u, e: misspelledUrl(u) }).toEqual({ u, e: null });
    }
  });
});
