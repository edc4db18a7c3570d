import { describe, expect, test } from "bun:test";
import {
  decodeTaskMessage,
  encodeTaskMessage,
  EMPTY_SHA256,
  ReplyCode,
  TASK_LIMITS,
  TASK_MAX_FRAME,
  clampTaskText,
  checkTaskText,
  isTaskId,
  type TaskMessage,
} from "../../src/protocol/tasks.ts";

import { ID, SAMPLES } from "./tasks-samples.ts";

describe("task wire codec", () => {
  test("every message round-trips exactly", () => {
    for (const m of SAMPLES) {
      const bytes = encodeTaskMessage(m);
      expect(bytes.length).toBeLessThanOrEqual(TASK_MAX_FRAME);
      const r = decodeTaskMessage(bytes);
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.value).toEqual(m);
    }
  });

  test("layout: version, type, then big-endian fields", () => {
    const b = encodeTaskMessage({ type: "update", taskId: ID, seq: 0x01020304, state: "running", at: 0x0102_0304_0506, reason: "ok" });
    expect([...b.subarray(0, 2)]).toEqual([1, 2]);
    expect(Buffer.from(b.subarray(2, 18)).toString("hex")).toBe(ID);
    expect([...b.subarray(18, 22)]).toEqual([1, 2, 3, 4]);
    expect(b[22]).toBe(4); // running is the 4th state
    expect([...b.subarray(23, 31)]).toEqual([0, 0, 1, 2, 3, 4, 5, 6]);
    expect([...b.subarray(31)]).toEqual([0, 2, 111, 107]);
  });

  test("refusals are typed, never thrown", () => {
    const code = (bytes: Uint8Array) => {
      const r = decodeTaskMessage(bytes);
      return r.ok ? "ok" : r.error.code;
    };
    expect(code(new Uint8Array([]))).toBe("truncated");
    expect(code(new Uint8Array([2, 1]))).toBe("unsupported_version");
    expect(code(new Uint8Array([1, 99]))).toBe("unknown_type");
    expect(code(new Uint8Array([1, 5]))).toBe("empty_data");
    const update = encodeTaskMessage(SAMPLES[2]!);
    expect(code(update.subarray(0, update.length - 1))).toBe("truncated");
    expect(code(new Uint8Array([...update, 0]))).toBe("trailing_bytes");
    const queued = update.slice();
    queued[22] = 1; // queued is never sent as an update
    expect(code(queued)).toBe("bad_state");
    const zeroSeq = update.slice();
    zeroSeq.set([0, 0, 0, 0], 18);
    expect(code(zeroSeq)).toBe("bad_seq");
    const hugeTime = update.slice();
    hugeTime[23] = 0xff;
    expect(code(hugeTime)).toBe("time_out_of_range");
    const submit = encodeTaskMessage(SAMPLES[1]!);
    const tooBig = submit.slice();
    tooBig.set([0, 0x41, 0, 0], 26); // input size 4.2 MB
    expect(code(tooBig)).toBe("too_large");
    const noTime = submit.slice();
    noTime.set([0, 0, 0, 0], 18);
    expect(code(noTime)).toBe("bad_duration");
    const lateAccept = encodeTaskMessage({ ...(SAMPLES[1] as any), acceptWithinMs: 10, deadlineMs: 10 });
    lateAccept.set([0, 0, 0, 11], 18);
    expect(code(lateAccept)).toBe("bad_duration");
    const reply = encodeTaskMessage(SAMPLES[10]!);
    const badCode = reply.slice();
    badCode[2] = 17;
    expect(code(badCode)).toBe("bad_code");
  });

  test("text must be UTF-8 without control characters or direction overrides", () => {
    const withText = (description: string) => {
      const m = { ...(SAMPLES[1] as any) };
      const bytes = encodeTaskMessage({ ...m, description: "xx" });
      const body = new TextEncoder().encode(description);
      const out = new Uint8Array(bytes.length - 2 + body.length);
      out.set(bytes.subarray(0, bytes.length - 4));
      out[bytes.length - 4] = body.length >> 8;
      out[bytes.length - 3] = body.length & 0xff;
      out.set(body, bytes.length - 2);
      return decodeTaskMessage(out);
    };
    expect(withText("fine\nwith\ttabs").ok).toBe(true);
    for (const bad of ["\u001b[31mred", "nul\u0000", "rtl\u202eevil", "bell\u0007"]) {
      const r = withText(bad);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.code).toBe("description_forbidden_characters");
    }
    const raw = encodeTaskMessage({ ...(SAMPLES[1] as any), description: "ab" });
    raw[raw.length - 1] = 0xff; // not UTF-8
    const r = decodeTaskMessage(raw);
    expect(r.ok ? "ok" : r.error.code).toBe("description_not_utf8");
    expect(checkTaskText("a\nb", 10, false)).not.toBeNull();
    expect(checkTaskText("a\nb", 10, true)).toBeNull();
    expect(checkTaskText("é".repeat(6), 10, true)).toContain("longer than 10 bytes");
  });

  test("the encoder refuses what the decoder would refuse", () => {
    expect(() => encodeTaskMessage({ ...(SAMPLES[0] as any), taskId: "../../etc/passwd" })).toThrow(RangeError);
    expect(() => encodeTaskMessage({ ...(SAMPLES[0] as any), description: "x".repeat(TASK_LIMITS.description + 1) })).toThrow(RangeError);
    expect(() => encodeTaskMessage({ ...(SAMPLES[0] as any), inputName: "a\nb" })).toThrow(RangeError);
    expect(() => encodeTaskMessage({ ...(SAMPLES[2] as any), state: "succeeded" })).toThrow(RangeError);
    expect(() => encodeTaskMessage({ ...(SAMPLES[4] as any), signature: new Uint8Array(63) })).toThrow(RangeError);
    expect(() => encodeTaskMessage({ type: "data", bytes: new Uint8Array(0) })).toThrow(RangeError);
  });

  test("task ids are exactly 32 lowercase hex characters", () => {
    expect(isTaskId(ID)).toBe(true);
    for (const bad of [ID.toUpperCase(), ID.slice(1), ID + "0", "../" + ID.slice(3), `${ID.slice(0, 31)}/`, 42, null]) expect(isTaskId(bad)).toBe(false);
  });

  test("clampTaskText cuts on a character boundary and blanks control characters", () => {
    expect(clampTaskText("a\u001bb", 10, false)).toBe("a b");
    const cut = clampTaskText("é".repeat(10), 5);
    expect(new TextEncoder().encode(cut).length).toBeLessThanOrEqual(5);
    expect(cut).toBe("éé");
  });
});
