/**
 * The daemon's stream-buffer budget (src/daemon/buffer-budget.ts), as pure
 * bookkeeping: the per-peer, per-stranger, all-strangers and daemon-wide caps,
 * the floor each stream gets even past them, the refusals it counts, and the
 * sweep's rule (idle streams are trimmed; above 75 % of the total, so are busy
 * streams of peers over an even share).
 */
import { describe, expect, test } from "bun:test";
import { addressOf } from "../../src/protocol/address.ts";
import { BUFFER_PRESSURE, BufferBudget, bufferLimitsFor, DEFAULT_BUFFER_LIMITS } from "../../src/daemon/buffer-budget.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const peer = (n: number) => addressOf(0, n);
const trusted = () => true;
const stranger = () => false;

describe("defaults", () => {
  test("64 MiB in all, 16 MiB per trusted peer, 2 MiB per stranger, 16 MiB for all strangers", () => {
    expect(DEFAULT_BUFFER_LIMITS).toEqual({ total: 64 * MiB, perPeer: 16 * MiB, perStranger: 2 * MiB, strangersTotal: 16 * MiB });
    // --buffer-budget keeps the proportions.
    expect(bufferLimitsFor(64 * MiB)).toEqual(DEFAULT_BUFFER_LIMITS);
    expect(bufferLimitsFor(256 * MiB)).toEqual({ total: 256 * MiB, perPeer: 64 * MiB, perStranger: 8 * MiB, strangersTotal: 64 * MiB });
    // Never below 1 MiB.
    expect(bufferLimitsFor(1000).total).toBe(MiB);
  });
});

describe("caps", () => {
  test("one trusted peer gets at most perPeer over all its streams; another peer still gets its own", () => {
    const b = new BufferBudget();
    const s1 = b.allocatorFor(peer(5), trusted);
    const s2 = b.allocatorFor(peer(5), trusted);
    expect(s1.grow(10 * MiB)).toBe(10 * MiB);
    expect(s2.grow(10 * MiB)).toBe(6 * MiB); // partly refused: 16 MiB for the peer
    expect(s2.grow(1)).toBe(0);
    expect(b.heldBy(peer(5))).toBe(16 * MiB);
    expect(b.snapshot().refusals).toBe(2);
    const other = b.allocatorFor(peer(6), trusted);
    expect(other.grow(16 * MiB)).toBe(16 * MiB); // the first peer's use costs the second nothing
    expect(b.held).toBe(32 * MiB);
  });

  test("one stranger gets at most 2 MiB, all strangers together at most 16 MiB", () => {
    const b = new BufferBudget();
    const one = b.allocatorFor(peer(100), stranger);
    expect(one.grow(3 * MiB)).toBe(2 * MiB);
    expect(b.allocatorFor(peer(100), stranger).grow(KiB)).toBe(0);
    for (let i = 101; i < 108; i++) expect(b.allocatorFor(peer(i), stranger).grow(4 * MiB)).toBe(2 * MiB);
    expect(b.snapshot().heldByStrangers).toBe(16 * MiB);
    // The ninth stranger finds the strangers' share used up ...
    expect(b.allocatorFor(peer(108), stranger).grow(MiB)).toBe(0);
    // ... while a trusted peer still gets its full share.
    expect(b.allocatorFor(peer(7), trusted).grow(16 * MiB)).toBe(16 * MiB);
    expect(b.held).toBe(32 * MiB);
  });

  test("the daemon-wide total caps everyone, whatever their shares", () => {
    const b = new BufferBudget();
    for (let i = 1; i <= 4; i++) expect(b.allocatorFor(peer(i), trusted).grow(16 * MiB)).toBe(16 * MiB);
    expect(b.held).toBe(64 * MiB);
    expect(b.allocatorFor(peer(9), trusted).grow(MiB)).toBe(0);
    expect(b.allocatorFor(peer(200), stranger).grow(MiB)).toBe(0);
    expect(b.snapshot().refusals).toBe(2);
    expect(b.pressure).toBe(1);
  });

  test("trust is asked at each grant: space granted as a stranger is counted as a stranger's until it comes back", () => {
    const b = new BufferBudget();
    let isTrusted = false;
    const a = b.allocatorFor(peer(50), () => isTrusted);
    expect(a.grow(4 * MiB)).toBe(2 * MiB);
    isTrusted = true;
    expect(a.grow(4 * MiB)).toBe(4 * MiB); // now under the trusted peer's 16 MiB
    expect(b.snapshot().heldByStrangers).toBe(2 * MiB);
    a.release(5 * MiB);
    expect(b.heldBy(peer(50))).toBe(MiB);
    expect(b.snapshot().heldByStrangers).toBe(0); // the stranger's part went back first
  });
});

