/**
 * The sans-I/O Broker: fan-out (once per client, encoded once, shared
 * batches), the sender's identity, slow consumers told and cut (per queue and
 * in total), and every bound per peer first, then in total. Time is an argument.
 */
import { describe, expect, test } from "bun:test";
import { addressOf, type Address } from "../../../src/protocol/address.ts";
import { decodeBrokerFrame, FrameReader, type EventFrame } from "../../../src/protocol/pubsub.ts";
import { Broker, type BrokerClient, type BrokerOutlet } from "../../../src/daemon/services/pubsub/broker.ts";
import { DEFAULT_PUBSUB_LIMITS, pubsubLimitsFrom, type PubsubLimits } from "../../../src/daemon/services/pubsub/limits.ts";

/** An outlet that keeps what it is given; `drains` says whether the stream takes it at once. */
class FakeOutlet implements BrokerOutlet {
  readonly batches: Uint8Array[] = [];
  backlog = 0;
  backlogEvents = 0;
  constructor(public drains = true) {}
  write(frames: Uint8Array, events: number): void {
    this.batches.push(frames);
    if (!this.drains) {
      this.backlog += frames.length;
      this.backlogEvents += events;
    }
  }
  events(): EventFrame[] {
    const reader = new FrameReader(1 << 24);
    const out: EventFrame[] = [];
    for (const b of this.batches) {
      const r = reader.push(b);
      if (!r.ok) throw new Error(r.error.message);
      for (const body of r.value) {
        const f = decodeBrokerFrame(body);
        if (!f.ok || f.value.type !== "event") throw new Error("not an event");
        out.push(f.value);
      }
    }
    return out;
  }
}

const A = addressOf(0, 10);
const B = addressOf(0, 11);
const C = addressOf(0, 12);
const enc = (s: string) => new TextEncoder().encode(s);

function setup(limits: Partial<PubsubLimits> = {}) {
  const broker = new Broker({ ...DEFAULT_PUBSUB_LIMITS, ...limits }, 0);
  const open = (peer: Address, drains = true) => {
    const outlet = new FakeOutlet(drains);
    const c = broker.open(peer, outlet, 0);
    if ("refused" in c) throw new Error(c.message);
    return { client: c, outlet };
  };
  const publish = (c: BrokerClient, topic: string, data = "x", now = 0) => broker.publish(c, topic, enc(topic), enc(data), now);
  return { broker, open, publish };
}

describe("fan-out", () => {
  test("each matching client gets the event once (overlapping patterns too), with the sender's stream address and increasing seq", () => {
    const { broker, open, publish } = setup();
    const s1 = open(B);
    const s2 = open(C);
    const pub = open(A);
    expect(broker.subscribe(s1.client, 1, "sensors.>")).toBeNull();
    expect(broker.subscribe(s1.client, 2, "sensors.*.temp")).toBeNull();
    expect(broker.subscribe(s2.client, 1, "sensors.kitchen.#")).toBeNull();
    expect(broker.subscribe(s2.client, 2, "other")).toBeNull();
    expect(publish(pub.client, "sensors.kitchen.temp", "21.5", 1000)).toEqual({ count: 2, seq: 1 });
    expect(publish(pub.client, "sensors.hall", "x", 1001)).toEqual({ count: 1, seq: 2 });
    expect(publish(pub.client, "nobody.listens")).toEqual({ count: 0, seq: 3 });
    expect(broker.flush()).toEqual([]);
    const e1 = s1.outlet.events();
    expect(e1.map((e) => [e.topic, new TextDecoder().decode(e.data), e.seq, e.time, e.from])).toEqual([
      ["sensors.kitchen.temp", "21.5", 1, 1000, A],
      ["sensors.hall", "x", 2, 1001, A],
    ]);
    expect(s2.outlet.events().map((e) => e.topic)).toEqual(["sensors.kitchen.temp"]);
    expect(pub.outlet.batches).toEqual([]);
    expect(broker.status()).toMatchObject({ published: 3, delivered: 3, subscriptions: 4, subscribers: 2, connections: 3 });
  });

  test("the event is encoded once: subscribers that get every event of a turn share one batch buffer", () => {
    const { broker, open, publish } = setup();
    const subs = [open(B), open(B), open(C)];
    for (const s of subs) broker.subscribe(s.client, 1, "t.>");
    const odd = open(C);
    broker.subscribe(odd.client, 1, "t.a");
    const pub = open(A);
    publish(pub.client, "t.a");
    publish(pub.client, "t.b");
    broker.flush();
    expect(subs[0]!.outlet.batches.length).toBe(1);
    expect(subs[1]!.outlet.batches[0]).toBe(subs[0]!.outlet.batches[0]!); // the same bytes, not a copy
    expect(subs[2]!.outlet.batches[0]).toBe(subs[0]!.outlet.batches[0]!);
    expect(odd.outlet.events().map((e) => e.topic)).toEqual(["t.a"]);
  });

  test("unsubscribe and close stop delivery; an unknown id is not_found", () => {
    const { broker, open, publish } = setup();
    const s = open(B);
    const pub = open(A);
    broker.subscribe(s.client, 5, "a");
    expect(broker.unsubscribe(s.client, 5)).toBeNull();
    expect(broker.unsubscribe(s.client, 5)).toMatchObject({ code: "not_found" });
    expect(publish(pub.client, "a")).toMatchObject({ count: 0 });
    broker.subscribe(s.client, 6, "a");
    broker.close(s.client);
    expect(publish(pub.client, "a")).toMatchObject({ count: 0 });
    expect(broker.status()).toMatchObject({ subscriptions: 0, connections: 1 });
  });

  test("bad topics, oversized events and reused ids are refused with their codes and counted", () => {
    const { broker, open, publish } = setup({ maxEvent: 10 });
    const c = open(A);
    expect(broker.subscribe(c.client, 1, "a..b")).toMatchObject({ code: "invalid_topic" });
    expect(broker.subscribe(c.client, 1, "a")).toBeNull();
    expect(broker.subscribe(c.client, 1, "b")).toMatchObject({ code: "malformed" });
    expect(publish(c.client, "a.*")).toMatchObject({ code: "invalid_topic" });
    expect(publish(c.client, "a", "12345678901")).toMatchObject({ code: "too_large" });
    expect(broker.status().refused).toEqual({ invalid_topic: 2, malformed: 1, too_large: 1 });
  });
});

