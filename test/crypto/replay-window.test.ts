import { expect, test } from "bun:test";
import { REPLAY_WINDOW_SIZE, ReplayWindow } from "../../src/crypto/replay-window.ts";
import { seededRandom } from "../support/fuzz.ts";

test("window size is at least 2048 frames", () => {
  expect(REPLAY_WINDOW_SIZE).toBeGreaterThanOrEqual(2048);
});

test("behaves like an exact model (set of seen counters + greatest) on random traffic", () => {
  const rand = seededRandom(17);
  const window = new ReplayWindow();
  const seen = new Set<number>();
  let top = -1;
  let next = 0;
  for (let i = 0; i < 200_000; i++) {
    const r = rand();
    // Mostly in order, some reordering, some duplicates, occasional big jumps.
    let c: number;
    if (r < 0.6) c = next++;
    else if (r < 0.8) c = Math.max(0, next - 1 - Math.floor(rand() * 5000));
    else if (r < 0.95) c = Math.max(0, top - Math.floor(rand() * (REPLAY_WINDOW_SIZE + 64)));
    else c = next += Math.floor(rand() * 10_000);
    const modelAccepts = !seen.has(c) && (c > top || top - c < REPLAY_WINDOW_SIZE);
    expect(window.accepts(c)).toBe(modelAccepts);
    if (modelAccepts && rand() < 0.9) {
      // Only authenticated frames are committed: skip 10% as "failed to authenticate".
      const advanced = window.commit(c);
      expect(advanced).toBe(c > top);
      seen.add(c);
      top = Math.max(top, c);
    }
    expect(window.greatest).toBe(top);
  }
});

test("counters near 2^53 work", () => {
  const w = new ReplayWindow();
  const big = Number.MAX_SAFE_INTEGER - 10;
  expect(w.commit(big)).toBe(true);
  expect(w.accepts(big)).toBe(false);
  expect(w.accepts(big - 1)).toBe(true);
  expect(w.accepts(big + 1)).toBe(true);
  w.commit(big + 5);
  expect(w.accepts(big)).toBe(false);
  expect(w.accepts(big + 3)).toBe(true);
});

test("accepts() never changes state", () => {
  const w = new ReplayWindow();
  w.commit(100);
  for (let c = 0; c < 10_000; c += 7) w.accepts(c);
  expect(w.greatest).toBe(100);
  expect(w.accepts(100)).toBe(false);
  expect(w.accepts(99)).toBe(true);
});
