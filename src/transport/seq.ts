/**
 * Sequence-number arithmetic (RFC 1982 serial numbers over u32).
 *
 *   seqLt/seqLe/seqGt/seqGe(a, b)   wrap-safe comparisons of two u32 sequence numbers
 *   seqDiff(a, b)                   signed distance a - b, in (-2^31, 2^31]
 *   seqAdd(a, n)                    (a + n) mod 2^32
 *   unwrap(wire, reference, base)   wire u32 -> position in an unbounded space
 *   wrap(position, base)            position -> wire u32
 *
 * The stream engine keeps its bookkeeping in *positions*: integers that start at 0
 * for the SYN and never wrap (exact up to 2^53 bytes). Every sequence number, ack
 * number and SACK edge that arrives is turned into a position with `unwrap`, which
 * uses the signed 32-bit distance to a nearby reference position. That is serial
 * arithmetic, applied once, at the edge; everything inside is then plain `<`.
 * It is valid while the peer's number is within 2^31 of the reference, which the
 * window (at most 64 MiB) guarantees for every legitimate segment.
 */

export const SEQ_MODULUS = 0x1_0000_0000;

/** Signed distance `a - b` between two u32 sequence numbers. */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

export function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

export function seqLt(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

export function seqLe(a: number, b: number): boolean {
  return ((a - b) | 0) <= 0;
}

export function seqGt(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

export function seqGe(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/** The wire sequence number of `position` in a space whose position 0 is `base`. */
export function wrap(position: number, base: number): number {
  return (base + position) >>> 0;
}

/**
 * The position of wire number `wire`, taken as the one nearest to `reference`
 * (a position) in the space whose position 0 is `base`.
 */
export function unwrap(wire: number, reference: number, base: number): number {
  return reference + ((wire - base - reference) | 0);
}
