/**
 * Receipts and scores in RegistryService, in-process with a clock the test
 * moves (so identities can be months old): what is refused and why, replays,
 * limits, visibility of scores, the sybil ring, and the schema 2 -> 3 migration.
 */
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateIdentity, type Identity } from "../../src/crypto/identity.ts";
import type { TaskReceipt } from "../../src/protocol/receipt.ts";
import { DEFAULT_POW } from "../../src/registry/pow.ts";
import { receiptToWire } from "../../src/registry/receipts.ts";
import { RegistryService, type ServiceLimits } from "../../src/registry/service.ts";
import { RegistryStore, SCHEMA_VERSION } from "../../src/registry/store.ts";
import { toBase64 } from "../../src/registry/wire.ts";
import { DAY, signedReceipt } from "../reputation/helpers.ts";
import { signedRequest } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "pilot-reputation-service-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let stores = 0;

interface Node {
  readonly id: number;
  readonly identity: Identity;
  call(fields: Record<string, unknown>): any;
}

/** `f` over `items` one after the other (ids are assigned in order). */
async function inOrder<T, R>(items: readonly T[], f: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (const item of items) out.push(await f(item));
  return out;
}

function harness(limits: Partial<ServiceLimits> = {}) {
  const store = RegistryStore.open(join(dir, `s${stores++}.db`));
  const registry = generateIdentity();
  const clock = { now: 1_800_000_000_000 };
  const unlimited = { rate: 1e6, burst: 1e6 };
  const service = new RegistryService({
    store,
    registryKey: registry.publicKey,
    clock: () => clock.now,
    limits: { pow: { ...DEFAULT_POW, baseBits: 0 }, registrationsPerIp: unlimited, registrationsPerPrefix: unlimited, requestsPerNode: unlimited, lookupsPerNode: unlimited, ...limits },
  });
  const raw = async (identity: Identity, fields: Record<string, unknown>, ip = "127.0.0.1") => (await service.handle(signedRequest(identity, registry.publicKey, fields, clock.now), { sourceIp: ip })).body as any;
  const node = async (fields: Record<string, unknown> = {}, ip = "127.0.0.1"): Promise<Node> => {
    const identity = generateIdentity();
    const reg = await raw(identity, { type: "register", public_key: toBase64(identity.publicKey), ...fields }, ip);
    if (!reg.ok) throw new Error(JSON.stringify(reg));
    return { id: reg.node_id, identity, call: (f) => raw(identity, { node_id: reg.node_id, ...f }) };
  };
  const submit = (by: Node, r: TaskReceipt) => by.call({ type: "submit_receipt", receipt: receiptToWire(r) });
  return { store, service, clock, raw, node, submit };
}

