/**
 * One suite for every RegistryStorage: SQLite (a file in a temporary
 * directory) and PostgreSQL (a private cluster this file starts: see
 * postgres-cluster.ts). The same calls must give the same answers, and the
 * registry service on top must behave the same.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateIdentity } from "../../../src/crypto/identity.ts";
import { DEFAULT_POW } from "../../../src/registry/pow.ts";
import { PostgresStorage } from "../../../src/registry/postgres-storage.ts";
import { RegistryService } from "../../../src/registry/service.ts";
import { SqliteStorage } from "../../../src/registry/sqlite-storage.ts";
import type { RegistryStorage } from "../../../src/registry/storage.ts";
import { toBase64 } from "../../../src/registry/wire.ts";
import { signedRequest } from "../helpers.ts";
import { postgresAvailable, startPostgres, type PostgresCluster } from "./postgres-cluster.ts";

const dir = mkdtempSync(join(tmpdir(), "pilot-store-suite-"));
let cluster: PostgresCluster | undefined;
const withPostgres = postgresAvailable();
const opened: RegistryStorage[] = [];
let files = 0;

beforeAll(async () => {
  if (withPostgres) cluster = await startPostgres();
}, 60_000);

afterAll(async () => {
  for (const s of opened) await s.close().catch(() => {});
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const backends: { name: string; open(): Promise<RegistryStorage> }[] = [
  { name: "sqlite", open: async () => SqliteStorage.open(join(dir, `s${files++}.db`)) },
];
if (withPostgres) backends.push({ name: "postgres", open: async () => PostgresStorage.open(await cluster!.createDatabase(), { max: 4 }) });

async function open(backend: { open(): Promise<RegistryStorage> }): Promise<RegistryStorage> {
  const s = await backend.open();
  opened.push(s);
  return s;
}

const key = (i: number) => toBase64(new Uint8Array(32).fill(i));

describe.each(backends)("$name", (backend) => {
  test("schema at the current version; ids assigned from 4 in order; nodes found by id, key and name", async () => {
    const s = await open(backend);
    expect(await s.schemaVersion()).toBeGreaterThan(0);
    const a = await s.transaction((tx) => tx.createNode(key(1), 1000, "192.0.2.7"));
    const b = await s.transaction((tx) => tx.createNode(key(2), 2000, null));
    expect([a.id, b.id]).toEqual([4, 5]);
    expect(a).toEqual({ id: 4, publicKey: key(1), hostname: null, public: false, tags: [], endpoints: [], observedIp: "192.0.2.7", registeredAt: 1000, lastSeen: 1000, active: true, originNet: "192.0.2.0/24" });
    await s.transaction(async (tx) => {
      await tx.setHostname(a.id, "alpha");
      await tx.setTags(a.id, ["nlp", "gpu"]);
      await tx.setPublic(a.id, true);
      await tx.touch(a.id, 3000, "192.0.2.8", ["0.0.0.0:4000"]);
    });
    expect(await s.nodeByHostname("alpha")).toMatchObject({ id: 4, tags: ["nlp", "gpu"], public: true, lastSeen: 3000, observedIp: "192.0.2.8", endpoints: ["0.0.0.0:4000"] });
    expect((await s.nodeByKey(key(2)))!.id).toBe(5);
    expect(await s.nodeById(99)).toBeUndefined();
    expect(await s.counts()).toEqual({ nodes: 2, active: 2, trust: 0, requests: 0 });
  });

  test("a throw rolls the transaction back; a failing nested transaction rolls back alone", async () => {
    const s = await open(backend);
    await expect(
      s.transaction(async (tx) => {
        await tx.createNode(key(1), 1, null);
        throw new Error("no");
      }),
    ).rejects.toThrow("no");
    expect((await s.counts()).nodes).toBe(0);
    const kept = await s.transaction(async (tx) => {
      const n = await tx.createNode(key(1), 1, null);
      await tx.claimNonce("n-1", 100);
      await tx.transaction(async (inner) => {
        await inner.setHostname(n.id, "gone");
        throw new Error("inner");
      }).catch(() => {});
      return n.id;
    });
    expect(await s.nodeById(kept)).toMatchObject({ hostname: null });
    expect(await s.claimNonce("n-1", 100)).toBe(false);
  });

  test("hostname unique, search by name part or tag within visibility, reaping", async () => {
    const s = await open(backend);
    const ids = await s.transaction(async (tx) => {
      const out: number[] = [];
      for (let i = 1; i <= 4; i++) out.push((await tx.createNode(key(i), 1000, null)).id);
      await tx.setHostname(out[0]!, "data-one");
      await tx.setTags(out[0]!, ["nlp"]);
      await tx.setPublic(out[0]!, true);
      await tx.setHostname(out[1]!, "data-two"); // private
      await tx.setTags(out[2]!, ["nlp"]); // private, asks out[3] for trust
      await tx.addTrustRequest(out[2]!, out[3]!, "hi", 1000);
      return out;
    });
    await expect(s.transaction((tx) => tx.setHostname(ids[1]!, "data-one"))).rejects.toThrow();
    const [one, two, three, four] = ids as [number, number, number, number];
    expect((await s.search(four, "data", 50)).map((n) => n.id)).toEqual([one]);
    expect((await s.search(four, "nlp", 50)).map((n) => n.id)).toEqual([one, three]);
    expect((await s.search(two, "data", 50)).map((n) => n.id)).toEqual([one, two]);
    await s.transaction((tx) => tx.addTrust(four, two, 1000));
    expect((await s.search(four, "data", 50)).map((n) => n.id)).toEqual([one, two]);
    expect((await s.search(four, "data", 1)).map((n) => n.id)).toEqual([one]);
    await s.transaction((tx) => tx.touch(one, 5000, null));
    expect(await s.transaction((tx) => tx.reap(2000))).toBe(2); // two and three (one was seen since)
    expect(await s.nodeById(two)).toMatchObject({ hostname: null, tags: [] });
    expect((await s.search(four, "nlp", 50, 0)).map((n) => n.id)).toEqual([one]);
  });

  test("search by hostname part follows renames, clears, deregistration and reactivation, in id order up to the limit", async () => {
    const s = await open(backend);
    const ids = await s.transaction(async (tx) => {
      const out: number[] = [];
      for (let i = 1; i <= 5; i++) {
        const id = (await tx.createNode(key(i), 1000, null)).id;
        await tx.setPublic(id, true);
        out.push(id);
      }
      for (const [i, id] of out.entries()) await tx.setHostname(id, `worker-${i}`);
      return out;
    });
    const [a, b, c, d, e] = ids as [number, number, number, number, number];
    const found = async (q: string, limit = 50) => (await s.search(a, q, limit)).map((n) => n.id);
    expect(await found("worker")).toEqual(ids);
    expect(await found("worker", 2)).toEqual([a, b]);
    expect(await found("ker-3")).toEqual([d]);
    expect(await found("r-")).toEqual(ids); // shorter than a trigram
    expect(await found("WORKER")).toEqual([]); // exact, as hostnames are lowercase
    await s.transaction(async (tx) => {
      await tx.setHostname(b, "trainer");
      await tx.setHostname(c, null);
      await tx.deactivateNode(d);
    });
    expect(await found("worker")).toEqual([a, e]);
    expect(await found("train")).toEqual([b]);
    await s.transaction(async (tx) => {
      await tx.reactivateNode(d, 2000);
      await tx.setPublic(d, true);
      await tx.setHostname(d, "worker-again");
      await tx.setTags(c, ["worker"]); // a tag of that name counts too
    });
    expect(await found("worker")).toEqual([a, c, d, e]);
    expect(await found("again")).toEqual([d]);
  });

  test("lookupRows, where the store has it, reads what nodeById, the visibility rule and workersWithReceipts read", async () => {
    const s = await open(backend);
    if (!s.lookupRows) return; // SQLite: the service makes the separate calls
    const [viewer, pub, priv, trusted, asking, granted, gone] = (await s.transaction(async (tx) => {
      const out: number[] = [];
      for (let i = 1; i <= 7; i++) out.push((await tx.createNode(key(i), 1000, null)).id);
      return out;
    })) as [number, number, number, number, number, number, number];
    await s.transaction(async (tx) => {
      await tx.setPublic(pub, true);
      await tx.addTrust(trusted, viewer, 1000);
      await tx.addTrustRequest(asking, viewer, "hi", 1000);
      await tx.grantContact(granted, viewer, 5000);
      await tx.setPublic(gone, true);
      await tx.deactivateNode(gone);
    });
    const look = async (target: number, now = 2000) => {
      const r = await s.lookupRows!(viewer, target, now, 0);
      return { viewer: r.viewer?.id, target: r.target?.id, visible: r.visible, rated: r.rated };
    };
    expect(await look(pub)).toEqual({ viewer, target: pub, visible: true, rated: false });
    expect(await look(priv)).toEqual({ viewer, target: priv, visible: false, rated: false });
    expect(await look(trusted)).toEqual({ viewer, target: trusted, visible: true, rated: false });
    expect(await look(asking)).toEqual({ viewer, target: asking, visible: true, rated: false });
    expect(await look(granted)).toEqual({ viewer, target: granted, visible: true, rated: false });
    expect(await look(granted, 6000)).toEqual({ viewer, target: granted, visible: false, rated: false }); // the grant ran out
    expect(await look(gone)).toEqual({ viewer, target: gone, visible: false, rated: false });
    expect(await look(viewer)).toEqual({ viewer, target: viewer, visible: true, rated: false });
    expect(await look(999)).toEqual({ viewer, target: undefined, visible: false, rated: false });
    expect((await s.lookupRows(998, pub, 2000, 0)).viewer).toBeUndefined();
    // Each agrees with the separate calls.
    for (const t of [pub, priv, trusted, asking, granted]) {
      const n = (await s.nodeById(t))!;
      const separate = n.public || (await s.isTrusted(viewer, t)) || (await s.trustRequest(t, viewer)) !== undefined || (await s.contactGranted(t, viewer, 2000));
      expect((await s.lookupRows(viewer, t, 2000, 0)).visible).toBe(separate);
    }
    const receipt = { taskId: "t1", submitter: viewer, worker: pub, resultSha256: "00".repeat(32), deliveredAt: 1, outcome: "accepted" as const, decidedAt: 2, workerSignature: new Uint8Array(64), submitterSignature: new Uint8Array(64) };
    await s.transaction((tx) => tx.addReceipt(receipt, 3000));
    const week = (await s.voteGroups(pub, 0, 10))[0]!.week;
    expect((await s.lookupRows(viewer, pub, 2000, week)).rated).toBe(true);
    expect((await s.lookupRows(viewer, pub, 2000, week + 1)).rated).toBe(false);
  });

  test("trust pairs are unordered; requests inbound oldest/newest first, counted; forgetTrust", async () => {
    const s = await open(backend);
    const [a, b, c, d] = (await s.transaction(async (tx) => {
      const out: number[] = [];
      for (let i = 1; i <= 4; i++) out.push((await tx.createNode(key(i), 1, null)).id);
      return out;
    })) as [number, number, number, number];
    await s.transaction(async (tx) => {
      await tx.addTrust(b, a, 10);
      await tx.addTrust(a, b, 99); // the same pair: ignored
      await tx.addTrust(a, c, 11);
      await tx.addTrustRequest(b, d, "from b", 20);
      await tx.addTrustRequest(c, d, "from c", 30);
      await tx.addTrustRequest(a, d, "from a", 30);
    });
    expect(await s.isTrusted(a, b)).toBe(true);
    expect(await s.isTrusted(b, a)).toBe(true);
    expect(await s.trustedPeers(a)).toEqual([
      { peer: b, since: 10 },
      { peer: c, since: 11 },
    ]);
    expect((await s.inboundRequests(d, 10)).map((r) => r.from)).toEqual([b, a, c]);
    expect((await s.inboundNewest(d, 2)).map((r) => r.from)).toEqual([c, a]);
    expect((await s.inboundNewest(d, 2, 2)).map((r) => r.from)).toEqual([b]);
    expect(await s.inboundCount(d)).toBe(3);
    expect(await s.outboundCount(a)).toBe(1);
    expect(await s.trustRequest(b, d)).toEqual({ from: b, to: d, reason: "from b", createdAt: 20 });
    expect(await s.transaction((tx) => tx.forgetTrust(a))).toEqual([b, c]);
    expect(await s.isTrusted(a, b)).toBe(false);
    expect(await s.inboundCount(d)).toBe(2);
    expect(await s.transaction((tx) => tx.removeTrustRequest(b, d))).toBe(true);
    expect(await s.transaction((tx) => tx.removeTrustRequest(b, d))).toBe(false);
    await s.transaction((tx) => tx.dropRequestsTo(d));
    expect(await s.inboundCount(d)).toBe(0);
  });

  test("nonces: claimed once, pruned after expiry", async () => {
    const s = await open(backend);
    expect(await s.transaction((tx) => tx.claimNonce("x", 100))).toBe(true);
    expect(await s.transaction((tx) => tx.claimNonce("x", 100))).toBe(false);
    await s.transaction((tx) => tx.claimNonce("y", 300));
    expect(await s.transaction((tx) => tx.pruneNonces(200))).toBe(1);
    expect(await s.transaction((tx) => tx.claimNonce("x", 100))).toBe(true);
  });

  test("receipts: stored once, counted per pair and week, grouped into votes, pruned", async () => {
    const s = await open(backend);
    const [w, sub] = (await s.transaction(async (tx) => [(await tx.createNode(key(1), 1, "10.0.0.1")).id, (await tx.createNode(key(2), 2, "198.51.100.1")).id])) as [number, number];
    const at = 10 * 7 * 86_400_000 + 5;
    const receipt = (i: number, outcome: "accepted" | "rejected") => ({
      taskId: i.toString(16).padStart(32, "0"),
      submitter: sub,
      worker: w,
      resultSha256: "ab".repeat(32),
      deliveredAt: at - 10,
      outcome,
      decidedAt: at,
      workerSignature: new Uint8Array(64).fill(1),
      submitterSignature: new Uint8Array(64).fill(2),
    });
    await s.transaction(async (tx) => {
      await tx.addReceipt(receipt(1, "accepted"), at);
      await tx.addReceipt(receipt(2, "rejected"), at);
    });
    expect(await s.receipt(receipt(1, "accepted").taskId, sub, w)).toEqual(receipt(1, "accepted"));
    expect(await s.receipt(receipt(3, "accepted").taskId, sub, w)).toBeUndefined();
    expect(await s.pairReceiptsInWeek(sub, w, 10)).toBe(2);
    expect(await s.voteGroups(w, 0, 10)).toEqual([{ submitter: sub, week: 10, accepted: 1, rejected: 1, registeredAt: 2, originNet: "198.51.100.0/24" }]);
    expect(await s.workersRatedBy(sub, 10)).toEqual([w]);
    expect(await s.workersWithReceipts([sub, w, 999], 10)).toEqual([w]);
    expect(await s.workersWithReceipts([sub, w], 11)).toEqual([]);
    expect(await s.receiptCounts(w)).toEqual({ asSubmitter: 0, asWorker: 2 });
    expect(await s.transaction((tx) => tx.pruneReceipts(at + 1))).toBe(2);
  });

  test("deactivate and reactivate: the row and id stay, the rest is cleared", async () => {
    const s = await open(backend);
    const n = await s.transaction(async (tx) => {
      const n = await tx.createNode(key(1), 1, "192.0.2.1");
      await tx.setHostname(n.id, "keep");
      await tx.setTags(n.id, ["t"]);
      await tx.deactivateNode(n.id);
      return n;
    });
    expect(await s.nodeById(n.id)).toMatchObject({ active: false, hostname: null, tags: [], observedIp: null, public: false });
    await s.transaction((tx) => tx.reactivateNode(n.id, 50));
    expect(await s.nodeById(n.id)).toMatchObject({ active: true, lastSeen: 50 });
    expect((await s.nodeByKey(key(1)))!.id).toBe(n.id);
  });

  test("the registry service on it: register, find, trust request and approval with their events, replay refused", async () => {
    const s = await open(backend);
    const registry = generateIdentity();
    const now = 1_800_000_000_000;
    const service = new RegistryService({ store: s, registryKey: registry.publicKey, clock: () => now, limits: { pow: { ...DEFAULT_POW, baseBits: 0 } } });
    const ctx = { sourceIp: "127.0.0.1" };
    const a = generateIdentity();
    const b = generateIdentity();
    const call = async (who: typeof a, fields: Record<string, unknown>) => service.handle(signedRequest(who, registry.publicKey, fields, now), ctx);
    const ra = (await call(a, { type: "register", public_key: toBase64(a.publicKey), hostname: "alice", public: true })).body as any;
    const rb = (await call(b, { type: "register", public_key: toBase64(b.publicKey) })).body as any;
    expect([ra.node_id, rb.node_id]).toEqual([4, 5]);
    expect(((await call(b, { type: "find", node_id: 5, hostname: "alice" })).body as any).node_id).toBe(4);
    expect(((await call(a, { type: "lookup", node_id: 4, target: 5 })).body as any).error.code).toBe("not_found");
    const asked = await call(b, { type: "trust_request", node_id: 5, to: 4, reason: "hello" });
    expect(asked.body).toMatchObject({ ok: true, status: "pending" });
    expect(asked.events).toEqual([{ to: 4, event: { event: "trust_request", from: 5, address: "0:0000.0000.0005", reason: "hello" } }]);
    const request = signedRequest(a, registry.publicKey, { type: "trust_approve", node_id: 4, peer: 5 }, now);
    const approved = await service.handle(request, ctx);
    expect(approved.body).toMatchObject({ ok: true, trusted: true });
    expect(approved.events.map((e) => e.to)).toEqual([5]);
    expect(((await service.handle(request, ctx)).body as any).error.code).toBe("replayed_request");
    const state = (await call(b, { type: "trust_state", node_id: 5 })).body as any;
    expect(state.trusted.map((t: any) => t.peer)).toEqual([4]);
    expect(((await call(b, { type: "set_hostname", node_id: 5, hostname: "alice" })).body as any).error.code).toBe("already_exists");
  });
});
