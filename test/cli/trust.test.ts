/**
 * Mutual trust through the CLI: handshake -> pending (with the reason) ->
 * approve; mutual requests that approve themselves; reject; untrust, which
 * cuts a live `connect` session at once; and the errors with their hints.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { killAll, startPilot, waitFor } from "./helpers.ts";

let c: Cluster;

beforeAll(async () => {
  c = await startCluster({
    daemons: [{ name: "a", hostname: "trust-a" }, { name: "b", hostname: "trust-b" }, { name: "c", hostname: "trust-c" }, { name: "d", hostname: "trust-d" }],
  });
});

afterAll(async () => {
  killAll();
  await c?.stop();
});

const id = (name: string) => c.daemon(name).nodeId;
const trustedIds = async (name: string) => (await c.pilot(name, ["trust"])).json.data.trusted.map((t: any) => t.node_id);

describe("handshake, pending, approve", () => {
  test("the request waits, shows its reason on the other side, and approve makes trust on both", async () => {
    const h = await c.pilot("b", ["handshake", String(id("a")), "summaries for the research team"]);
    expect(h.code).toBe(0);
    expect(h.json.data).toEqual({ node_id: id("a"), address: c.daemon("a").address, status: "pending" });

    const pending = await waitFor("the request at a", async () => {
      const r = await c.pilot("a", ["pending"]);
      return r.json.data.total > 0 && r.json.data;
    });
    expect(pending.pending).toEqual([{ node_id: id("b"), address: c.daemon("b").address, hostname: "trust-b", reason: "summaries for the research team", received_at: expect.any(String) }]);
    expect(Number.isNaN(Date.parse(pending.pending[0].received_at))).toBe(false);

    const outgoing = (await c.pilot("b", ["pending"])).json.data;
    expect(outgoing.total).toBe(0);
    expect(outgoing.outgoing).toEqual([{ node_id: id("a"), address: c.daemon("a").address, reason: "summaries for the research team", sent_at: expect.any(String) }]);

    const text = await c.pilot("a", ["pending"], { json: false });
    expect(text.stdout).toContain("1 trust request waiting for you:");
    expect(text.stdout).toContain("summaries for the research team");
    expect(text.stdout).toContain(`approve with: pilot approve ${id("b")}`);

    // The hostname shown in pending works for approve, though b is private.
    const ok = await c.pilot("a", ["approve", "trust-b"]);
    expect(ok.code).toBe(0);
    expect(ok.json.data).toEqual({ node_id: id("b"), address: c.daemon("b").address, status: "trusted" });
    expect(await trustedIds("a")).toEqual([id("b")]);
    await waitFor("b to see the trust", async () => (await trustedIds("b")).includes(id("a")));
    const t = (await c.pilot("b", ["trust"])).json.data;
    expect(t.trusted[0]).toEqual({ node_id: id("a"), address: c.daemon("a").address, hostname: "trust-a", since: expect.any(String), connected: expect.any(Boolean) });
    expect(t.total).toBe(1);
    expect((await c.pilot("a", ["pending"])).json.data.total).toBe(0);
  });

  test("handshake text says the request waits for the other side and how it approves", async () => {
    const r = await c.pilot("c", ["handshake", c.daemon("a").address, "hello"], { json: false });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`trust request sent to node ${id("a")}`);
    expect(r.stdout).toContain("waiting for the other side");
    expect(r.stdout).toContain("pilot approve trust-c");
    // Withdraw it again (untrust also withdraws a request).
    expect((await c.pilot("c", ["untrust", String(id("a"))])).code).toBe(0);
  });

  test("two nodes that ask each other are trusted without an approve", async () => {
    expect((await c.pilot("c", ["handshake", String(id("d")), "pair"])).json.data.status).toBe("pending");
    const second = await c.pilot("d", ["handshake", String(id("c")), "pair"]);
    expect(second.code).toBe(0);
    expect(second.json.data.status).toBe("trusted");
    await waitFor("c to trust d", async () => (await trustedIds("c")).includes(id("d")));
    expect(await trustedIds("d")).toContain(id("c"));
  });

  test("reject removes the request; the asker gets no trust", async () => {
    expect((await c.pilot("d", ["handshake", String(id("a")), "let me in"])).code).toBe(0);
    await waitFor("the request at a", async () => (await c.pilot("a", ["pending"])).json.data.total > 0);
    const r = await c.pilot("a", ["reject", String(id("d")), "not this project"]);
    expect(r.code).toBe(0);
    expect(r.json.data).toEqual({ node_id: id("d"), address: c.daemon("d").address, status: "rejected" });
    expect((await c.pilot("a", ["pending"])).json.data.total).toBe(0);
    await waitFor("d's request to be answered", async () => (await c.pilot("d", ["pending"])).json.data.outgoing.length === 0);
    expect(await trustedIds("d")).not.toContain(id("a"));
    expect(await trustedIds("a")).not.toContain(id("d"));
  });
});

describe("errors", () => {
  test("approve or reject without a request: not_found, pointing at pending", async () => {
    for (const args of [["approve", String(id("c"))], ["reject", String(id("c"))]]) {
      const r = await c.pilot("a", args);
      expect(r.code).toBe(1);
      expect(r.json.code).toBe("not_found");
      expect(r.json.hint).toBe("see who is waiting with: pilot pending");
    }
  });

  test("handshake by the hostname of a private stranger: not_found, with the hint to use its id", async () => {
    const r = await c.pilot("d", ["handshake", "trust-b", "hi"]);
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("not_found");
    expect(r.json.hint).toContain("node id or address");
  });

  test("untrust of a node that is not trusted: not_found", async () => {
    const r = await c.pilot("d", ["untrust", String(id("b"))]);
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("not_found");
  });
});

describe("untrust", () => {
  test("cuts a live connect session at once, on both sides, and the node is invisible again", async () => {
    // a and b trust each other (first test). b holds a netcat session to a's echo port.
    const nc = startPilot(c, "b", ["connect", "trust-a", "7"]);
    nc.write("are you there\n");
    expect(await nc.nextLine()).toBe("are you there");

    const r = await c.pilot("a", ["untrust", "trust-b"]);
    expect(r.code).toBe(0);
    expect(r.json.data).toEqual({ node_id: id("b"), address: c.daemon("b").address, status: "revoked", registry_confirmed: true });

    expect(await nc.exited(5000)).toBe(1);
    expect(await nc.stderr()).toMatch(/^error: /);
    await waitFor("b to lose the trust", async () => !(await trustedIds("b")).includes(id("a")));
    expect(await trustedIds("a")).not.toContain(id("b"));
    const ping = await c.pilot("b", ["ping", "trust-a", "--count", "1"]);
    expect(ping.code).toBe(1);
    expect(ping.json.code).toBe("not_found");
  });
});
