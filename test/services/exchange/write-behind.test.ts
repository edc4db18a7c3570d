/** The files service's write-behind bound (src/daemon/services/exchange/write-behind.ts): per transfer, then all together. */
import { expect, test } from "bun:test";
import { WriteBehind } from "../../../src/daemon/services/exchange/write-behind.ts";

const MiB = 1024 * 1024;

test("one transfer pauses past its own bound and goes on under half of it", () => {
  const w = new WriteBehind<string>(4 * MiB, 32 * MiB);
  expect(w.add("a", 4 * MiB)).toBe(false);
  expect(w.add("a", 1)).toBe(true);
  expect(w.add("a", MiB)).toBe(false); // already paused: said once
  expect(w.remove("a", 2 * MiB)).toEqual([]); // 3 MiB + 1 left: not under half
  expect(w.remove("a", MiB + 2)).toEqual(["a"]);
  expect(w.bytes).toBe(2 * MiB - 1);
  expect(w.pausedCount).toBe(0);
});

test("many transfers: past the total every transfer that receives more pauses, whatever its own share", () => {
  const w = new WriteBehind<number>(4 * MiB, 32 * MiB);
  // 16 transfers each under its own bound (3 MiB): the first 10 fit in 32 MiB (30 MiB), the 11th crosses it.
  const paused: number[] = [];
  for (let t = 0; t < 16; t++) if (w.add(t, 3 * MiB)) paused.push(t);
  expect(paused).toEqual([10, 11, 12, 13, 14, 15]);
  expect(w.bytes).toBe(48 * MiB);
  // What the first ten write does not resume anyone until all hold under 3/4 of the total (24 MiB).
  let resumed: number[] = [];
  for (let t = 0; t < 8; t++) resumed = resumed.concat(w.remove(t, 3 * MiB));
  expect(w.bytes).toBe(24 * MiB);
  expect(resumed).toEqual([]);
  resumed = w.remove(8, 3 * MiB);
  expect(w.bytes).toBe(21 * MiB);
  // Under 3/4: the paused ones whose own backlog is under half their bound go on; 10-15 hold 3 MiB each, over 2 MiB.
  expect(resumed).toEqual([]);
  expect(w.remove(10, 2 * MiB)).toEqual([10]);
});

test("the memory held never passes the total by more than what arrives before a pause takes effect", () => {
  const w = new WriteBehind<number>(4 * MiB, 8 * MiB);
  const paused = new Set<number>();
  const frame = 256 * 1024;
  // 64 transfers keep sending a frame whenever not paused; nothing drains: the total stops at limit + one frame per transfer that crossed.
  for (let round = 0; round < 100; round++) {
    for (let t = 0; t < 64; t++) if (!paused.has(t) && w.add(t, frame)) paused.add(t);
  }
  expect(paused.size).toBe(64);
  expect(w.bytes).toBeLessThanOrEqual(8 * MiB + 64 * frame);
});

test("drop releases what a transfer held (written or abandoned) and lets the others go on; unknown or repeated drops change nothing", () => {
  const w = new WriteBehind<string>(4 * MiB, 4 * MiB);
  expect(w.add("big", 4 * MiB)).toBe(false);
  expect(w.add("small", 1)).toBe(true); // over the total
  expect(w.drop("big")).toEqual(["small"]);
  expect(w.bytes).toBe(1);
  expect(w.drop("big")).toEqual([]);
  expect(w.remove("nobody", 10)).toEqual([]);
  expect(w.bytes).toBe(1);
  w.drop("small");
  expect(w.bytes).toBe(0);
  expect(w.pausedCount).toBe(0);
});