describe("submit_receipt", () => {
  test("a receipt signed by both parties is stored once; the same again is acknowledged, not counted", async () => {
    const h = harness();
    const worker = (await h.node({ public: true }));
    const submitter = (await h.node());
    const r = signedReceipt(submitter, worker, { at: h.clock.now });
    expect((await submitter.call({ type: "lookup", target: worker.id })).polo_score).toBe(0);
    expect((await h.submit(submitter, r))).toEqual({ ok: true, task_id: r.taskId, submitter: submitter.id, worker: worker.id, outcome: "accepted", recorded: true });
    const after = (await submitter.call({ type: "lookup", target: worker.id })).polo_score;
    expect(after).toBe(1); // a newcomer's receipt: 0.1 x 0.5
    // Replayed by either party (a resend after a lost answer, or the worker handing in the same receipt): ok, not stored again.
    expect((await h.submit(submitter, r))).toMatchObject({ ok: true, recorded: false });
    expect((await h.submit(worker, r))).toMatchObject({ ok: true, recorded: false });
    expect(h.store.receiptCounts(worker.id)).toEqual({ asSubmitter: 0, asWorker: 1 });
    expect((await submitter.call({ type: "lookup", target: worker.id })).polo_score).toBe(after);
    // A second, different verdict for the same task (both signed it anew) is refused.
    const flipped = signedReceipt(submitter, worker, { at: h.clock.now, taskId: r.taskId, outcome: "rejected" });
    expect((await h.submit(submitter, flipped)).error.code).toBe("already_exists");
    expect((await submitter.call({ type: "lookup", target: worker.id })).polo_score).toBe(after);
  });

  test("signed by one side only, over other fields, or by the wrong keys: unauthorized, and the score does not move", async () => {
    const h = harness();
    const worker = (await h.node({ public: true }));
    const submitter = (await h.node());
    const other = (await h.node());
    const r = signedReceipt(submitter, worker, { at: h.clock.now });
    const refused: TaskReceipt[] = [
      { ...r, workerSignature: new Uint8Array(64) }, // the worker never signed
      { ...r, submitterSignature: r.workerSignature }, // the submitter never signed
      { ...r, outcome: "rejected" }, // changed after both signed
      { ...r, resultSha256: "0".repeat(64) },
      { ...r, decidedAt: r.decidedAt + 1 },
      signedReceipt({ id: submitter.id, identity: other.identity }, worker, { at: h.clock.now }), // a third node signs as the submitter
      signedReceipt(submitter, { id: worker.id, identity: submitter.identity }, { at: h.clock.now }), // the submitter signs both halves
    ];
    for (const [i, bad] of refused.entries()) {
      const answer = (await h.submit(submitter, bad));
      expect({ i, code: answer.error?.code }).toEqual({ i, code: "unauthorized" });
    }
    // A party that does not exist, or has deregistered, verifies like a forged signature.
    const ghost = { id: 999, identity: generateIdentity() };
    expect((await h.submit(submitter, signedReceipt(submitter, ghost, { at: h.clock.now }))).error.code).toBe("unauthorized");
    const leaver = (await h.node());
    const late = signedReceipt(submitter, leaver, { at: h.clock.now });
    expect((await leaver.call({ type: "deregister" })).ok).toBe(true);
    expect((await h.submit(submitter, late)).error.code).toBe("unauthorized");
    // Only a party may hand a receipt in, even a valid one.
    expect((await h.submit(other, r))).toMatchObject({ ok: false, error: { code: "unauthorized", message: "only the submitter or the worker of a task may submit its receipt" } });
    expect((await submitter.call({ type: "lookup", target: worker.id })).polo_score).toBe(0);
    expect(h.store.receiptCounts(worker.id).asWorker).toBe(0);
  });

  test("stale, future and malformed receipts: invalid_argument", async () => {
    const h = harness();
    const worker = (await h.node());
    const submitter = (await h.node());
    const check = async (r: TaskReceipt | Record<string, unknown>) => (await submitter.call({ type: "submit_receipt", receipt: "taskId" in r ? receiptToWire(r as TaskReceipt) : r })).error;
    expect(await check(signedReceipt(submitter, worker, { at: h.clock.now - 8 * DAY }))).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("7 days") });
    expect(await check(signedReceipt(submitter, worker, { at: h.clock.now + 10 * 60_000 }))).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("future") });
    expect((await check({ ...receiptToWire(signedReceipt(submitter, worker, { at: h.clock.now })), task_id: "../x" })).code).toBe("invalid_argument");
    expect((await check(signedReceipt(submitter, submitter, { at: h.clock.now }))).message).toBe("a node cannot rate itself");
    expect((await submitter.call({ type: "submit_receipt", receipt: "nope" })).error.code).toBe("invalid_argument");
    expect((await submitter.call({ type: "submit_receipt" })).error.code).toBe("invalid_argument");
  });

  test("there is no request that sets or adds to a score", async () => {
    const h = harness();
    const n = (await h.node());
    for (const type of ["set_polo_score", "update_polo_score", "add_polo_score", "set_score"]) {
      expect((await n.call({ type, node_id: n.id, score: 100 })).error.code).toBe("invalid_argument");
    }
    expect((await n.call({ type: "set_visibility", public: true, polo_score: 100 })).error).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("unknown field") });
    const reg = (await h.raw(n.identity, { type: "register", public_key: toBase64(n.identity.publicKey), polo_score: 100 }));
    expect(reg.error.code).toBe("invalid_argument");
    expect((await n.call({ type: "lookup", target: n.id })).polo_score).toBe(0);
  });

  test("a captured submit_receipt request is refused as a replay (its nonce is stored with the receipt)", async () => {
    const h = harness();
    const worker = (await h.node());
    const submitter = (await h.node());
    const registryKey = (h.service as any).registryKey as Uint8Array;
    const request = signedRequest(submitter.identity, registryKey, { type: "submit_receipt", node_id: submitter.id, receipt: receiptToWire(signedReceipt(submitter, worker, { at: h.clock.now })) }, h.clock.now);
    expect(((await h.service.handle(request, { sourceIp: "127.0.0.1" })).body as any).recorded).toBe(true);
    expect(((await h.service.handle(request, { sourceIp: "127.0.0.1" })).body as any).error.code).toBe("replayed_request");
    expect(h.store.claimNonce(request.nonce as string, 0)).toBe(false);
  });

  test("limits: receipts per node, and per pair per week", async () => {
    const h = harness({ receiptsPerNode: { rate: 1 / 3600, burst: 3 } });
    const worker = (await h.node());
    const submitter = (await h.node());
    for (let i = 0; i < 3; i++) expect((await h.submit(submitter, signedReceipt(submitter, worker, { at: h.clock.now }))).recorded).toBe(true);
    expect((await h.submit(submitter, signedReceipt(submitter, worker, { at: h.clock.now }))).error).toMatchObject({ code: "rate_limited", message: "too many receipts from this node; retry later" });
    // The worker has a bucket of its own.
    expect((await h.submit(worker, signedReceipt(submitter, worker, { at: h.clock.now }))).recorded).toBe(true);

    const p = harness();
    const w = await p.node();
    const s = await p.node();
    for (let i = 0; i < 16; i++) expect((await p.submit(s, signedReceipt(s, w, { at: p.clock.now }))).recorded).toBe(true);
    expect((await p.submit(s, signedReceipt(s, w, { at: p.clock.now }))).error.code).toBe("rate_limited");
    p.clock.now += 7 * DAY;
    expect((await p.submit(s, signedReceipt(s, w, { at: p.clock.now }))).recorded).toBe(true);
  });
});

