/**
 * Task receipts: the only thing that moves a reputation (the polo score). A
 * receipt binds one real task between two nodes and is signed by both:
 *
 *   - the worker signs its RESULT when it delivers it: (task id, submitter,
 *     worker, result hash, delivered_at). It cannot later deny the result, and
 *     it cannot dodge a verdict by withholding a signature afterwards;
 *   - the submitter signs its VERDICT over the worker's signed result:
 *     (task id, submitter, worker, result hash, delivered_at, outcome, decided_at).
 *
 * The registry verifies both against the registered keys and stores each
 * receipt once (by task id and the two nodes). Pure encode/decode: the bytes each
 * side signs are defined here, signing and verifying use crypto/identity.ts.
 *
 *   resultStatementBytes(r)   what the worker signs
 *   verdictStatementBytes(r)  what the submitter signs
 *   checkReceiptFields(r)     structural checks (ids, hashes, times, outcome); no crypto
 */

export type ReceiptOutcome = "accepted" | "rejected";

export interface TaskReceipt {
  /** 16 random bytes chosen by the submitter, as 32 lowercase hex characters. */
  readonly taskId: string;
  /** Node ids (network 0). */
  readonly submitter: number;
  readonly worker: number;
  /** SHA-256 of the result as delivered, 64 lowercase hex characters. */
  readonly resultSha256: string;
  /** When the worker delivered the result (ms since the epoch, its clock). */
  readonly deliveredAt: number;
  readonly outcome: ReceiptOutcome;
  /** When the submitter decided (ms since the epoch, its clock). */
  readonly decidedAt: number;
  /** Ed25519 signatures (64 bytes each). */
  readonly workerSignature: Uint8Array;
  readonly submitterSignature: Uint8Array;
}

const RESULT_DOMAIN = new TextEncoder().encode("pilot-task-result-v1\n");
const VERDICT_DOMAIN = new TextEncoder().encode("pilot-task-verdict-v1\n");
const HEX32 = /^[0-9a-f]{32}$/;
const HEX64 = /^[0-9a-f]{64}$/;

function hexBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function core(domain: Uint8Array, r: Pick<TaskReceipt, "taskId" | "submitter" | "worker" | "resultSha256" | "deliveredAt">, extra: number): { out: Uint8Array; view: DataView; at: number } {
  const out = new Uint8Array(domain.length + 16 + 4 + 4 + 32 + 8 + extra);
  const view = new DataView(out.buffer);
  let at = 0;
  out.set(domain, at);
  at += domain.length;
  out.set(hexBytes(r.taskId), at);
  at += 16;
  view.setUint32(at, r.submitter);
  at += 4;
  view.setUint32(at, r.worker);
  at += 4;
  out.set(hexBytes(r.resultSha256), at);
  at += 32;
  view.setBigUint64(at, BigInt(r.deliveredAt));
  at += 8;
  return { out, view, at };
}

/** The bytes the worker signs when it delivers its result. Call checkReceiptFields first. */
export function resultStatementBytes(r: Pick<TaskReceipt, "taskId" | "submitter" | "worker" | "resultSha256" | "deliveredAt">): Uint8Array {
  return core(RESULT_DOMAIN, r, 0).out;
}

/** The bytes the submitter signs for its verdict (they include everything the worker signed). */
export function verdictStatementBytes(r: Pick<TaskReceipt, "taskId" | "submitter" | "worker" | "resultSha256" | "deliveredAt" | "outcome" | "decidedAt">): Uint8Array {
  const { out, view, at } = core(VERDICT_DOMAIN, r, 1 + 8);
  out[at] = r.outcome === "accepted" ? 1 : 2;
  view.setBigUint64(at + 1, BigInt(r.decidedAt));
  return out;
}

/** Structural checks of a receipt's fields (no signatures): a reason, or null when well formed. */
export function checkReceiptFields(r: Partial<TaskReceipt>): string | null {
  if (typeof r.taskId !== "string" || !HEX32.test(r.taskId)) return "task id must be 32 lowercase hex characters";
  for (const [name, id] of [["submitter", r.submitter], ["worker", r.worker]] as const) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 1 || id > 0xffff_ffff) return `${name} must be a node id`;
  }
  if (r.submitter === r.worker) return "a node cannot rate itself";
  if (typeof r.resultSha256 !== "string" || !HEX64.test(r.resultSha256)) return "result hash must be 64 lowercase hex characters";
  for (const [name, t] of [["delivered_at", r.deliveredAt], ["decided_at", r.decidedAt]] as const) {
    if (typeof t !== "number" || !Number.isSafeInteger(t) || t < 0) return `${name} must be a time in ms`;
  }
  if (r.decidedAt! < r.deliveredAt! - 5 * 60_000) return "decided before the result was delivered";
  if (r.outcome !== "accepted" && r.outcome !== "rejected") return 'outcome must be "accepted" or "rejected"';
  for (const [name, sig] of [["worker signature", r.workerSignature], ["submitter signature", r.submitterSignature]] as const) {
    if (!(sig instanceof Uint8Array) || sig.length !== 64) return `${name} must be 64 bytes`;
  }
  return null;
}
