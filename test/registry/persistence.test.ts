/**
 * State survives a rendezvous restart: ids, names, tags, visibility, trust
 * pairs and pending requests, and the rendezvous keeps its identity.
 */
import { afterAll, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { RegistryClient } from "../../src/registry/client.ts";
import { codeOf, connect, newNode, startRendezvous, stopAll } from "./helpers.ts";

afterAll(stopAll);

test("a restart keeps ids, names, tags, trust and pending requests, and the same registry key", async () => {
  const first = await startRendezvous();
  const a = await newNode(first, { hostname: `keep-a-${process.pid}`, tags: ["kept"], public: true }, { subscribe: false });
  const b = await newNode(first, { hostname: `keep-b-${process.pid}` }, { subscribe: false });
  const c = await newNode(first, {}, { subscribe: false });
  await a.client.trustRequest(b.id, "pair me");
  await b.client.trustApprove(a.id);
  await c.client.trustRequest(b.id, "still waiting");
  for (const n of [a, b, c]) n.client.close();

  const stopped = await first.stop("SIGTERM");
  expect(stopped.code).toBe(0);
  expect(stopped.stderr).toContain('"msg":"stopped"');
  // The SQLite file holds the trust graph: 0600 (under PILOT_TEST_STORE=postgres the state is in the database).
  if (!first.storePath.startsWith("postgres:")) expect((statSync(first.storePath).mode & 0o777).toString(8)).toBe("600");
  expect((statSync(`${first.dir}/identity.json`).mode & 0o777).toString(8)).toBe("600");

  // Same directory, new process, new port: the clients pin the key they knew.
  const second = await startRendezvous({ dir: first.dir });
  expect(second.publicKey).toBe(first.publicKey);
  const a2 = await connect(second, a.identity);
  expect((await a2.register()).node_id).toBe(a.id);
  const b2 = await connect(second, b.identity, { nodeId: b.id });
  const c2 = await connect(second, c.identity, { nodeId: c.id });
  const info = await b2.find(`keep-a-${process.pid}`);
  expect(info).toMatchObject({ node_id: a.id, tags: ["kept"], public: true });
  const state = await b2.trustState();
  expect(state.trusted.map((t) => t.peer)).toEqual([a.id]);
  expect(state.inbound.map((i) => [i.from, i.reason])).toEqual([[c.id, "still waiting"]]);
  expect((await c2.trustState()).outbound.map((o) => o.to)).toEqual([b.id]);
  // Trust still grants visibility of the private node.
  expect((await a2.lookup(b.id)).hostname).toBe(`keep-b-${process.pid}`);
  expect(await codeOf(c2.lookup(b.id))).toBe("not_found");
  // A new key gets a fresh id, never a reused one.
  const d = await newNode(second, {}, { subscribe: false });
  expect(d.id).toBeGreaterThan(c.id);
  // SIGINT stops it cleanly too.
  expect((await second.stop("SIGINT")).code).toBe(0);
});

test("a subscribed client reconnects by itself after a restart and resyncs", async () => {
  const first = await startRendezvous();
  const port = first.port;
  const target = await newNode(first);
  let reconnected = 0;
  target.client.onReconnect = () => reconnected++;
  await first.stop();
  // Restart on the same port, so the client's address stays right.
  const second = await startRendezvous({ dir: first.dir, registryPort: port });
  for (let i = 0; i < 100 && reconnected === 0; i++) await Bun.sleep(50);
  expect(reconnected).toBe(1);
  const asker = await newNode(second, {}, { subscribe: false });
  await asker.client.trustRequest(target.id, "after restart");
  expect(await target.nextEvent((e) => e.event === "trust_request")).toMatchObject({ from: asker.id, reason: "after restart", seq: 1 });
  expect((await target.client.trustState()).inbound.map((i) => i.from)).toEqual([asker.id]);
});

test("an unreachable registry fails with connection_failed after bounded retries", async () => {
  const r = await startRendezvous();
  const port = r.port;
  await r.stop();
  const started = Date.now();
  const code = await codeOf(RegistryClient.connect({ host: "127.0.0.1", port, signer: (await import("../../src/crypto/identity.ts")).generateIdentity(), reconnect: { attempts: 3, baseDelayMs: 50 } }));
  expect(code).toBe("connection_failed");
  expect(Date.now() - started).toBeLessThan(2000);
});

test("a captured signed request is refused after a restart too (its nonce is kept in the store)", async () => {
  const { keyBytes, RawConnection, signedRequest } = await import("./helpers.ts");
  const first = await startRendezvous();
  const name = `replayed-${process.pid}`;
  const victim = await newNode(first, { hostname: name }, { subscribe: false });
  // The victim clears its name; an eavesdropper keeps the signed request. The victim takes its name back.
  const captured = signedRequest(victim.identity, keyBytes(first.publicKey), { type: "set_hostname", node_id: victim.id, hostname: "" });
  const c = await RawConnection.open(first.port);
  await c.next();
  c.send(captured);
  expect(await c.next()).toMatchObject({ ok: true, hostname: null });
  c.close();
  await victim.client.setHostname(name);
  victim.client.close();

  await first.stop();
  const second = await startRendezvous({ dir: first.dir });
  // Within the 60 s window, on the restarted registry: the replay is refused and the name stays.
  const again = await RawConnection.open(second.port);
  await again.next();
  again.send(captured);
  expect(await again.next()).toMatchObject({ ok: false, error: { code: "replayed_request" } });
  again.close();
  const check = await connect(second, victim.identity, { nodeId: victim.id });
  expect((await check.lookup(victim.id)).hostname).toBe(name);
});
