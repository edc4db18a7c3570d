/**
 * Pub/sub between real daemons (port 1002), through the CLI and the SDK:
 * wildcards, --count and --json, strangers refused unless the service is
 * opened, a sender that cannot be forged, a stalled subscriber cut while the
 * others get everything, --no-pubsub, and the broker's limits.
 *
 *   a  broker (private), trusted by b and c         a 512KiB queue per subscriber
 *   p  public broker, not opened to strangers       max_event 1KiB, 2 subscriptions per node, 5 publishes/s; trusted by b
 *   o  public broker opened with --open-services pubsub
 *   n  public node started with --no-pubsub
 *   s  a stranger to everyone
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type Driver, PubsubError, type PubsubEvent } from "../../../src/driver/index.ts";
import { addressOf, parseAddress } from "../../../src/protocol/address.ts";
import { decodeBrokerFrame, encodeBrokerFrame, encodeClientFrame, FrameReader, PUBSUB_PORT, type BrokerFrame } from "../../../src/protocol/pubsub.ts";
import { startCluster, type Cluster } from "../../support/cluster.ts";
import { killAll, startPilot, waitFor } from "../../cli/helpers.ts";

let c: Cluster;
const drivers: Driver[] = [];

async function driver(name: string): Promise<Driver> {
  const d = await connect({ home: c.daemon(name).home });
  drivers.push(d);
  return d;
}

function writeConfig(name: string, config: Record<string, string>): void {
  const home = join(c.dir, name);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  writeFileSync(join(home, "config.json"), JSON.stringify(config));
}

async function status(name: string): Promise<any> {
  const r = await c.pilot(name, ["topics"]);
  expect(r.code).toBe(0);
  return r.json.data;
}

/** Waits until broker `name` holds `n` subscriptions (so a publish reaches them). */
function subscriptions(name: string, n: number) {
  return waitFor(`${n} subscriptions on ${name}`, async () => (await status(name)).subscriptions === n, 15_000);
}

beforeAll(async () => {
  c = await startCluster();
  writeConfig("a", { pubsub_queue: "512KiB" });
  writeConfig("p", { pubsub_max_event: "1KiB", pubsub_subscriptions: "2", pubsub_rate: "5" });
  for (const spec of [
    { name: "a", hostname: "ps-broker" },
    { name: "b", hostname: "ps-b" },
    { name: "c" },
    { name: "p", hostname: "ps-public", public: true },
    { name: "o", hostname: "ps-open", public: true, extraArgs: ["--open-services", "pubsub"] },
    { name: "n", hostname: "ps-none", public: true, extraArgs: ["--no-pubsub"] },
    { name: "s" },
  ]) {
    await c.startDaemon(spec);
  }
  await c.trust("a", "b");
  await c.trust("a", "c");
  await c.trust("p", "b");
}, 120_000);

afterAll(async () => {
  killAll();
  for (const d of drivers) await d.close().catch(() => {});
  await c?.stop();
});

