/**
 * The polo score: a node's reputation as a worker, 0-100, computed from the
 * task receipts the registry holds (both parties signed each one; see
 * receipts.ts) and from what the registry knows of the submitters (when each
 * registered, from which network, and their own standing). Pure and
 * deterministic: time is an argument, nothing here reads a clock or the store.
 *
 * For worker W, at time `now`:
 *
 *  1. Receipts older than HORIZON_WEEKS are ignored. The rest are grouped per
 *     (submitter, week of recording): each group is ONE vote, whatever the
 *     number of receipts in it, worth `accepted / (accepted + rejected)`
 *     positive and the rest negative. A submitter counts at most once per
 *     worker per week.
 *  2. One submitter's votes together are capped at 1.5 (a regular customer
 *     counts for a week and a half's worth), keeping their positive:negative
 *     ratio.
 *  3. Each submitter's evidence is weighted by `age x standing`:
 *       age      = 0.1 + 0.9 x min(1, time since it registered / 30 days)
 *       standing = 0.5 + 0.5 x min(1, its own base score / 50)
 *     where the base score is this same computation for the submitter as a
 *     worker with every standing taken as 1 (one level deep, no recursion).
 *  4. Submitters registered at least 30 days ago ("established") are grouped
 *     by the network they registered from (IPv4 /24, IPv6 /56; a node that
 *     registered from a private or loopback address is a network of its own):
 *     one network's evidence is capped at 1.5. Newcomers (younger than 30
 *     days) together, from every network, are capped at 0.5.
 *  5. With P and N the positive and negative evidence left:
 *       score = 100 x P / (P + 2 x N + 5), rounded to a whole number.
 *
 * Every step keeps the monotonicity the registry promises: a receipt that
 * accepts a result never lowers its worker's score, one that rejects never
 * raises it (test/registry/reputation.test.ts checks it on random inputs).
 */
import { parseIp, unmapIpv4 } from "../protocol/beacon-message.ts";
import { addressPrefix } from "./limits.ts";

const DAY_MS = 86_400_000;

/** The model's constants (docs/REGISTRY.md §15). */
export const REPUTATION = Object.freeze({
  /** Votes are counted per (submitter, week). */
  weekMs: 7 * DAY_MS,
  /** Receipts recorded longer ago than this many weeks no longer count (and are pruned). */
  horizonWeeks: 52,
  /** A submitter younger than this is a newcomer; its age factor reaches 1 here. */
  matureAfterMs: 30 * DAY_MS,
  /** The age factor of a key registered just now. */
  ageFloor: 0.1,
  /** One submitter's votes for one worker, all weeks together. */
  perSubmitterCap: 1.5,
  /** Established submitters from one network, together, for one worker. */
  perNetworkCap: 1.5,
  /** All newcomers together, for one worker. */
  newcomerCap: 0.5,
  /** Standing of a submitter that never did accepted work itself. */
  standingFloor: 0.5,
  /** Base score at which a submitter has full standing. */
  standingFullAt: 50,
  /** A rejection weighs this many acceptances. */
  rejectionWeight: 2,
  /** Evidence the score starts from: P = 5 gives 50 (with no rejections). */
  prior: 5,
});

/** A worker's receipts from one submitter in one week (`week = weekOf(recorded_at)`). */
export interface VoteGroup {
  readonly submitter: number;
  readonly week: number;
  readonly accepted: number;
  readonly rejected: number;
}

/** What the score needs to know about a submitter. */
export interface Rater {
  /** When its key registered (ms since the epoch, the registry's clock). */
  readonly registeredAt: number;
  /** The network it registered from (originNetworkOf); null: a network of its own. */
  readonly network: string | null;
  /** 0-1 (standingFrom); base scores use 1. */
  readonly standing: number;
}

