/**
 * Gives memory back after a burst. The JS engine collects when its own
 * heuristics say so, and a burst of streams (1000 at once, say) leaves
 * hundreds of MiB of dead frames and buffers resident until it does. Every
 * 2 s this looks at the process's RSS and, when it grew by more than 32 MiB
 * since the last check's floor, runs one full collection; the RSS after it is
 * the new floor. A steady daemon never collects here; at most one collection
 * per interval.
 *
 *   const release = holdMemoryTrim()     one watcher per process, however many daemons hold it
 *   release()                            the watcher stops when the last holder releases it
 *
 * Off with PILOT_MEMORY_TRIM=0. Only in the daemon's shell: the collection is
 * Bun's (`Bun.gc`), elsewhere this does nothing.
 */
export interface MemoryTrimOptions {
  readonly intervalMs?: number;
  readonly growthBytes?: number;
  readonly rss?: () => number;
  readonly collect?: () => void;
}

const DEFAULT_INTERVAL_MS = 2000;
const DEFAULT_GROWTH = 32 * 1024 * 1024;

/** One check: collects when the RSS grew past the floor by more than the threshold. */
export class MemoryTrim {
  private floor: number;
  collections = 0;

  constructor(
    private readonly rss: () => number,
    private readonly collect: () => void,
    private readonly growth = DEFAULT_GROWTH,
  ) {
    this.floor = rss();
  }

  /** True when it collected. */
  check(): boolean {
    const now = this.rss();
    if (now > this.floor + this.growth) {
      this.collect();
      this.collections++;
      this.floor = this.rss();
      return true;
    }
    if (now < this.floor) this.floor = now;
    return false;
  }
}

/** The watcher: a MemoryTrim checked every interval. Returns stop(). */
export function startMemoryTrim(options: MemoryTrimOptions = {}): () => void {
  const trim = new MemoryTrim(
    options.rss ?? (() => process.memoryUsage.rss()),
    options.collect ?? (() => (globalThis as { Bun?: { gc(force: boolean): void } }).Bun?.gc(true)),
    options.growthBytes ?? DEFAULT_GROWTH,
  );
  const timer = setInterval(() => trim.check(), options.intervalMs ?? DEFAULT_INTERVAL_MS);
  timer.unref?.();
  return () => clearInterval(timer);
}

let holders = 0;
let stopShared: (() => void) | null = null;

/** Holds the process-wide watcher (started on the first hold); returns its release. */
export function holdMemoryTrim(): () => void {
  if (process.env.PILOT_MEMORY_TRIM === "0") return () => {};
  if (holders++ === 0) stopShared = startMemoryTrim();
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holders === 0) {
      stopShared?.();
      stopShared = null;
    }
  };
}
