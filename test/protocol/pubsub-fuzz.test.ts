/**
 * Fuzzing the port-1002 codec: decoders survive random and mutated input,
 * return typed errors, and what they accept re-encodes to the same frame.
 * The frame reader survives arbitrary byte streams split anywhere.
 */
import { expect, test } from "bun:test";
import { addressOf } from "../../src/protocol/address.ts";
import { decodeBrokerFrame, decodeClientFrame, encodeBrokerFrame, encodeClientFrame, FRAME_HEADER_SIZE, FrameReader, type BrokerFrame, type ClientFrame } from "../../src/protocol/pubsub.ts";
import { fuzz, randomBytes, seededRandom } from "../support/fuzz.ts";

const CASES = Number(process.env.PILOT_FUZZ_CASES ?? 100_000);
const KNOWN_CODES = new Set(["malformed", "unknown_type", "out_of_range"]);

const bodyOf = (frame: Uint8Array) => frame.subarray(FRAME_HEADER_SIZE);

function clientSeeds(): Uint8Array[] {
  const rand = seededRandom(11);
  const seeds: Uint8Array[] = [];
  const topics = ["a", "sensors.kitchen.temp", "x.*.>", "#", "é.ü", ""];
  for (let i = 0; i < 48; i++) {
    const topic = topics[i % topics.length]!;
    const frames: ClientFrame[] = [
      { type: "subscribe", id: i * 7919, pattern: topic },
      { type: "unsubscribe", id: i },
      { type: "publish", id: (i * 2654435761) >>> 0, topic, data: randomBytes(rand, (i * 37) % 200) },
    ];
    seeds.push(bodyOf(encodeClientFrame(frames[i % 3]!)));
  }
  return seeds;
}

function brokerSeeds(): Uint8Array[] {
  const rand = seededRandom(12);
  const seeds: Uint8Array[] = [];
  for (let i = 0; i < 48; i++) {
    const frames: BrokerFrame[] = [
      { type: "welcome", version: 1, maxEvent: 65536 + i, maxTopic: 256, maxSubscriptions: i },
      { type: "event", seq: i * 1_000_003, time: 1_700_000_000_000 + i, from: addressOf(i % 3, 4 + i), topic: ["a.b", "sensors.x", "é"][i % 3]!, data: randomBytes(rand, (i * 41) % 180) },
      { type: "ack", id: i, count: i * 3, seq: i * 11 },
      { type: "error", id: i % 2, code: ["slow_consumer", "too_large", "x"][i % 3]!, message: ["", "behind", "ça"][i % 3]! },
    ];
    seeds.push(bodyOf(encodeBrokerFrame(frames[i % 4]!)));
  }
  return seeds;
}

function withoutTopicBytes(f: ClientFrame): ClientFrame {
  if (f.type !== "publish") return f;
  const { topicBytes: _, ...rest } = f;
  return rest;
}

test(`decodeClientFrame survives ${CASES} random and mutated inputs; what it accepts re-encodes exactly`, () => {
  let accepted = 0;
  fuzz({ seed: 21, cases: CASES, seeds: clientSeeds(), maxRandomLength: 64 }, (input) => {
    const r = decodeClientFrame(input);
    if (r.ok) {
      accepted++;
      const again = encodeClientFrame(r.value);
      expect(Buffer.from(bodyOf(again)).equals(Buffer.from(input))).toBe(true);
      const twice = decodeClientFrame(bodyOf(again));
      expect(twice.ok && withoutTopicBytes(twice.value)).toEqual(withoutTopicBytes(r.value));
    } else {
      expect(KNOWN_CODES.has(r.error.code)).toBe(true);
      expect(typeof r.error.message).toBe("string");
    }
  });
  expect(accepted).toBeGreaterThan(CASES / 20);
});

test(`decodeBrokerFrame survives ${CASES} random and mutated inputs; what it accepts re-encodes to an equal frame`, () => {
  let accepted = 0;
  fuzz({ seed: 22, cases: CASES, seeds: brokerSeeds(), maxRandomLength: 64 }, (input) => {
    const r = decodeBrokerFrame(input);
    if (r.ok) {
      accepted++;
      const again = decodeBrokerFrame(bodyOf(encodeBrokerFrame(r.value)));
      expect(again).toEqual(r);
    } else {
      expect(KNOWN_CODES.has(r.error.code)).toBe(true);
    }
  });
  expect(accepted).toBeGreaterThan(CASES / 20);
});

test(`FrameReader survives ${CASES / 10} random byte streams cut at random points, never holding more than one frame`, () => {
  const rand = seededRandom(23);
  const max = 300;
  for (let i = 0; i < CASES / 10; i++) {
    const reader = new FrameReader(max);
    // Mostly plausible frames (small lengths), sometimes garbage lengths.
    const parts: Uint8Array[] = [];
    for (let k = 0; k < 1 + Math.floor(rand() * 6); k++) {
      const len = rand() < 0.9 ? Math.floor(rand() * 120) : Math.floor(rand() * 0xffffffff);
      const head = new Uint8Array(4);
      new DataView(head.buffer).setUint32(0, len);
      parts.push(head, randomBytes(rand, Math.min(len, 150)));
    }
    const stream = Buffer.concat(parts);
    let at = 0;
    while (at < stream.length) {
      const n = 1 + Math.floor(rand() * 40);
      const r = reader.push(stream.subarray(at, at + n));
      at += n;
      if (!r.ok) {
        expect(["too_large", "finished"]).toContain(r.error.code);
        break;
      }
      for (const body of r.value) expect(body.length).toBeLessThanOrEqual(max);
    }
  }
});