export interface ScoreBreakdown {
  /** 0-100, a whole number (the registry's signed answers carry integers only). */
  readonly score: number;
  /** The score before rounding. */
  readonly raw: number;
  /** Evidence after weights and caps. */
  readonly positive: number;
  readonly negative: number;
  /** Receipts within the horizon, from known submitters. */
  readonly accepted: number;
  readonly rejected: number;
  /** (submitter, week) votes counted. */
  readonly votes: number;
  /** Distinct submitters counted, and how many of them were established / newcomers. */
  readonly counterparties: number;
  readonly established: number;
  readonly newcomers: number;
  /** Distinct networks the established submitters registered from. */
  readonly networks: number;
  /** Which caps cut evidence: submitters over their cap, networks over theirs, the newcomers' cap. */
  readonly capped: { readonly submitters: number; readonly networks: number; readonly newcomers: boolean };
}

interface Evidence {
  pos: number;
  neg: number;
}

export function weekOf(time: number): number {
  return Math.floor(time / REPUTATION.weekMs);
}

/** 0.1 for a key registered now, rising linearly to 1 at 30 days. */
export function ageFactor(registeredAt: number, now: number): number {
  const age = Math.max(0, now - registeredAt);
  return REPUTATION.ageFloor + (1 - REPUTATION.ageFloor) * Math.min(1, age / REPUTATION.matureAfterMs);
}

export function isEstablished(registeredAt: number, now: number): boolean {
  return now - registeredAt >= REPUTATION.matureAfterMs;
}

/** A submitter's standing from its own base score (as a worker): 0.5 with none, 1 from 50 up. */
export function standingFrom(baseScore: number): number {
  const s = Number.isFinite(baseScore) ? Math.max(0, baseScore) : 0;
  return REPUTATION.standingFloor + (1 - REPUTATION.standingFloor) * Math.min(1, s / REPUTATION.standingFullAt);
}

/** Scales evidence down to `cap` in total, keeping its ratio (never up). */
function capped(e: Evidence, cap: number): { e: Evidence; cut: boolean } {
  const total = e.pos + e.neg;
  if (total <= cap) return { e, cut: false };
  return { e: { pos: cap * (e.pos / total), neg: cap * (e.neg / total) }, cut: true };
}

