/**
 * Local events in the SDK against a real IPC server (in-memory node, real
 * unix socket): the async iterator (filters, `since`, ending cleanly on
 * break, on close, and with an error when the daemon goes away), the
 * EventEmitter form (`on(type | prefix | "*")`, subscribing with the first
 * listener and unsubscribing with the last), the iterator's own bounded
 * queue, and the typed trust/registry methods' requests.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { EventBus } from "../../src/daemon/event-bus.ts";
import { NodeError, type Driver, type LocalEvent } from "../../src/driver/index.ts";
import { startHarness, until, type Harness } from "./harness.ts";

let h: Harness;
let bus: EventBus;

beforeEach(async () => {
  h = await startHarness();
  bus = new EventBus();
  Object.assign(h.a.node, { events: bus });
});

afterEach(async () => {
  await h.close();
});

/** Subscriptions the server holds for all clients right now. */
async function serverSubscriptions(d: Driver): Promise<number> {
  const status = (await d.call("events_status")) as { clients: { subscriptions: number }[] };
  return status.clients.reduce((n, c) => n + c.subscriptions, 0);
}

describe("pilot.events()", () => {
  test("yields the filtered events in order; break unsubscribes", async () => {
    const pilot = await h.a.connect();
    const stream = pilot.events({ types: ["trust.request", "peer"] });
    await stream.ready;
    expect(stream.lastSeq).toBe(0);
    bus.publish("trust.request", { address: "0:0000.0000.0002", node_id: 2, reason: "hello" });
    bus.publish("app.noise", {});
    bus.publish("peer.offline", { address: "0:0000.0000.0002", node_id: 2, hostname: null, reason: "unreachable" });
    bus.publish("trust.approved", { address: "0:0000.0000.0002", node_id: 2 });
    const got: LocalEvent[] = [];
    for await (const e of stream) {
      got.push(e);
      if (got.length === 2) break;
    }
    expect(got.map((e) => e.type)).toEqual(["trust.request", "peer.offline"]);
    expect(got[0]!.data).toEqual({ address: "0:0000.0000.0002", node_id: 2, reason: "hello" });
    await until(() => true);
    expect(await serverSubscriptions(pilot)).toBe(0);
  });

  test("since replays the kept events first", async () => {
    bus.publish("app.one", { n: 1 });
    bus.publish("app.two", { n: 2 });
    const pilot = await h.a.connect();
    const stream = pilot.events({ since: 1 });
    bus.publish("app.three", { n: 3 });
    const got: number[] = [];
    for await (const e of stream) {
      got.push(e.seq);
      if (got.length === 2) break;
    }
    expect(got).toEqual([2, 3]);
  });

  test("a bad filter or since fails the iterator with the daemon's error", async () => {
    const pilot = await h.a.connect();
    const stream = pilot.events({ types: ["Not A Type"] });
    await expect(stream.next()).rejects.toMatchObject({ code: "invalid_argument" });
    const ahead = pilot.events({ since: 99 });
    await expect(ahead.ready).rejects.toMatchObject({ code: "invalid_argument" });
    await expect(ahead.next()).rejects.toBeInstanceOf(NodeError);
  });

  test("close() and driver.close() end a waiting iterator cleanly", async () => {
    const pilot = await h.a.connect();
    const a = pilot.events();
    const b = pilot.events();
    await Promise.all([a.ready, b.ready]);
    const waitingA = a.next();
    const waitingB = b.next();
    await a.close();
    expect(await waitingA).toEqual({ value: undefined, done: true });
    await pilot.close();
    expect(await waitingB).toEqual({ value: undefined, done: true });
  });

  test("the daemon going away fails a waiting iterator with not_running", async () => {
    const pilot = await h.a.connect();
    const stream = pilot.events();
    await stream.ready;
    const waiting = stream.next();
    await h.a.server.close();
    await expect(waiting).rejects.toMatchObject({ code: "not_running" });
    expect(await stream.next()).toEqual({ value: undefined, done: true });
  });

  test("an iterator nobody reads keeps queueLimit events and tells what it dropped", async () => {
    const pilot = await h.a.connect();
    const stream = pilot.events({ queueLimit: 10 });
    await stream.ready;
    for (let i = 1; i <= 50; i++) bus.publish("app.n", { i });
    await until(() => stream.dropped >= 40, 2000, "drops");
    expect(stream.dropped).toBe(40);
    const got: LocalEvent[] = [];
    for await (const e of stream) {
      got.push(e);
      if (got.length === 11) break;
    }
    // The newest 10, after one gap for the 40 before them.
    expect(got[0]!.type).toBe("events.gap");
    expect(got[0]!.seq).toBe(40);
    expect(got[0]!.data).toEqual({ dropped: 40, first_seq: 1, last_seq: 40, reason: "slow_client" });
    expect(got.slice(1).map((e) => e.seq)).toEqual([41, 42, 43, 44, 45, 46, 47, 48, 49, 50]);
  });
});

