import { describe, expect, test } from "bun:test";
import { seqAdd, seqDiff, seqGe, seqGt, seqLe, seqLt, unwrap, wrap } from "../../src/transport/seq.ts";
import { Prng } from "../support/prng.ts";

describe("serial arithmetic", () => {
  test("comparisons work across the 2^32 wrap", () => {
    expect(seqLt(0xffff_fff0, 0x10)).toBe(true);
    expect(seqGt(0x10, 0xffff_fff0)).toBe(true);
    expect(seqLe(5, 5) && seqGe(5, 5)).toBe(true);
    expect(seqDiff(0x10, 0xffff_fff0)).toBe(0x20);
    expect(seqDiff(0xffff_fff0, 0x10)).toBe(-0x20);
    expect(seqAdd(0xffff_ffff, 2)).toBe(1);
  });

  test("unwrap inverts wrap near any reference, for any base", () => {
    const rng = new Prng(7);
    for (let i = 0; i < 10_000; i++) {
      const base = rng.u32();
      const reference = rng.int(0, 2 ** 40);
      const position = Math.max(0, reference + rng.int(-(2 ** 30), 2 ** 30));
      expect(unwrap(wrap(position, base), reference, base)).toBe(position);
    }
  });
});
