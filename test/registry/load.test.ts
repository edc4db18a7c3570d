/**
 * Honest load on the registry: many requests in flight on one connection (one
 * daemon) and from many clients at once. Every answer must verify: a
 * legitimate burst must never look like forgery, and never drop the link.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { codeOf, newNode, startRendezvous, stopAll, type RendezvousProcess, type TestNode } from "./helpers.ts";

let r: RendezvousProcess;
beforeAll(async () => {
  r = await startRendezvous();
});
afterAll(stopAll);

function tally(codes: string[]): Record<string, number> {
  const t: Record<string, number> = {};
  for (const c of codes) t[c] = (t[c] ?? 0) + 1;
  return t;
}

test("one client with 400 requests in flight: every answer verifies and the link stays up", async () => {
  const node = await newNode(r, { public: true }, { subscribe: true });
  const targets = await Promise.all(Array.from({ length: 20 }, () => newNode(r, { public: true }, { subscribe: false })));
  const calls: Promise<unknown>[] = [];
  for (let i = 0; i < 400; i++) {
    const t = targets[i % targets.length]!;
    calls.push(i % 4 === 0 ? node.client.lookup(t.id) : i % 4 === 1 ? node.client.resolve(t.id) : i % 4 === 2 ? node.client.trustState() : node.client.heartbeat());
  }
  const codes = await Promise.all(calls.map(codeOf));
  expect(tally(codes)).toEqual({ ok: 400 });
  expect(node.client.connected).toBe(true);
});

test("150 clients with 10 requests each in flight at once: every answer verifies", async () => {
  const nodes = await Promise.all(Array.from({ length: 150 }, () => newNode(r, { public: true }, { subscribe: false })));
  const codes = await Promise.all(
    nodes.flatMap((n, i) => {
      const other = nodes[(i + 1) % nodes.length]!;
      return [
        n.client.lookup(other.id),
        n.client.resolve(other.id, { contact: true }),
        n.client.heartbeat(),
        n.client.trustState(),
        n.client.search("nothing-matches"),
        n.client.setTags([`load-${i}`]),
        n.client.lookup(n.id),
        n.client.resolve(other.id),
        n.client.trustRequest(other.id, "load"),
        n.client.trustInbox({ limit: 5 }),
      ].map(codeOf);
    }),
  );
  expect(tally(codes)).toEqual({ ok: 1500 });
  expect(nodes.every((n) => n.client.connected)).toBe(true);
}, 60_000);

test("100 nodes ask one node for trust at once and it approves each at once", async () => {
  const target = await newNode(r, {}, { subscribe: true });
  const askers: TestNode[] = await Promise.all(Array.from({ length: 100 }, () => newNode(r, {}, { subscribe: true })));
  const asked = await Promise.all(askers.map((a) => codeOf(a.client.trustRequest(target.id, `please trust ${a.id}`))));
  expect(tally(asked)).toEqual({ ok: 100 });
  // The target approves every request at once, while its own trust sync runs alongside.
  const approvals = askers.map((a) => codeOf(target.client.trustApprove(a.id)));
  const syncs = Array.from({ length: 20 }, () => codeOf(target.client.trustState()));
  expect(tally(await Promise.all(approvals))).toEqual({ ok: 100 });
  expect(tally(await Promise.all(syncs))).toEqual({ ok: 20 });
  expect(target.client.connected).toBe(true);
  const state = await target.client.trustState();
  expect(state.trusted.length).toBe(100);
  expect(state.inbound_total).toBe(0);
  // Each asker hears of its approval.
  const heard = await Promise.all(askers.map((a) => a.nextEvent((e) => e.event === "trust_approved", 10_000).then(() => "ok", () => "missing")));
  expect(tally(heard)).toEqual({ ok: 100 });
}, 60_000);

test("lookups over budget are refused with rate_limited bound to each request, and never starve the node's own calls", async () => {
  const limited = await startRendezvous({ args: ["--registration-rate", "100000", "--pow-free-rate", "100000", "--request-rate", "2"] });
  const node = await newNode(limited, { public: true, hostname: `budget-${process.pid}` }, { subscribe: false });
  // What strangers' handshakes make a public daemon do: resolve (without contact) one id after another.
  // Burst 10 from that budget; the rest are refused by it, and past 200 frames the connection's own
  // budget for them refuses them before any signature work. Every answer must verify.
  const codes = await Promise.all(Array.from({ length: 400 }, () => codeOf(node.client.resolve(node.id))));
  const t = tally(codes);
  expect(Object.keys(t).sort()).toEqual(["ok", "rate_limited"]);
  expect(t.ok).toBeGreaterThanOrEqual(10);
  expect(node.client.connected).toBe(true);
  // The node's own calls and its own lookups have budgets of their own: none of them is starved.
  expect(await codeOf(node.client.setTags(["still-mine"]))).toBe("ok");
  expect(await codeOf(node.client.find(`budget-${process.pid}`))).toBe("ok");
  expect(await codeOf(node.client.search("still-mine"))).toBe("ok");
  expect(await codeOf(node.client.trustState())).toBe("ok");
});