describe("the CLI", () => {
  test("subscribe with *, > and #: each subscriber gets exactly its topics, one JSON envelope per event, and --count ends it", async () => {
    const star = startPilot(c, "b", ["subscribe", "ps-broker", "sensors.*.temp", "--count", "2", "--json"]);
    const rest = startPilot(c, "c", ["subscribe", "ps-broker", "sensors.>", "--count", "3", "--json"]);
    const hash = startPilot(c, "b", ["subscribe", "ps-broker", "sensors.hall.#", "--count", "2", "--json"]);
    await subscriptions("a", 3);
    const b = c.daemon("b").address;
    const cc = c.daemon("c").address;
    const published: any[] = [];
    for (const [who, topic, data] of [
      ["b", "sensors.kitchen.temp", "21.5"],
      ["c", "sensors.hall.humidity", "40"],
      ["b", "other.topic", "nobody"],
      ["c", "sensors.hall.temp", "19"],
    ] as const) {
      const r = await c.pilot(who, ["publish", "ps-broker", topic, "--data", data]);
      expect(r.code).toBe(0);
      published.push(r.json.data);
    }
    expect(published.map((p) => p.delivered)).toEqual([2, 2, 0, 3]);
    expect(published.map((p) => p.target)).toEqual(Array(4).fill(c.daemon("a").address));
    expect(published[3]).toMatchObject({ topic: "sensors.hall.temp", bytes: 2 });

    const lines = async (cmd: ReturnType<typeof startPilot>, n: number) => {
      const out: any[] = [];
      for (let i = 0; i < n; i++) out.push(JSON.parse(await cmd.nextLine(15_000)));
      return out;
    };
    const gotStar = await lines(star, 2);
    const gotRest = await lines(rest, 3);
    const gotHash = await lines(hash, 2);
    for (const e of [...gotStar, ...gotRest, ...gotHash]) {
      expect(e.status).toBe("ok");
      expect(Object.keys(e.data).sort()).toEqual(["bytes", "data", "from", "seq", "time", "topic"]);
      expect(Date.parse(e.data.time)).toBeGreaterThan(Date.now() - 120_000);
    }
    expect(gotStar.map((e) => [e.data.topic, e.data.data, e.data.from])).toEqual([
      ["sensors.kitchen.temp", "21.5", b],
      ["sensors.hall.temp", "19", cc],
    ]);
    expect(gotRest.map((e) => e.data.topic)).toEqual(["sensors.kitchen.temp", "sensors.hall.humidity", "sensors.hall.temp"]);
    expect(gotHash.map((e) => [e.data.topic, e.data.data])).toEqual([
      ["sensors.hall.humidity", "40"],
      ["sensors.hall.temp", "19"],
    ]);
    expect(gotRest[0].data.seq).toBeLessThan(gotRest[1].data.seq);
    for (const cmd of [star, rest, hash]) expect(await cmd.exited(15_000)).toBe(0);
    await subscriptions("a", 0); // the broker forgets subscribers that left
  }, 90_000);

  test("text output for people; publish reads stdin with -; a timeout with too few events is an error", async () => {
    const sub = startPilot(c, "b", ["subscribe", "ps-broker", "notes.>", "--count", "1"]);
    await subscriptions("a", 1);
    const r = await c.pilot("c", ["publish", "ps-broker", "notes.daily", "-"], { input: "line one\n" });
    expect(r.code).toBe(0);
    expect(r.json.data).toMatchObject({ topic: "notes.daily", bytes: 9, delivered: 1 });
    expect(await sub.nextLine()).toBe(`[notes.daily from ${c.daemon("c").address}] line one`);
    expect(await sub.exited()).toBe(0);
    expect(await sub.stderr()).toContain("subscribed to notes.> on ps-broker");

    const text = await c.pilot("c", ["publish", "ps-broker", "notes.daily", "--data", "x"], { json: false });
    expect(text.stdout.trim()).toMatch(/^published 1 bytes on notes\.daily to the broker on ps-broker: no subscriber had it \(events are not stored\) \(seq \d+\)$/);

    await subscriptions("a", 0);
    const topics = await c.pilot("a", ["topics"], { json: false });
    expect(topics.code).toBe(0);
    expect(topics.stdout).toMatch(/^pub\/sub broker on port 1002: \d+ connections?, 0 subscriptions\n  no subscriptions\npublished \d+, delivered \d+, subscribers cut \d+/);
    expect(topics.stdout).toContain("limits: events up to 65.5 kB, 524.3 kB queued per subscriber, 10000 publishes/s per node");

    const late = await c.pilot("b", ["subscribe", "ps-broker", "quiet.topic", "--count", "2", "--timeout", "1s"]);
    expect(late.code).toBe(1);
    expect(late.json).toMatchObject({ status: "error", code: "timeout", message: "timed out after 1000 ms: 0 of 2 events received" });
  }, 60_000);

  test("bad topics and missing data are usage mistakes (exit 2), before anything is sent", async () => {
    for (const [args, code, msg] of [
      [["subscribe", "ps-broker", "a..b"], "invalid_argument", /empty segment/],
      [["subscribe", "ps-broker", "a/b/#"], "invalid_argument", /dot-separated/],
      [["publish", "ps-broker", "a.*", "--data", "x"], "invalid_argument", /publish to a concrete topic/],
      [["publish", "ps-broker", "a.b"], "usage", /data is required/],
      [["publish", "ps-broker", "a.b", "-", "--data", "x"], "usage", /not both/],
    ] as const) {
      const r = await c.pilot("b", [...args]);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.json).toMatchObject({ status: "error", code });
      expect(r.json.message).toMatch(msg);
    }
  });
});

