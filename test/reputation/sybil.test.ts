/**
 * The sybil test of issue 11 against a real `pilot rendezvous` process:
 * twenty fresh identities that only rate each other (every one of them every
 * other one, three times over) end with scores below one honest worker's with
 * five genuine receipts from established submitters. "Established" is made
 * the only way a test can: their keys are written into the registry's store
 * as registered 60 days ago, before the process opens it (helpers.ts
 * seedNodes; nothing on the network can do that). Then the same over the
 * wire: replays and one-sided receipts refused, scores surviving a restart.
 */
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { codeOf, newNode, startRendezvous, stopAll, tempDir, type TestNode } from "../registry/helpers.ts";
import { DAY, seedNodes, signedReceipt } from "./helpers.ts";

afterAll(stopAll);

test("a ring of 20 sybils rating each other ends below an honest worker with five genuine receipts", async () => {
  const dir = tempDir();
  const established = Array.from({ length: 5 }, () => generateIdentity());
  // Five customers who registered two months ago, each from its own network.
  seedNodes(
    join(dir, "registry.db"),
    established.map((identity, i) => ({ identity, registeredAt: Date.now() - 60 * DAY, ip: `198.51.${100 + i}.20` })),
  );
  const r = await startRendezvous({ dir });
  const customers = await Promise.all(established.map((identity) => newNode(r, {}, { identity, subscribe: false })));
  const honest = await newNode(r, { public: true, hostname: `honest-${process.pid}` }, { subscribe: false });
  for (const c of customers) expect((await c.client.submitReceipt(signedReceipt({ id: c.id, identity: c.identity }, honest))).recorded).toBe(true);

  // The ring: 20 new keys, each rating each of the 19 others, three tasks per pair.
  const ring: TestNode[] = [];
  for (let i = 0; i < 20; i++) ring.push(await newNode(r, { public: true }, { subscribe: false }));
  for (const s of ring) {
    const receipts = [];
    for (const w of ring) if (w !== s) for (let k = 0; k < 3; k++) receipts.push(s.client.submitReceipt(signedReceipt(s, w)));
    expect((await Promise.all(receipts)).every((a) => a.recorded)).toBe(true);
  }

  const viewer = await newNode(r, {}, { subscribe: false });
  const honestScore = (await viewer.client.lookup(honest.id)).polo_score;
  const ringScores = (await viewer.client.scores(ring.map((n) => n.id))).map((s) => s.polo_score);
  expect(honestScore).toBe(33);
  expect(ringScores).toHaveLength(20);
  expect(Math.max(...ringScores)).toBeLessThan(honestScore);
  expect(Math.max(...ringScores)).toBeLessThanOrEqual(9); // all newcomers together count 0.5 at most
  const sybil = await viewer.client.reputation(ring[0]!.id);
  expect(sybil).toMatchObject({ receipts: { accepted: 57, rejected: 0, counted_votes: 19 }, counterparties: { total: 19, established: 0, newcomers: 19 }, capped: { newcomers: true } });
  const genuine = await viewer.client.reputation(honest.id);
  expect(genuine).toMatchObject({ polo_score: 33, counterparties: { total: 5, established: 5, networks: 5 }, evidence: { positive: 2.5, negative: 0 } });

  // Replayed: acknowledged, not counted again. Signed by one side only: refused.
  const c0 = customers[0]!;
  const receipt = signedReceipt({ id: c0.id, identity: c0.identity }, honest, { taskId: "ab".repeat(16) });
  expect((await c0.client.submitReceipt(receipt)).recorded).toBe(true);
  const once = (await viewer.client.lookup(honest.id)).polo_score;
  expect((await honest.client.submitReceipt(receipt)).recorded).toBe(false);
  expect((await c0.client.submitReceipt(receipt)).recorded).toBe(false);
  expect(await codeOf(c0.client.submitReceipt({ ...receipt, taskId: "cd".repeat(16), workerSignature: new Uint8Array(64) }))).toBe("unauthorized");
  expect(await codeOf(honest.client.submitReceipt({ ...signedReceipt({ id: c0.id, identity: c0.identity }, honest), submitterSignature: new Uint8Array(64) }))).toBe("unauthorized");
  expect(await codeOf(c0.client.submitReceipt(signedReceipt({ id: c0.id, identity: c0.identity }, honest, { taskId: receipt.taskId, outcome: "rejected" })))).toBe("already_exists");
  expect((await viewer.client.lookup(honest.id)).polo_score).toBe(once);

  // The receipts are in the store: a restarted registry gives the same scores.
  await r.stop();
  const again = await startRendezvous({ dir });
  const viewer2 = await newNode(again, {}, { identity: viewer.identity, subscribe: false });
  expect((await viewer2.client.lookup(honest.id)).polo_score).toBe(once);
  expect((await viewer2.client.scores(ring.map((n) => n.id))).map((s) => s.polo_score)).toEqual(ringScores);
}, 120_000);
