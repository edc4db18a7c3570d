/**
 * The broker's stream shell (PubsubService) in one process, over the
 * in-memory FakeNetwork (bounded pipes, so backpressure is real): admission,
 * the welcome, replies by id, the sender's identity, a stalled subscriber
 * told and cut (with the local event), the linger reset, malformed frames,
 * and shutdown. The same behaviour between real daemons is in pubsub.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { StreamHandle } from "../../../src/daemon/local-node.ts";
import { EventBus } from "../../../src/daemon/event-bus.ts";
import type { ServiceContext } from "../../../src/daemon/services/service.ts";
import { createPubsubService } from "../../../src/daemon/services/pubsub/service.ts";
import type { PubsubLimits } from "../../../src/daemon/services/pubsub/limits.ts";
import { formatAddress, type Address } from "../../../src/protocol/address.ts";
import { decodeBrokerFrame, encodeClientFrame, FrameReader, PUBSUB_PORT, type BrokerFrame, type ClientFrame } from "../../../src/protocol/pubsub.ts";
import { createLogger } from "../../../src/util/log.ts";
import { FakeNetwork, type FakeLocalNode } from "../../support/fake-local-node.ts";

/** A client speaking the codec over a raw stream; `reading: false` makes it a stalled subscriber. */
class RawClient {
  readonly frames: BrokerFrame[] = [];
  ended = false;
  closed: string | null = null;
  private readonly reader = new FrameReader(1 << 21);
  private waiters: (() => void)[] = [];
  constructor(
    readonly stream: StreamHandle,
    public reading = true,
  ) {
    stream.onEvent = (e) => {
      if (e.type === "readable") this.pump();
      if (e.type === "end") this.ended = true;
      if (e.type === "closed") this.closed = e.error?.code ?? "graceful";
      this.wake();
    };
  }
  send(f: ClientFrame): void {
    this.stream.write(encodeClientFrame(f));
  }
  resume(): void {
    this.reading = true;
    this.pump();
  }
  pump(): void {
    if (!this.reading) return;
    for (let chunk = this.stream.read(65536); chunk; chunk = this.stream.read(65536)) {
      const r = this.reader.push(chunk);
      if (!r.ok) throw new Error(r.error.message);
      for (const body of r.value) {
        const f = decodeBrokerFrame(body);
        if (!f.ok) throw new Error(f.error.message);
        this.frames.push(f.value);
      }
    }
    this.wake();
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  async until(what: string, check: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(this.frames.map((f) => f.type))}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 20);
      });
    }
  }
  events() {
    return this.frames.filter((f) => f.type === "event") as Extract<BrokerFrame, { type: "event" }>[];
  }
}

const stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
});

function setup(options: { limits?: Partial<PubsubLimits>; open?: boolean; lingerMs?: number } = {}) {
  const net = new FakeNetwork(64 * 1024);
  const brokerNode = net.addNode(1, { hostname: "broker" });
  const trusted = new Set<Address>();
  const events = new EventBus();
  const logs: string[] = [];
  const context: ServiceContext = {
    address: brokerNode.address,
    log: createLogger("pubsub", { sink: (l) => logs.push(l), level: "debug" }),
    events,
    dir: null,
    listen: (port, onAccept) => brokerNode.listen(port, onAccept),
    dial: (target, port) => brokerNode.dial(target, port),
    resolveTarget: async () => brokerNode.address,
    admits: (node) => trusted.has(node) || options.open === true,
    trusts: (node) => trusted.has(node),
    config: {},
    signTaskStatement: () => {
      throw new Error("not used by pub/sub");
    },
    peerKey: async () => {
      throw new Error("not used by pub/sub");
    },
    submitReceipt: async () => {},
  };
  let time = 1_700_000_000_000;
  const service = createPubsubService(context, { limits: options.limits, clock: () => time, lingerMs: options.lingerMs ?? 300 });
  service.start();
  stops.push(() => service.stop());
  let next = 10;
  const client = async (opts: { trusted?: boolean; reading?: boolean; node?: FakeLocalNode } = {}) => {
    const node = opts.node ?? net.addNode(next++);
    if (opts.trusted !== false) trusted.add(node.address);
    const c = new RawClient(await node.dial(brokerNode.address, PUBSUB_PORT), opts.reading ?? true);
    return { c, node };
  };
  return { service, events, logs, client, trusted, brokerNode, advance: (ms: number) => (time += ms) };
}

