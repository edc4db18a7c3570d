/**
 * The polo score as a pure function (src/registry/reputation.ts) and the
 * receipt checks (src/registry/receipts.ts): values, caps, sybil bounds,
 * determinism, and monotonicity on random inputs.
 */
import { describe, expect, test } from "bun:test";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { resultStatementBytes, verdictStatementBytes } from "../../src/protocol/receipt.ts";
import {
  ageFactor,
  groupReceipts,
  originNetworkOf,
  parseScoreThreshold,
  REPUTATION,
  scoreWorker,
  standingFrom,
  weekOf,
  type Rater,
  type VoteGroup,
} from "../../src/registry/reputation.ts";
import { receiptFreshness, receiptFromWire, receiptSignaturesValid, receiptToWire, RECEIPT_MAX_AGE_MS } from "../../src/registry/receipts.ts";
import { Prng } from "../support/prng.ts";
import { DAY, signedReceipt } from "../reputation/helpers.ts";

const NOW = 1_800_000_000_000;
const WEEK = weekOf(NOW);
const OLD = NOW - 90 * DAY;

/** Established raters on distinct networks with the given standing. */
function raters(ids: number[], standing = 0.5, registeredAt = OLD, network?: (id: number) => string | null): Map<number, Rater> {
  return new Map(ids.map((id) => [id, { registeredAt, network: network ? network(id) : `198.51.${id % 256}.0/24`, standing }]));
}

const score = (groups: VoteGroup[], r: Map<number, Rater>, now = NOW) => scoreWorker(groups, (s) => r.get(s), now);
const accept = (submitter: number, week = WEEK, n = 1): VoteGroup => ({ submitter, week, accepted: n, rejected: 0 });
const reject = (submitter: number, week = WEEK, n = 1): VoteGroup => ({ submitter, week, accepted: 0, rejected: n });

