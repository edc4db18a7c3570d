/** RegistryService in-process, with a clock the test moves: liveness and the request window. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { DEFAULT_POW } from "../../src/registry/pow.ts";
import { RegistryService } from "../../src/registry/service.ts";
import { RegistryStore } from "../../src/registry/store.ts";
import { toBase64 } from "../../src/registry/wire.ts";
import { signedRequest } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "pilot-service-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a node is online for 90 s after its last heartbeat; requests follow the registry's clock", () => {
  const store = RegistryStore.open(join(dir, "s.db"));
  const registry = generateIdentity();
  let now = 1_800_000_000_000;
  const service = new RegistryService({ store, registryKey: registry.publicKey, clock: () => now, limits: { pow: { ...DEFAULT_POW, baseBits: 0 } } });
  const ctx = { sourceIp: "127.0.0.1" };
  const node = generateIdentity();
  const call = (fields: Record<string, unknown>) => service.handle(signedRequest(node, registry.publicKey, fields, now), ctx).body as any;
  const reg = call({ type: "register", public_key: toBase64(node.publicKey) });
  expect(reg.ok).toBe(true);
  const id = reg.node_id;
  expect(call({ type: "lookup", node_id: id, target: id }).online).toBe(true);
  now += 90_000;
  expect(call({ type: "lookup", node_id: id, target: id }).online).toBe(true);
  now += 1;
  expect(call({ type: "lookup", node_id: id, target: id })).toMatchObject({ online: false, last_seen: now - 90_001 });
  expect(call({ type: "heartbeat", node_id: id }).ok).toBe(true);
  expect(call({ type: "lookup", node_id: id, target: id }).online).toBe(true);
  // A request stamped 61 s ago is stale; the same content freshly stamped is fine.
  const old = service.handle(signedRequest(node, registry.publicKey, { type: "lookup", node_id: id, target: id }, now - 61_000), ctx).body as any;
  expect(old.error.code).toBe("stale_request");
  store.close();
});

test("requests in flight on one connection are matched by id", async () => {
  const { startRendezvous, newNode, stopAll } = await import("./helpers.ts");
  try {
    const r = await startRendezvous();
    const nodes = await Promise.all(Array.from({ length: 5 }, (_, i) => newNode(r, { public: true, hostname: `inflight-${process.pid}-${i}` }, { subscribe: false })));
    const viewer = nodes[0]!;
    const answers = await Promise.all(nodes.flatMap((n) => [viewer.client.lookup(n.id), viewer.client.find(`inflight-${process.pid}-${nodes.indexOf(n)}`)]));
    expect(answers.map((a) => a.node_id)).toEqual(nodes.flatMap((n) => [n.id, n.id]));
  } finally {
    await stopAll();
  }
});
