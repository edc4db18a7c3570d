import { describe, expect, test } from "bun:test";
import { isEphemeralPort, parsePort, parsePortList, portRange, WellKnownPort } from "../../src/protocol/index.ts";

describe("ports", () => {
  test("ranges", () => {
    expect(portRange(0)).toBe("well-known");
    expect(portRange(1023)).toBe("well-known");
    expect(portRange(1024)).toBe("registered");
    expect(portRange(49151)).toBe("registered");
    expect(portRange(49152)).toBe("ephemeral");
    expect(portRange(65535)).toBe("ephemeral");
    expect(isEphemeralPort(49151)).toBe(false);
    expect(isEphemeralPort(49152)).toBe(true);
  });

  test("well-known ports", () => {
    expect(WellKnownPort).toMatchObject({ Ping: 0, Echo: 7, Http: 80, Secure: 443, Handshake: 444, StdIO: 1000, DataExchange: 1001, EventStream: 1002 });
  });

  test("parsePort accepts 0-65535 decimals only", () => {
    expect(parsePort("80")).toEqual({ ok: true, value: 80 });
    expect(parsePort("65535")).toEqual({ ok: true, value: 65535 });
    for (const bad of ["", "65536", "-1", "1e3", "0x50", " 80", "99999999"]) expect(parsePort(bad).ok).toBe(false);
  });

  test("parsePortList handles lists and ranges, dedupes and sorts", () => {
    expect(parsePortList("443,80,8000-8002,80")).toEqual({ ok: true, value: [80, 443, 8000, 8001, 8002] });
    expect(parsePortList("80,").ok).toBe(false);
    expect(parsePortList("90-80").ok).toBe(false);
    expect(parsePortList("0-65535").ok).toBe(false);
    expect(parsePortList("0-65535", 70000).ok).toBe(true);
  });
});
