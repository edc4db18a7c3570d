/**
 * What receipts and scores cost the registry (RegistryService in-process, a
 * SQLite store in a temporary directory), each beside a baseline from the
 * same run:
 *
 *   submit_receipt (request signature + both receipt signatures + one insert) vs heartbeat (request signature + one update)
 *   lookup with a cold score of a busy worker (4 096 vote groups from 1 000 submitters, each rated 20 times) vs warm
 *   the same once its score expired (its submitters' base scores still cached)                           vs warm
 *   search returning 50 scored nodes, warm                                                            vs lookup, warm
 *
 *   bun scripts/bench/reputation.ts
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateIdentity, type Identity } from "../../src/crypto/identity.ts";
import { resultStatementBytes, verdictStatementBytes } from "../../src/protocol/receipt.ts";
import { DEFAULT_POW } from "../../src/registry/pow.ts";
import { receiptToWire } from "../../src/registry/receipts.ts";
import { REPUTATION } from "../../src/registry/reputation.ts";
import { RegistryService } from "../../src/registry/service.ts";
import { RegistryStore } from "../../src/registry/store.ts";
import { requestSigningBytes, toBase64 } from "../../src/registry/wire.ts";
import { randomBytes } from "node:crypto";

const dir = mkdtempSync(join(tmpdir(), "pilot-bench-reputation-"));
const store = RegistryStore.open(join(dir, "registry.db"));
const registry = generateIdentity();
let now = 1_800_000_000_000;
const unlimited = { rate: 1e9, burst: 1e9 };
const service = new RegistryService({
  store,
  registryKey: registry.publicKey,
  clock: () => now,
  limits: { pow: { ...DEFAULT_POW, baseBits: 0 }, registrationsPerIp: unlimited, registrationsPerPrefix: unlimited, requestsPerNode: unlimited, lookupsPerNode: unlimited, receiptsPerNode: unlimited },
});
const ctx = { sourceIp: "127.0.0.1" };

function request(identity: Identity, fields: Record<string, unknown>): Record<string, unknown> {
  const r: Record<string, unknown> = { id: 1, ...fields, ts: now, nonce: toBase64(new Uint8Array(randomBytes(16))) };
  r.sig = toBase64(identity.sign(requestSigningBytes(r, registry.publicKey)));
  return r;
}

async function node(fields: Record<string, unknown> = {}): Promise<{ id: number; identity: Identity }> {
  const identity = generateIdentity();
  const body = (await service.handle(request(identity, { type: "register", public_key: toBase64(identity.publicKey), ...fields }), ctx)).body as any;
  return { id: body.node_id, identity };
}

const ms = (t: number) => `${t.toFixed(3)} ms`;
const line = (label: string, value: string, baseline: string) => console.log(`${label.padEnd(44)} ${value.padEnd(22)} | baseline ${baseline}`);

// ---- submit_receipt vs heartbeat -------------------------------------------------------------
{
  const worker = await node();
  const submitter = await node();
  const N = 2000;
  // At most 16 receipts per pair per week are kept: the clock moves a week every 16 (as it is set again below).
  const start = now;
  const at = (i: number) => start + Math.floor(i / 16) * REPUTATION.weekMs;
  const receipts = Array.from({ length: N }, (_, i) => {
    now = at(i);
    const f = { taskId: randomBytes(16).toString("hex"), submitter: submitter.id, worker: worker.id, resultSha256: "ab".repeat(32), deliveredAt: now - 1000, outcome: "accepted" as const, decidedAt: now };
    const receipt = { ...f, workerSignature: worker.identity.sign(resultStatementBytes(f)), submitterSignature: submitter.identity.sign(verdictStatementBytes(f)) };
    return request(submitter.identity, { type: "submit_receipt", node_id: submitter.id, receipt: receiptToWire(receipt) });
  });
  let stored = 0;
  let t = performance.now();
  for (let i = 0; i < N; i++) {
    now = at(i);
    if (((await service.handle(receipts[i]!, ctx)).body as any).recorded) stored++;
  }
  const submit = (performance.now() - t) / N;
  const beats = Array.from({ length: N }, () => request(worker.identity, { type: "heartbeat", node_id: worker.id }));
  t = performance.now();
  for (const b of beats) await service.handle(b, ctx);
  const beat = (performance.now() - t) / N;
  line(`submit_receipt (${stored}/${N} stored)`, `${ms(submit)} (${Math.round(1000 / submit)}/s)`, `heartbeat ${ms(beat)} (${Math.round(1000 / beat)}/s)`);
}

// ---- a busy worker's score, cold and warm ---------------------------------------------------------
{
  const worker = await node({ public: true, tags: ["busy"] });
  const viewer = await node();
  const SUBMITTERS = 1000;
  const WEEKS = 52;
  const registeredAt = now - 400 * 86_400_000;
  store.transaction(() => {
    const ids: number[] = [];
    for (let i = 0; i < SUBMITTERS; i++) ids.push(store.createNode(toBase64(new Uint8Array(randomBytes(32))), registeredAt, `198.${18 + (i % 2)}.${i % 256}.1`).id);
    // Each submitter rates the worker in ~4 weeks (4 096 groups in all) and is rated itself by others in up to 1 024 weeks' groups.
    let groups = 0;
    for (const [i, s] of ids.entries()) {
      for (let k = 0; k < 4 && groups < 4096; k++, groups++) addReceipt(s, worker.id, now - ((i + k) % WEEKS) * REPUTATION.weekMs);
      for (let k = 0; k < 20; k++) addReceipt(ids[(i + k + 1) % ids.length]!, s, now - (k % WEEKS) * REPUTATION.weekMs);
    }
  });
  function addReceipt(submitter: number, w: number, at: number): void {
    store.addReceipt(
      { taskId: randomBytes(16).toString("hex"), submitter, worker: w, resultSha256: "cd".repeat(32), deliveredAt: at, outcome: "accepted", decidedAt: at, workerSignature: new Uint8Array(64), submitterSignature: new Uint8Array(64) },
      at,
    );
  }
  const lookup = async () => (await service.handle(request(viewer.identity, { type: "lookup", node_id: viewer.id, target: worker.id }), ctx)).body as any;
  let t = performance.now();
  const cold = await lookup();
  const coldMs = performance.now() - t;
  const N = 2000;
  t = performance.now();
  for (let i = 0; i < N; i++) await lookup();
  const warm = (performance.now() - t) / N;
  line(`lookup, cold score (score ${cold.polo_score}, 1000 submitters)`, ms(coldMs), `lookup, warm ${ms(warm)}`);
  now += 3_601_000; // everything expired: cold again, with SQLite's pages warm
  t = performance.now();
  await lookup();
  line("lookup, cold score again (an hour later)", ms(performance.now() - t), `lookup, warm ${ms(warm)}`);
  now += 61_000; // the score expires (its submitters' bases stay cached for an hour)
  t = performance.now();
  await lookup();
  line("lookup, score expired, bases cached", ms(performance.now() - t), `lookup, warm ${ms(warm)}`);

  const scored = [];
  for (let i = 0; i < 50; i++) scored.push(await node({ public: true, tags: ["many"] }));
  for (const n of scored) addReceiptTx(n.id);
  function addReceiptTx(w: number): void {
    store.transaction(() => addReceipt(worker.id, w, now));
  }
  const search = async () => (await service.handle(request(viewer.identity, { type: "search", node_id: viewer.id, query: "many" }), ctx)).body as any;
  await search(); // warm the cache
  t = performance.now();
  for (let i = 0; i < 500; i++) if ((await search()).results.length !== 50) throw new Error("search");
  const warmSearch = (performance.now() - t) / 500;
  line("search, 50 scored results, warm", ms(warmSearch), `lookup, warm ${ms(warm)}`);
}

store.close();
rmSync(dir, { recursive: true, force: true });
