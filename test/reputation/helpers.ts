/**
 * Receipts for tests, signed with test identities' keys exactly as the task
 * service signs them (src/protocol/receipt.ts), and a test-only way to make
 * identities "registered long ago": the store is written before the
 * rendezvous process opens it (RegistryStore.createNode with an old time).
 * Nothing here is reachable over the network.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Identity } from "../../src/crypto/identity.ts";
import { resultStatementBytes, verdictStatementBytes, type ReceiptOutcome, type TaskReceipt } from "../../src/protocol/receipt.ts";
import { RegistryStore } from "../../src/registry/store.ts";
import { toBase64 } from "../../src/registry/wire.ts";

export const DAY = 86_400_000;

export interface Party {
  readonly id: number;
  readonly identity: { sign(message: Uint8Array): Uint8Array };
}

/** A receipt for a task `worker` did for `submitter`, signed by both (or as `tamper` says). */
export function signedReceipt(
  submitter: Party,
  worker: Party,
  options: { outcome?: ReceiptOutcome; taskId?: string; at?: number; result?: string } = {},
): TaskReceipt {
  const at = options.at ?? Date.now();
  const fields = {
    taskId: options.taskId ?? randomBytes(16).toString("hex"),
    submitter: submitter.id,
    worker: worker.id,
    resultSha256: createHash("sha256").update(options.result ?? "the result").digest("hex"),
    deliveredAt: at - 1000,
    outcome: options.outcome ?? "accepted",
    decidedAt: at,
  } as const;
  return {
    ...fields,
    workerSignature: worker.identity.sign(resultStatementBytes(fields)),
    submitterSignature: submitter.identity.sign(verdictStatementBytes(fields)),
  };
}

/**
 * Creates nodes in a registry store file before any rendezvous opens it, as
 * if each had registered at `registeredAt` from `ip`. Returns their ids, in
 * order; when the keys later `register`, they get these ids back.
 */
export function seedNodes(storePath: string, nodes: { identity: Identity; registeredAt: number; ip: string }[]): number[] {
  const store = RegistryStore.open(storePath);
  try {
    return store.transaction(() => nodes.map((n) => store.createNode(toBase64(n.identity.publicKey), n.registeredAt, n.ip).id));
  } finally {
    store.close();
  }
}