describe("admission", () => {
  test("a stranger is refused by a public node's broker that is not opened, and admitted by one that is", async () => {
    for (const args of [
      ["publish", "ps-public", "a.b", "--data", "x"],
      ["subscribe", "ps-public", "a.>", "--count", "1"],
    ]) {
      const r = await c.pilot("s", args);
      expect({ args, code: r.code }).toEqual({ args, code: 1 });
      expect(r.json).toMatchObject({ status: "error", code: "not_trusted" });
      expect(r.json.message).toContain("admits only nodes it trusts");
      expect(r.json.hint).toContain("--open-services pubsub");
    }
    expect((await status("p")).refused_admission).toBeGreaterThanOrEqual(2);

    const s = await driver("s");
    const sub = s.subscribe("ps-open", "open.>");
    await sub.ready;
    const ack = await s.publish("ps-open", "open.door", "hello from a stranger");
    expect(ack.delivered).toBe(1);
    const first = (await sub.next()).value as PubsubEvent;
    expect([first.topic, first.text(), first.from]).toEqual(["open.door", "hello from a stranger", c.daemon("s").address]);
    await sub.close();
  }, 60_000);

  test("a node started with --no-pubsub refuses the port: a clear error", async () => {
    const r = await c.pilot("b", ["publish", "ps-none", "a.b", "--data", "x"]);
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ code: "connection_refused", message: "ps-none does not run a pub/sub broker (port 1002 refused the connection)" });
    expect(r.json.hint).toContain("--no-pubsub");
    const t = await c.pilot("n", ["topics"]);
    expect(t.json).toMatchObject({ code: "not_found" });
  });
});

describe("identity", () => {
  test("from is the publisher's authenticated address: a client that sends an event frame naming another sender is cut, and nobody gets it", async () => {
    const b = await driver("b");
    const cd = await driver("c");
    const sub = cd.subscribe("ps-broker", "forged.>");
    await sub.ready;
    const raw = await b.dial("ps-broker", PUBSUB_PORT);
    const frames: BrokerFrame[] = [];
    const reader = new FrameReader(1 << 20);
    raw.on("data", (chunk: Buffer) => {
      const r = reader.push(chunk);
      if (r.ok) for (const body of r.value) frames.push((decodeBrokerFrame(body) as any).value);
    });
    const closed = new Promise((resolve) => raw.on("close", resolve));
    const a = parseAddress(c.daemon("a").address);
    if (!a.ok) throw new Error("address");
    // A broker-to-client event frame sent by a client, claiming to come from the broker's own node.
    raw.write(encodeBrokerFrame({ type: "event", seq: 1, time: Date.now(), from: a.value, topic: "forged.x", data: new TextEncoder().encode("trust me") }));
    await closed;
    expect(frames[0]?.type).toBe("welcome");
    expect(frames[1]).toMatchObject({ type: "error", id: 0, code: "malformed" });
    // A real publish right after is the first (and only) event the subscriber sees, from its real sender.
    await b.publish("ps-broker", "forged.y", "real");
    const e = (await sub.next()).value as PubsubEvent;
    expect([e.topic, e.from]).toEqual(["forged.y", c.daemon("b").address]);
    expect(e.from).not.toBe(c.daemon("a").address);
    await sub.close();
  }, 60_000);
});

