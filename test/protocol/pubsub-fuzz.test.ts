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

test(`FrameReader survives ${CASES} random byte streams cut at random points: every frame in order, byte-exact, until an oversized length stops it`, () => {
  const rand = seededRandom(23);
  const max = 300;
  for (let i = 0; i < CASES; i++) {
    const reader = new FrameReader(max);
    // Mostly plausible frames (small lengths, 0 included), sometimes a garbage length; the last one may be cut short.
    const parts: Uint8Array[] = [];
    const frames: Uint8Array[] = [];
    let oversized = false;
    let truncated = false;
    const count = 1 + Math.floor(rand() * 6);
    for (let k = 0; k < count && !oversized; k++) {
      const garbage = rand() >= 0.9;
      const len = garbage ? max + 1 + Math.floor(rand() * (0xffffffff - max - 1)) : Math.floor(rand() * 120);
      const head = new Uint8Array(4);
      new DataView(head.buffer).setUint32(0, len);
      const body = randomBytes(rand, Math.min(len, 150));
      if (garbage) oversized = true;
      else if (k === count - 1 && len > 0 && rand() < 0.2) {
        truncated = true;
        parts.push(head, body.subarray(0, Math.floor(rand() * len)));
        break;
      } else frames.push(body);
      parts.push(head, body);
    }
    const stream = Buffer.concat(parts);
    const got: Uint8Array[] = [];
    let error: string | null = null;
    let at = 0;
    while (at < stream.length) {
      const n = 1 + Math.floor(rand() * 40);
      const r = reader.push(stream.subarray(at, at + n));
      at += n;
      if (!r.ok) {
        error = r.error.code;
        break;
      }
      got.push(...r.value);
    }
    try {
      expect(error).toBe(oversized ? "too_large" : null);
      if (oversized) {
        // Frames completed in the chunk that carried the bad header are not returned: a prefix, in order.
        expect(got.length).toBeLessThanOrEqual(frames.length);
        expect(reader.push(new Uint8Array(1)).ok).toBe(false);
      } else {
        expect(got.length).toBe(frames.length);
        expect(reader.midFrame).toBe(truncated);
      }
      for (let k = 0; k < got.length; k++) expect(Buffer.from(got[k]!).equals(Buffer.from(frames[k]!))).toBe(true);
    } catch (e) {
      throw new Error(`FrameReader case ${i}: ${e}`);
    }
  }
});
