import { expect, test } from "bun:test";
import { decodeTaskMessage, encodeTaskMessage, type TaskMessage } from "../../src/protocol/tasks.ts";
import { fuzz } from "../support/fuzz.ts";
import { SAMPLES } from "./tasks-samples.ts";

const CASES = Number(process.env.PILOT_FUZZ_CASES ?? 100_000);

test(`decodeTaskMessage survives ${CASES} random and mutated inputs, and what it accepts re-encodes exactly`, () => {
  const seeds = SAMPLES.filter((m) => m.type !== "data" || m.bytes.length < 100).map((m) => encodeTaskMessage(m));
  const codes = new Map<string, number>();
  let accepted = 0;
  fuzz({ seed: 11, cases: CASES, seeds, maxRandomLength: 160 }, (input) => {
    const r = decodeTaskMessage(input);
    if (r.ok) {
      accepted++;
      const again = encodeTaskMessage(r.value as TaskMessage);
      expect(Buffer.from(again).equals(Buffer.from(input))).toBe(true);
    } else {
      expect(typeof r.error.code).toBe("string");
      expect(typeof r.error.message).toBe("string");
      codes.set(r.error.code, (codes.get(r.error.code) ?? 0) + 1);
    }
  });
  expect(accepted).toBeGreaterThan(CASES / 100);
  // The mutations reach the checks behind the framing, not just the first byte.
  for (const code of ["truncated", "trailing_bytes", "unknown_type", "bad_state"]) expect(codes.get(code) ?? 0).toBeGreaterThan(0);
});
