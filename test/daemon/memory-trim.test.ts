/**
 * The memory trim collects once after the RSS grew past its threshold, takes
 * the RSS after the collection as the new floor, follows the floor down, and
 * never collects for a steady process; one watcher per process however many
 * daemons hold it, off with PILOT_MEMORY_TRIM=0.
 */
import { expect, test } from "bun:test";
import { holdMemoryTrim, MemoryTrim, startMemoryTrim } from "../../src/daemon/memory-trim.ts";

const MiB = 1024 * 1024;

test("collects once per burst, re-bases on the RSS after it, follows it down, leaves a steady process alone", () => {
  let rss = 100 * MiB;
  const trim = new MemoryTrim(
    () => rss,
    () => (rss = 120 * MiB), // the collection gives most of the burst back
    32 * MiB,
  );
  expect(trim.check()).toBe(false); // steady
  rss = 131 * MiB;
  expect(trim.check()).toBe(false); // grew by less than the threshold
  rss = 300 * MiB;
  expect(trim.check()).toBe(true); // a burst: one collection, floor now 120 MiB
  rss = 150 * MiB;
  expect(trim.check()).toBe(false); // +30 MiB over the new floor
  rss = 90 * MiB;
  expect(trim.check()).toBe(false); // the floor follows the RSS down
  rss = 125 * MiB;
  expect(trim.check()).toBe(true); // +35 MiB over 90
  expect(trim.collections).toBe(2);
});

test("the watcher runs the check on its interval and stops", async () => {
  let collections = 0;
  let rss = 0;
  const stop = startMemoryTrim({ intervalMs: 5, growthBytes: 1, rss: () => rss, collect: () => collections++ });
  rss = 10;
  for (let i = 0; i < 400 && collections === 0; i++) await Bun.sleep(5);
  stop();
  expect(collections).toBeGreaterThan(0);
});

test("holders share one watcher; releasing twice is harmless; PILOT_MEMORY_TRIM=0 turns it off", () => {
  const a = holdMemoryTrim();
  const b = holdMemoryTrim();
  a();
  a();
  b();
  const saved = process.env.PILOT_MEMORY_TRIM;
  process.env.PILOT_MEMORY_TRIM = "0";
  try {
    const c = holdMemoryTrim();
    c();
  } finally {
    if (saved === undefined) delete process.env.PILOT_MEMORY_TRIM;
    else process.env.PILOT_MEMORY_TRIM = saved;
  }
});