describe("the SDK", () => {
  test("subscribe is an async iterator that break closes cleanly; publish resolves on the ack", async () => {
    const b = await driver("b");
    const cd = await driver("c");
    const sub = b.subscribe("ps-broker", ["sdk.a", "sdk.b.*"]);
    await sub.ready;
    expect(sub.broker).toBe(c.daemon("a").address);
    const acks = [await cd.publish("ps-broker", "sdk.a", "1"), await cd.publish("ps-broker", "sdk.b.x", new Uint8Array([0x32])), await cd.publish("ps-broker", "sdk.c", "no")];
    expect(acks.map((x) => x.delivered)).toEqual([1, 1, 0]);
    expect(acks[1]!.seq).toBe(acks[0]!.seq + 1);
    const got: string[] = [];
    for await (const e of sub) {
      got.push(`${e.topic}=${e.text()}`);
      if (got.length === 2) break;
    }
    expect(got).toEqual(["sdk.a=1", "sdk.b.x=2"]);
    expect(await sub.next()).toEqual({ value: undefined, done: true });
    await subscriptions("a", 0);
    // Topics are checked before anything is sent.
    expect(() => b.subscribe("ps-broker", "a..b")).toThrow(/empty segment/);
    await expect(cd.publish("ps-broker", "a.>", "x")).rejects.toMatchObject({ code: "invalid_argument" });
  }, 60_000);

  test("a script that publishes and never closes its driver still exits (the shared connection does not hold the process)", async () => {
    const script = join(c.dir, "publish-once.ts");
    writeFileSync(
      script,
      `import { connect } from ${JSON.stringify(join(import.meta.dir, "../../../src/driver/index.ts"))};
const pilot = await connect();
const ack = await pilot.publish("ps-broker", "script.done", "bye");
console.log(JSON.stringify(ack));
`,
    );
    const proc = Bun.spawn([process.execPath, script], { env: { ...process.env, ...c.daemon("b").env }, stdout: "pipe", stderr: "pipe" });
    const code = await Promise.race([proc.exited, Bun.sleep(15_000).then(() => "still running")]);
    if (code === "still running") proc.kill("SIGKILL");
    expect(code).toBe(0);
    expect(JSON.parse(await new Response(proc.stdout).text())).toMatchObject({ topic: "script.done", bytes: 3 });
  }, 30_000);

  test("a stalled subscriber is told and cut (slow_consumer); the subscribers that keep up get every event", async () => {
    const TOTAL = 4000;
    const b = await driver("b");
    const cd = await driver("c");
    const stalled = b.subscribe("ps-broker", "load.>", { maxBuffered: 1 });
    const good = [b.subscribe("ps-broker", "load.>"), cd.subscribe("ps-broker", "load.#")];
    await Promise.all([stalled.ready, ...good.map((g) => g.ready)]);
    const counts = good.map(() => 0);
    const readers = good.map(async (g, i) => {
      for await (const e of g) {
        expect(e.seq).toBeGreaterThan(0);
        if (++counts[i]! === TOTAL) break;
      }
    });
    const publisher = await cd.publisher("ps-broker");
    const data = new Uint8Array(1024).fill(0x61);
    for (let i = 0; i < TOTAL; i += 100) {
      const acks = await Promise.all(Array.from({ length: 100 }, (_, k) => publisher.publish(`load.n${(i + k) % 7}`, data)));
      expect(acks.every((x) => x.delivered >= 2)).toBe(true);
      await Bun.sleep(10);
    }
    await publisher.close();
    await Promise.all(readers);
    expect(counts).toEqual([TOTAL, TOTAL]);
    const st = await status("a");
    expect(st.cut).toBeGreaterThanOrEqual(1);
    // The stalled subscriber reads at last: what reached it, then the reason.
    let seen = 0;
    const error = await (async () => {
      try {
        for await (const _ of stalled) seen++;
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(error).toBeInstanceOf(PubsubError);
    expect(error).toMatchObject({ code: "limit_exceeded", reason: "slow_consumer" });
    expect((error as Error).message).toMatch(/cut this subscription: this subscriber fell behind/);
    expect(seen).toBeLessThan(TOTAL);
  }, 120_000);
});

describe("limits", () => {
  test("an event over the broker's max, subscriptions over the per-node limit, and publishes over the rate are refused", async () => {
    const big = await c.pilot("b", ["publish", "ps-public", "x.y", "--data", "z".repeat(2000)]);
    expect(big.code).toBe(1);
    expect(big.json).toMatchObject({ code: "limit_exceeded", message: "an event of 2000 bytes is larger than the broker's limit of 1024" });
    expect(big.json.hint).toContain("pubsub_max_event");

    const b = await driver("b");
    const three = b.subscribe("ps-public", ["one", "two", "three"]);
    await expect(three.ready).rejects.toMatchObject({ code: "limit_exceeded", reason: "limit_exceeded" });
    await expect(three.next()).rejects.toMatchObject({ reason: "limit_exceeded" });
    await waitFor("p to forget the refused connection", async () => (await status("p")).connections === 0);

    const publisher = await b.publisher("ps-public");
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => publisher.publish("rate.t", String(i))));
    const refused = results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason);
    expect(results.length - refused.length).toBeGreaterThanOrEqual(5);
    expect(refused.length).toBeGreaterThanOrEqual(10);
    expect(refused[0]).toMatchObject({ code: "rate_limited", reason: "rate_limited" });
    await publisher.close();
    expect((await status("p")).refused).toMatchObject({ rate_limited: refused.length });
    void addressOf;
  }, 60_000);

  test("pilot config checks pubsub_* values before they are saved", async () => {
    const bad = await c.pilot("s", ["config", "--set", "pubsub_queue=1KiB"]);
    expect(bad.code).toBe(2);
    expect(bad.json.message).toMatch(/pubsub_queue must be a size from 64KiB/);
    const good = await c.pilot("s", ["config", "--set", "pubsub_rate=500"]);
    expect(good.code).toBe(0);
    expect(good.json.data.config).toMatchObject({ pubsub_rate: "500" });
  });
});
