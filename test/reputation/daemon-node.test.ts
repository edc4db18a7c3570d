/**
 * The daemon's side of reputation, in-process (a real daemon's DaemonNode
 * against a real rendezvous process): submitReceipt hands receipts to the
 * registry (idempotently), reputationOf reads scores for services (null for a
 * node it may not see), and the `reputation` method explains one.
 */
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { loadOrCreateIdentity } from "../../src/crypto/identity.ts";
import { NodeError } from "../../src/daemon/local-node.ts";
import { startDaemon, type RunningDaemon } from "../../src/daemon/run.ts";
import { addressOf, nodeOf } from "../../src/protocol/address.ts";
import { newNode, startRendezvous, stopAll, tempDir } from "../registry/helpers.ts";
import { signedReceipt } from "./helpers.ts";

const daemons: RunningDaemon[] = [];
afterAll(async () => {
  for (const d of daemons) await d.stop().catch(() => {});
  await stopAll();
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return e instanceof NodeError ? e.code : String(e);
  }
}

test("submitReceipt goes to the registry once; reputationOf and reputation read the score", async () => {
  const r = await startRendezvous();
  const home = join(tempDir(), "daemon");
  const daemon = await startDaemon({ home, registry: { host: r.host, port: r.port }, beacon: null, listen: { host: "127.0.0.1", port: 0 }, logLevel: "error" });
  daemons.push(daemon);
  const me = { id: nodeOf(daemon.node.address), identity: loadOrCreateIdentity(join(home, "identity.json")).identity };
  const worker = await newNode(r, { public: true }, { subscribe: false });
  const hidden = await newNode(r, {}, { subscribe: false });
  const workerAddress = addressOf(0, worker.id);

  expect(await daemon.node.reputationOf(workerAddress)).toBe(0);
  const receipt = signedReceipt(me, worker);
  await daemon.node.submitReceipt(receipt);
  await daemon.node.submitReceipt(receipt); // again (a resend): fine, counted once
  expect(await daemon.node.reputationOf(workerAddress)).toBe(1); // the cache was dropped for this worker
  expect((await worker.client.reputation(worker.id)).receipts.as_worker).toBe(1);
  expect(await codeOf(daemon.node.submitReceipt({ ...signedReceipt(me, worker), workerSignature: new Uint8Array(64) }))).toBe("unauthorized");
  expect(await codeOf(daemon.node.submitReceipt(signedReceipt(me, worker, { taskId: receipt.taskId, outcome: "rejected" })))).toBe("already_exists");

  // A private node it has no business seeing: null, not an error.
  expect(await daemon.node.reputationOf(addressOf(0, hidden.id))).toBeNull();
  expect(await daemon.node.reputationOf(addressOf(0, 99_999))).toBeNull();

  const explained = (await daemon.node.call("reputation", { target: String(worker.id) })) as any;
  expect(explained).toMatchObject({ node_id: worker.id, polo_score: 1, receipts: { accepted: 1, rejected: 0 }, counterparties: { total: 1, newcomers: 1 }, evidence: { positive: 0.05, negative: 0 } });
  // As a submitter the worker is a newcomer; its standing already moved off the floor (its base score is 2: 0.5 + 0.5 * 2/50).
  expect(explained.as_submitter).toMatchObject({ established: false, age_factor: 0.1, standing: 0.52, weight: 0.052 });
  expect(await codeOf(daemon.node.call("reputation", { target: String(hidden.id) }))).toBe("not_found");

  // The registry away: reputationOf says null (services then treat the node as unscored), submitReceipt fails so the caller retries.
  await r.stop();
  expect(await daemon.node.reputationOf(addressOf(0, hidden.id + 1000))).toBeNull();
  expect(await codeOf(daemon.node.submitReceipt(signedReceipt(me, worker)))).toBe("registry_unavailable");
}, 60_000);