describe("slow consumers", () => {
  test("a subscriber whose queue would pass its bound is cut, with the reason; the others get every event", () => {
    const { broker, open, publish } = setup({ queueBytes: 64 * 1024, maxEvent: 4096 });
    const fast = [open(B), open(C)];
    const stalled = open(B, false);
    for (const s of [...fast, stalled]) broker.subscribe(s.client, 1, "t");
    const pub = open(A);
    let cuts: ReturnType<Broker["flush"]> = [];
    for (let i = 0; i < 40; i++) {
      publish(pub.client, "t", "x".repeat(3000));
      const c = broker.flush();
      if (c.length) cuts = c;
    }
    expect(cuts.map((c) => c.client)).toEqual([stalled.client]);
    expect(cuts[0]!.message).toMatch(/fell behind: \d+ bytes .* more than the broker's limit of 65536 bytes/);
    expect(cuts[0]!.topics).toEqual(["t"]);
    expect(stalled.client.gone).toBe(true);
    expect(stalled.outlet.backlog).toBeLessThanOrEqual(64 * 1024);
    for (const f of fast) expect(f.outlet.events().length).toBe(40);
    expect(broker.status()).toMatchObject({ cut: 1, subscribers: 2 });
  });

  test("the event count is bounded too", () => {
    const { broker, open, publish } = setup({ queueEvents: 10 });
    const stalled = open(B, false);
    broker.subscribe(stalled.client, 1, "t");
    const pub = open(A);
    let cut = false;
    for (let i = 0; i < 11; i++) {
      publish(pub.client, "t");
      cut ||= broker.flush().length > 0;
    }
    expect(cut).toBe(true);
    expect(stalled.outlet.backlogEvents).toBe(10);
  });

  test("over the total bound, the subscribers furthest behind are cut first", () => {
    const { broker, open, publish } = setup({ queueBytes: 100_000, queueTotal: 150_000, maxEvent: 10_000 });
    const slow1 = open(B, false);
    const slow2 = open(C, false);
    broker.subscribe(slow1.client, 1, "t.>");
    broker.subscribe(slow2.client, 1, "t.a");
    const pub = open(A);
    const cut: BrokerClient[] = [];
    for (let i = 0; i < 12; i++) {
      publish(pub.client, "t.a", "x".repeat(9000));
      publish(pub.client, "t.b", "x".repeat(1000));
      cut.push(...broker.flush().map((c) => c.client));
    }
    expect(cut[0]).toBe(slow1.client); // it holds more (it gets t.b too)
    expect(broker.queuedTotal()).toBeLessThanOrEqual(150_000);
  });
});

describe("bounds: per peer first, then in total", () => {
  test("connections", () => {
    const { broker, open } = setup({ connectionsPerPeer: 2, connectionsTotal: 3 });
    open(A);
    open(A);
    expect(broker.open(A, new FakeOutlet(), 0)).toMatchObject({ code: "limit_exceeded", message: expect.stringMatching(/per node/) });
    open(B);
    expect(broker.open(C, new FakeOutlet(), 0)).toMatchObject({ code: "limit_exceeded", message: expect.stringMatching(/its limit/) });
  });

  test("subscriptions per connection, per peer and in total", () => {
    const { broker, open } = setup({ subscriptionsPerConnection: 2, subscriptionsPerPeer: 3, subscriptionsTotal: 4 });
    const a1 = open(A);
    const a2 = open(A);
    expect(broker.subscribe(a1.client, 1, "x.1")).toBeNull();
    expect(broker.subscribe(a1.client, 2, "x.2")).toBeNull();
    expect(broker.subscribe(a1.client, 3, "x.3")).toMatchObject({ code: "limit_exceeded", message: expect.stringMatching(/per connection/) });
    expect(broker.subscribe(a2.client, 1, "x.3")).toBeNull();
    expect(broker.subscribe(a2.client, 2, "x.4")).toMatchObject({ code: "limit_exceeded", message: expect.stringMatching(/per node/) });
    const b = open(B);
    expect(broker.subscribe(b.client, 1, "y")).toBeNull();
    expect(broker.subscribe(b.client, 2, "y")).toMatchObject({ code: "limit_exceeded", message: expect.stringMatching(/its limit/) });
    broker.close(a1.client);
    expect(broker.subscribe(b.client, 2, "y")).toBeNull();
  });

  test("publish rate: a token bucket per peer, then the broker's total; they refill with time", () => {
    const { broker, open, publish } = setup({ publishRate: 5, publishRateTotal: 8 });
    const a = open(A);
    const b = open(B);
    for (let i = 0; i < 5; i++) expect("refused" in publish(a.client, "t")).toBe(false);
    expect(publish(a.client, "t")).toMatchObject({ code: "rate_limited", message: expect.stringMatching(/per node/) });
    for (let i = 0; i < 3; i++) expect("refused" in publish(b.client, "t")).toBe(false);
    expect(publish(b.client, "t")).toMatchObject({ code: "rate_limited", message: expect.stringMatching(/total publish rate/) });
    expect("refused" in publish(a.client, "t", "x", 1000)).toBe(false); // a second later
    // Reconnecting does not refill a peer's bucket.
    broker.close(a.client);
    const again = open(A);
    for (let i = 0; i < 4; i++) publish(again.client, "t", "x", 1000);
    expect(publish(again.client, "t", "x", 1000)).toMatchObject({ code: "rate_limited" });
  });

  test("published bytes per peer are bounded too", () => {
    const { broker, open, publish } = setup({ publishBytesRate: 10_000, maxEvent: 6000 });
    const a = open(A);
    expect("refused" in publish(a.client, "t", "x".repeat(6000))).toBe(false);
    expect(publish(a.client, "t", "x".repeat(6000))).toMatchObject({ code: "rate_limited" });
    void broker;
  });
});

describe("settings", () => {
  test("config values parse with units and bounds; bad ones say what a good one looks like", () => {
    const l = pubsubLimitsFrom({ max_event: "128KiB", queue: "4MiB", queue_total: "1G", rate: "500", rate_total: "2000", subscriptions: "10" });
    expect(l).toMatchObject({ maxEvent: 128 * 1024, queueBytes: 4 << 20, queueTotal: 1 << 30, publishRate: 500, publishRateTotal: 2000, subscriptionsPerPeer: 10 });
    expect(() => pubsubLimitsFrom({ max_event: "2MiB" })).toThrow(/pubsub_max_event must be a size from 1KiB to 1MiB/);
    expect(() => pubsubLimitsFrom({ rate: "fast" })).toThrow(/pubsub_rate must be a whole number/);
    expect(() => pubsubLimitsFrom({ nope: "1" })).toThrow(/unknown pub\/sub setting "pubsub_nope"/);
    // A queue always holds at least one largest event.
    expect(pubsubLimitsFrom({ max_event: "1MiB", queue: "64KiB" }).queueBytes).toBeGreaterThan(1 << 20);
  });
});