describe("scores", () => {
  test("polo_score on lookup, find and search; reputation explains it", async () => {
    const h = harness();
    const worker = (await h.node({ public: true, hostname: "scored", tags: ["nlp"] }));
    const submitters = await inOrder([0, 1, 2], (i) => h.node({}, `198.51.${100 + i}.7`));
    h.clock.now += 40 * DAY; // the submitters are established now
    expect((await worker.call({ type: "heartbeat" })).ok).toBe(true); // (and the worker was seen lately: find and search skip nodes unseen for 30 days)
    for (const s of submitters) expect((await h.submit(s, signedReceipt(s, worker, { at: h.clock.now }))).recorded).toBe(true);
    expect((await h.submit(submitters[0]!, signedReceipt(submitters[0]!, worker, { at: h.clock.now, outcome: "rejected" }))).recorded).toBe(true);
    const viewer = (await h.node());
    // Three established submitters at standing 0.5; the first one's week is 1 accepted + 1 rejected.
    // P = 0.25 + 0.5 + 0.5 = 1.25, N = 0.25: 100 * 1.25 / (1.25 + 0.5 + 5) = 18.5, shown as 19
    expect((await viewer.call({ type: "lookup", target: worker.id })).polo_score).toBe(19);
    expect((await viewer.call({ type: "find", hostname: "scored" })).polo_score).toBe(19);
    expect((await viewer.call({ type: "search", query: "nlp" })).results).toEqual([expect.objectContaining({ node_id: worker.id, polo_score: 19 })]);
    expect((await viewer.call({ type: "scores", targets: [worker.id, worker.id] })).scores).toEqual([{ node_id: worker.id, polo_score: 19 }]);
    const rep = (await viewer.call({ type: "reputation", target: worker.id }));
    expect(rep).toMatchObject({
      ok: true,
      node_id: worker.id,
      hostname: "scored",
      polo_score: 19,
      receipts: { accepted: 3, rejected: 1, counted_votes: 3, as_worker: 4, as_submitter: 0 },
      counterparties: { total: 3, established: 3, newcomers: 0, networks: 3 },
      evidence: { positive_milli: 1250, negative_milli: 250 },
      capped: { submitters: 0, networks: 0, newcomers: false },
      method: { formula: "100 * P / (P + 2 * N + 5)", week_days: 7, horizon_weeks: 52, per_submitter_cap_milli: 1500, per_network_cap_milli: 1500, newcomer_cap_milli: 500, established_after_days: 30 },
    });
    // A submitter's own weight: established, standing 0.5 (it never worked for anyone).
    expect((await viewer.call({ type: "reputation", target: submitters[1]!.id })).error.code).toBe("not_found"); // private
    expect((await submitters[1]!.call({ type: "reputation", target: submitters[1]!.id })).as_submitter).toMatchObject({ established: true, age_factor_milli: 1000, standing_milli: 500, weight_milli: 500 });
  });

  test("a private node's score is visible only to those who may see it; strangers get the same not_found as for no node", async () => {
    const h = harness();
    const hidden = (await h.node({ hostname: "hidden-worker" }));
    const friend = (await h.node());
    const stranger = (await h.node());
    expect((await friend.call({ type: "trust_request", to: hidden.id, reason: "hi" })).ok).toBe(true);
    expect((await hidden.call({ type: "trust_approve", peer: friend.id })).ok).toBe(true);
    expect((await h.submit(friend, signedReceipt(friend, hidden, { at: h.clock.now }))).recorded).toBe(true);
    expect((await friend.call({ type: "reputation", target: hidden.id })).polo_score).toBe(1);
    expect((await friend.call({ type: "scores", targets: [hidden.id] })).scores).toEqual([{ node_id: hidden.id, polo_score: 1 }]);
    const unseen = (await stranger.call({ type: "reputation", target: hidden.id }));
    const absent = (await stranger.call({ type: "reputation", target: 4242 }));
    expect(unseen).toEqual({ ...absent });
    expect(unseen.error).toEqual({ code: "not_found", message: "no such node" });
    expect((await stranger.call({ type: "scores", targets: [hidden.id, 4242] })).scores).toEqual([]);
    expect((await stranger.call({ type: "scores", targets: [] })).error.code).toBe("invalid_argument");
    expect((await stranger.call({ type: "scores", targets: Array.from({ length: 101 }, (_, i) => i + 4) })).error.code).toBe("invalid_argument");
  });

  test("a new receipt shows at once, also through the standing of the submitter it raises", async () => {
    const h = harness();
    const a = (await h.node({ public: true }));
    const b = (await h.node({ public: true }));
    const olds = await inOrder([0, 1, 2, 3, 4, 5], (i) => h.node({}, `192.0.${20 + i}.1`));
    h.clock.now += 40 * DAY;
    // b rated a; a's score depends on b's standing.
    expect((await h.submit(b, signedReceipt(b, a, { at: h.clock.now }))).recorded).toBe(true);
    const viewer = (await h.node());
    const before = (await viewer.call({ type: "lookup", target: a.id })).polo_score;
    // b now does good work for six established submitters: its standing rises, and a's score with it.
    for (const s of olds) expect((await h.submit(s, signedReceipt(s, b, { at: h.clock.now }))).recorded).toBe(true);
    const after = (await viewer.call({ type: "lookup", target: a.id })).polo_score;
    expect(after).toBeGreaterThan(before);
    expect((await viewer.call({ type: "reputation", target: b.id })).counterparties.total).toBe(6);
  });

  test("established submitters registered from one network count as one; from private addresses each counts", async () => {
    const h = harness();
    const worker = (await h.node({ public: true }));
    const sameNet = await inOrder(Array.from({ length: 8 }, (_, i) => i), (i) => h.node({}, `203.0.113.${10 + i}`));
    const lan = await inOrder(Array.from({ length: 8 }, (_, i) => i), (i) => h.node({}, `10.0.0.${10 + i}`));
    const worker2 = (await h.node({ public: true }));
    h.clock.now += 40 * DAY;
    for (const s of sameNet) (await h.submit(s, signedReceipt(s, worker, { at: h.clock.now })));
    for (const s of lan) (await h.submit(s, signedReceipt(s, worker2, { at: h.clock.now })));
    const viewer = (await h.node());
    // 8 x 0.5 = 4, capped at 1.5 for one network: 100 * 1.5 / 6.5
    expect((await viewer.call({ type: "reputation", target: worker.id }))).toMatchObject({ polo_score: 23, counterparties: { networks: 1 }, capped: { networks: 1 } });
    // 8 x 0.5 = 4 from eight networks of their own: 100 * 4 / 9
    expect((await viewer.call({ type: "reputation", target: worker2.id }))).toMatchObject({ polo_score: 44, counterparties: { networks: 8 } });
  });

  test("a ring of 20 fresh sybils rating each other ends below an honest worker with five genuine receipts (clock injected)", async () => {
    const h = harness();
    const honest = (await h.node({ public: true }));
    const customers = await inOrder([0, 1, 2, 3, 4], (i) => h.node({}, `198.51.${100 + i}.9`));
    h.clock.now += 60 * DAY;
    for (const c of customers) expect((await h.submit(c, signedReceipt(c, honest, { at: h.clock.now }))).recorded).toBe(true);
    // Twenty identities from twenty networks, each rating every other one, three weeks running.
    const ring = await inOrder(Array.from({ length: 20 }, (_, i) => i), (i) => h.node({ public: true }, `203.0.${i}.50`));
    for (let week = 0; week < 3; week++) {
      for (const s of ring) for (const w of ring) if (s !== w) expect((await h.submit(s, signedReceipt(s, w, { at: h.clock.now }))).recorded).toBe(true);
      h.clock.now += 7 * DAY;
    }
    const viewer = (await h.node());
    const honestScore = (await viewer.call({ type: "lookup", target: honest.id })).polo_score;
    const ringScores = await inOrder(ring, async (n) => (await viewer.call({ type: "lookup", target: n.id })).polo_score);
    expect(honestScore).toBe(33);
    // Three weeks old by the end, the ring is still made of newcomers: together they count 0.5 at most.
    expect(Math.max(...ringScores)).toBeLessThanOrEqual(9);
    expect(Math.max(...ringScores)).toBeLessThan(honestScore);
  });
});

