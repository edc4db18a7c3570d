/**
 * polo_score where users read it, with real daemons: `find`, `peers`,
 * `peers --search`, `a2a discover` and `pilot reputation NODE`, in text and
 * --json; a private node's score hidden from strangers exactly like the node.
 *
 * The receipts are signed with the daemons' own identity files and handed to
 * the registry over a registry connection of the signing node (the task
 * service does the same through its daemon). Five "established" customers
 * are written into the running registry's store as registered 60 days ago
 * (test-only: RegistryStore on the file; nothing on the network can do it).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { generateIdentity, loadOrCreateIdentity, type Identity } from "../../src/crypto/identity.ts";
import { RegistryClient } from "../../src/registry/client.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { DAY, seedNodes, signedReceipt, type Party } from "./helpers.ts";

let c: Cluster;
const clients: RegistryClient[] = [];

async function registryClient(identity: Identity, nodeId?: number): Promise<RegistryClient> {
  const [host, port] = c.registry.split(":");
  const client = await RegistryClient.connect({ host: host!, port: Number(port), signer: identity, ...(nodeId ? { nodeId } : {}) });
  clients.push(client);
  return client;
}

function party(name: string): Party & { identity: Identity } {
  const d = c.daemon(name);
  return { id: d.nodeId, identity: loadOrCreateIdentity(join(d.home, "identity.json")).identity };
}

beforeAll(async () => {
  c = await startCluster({
    daemons: [
      { name: "worker", hostname: "rep-worker", public: true, tags: ["nlp"] },
      { name: "client", hostname: "rep-client" },
      { name: "hidden", hostname: "rep-hidden", tags: ["nlp"] },
      { name: "friend", hostname: "rep-friend" },
    ],
  });
  await c.trust("hidden", "friend");
  // Five customers who registered two months ago from five networks.
  const identities = Array.from({ length: 5 }, () => generateIdentity());
  const ids = seedNodes(
    join(c.dir, "rendezvous", "rendezvous", "registry.db"),
    identities.map((identity, i) => ({ identity, registeredAt: Date.now() - 60 * DAY, ip: `198.51.${100 + i}.30` })),
  );
  const worker = party("worker");
  for (const [i, identity] of identities.entries()) {
    const client = await registryClient(identity);
    expect((await client.register()).node_id).toBe(ids[i]!);
    expect((await client.submitReceipt(signedReceipt({ id: ids[i]!, identity }, worker))).recorded).toBe(true);
  }
  // The hidden node did one task for the client, which accepted the result.
  const client = party("client");
  const rc = await registryClient(client.identity, client.id);
  expect((await rc.submitReceipt(signedReceipt(client, party("hidden")))).recorded).toBe(true);
}, 120_000);

afterAll(async () => {
  for (const cl of clients) cl.close();
  await c?.stop();
});

describe("polo_score", () => {
  test("find: in --json and in text", async () => {
    const r = await c.pilot("client", ["find", "rep-worker"]);
    expect(r.json.data).toMatchObject({ hostname: "rep-worker", polo_score: 33 });
    const text = await c.pilot("client", ["find", "rep-worker"], { json: false });
    expect(text.stdout).toContain("  Polo score:  33  (pilot reputation rep-worker)\n");
  });

  test("peers --search: a number on every node, private strangers left out", async () => {
    const r = await c.pilot("client", ["peers", "--search", "nlp"]);
    expect(r.json.data.peers.map((p: any) => [p.hostname, p.polo_score])).toEqual([["rep-worker", 33]]);
    const own = await c.pilot("friend", ["peers", "--search", "nlp"]);
    expect(own.json.data.peers.map((p: any) => [p.hostname, p.polo_score])).toEqual([
      ["rep-worker", 33],
      ["rep-hidden", 1],
    ]);
    const text = await c.pilot("client", ["peers", "--search", "nlp"], { json: false });
    expect(text.stdout).toMatch(/^NODE\s+ADDRESS\s+HOSTNAME\s+TAGS\s+VISIBILITY\s+ONLINE\s+POLO\n/);
    expect(text.stdout).toMatch(/rep-worker\s+#nlp\s+public\s+yes\s+33\n/);
  });

  test("peers: tunnel peers carry their score too", async () => {
    expect((await c.pilot("client", ["ping", "rep-worker", "--count", "1"])).code).toBe(0);
    const r = await c.pilot("client", ["peers"]);
    expect(r.json.data.peers.find((p: any) => p.node_id === c.daemon("worker").nodeId)).toMatchObject({ polo_score: 33 });
    const text = await c.pilot("client", ["peers"], { json: false });
    expect(text.stdout).toMatch(/\s+POLO\n/);
    expect(text.stdout).toMatch(/\s33\n/);
  });

  test("a2a discover: each node with its score (here none serves a card; test/a2a has agents)", async () => {
    const r = await c.pilot("friend", ["a2a", "discover", "--tag", "nlp", "--timeout", "3s"]);
    expect(r.code).toBe(0);
    expect(r.json.data.failed.map((f: any) => [f.hostname, f.polo_score]).sort()).toEqual([
      ["rep-hidden", 1],
      ["rep-worker", 33],
    ]);
  });
});

describe("pilot reputation", () => {
  test("explains a score: receipts, submitters, networks, evidence, the formula", async () => {
    const r = await c.pilot("client", ["reputation", "rep-worker"]);
    expect(r.code).toBe(0);
    expect(r.json.data).toMatchObject({
      node_id: c.daemon("worker").nodeId,
      hostname: "rep-worker",
      polo_score: 33,
      receipts: { accepted: 5, rejected: 0, counted_votes: 5, as_worker: 5, as_submitter: 0 },
      counterparties: { total: 5, established: 5, newcomers: 0, networks: 5 },
      evidence: { positive: 2.5, negative: 0 },
      capped: { submitters: 0, networks: 0, newcomers: false },
      method: { formula: "100 * P / (P + 2 * N + 5)", per_submitter_cap: 1.5, per_network_cap: 1.5, newcomer_cap: 0.5 },
    });
    const text = await c.pilot("client", ["reputation", "rep-worker"], { json: false });
    expect(text.stdout).toContain("  Polo score:    33  (0-100)\n");
    expect(text.stdout).toContain("  Receipts:      5 accepted, 0 rejected in the last 52 weeks: 5 votes (a submitter counts once per week)\n");
    expect(text.stdout).toContain("  Submitters:    5 (5 established, 0 newcomers), the established from 5 networks\n");
    expect(text.stdout).toContain("  Evidence:      P = 2.5, N = 0;  100 * P / (P + 2 * N + 5) = 33\n");
  });

  test("a private node's score: not_found for a stranger, exactly as for no node; shown to a trusted peer", async () => {
    const hidden = c.daemon("hidden");
    for (const [target, absent] of [
      ["rep-hidden", "rep-nobody"],
      [String(hidden.nodeId), "99999"],
      [hidden.address, "0:0000.0001.869F"],
    ]) {
      const unseen = await c.pilot("client", ["reputation", target!]);
      const none = await c.pilot("client", ["reputation", absent!]);
      expect({ target, code: unseen.code, error: unseen.json.code }).toEqual({ target, code: 1, error: "not_found" });
      expect(unseen.json.message.replaceAll(target!, "X")).toBe(none.json.message.replaceAll(absent!, "X"));
    }
    const r = await c.pilot("friend", ["reputation", "rep-hidden"]);
    expect(r.json.data).toMatchObject({ polo_score: 1, counterparties: { total: 1, newcomers: 1 } });
  });
});