describe("values", () => {
  test("no receipts: 0; five genuine receipts from established submitters: 33", () => {
    expect(score([], new Map()).score).toBe(0);
    const ids = [10, 11, 12, 13, 14];
    const b = score(ids.map((s) => accept(s)), raters(ids));
    // Each weighs age 1 x standing 0.5: P = 2.5; 100 * 2.5 / (2.5 + 5).
    expect(b).toMatchObject({ score: 33, positive: 2.5, negative: 0, accepted: 5, rejected: 0, votes: 5, counterparties: 5, established: 5, newcomers: 0, networks: 5 });
  });

  test("a fresh submitter's receipt weighs 0.1 x standing: 1", () => {
    const r = raters([10], 0.5, NOW - 60_000);
    expect(score([accept(10)], r).score).toBe(1);
    expect(score([accept(10)], r)).toMatchObject({ established: 0, newcomers: 1 });
  });

  test("a rejection weighs double, and a mixed week is one vote split by its ratio", () => {
    const r = raters([10, 11]);
    expect(score([accept(10), reject(11)], r)).toMatchObject({ positive: 0.5, negative: 0.5 }); // 50 / (0.5 + 1 + 5)
    expect(score([accept(10), reject(11)], r).score).toBe(8);
    // 3 accepted and 1 rejected in one week by one submitter: one vote, 3/4 positive.
    expect(score([{ submitter: 10, week: WEEK, accepted: 3, rejected: 1 }], r)).toMatchObject({ votes: 1, positive: 0.375, negative: 0.125 });
  });

  test("a submitter counts once per worker per week, and a week and a half's worth at most", () => {
    const r = raters([10], 1);
    expect(score([accept(10, WEEK, 16)], r).positive).toBe(1);
    expect(score([accept(10, WEEK - 1), accept(10, WEEK)], r).positive).toBe(1.5);
    const many = score([0, 1, 2, 3, 4, 5].map((k) => accept(10, WEEK - k)), r);
    expect(many).toMatchObject({ positive: 1.5, votes: 6, capped: { submitters: 1, networks: 0, newcomers: false } });
    // Accepted in one week, rejected in three others: capped with its ratio, 1/4 : 3/4.
    const mixed = score([accept(10, WEEK), reject(10, WEEK - 1), reject(10, WEEK - 2), reject(10, WEEK - 3)], r);
    expect(mixed.positive).toBeCloseTo(0.375, 12);
    expect(mixed.negative).toBeCloseTo(1.125, 12);
  });

  test("established submitters from one network count as one: capped at 1.5", () => {
    const ids = Array.from({ length: 50 }, (_, i) => 100 + i);
    const b = score(ids.map((s) => accept(s)), raters(ids, 1, OLD, () => "203.0.113.0/24"));
    expect(b).toMatchObject({ positive: 1.5, networks: 1, established: 50, capped: { submitters: 0, networks: 1, newcomers: false } });
    expect(b.score).toBe(23);
    // Private and loopback origins are networks of their own.
    expect(score(ids.map((s) => accept(s)), raters(ids, 1, OLD, () => null)).networks).toBe(50);
  });

  test("newcomers together are capped at 0.5, however many", () => {
    const ids = Array.from({ length: 1000 }, (_, i) => 100 + i);
    const b = score(ids.map((s) => accept(s)), raters(ids, 1, NOW - 29 * DAY));
    expect(b).toMatchObject({ positive: 0.5, newcomers: 1000, established: 0, capped: { newcomers: true } });
    expect(b.score).toBe(9);
  });

  test("receipts older than the horizon do not count; unknown submitters do not count", () => {
    const r = raters([10, 11]);
    expect(score([accept(10, WEEK - REPUTATION.horizonWeeks)], r).score).toBe(0);
    expect(score([accept(10, WEEK - REPUTATION.horizonWeeks + 1)], r).score).toBe(9);
    expect(score([accept(99)], r)).toMatchObject({ score: 0, counterparties: 0, accepted: 0 });
  });

  test("age and standing factors", () => {
    expect(ageFactor(NOW, NOW)).toBe(0.1);
    expect(ageFactor(NOW - 15 * DAY, NOW)).toBeCloseTo(0.55, 10);
    expect(ageFactor(NOW - 30 * DAY, NOW)).toBe(1);
    expect(ageFactor(NOW - 900 * DAY, NOW)).toBe(1);
    expect(ageFactor(NOW + DAY, NOW)).toBe(0.1);
    expect(standingFrom(0)).toBe(0.5);
    expect(standingFrom(25)).toBe(0.75);
    expect(standingFrom(50)).toBe(1);
    expect(standingFrom(100)).toBe(1);
    expect(standingFrom(Number.NaN)).toBe(0.5);
  });

  test("groupReceipts makes one group per (submitter, week of recording)", () => {
    const t = WEEK * REPUTATION.weekMs;
    const groups = groupReceipts([
      { submitter: 1, accepted: true, recordedAt: t },
      { submitter: 1, accepted: false, recordedAt: t + 1000 },
      { submitter: 1, accepted: true, recordedAt: t - 1 },
      { submitter: 2, accepted: true, recordedAt: t },
    ]);
    expect(groups.sort((x, y) => x.submitter - y.submitter || x.week - y.week)).toEqual([
      { submitter: 1, week: WEEK - 1, accepted: 1, rejected: 0 },
      { submitter: 1, week: WEEK, accepted: 1, rejected: 1 },
      { submitter: 2, week: WEEK, accepted: 1, rejected: 0 },
    ]);
  });

  test("originNetworkOf: /24 and /56 for public addresses, none for private ones", () => {
    expect(originNetworkOf("203.0.113.77")).toBe("203.0.113.0/24");
    expect(originNetworkOf("::ffff:203.0.113.77")).toBe("203.0.113.0/24");
    expect(originNetworkOf("2001:db8:1:2::5")).toBe(originNetworkOf("2001:db8:1:2:ffff::1"));
    for (const ip of ["127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.9.9", "192.168.1.1", "169.254.1.1", "100.64.0.1", "::1", "fd00::1", "fe80::1", "0.0.0.0", "garbage", null]) {
      expect({ ip, net: originNetworkOf(ip) }).toEqual({ ip, net: null });
    }
    expect(originNetworkOf("172.32.0.1")).toBe("172.32.0.0/24");
  });

  test("tasks_min_score values", () => {
    expect(parseScoreThreshold("0")).toBe(0);
    expect(parseScoreThreshold("20")).toBe(20);
    expect(parseScoreThreshold("100")).toBe(100);
    for (const bad of ["", "-1", "12.5", "101", "1e2", "abc", "0x10", " "]) expect(() => parseScoreThreshold(bad)).toThrow(RangeError);
  });
});

