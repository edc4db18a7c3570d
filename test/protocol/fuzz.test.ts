import { expect, test } from "bun:test";
import {
  addressOf,
  crc32,
  decodePacket,
  encodePacket,
  Flag,
  packet,
  parseAddress,
  parsePortList,
  parseSocketAddress,
  Protocol,
  type Packet,
} from "../../src/protocol/index.ts";
import { fuzz, randomBytes, seededRandom } from "../support/fuzz.ts";

const CASES = Number(process.env.PILOT_FUZZ_CASES ?? 100_000);

function samplePackets(): Uint8Array[] {
  const rand = seededRandom(7);
  const seeds: Uint8Array[] = [];
  for (let i = 0; i < 64; i++) {
    const protocol = [Protocol.Stream, Protocol.Datagram, Protocol.Control][i % 3]!;
    const sackCount = protocol === Protocol.Stream ? i % 5 : 0;
    seeds.push(
      encodePacket(
        packet({
          protocol,
          flags: protocol === Protocol.Stream ? i & 0xf : i & Flag.ACK,
          src: addressOf(i, i * 7919),
          dst: addressOf(0, 4 + i),
          srcPort: 49152 + i,
          dstPort: 80,
          seq: (i * 2654435761) >>> 0,
          ack: (i * 40503) >>> 0,
          window: i * 97,
          sack: Array.from({ length: sackCount }, (_, k) => ({ start: k * 100, end: k * 100 + 50 })),
          payload: randomBytes(rand, (i * 37) % 300),
        }),
      ),
    );
  }
  return seeds;
}

test(`decodePacket survives ${CASES} random and mutated inputs, and what it accepts re-encodes exactly`, () => {
  let accepted = 0;
  fuzz({ seed: 1, cases: CASES, seeds: samplePackets(), maxRandomLength: 120 }, (input) => {
    const r = decodePacket(input);
    if (r.ok) {
      accepted++;
      const again = decodePacket(encodePacket(r.value));
      expect(again.ok).toBe(true);
      if (again.ok) expect(again.value).toEqual(r.value as Packet);
    } else {
      expect(typeof r.error.code).toBe("string");
    }
  });
  expect(accepted).toBeGreaterThan(0);
});

/** Rewrites the CRC so that a mutated packet reaches the structural checks behind it. */
function resealed(input: Uint8Array): Uint8Array {
  if (input.length < 34) return input;
  const out = input.slice();
  const view = new DataView(out.buffer);
  view.setUint32(30, 0);
  view.setUint32(30, crc32(out));
  return out;
}

test(`decodePacket's structural checks survive ${CASES} mutated inputs with valid checksums`, () => {
  const codes = new Map<string, number>();
  let accepted = 0;
  fuzz({ seed: 3, cases: CASES, seeds: samplePackets(), maxRandomLength: 120 }, (raw) => {
    const r = decodePacket(resealed(raw));
    if (r.ok) {
      accepted++;
      expect(r.value.payload.length).toBeLessThanOrEqual(65535);
      expect(r.value.sack.length).toBeLessThanOrEqual(4);
    } else {
      codes.set(r.error.code, (codes.get(r.error.code) ?? 0) + 1);
    }
  });
  expect(accepted).toBeGreaterThan(CASES / 20);
  for (const code of ["truncated", "bad_length", "bad_version", "bad_protocol", "bad_options"]) {
    expect(codes.get(code) ?? 0).toBeGreaterThan(0);
  }
});

test(`text parsers survive ${CASES / 4} random strings`, () => {
  const rand = seededRandom(2);
  const alphabet = "0123456789abcdefABCDEFxyzXYZ:.-, +\u0000\u00ff";
  for (let i = 0; i < CASES / 4; i++) {
    let s = "";
    const len = Math.floor(rand() * 24);
    for (let k = 0; k < len; k++) s += alphabet[Math.floor(rand() * alphabet.length)];
    for (const parse of [parseAddress, parseSocketAddress, parsePortList]) {
      const r = parse(s);
      if (!r.ok) expect(r.error.message.length).toBeGreaterThan(0);
    }
  }
});
