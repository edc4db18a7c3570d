/**
 * Hands task receipts to the registry for seed004-a2a.test.ts, so that the
 * seed's discovery script prints real polo scores. Each receipt is signed
 * with the two daemons' own identity files, exactly as the task service
 * signs them (src/protocol/receipt.ts), and submitted by the submitter's node.
 *
 *   bun seed004_receipts.ts REGISTRY_HOST:PORT SUBMITTER_HOME:SUBMITTER_ID:WORKER_HOME:WORKER_ID:accepted|rejected ...
 *
 * Prints one JSON line per receipt: {task_id, submitter, worker, outcome, recorded}.
 */
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { loadOrCreateIdentity } from "../../src/crypto/identity.ts";
import { resultStatementBytes, verdictStatementBytes, type ReceiptOutcome } from "../../src/protocol/receipt.ts";
import { RegistryClient } from "../../src/registry/client.ts";

const [registry, ...specs] = process.argv.slice(2);
const [host, port] = (registry ?? "").split(":");
for (const spec of specs) {
  const [submitterHome, submitterId, workerHome, workerId, outcome] = spec.split(":");
  const submitter = loadOrCreateIdentity(join(submitterHome!, "identity.json")).identity;
  const worker = loadOrCreateIdentity(join(workerHome!, "identity.json")).identity;
  const now = Date.now();
  const fields = {
    taskId: randomBytes(16).toString("hex"),
    submitter: Number(submitterId),
    worker: Number(workerId),
    resultSha256: createHash("sha256").update(`result of ${spec}`).digest("hex"),
    deliveredAt: now - 1000,
    outcome: outcome as ReceiptOutcome,
    decidedAt: now,
  };
  const client = await RegistryClient.connect({ host: host!, port: Number(port), signer: submitter, nodeId: Number(submitterId) });
  try {
    const ack = await client.submitReceipt({
      ...fields,
      workerSignature: worker.sign(resultStatementBytes(fields)),
      submitterSignature: submitter.sign(verdictStatementBytes(fields)),
    });
    console.log(JSON.stringify(ack));
  } finally {
    client.close();
  }
}
