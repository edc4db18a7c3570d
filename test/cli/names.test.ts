/**
 * This node and finding others through the CLI: info, hostnames (set, clear,
 * taken), tags and search, visibility, and privacy (a private node is
 * invisible to a stranger through find, search and ping, and visible once
 * trusted). Three daemons: a and b are named, c is a stranger to both.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startCluster, type Cluster } from "../support/cluster.ts";

let c: Cluster;

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "a", hostname: "names-a" }, { name: "b", hostname: "names-b" }, { name: "c" }] });
});

afterAll(async () => {
  await c?.stop();
});

describe("info", () => {
  test("has the reference's fields and this node's state", async () => {
    const r = await c.pilot("a", ["info"]);
    expect(r.code).toBe(0);
    const d = r.json.data;
    const a = c.daemon("a");
    expect(d).toMatchObject({ node_id: a.nodeId, address: a.address, hostname: "names-a", public: false, tags: [], pid: a.pid, registry: c.registry, registry_connected: true, encrypt: true });
    for (const k of ["uptime_secs", "peers", "connections", "trusted", "pending", "bytes_sent", "bytes_recv"]) expect(typeof d[k]).toBe("number");
    expect(d.ports).toContain(7);
    expect(d.endpoint).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  test("text output is short and aligned", async () => {
    const r = await c.pilot("a", ["info"], { json: false });
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe(`names-a  ${c.daemon("a").address}  (node ${c.daemon("a").nodeId})`);
    expect(r.stdout).toContain("Visibility:   private");
  });
});

describe("hostnames", () => {
  test("set, see, clear, and claim again", async () => {
    let r = await c.pilot("c", ["set-hostname", "names-c"]);
    expect(r.code).toBe(0);
    expect(r.json.data).toEqual({ node_id: c.daemon("c").nodeId, hostname: "names-c" });
    expect((await c.pilot("c", ["info"])).json.data.hostname).toBe("names-c");

    r = await c.pilot("c", ["clear-hostname"]);
    expect(r.code).toBe(0);
    expect(r.json.data).toEqual({ node_id: c.daemon("c").nodeId, hostname: null });
    expect((await c.pilot("c", ["info"])).json.data.hostname).toBeNull();

    // A released name is free for someone else.
    r = await c.pilot("b", ["set-hostname", "names-c"]);
    expect(r.code).toBe(0);
    r = await c.pilot("b", ["set-hostname", "names-b"]);
    expect(r.json.data.hostname).toBe("names-b");
  });

  test("a taken hostname fails with already_exists", async () => {
    const r = await c.pilot("c", ["set-hostname", "names-a"]);
    expect(r.code).toBe(1);
    expect(r.json).toEqual({ status: "error", code: "already_exists", message: 'the hostname "names-a" belongs to another node', hint: "choose another name" });
  });

  test("an invalid hostname fails with invalid_argument (exit 2)", async () => {
    const r = await c.pilot("c", ["set-hostname", "Not_A_Name"]);
    expect(r.code).toBe(2);
    expect(r.json.code).toBe("invalid_argument");
  });
});

describe("tags and search", () => {
  test("set-tags replaces the tags (a leading # is dropped), clear-tags removes them", async () => {
    let r = await c.pilot("a", ["set-tags", "nlp", "#summarizer"]);
    expect(r.code).toBe(0);
    expect(r.json.data).toEqual({ node_id: c.daemon("a").nodeId, tags: ["nlp", "summarizer"] });
    expect((await c.pilot("a", ["info"])).json.data.tags).toEqual(["nlp", "summarizer"]);
    r = await c.pilot("a", ["set-tags", "BAD TAG"]);
    expect(r.code).toBe(2);
    expect(r.json.code).toBe("invalid_argument");
    r = await c.pilot("b", ["set-tags", "storage"]);
    r = await c.pilot("b", ["clear-tags"]);
    expect(r.json.data).toEqual({ node_id: c.daemon("b").nodeId, tags: [] });
  });

  test("peers --search finds nodes by tag or hostname, but never a private stranger", async () => {
    // a is private: c, a stranger, cannot find it.
    let r = await c.pilot("c", ["peers", "--search", "nlp"]);
    expect(r.code).toBe(0);
    expect(r.json.data).toEqual({ query: "nlp", peers: [], total: 0 });
    // Made public, a shows up for everyone, by tag and by part of its name.
    expect((await c.pilot("a", ["set-public"])).json.data).toEqual({ node_id: c.daemon("a").nodeId, public: true, visibility: "public" });
    r = await c.pilot("c", ["peers", "--search", "nlp"]);
    expect(r.json.data.total).toBe(1);
    expect(r.json.data.peers[0]).toEqual({ node_id: c.daemon("a").nodeId, address: c.daemon("a").address, hostname: "names-a", tags: ["nlp", "summarizer"], public: true, online: true, polo_score: 0 });
    r = await c.pilot("c", ["peers", "--search", "names"]);
    expect(r.json.data.peers.map((p: any) => p.hostname)).toEqual(["names-a"]); // b is private
    const text = await c.pilot("c", ["peers", "--search", "nlp"], { json: false });
    expect(text.stdout).toMatch(/^NODE\s+ADDRESS\s+HOSTNAME\s+TAGS\s+VISIBILITY\s+ONLINE\s+POLO\n/);
    expect(text.stdout).toMatch(/\s+yes\s+0\npolo: reputation as a worker, 0-100, from task receipts both parties signed; explain one with: pilot reputation NODE\n$/);
    expect(text.stdout).toContain("#nlp #summarizer");
    // Private again: gone.
    expect((await c.pilot("a", ["set-private"])).json.data.public).toBe(false);
    r = await c.pilot("c", ["peers", "--search", "nlp"]);
    expect(r.json.data.total).toBe(0);
  });
});

describe("privacy and target forms", () => {
  test("a private node is invisible to a stranger through find and ping, by any target form", async () => {
    const a = c.daemon("a");
    for (const args of [["find", "names-a"], ["find", a.address], ["find", String(a.nodeId)], ["ping", "names-a", "--count", "1"], ["ping", String(a.nodeId), "--count", "1"], ["ping", a.address, "--count", "1"]]) {
      const r = await c.pilot("c", args);
      expect({ args, code: r.code, error: r.json.code }).toEqual({ args, code: 1, error: "not_found" });
      expect(r.json.hint).toContain("pilot handshake");
    }
  });

  test("an unknown node gets the same not_found, with a hint", async () => {
    for (const args of [["find", "no-such-node"], ["ping", "99999", "--count", "1"], ["traceroute", "no-such-node"], ["connect", "no-such-node", "--message", "x"]]) {
      const r = await c.pilot("c", args);
      expect({ args, code: r.code, error: r.json.code }).toEqual({ args, code: 1, error: "not_found" });
      expect(r.json.hint).toBeString();
    }
  });

  test("a public node can be found by anyone", async () => {
    await c.pilot("b", ["set-public"]);
    try {
      const b = c.daemon("b");
      const r = await c.pilot("c", ["find", "names-b"]);
      expect(r.code).toBe(0);
      expect(r.json.data).toEqual({ node_id: b.nodeId, address: b.address, hostname: "names-b", public: true, tags: [], online: true, last_seen: expect.any(String), public_key: expect.any(String), polo_score: 0 });
      expect(new Date(r.json.data.last_seen).getTime()).toBeGreaterThan(0);
    } finally {
      await c.pilot("b", ["set-private"]);
    }
  });

  // Known gap (daemon/registry, not the CLI): the public node must learn the
  // caller's key from the registry, which hides a private caller from it, so
  // the tunnel handshake never completes. Remove `.failing` once fixed.
  test("a private stranger can ping a public node", async () => {
    await c.pilot("b", ["set-public"]);
    try {
      const ping = await c.pilot("c", ["ping", "names-b", "--count", "1", "--timeout", "500ms"]);
      expect(ping.json.code).toBeUndefined();
      expect(ping.code).toBe(0);
    } finally {
      await c.pilot("b", ["set-private"]);
    }
  });

  test("after trust, the private node is visible by hostname, address and node id", async () => {
    await c.trust("a", "c");
    const a = c.daemon("a");
    for (const target of ["names-a", a.address, String(a.nodeId), a.address.slice(2)]) {
      const r = await c.pilot("c", ["find", target]);
      expect({ target, code: r.code }).toEqual({ target, code: 0 });
      expect(r.json.data).toMatchObject({ node_id: a.nodeId, address: a.address, hostname: "names-a", public: false });
    }
    const ping = await c.pilot("c", ["ping", "names-a", "--count", "1"]);
    expect(ping.code).toBe(0);
    expect(ping.json.data.target).toBe(a.address);
    // Still private to b.
    expect((await c.pilot("b", ["find", "names-a"])).json.code).toBe("not_found");
  });
});
