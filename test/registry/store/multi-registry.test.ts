/**
 * Two `pilot rendezvous` processes on one PostgreSQL database (a private
 * cluster this file starts), sharing one identity file: a node at one and a
 * node at the other see one network. Trust requests, approvals and
 * revocations made at one registry reach a daemon subscribed at the other
 * (LISTEN/NOTIFY); a state-changing request accepted by one is a replay at
 * the other; contact grants made at one count at the other; concurrent
 * registrations at both get distinct ids in order.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { generateIdentity } from "../../../src/crypto/identity.ts";
import { fromBase64 } from "../../../src/registry/wire.ts";
import { newNode, RawConnection, RELAXED, signedRequest, startRendezvous, stopAll, tempDir, type RendezvousProcess } from "../helpers.ts";
import { postgresAvailable, startPostgres, type PostgresCluster } from "./postgres-cluster.ts";

const withPostgres = postgresAvailable();
let cluster: PostgresCluster | undefined;
let r1: RendezvousProcess;
let r2: RendezvousProcess;

beforeAll(async () => {
  if (!withPostgres) return;
  cluster = await startPostgres();
  const url = await cluster.createDatabase();
  const identity = join(tempDir(), "shared-identity.json");
  const args = [...RELAXED, "--identity", identity];
  r1 = await startRendezvous({ store: url, args });
  r2 = await startRendezvous({ store: url, args });
}, 60_000);

afterAll(async () => {
  await stopAll();
  await cluster?.stop();
});

test.skipIf(!withPostgres)("both registries speak with the one deployment key", () => {
  expect(r1.publicKey).toBe(r2.publicKey);
  expect(r1.port).not.toBe(r2.port);
});

test.skipIf(!withPostgres)("trust request, approval and revocation made at one registry reach the daemon subscribed at the other", async () => {
  const a = await newNode(r1, { hostname: `alpha-${process.pid}` });
  const b = await newNode(r2);
  expect(await b.client.trustRequest(a.id, "from the other registry")).toEqual({ to: a.id, status: "pending" });
  expect(await a.nextEvent((e) => e.event === "trust_request", 5000)).toMatchObject({ event: "trust_request", from: b.id, reason: "from the other registry" });
  expect((await a.client.trustState()).inbound.map((r) => r.from)).toEqual([b.id]);
  await a.client.trustApprove(b.id);
  expect(await b.nextEvent((e) => e.event === "trust_approved", 5000)).toMatchObject({ peer: a.id });
  expect((await b.client.find(`alpha-${process.pid}`)).node_id).toBe(a.id);
  expect((await a.client.lookup(b.id)).node_id).toBe(b.id);
  await b.client.trustRevoke(a.id);
  expect(await a.nextEvent((e) => e.event === "trust_revoked", 5000)).toMatchObject({ peer: b.id });
  expect((await a.client.trustState()).trusted).toEqual([]);
});

test.skipIf(!withPostgres)("a contact grant made at one registry lets the target see the initiator at the other", async () => {
  const initiator = await newNode(r1);
  const target = await newNode(r2, { public: true });
  await expect(target.client.lookup(initiator.id)).rejects.toMatchObject({ code: "not_found" });
  await initiator.client.resolve(target.id, { contact: true });
  expect((await target.client.lookup(initiator.id)).node_id).toBe(initiator.id);
});

test.skipIf(!withPostgres)("a state-changing request accepted by one registry is refused as a replay by the other", async () => {
  const n = await newNode(r1, {}, { subscribe: false });
  const request = signedRequest(n.identity, fromBase64(r1.publicKey, 32)!, { type: "set_tags", node_id: n.id, tags: ["replayed"] }, Date.now());
  const answers: Record<string, unknown>[] = [];
  for (const r of [r1, r2]) {
    const c = await RawConnection.open(r.port);
    try {
      await c.next(); // hello
      c.send(request);
      answers.push((await c.next())!);
    } finally {
      c.close();
    }
  }
  expect(answers[0]).toMatchObject({ ok: true, tags: ["replayed"] });
  expect(answers[1]).toMatchObject({ ok: false, error: { code: "replayed_request" } });
});

test.skipIf(!withPostgres)("registrations at both registries at once get distinct ids, in order, and names stay unique", async () => {
  const nodes = await Promise.all(
    Array.from({ length: 16 }, (_, i) => newNode(i % 2 ? r1 : r2, { hostname: `racer-${process.pid}-${i % 8}` }, { identity: generateIdentity(), subscribe: false }).catch((e) => e)),
  );
  const ok = nodes.filter((n) => !(n instanceof Error));
  const failed = nodes.filter((n) => n instanceof Error);
  // Eight names, sixteen claimants: eight win, eight are told the name is taken.
  expect(ok.length).toBe(8);
  expect(failed.map((e) => (e as { code?: string }).code)).toEqual(Array(8).fill("already_exists"));
  const ids = ok.map((n) => n.id);
  expect(new Set(ids).size).toBe(8);
});
