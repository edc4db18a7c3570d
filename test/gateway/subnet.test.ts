/** The gateway's pure parts: subnets and address allocation, HTTP sniffing, the 502 text. */
import { describe, expect, test } from "bun:test";
import { candidates, formatIPv4, parseIPv4, parseSubnet, unusableReason, type Subnet } from "../../src/gateway/subnet.ts";
import { badGatewayResponse, looksLikeHttp } from "../../src/gateway/bridge.ts";
import { GatewayError } from "../../src/gateway/errors.ts";
import { needsAlias } from "../../src/gateway/aliases.ts";

function subnet(text: string): Subnet {
  const r = parseSubnet(text);
  if (!r.ok) throw new Error(r.message);
  return r.subnet;
}

function take(s: Subnet, n: number, taken: Set<string> = new Set()): string[] {
  const out: string[] = [];
  for (const ip of candidates(s, (x) => taken.has(formatIPv4(x)))) {
    out.push(formatIPv4(ip));
    if (out.length === n) break;
  }
  return out;
}

describe("subnets", () => {
  test("parse and print", () => {
    expect(subnet("10.4.0.0/16").text).toBe("10.4.0.0/16");
    expect(subnet(" 127.77.0.0/16 ").text).toBe("127.77.0.0/16");
    expect(parseIPv4("10.4.0.1")).toBe(0x0a040001);
    expect(formatIPv4(0x0a040001)).toBe("10.4.0.1");
    expect(parseIPv4("010.4.0.1")).toBeNull();
    expect(parseIPv4("10.4.0.256")).toBeNull();
  });

  test("malformed subnets say what is wrong", () => {
    const bad: [string, RegExp][] = [
      ["10.4.0.0", /A\.B\.C\.D\/N/],
      ["10.4.0.1/16", /host bits set; the subnet is 10\.4\.0\.0\/16/],
      ["10.4.0.0/33", /prefix length/],
      ["10.4.0.0/31", /prefix length/],
      ["10.0.0.0/4", /prefix length/],
      ["fd00::/64", /not an IPv4 address/],
      ["224.1.0.0/16", /not a usable unicast range/],
      ["0.1.0.0/16", /not a usable unicast range/],
    ];
    for (const [text, message] of bad) {
      const r = parseSubnet(text);
      expect({ text, ok: r.ok }).toEqual({ text, ok: false });
      if (!r.ok) expect(r.message).toMatch(message);
    }
  });

  test("allocation counts up from .1 and skips .0, .255 and taken addresses", () => {
    const s = subnet("10.4.0.0/16");
    expect(take(s, 3)).toEqual(["10.4.0.1", "10.4.0.2", "10.4.0.3"]);
    expect(take(s, 2, new Set(["10.4.0.1", "10.4.0.3"]))).toEqual(["10.4.0.2", "10.4.0.4"]);
    const all = [...candidates(s, () => false)].map(formatIPv4);
    expect(all[253]).toBe("10.4.0.254");
    expect(all[254]).toBe("10.4.1.1"); // 10.4.0.255 and 10.4.1.0 skipped
    expect(all.some((ip) => ip.endsWith(".0") || ip.endsWith(".255"))).toBe(false);
    expect(all.length).toBe(256 * 254);
  });

  test("small subnets: no network or broadcast address; 127.0.0.1 is never handed out", () => {
    expect([...candidates(subnet("192.168.7.0/30"), () => false)].map(formatIPv4)).toEqual(["192.168.7.1", "192.168.7.2"]);
    expect([...candidates(subnet("10.9.9.128/29"), () => false)].map(formatIPv4)).toEqual(["10.9.9.129", "10.9.9.130", "10.9.9.131", "10.9.9.132", "10.9.9.133", "10.9.9.134"]);
    expect(take(subnet("127.0.0.0/8"), 2)).toEqual(["127.0.0.2", "127.0.0.3"]);
  });

  test("explicit addresses are checked", () => {
    const s = subnet("10.4.0.0/16");
    expect(unusableReason(s, parseIPv4("10.4.0.9")!)).toBeNull();
    expect(unusableReason(s, parseIPv4("10.5.0.9")!)).toMatch(/outside/);
    expect(unusableReason(s, parseIPv4("10.4.0.0")!)).toMatch(/network address/);
    expect(unusableReason(s, parseIPv4("10.4.255.255")!)).toMatch(/broadcast/);
    expect(unusableReason(s, parseIPv4("10.4.3.255")!)).toMatch(/\.255/);
  });

  test("which addresses need a loopback alias", () => {
    expect(needsAlias("10.4.0.1", "linux")).toBe(true);
    expect(needsAlias("127.77.0.1", "linux")).toBe(false);
    expect(needsAlias("127.77.0.1", "darwin")).toBe(true);
    expect(needsAlias("127.0.0.1", "darwin")).toBe(false);
  });
});

describe("telling HTTP from other protocols", () => {
  const cases: [string, string][] = [
    ["GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n", "yes"],
    ["POST /a2a HTTP/1.0\r\n", "yes"],
    ["OPTIONS * HTTP/1.1\r\n", "yes"],
    ["GET /api/sta", "maybe"],
    ["GE", "maybe"],
    ["", "maybe"],
    ["hello\n", "no"],
    ["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "no"],
    ["\x16\x03\x01\x02\x00\x01\x00", "no"], // a TLS ClientHello
    ["SSH-2.0-OpenSSH_9.6\r\n", "no"],
    ["GET /x FTP/1.1\r\n", "no"],
  ];
  for (const [bytes, guess] of cases) {
    test(`${JSON.stringify(bytes.slice(0, 24))} -> ${guess}`, () => {
      expect(looksLikeHttp(Buffer.from(bytes, "latin1"))).toBe(guess as any);
    });
  }
});

describe("the 502 answer", () => {
  const agent = { label: "data-analyst (0:0000.0000.0007)", name: "data-analyst" };

  test("says why, with the Pilot code, and is well-formed HTTP", () => {
    const text = badGatewayResponse(new GatewayError("not_found", "no such node"), agent, 80, "GET");
    const [head, body] = text.split("\r\n\r\n");
    expect(head!.split("\r\n")[0]).toBe("HTTP/1.1 502 Bad Gateway");
    expect(head).toContain("X-Pilot-Error: not_found");
    expect(head).toContain("Connection: close");
    expect(head).toContain(`Content-Length: ${Buffer.byteLength(body!)}`);
    expect(body).toContain("data-analyst (0:0000.0000.0007) is not visible to this node");
    expect(body).toContain("[pilot: not_found]");
    expect(body).toContain('hint: ask it for trust: pilot handshake data-analyst "why"');
  });

  test("nothing listening, daemon down, HEAD", () => {
    expect(badGatewayResponse(new GatewayError("connection_refused", "refused"), agent, 8080, "GET")).toContain("nothing listens on Pilot port 8080 of data-analyst");
    expect(badGatewayResponse(new GatewayError("not_running", "gone"), agent, 80, "GET")).toContain("the local Pilot daemon is not running");
    const head = badGatewayResponse(new GatewayError("timeout", "no answer"), agent, 80, "HEAD");
    expect(head.endsWith("\r\n\r\n")).toBe(true);
    expect(head).toMatch(/Content-Length: [1-9]/);
  });
});
