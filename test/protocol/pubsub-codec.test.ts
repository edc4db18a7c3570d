/**
 * The port-1002 codec (src/protocol/pubsub.ts): exact layouts, round trips,
 * typed errors on bad input, and framing split anywhere.
 */
import { describe, expect, test } from "bun:test";
import { addressOf } from "../../src/protocol/address.ts";
import {
  decodeBrokerFrame,
  decodeClientFrame,
  encodeBrokerFrame,
  encodeClientFrame,
  encodeEventFrame,
  FRAME_HEADER_SIZE,
  FrameReader,
  MAX_ERROR_MESSAGE,
  type BrokerFrame,
  type ClientFrame,
} from "../../src/protocol/pubsub.ts";

const body = (frame: Uint8Array) => {
  expect(new DataView(frame.buffer, frame.byteOffset).getUint32(0)).toBe(frame.length - FRAME_HEADER_SIZE);
  return frame.subarray(FRAME_HEADER_SIZE);
};
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("client frames", () => {
  test("exact layouts", () => {
    expect(hex(encodeClientFrame({ type: "subscribe", id: 7, pattern: "a.>" }))).toBe("0000000a" + "01" + "00000007" + "0003" + hex(Buffer.from("a.>")));
    expect(hex(encodeClientFrame({ type: "unsubscribe", id: 0x01020304 }))).toBe("00000005" + "02" + "01020304");
    expect(hex(encodeClientFrame({ type: "publish", id: 1, topic: "t.x", data: new Uint8Array([9, 8]) }))).toBe("0000000c" + "03" + "00000001" + "0003" + hex(Buffer.from("t.x")) + "0908");
  });

  test("round trips; a publish also carries its topic's bytes as received", () => {
    const frames: ClientFrame[] = [
      { type: "subscribe", id: 0, pattern: "sensors.*.temp" },
      { type: "subscribe", id: 0xffffffff, pattern: "" },
      { type: "unsubscribe", id: 42 },
      { type: "publish", id: 3, topic: "a", data: new Uint8Array(0) },
      { type: "publish", id: 4, topic: "a.b", data: new Uint8Array(70_000).fill(1) },
    ];
    for (const f of frames) {
      const r = decodeClientFrame(body(encodeClientFrame(f)));
      expect(r.ok).toBe(true);
      if (!r.ok) continue;
      const { topicBytes, ...rest } = r.value as any;
      expect(rest).toEqual(f);
      if (f.type === "publish") expect(Buffer.from(topicBytes).toString()).toBe(f.topic);
    }
  });

  test("bad input is a typed error, never an exception", () => {
    const cases: [string, string][] = [
      ["", "malformed"],
      ["01000000", "malformed"],
      ["0100000001", "malformed"], // no topic length
      ["01000000010005616263", "malformed"], // topic cut short
      ["0100000001000161ff", "malformed"], // bytes after a subscribe's pattern
      ["010000000100016", "malformed"],
      ["0300000001000180", "malformed"], // invalid UTF-8 topic
      ["020000000100", "malformed"], // unsubscribe too long
      ["0300000001ffff", "malformed"], // topic field longer than allowed
      ["8100000001", "unknown_type"],
      ["ff00000000", "unknown_type"],
    ];
    for (const [h, code] of cases) {
      const r = decodeClientFrame(Buffer.from(h, "hex"));
      expect({ h, ok: r.ok }).toEqual({ h, ok: false });
      if (!r.ok) expect({ h, code: r.error.code }).toEqual({ h, code });
    }
  });

  test("encoders refuse what no frame can carry (a programming error)", () => {
    expect(() => encodeClientFrame({ type: "unsubscribe", id: -1 })).toThrow(RangeError);
    expect(() => encodeClientFrame({ type: "subscribe", id: 1, pattern: "x".repeat(2000) })).toThrow(RangeError);
  });
});

