/**
 * The local event feed with real daemons: `pilot events` (listing and
 * --follow) sees a trust request when a peer handshakes; the SDK's typed
 * trust methods end to end (handshake -> pending -> approve -> trusted ->
 * untrust) with the SDK iterator and on() seeing trust.* and peer.* events;
 * and a client that never reads its events: the daemon's memory stays
 * bounded and another client gets every event meanwhile.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type Driver, type LocalEvent } from "../../../src/driver/index.ts";
import { nextMatching } from "./support.ts";
import { ROOT, startCluster, type Cluster } from "../../support/cluster.ts";
import { killAll, startPilot, waitFor } from "../../cli/helpers.ts";

let c: Cluster;
const drivers: Driver[] = [];
const children: Bun.Subprocess[] = [];

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "a", hostname: "events-a" }, { name: "b", hostname: "events-b" }, { name: "c", hostname: "events-c" }] });
});

afterAll(async () => {
  killAll();
  for (const p of children) p.kill("SIGKILL");
  for (const d of drivers) await d.close();
  await c?.stop();
});

async function sdk(name: string): Promise<Driver> {
  const d = await connect({ home: c.daemon(name).home });
  drivers.push(d);
  return d;
}


function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}

describe("pilot events", () => {
  test("--follow streams the trust request a peer sends; the listing shows it; --type filters", async () => {
    const follow = startPilot(c, "a", ["events", "--follow", "--json", "--type", "trust"]);
    const text = startPilot(c, "a", ["events", "--follow", "--type", "trust.request"]);
    // Both are subscribed once the daemon lists two clients with a subscription.
    await waitFor("two followers", async () => {
      const s = (await (await sdk("a")).call("events_status")) as { clients: { subscriptions: number }[] };
      return s.clients.filter((x) => x.subscriptions > 0).length >= 2;
    });
    const h = await c.pilot("b", ["handshake", c.daemon("a").address, "to trade summaries"]);
    expect(h.code).toBe(0);

    const line = JSON.parse(await follow.nextLine(15_000));
    expect(line.status).toBe("ok");
    expect(line.data).toMatchObject({ type: "trust.request", data: { address: c.daemon("b").address, node_id: c.daemon("b").nodeId, reason: "to trade summaries" } });
    expect(line.data.seq).toBeGreaterThan(0);
    expect(typeof line.data.time).toBe("number");

    const human = await text.nextLine(15_000);
    expect(human).toContain("trust.request");
    expect(human).toContain(`${c.daemon("b").address} asks for trust: "to trade summaries"`);
    expect(human).toContain(`pilot approve ${c.daemon("b").nodeId}`);

    const listed = await c.pilot("a", ["events"]);
    expect(listed.code).toBe(0);
    const requests = listed.json.data.events.filter((e: LocalEvent) => e.type === "trust.request");
    expect(requests).toEqual([line.data]);
    expect(listed.json.data.last_seq).toBeGreaterThanOrEqual(line.data.seq);
    expect(listed.json.data.boot).toMatch(/^[0-9a-f]{16}$/);
    expect(listed.json.data.webhook).toBeNull();
    const peersOnly = await c.pilot("a", ["events", "--type", "peer"]);
    expect(peersOnly.json.data.events.some((e: LocalEvent) => e.type === "trust.request")).toBe(false);
    const after = await c.pilot("a", ["events", "--since", String(line.data.seq)]);
    expect(after.json.data.events.some((e: LocalEvent) => e.seq <= line.data.seq)).toBe(false);

    follow.proc.kill();
    text.proc.kill();
    // Leave a and b as they were.
    expect((await c.pilot("a", ["reject", String(c.daemon("b").nodeId)])).code).toBe(0);
  }, 60_000);

  test("--follow --count stops after N events; --timeout fails when fewer came", async () => {
    const waiting = startPilot(c, "c", ["events", "--follow", "--type", "app.demo", "--count", "2", "--json"]);
    const pilotC = await sdk("c");
    await waitFor("the follower", async () => ((await pilotC.call("events_status")) as { clients: { subscriptions: number }[] }).clients.some((x) => x.subscriptions > 0));
    await pilotC.publishEvent("app.demo.one", { n: 1 });
    await pilotC.publishEvent("app.other", { n: 0 });
    await pilotC.publishEvent("app.demo.two", { n: 2 });
    expect(JSON.parse(await waiting.nextLine()).data.data).toEqual({ n: 1 });
    expect(JSON.parse(await waiting.nextLine()).data.data).toEqual({ n: 2 });
    expect(await waiting.exited(10_000)).toBe(0);

    const r = await c.pilot("c", ["events", "--follow", "--type", "app.never", "--count", "1", "--timeout", "300ms"]);
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ status: "error", code: "timeout" });
  }, 30_000);
});

describe("the SDK: typed trust methods end to end, with events", () => {
  test("handshake -> pending -> approve -> trusted -> untrust, seen as trust.* and peer.* events on both sides", async () => {
    const a = await sdk("a");
    const b = await sdk("b");
    const A = c.daemon("a");
    const B = c.daemon("b");
    const aEvents = a.events({ types: ["trust", "peer"] });
    await aEvents.ready;
    const bApproved: LocalEvent[] = [];
    const bPeers: LocalEvent[] = [];
    b.on("trust.approved", (e) => bApproved.push(e));
    b.on("peer", (e: LocalEvent) => bPeers.push(e));

    const asked = await b.handshake(A.address, "e2e via the SDK");
    expect(asked).toEqual({ node_id: A.nodeId, address: A.address, status: "pending" });
    const request = await nextMatching(aEvents, (e) => e.type === "trust.request");
    expect(request.data).toEqual({ address: B.address, node_id: B.nodeId, reason: "e2e via the SDK" });
    const pending = await a.pending();
    expect(pending.pending).toContainEqual({ node_id: B.nodeId, address: B.address, hostname: "events-b", reason: "e2e via the SDK", received_at: expect.any(Number) });
    expect((await b.pending()).outgoing.map((o) => o.node_id)).toContain(A.nodeId);

    expect(await a.approve(request.data.address as string)).toEqual({ node_id: B.nodeId, address: B.address, status: "trusted" });
    expect((await a.trusted()).trusted.map((t) => t.node_id)).toContain(B.nodeId);
    await waitFor("b to trust a", async () => (await b.trusted()).trusted.some((t) => t.node_id === A.nodeId));
    await waitFor("trust.approved at b", async () => bApproved.some((e) => e.data.node_id === A.nodeId));

    // A tunnel session: both see the other come online.
    await a.call("ping", { target: B.address });
    const online = await nextMatching(aEvents, (e) => e.type === "peer.online");
    expect(online.data).toMatchObject({ address: B.address, node_id: B.nodeId, hostname: "events-b", path: expect.any(String) });
    await waitFor("peer.online at b", async () => bPeers.some((e) => e.type === "peer.online" && e.data.node_id === A.nodeId));

    const revoked = await b.untrust("events-a");
    expect(revoked).toMatchObject({ node_id: A.nodeId, address: A.address, status: "revoked", registry_confirmed: true });
    const revokedAtA = await nextMatching(aEvents, (e) => e.type === "trust.revoked");
    expect(revokedAtA.data).toEqual({ address: B.address, node_id: B.nodeId });
    const offline = await nextMatching(aEvents, (e) => e.type === "peer.offline");
    expect(offline.data).toEqual({ address: B.address, node_id: B.nodeId, hostname: "events-b", reason: "untrusted" });
    await waitFor("peer.offline at b", async () => bPeers.some((e) => e.type === "peer.offline" && e.data.reason === "untrusted"));
    expect((await a.trusted()).trusted.map((t) => t.node_id)).not.toContain(B.nodeId);
    await aEvents.close();
    b.removeAllListeners("trust.approved");
    b.removeAllListeners("peer");
  }, 60_000);

  test("setTags, setHostname and setVisibility answer with what the registry now holds", async () => {
    const cc = await sdk("c");
    expect(await cc.setTags(["nlp", "events"])).toEqual({ node_id: c.daemon("c").nodeId, tags: ["nlp", "events"] });
    expect(await cc.setHostname("events-c2")).toEqual({ node_id: c.daemon("c").nodeId, hostname: "events-c2" });
    expect(cc.hostname).toBe("events-c2");
    expect(await cc.setVisibility(true)).toEqual({ node_id: c.daemon("c").nodeId, public: true, visibility: "public" });
    expect(await cc.setVisibility(false)).toMatchObject({ public: false, visibility: "private" });
    await expect(cc.setTags(["NOT A TAG"])).rejects.toMatchObject({ code: "invalid_argument" });
    await expect(cc.setHostname("events-a")).rejects.toMatchObject({ code: "already_exists" });
    expect(await cc.setHostname("events-c")).toMatchObject({ hostname: "events-c" });
  }, 30_000);
});

/** A client in its own process that subscribes to every event and then never reads its socket. */
function stalledClient(socket: string): Promise<Bun.Subprocess<"ignore", "pipe", "inherit">> {
  const script = `
    import net from "node:net";
    import { encodeFrame, FrameType } from ${JSON.stringify(join(ROOT, "src/ipc/frames.ts"))};
    const s = net.connect(${JSON.stringify(socket)});
    const send = (f) => s.write(encodeFrame(f).value);
    s.on("connect", () => {
      send({ type: FrameType.Request, id: 1, method: "hello", params: { protocol: 2 } });
      send({ type: FrameType.Request, id: 2, method: "events_subscribe", params: {} });
      setTimeout(() => { s.pause(); console.log("stalled"); }, 300);
    });
    setInterval(() => {}, 1000);
  `;
  const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  children.push(proc);
  return (async () => {
    const reader = proc.stdout.getReader();
    const { value } = await reader.read();
    if (!new TextDecoder().decode(value).includes("stalled")) throw new Error("the stalled client did not start");
    reader.releaseLock();
    return proc;
  })();
}

