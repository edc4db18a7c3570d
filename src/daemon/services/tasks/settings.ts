/**
 * The task service's limits and timers. Limits come from built-in defaults,
 * overridden by `$PILOT_HOME/config.json` (keys `tasks_max_per_peer`,
 * `tasks_max_total`, `tasks_min_score`, read again whenever the file changes,
 * so `pilot config --set` applies without a restart), overridden in turn by
 * the options a test passes.
 */
import { readFileSync, statSync } from "node:fs";
import { DEFAULT_COURIER_TIMERS, type CourierTimers } from "./courier.ts";

export interface TaskLimits {
  /** Unfinished tasks (queued, accepted, running) from one submitter. */
  readonly maxActivePerPeer: number;
  /** Unfinished tasks from all untrusted submitters together. */
  readonly maxActiveStrangers: number;
  /** Unfinished received tasks in all. */
  readonly maxActiveTotal: number;
  /** Input bytes of unfinished tasks from one submitter. */
  readonly maxBytesPerPeer: number;
  /** Input bytes of received tasks kept on disk (finished tasks' inputs are dropped first to make room). */
  readonly maxBytesTotal: number;
  /** Payloads being received at once, from one peer and in all. */
  readonly maxUploadsPerPeer: number;
  readonly maxUploadsTotal: number;
  /** Task streams open with one peer and in all. */
  readonly maxLinksPerPeer: number;
  readonly maxLinksTotal: number;
  /** Finished tasks kept per role, and for how long. */
  readonly historyCount: number;
  readonly historyMs: number;
  /** Score an untrusted submitter needs (0: none). */
  readonly minScore: number;
}

export const DEFAULT_TASK_LIMITS: TaskLimits = {
  maxActivePerPeer: 16,
  maxActiveStrangers: 64,
  maxActiveTotal: 256,
  maxBytesPerPeer: 64 * 1024 * 1024,
  maxBytesTotal: 512 * 1024 * 1024,
  maxUploadsPerPeer: 2,
  maxUploadsTotal: 16,
  maxLinksPerPeer: 4,
  maxLinksTotal: 256,
  historyCount: 1000,
  historyMs: 30 * 24 * 3_600_000,
  minScore: 0,
};

export interface TaskTimers extends CourierTimers {
  /** How often deadlines, retries and receipts are looked at. */
  readonly tickMs: number;
  /** A submitter waits this long past a deadline before it expires a task the worker has (its clock started later). */
  readonly graceMs: number;
  /** `task_submit` waits this long for the first delivery attempt before answering "queued". */
  readonly submitWaitMs: number;
  /** Dial timeout for task streams. */
  readonly dialTimeoutMs: number;
  /** Receipt submission backoff. */
  readonly receiptRetryMinMs: number;
  readonly receiptRetryMaxMs: number;
  /** Undeliverable messages are dropped after this long. */
  readonly outboxMaxAgeMs: number;
}

export const DEFAULT_TASK_TIMERS: TaskTimers = {
  ...DEFAULT_COURIER_TIMERS,
  tickMs: 1000,
  graceMs: 2 * 60_000,
  submitWaitMs: 5000,
  dialTimeoutMs: 8000,
  receiptRetryMinMs: 5000,
  receiptRetryMaxMs: 10 * 60_000,
  outboxMaxAgeMs: 60 * 24 * 3_600_000,
};

/** Config keys the task service reads, with their bounds. */
const CONFIG_LIMITS = {
  tasks_max_per_peer: { field: "maxActivePerPeer", min: 1, max: 10_000 },
  tasks_max_total: { field: "maxActiveTotal", min: 1, max: 100_000 },
  tasks_min_score: { field: "minScore", min: 0, max: 1_000_000_000 },
} as const;

/** Limits from a config file's keys over `base` (bad values are ignored: `pilot config` refuses them anyway). */
export function limitsFromConfig(config: Record<string, unknown>, base: TaskLimits): TaskLimits {
  const out: Record<string, number> = { ...base };
  for (const [key, spec] of Object.entries(CONFIG_LIMITS)) {
    const raw = config[key];
    if (raw === undefined) continue;
    const n = typeof raw === "number" ? raw : typeof raw === "string" && /^[0-9]{1,12}(\.[0-9]{1,6})?$/.test(raw.trim()) ? Number(raw) : NaN;
    if (!Number.isFinite(n) || n < spec.min || n > spec.max) continue;
    out[spec.field] = spec.field === "minScore" ? n : Math.floor(n);
  }
  if (config.tasks_max_total !== undefined) out.maxActiveStrangers = Math.max(1, Math.floor(out.maxActiveTotal! / 4));
  return out as unknown as TaskLimits;
}

/** Reads the limits from a config file when it changed (checked at most once a second). */
export class LimitsSource {
  private cached: TaskLimits;
  private mtime = -1;
  private checkedAt = 0;

  constructor(
    private readonly configFile: string | null,
    private readonly base: TaskLimits,
    private readonly now: () => number,
  ) {
    this.cached = base;
  }

  get(): TaskLimits {
    if (!this.configFile) return this.cached;
    const now = this.now();
    if (now - this.checkedAt < 1000 && this.mtime !== -1) return this.cached;
    this.checkedAt = now;
    let mtime: number;
    try {
      mtime = statSync(this.configFile).mtimeMs;
    } catch {
      mtime = 0;
    }
    if (mtime === this.mtime) return this.cached;
    this.mtime = mtime;
    let config: Record<string, unknown> = {};
    if (mtime !== 0) {
      try {
        const parsed = JSON.parse(readFileSync(this.configFile, "utf8"));
        if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) config = parsed;
      } catch {
        // a damaged config: keep the defaults (pilot config reports the damage)
      }
    }
    this.cached = limitsFromConfig(config, this.base);
    return this.cached;
  }
}

/** Timers from the environment (tests and operators): PILOT_TASKS_POLL_MS, how often a submitter checks on its workers. */
export function timersFromEnv(env: Record<string, string | undefined> = process.env): Partial<TaskTimers> {
  const poll = Number(env.PILOT_TASKS_POLL_MS);
  return Number.isInteger(poll) && poll >= 100 ? { pollMs: poll } : {};
}