describe("broker frames", () => {
  const from = addressOf(1, 0x00a0_00b0);

  test("exact layouts", () => {
    expect(hex(encodeBrokerFrame({ type: "welcome", version: 1, maxEvent: 65536, maxTopic: 256, maxSubscriptions: 64 }))).toBe("0000000a" + "81" + "01" + "00010000" + "0100" + "0040");
    expect(hex(encodeEventFrame(2 ** 40 + 5, 1_700_000_000_000, from, Buffer.from("a.b"), new Uint8Array([1])))).toBe(
      "0000001d" + "82" + "0000010000000005" + "0000018bcfe56800" + "0001" + "00a000b0" + "0003" + hex(Buffer.from("a.b")) + "01",
    );
    expect(hex(encodeBrokerFrame({ type: "ack", id: 9, count: 3, seq: 77 }))).toBe("00000011" + "83" + "00000009" + "00000003" + "000000000000004d");
    expect(hex(encodeBrokerFrame({ type: "error", id: 0, code: "slow_consumer", message: "behind" }))).toBe("00000019" + "84" + "00000000" + "0d" + hex(Buffer.from("slow_consumer")) + hex(Buffer.from("behind")));
  });

  test("round trips", () => {
    const frames: BrokerFrame[] = [
      { type: "welcome", version: 1, maxEvent: 1, maxTopic: 256, maxSubscriptions: 65535 },
      { type: "event", seq: Number.MAX_SAFE_INTEGER, time: 0, from, topic: "x.y.z", data: new Uint8Array([0, 255]) },
      { type: "ack", id: 0xffffffff, count: 0, seq: 0 },
      { type: "error", id: 5, code: "too_large", message: "an event of 70000 bytes is larger than 65536 — ça alors" },
    ];
    for (const f of frames) expect(decodeBrokerFrame(body(encodeBrokerFrame(f)))).toEqual({ ok: true, value: f });
  });

  test("a welcome from a later version may carry more fields; they are ignored", () => {
    const b = Buffer.concat([body(encodeBrokerFrame({ type: "welcome", version: 2, maxEvent: 10, maxTopic: 20, maxSubscriptions: 30 })), Buffer.from("later")]);
    expect(decodeBrokerFrame(b)).toEqual({ ok: true, value: { type: "welcome", version: 2, maxEvent: 10, maxTopic: 20, maxSubscriptions: 30 } });
  });

  test("long error messages are cut on a character boundary; bad codes and sizes are refused", () => {
    const f = decodeBrokerFrame(body(encodeBrokerFrame({ type: "error", id: 1, code: "x", message: "é".repeat(MAX_ERROR_MESSAGE) })));
    expect(f.ok).toBe(true);
    if (f.ok && f.value.type === "error") {
      expect(Buffer.byteLength(f.value.message)).toBeLessThanOrEqual(MAX_ERROR_MESSAGE);
      expect(f.value.message).toBe("é".repeat(MAX_ERROR_MESSAGE / 2));
    }
    expect(() => encodeBrokerFrame({ type: "error", id: 1, code: "Bad Code", message: "" })).toThrow(RangeError);
    for (const [h, code] of [
      ["", "malformed"],
      ["8101", "malformed"],
      ["82" + "00".repeat(20), "malformed"],
      ["82" + "ffffffffffffffff" + "00".repeat(20), "out_of_range"],
      ["83" + "00".repeat(15), "malformed"],
      ["83" + "00".repeat(8) + "ffffffffffffffff", "out_of_range"],
      ["84" + "00000001" + "00", "malformed"],
      ["84" + "00000001" + "01" + "41", "malformed"], // upper-case code
      ["84" + "00000001" + "21" + "61".repeat(33), "malformed"], // code longer than 32
      ["84" + "00000001" + "01" + "61" + "ff", "malformed"], // message not UTF-8
      ["01", "unknown_type"],
    ] as const) {
      const r = decodeBrokerFrame(Buffer.from(h, "hex"));
      expect({ h, ok: r.ok }).toEqual({ h, ok: false });
      if (!r.ok) expect({ h, code: r.error.code }).toEqual({ h, code });
    }
  });
});

describe("FrameReader", () => {
  test("splits frames cut at every possible point, including empty frames", () => {
    const frames = [encodeClientFrame({ type: "unsubscribe", id: 1 }), new Uint8Array([0, 0, 0, 0]), encodeClientFrame({ type: "publish", id: 2, topic: "a", data: new Uint8Array(300).fill(7) })];
    const all = Buffer.concat(frames);
    for (let cut1 = 0; cut1 <= all.length; cut1 += 7) {
      for (let cut2 = cut1; cut2 <= all.length; cut2 += 13) {
        const reader = new FrameReader(1000);
        const got: Uint8Array[] = [];
        for (const part of [all.subarray(0, cut1), all.subarray(cut1, cut2), all.subarray(cut2)]) {
          const r = reader.push(part);
          expect(r.ok).toBe(true);
          if (r.ok) got.push(...r.value);
        }
        expect(got.map(hex)).toEqual(frames.map((f) => hex(f.subarray(4))));
        expect(reader.midFrame).toBe(false);
      }
    }
  });

  test("a declared length over the limit is refused before any body is held, and the reader stays finished", () => {
    const reader = new FrameReader(100);
    const r = reader.push(new Uint8Array([0, 0, 0, 101, 1, 2, 3]));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe("too_large");
    expect(reader.push(new Uint8Array([0, 0, 0, 1, 1])).ok).toBe(false);
    const partial = new FrameReader(100);
    partial.push(new Uint8Array([0, 0]));
    expect(partial.midFrame).toBe(true);
  });
});
