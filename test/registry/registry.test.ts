/**
 * The registry's behaviour, end to end: a real `pilot rendezvous` process on
 * 127.0.0.1 and real clients. Names, tags, search, privacy, trust, events.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { codeOf, connect, newNode, startRendezvous, stopAll, type RendezvousProcess, type TestNode } from "./helpers.ts";

let r: RendezvousProcess;
let seq = 0;
const uniq = (base: string) => `${base}-${process.pid}-${++seq}`;

beforeAll(async () => {
  r = await startRendezvous();
});
afterAll(stopAll);

describe("registration", () => {
  test("a new key gets an id from 4 up and its address; the same key gets the same id back", async () => {
    const identity = generateIdentity();
    const a = await connect(r, identity);
    const first = await a.register({ endpoints: ["127.0.0.1:4000"] });
    expect(first.created).toBe(true);
    expect(first.node_id).toBeGreaterThanOrEqual(4);
    expect(first.address).toBe(`0:0000.${(first.node_id >>> 16).toString(16).toUpperCase().padStart(4, "0")}.${(first.node_id & 0xffff).toString(16).toUpperCase().padStart(4, "0")}`);
    expect(first.public).toBe(false);
    expect(first.observed_ip).toBe("127.0.0.1");
    expect(first.endpoints).toEqual(["127.0.0.1:4000"]);
    const b = await connect(r, identity);
    const again = await b.register();
    expect(again.node_id).toBe(first.node_id);
    expect(again.created).toBe(false);
    const other = await (await connect(r, generateIdentity())).register();
    expect(other.node_id).not.toBe(first.node_id);
  });

  test("calls before registering fail locally with not_registered", async () => {
    const c = await connect(r, generateIdentity());
    expect(await codeOf(c.lookup(4))).toBe("not_registered");
  });

  test("an id the registry does not know cannot sign requests", async () => {
    const c = await connect(r, generateIdentity(), { nodeId: 999_999 });
    expect(await codeOf(c.lookup(4))).toBe("unauthorized");
  });

  test("endpoints are validated; 0.0.0.0:port is filled in with the observed IP", async () => {
    const a = await newNode(r, { public: true });
    expect(await codeOf(a.client.heartbeat(["example.com:80"]))).toBe("invalid_argument");
    expect(await codeOf(a.client.heartbeat(["1.2.3.4:0"]))).toBe("invalid_argument");
    expect(await codeOf(a.client.heartbeat(Array.from({ length: 9 }, (_, i) => `10.0.0.${i}:1`)))).toBe("invalid_argument");
    const hb = await a.client.heartbeat(["0.0.0.0:4100", "[2001:DB8::1]:4100", "10.1.2.3:4101"]);
    expect(hb.observed_ip).toBe("127.0.0.1");
    const b = await newNode(r);
    const res = await b.client.resolve(a.id);
    expect(res.endpoints).toEqual(["0.0.0.0:4100", "[2001:db8::1]:4100", "10.1.2.3:4101"]);
    expect(res.observed_ip).toBe("127.0.0.1");
    expect(res.candidates).toEqual(["127.0.0.1:4100", "[2001:db8::1]:4100", "10.1.2.3:4101", "127.0.0.1:4101"]);
    expect(res.online).toBe(true);
  });
});

describe("hostnames", () => {
  test("valid names are claimed, unique, and can be cleared and reclaimed", async () => {
    const name = uniq("alpha");
    const a = await newNode(r, { hostname: name, public: true });
    const b = await newNode(r);
    expect((await b.client.find(name)).node_id).toBe(a.id);
    expect(await codeOf(b.client.setHostname(name))).toBe("already_exists");
    expect(await codeOf(newNode(r, { hostname: name }))).toBe("already_exists");
    await a.client.setHostname("");
    expect(await codeOf(b.client.find(name))).toBe("not_found");
    expect((await b.client.setHostname(name)).hostname).toBe(name);
    // Setting your own name again is fine.
    expect((await b.client.setHostname(name)).hostname).toBe(name);
  });

  test.each([
    ["Upper", "uppercase"],
    ["-lead", "leading hyphen"],
    ["trail-", "trailing hyphen"],
    ["a".repeat(64), "too long"],
    ["under_score", "underscore"],
    ["dot.name", "dot"],
    ["localhost", "reserved"],
    ["broadcast", "reserved"],
    ["backbone", "reserved"],
    ["12345", "all digits (reads as a node id)"],
    [" ", "space"],
  ])("%p is refused (%s)", async (name) => {
    const a = await newNode(r, {}, { subscribe: false });
    expect(await codeOf(a.client.setHostname(name))).toBe("invalid_argument");
  });

  test("63 characters and digits-with-letters are accepted", async () => {
    const a = await newNode(r, {}, { subscribe: false });
    const long = `x${process.pid}`.padEnd(63, "z");
    expect((await a.client.setHostname(long)).hostname).toBe(long);
    const b = await newNode(r, {}, { subscribe: false });
    expect((await b.client.setHostname(`9${process.pid}a`)).hostname).toBe(`9${process.pid}a`);
  });
});

describe("tags and search", () => {
  test("tags are validated, '#' stripped, duplicates removed, at most 10", async () => {
    const a = await newNode(r, {}, { subscribe: false });
    expect((await a.client.setTags(["#web", "api", "web"])).tags).toEqual(["web", "api"]);
    expect(await codeOf(a.client.setTags(Array.from({ length: 11 }, (_, i) => `t${i}`)))).toBe("invalid_argument");
    expect(await codeOf(a.client.setTags(["Bad"]))).toBe("invalid_argument");
    expect(await codeOf(a.client.setTags(["x".repeat(33)]))).toBe("invalid_argument");
    expect(await codeOf(a.client.setTags(["-x"]))).toBe("invalid_argument");
    expect((await a.client.setTags(Array.from({ length: 10 }, (_, i) => `t${i}`))).tags.length).toBe(10);
    expect((await a.client.setTags([])).tags).toEqual([]);
  });

  test("search finds visible nodes by tag or hostname part, never private strangers", async () => {
    const tag = uniq("tg");
    const pub = await newNode(r, { hostname: uniq("searchpub"), tags: [tag], public: true });
    const priv = await newNode(r, { hostname: uniq("searchpriv"), tags: [tag] });
    const viewer = await newNode(r);
    const hits = await viewer.client.search(`#${tag}`);
    expect(hits.map((h) => h.node_id)).toEqual([pub.id]);
    expect(hits[0]).toEqual({ node_id: pub.id, address: expect.any(String), hostname: expect.stringContaining("searchpub"), tags: [tag], public: true, online: true, polo_score: 0 });
    expect((await viewer.client.search("searchpriv")).length).toBe(0);
    // A node sees itself.
    expect((await priv.client.search(tag)).map((h) => h.node_id).sort()).toEqual([pub.id, priv.id].sort());
    expect(await codeOf(viewer.client.search(""))).toBe("invalid_argument");
    expect(await codeOf(viewer.client.search("%"))).toBe("invalid_argument");
  });
});

describe("privacy", () => {
  test("a private node is indistinguishable from a nonexistent one for a stranger", async () => {
    const name = uniq("hidden");
    const hidden = await newNode(r, { hostname: name, endpoints: ["127.0.0.1:5000"], tags: ["secret"] });
    const stranger = await newNode(r);
    const absent = 0xfff0_0000;
    const errorOf = async (p: Promise<unknown>) => {
      try {
        await p;
        return "resolved";
      } catch (e) {
        return JSON.stringify({ code: (e as any).code, message: (e as Error).message });
      }
    };
    const lookupHidden = await errorOf(stranger.client.lookup(hidden.id));
    expect(lookupHidden).toContain("not_found");
    expect(await errorOf(stranger.client.lookup(absent))).toBe(lookupHidden);
    expect(await errorOf(stranger.client.resolve(hidden.id))).toBe(lookupHidden);
    expect(await errorOf(stranger.client.resolve(absent))).toBe(lookupHidden);
    expect(await errorOf(stranger.client.find(name))).toBe(await errorOf(stranger.client.find(uniq("nobody"))));
    expect(await stranger.client.search(name)).toEqual([]);
    // A trust request answers the same for both, too.
    expect(await stranger.client.trustRequest(absent, "hi")).toEqual({ to: absent, status: "pending" });
    expect(await stranger.client.trustRequest(hidden.id, "hi")).toEqual({ to: hidden.id, status: "pending" });
    // And the requester's own view of its requests does not tell them apart.
    const outbound = (await stranger.client.trustState()).outbound;
    expect(outbound.map((o) => o.to).sort()).toEqual([hidden.id, absent].sort());
    expect(Object.keys(outbound[0]!).sort()).toEqual(Object.keys(outbound[1]!).sort());
    // A node always sees itself.
    expect((await hidden.client.lookup(hidden.id)).hostname).toBe(name);
  });

  test("a public node is visible to all; going private hides it again", async () => {
    const a = await newNode(r, { public: true, hostname: uniq("flip") });
    const b = await newNode(r);
    expect((await b.client.lookup(a.id)).public).toBe(true);
    await a.client.setVisibility(false);
    expect(await codeOf(b.client.lookup(a.id))).toBe("not_found");
    await a.client.setVisibility(true);
    expect((await b.client.resolve(a.id)).node_id).toBe(a.id);
  });

  test("visible after trust, invisible again after revoke", async () => {
    const a = await newNode(r, { hostname: uniq("pa"), endpoints: ["127.0.0.1:6000"] });
    const b = await newNode(r);
    expect(await codeOf(b.client.resolve(a.id))).toBe("not_found");
    await b.client.trustRequest(a.id, "let me in");
    await a.client.trustApprove(b.id);
    expect((await b.client.resolve(a.id)).candidates).toEqual(["127.0.0.1:6000"]);
    expect((await b.client.lookup(a.id)).hostname).toContain("pa-");
    await a.client.trustRevoke(b.id);
    expect(await codeOf(b.client.resolve(a.id))).toBe("not_found");
    expect(await codeOf(b.client.lookup(a.id))).toBe("not_found");
  });

  test("a node that asked you for trust is visible to you while the request is pending", async () => {
    const asker = await newNode(r, { hostname: uniq("asker") });
    const target = await newNode(r);
    expect(await codeOf(target.client.lookup(asker.id))).toBe("not_found");
    await asker.client.trustRequest(target.id, "hello");
    expect((await target.client.lookup(asker.id)).node_id).toBe(asker.id);
    // ...but the asker still cannot see the private target.
    expect(await codeOf(asker.client.lookup(target.id))).toBe("not_found");
  });

  test("a private node that resolves a node becomes visible to that node (it is about to open a tunnel), to no one else", async () => {
    const caller = await newNode(r); // private
    const service = await newNode(r, { public: true, endpoints: ["127.0.0.1:4100"] });
    const bystander = await newNode(r);
    expect(await codeOf(service.client.resolve(caller.id))).toBe("not_found");
    await caller.client.resolve(service.id); // a plain lookup grants nothing
    expect(await codeOf(service.client.resolve(caller.id))).toBe("not_found");
    await caller.client.resolve(service.id, { contact: true });
    const seen = await service.client.resolve(caller.id);
    expect(seen.public_key).toBe(Buffer.from(caller.identity.publicKey).toString("base64"));
    expect(await codeOf(bystander.client.resolve(caller.id))).toBe("not_found");
    // Resolving someone you cannot see grants nothing.
    await codeOf(caller.client.resolve(bystander.id, { contact: true }));
    expect(await codeOf(bystander.client.resolve(caller.id))).toBe("not_found");
  });
});

describe("trust", () => {
  async function pair(): Promise<[TestNode, TestNode]> {
    return [await newNode(r, { hostname: uniq("ta") }), await newNode(r, { hostname: uniq("tb") })];
  }

  test("request (pushed with its reason) then approve (pushed back) makes a pair", async () => {
    const [a, b] = await pair();
    expect(await a.client.trustRequest(b.id, "I am A, please trust me")).toEqual({ to: b.id, status: "pending" });
    const pushed = await b.nextEvent((e) => e.event === "trust_request");
    expect(pushed).toMatchObject({ event: "trust_request", from: a.id, reason: "I am A, please trust me", node_id: b.id });
    const state = await b.client.trustState();
    expect(state.inbound).toEqual([
      { from: a.id, address: expect.any(String), public_key: Buffer.from(a.identity.publicKey).toString("base64"), hostname: expect.stringContaining("ta-"), reason: "I am A, please trust me", created_at: expect.any(Number) },
    ]);
    expect(state.inbound_total).toBe(1);
    expect((await a.client.trustState()).outbound.map((o) => o.to)).toEqual([b.id]);
    expect(await b.client.trustApprove(a.id)).toEqual({ peer: a.id, trusted: true });
    expect(await a.nextEvent((e) => e.event === "trust_approved")).toMatchObject({ event: "trust_approved", peer: b.id });
    const sa = await a.client.trustState();
    const sb = await b.client.trustState();
    expect(sa.trusted.map((t) => t.peer)).toEqual([b.id]);
    expect(sa.trusted[0]!.public_key).toBe(Buffer.from(b.identity.publicKey).toString("base64"));
    expect(sb.trusted.map((t) => t.peer)).toEqual([a.id]);
    expect(sa.outbound).toEqual([]);
    expect(sb.inbound).toEqual([]);
    // Asking again once trusted just says so.
    expect((await a.client.trustRequest(b.id, "again")).status).toBe("trusted");
  });

  test("mutual requests auto-approve and both sides are told", async () => {
    const [a, b] = await pair();
    await a.client.trustRequest(b.id, "a->b");
    await b.nextEvent((e) => e.event === "trust_request");
    expect(await b.client.trustRequest(a.id, "b->a")).toEqual({ to: a.id, status: "trusted" });
    expect(await a.nextEvent((e) => e.event === "trust_approved")).toMatchObject({ peer: b.id });
    expect(await b.nextEvent((e) => e.event === "trust_approved")).toMatchObject({ peer: a.id });
    expect((await a.client.trustState()).trusted.map((t) => t.peer)).toEqual([b.id]);
  });

  test("reject removes the request and tells the requester, with the reason", async () => {
    const [a, b] = await pair();
    await a.client.trustRequest(b.id, "please");
    expect(await b.client.trustReject(a.id, "no thanks")).toEqual({ peer: a.id, rejected: true });
    expect(await a.nextEvent((e) => e.event === "trust_rejected")).toMatchObject({ peer: b.id, reason: "no thanks" });
    expect((await b.client.trustState()).inbound).toEqual([]);
    expect((await a.client.trustState()).outbound).toEqual([]);
    expect(await codeOf(b.client.trustApprove(a.id))).toBe("not_found");
    expect(await codeOf(b.client.trustReject(a.id))).toBe("not_found");
  });

  test("either side can revoke, and the other side is told", async () => {
    for (const revoker of ["requester", "approver"] as const) {
      const [a, b] = await pair();
      await a.client.trustRequest(b.id, "x");
      await b.client.trustApprove(a.id);
      const [by, other] = revoker === "requester" ? [a, b] : [b, a];
      expect(await by.client.trustRevoke(other.id)).toEqual({ peer: other.id, revoked: true, withdrawn: false });
      expect(await other.nextEvent((e) => e.event === "trust_revoked")).toMatchObject({ peer: by.id });
      expect((await a.client.trustState()).trusted).toEqual([]);
      expect((await b.client.trustState()).trusted).toEqual([]);
      expect(await codeOf(by.client.trustRevoke(other.id))).toBe("not_found");
    }
  });

  test("a requester can withdraw its pending request", async () => {
    const [a, b] = await pair();
    await a.client.trustRequest(b.id, "x");
    expect(await a.client.trustRevoke(b.id)).toEqual({ peer: b.id, revoked: false, withdrawn: true });
    expect((await b.client.trustState()).inbound).toEqual([]);
    expect(await codeOf(b.client.trustApprove(a.id))).toBe("not_found");
  });

  test("nobody can create trust alone", async () => {
    const [a, b] = await pair();
    // Approving without a pending request fails.
    expect(await codeOf(a.client.trustApprove(b.id))).toBe("not_found");
    // A node cannot approve its own request to someone else.
    await a.client.trustRequest(b.id, "mine");
    expect(await codeOf(a.client.trustApprove(b.id))).toBe("not_found");
    // Nor ask or approve itself.
    expect(await codeOf(a.client.trustRequest(a.id, "me"))).toBe("invalid_argument");
    expect(await codeOf(a.client.trustApprove(a.id))).toBe("not_found");
    // Repeating a request does not make it count twice or become trust.
    expect((await a.client.trustRequest(b.id, "mine again")).status).toBe("pending");
    expect((await a.client.trustState()).trusted).toEqual([]);
    expect((await b.client.trustState()).trusted).toEqual([]);
    expect((await b.client.trustState()).inbound_total).toBe(1);
    // Reserved ids are not nodes.
    expect(await codeOf(a.client.trustRequest(1, "registry?"))).toBe("invalid_argument");
  });

  test("reasons are bounded and may not carry control characters", async () => {
    const [a, b] = await pair();
    expect(await codeOf(a.client.trustRequest(b.id, "x".repeat(501)))).toBe("invalid_argument");
    expect(await codeOf(a.client.trustRequest(b.id, "evil \u001b[2J"))).toBe("invalid_argument");
    expect(await codeOf(a.client.trustRequest(b.id, "rtl \u202e"))).toBe("invalid_argument");
    expect((await a.client.trustRequest(b.id, "é".repeat(500))).status).toBe("pending");
  });

  test("a large inbox comes back in pages that each fit in a frame", async () => {
    const target = await newNode(r, {}, { subscribe: false });
    const reason = "\u{1F600}".repeat(500); // 2000 bytes of UTF-8 each
    const askers = await Promise.all(Array.from({ length: 40 }, () => newNode(r, {}, { subscribe: false })));
    for (const a of askers) await a.client.trustRequest(target.id, reason);
    const state = await target.client.trustState();
    expect(state.inbound.length).toBe(40);
    expect(state.inbound_total).toBe(40);
    expect(new Set(state.inbound.map((i) => i.from)).size).toBe(40);
    expect(state.inbound.every((i) => i.reason === reason)).toBe(true);
  });

  test("deregistering ends the node's trust, tells its peers, frees its name, and the key keeps its id", async () => {
    const name = uniq("leaver");
    const [a, b] = [await newNode(r, { hostname: name, public: true }), await newNode(r)];
    await b.client.trustRequest(a.id, "x");
    await a.client.trustApprove(b.id);
    await a.client.deregister();
    expect(await b.nextEvent((e) => e.event === "trust_revoked")).toMatchObject({ peer: a.id });
    expect(await codeOf(b.client.lookup(a.id))).toBe("not_found");
    expect(await codeOf(a.client.lookup(a.id))).toBe("unauthorized");
    const c = await newNode(r, { hostname: name });
    expect(c.id).not.toBe(a.id);
    const back = await a.client.register();
    expect(back.node_id).toBe(a.id);
    expect(back.hostname).toBe(null);
    expect(back.public).toBe(false);
  });
});

describe("events", () => {
  test("events are sequenced per subscription and a client without subscribe gets none", async () => {
    const target = await newNode(r);
    const quiet = await newNode(r, {}, { subscribe: false });
    for (let i = 0; i < 3; i++) {
      const asker = await newNode(r, {}, { subscribe: false });
      await asker.client.trustRequest(target.id, `n${i}`);
    }
    const got = [await target.nextEvent(), await target.nextEvent(), await target.nextEvent()];
    expect(got.map((e) => e.seq)).toEqual([1, 2, 3]);
    const asker = await newNode(r, {}, { subscribe: false });
    await asker.client.trustRequest(quiet.id, "hello?");
    await Bun.sleep(100);
    expect(quiet.events).toEqual([]);
  });

  test("two connections of one node both receive its events", async () => {
    const a = await newNode(r);
    const second: unknown[] = [];
    const c2 = await connect(r, a.identity, { nodeId: a.id, onEvent: (e) => second.push(e) });
    await c2.subscribe();
    const asker = await newNode(r, {}, { subscribe: false });
    await asker.client.trustRequest(a.id, "both");
    await a.nextEvent();
    for (let i = 0; i < 50 && second.length === 0; i++) await Bun.sleep(20);
    expect(second).toEqual([expect.objectContaining({ event: "trust_request", from: asker.id, seq: 1 })]);
  });
});
