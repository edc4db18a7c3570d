/**
 * Task receipts at the registry: their JSON form on the wire (client and
 * server), the freshness rule, and the check of both signatures against the
 * parties' registered keys. The signed bytes are src/protocol/receipt.ts's.
 *
 *   receiptToWire(r) / receiptFromWire(json)   snake_case object, signatures in base64
 *   receiptFreshness(r, now)                   decided_at within [now - 7 d, now + 5 min]
 *   receiptSignaturesValid(r, workerKey, submitterKey)
 */
import { checkReceiptFields, resultStatementBytes, verdictStatementBytes, type TaskReceipt } from "../protocol/receipt.ts";
import type { Check } from "./rules.ts";
import { verifyEd25519 } from "./signer.ts";
import { fromBase64, toBase64 } from "./wire.ts";

/** A receipt decided longer ago than this is refused (a daemon that was offline retries well within it). */
export const RECEIPT_MAX_AGE_MS = 7 * 86_400_000;
/** How far in the future (by the registry's clock) a receipt's times may be: the parties' clocks drift. */
export const RECEIPT_CLOCK_SKEW_MS = 5 * 60_000;
/** Receipts kept per (submitter, worker, week): more are refused, and would count as one vote anyway. */
export const RECEIPTS_PER_PAIR_PER_WEEK = 16;

export const RECEIPT_WIRE_FIELDS = ["task_id", "submitter", "worker", "result_sha256", "delivered_at", "outcome", "decided_at", "worker_sig", "submitter_sig"] as const;

export function receiptToWire(r: TaskReceipt): Record<string, unknown> {
  return {
    task_id: r.taskId,
    submitter: r.submitter,
    worker: r.worker,
    result_sha256: r.resultSha256,
    delivered_at: r.deliveredAt,
    outcome: r.outcome,
    decided_at: r.decidedAt,
    worker_sig: toBase64(r.workerSignature),
    submitter_sig: toBase64(r.submitterSignature),
  };
}

/** Parses the wire form strictly (no unknown or missing fields), then checkReceiptFields. */
export function receiptFromWire(value: unknown): Check<TaskReceipt> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return { ok: false, message: "receipt must be an object" };
  const m = value as Record<string, unknown>;
  for (const key of Object.keys(m)) {
    if (!(RECEIPT_WIRE_FIELDS as readonly string[]).includes(key)) return { ok: false, message: `unknown receipt field "${key.slice(0, 32)}"` };
  }
  for (const key of RECEIPT_WIRE_FIELDS) if (!(key in m)) return { ok: false, message: `receipt needs "${key}"` };
  const workerSignature = fromBase64(m.worker_sig, 64);
  const submitterSignature = fromBase64(m.submitter_sig, 64);
  if (!workerSignature) return { ok: false, message: "worker_sig must be a 64-byte Ed25519 signature in base64" };
  if (!submitterSignature) return { ok: false, message: "submitter_sig must be a 64-byte Ed25519 signature in base64" };
  const r = {
    taskId: m.task_id,
    submitter: m.submitter,
    worker: m.worker,
    resultSha256: m.result_sha256,
    deliveredAt: m.delivered_at,
    outcome: m.outcome,
    decidedAt: m.decided_at,
    workerSignature,
    submitterSignature,
  } as Partial<TaskReceipt>;
  const problem = checkReceiptFields(r);
  return problem === null ? { ok: true, value: r as TaskReceipt } : { ok: false, message: problem };
}

/** null when the receipt's times fit the registry's clock, else why not. */
export function receiptFreshness(r: Pick<TaskReceipt, "deliveredAt" | "decidedAt">, now: number): string | null {
  if (r.decidedAt > now + RECEIPT_CLOCK_SKEW_MS || r.deliveredAt > now + RECEIPT_CLOCK_SKEW_MS) {
    return `the receipt is dated in the future (registry time ${now}); check the parties' clocks`;
  }
  if (r.decidedAt < now - RECEIPT_MAX_AGE_MS) return `the receipt was decided more than ${RECEIPT_MAX_AGE_MS / 86_400_000} days ago`;
  return null;
}

/**
 * Both signatures, each by its own party's key: the worker's over its result
 * statement, the submitter's over its verdict statement.
 */
export function receiptSignaturesValid(r: TaskReceipt, workerKey: Uint8Array, submitterKey: Uint8Array): boolean {
  const worker = verifyEd25519(workerKey, resultStatementBytes(r), r.workerSignature);
  const submitter = verifyEd25519(submitterKey, verdictStatementBytes(r), r.submitterSignature);
  return worker && submitter;
}

/** Same task, same verdict: a resubmission of a stored receipt (the signatures are deterministic anyway). */
export function sameReceipt(a: TaskReceipt, b: TaskReceipt): boolean {
  return (
    a.taskId === b.taskId &&
    a.submitter === b.submitter &&
    a.worker === b.worker &&
    a.resultSha256 === b.resultSha256 &&
    a.deliveredAt === b.deliveredAt &&
    a.outcome === b.outcome &&
    a.decidedAt === b.decidedAt
  );
}