describe("sybils (the pure function; the registry's own test is test/reputation/sybil.test.ts)", () => {
  /** Scores for a whole graph as the registry computes them: base scores (standing 1), then standing from them. */
  function scoresOf(edges: { s: number; w: number; week?: number }[], nodes: Map<number, { registeredAt: number; network: string | null }>): Map<number, number> {
    const groupsOf = (w: number) => edges.filter((e) => e.w === w).map((e) => accept(e.s, e.week ?? WEEK));
    const rater = (standing: (id: number) => number) => (id: number) => {
      const n = nodes.get(id);
      return n && { ...n, standing: standing(id) };
    };
    const base = new Map([...nodes.keys()].map((id) => [id, scoreWorker(groupsOf(id), rater(() => 1), NOW).raw]));
    return new Map([...nodes.keys()].map((id) => [id, scoreWorker(groupsOf(id), rater((s) => standingFrom(base.get(s)!)), NOW).score]));
  }

  test("20 fresh identities rating each other every week stay below an honest worker with 5 genuine receipts", () => {
    const nodes = new Map<number, { registeredAt: number; network: string | null }>();
    const edges: { s: number; w: number; week?: number }[] = [];
    const honest = 1;
    nodes.set(honest, { registeredAt: OLD, network: "198.51.100.0/24" });
    for (let i = 0; i < 5; i++) {
      nodes.set(10 + i, { registeredAt: OLD, network: `192.0.${i}.0/24` });
      edges.push({ s: 10 + i, w: honest });
    }
    const ring = Array.from({ length: 20 }, (_, i) => 100 + i);
    // Each from a network of its own (the most the attacker could manage), registered an hour ago.
    for (const id of ring) nodes.set(id, { registeredAt: NOW - 3_600_000, network: `203.0.${id}.0/24` });
    for (const s of ring) for (const w of ring) if (s !== w) for (let k = 0; k < 3; k++) edges.push({ s, w, week: WEEK - k });
    const scores = scoresOf(edges, nodes);
    expect(scores.get(honest)).toBe(33);
    const best = Math.max(...ring.map((id) => scores.get(id)!));
    expect(best).toBeLessThanOrEqual(9);
    expect(best).toBeLessThan(scores.get(honest)!);
  });

  test("a ring aged past 30 days but registered from one network stays below it too, even with fresh helpers", () => {
    const nodes = new Map<number, { registeredAt: number; network: string | null }>();
    const edges: { s: number; w: number; week?: number }[] = [];
    for (let i = 0; i < 5; i++) {
      nodes.set(10 + i, { registeredAt: OLD, network: `192.0.${i}.0/24` });
      edges.push({ s: 10 + i, w: 1 });
    }
    nodes.set(1, { registeredAt: OLD, network: null });
    const ring = Array.from({ length: 20 }, (_, i) => 100 + i);
    for (const id of ring) nodes.set(id, { registeredAt: OLD, network: "203.0.113.0/24" });
    // And 100 fresh identities from 100 other networks rating every ring member too.
    const fresh = Array.from({ length: 100 }, (_, i) => 1000 + i);
    for (const id of fresh) nodes.set(id, { registeredAt: NOW - DAY, network: `100.${id % 64}.0.0/24` });
    for (const s of [...ring, ...fresh]) for (const w of ring) if (s !== w) for (let k = 0; k < 3; k++) edges.push({ s, w, week: WEEK - k });
    const scores = scoresOf(edges, nodes);
    // 1.5 from the ring's network, 0.5 from all newcomers: 100 * 2 / 7.
    expect(Math.max(...ring.map((id) => scores.get(id)!))).toBe(29);
    expect(scores.get(1)).toBe(33);
  });
});

