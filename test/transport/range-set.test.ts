import { describe, expect, test } from "bun:test";
import { RangeSet } from "../../src/transport/range-set.ts";
import { Prng } from "../support/prng.ts";

/** The set as a sorted list of [start, end) pairs. */
function ranges(set: RangeSet): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < set.count; i++) out.push([set.start(i), set.end(i)]);
  return out;
}

describe("RangeSet", () => {
  test("merges overlapping and touching ranges and reports new coverage", () => {
    const s = new RangeSet();
    expect(s.add(10, 20)).toBe(10);
    expect(s.add(30, 40)).toBe(10);
    expect(s.add(20, 30)).toBe(10); // touches both: one range
    expect(ranges(s)).toEqual([[10, 40]]);
    expect(s.add(15, 35)).toBe(0);
    expect(s.add(0, 50)).toBe(20);
    expect(s.total).toBe(50);
    s.removeBelow(25);
    expect(ranges(s)).toEqual([[25, 50]]);
    expect(s.total).toBe(25);
  });

  test("agrees with a bitmap under random operations", () => {
    const rng = new Prng(3);
    const size = 400;
    const s = new RangeSet();
    const bits = new Uint8Array(size);
    let floor = 0;
    for (let op = 0; op < 5000; op++) {
      if (rng.chance(0.1)) {
        floor = Math.min(size, floor + rng.int(0, 20));
        s.removeBelow(floor);
        bits.fill(0, 0, floor);
      } else {
        const a = rng.int(floor, size - 1);
        const b = Math.min(size, a + rng.int(1, 30));
        let fresh = 0;
        for (let i = a; i < b; i++) if (!bits[i]) fresh++, (bits[i] = 1);
        expect(s.add(a, b)).toBe(fresh);
      }
      const expected: [number, number][] = [];
      for (let i = 0; i < size; i++) {
        if (!bits[i]) continue;
        const last = expected[expected.length - 1];
        if (last && last[1] === i) last[1] = i + 1;
        else expected.push([i, i + 1]);
      }
      expect(ranges(s)).toEqual(expected);
      expect(s.total).toBe(bits.reduce((x, y) => x + y, 0));
      const probe = rng.int(0, size - 1);
      expect(s.indexContaining(probe) >= 0).toBe(bits[probe] === 1);
    }
  });
});
