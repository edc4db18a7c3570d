/**
 * Where a stream's buffer space comes from. The engine asks before it lets a
 * buffer grow (receive or send autotuning) and gives space back when a buffer
 * shrinks or the connection ends; the daemon's budget (daemon/buffer-budget.ts)
 * decides, per peer and for the whole daemon. Pure bookkeeping: no clock, no I/O.
 *
 *   grow(want, atLeast): number   grants between `atLeast` and `want` bytes and counts them as held
 *                                 (`atLeast` is a floor granted even past the budget: a stream must work)
 *   release(bytes)                gives back bytes granted earlier
 */
export interface BufferAllocator {
  grow(want: number, atLeast?: number): number;
  release(bytes: number): void;
}

/** No budget: every request is granted in full (engines used on their own, tests). */
export const UNLIMITED_BUFFERS: BufferAllocator = Object.freeze({
  grow: (want: number) => want,
  release: () => {},
});
