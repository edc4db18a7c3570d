import { describe, expect, test } from "bun:test";
import { addressOf } from "../../src/protocol/address.ts";
import { MAX_DATAGRAM_PAYLOAD } from "../../src/protocol/limits.ts";
import { decodePacket, encodePacket, Flag, Protocol } from "../../src/protocol/packet.ts";
import { buildDatagram, parseDatagram } from "../../src/transport/datagram.ts";

const from = { address: addressOf(1, 0x0a0b0c0d), port: 50_000 };
const to = { address: addressOf(1, 0x01020304), port: 9000 };

describe("datagrams", () => {
  test("build -> encode -> decode -> parse round-trips, up to the size limit", () => {
    for (const size of [0, 1, 1000, MAX_DATAGRAM_PAYLOAD]) {
      const payload = new Uint8Array(size).map((_, i) => i);
      const built = buildDatagram(from, to, payload);
      if (!built.ok) throw new Error(built.error.message);
      expect(built.value.protocol).toBe(Protocol.Datagram);
      const decoded = decodePacket(encodePacket(built.value));
      if (!decoded.ok) throw new Error(decoded.error.message);
      const parsed = parseDatagram(decoded.value);
      if (!parsed.ok) throw new Error(parsed.error.message);
      expect(parsed.value.from).toEqual(from);
      expect(parsed.value.to).toEqual(to);
      expect(parsed.value.payload).toEqual(payload);
    }
  });

  test("a payload over MAX_DATAGRAM_PAYLOAD is refused with a clear reason", () => {
    const r = buildDatagram(from, to, new Uint8Array(MAX_DATAGRAM_PAYLOAD + 1));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe("datagram_too_large");
  });

  test("bad ports are refused", () => {
    const r = buildDatagram({ ...from, port: 70_000 }, to, new Uint8Array(1));
    expect(r.ok).toBe(false);
  });

  test("parse rejects stream packets, flags and oversize payloads", () => {
    const base = buildDatagram(from, to, new Uint8Array(4));
    if (!base.ok) throw new Error("unreachable");
    expect(parseDatagram({ ...base.value, protocol: Protocol.Stream }).ok).toBe(false);
    expect(parseDatagram({ ...base.value, flags: Flag.ACK }).ok).toBe(false);
    expect(parseDatagram({ ...base.value, payload: new Uint8Array(MAX_DATAGRAM_PAYLOAD + 1) }).ok).toBe(false);
  });
});