describe("properties (random inputs, fixed seeds)", () => {
  function randomCase(rng: Prng) {
    const submitters = Array.from({ length: rng.int(0, 12) }, (_, i) => 10 + i);
    const nets = ["a", "b", "c", null];
    const r = new Map<number, Rater>(
      submitters.map((s) => [s, { registeredAt: NOW - rng.int(0, 60) * DAY - rng.int(0, DAY), network: nets[rng.int(0, 3)]!, standing: rng.next() }]),
    );
    const groups: VoteGroup[] = [];
    for (const s of submitters) {
      for (let k = rng.int(0, 4); k > 0; k--) groups.push({ submitter: s, week: WEEK - rng.int(0, 60), accepted: rng.int(0, 5), rejected: rng.int(0, 5) });
    }
    return { submitters, r, groups };
  }

  /** One more receipt from an existing or a new submitter, in an existing or a new week. */
  function withReceipt(rng: Prng, c: ReturnType<typeof randomCase>, accepted: boolean): VoteGroup[] {
    const submitter = c.submitters.length && rng.chance(0.8) ? c.submitters[rng.int(0, c.submitters.length - 1)]! : 999;
    if (submitter === 999) c.r.set(999, { registeredAt: NOW - rng.int(0, 60) * DAY, network: rng.chance(0.5) ? "a" : null, standing: rng.next() });
    const week = rng.chance(0.5) && c.groups.length ? c.groups[rng.int(0, c.groups.length - 1)]!.week : WEEK - rng.int(0, 55);
    return [...c.groups, { submitter, week, accepted: accepted ? 1 : 0, rejected: accepted ? 0 : 1 }];
  }

  test("an accepted receipt never lowers the score; a rejected one never raises it (5000 cases)", () => {
    const rng = new Prng(0x5eed);
    for (let i = 0; i < 5000; i++) {
      const c = randomCase(rng);
      const before = score(c.groups, c.r);
      const accepted = rng.chance(0.5);
      const after = score(withReceipt(rng, c, accepted), c.r);
      const ok = accepted ? after.raw >= before.raw - 1e-9 && after.score >= before.score : after.raw <= before.raw + 1e-9 && after.score <= before.score;
      if (!ok) throw new Error(`case ${i}: ${accepted ? "accepted" : "rejected"} moved ${before.raw} -> ${after.raw}`);
    }
  });

  test("deterministic: the same inputs in any order give the same score, always in [0, 100)", () => {
    const rng = new Prng(7);
    for (let i = 0; i < 1000; i++) {
      const c = randomCase(rng);
      const a = score(c.groups, c.r);
      const shuffled = [...c.groups].sort(() => rng.next() - 0.5);
      expect(score(shuffled, c.r)).toEqual(a);
      expect(a.raw).toBeGreaterThanOrEqual(0);
      expect(a.raw).toBeLessThan(100);
    }
  });

  test("higher standing or older raters never lower a score made only of acceptances", () => {
    const rng = new Prng(99);
    for (let i = 0; i < 1000; i++) {
      const c = randomCase(rng);
      const positive = c.groups.map((g) => ({ ...g, accepted: g.accepted + g.rejected, rejected: 0 }));
      const lifted = new Map([...c.r].map(([k, v]) => [k, { ...v, standing: Math.min(1, v.standing + 0.2), registeredAt: v.registeredAt - 5 * DAY }]));
      // Crossing the 30-day line moves a rater from the newcomers' cap to its network's, which may cap it
      // harder; within one side of the line, more weight never lowers the score.
      const sameSide = [...c.r].every(([k, v]) => (NOW - v.registeredAt >= 30 * DAY) === (NOW - lifted.get(k)!.registeredAt >= 30 * DAY));
      if (!sameSide) continue;
      expect(score(positive, lifted).raw).toBeGreaterThanOrEqual(score(positive, c.r).raw - 1e-9);
    }
  });
});