describe("a client that never reads its events", () => {
  test("costs the daemon a bounded amount and stalls no other client", async () => {
    const A = c.daemon("a");
    const stalled = await stalledClient(A.socket);
    const publisher = await sdk("a");
    const reader = await sdk("a");
    const TOTAL = 30_000;
    const stream = reader.events({ types: ["app.load"], queueLimit: 100_000 });
    await stream.ready;
    const got: number[] = [];
    const readerGaps: LocalEvent[] = [];
    const reading = (async () => {
      for await (const e of stream) {
        if (e.type === "events.gap") {
          readerGaps.push(e);
          continue;
        }
        got.push(e.data.i as number);
        if (got.length === TOTAL) return;
      }
    })();

    // 4 kB events: 10k to warm up (heaps grow to their working size), then 20k more, 80 MB, that nothing may keep.
    const payload = "x".repeat(4000);
    let sent = 0;
    const publish = async (n: number) => {
      // 20 at a time: a reader that keeps up with that must lose nothing, whatever the stalled one does.
      for (let end = sent + n; sent < end; sent += 20) {
        const base = sent;
        await Promise.all(Array.from({ length: 20 }, (_, k) => publisher.publishEvent("app.load", { i: base + k, payload })));
      }
    };
    await publish(10_000);
    await waitFor("the reader to catch up", async () => got.length >= 10_000 || readerGaps.length > 0, 60_000);
    expect(readerGaps).toEqual([]);
    const rssBefore = rssKiB(A.pid);
    await publish(20_000);
    await waitFor(`the reader to get all ${TOTAL}`, async () => got.length >= TOTAL || readerGaps.length > 0, 60_000);
    expect(readerGaps).toEqual([]);
    await reading;
    expect(got.length).toBe(TOTAL);
    expect(new Set(got).size).toBe(TOTAL);
    const rssAfter = rssKiB(A.pid);

    const status = (await publisher.call("events_status")) as { clients: { client: number; queued_events: number; queued_bytes: number; dropped: number; backlog: number }[]; limits: { queue_events: number; queue_bytes: number; client_high_water: number } };
    const stuck = status.clients.filter((x) => x.dropped > 0);
    expect(stuck.length).toBe(1);
    expect(stuck[0]!.queued_bytes).toBeLessThanOrEqual(status.limits.queue_bytes);
    expect(stuck[0]!.queued_events).toBeLessThanOrEqual(status.limits.queue_events);
    expect(stuck[0]!.backlog).toBeLessThanOrEqual(status.limits.client_high_water + 64 * 1024);
    expect(stuck[0]!.dropped).toBeGreaterThan(TOTAL - 2000);
    // What it holds is its queue and writer (~1.2 MB) and the 1000 events the feed keeps (~4 MB); 80 MB passed through.
    console.log(`daemon RSS ${Math.round(rssBefore / 1024)} MB -> ${Math.round(rssAfter / 1024)} MB over 20000 events of 4 kB (after 10000 to warm up) with one client not reading`);
    expect(rssAfter - rssBefore).toBeLessThan(48 * 1024);

    // When it goes, so does what the daemon held for it.
    stalled.kill("SIGKILL");
    await waitFor("the stalled client's state to go", async () => ((await publisher.call("events_status")) as { clients: { dropped: number }[] }).clients.every((x) => x.dropped === 0));
  }, 120_000);
});