describe("pilot.on()", () => {
  test("by type, by prefix and '*'; once; the last listener removed unsubscribes", async () => {
    const pilot = await h.a.connect();
    const requests: LocalEvent[] = [];
    const trust: string[] = [];
    const all: string[] = [];
    const onRequest = (e: LocalEvent) => requests.push(e);
    const onTrust = (e: LocalEvent) => trust.push(e.type);
    const onAll = (e: LocalEvent) => all.push(e.type);
    let once = 0;
    pilot.on("trust.request", onRequest);
    pilot.on("trust.*", onTrust);
    pilot.on("*", onAll);
    pilot.once("peer", () => once++);
    await until(() => true);
    // The subscription is on its way; wait until the daemon holds it.
    const probe = await h.a.connect();
    for (let i = 0; i < 100 && (await serverSubscriptions(probe)) === 0; i++) await Bun.sleep(5);
    bus.publish("trust.request", { address: "0:0000.0000.0002", node_id: 2, reason: "r" });
    bus.publish("trust.approved", { address: "0:0000.0000.0002", node_id: 2 });
    bus.publish("peer.online", { address: "0:0000.0000.0002", node_id: 2, hostname: null, endpoint: null, path: "direct" });
    bus.publish("peer.offline", { address: "0:0000.0000.0002", node_id: 2, hostname: null, reason: "untrusted" });
    await until(() => all.length === 4);
    expect(requests.map((e) => e.data.reason)).toEqual(["r"]);
    expect(trust).toEqual(["trust.request", "trust.approved"]);
    expect(all).toEqual(["trust.request", "trust.approved", "peer.online", "peer.offline"]);
    expect(once).toBe(1);

    pilot.off("trust.request", onRequest);
    pilot.off("trust.*", onTrust);
    expect(await serverSubscriptions(probe)).toBe(1);
    pilot.off("*", onAll);
    await until(() => true);
    for (let i = 0; i < 100 && (await serverSubscriptions(probe)) > 0; i++) await Bun.sleep(5);
    expect(await serverSubscriptions(probe)).toBe(0);
    // 'close' is the driver's own event, not a subscription.
    pilot.on("close", () => {});
    await Bun.sleep(20);
    expect(await serverSubscriptions(probe)).toBe(0);
  });
});

describe("typed trust and registry methods", () => {
  test("send the daemon's method names and params and return its answers", async () => {
    const node = h.a.node;
    node.methods.set("handshake", (p) => ({ node_id: 11, address: "0:0000.0000.000B", status: "pending", echo: p }));
    node.methods.set("approve", (p) => ({ node_id: 11, address: "0:0000.0000.000B", status: "trusted", echo: p }));
    node.methods.set("reject", (p) => ({ node_id: 11, address: "0:0000.0000.000B", status: "rejected", echo: p }));
    node.methods.set("untrust", (p) => ({ node_id: 11, address: "0:0000.0000.000B", status: "revoked", registry_confirmed: true, echo: p }));
    node.methods.set("pending", () => ({ pending: [], outgoing: [], total: 0 }));
    node.methods.set("trusted", () => ({ trusted: [], total: 0 }));
    node.methods.set("set_tags", (p) => ({ node_id: 10, tags: p.tags }));
    node.methods.set("set_hostname", (p) => ({ node_id: 10, hostname: p.hostname === "" ? null : p.hostname }));
    node.methods.set("set_visibility", (p) => ({ node_id: 10, public: p.public, visibility: p.public ? "public" : "private" }));
    const pilot = await h.a.connect();
    expect(await pilot.handshake("beta", "why")).toMatchObject({ status: "pending", echo: { target: "beta", reason: "why" } });
    expect(await pilot.approve(" 11 ")).toMatchObject({ status: "trusted", echo: { target: "11" } });
    expect(await pilot.reject("11")).toMatchObject({ status: "rejected", echo: { target: "11" } });
    expect(await pilot.reject("11", "no")).toMatchObject({ echo: { target: "11", reason: "no" } });
    expect(await pilot.untrust("11")).toMatchObject({ status: "revoked", registry_confirmed: true });
    expect(await pilot.pending()).toEqual({ pending: [], outgoing: [], total: 0 });
    expect(await pilot.trusted()).toEqual({ trusted: [], total: 0 });
    expect(await pilot.setTags(["nlp", "ml"])).toEqual({ node_id: 10, tags: ["nlp", "ml"] });
    expect(await pilot.setHostname("gamma")).toEqual({ node_id: 10, hostname: "gamma" });
    expect(pilot.hostname).toBe("gamma");
    expect(await pilot.setHostname(null)).toEqual({ node_id: 10, hostname: null });
    expect(pilot.hostname).toBeUndefined();
    expect(await pilot.setVisibility(true)).toEqual({ node_id: 10, public: true, visibility: "public" });
    expect(() => pilot.approve("")).toThrow(NodeError);
    expect(() => pilot.setVisibility("yes" as unknown as boolean)).toThrow(NodeError);
  });

  test("publishEvent and recentEvents", async () => {
    const pilot = await h.a.connect();
    expect(await pilot.publishEvent("app.build.done", { ok: true })).toEqual({ seq: 1, type: "app.build.done" });
    await expect(pilot.publishEvent("trust.request", {})).rejects.toMatchObject({ code: "invalid_argument" });
    const recent = await pilot.recentEvents({ types: ["app"] });
    expect(recent.events.map((e) => [e.type, e.data])).toEqual([["app.build.done", { ok: true }]]);
    expect(recent.last_seq).toBe(1);
  });
});