describe("receipts", () => {
  const worker = { id: 7, identity: generateIdentity() };
  const submitter = { id: 9, identity: generateIdentity() };

  test("the wire form round-trips and is parsed strictly", () => {
    const r = signedReceipt(submitter, worker, { at: NOW });
    const wire = receiptToWire(r);
    expect(receiptFromWire(wire)).toEqual({ ok: true, value: r });
    expect(receiptFromWire({ ...wire, extra: 1 })).toMatchObject({ ok: false, message: expect.stringContaining("unknown receipt field") });
    const { outcome: _o, ...missing } = wire;
    expect(receiptFromWire(missing)).toMatchObject({ ok: false, message: 'receipt needs "outcome"' });
    for (const [field, value] of [
      ["task_id", "ABC"],
      ["task_id", "../../etc/passwd"],
      ["worker", 9],
      ["worker", -1],
      ["submitter", 2 ** 32],
      ["result_sha256", "xyz"],
      ["outcome", "great"],
      ["decided_at", 1.5],
      ["worker_sig", "AAAA"],
      ["submitter_sig", null],
    ] as const) {
      expect({ field, ok: receiptFromWire({ ...wire, [field]: value }).ok }).toEqual({ field, ok: false });
    }
    expect(receiptFromWire(null).ok).toBe(false);
    expect(receiptFromWire([wire]).ok).toBe(false);
  });

  test("hostile wire forms never throw: 5000 mutated receipts are parsed or refused with a reason", () => {
    const rng = new Prng(0xbad);
    const wire = receiptToWire(signedReceipt(submitter, worker, { at: NOW }));
    const values: unknown[] = [null, true, -1, 0, 1.5, 2 ** 53, "", "x".repeat(300), [], {}, [1, 2], { a: 1 }, "AAAA", "0".repeat(32), Number.NaN];
    for (let i = 0; i < 5000; i++) {
      const m: Record<string, unknown> = { ...wire };
      for (let k = rng.int(1, 3); k > 0; k--) {
        const keys = Object.keys(m);
        const roll = rng.next();
        if (roll < 0.6 && keys.length) m[keys[rng.int(0, keys.length - 1)]!] = values[rng.int(0, values.length - 1)];
        else if (roll < 0.8 && keys.length) delete m[keys[rng.int(0, keys.length - 1)]!];
        else m[`f${rng.int(0, 9)}`] = values[rng.int(0, values.length - 1)];
      }
      const r = receiptFromWire(m);
      if (!r.ok) expect(typeof r.message).toBe("string");
      else expect(receiptSignaturesValid(r.value, worker.identity.publicKey, submitter.identity.publicKey)).toBe(JSON.stringify(m) === JSON.stringify(wire));
    }
  });

  test("both signatures must verify, each by its own party, over the fields as received", () => {
    const r = signedReceipt(submitter, worker, { at: NOW });
    expect(receiptSignaturesValid(r, worker.identity.publicKey, submitter.identity.publicKey)).toBe(true);
    // Keys swapped, or one side's signature missing (replaced by the other's, or by zeros).
    expect(receiptSignaturesValid(r, submitter.identity.publicKey, worker.identity.publicKey)).toBe(false);
    expect(receiptSignaturesValid({ ...r, submitterSignature: r.workerSignature }, worker.identity.publicKey, submitter.identity.publicKey)).toBe(false);
    expect(receiptSignaturesValid({ ...r, workerSignature: new Uint8Array(64) }, worker.identity.publicKey, submitter.identity.publicKey)).toBe(false);
    // The submitter signing the worker's statement too (the worker never signed) does not pass.
    const forged = { ...r, workerSignature: submitter.identity.sign(resultStatementBytes(r)) };
    expect(receiptSignaturesValid(forged, worker.identity.publicKey, submitter.identity.publicKey)).toBe(false);
    // Any field changed after signing: an accepted verdict turned into a rejection, another result, another time.
    for (const change of [{ outcome: "rejected" as const }, { resultSha256: "0".repeat(64) }, { decidedAt: NOW + 1 }, { deliveredAt: NOW - 2 }, { taskId: "f".repeat(32) }, { worker: 8 }]) {
      expect(receiptSignaturesValid({ ...r, ...change }, worker.identity.publicKey, submitter.identity.publicKey)).toBe(false);
    }
    // The verdict signature covers the worker's statement: a submitter cannot re-date the delivery.
    const verdict = submitter.identity.sign(verdictStatementBytes({ ...r, deliveredAt: r.deliveredAt - 5 }));
    expect(receiptSignaturesValid({ ...r, submitterSignature: verdict }, worker.identity.publicKey, submitter.identity.publicKey)).toBe(false);
  });

  test("freshness: decided within the last 7 days and not more than 5 minutes ahead", () => {
    expect(receiptFreshness({ deliveredAt: NOW - 10, decidedAt: NOW }, NOW)).toBeNull();
    expect(receiptFreshness({ deliveredAt: NOW, decidedAt: NOW + 4 * 60_000 }, NOW)).toBeNull();
    expect(receiptFreshness({ deliveredAt: NOW, decidedAt: NOW + 6 * 60_000 }, NOW)).toContain("future");
    expect(receiptFreshness({ deliveredAt: NOW + 6 * 60_000, decidedAt: NOW }, NOW)).toContain("future");
    expect(receiptFreshness({ deliveredAt: NOW - RECEIPT_MAX_AGE_MS - 10, decidedAt: NOW - RECEIPT_MAX_AGE_MS }, NOW)).toBeNull();
    expect(receiptFreshness({ deliveredAt: NOW - RECEIPT_MAX_AGE_MS - 10, decidedAt: NOW - RECEIPT_MAX_AGE_MS - 1 }, NOW)).toContain("7 days");
  });
});
