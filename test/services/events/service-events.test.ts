/**
 * The services' local events end to end, with real daemons: a message and a
 * file that arrive are seen as `message.received` / `file.received`, with
 * their payload, by `pilot events --follow --json`, by the SDK's on() and by
 * its events() iterator, and by a webhook set in config.json. Pub/sub events
 * raise no local event (SERVICES.md §Local events says why). Also: config.json's
 * disabled_services and open_services honoured by a real daemon, and the SDK's
 * reject() against a real daemon (the asker sees trust.rejected with the reason).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type Driver, type LocalEvent } from "../../../src/driver/index.ts";
import { nextMatching } from "./support.ts";
import { startCluster, type Cluster } from "../../support/cluster.ts";
import { killAll, startPilot, waitFor } from "../../cli/helpers.ts";
import { configure } from "../exchange/support.ts";

let c: Cluster;
const drivers: Driver[] = [];
const hits: { event: string; body: any }[] = [];
let receiver: ReturnType<typeof Bun.serve> | undefined;

beforeAll(async () => {
  receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      hits.push({ event: req.headers.get("x-pilot-event") ?? "", body: await req.json() });
      return new Response("ok");
    },
  });
  c = await startCluster({ daemons: [{ name: "a", hostname: "sev-a" }, { name: "b", hostname: "sev-b" }, { name: "s", hostname: "sev-s" }] });
  // Everything below comes from config.json alone: no --webhook, --no-* or --open-services on the command line.
  configure(c, "w", { webhook: `http://127.0.0.1:${receiver.port}/hook`, disabled_services: "files,pubsub", open_services: "messages" });
  await c.startDaemon({ name: "w", hostname: "sev-w", public: true });
  await c.trust("b", "a");
}, 120_000);

afterAll(async () => {
  killAll();
  for (const d of drivers) await d.close();
  await c?.stop();
  receiver?.stop(true);
});

async function sdk(name: string): Promise<Driver> {
  const d = await connect({ home: c.daemon(name).home });
  drivers.push(d);
  return d;
}

async function followers(d: Driver): Promise<number> {
  const s = (await d.call("events_status")) as { clients: { subscriptions: number }[] };
  return s.clients.reduce((n, x) => n + x.subscriptions, 0);
}


describe("message.received and file.received", () => {
  test("reach pilot events --follow --json, the SDK's on() and events() with their payload", async () => {
    const A = c.daemon("a").address;
    const b = await sdk("b");
    const follow = startPilot(c, "b", ["events", "--follow", "--json", "--type", "message", "--type", "file"]);
    const onMessage: LocalEvent[] = [];
    b.on("message", (e: LocalEvent) => onMessage.push(e));
    const files = b.events({ types: ["file.received"] });
    await files.ready;
    // Subscribed: the follower, on("message") and the iterator.
    await waitFor("three subscriptions at b", async () => (await followers(b)) >= 3, 15_000);

    const sent = await c.pilot("a", ["send-message", "sev-b", "--data", '{"hello":"events"}', "--type", "json"]);
    expect(sent.code).toBe(0);
    expect(sent.json.data).toMatchObject({ stored: true, state: "delivered" });
    const id = sent.json.data.id as string;

    const line = JSON.parse(await follow.nextLine(20_000));
    expect(line.status).toBe("ok");
    expect(line.data).toMatchObject({ type: "message.received", data: { from: A, id, type: "json", bytes: 18 } });
    await waitFor("on('message') at b", async () => onMessage.length > 0, 15_000);
    expect(onMessage[0]).toEqual(line.data);

    // The event carries what is needed to read the message.
    const read = await b.inbox.read(id);
    expect(read).toMatchObject({ id, from: A, bytes: 18 });

    const data = randomBytes(300_000);
    const path = join(c.dir, "event-file.bin");
    writeFileSync(path, data);
    const sha256 = createHash("sha256").update(data).digest("hex");
    const f = await c.pilot("a", ["send-file", "sev-b", path, "--name", "evented.bin"]);
    expect(f.code).toBe(0);

    const fileLine = JSON.parse(await follow.nextLine(20_000));
    const stored = join(c.daemon("b").home, "received", "evented.bin");
    expect(fileLine.data).toMatchObject({ type: "file.received", data: { from: A, name: "evented.bin", bytes: 300_000, sha256, path: stored } });
    const viaIterator = await nextMatching(files, (e) => e.type === "file.received");
    expect(viaIterator).toEqual(fileLine.data);
    // on("message") saw only the message.
    expect(onMessage.map((e) => e.type)).toEqual(["message.received"]);

    // The sender's own feed has neither: these are events of the receiving node.
    const atA = await c.pilot("a", ["events", "--type", "message", "--type", "file"]);
    expect(atA.json.data.events).toEqual([]);

    follow.proc.kill();
    await files.close();
    b.removeAllListeners("message");
    await c.pilot("b", ["received", "--clear"]);
  }, 90_000);

  test("pub/sub events raise no local event on the broker or the subscriber's node; the subscriber gets them on its stream", async () => {
    const b = await sdk("b");
    const a = await sdk("a");
    const before = { a: (await c.pilot("a", ["events"])).json.data.last_seq as number, b: (await c.pilot("b", ["events"])).json.data.last_seq as number };
    const sub = a.subscribe("sev-b", "local.>");
    await sub.ready;
    const it = sub[Symbol.asyncIterator]();
    for (let i = 0; i < 5; i++) await a.publish("sev-b", `local.n${i}`, `event ${i}`);
    for (let i = 0; i < 5; i++) {
      const r = await it.next();
      expect(r.value.topic).toBe(`local.n${i}`);
    }
    await sub.close();
    // A marker event after them: anything the publishes raised has a lower seq.
    await b.publishEvent("app.marker", {});
    await a.publishEvent("app.marker", {});
    const atB = (await c.pilot("b", ["events", "--since", String(before.b)])).json.data.events as LocalEvent[];
    const atA = (await c.pilot("a", ["events", "--since", String(before.a)])).json.data.events as LocalEvent[];
    expect(atB.map((e) => e.type).filter((t) => !t.startsWith("peer."))).toEqual(["app.marker"]);
    expect(atA.map((e) => e.type).filter((t) => !t.startsWith("peer."))).toEqual(["app.marker"]);
  }, 60_000);
});

describe("config.json honoured by a real daemon", () => {
  test("open_services=messages admits a stranger's message; disabled_services=files,pubsub refuses files and the broker; webhook gets the event", async () => {
    const S = c.daemon("s").address;
    // s is a stranger to w (no trust either way).
    const m = await c.pilot("s", ["send-message", "sev-w", "--data", "from a stranger"]);
    expect(m.code).toBe(0);
    expect(m.json.data).toMatchObject({ stored: true });
    const inbox = await c.pilot("w", ["inbox"]);
    expect(inbox.json.data.messages).toEqual([expect.objectContaining({ id: m.json.data.id, from: S })]);

    const path = join(c.dir, "refused.txt");
    writeFileSync(path, "x");
    const f = await c.pilot("s", ["send-file", "sev-w", path]);
    expect(f.code).toBe(1);
    expect(f.json.code).toBe("connection_refused");
    expect(f.json.message).toContain("switched off");
    // Files are switched off, not merely closed to strangers: open_services names only messages.
    const p = await c.pilot("s", ["publish", "sev-w", "t.x", "--data", "1"]);
    expect(p.code).toBe(1);
    expect(p.json.code).toBe("connection_refused");

    // The webhook from config.json got the message.received event, signed.
    await waitFor("the webhook POST", async () => hits.some((h) => h.event === "message.received"), 20_000);
    const hit = hits.find((h) => h.event === "message.received")!;
    expect(hit.body).toMatchObject({ type: "message.received", node: c.daemon("w").address, data: { from: S, id: m.json.data.id, type: "text", bytes: 15 } });
  }, 60_000);
});

describe("the SDK's reject() against a real daemon", () => {
  test("a pending request is rejected with a reason; the asker sees trust.rejected; rejecting again is not_found", async () => {
    const a = await sdk("a");
    const s = await sdk("s");
    const A = c.daemon("a");
    const S = c.daemon("s");
    const sEvents = s.events({ types: ["trust"] });
    await sEvents.ready;
    expect((await c.pilot("s", ["handshake", A.address, "let me in"])).code).toBe(0);
    await waitFor("the request at a", async () => (await a.pending()).pending.some((p) => p.node_id === S.nodeId), 15_000);

    expect(await a.reject(String(S.nodeId), "not today")).toEqual({ node_id: S.nodeId, address: S.address, status: "rejected" });
    expect((await a.pending()).pending.some((p) => p.node_id === S.nodeId)).toBe(false);
    const rejected = await nextMatching(sEvents, (e) => e.type === "trust.rejected");
    expect(rejected.data).toEqual({ address: A.address, node_id: A.nodeId, reason: "not today" });
    expect((await s.trusted()).trusted.some((t) => t.node_id === A.nodeId)).toBe(false);
    await expect(a.reject(String(S.nodeId))).rejects.toMatchObject({ code: "not_found" });
    await sEvents.close();
  }, 60_000);
});