describe("the floor", () => {
  test("atLeast is granted even past every limit (a stream always works), and counted as held", () => {
    const b = new BufferBudget(bufferLimitsFor(MiB)); // 1 MiB in all, 32 KiB per stranger
    for (let i = 1; i <= 4; i++) expect(b.allocatorFor(peer(i), trusted).grow(256 * KiB)).toBe(256 * KiB);
    expect(b.held).toBe(MiB);
    const late = b.allocatorFor(peer(9), trusted);
    expect(late.grow(64 * KiB, 16 * KiB)).toBe(16 * KiB);
    const s = b.allocatorFor(peer(300), stranger);
    expect(s.grow(64 * KiB, 16 * KiB)).toBe(16 * KiB);
    expect(b.held).toBe(MiB + 32 * KiB); // past the total by the floors only
    expect(b.pressure).toBeGreaterThan(1);
    expect(b.snapshot().refusals).toBe(2);
    // Past the budget, growth beyond the floor is refused.
    expect(late.grow(KiB)).toBe(0);
  });
});

describe("release", () => {
  test("never gives back more than was granted; a stream that gives everything back is closed", () => {
    const b = new BufferBudget();
    const a = b.allocatorFor(peer(1), trusted);
    expect(a.grow(MiB)).toBe(MiB);
    a.release(5 * MiB);
    expect(b.held).toBe(0);
    expect(b.snapshot().peers).toBe(0); // forgotten with its last stream
    expect(a.grow(MiB)).toBe(0); // closed: nothing more
    expect(a.grow(MiB, KiB)).toBe(KiB);
    a.release(-5);
  });

  test("a peer stays in the ledger while one of its streams lives", () => {
    const b = new BufferBudget();
    const a = b.allocatorFor(peer(1), trusted);
    const c = b.allocatorFor(peer(1), trusted);
    a.grow(MiB);
    c.grow(MiB);
    a.release(MiB);
    expect(b.snapshot()).toMatchObject({ peers: 1, held: MiB, largestPeer: { peer: peer(1), held: MiB } });
    c.release(MiB);
    expect(b.snapshot()).toMatchObject({ peers: 0, held: 0, largestPeer: null });
  });
});

describe("the sweep's rule", () => {
  test(`below ${BUFFER_PRESSURE * 100} % of the total only idle streams are trimmed`, () => {
    expect(BUFFER_PRESSURE).toBe(0.75);
    const b = new BufferBudget();
    b.allocatorFor(peer(1), trusted).grow(16 * MiB);
    b.allocatorFor(peer(2), trusted).grow(16 * MiB);
    b.allocatorFor(peer(3), trusted).grow(16 * MiB); // 48 MiB: exactly 75 %, not above
    expect(b.pressure).toBe(0.75);
    const trim = b.trimRule();
    expect(trim(peer(1), true)).toBe(false);
    expect(trim(peer(1), false)).toBe(true);
  });

  test("above it, busy streams of peers over an even share are trimmed too, the others are not", () => {
    const b = new BufferBudget();
    const big = b.allocatorFor(peer(1), trusted);
    big.grow(16 * MiB);
    b.allocatorFor(peer(2), trusted).grow(16 * MiB);
    b.allocatorFor(peer(3), trusted).grow(16 * MiB);
    b.allocatorFor(peer(4), trusted).grow(MiB); // 49 MiB > 75 %; even share 64 / 4 = 16 MiB
    const small = b.allocatorFor(peer(5), trusted);
    small.grow(MiB); // 50 MiB; even share 64 / 5 = 12.8 MiB
    const trim = b.trimRule();
    expect(trim(peer(1), true)).toBe(true);
    expect(trim(peer(2), true)).toBe(true);
    expect(trim(peer(4), true)).toBe(false);
    expect(trim(peer(5), true)).toBe(false);
    expect(trim(peer(5), false)).toBe(true); // idle: always
    // The rule reads what each peer holds now: a peer trimmed below the share is left alone.
    big.release(8 * MiB);
    expect(trim(peer(1), true)).toBe(false);
  });
});
