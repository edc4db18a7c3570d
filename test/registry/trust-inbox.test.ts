/**
 * Trust request floods (issue 9: 100 sybil requests filled a private node's
 * visible inbox, oldest 100 shown, hiding the genuine request for good): the
 * inbox shows the oldest and the newest, every request is announced, all of
 * them can be paged, and requests are limited per requester and per target.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { DEFAULT_POW } from "../../src/registry/pow.ts";
import { RegistryService } from "../../src/registry/service.ts";
import { RegistryStore } from "../../src/registry/store.ts";
import { toBase64 } from "../../src/registry/wire.ts";
import { codeOf, newNode, signedRequest, startRendezvous, stopAll, type RendezvousProcess, type TestNode } from "./helpers.ts";

let r: RendezvousProcess;
beforeAll(async () => {
  r = await startRendezvous();
});
afterAll(stopAll);

test("100 sybil requests, then the genuine one: it is announced, shown among the newest, and every request can be paged", async () => {
  const target = await newNode(r, {}, { subscribe: true });
  const sybils: TestNode[] = await Promise.all(Array.from({ length: 100 }, () => newNode(r, {}, { subscribe: false })));
  for (const s of sybils) await s.client.trustRequest(target.id, "let me in");
  await Bun.sleep(50);
  const genuine = await newNode(r, {}, { subscribe: false });
  await genuine.client.trustRequest(target.id, "the real colleague");

  // Announced: one event per request, the genuine one included.
  const announced = await target.nextEvent((e) => e.event === "trust_request" && e.from === genuine.id);
  expect(announced).toMatchObject({ reason: "the real colleague" });
  const seen = new Set([genuine.id]);
  while (seen.size < 101) seen.add(((await target.nextEvent((e) => e.event === "trust_request", 5000)) as { from: number }).from);
  expect(seen.size).toBe(101);

  // The visible inbox: the oldest 50 and the newest 50, and the count of all.
  const state = await target.client.trustState();
  expect(state.inbound_total).toBe(101);
  expect(state.inbound.length).toBe(100);
  expect(state.inbound.map((i) => i.from)).toContain(genuine.id);
  expect(state.inbound.at(-1)!.from).toBe(genuine.id);

  // Paging, newest first: the genuine request leads; every request appears exactly once.
  const first = await target.client.trustInbox({ limit: 10 });
  expect(first).toMatchObject({ total: 101, offset: 0, next_offset: 10 });
  expect(first.inbound[0]).toMatchObject({ from: genuine.id, reason: "the real colleague" });
  const all: number[] = [];
  for (let offset: number | null = 0; offset !== null; ) {
    const page = await target.client.trustInbox({ offset, limit: 30 });
    all.push(...page.inbound.map((i) => i.from));
    offset = page.next_offset;
  }
  expect(all.length).toBe(101);
  expect(new Set(all).size).toBe(101);
  expect(await codeOf(target.client.trustInbox({ limit: 101 }))).toBe("invalid_argument");
}, 60_000);

test("a requester gets 30 new requests a minute (repeating one is free)", async () => {
  const asker = await newNode(r, {}, { subscribe: false });
  const codes: string[] = [];
  for (let i = 0; i < 35; i++) codes.push(await codeOf(asker.client.trustRequest(0x7000_0000 + i, "hello")));
  expect(codes.slice(0, 30)).toEqual(Array(30).fill("ok"));
  expect(codes.slice(30)).toEqual(Array(5).fill("rate_limited"));
  expect(await codeOf(asker.client.trustRequest(0x7000_0000, "hello again"))).toBe("ok");
});

test("pending requests to one id are bounded, and the refusal is the same whether the id exists or not", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pilot-inbox-test-"));
  try {
    const store = RegistryStore.open(join(dir, "s.db"));
    const registry = generateIdentity();
    const now = 1_800_000_000_000;
    const service = new RegistryService({ store, registryKey: registry.publicKey, clock: () => now, limits: { pow: { ...DEFAULT_POW, baseBits: 0 }, inboundPendingMax: 5 } });
    const ctx = { sourceIp: "127.0.0.1" };
    const node = async () => {
      const identity = generateIdentity();
      const id = ((await service.handle(signedRequest(identity, registry.publicKey, { type: "register", public_key: toBase64(identity.publicKey) }, now), ctx)).body as any).node_id as number;
      return { identity, id };
    };
    const target = await node();
    const ask = async (from: { identity: ReturnType<typeof generateIdentity>; id: number }, to: number) =>
      ((await service.handle(signedRequest(from.identity, registry.publicKey, { type: "trust_request", node_id: from.id, to, reason: "" }, now), ctx)).body as any).error?.code ?? "ok";
    const askers = [];
    for (let i = 0; i < 6; i++) askers.push(await node());
    const existing = [];
    for (const a of askers) existing.push(await ask(a, target.id));
    const absent = [];
    for (const a of askers) absent.push(await ask(a, 0x7fff_0000));
    expect(existing).toEqual(["ok", "ok", "ok", "ok", "ok", "rate_limited"]);
    expect(absent).toEqual(existing);
    store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