function count(n: number): number {
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

/**
 * A worker's score from its vote groups. `raterOf` gives what the registry
 * knows of each submitter (undefined: not a node, its votes are ignored).
 */
export function scoreWorker(groups: Iterable<VoteGroup>, raterOf: (submitter: number) => Rater | undefined, now: number): ScoreBreakdown {
  const firstWeek = weekOf(now) - REPUTATION.horizonWeeks + 1;
  // (submitter, week) -> counts; inputs may repeat a pair (they are summed).
  const cells = new Map<number, Map<number, { a: number; r: number }>>();
  for (const g of groups) {
    if (!(g.week >= firstWeek)) continue;
    const a = count(g.accepted);
    const r = count(g.rejected);
    if (a + r === 0) continue;
    let weeks = cells.get(g.submitter);
    if (!weeks) cells.set(g.submitter, (weeks = new Map()));
    const cell = weeks.get(g.week) ?? { a: 0, r: 0 };
    weeks.set(g.week, { a: cell.a + a, r: cell.r + r });
  }

  let accepted = 0;
  let rejected = 0;
  let votes = 0;
  let established = 0;
  let newcomers = 0;
  let cappedSubmitters = 0;
  const clusters = new Map<string, Evidence>();
  const young: Evidence = { pos: 0, neg: 0 };
  // Submitters in id order, weeks in order: the sums (floating point) never depend on input order.
  for (const submitter of [...cells.keys()].sort((x, y) => x - y)) {
    const rater = raterOf(submitter);
    if (!rater) continue;
    const weeks = cells.get(submitter)!;
    const own: Evidence = { pos: 0, neg: 0 };
    for (const week of [...weeks.keys()].sort((x, y) => x - y)) {
      const { a, r } = weeks.get(week)!;
      accepted += a;
      rejected += r;
      votes++;
      own.pos += a / (a + r);
      own.neg += r / (a + r);
    }
    const one = capped(own, REPUTATION.perSubmitterCap);
    if (one.cut) cappedSubmitters++;
    const weight = ageFactor(rater.registeredAt, now) * Math.min(1, Math.max(0, rater.standing));
    const e = { pos: weight * one.e.pos, neg: weight * one.e.neg };
    if (isEstablished(rater.registeredAt, now)) {
      established++;
      const key = rater.network ?? `node:${submitter}`;
      const c = clusters.get(key) ?? { pos: 0, neg: 0 };
      clusters.set(key, { pos: c.pos + e.pos, neg: c.neg + e.neg });
    } else {
      newcomers++;
      young.pos += e.pos;
      young.neg += e.neg;
    }
  }

  let positive = 0;
  let negative = 0;
  let cappedNetworks = 0;
  for (const key of [...clusters.keys()].sort()) {
    const c = capped(clusters.get(key)!, REPUTATION.perNetworkCap);
    if (c.cut) cappedNetworks++;
    positive += c.e.pos;
    negative += c.e.neg;
  }
  const y = capped(young, REPUTATION.newcomerCap);
  positive += y.e.pos;
  negative += y.e.neg;

  const raw = (100 * positive) / (positive + REPUTATION.rejectionWeight * negative + REPUTATION.prior);
  return {
    score: Math.round(raw),
    raw,
    positive,
    negative,
    accepted,
    rejected,
    votes,
    counterparties: established + newcomers,
    established,
    newcomers,
    networks: clusters.size,
    capped: { submitters: cappedSubmitters, networks: cappedNetworks, newcomers: y.cut },
  };
}

/** Raw receipts (outcome and registry time) into vote groups. */
export function groupReceipts(receipts: Iterable<{ submitter: number; accepted: boolean; recordedAt: number }>): VoteGroup[] {
  const out = new Map<string, { submitter: number; week: number; accepted: number; rejected: number }>();
  for (const r of receipts) {
    const week = weekOf(r.recordedAt);
    const key = `${r.submitter}:${week}`;
    const g = out.get(key) ?? { submitter: r.submitter, week, accepted: 0, rejected: 0 };
    if (r.accepted) g.accepted++;
    else g.rejected++;
    out.set(key, g);
  }
  return [...out.values()];
}

/**
 * The network a key registered from, as the score groups submitters: the
 * IPv4 /24 or IPv6 /56 (the registration limits' networks). Private,
 * loopback, link-local, shared (CGNAT) and unique-local addresses give null:
 * such a node is a network of its own (a registry on a LAN serves machines
 * the operator can tell apart; on the Internet these addresses cannot reach it).
 */
export function originNetworkOf(ip: string | null | undefined): string | null {
  if (!ip) return null;
  const plain = unmapIpv4(ip);
  const parsed = parseIp(plain);
  if (!parsed.ok) return null;
  const b = parsed.value;
  if (b.length === 4) {
    const [x, y] = [b[0]!, b[1]!];
    if (x === 0 || x === 10 || x === 127 || (x === 169 && y === 254) || (x === 172 && y >= 16 && y <= 31) || (x === 192 && y === 168) || (x === 100 && y >= 64 && y <= 127)) return null;
    return addressPrefix(plain);
  }
  const first = b[0]!;
  const second = b[1]!;
  if (b.every((v, i) => (i < 15 ? v === 0 : v <= 1))) return null; // :: and ::1
  if ((first & 0xfe) === 0xfc) return null; // fc00::/7 unique local
  if (first === 0xfe && (second & 0xc0) === 0x80) return null; // fe80::/10 link local
  return addressPrefix(plain);
}

/**
 * A minimum score as an operator writes it (`tasks_min_score`): a whole
 * number from 0 to 100. Throws RangeError saying what is wrong.
 */
export function parseScoreThreshold(text: string): number {
  const t = text.trim();
  const n = /^[0-9]{1,3}$/.test(t) ? Number(t) : NaN;
  if (!(n >= 0 && n <= 100)) throw new RangeError(`"${text.slice(0, 20)}" is not a polo score (a whole number from 0 to 100)`);
  return n;
}