describe("the service", () => {
  test("welcome first; subscribe and publish answered by id; events carry the publisher's stream address and the broker's time", async () => {
    const { client, service } = setup();
    const { c: sub } = await client();
    const { c: pub, node: pubNode } = await client();
    await sub.until("welcome", () => sub.frames.length === 1);
    expect(sub.frames[0]).toEqual({ type: "welcome", version: 1, maxEvent: 65536, maxTopic: 256, maxSubscriptions: 64 });
    sub.send({ type: "subscribe", id: 7, pattern: "a.*" });
    await sub.until("ack", () => sub.frames.length === 2);
    expect(sub.frames[1]).toEqual({ type: "ack", id: 7, count: 0, seq: 0 });
    pub.send({ type: "publish", id: 99, topic: "a.b", data: new TextEncoder().encode("hi") });
    pub.send({ type: "publish", id: 100, topic: "a..b", data: new Uint8Array(0) });
    await pub.until("two answers", () => pub.frames.length === 3);
    expect(pub.frames[1]).toEqual({ type: "ack", id: 99, count: 1, seq: 1 });
    expect(pub.frames[2]).toMatchObject({ type: "error", id: 100, code: "invalid_topic" });
    await sub.until("event", () => sub.events().length === 1);
    expect(sub.events()[0]).toMatchObject({ seq: 1, time: 1_700_000_000_000, from: pubNode.address, topic: "a.b" });
    expect(service.methods().pubsub_status!({})).toMatchObject({ connections: 2, subscriptions: 1, published: 1, delivered: 1 });
  });

  test("a node the broker does not admit gets not_trusted and the stream closes; an open service admits it", async () => {
    const closed = setup();
    const { c } = await closed.client({ trusted: false });
    await c.until("closed", () => c.closed !== null);
    expect(c.frames).toEqual([{ type: "error", id: 0, code: "not_trusted", message: expect.stringContaining("admits only nodes it trusts") }]);
    const open = setup({ open: true });
    const { c: o } = await open.client({ trusted: false });
    await o.until("welcome", () => o.frames.length === 1);
    expect(o.frames[0]!.type).toBe("welcome");
  });

  test("trust withdrawn while connected: the next request is refused and the connection closed", async () => {
    const { client, trusted } = setup();
    const { c, node } = await client();
    await c.until("welcome", () => c.frames.length === 1);
    trusted.delete(node.address);
    c.send({ type: "subscribe", id: 1, pattern: "a" });
    await c.until("closed", () => c.closed !== null);
    expect(c.frames[1]).toMatchObject({ type: "error", id: 0, code: "not_trusted", message: expect.stringContaining("no longer trusts") });
  });

  test("a stalled subscriber is told and cut: the others get every event, the feed says who was cut, the reason arrives after what was on its way", async () => {
    const { client, events, logs } = setup({ limits: { queueBytes: 128 * 1024 } });
    const { c: stalled, node: stalledNode } = await client({ reading: false });
    const { c: good } = await client();
    const { c: pub } = await client();
    stalled.send({ type: "subscribe", id: 1, pattern: "load.>" });
    good.send({ type: "subscribe", id: 1, pattern: "load.>" });
    await good.until("subscribed", () => good.frames.length === 2);
    await Bun.sleep(20);
    const data = new Uint8Array(1000).fill(1);
    const N = 600;
    for (let i = 0; i < N; i++) {
      pub.send({ type: "publish", id: i + 1, topic: "load.x", data });
      if (i % 20 === 19) await Bun.sleep(1); // let the pipes move
    }
    await good.until("every event", () => good.events().length === N, 10_000);
    expect(good.events().map((e) => e.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    const cut = events.recent().filter((e) => e.type === "pubsub.subscriber_cut");
    expect(cut).toHaveLength(1);
    expect(cut[0]!.data).toMatchObject({ subscriber: formatAddress(stalledNode.address), topics: ["load.>"], reason: expect.stringContaining("fell behind") });
    expect(logs.some((l) => l.includes("cut a slow pub/sub subscriber"))).toBe(true);
    stalled.resume();
    await stalled.until("the reason", () => stalled.frames.some((f) => f.type === "error"));
    const frames = stalled.frames;
    const last = frames[frames.length - 1]!;
    expect(last).toMatchObject({ type: "error", id: 0, code: "slow_consumer" });
    const got = stalled.events().map((e) => e.seq);
    expect(got.length).toBeLessThan(N);
    expect(got).toEqual(Array.from({ length: got.length }, (_, i) => i + 1)); // a prefix, in order, framing intact
    await stalled.until("end", () => stalled.ended);
  });

  test("a cut subscriber that never reads is reset after the linger time", async () => {
    const { client } = setup({ limits: { queueBytes: 64 * 1024 }, lingerMs: 200 });
    const { c: stalled } = await client({ reading: false });
    const { c: pub } = await client();
    stalled.send({ type: "subscribe", id: 1, pattern: "t" });
    await Bun.sleep(30);
    for (let i = 0; i < 400; i++) {
      pub.send({ type: "publish", id: i + 1, topic: "t", data: new Uint8Array(1000) });
      if (i % 20 === 19) await Bun.sleep(1);
    }
    await stalled.until("reset", () => stalled.closed !== null, 5000);
    expect(stalled.closed).not.toBe("graceful");
  });

  test("a frame that does not decode is answered with malformed and the connection closes; other clients are unaffected", async () => {
    const { client, service } = setup();
    const { c: bad } = await client();
    const { c: ok } = await client();
    await bad.until("welcome", () => bad.frames.length === 1);
    bad.stream.write(new Uint8Array([0, 0, 0, 2, 0x82, 0])); // a broker frame type from a client
    await bad.until("closed", () => bad.closed !== null);
    expect(bad.frames[1]).toMatchObject({ type: "error", id: 0, code: "malformed" });
    ok.send({ type: "subscribe", id: 1, pattern: "x" });
    await ok.until("ack", () => ok.frames.length === 2);
    expect(service.methods().pubsub_status!({})).toMatchObject({ malformed: 1, connections: 1 });
  });

  test("stop: every client is told shutting_down", async () => {
    const { client, service } = setup();
    const { c } = await client();
    await c.until("welcome", () => c.frames.length === 1);
    service.stop();
    await c.until("the broker's FIN", () => c.ended);
    expect(c.frames[1]).toMatchObject({ type: "error", id: 0, code: "shutting_down" });
  });
});