describe("store", () => {
  test("a schema 2 store is migrated to 3 in place: nodes keep their data and get their origin network", async () => {
    const path = join(dir, "v2.db");
    const db = new Database(path);
    db.exec(`CREATE TABLE nodes (id INTEGER PRIMARY KEY, public_key TEXT NOT NULL UNIQUE, hostname TEXT UNIQUE, public INTEGER NOT NULL DEFAULT 0,
      tags TEXT NOT NULL DEFAULT '[]', endpoints TEXT NOT NULL DEFAULT '[]', observed_ip TEXT, registered_at INTEGER NOT NULL,
      last_seen INTEGER NOT NULL, active INTEGER NOT NULL DEFAULT 1);
      CREATE TABLE node_tags (tag TEXT NOT NULL, node_id INTEGER NOT NULL, PRIMARY KEY (tag, node_id)) WITHOUT ROWID;
      CREATE TABLE trust (a INTEGER NOT NULL, b INTEGER NOT NULL, since INTEGER NOT NULL, PRIMARY KEY (a, b), CHECK (a < b)) WITHOUT ROWID;
      CREATE INDEX trust_by_b ON trust (b, a);
      CREATE TABLE trust_requests (from_id INTEGER NOT NULL, to_id INTEGER NOT NULL, reason TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (from_id, to_id)) WITHOUT ROWID;
      CREATE INDEX trust_requests_to ON trust_requests (to_id, created_at);
      CREATE TABLE seen_nonces (nonce TEXT PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID;
      CREATE INDEX seen_nonces_expires ON seen_nonces (expires);
      CREATE INDEX nodes_last_seen ON nodes (last_seen) WHERE hostname IS NOT NULL OR tags <> '[]';
      INSERT INTO nodes (id, public_key, hostname, observed_ip, registered_at, last_seen) VALUES (4, 'k4', 'old-name', '203.0.113.9', 1, 1);
      INSERT INTO nodes (id, public_key, observed_ip, registered_at, last_seen) VALUES (5, 'k5', '127.0.0.1', 1, 1);
      INSERT INTO nodes (id, public_key, registered_at, last_seen, active) VALUES (6, 'k6', 1, 1, 0);
      INSERT INTO trust (a, b, since) VALUES (4, 5, 1);
      INSERT INTO seen_nonces (nonce, expires) VALUES ('n1', 100);
      PRAGMA user_version = 2;`);
    db.close();
    const s = RegistryStore.open(path);
    expect(s.schemaVersion()).toBe(SCHEMA_VERSION);
    expect(SCHEMA_VERSION).toBeGreaterThanOrEqual(3); // through 3 to the current version
    expect(s.nodeById(4)).toMatchObject({ hostname: "old-name", originNet: "203.0.113.0/24", registeredAt: 1 });
    expect(s.nodeById(5)?.originNet).toBeNull();
    expect(s.nodeById(6)?.originNet).toBeNull();
    expect(s.isTrusted(4, 5)).toBe(true);
    expect(s.claimNonce("n1", 100)).toBe(false);
    // The new table works.
    const r = signedReceipt({ id: 5, identity: generateIdentity() }, { id: 4, identity: generateIdentity() }, { at: 2 * DAY });
    s.transaction(() => s.addReceipt(r, 2 * DAY));
    expect(s.receipt(r.taskId, 5, 4)).toEqual(r);
    expect(s.voteGroups(4, 0, 10)).toEqual([{ submitter: 5, week: 0, accepted: 1, rejected: 0, registeredAt: 1, originNet: null }]);
    s.close();
    // Opening again applies nothing more.
    const again = RegistryStore.open(path);
    expect(again.receiptCounts(4)).toEqual({ asSubmitter: 0, asWorker: 1 });
    again.close();
  });
});
