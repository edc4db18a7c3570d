/**
 * The registry's scores: reputation.ts's pure computation fed from the store,
 * with a cache so that a search of 50 nodes costs 50 map reads.
 *
 * A node's score needs its vote groups (one indexed range read) and, for each
 * of its submitters, that submitter's base score (its own vote groups, every
 * standing taken as 1). Scores are cached for SCORE_TTL_MS and bases for
 * BASE_TTL_MS (only time moves them between receipts, and slowly: an hour
 * changes an age factor by 0.00125), and both are dropped at once when a
 * receipt changes them: a new receipt for W drops W's base and score, and the
 * scores of every worker W has rated (W's standing as their submitter may
 * have moved).
 *
 * Work per computation is bounded: at most MAX_GROUPS vote groups are read for
 * a score and MAX_BASE_GROUPS for a base (the newest; with the per-submitter
 * and per-network caps a node with that many has long reached its plateau,
 * and standing is full from a base of 50). scripts/bench/reputation.ts
 * measures a busy worker.
 */
import type { RegistryStorage } from "./storage.ts";
import { ageFactor, isEstablished, REPUTATION, scoreWorker, standingFrom, weekOf, type Rater, type ScoreBreakdown } from "./reputation.ts";

export const SCORE_TTL_MS = 60_000;
export const BASE_TTL_MS = 3_600_000;
const CACHE_MAX = 50_000;
const MAX_GROUPS = 4096;
const MAX_BASE_GROUPS = 256;
/** Beyond this many workers rated by one node, a new receipt for it clears every cached score. */
const CASCADE_MAX = 10_000;

interface Cached<T> {
  readonly at: number;
  readonly value: T;
}

class TtlCache<T> {
  private readonly map = new Map<number, Cached<T>>();

  constructor(private readonly ttlMs: number) {}

  get(key: number, now: number): T | undefined {
    const c = this.map.get(key);
    if (!c) return undefined;
    if (now - c.at >= this.ttlMs || now < c.at) {
      this.map.delete(key);
      return undefined;
    }
    return c.value;
  }

  set(key: number, value: T, now: number): void {
    this.map.delete(key);
    this.map.set(key, { at: now, value });
    if (this.map.size > CACHE_MAX) this.map.delete(this.map.keys().next().value!);
  }

  delete(key: number): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }
}

/** A score with what `reputation` explains about it. */
export interface Reputation extends ScoreBreakdown {
  readonly computedAt: number;
}

export class ReputationBook {
  private readonly scores = new TtlCache<Reputation>(SCORE_TTL_MS);
  private readonly bases = new TtlCache<number>(BASE_TTL_MS);

  constructor(private readonly store: RegistryStorage) {}

  /**
   * The node's polo score (0-100, one decimal). `rated: false` says the store was just asked
   * (LookupRows.rated, from week ratedSince(now) on) and holds no receipts for it as a worker: it
   * scores 0 without reading them.
   */
  async score(node: number, now: number, rated?: boolean): Promise<number> {
    if (rated === false && !this.scores.get(node, now)) {
      const value = { ...scoreWorker([], () => undefined, now), computedAt: now };
      this.scores.set(node, value, now);
      return value.score;
    }
    return (await this.reputation(node, now)).score;
  }

  /** The first week whose receipts count at `now`. */
  ratedSince(now: number): number {
    return this.firstWeek(now);
  }

  /**
   * The scores of several nodes (a search's results): the ones with no receipts in the horizon,
   * found with one query, score 0 without reading their vote groups.
   */
  async scoresOf(nodes: readonly number[], now: number): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    const missing: number[] = [];
    for (const n of nodes) {
      const hit = this.scores.get(n, now);
      if (hit) out.set(n, hit.score);
      else missing.push(n);
    }
    if (missing.length > 1) {
      const rated = new Set(await this.store.workersWithReceipts(missing, this.firstWeek(now)));
      for (const n of missing) {
        if (rated.has(n)) continue;
        const value = { ...scoreWorker([], () => undefined, now), computedAt: now };
        this.scores.set(n, value, now);
        out.set(n, value.score);
      }
    }
    for (const n of missing) if (!out.has(n)) out.set(n, await this.score(n, now));
    return out;
  }

  /** The node's score and its breakdown. */
  async reputation(node: number, now: number): Promise<Reputation> {
    const hit = this.scores.get(node, now);
    if (hit) return hit;
    const rows = await this.store.voteGroups(node, this.firstWeek(now), MAX_GROUPS);
    const raters = new Map<number, Rater>();
    for (const r of rows) {
      if (!raters.has(r.submitter)) raters.set(r.submitter, { registeredAt: r.registeredAt, network: r.originNet, standing: standingFrom(await this.base(r.submitter, now)) });
    }
    const value = { ...scoreWorker(rows, (s) => raters.get(s), now), computedAt: now };
    this.scores.set(node, value, now);
    return value;
  }

  /** What a node's own verdicts weigh now, as a submitter. */
  async asRater(node: { id: number; registeredAt: number }, now: number): Promise<{ ageFactor: number; established: boolean; standing: number; weight: number }> {
    const age = ageFactor(node.registeredAt, now);
    const standing = standingFrom(await this.base(node.id, now));
    return { ageFactor: age, established: isEstablished(node.registeredAt, now), standing, weight: age * standing };
  }

  /** A new receipt for `worker` was stored: drop every cached value it changes. */
  async recorded(worker: number): Promise<void> {
    this.bases.delete(worker);
    this.scores.delete(worker);
    const rated = await this.store.workersRatedBy(worker, CASCADE_MAX + 1);
    if (rated.length > CASCADE_MAX) this.scores.clear();
    else for (const w of rated) this.scores.delete(w);
  }

  /** Everything may have changed (receipts pruned). */
  clear(): void {
    this.scores.clear();
    this.bases.clear();
  }

  /** The node's score as a worker with every submitter's standing taken as 1 (what standing is made of). */
  private async base(node: number, now: number): Promise<number> {
    const hit = this.bases.get(node, now);
    if (hit !== undefined) return hit;
    const rows = await this.store.voteGroups(node, this.firstWeek(now), MAX_BASE_GROUPS);
    const raters = new Map<number, Rater>();
    for (const r of rows) raters.set(r.submitter, { registeredAt: r.registeredAt, network: r.originNet, standing: 1 });
    const value = scoreWorker(rows, (s) => raters.get(s), now).raw;
    this.bases.set(node, value, now);
    return value;
  }

  private firstWeek(now: number): number {
    return weekOf(now) - REPUTATION.horizonWeeks + 1;
  }
}
