/** Valid task messages of every kind, for the codec's tests and its fuzzer. */
import { EMPTY_SHA256, ReplyCode, TASK_LIMITS, type TaskMessage } from "../../src/protocol/tasks.ts";

export const ID = "0123456789abcdef0123456789abcdef";
export const SHA = "ab".repeat(32);
export const SIG = new Uint8Array(64).fill(7);

export const SAMPLES: TaskMessage[] = [
  { type: "submit", taskId: ID, acceptWithinMs: 600_000, deadlineMs: 3_600_000, inputSize: 12, inputSha256: SHA, inputName: "report.txt", description: "summarize\nthe report\tplease" },
  { type: "submit", taskId: ID, acceptWithinMs: 1, deadlineMs: 1, inputSize: 0, inputSha256: EMPTY_SHA256, inputName: "", description: "x" },
  { type: "update", taskId: ID, seq: 2, state: "accepted", at: 1_700_000_000_000, reason: "" },
  { type: "update", taskId: ID, seq: 3, state: "cancelled", at: 0, reason: "changed my mind — ünïcode" },
  { type: "result", taskId: ID, seq: 4, outcome: "succeeded", deliveredAt: 1_700_000_000_123, size: 5, sha256: SHA, signature: SIG, kind: "text", name: "" },
  { type: "result", taskId: ID, seq: 9, outcome: "failed", deliveredAt: Number.MAX_SAFE_INTEGER, size: TASK_LIMITS.payload, sha256: SHA, signature: SIG, kind: "file", name: "out.csv" },
  { type: "verdict", taskId: ID, seq: 3, outcome: "accepted", decidedAt: 1_700_000_000_999, signature: SIG, reason: "great" },
  { type: "verdict", taskId: ID, seq: 3, outcome: "rejected", decidedAt: 5, signature: SIG, reason: "" },
  { type: "data", bytes: new Uint8Array([1, 2, 3]) },
  { type: "data", bytes: new Uint8Array(TASK_LIMITS.chunk).fill(9) },
  { type: "reply", code: ReplyCode.Ok, state: "queued", message: "" },
  { type: "reply", code: ReplyCode.Quota, state: null, message: "you have 16 unfinished tasks here" },
];
