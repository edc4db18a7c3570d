import { describe, expect, test } from "bun:test";
import {
  fileDataFrameBody,
  decodeExchangeFrame,
  EXCHANGE_CHUNK,
  encodeExchangeFrame,
  errorFrame,
  ERROR_MESSAGE_MAX_BYTES,
  idFromText,
  idToText,
  NAME_MAX_BYTES,
  serviceOfKind,
  type ExchangeFrame,
} from "../../src/protocol/exchange.ts";

import { SAMPLE_FRAMES, id } from "./exchange-samples.ts";

describe("exchange codec", () => {
  test("every frame kind round-trips", () => {
    for (const f of SAMPLE_FRAMES) {
      const bytes = encodeExchangeFrame(f);
      const r = decodeExchangeFrame(bytes);
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.value).toEqual(f);
    }
  });

  test("data frames decode as copies by default and as views into the body with { view: true }", () => {
    for (const kind of ["file_data", "message_more"] as const) {
      const body = encodeExchangeFrame({ kind, data: new Uint8Array([1, 2, 3]) });
      const copy = decodeExchangeFrame(body);
      const view = decodeExchangeFrame(body, { view: true });
      if (!copy.ok || !view.ok || copy.value.kind !== kind || view.value.kind !== kind) throw new Error("did not decode");
      expect(view.value).toEqual(copy.value);
      body[1] = 9;
      expect((copy.value as { data: Uint8Array }).data[0]).toBe(1);
      expect((view.value as { data: Uint8Array }).data[0]).toBe(9);
    }
  });

  test("the first byte tells the service", () => {
    expect(serviceOfKind(encodeExchangeFrame(SAMPLE_FRAMES[0]!)[0]!)).toBe("messages");
    expect(serviceOfKind(encodeExchangeFrame(SAMPLE_FRAMES[6]!)[0]!)).toBe("files");
    expect(serviceOfKind(0x7f)).toBeNull();
    expect(serviceOfKind(0)).toBeNull();
  });

  test("hostile frames are refused with a code, never thrown", () => {
    const cases: [Uint8Array, string][] = [
      [new Uint8Array(0), "empty"],
      [new Uint8Array([0x55]), "unknown_kind"],
      [new Uint8Array([0x01, 1, 2]), "truncated"],
      [new Uint8Array([0x02]), "truncated"],
    ];
    for (const [bytes, code] of cases) {
      const r = decodeExchangeFrame(bytes);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.code).toBe(code);
    }
    // A message that carries more than it announces.
    const m = encodeExchangeFrame({ kind: "message", id: id(1), type: "text", replyTo: null, total: 3, data: new Uint8Array(3) });
    new DataView(m.buffer).setUint32(19, 2);
    expect(decodeExchangeFrame(m)).toMatchObject({ ok: false, error: { code: "bad_length" } });
    // An unknown type and unknown flags.
    const t = m.slice();
    t[17] = 9;
    expect(decodeExchangeFrame(t)).toMatchObject({ ok: false, error: { code: "bad_type" } });
    const fl = m.slice();
    fl[18] = 2;
    expect(decodeExchangeFrame(fl)).toMatchObject({ ok: false, error: { code: "bad_flags" } });
    // A name that is not UTF-8, one that does not fill the frame, a size above 2^53.
    const offer = encodeExchangeFrame({ kind: "file_offer", transfer: id(1), size: 5, name: "ab" });
    const bad = offer.slice();
    bad[bad.length - 1] = 0xff;
    expect(decodeExchangeFrame(bad)).toMatchObject({ ok: false, error: { code: "bad_utf8" } });
    expect(decodeExchangeFrame(offer.subarray(0, offer.length - 1))).toMatchObject({ ok: false, error: { code: "bad_length" } });
    const big = offer.slice();
    big[17] = 0xff;
    expect(decodeExchangeFrame(big)).toMatchObject({ ok: false, error: { code: "bad_size" } });
    // An error code with upper case or spaces.
    const err = encodeExchangeFrame({ kind: "error", ref: id(0), code: "busy", message: "x" });
    const badCode = err.slice();
    badCode[18] = 0x42; // "B"
    expect(decodeExchangeFrame(badCode)).toMatchObject({ ok: false, error: { code: "bad_code" } });
  });

  test("a NUL or a separator in a name is carried as is (the receiver sanitises it)", () => {
    const f: ExchangeFrame = { kind: "file_offer", transfer: id(1), size: 1, name: "a\u0000b/../c" };
    expect(decodeExchangeFrame(encodeExchangeFrame(f))).toEqual({ ok: true, value: f });
  });

  test("encoders refuse values built wrongly", () => {
    expect(() => encodeExchangeFrame({ kind: "file_offer", transfer: id(1), size: 1, name: "" })).toThrow(RangeError);
    expect(() => encodeExchangeFrame({ kind: "file_offer", transfer: id(1), size: 1, name: "x".repeat(NAME_MAX_BYTES + 1) })).toThrow(RangeError);
    expect(() => encodeExchangeFrame({ kind: "file_offer", transfer: new Uint8Array(3), size: 1, name: "x" })).toThrow(RangeError);
    expect(() => encodeExchangeFrame({ kind: "file_accept", transfer: id(1), offset: -1 })).toThrow(RangeError);
    expect(() => encodeExchangeFrame({ kind: "message", id: id(1), type: "text", replyTo: null, total: 1, data: new Uint8Array(2) })).toThrow(RangeError);
    expect(() => encodeExchangeFrame({ kind: "error", ref: id(0), code: "Bad Code", message: "" })).toThrow(RangeError);
    expect(() => encodeExchangeFrame({ kind: "file_data", data: new Uint8Array(0) })).toThrow(RangeError);
  });

  test("errorFrame cuts a long message to fit", () => {
    const f = errorFrame("internal", "é".repeat(5000));
    expect(new TextEncoder().encode(f.message).length).toBeLessThanOrEqual(ERROR_MESSAGE_MAX_BYTES);
    expect(decodeExchangeFrame(encodeExchangeFrame(f)).ok).toBe(true);
  });

  test("ids are UUID text", () => {
    const bytes = id(0xab);
    const text = idToText(bytes);
    expect(text).toBe("abababab-abab-abab-abab-abababababab");
    expect(idFromText(text)).toEqual(bytes);
    expect(idFromText(text.toUpperCase())).toEqual(bytes);
    expect(idFromText(text.replace(/-/g, ""))).toEqual(bytes);
    for (const bad of ["", "xyz", text + "0", "abababab-abab-abab-abab-ababababab-ab", "../etc"]) expect(idFromText(bad)).toBeNull();
  });
});

test("fileDataFrameBody filled in place is the frame encodeExchangeFrame makes of the same data; sizes outside 1..EXCHANGE_CHUNK are refused", () => {
  const data = Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff);
  const body = fileDataFrameBody(data.length);
  body.set(data, 1);
  expect(body).toEqual(encodeExchangeFrame({ kind: "file_data", data }));
  expect(() => fileDataFrameBody(0)).toThrow();
  expect(() => fileDataFrameBody(EXCHANGE_CHUNK + 1)).toThrow();
});
