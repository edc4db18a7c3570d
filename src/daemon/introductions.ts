/**
 * Introductions: a handshake from a node we hold no key for decrypted (the
 * router reported it as an unknown initiator), so its key must be fetched
 * from the registry before we can answer. Every such lookup spends this
 * node's own request budget at the registry (per node: 10/s, burst 50; see
 * src/registry/service.ts), and any stranger can claim any node id, so the
 * lookups strangers cause get a small budget of their own and the node's own
 * calls (find, set-tags, trust, dials) always keep most of the registry's.
 *
 *   const intro = new Introductions(limits?)
 *   await intro.run(node, key, now, lookup) -> "found" | "missing" | "failed" | "refused"
 *   intro.mayRefresh(now): boolean      a re-lookup of an untrusted peer (refreshPeer) from the same budget
 *   introductionKey(endpoint)           the key strangers are counted by: their source address
 *
 * Before `lookup` runs, in order:
 *   - a negative answer for this node under this key is cached (`negativeTtl`,
 *     at most `maxNegative` entries): refused without asking;
 *   - the same node's lookup already running: this introduction waits for it
 *     (at most `maxJoinersPerNode` waiting), no new request;
 *   - at most `maxConcurrent` lookups at a time;
 *   - a token from the key's bucket and one from the daemon-wide bucket.
 * Not found, unreachable or refused answers are cached as negative; transient
 * failures (registry unreachable, rate limited, timeout) are not.
 *
 * The data plane keeps two: strangers, counted by source address (IPv4
 * address, IPv6 /64, relayed node), and trusted nodes, counted per node with
 * a short negative cache (anyone can claim a trusted node's id, and a trusted
 * node that is offline does not resolve; when it comes back it must not wait
 * long). Strangers cannot spend the trusted budget, nor the other way round.
 * `now` is the caller's clock (ms); the gate never reads one.
 */
import { sourceAddress } from "../tunnel/handshake-guard.ts";
import { BucketTable, TokenBucket } from "../tunnel/rate-limit.ts";
import type { Address } from "../protocol/address.ts";

export interface IntroductionLimits {
  /**
   * Registry lookups per second, daemon-wide, and burst. The registry allows a node 10/s,
   * burst 50; strangers (3/s, 15) and trusted nodes (2/s, 10) together leave the node's own
   * calls at least 5/s and a burst of 25.
   */
  readonly lookupRate: number;
  readonly lookupBurst: number;
  /** Lookups per second under one key (a stranger's source address, a trusted node), and burst. */
  readonly perSourceRate: number;
  readonly perSourceBurst: number;
  readonly maxConcurrent: number;
  readonly maxJoinersPerNode: number;
  /** How long (ms) a negative answer is remembered, and how many. */
  readonly negativeTtl: number;
  readonly maxNegative: number;
  /** Most source addresses the per-source buckets remember. */
  readonly maxSources: number;
}

export const DEFAULT_INTRODUCTION_LIMITS: IntroductionLimits = {
  lookupRate: 3,
  lookupBurst: 15,
  perSourceRate: 1,
  perSourceBurst: 5,
  maxConcurrent: 8,
  maxJoinersPerNode: 2,
  negativeTtl: 60_000,
  maxNegative: 4_096,
  maxSources: 4_096,
};

/** Introductions of trusted nodes (keyed per node): see the module comment. */
export const TRUSTED_INTRODUCTION_LIMITS: IntroductionLimits = {
  ...DEFAULT_INTRODUCTION_LIMITS,
  lookupRate: 2,
  lookupBurst: 10,
  perSourceRate: 0.5,
  perSourceBurst: 2,
  maxConcurrent: 4,
  negativeTtl: 5_000,
};

/** The key a stranger's introductions are counted by: its source address. */
export function introductionKey(endpoint: string): string {
  return sourceAddress(endpoint);
}

export type IntroductionOutcome = "found" | "missing" | "failed" | "refused";

export interface IntroductionStats {
  lookups: number;
  found: number;
  missing: number;
  failed: number;
  /** Refused before any lookup: negative cache, budgets, concurrency. */
  cachedMissing: number;
  throttled: number;
  busy: number;
  joined: number;
  /** Re-lookups of untrusted peers refused by the budget. */
  refreshesThrottled: number;
}

/** Error codes that mean "this node is not for us", as opposed to "try again later". */
const PERMANENT = new Set(["not_found", "unreachable", "unauthorized", "invalid_argument", "not_trusted"]);

export class Introductions {
  readonly limits: IntroductionLimits;
  readonly stats: IntroductionStats = { lookups: 0, found: 0, missing: 0, failed: 0, cachedMissing: 0, throttled: 0, busy: 0, joined: 0, refreshesThrottled: 0 };
  private readonly total: TokenBucket;
  private readonly perSource: BucketTable;
  private readonly negative = new Map<string, number>();
  private readonly running = new Map<Address, { promise: Promise<IntroductionOutcome>; joiners: number }>();

  constructor(limits: Partial<IntroductionLimits> = {}) {
    const l = (this.limits = { ...DEFAULT_INTRODUCTION_LIMITS, ...limits });
    this.total = new TokenBucket(l.lookupRate, l.lookupBurst);
    this.perSource = new BucketTable(l.perSourceRate, l.perSourceBurst, l.maxSources);
  }

  /** Entries held (for tests and `info`): all bounded. */
  get sizes(): { negative: number; running: number; sources: number } {
    return { negative: this.negative.size, running: this.running.size, sources: this.perSource.size };
  }

  /** May an untrusted peer's entry be fetched again now (from the strangers' budget)? */
  mayRefresh(now: number): boolean {
    if (this.total.take(now)) return true;
    this.stats.refreshesThrottled++;
    return false;
  }

  /**
   * Looks `node` up with `lookup` (which resolves when its key is pinned and
   * rejects with a NodeError-like `{ code }`), unless a limit says no.
   */
  async run(node: Address, rateKey: string, now: number, lookup: () => Promise<void>): Promise<IntroductionOutcome> {
    const key = `${node}@${rateKey}`;
    const until = this.negative.get(key);
    if (until !== undefined) {
      if (until > now) {
        this.stats.cachedMissing++;
        return "refused";
      }
      this.negative.delete(key);
    }
    const running = this.running.get(node);
    if (running) {
      if (running.joiners >= this.limits.maxJoinersPerNode) {
        this.stats.busy++;
        return "refused";
      }
      running.joiners++;
      this.stats.joined++;
      return running.promise;
    }
    if (this.running.size >= this.limits.maxConcurrent) {
      this.stats.busy++;
      return "refused";
    }
    if (!this.perSource.take(rateKey, now) || !this.total.take(now)) {
      this.stats.throttled++;
      return "refused";
    }
    this.stats.lookups++;
    const promise = lookup().then(
      () => {
        this.stats.found++;
        return "found" as const;
      },
      (e: unknown) => {
        const code = (e as { code?: unknown } | null)?.code;
        if (typeof code === "string" && PERMANENT.has(code)) {
          this.stats.missing++;
          this.rememberMissing(key, now);
          return "missing" as const;
        }
        this.stats.failed++;
        return "failed" as const;
      },
    );
    this.running.set(node, { promise, joiners: 0 });
    try {
      return await promise;
    } finally {
      this.running.delete(node);
    }
  }

  private rememberMissing(key: string, now: number): void {
    if (this.negative.size >= this.limits.maxNegative) {
      for (const [k, until] of this.negative) {
        if (until <= now || this.negative.size >= this.limits.maxNegative) this.negative.delete(k);
        else break;
      }
    }
    this.negative.set(key, now + this.limits.negativeTtl);
  }
}
