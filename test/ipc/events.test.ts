/**
 * Local events over IPC (protocol 2): hello negotiation with old and new
 * clients, EVENT frames for a subscription (filtered, replayed from `since`,
 * a gap for what is no longer kept), unsubscribe, app events, and a client
 * that stops reading: its queue stays bounded, it is told what it lost, and
 * another client gets every event meanwhile.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import net from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventBus } from "../../src/daemon/event-bus.ts";
import { NodeError } from "../../src/daemon/local-node.ts";
import { IpcClient } from "../../src/ipc/client.ts";
import { decodeFrame, encodeFrame, FrameReader, FrameType, IPC_PROTOCOL_VERSION, type Frame } from "../../src/ipc/frames.ts";
import { startIpcServer, type IpcServer } from "../../src/ipc/server.ts";
import type { LocalEvent } from "../../src/shared/events.ts";
import { FakeNetwork } from "../support/fake-local-node.ts";

let dir: string;
let bus: EventBus;
let server: IpcServer;
let socketPath: string;
const clients: IpcClient[] = [];
const sockets: net.Socket[] = [];

async function until(predicate: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const deadline = performance.now() + ms;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

async function start(options: { clientHighWater?: number; queueEvents?: number; queueBytes?: number } = {}): Promise<void> {
  dir = mkdtempSync(join(tmpdir(), "pilot-ipc-events-"));
  const node = new FakeNetwork().addNode(7, { hostname: "seven" });
  bus = new EventBus();
  Object.assign(node, { events: bus });
  socketPath = join(dir, "pilot.sock");
  server = await startIpcServer({
    node,
    socketPath,
    clientHighWater: options.clientHighWater,
    eventLimits: { ...(options.queueEvents ? { queueEvents: options.queueEvents } : {}), ...(options.queueBytes ? { queueBytes: options.queueBytes } : {}) },
  });
}

async function client(): Promise<IpcClient> {
  const { client } = await IpcClient.connect(socketPath);
  clients.push(client);
  return client;
}

function frame(f: Frame): Uint8Array {
  const r = encodeFrame(f);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

/** A raw client over node:net: sends what it is told, collects decoded frames, and can stop reading. */
async function rawClient(): Promise<{ socket: net.Socket; frames: Frame[]; send(f: Frame): void }> {
  const socket = net.connect(socketPath);
  sockets.push(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  const frames: Frame[] = [];
  const reader = new FrameReader();
  socket.on("data", (chunk: Buffer) => {
    reader.push(new Uint8Array(chunk));
    for (let raw = reader.next(); raw; raw = reader.next()) {
      if (!raw.ok) throw new Error(raw.error.message);
      const f = decodeFrame(raw.value.type, raw.value.payload.slice(), "daemon");
      if (!f.ok) throw new Error(f.error.message);
      frames.push(f.value);
    }
  });
  return { socket, frames, send: (f) => socket.write(frame(f)) };
}

function responses(frames: Frame[], id: number): Frame[] {
  return frames.filter((f) => f.type === FrameType.Response && f.id === id);
}

beforeEach(() => {
  clients.length = 0;
  sockets.length = 0;
});

afterEach(async () => {
  for (const c of clients) c.close();
  for (const s of sockets) s.destroy();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("hello", () => {
  test("a driver of this release agrees on protocol 2", async () => {
    await start();
    const { client: c, hello } = await IpcClient.connect(socketPath);
    clients.push(c);
    expect(IPC_PROTOCOL_VERSION).toBe(2);
    expect(hello.protocol).toBe(2);
    expect(c.protocol).toBe(2);
  });

  test("a client that says protocol 1 is served as before and gets no EVENT frame", async () => {
    await start();
    const raw = await rawClient();
    raw.send({ type: FrameType.Request, id: 1, method: "hello", params: { protocol: 1 } });
    await until(() => responses(raw.frames, 1).length === 1);
    const hello = responses(raw.frames, 1)[0] as Extract<Frame, { type: 0x02; ok: true }>;
    expect(hello.ok).toBe(true);
    expect((hello.result as { protocol: number }).protocol).toBe(1);
    raw.send({ type: FrameType.Request, id: 2, method: "events_subscribe", params: {} });
    await until(() => responses(raw.frames, 2).length === 1);
    const refused = responses(raw.frames, 2)[0] as Extract<Frame, { type: 0x02; ok: false }>;
    expect(refused.ok).toBe(false);
    expect(refused.error.code).toBe("invalid_argument");
    expect(refused.error.message).toContain("protocol 2");
    bus.publish("trust.request", { address: "0:0000.0000.0009", node_id: 9, reason: "x" });
    // Plain requests still work, and no EVENT frame arrived.
    raw.send({ type: FrameType.Request, id: 3, method: "events_recent", params: {} });
    await until(() => responses(raw.frames, 3).length === 1);
    expect(raw.frames.some((f) => f.type === FrameType.Event)).toBe(false);
  });

  test("versions are negotiated down to what both speak, and refused when there is none", async () => {
    await start();
    const raw = await rawClient();
    raw.send({ type: FrameType.Request, id: 1, method: "hello", params: { protocol: 5, min_protocol: 1 } });
    raw.send({ type: FrameType.Request, id: 2, method: "hello", params: { protocol: 5 } });
    raw.send({ type: FrameType.Request, id: 3, method: "hello", params: { protocol: 0 } });
    raw.send({ type: FrameType.Request, id: 4, method: "hello", params: { protocol: "2" } });
    await until(() => raw.frames.length === 4);
    expect((responses(raw.frames, 1)[0] as any).result.protocol).toBe(2);
    for (const id of [2, 3, 4]) {
      const r = responses(raw.frames, id)[0] as any;
      expect(r.ok).toBe(false);
      expect(r.error.code).toBe("invalid_argument");
      expect(r.error.message).toContain("this daemon speaks 1 to 2");
    }
  });

  test("against a daemon from before protocol 2 the driver falls back to 1, and says why events fail", async () => {
    // An old daemon: refuses any hello but {protocol: 1}, as release 1 did.
    dir = mkdtempSync(join(tmpdir(), "pilot-ipc-events-"));
    socketPath = join(dir, "old.sock");
    const hellos: unknown[] = [];
    const listener = Bun.listen<{ reader: FrameReader }>({
      unix: socketPath,
      socket: {
        open(s) {
          s.data = { reader: new FrameReader() };
        },
        data(s, chunk) {
          s.data.reader.push(new Uint8Array(chunk));
          for (let raw = s.data.reader.next(); raw; raw = s.data.reader.next()) {
            if (!raw.ok) return;
            const f = decodeFrame(raw.value.type, raw.value.payload, "client");
            if (!f.ok || f.value.type !== FrameType.Request) return;
            hellos.push(f.value.params);
            const answer: Frame =
              f.value.params.protocol === 1
                ? { type: FrameType.Response, id: f.value.id, ok: true, result: { protocol: 1, address: "0:0000.0000.0007", hostname: null } }
                : { type: FrameType.Response, id: f.value.id, ok: false, error: { code: "invalid_argument", message: `IPC protocol ${f.value.params.protocol} is not supported; this daemon speaks 1` } };
            s.write(frame(answer));
          }
        },
      },
    });
    server = { socketPath, clientCount: 0, close: async () => void listener.stop(true) };
    const c = await client();
    expect(c.protocol).toBe(1);
    expect(hellos).toEqual([{ protocol: 2, min_protocol: 1 }, { protocol: 1 }]);
    const error = await c.subscribeEvents({}, () => {}).catch((e) => e);
    expect(error).toBeInstanceOf(NodeError);
    expect(error.code).toBe("invalid_argument");
    expect(error.message).toContain("too old");
  });
});

describe("subscriptions", () => {
  test("EVENT frames carry the subscribed types, in order, from the first one after the answer", async () => {
    await start();
    const c = await client();
    const all: LocalEvent[] = [];
    const trust: LocalEvent[] = [];
    bus.publish("trust.request", { address: "0:0000.0000.0001", node_id: 1, reason: "before" });
    const a = await c.subscribeEvents({}, (e) => all.push(e));
    const b = await c.subscribeEvents({ types: ["trust"] }, (e) => trust.push(e));
    expect(a.lastSeq).toBe(1);
    expect(b.subscription).not.toBe(a.subscription);
    expect(a.boot).toMatch(/^[0-9a-f]{16}$/);
    bus.publish("trust.request", { address: "0:0000.0000.0002", node_id: 2, reason: "hi" });
    bus.publish("peer.online", { address: "0:0000.0000.0002", node_id: 2, hostname: null, endpoint: "127.0.0.1:1", path: "direct" });
    bus.publish("trust.approved", { address: "0:0000.0000.0002", node_id: 2 });
    await until(() => all.length === 3 && trust.length === 2);
    expect(all.map((e) => [e.seq, e.type])).toEqual([
      [2, "trust.request"],
      [3, "peer.online"],
      [4, "trust.approved"],
    ]);
    expect(trust.map((e) => e.type)).toEqual(["trust.request", "trust.approved"]);
    expect(all[0]!.data).toEqual({ address: "0:0000.0000.0002", node_id: 2, reason: "hi" });
    expect(typeof all[0]!.time).toBe("number");
  });

  test("since replays what is kept, with a gap for what is not; then live events follow", async () => {
    await start();
    for (let i = 1; i <= 1200; i++) bus.publish("app.tick", { i });
    const c = await client();
    const got: LocalEvent[] = [];
    const r = await c.subscribeEvents({ since: 100 }, (e) => got.push(e));
    expect(r.lastSeq).toBe(1200);
    await until(() => got.length === 1001);
    // 101..200 are gone (the bus keeps 1000): one gap, then 201..1200.
    expect(got[0]!.type).toBe("events.gap");
    expect(got[0]!.seq).toBe(200);
    expect(got[0]!.data).toEqual({ dropped: 100, first_seq: 101, last_seq: 200, reason: "not_kept" });
    expect(got[1]!.seq).toBe(201);
    expect(got[1000]!.seq).toBe(1200);
    bus.publish("app.tick", { i: 1201 });
    await until(() => got.length === 1002);
    expect(got[1001]!.seq).toBe(1201);

    const ahead = await c.subscribeEvents({ since: 5000 }, () => {}).catch((e) => e);
    expect(ahead.code).toBe("invalid_argument");
    expect(ahead.message).toContain("restarted");
  });

  test("after unsubscribe nothing more arrives, and bad parameters are refused", async () => {
    await start();
    const c = await client();
    const got: LocalEvent[] = [];
    const r = await c.subscribeEvents({ types: ["app"] }, (e) => got.push(e));
    bus.publish("app.one", {});
    await until(() => got.length === 1);
    await c.unsubscribeEvents(r.subscription);
    bus.publish("app.two", {});
    await Bun.sleep(50);
    expect(got.length).toBe(1);
    for (const params of [{ types: "trust" }, { types: ["Trust.Request"] }, { types: ["a..b"] }, { since: -1 }, { since: 1.5 }]) {
      const e = (await c.request("events_subscribe", params).catch((x) => x)) as NodeError;
      expect(e.code).toBe("invalid_argument");
    }
    const e = (await c.request("events_unsubscribe", { subscription: 99 }).catch((x) => x)) as NodeError;
    expect(e.code).toBe("not_found");
  });

  test("one connection holds at most 16 subscriptions", async () => {
    await start();
    const c = await client();
    for (let i = 0; i < 16; i++) await c.subscribeEvents({}, () => {});
    const e = (await c.subscribeEvents({}, () => {}).catch((x) => x)) as NodeError;
    expect(e.code).toBe("limit_exceeded");
  });

  test("events_recent lists what is kept (filtered, newest when limited); events_publish takes app events only", async () => {
    await start();
    const c = await client();
    bus.publish("trust.request", { address: "0:0000.0000.0001", node_id: 1, reason: "r" });
    expect(await c.request("events_publish", { type: "app.task.done", data: { task: 7 } })).toEqual({ seq: 2, type: "app.task.done" });
    await c.request("events_publish", { type: "app.task.done", data: { task: 8 } });
    const recent = (await c.request("events_recent", { types: ["app"], limit: 1 })) as any;
    expect(recent.events.map((e: LocalEvent) => e.data)).toEqual([{ task: 8 }]);
    expect(recent.last_seq).toBe(3);
    expect(recent.oldest_seq).toBe(1);
    for (const params of [{ type: "trust.request", data: {} }, { type: "app", data: {} }, { type: "app.x", data: [1] }]) {
      const e = (await c.request("events_publish", params).catch((x) => x)) as NodeError;
      expect(e.code).toBe("invalid_argument");
    }
    const big = (await c.request("events_publish", { type: "app.big", data: { x: "y".repeat(70_000) } }).catch((x) => x)) as NodeError;
    expect(big.code).toBe("limit_exceeded");
  });

  test("an event too large for one frame arrives with its data marked truncated", async () => {
    await start();
    const c = await client();
    const got: LocalEvent[] = [];
    await c.subscribeEvents({}, (e) => got.push(e));
    bus.publish("message.received", { text: "z".repeat(300_000) });
    await until(() => got.length === 1);
    expect(got[0]!.type).toBe("message.received");
    expect(got[0]!.data).toEqual({ truncated: true, bytes: expect.any(Number) });
  });
});

describe("a client that stops reading", () => {
  test("holds a bounded queue, is told what it lost, and stalls nobody", async () => {
    await start({ clientHighWater: 64 * 1024, queueEvents: 100, queueBytes: 64 * 1024 });
    const stalled = await rawClient();
    stalled.send({ type: FrameType.Request, id: 1, method: "hello", params: { protocol: 2 } });
    stalled.send({ type: FrameType.Request, id: 2, method: "events_subscribe", params: {} });
    await until(() => responses(stalled.frames, 2).length === 1);
    stalled.socket.pause();

    const reader = await client();
    const got: LocalEvent[] = [];
    await reader.subscribeEvents({}, (e) => got.push(e));

    const payload = "p".repeat(1000);
    const total = 5000; // ~5 MB of events in all
    for (let i = 0; i < total; i++) {
      bus.publish("app.load", { i, payload });
      if (i % 100 === 99) await Bun.sleep(1);
    }
    await until(() => got.length === total, 20_000, "the reading client to get every event");
    expect(got.map((e) => e.data.i)).toEqual(Array.from({ length: total }, (_, i) => i));

    const status = (await reader.request("events_status", {})) as any;
    const mine = status.clients.find((x: any) => x.dropped > 0);
    expect(mine).toBeDefined();
    // What the daemon holds for it: its queue within bounds, its writer near its high-water mark.
    expect(mine.queued_events).toBeLessThanOrEqual(100);
    expect(mine.queued_bytes).toBeLessThanOrEqual(64 * 1024);
    expect(mine.backlog).toBeLessThanOrEqual(64 * 1024 + 2 * 1100);
    expect(status.clients.find((x: any) => x !== mine).dropped).toBe(0);

    // It reads again: what it gets is in order, with one gap saying exactly what it missed.
    stalled.socket.resume();
    bus.publish("app.after", {});
    await until(() => stalled.frames.some((f) => f.type === FrameType.Event && f.event.type === "app.after"), 10_000, "the stalled client to catch up");
    const events = stalled.frames.flatMap((f) => (f.type === FrameType.Event ? [f.event] : []));
    const gaps = events.filter((e) => e.type === "events.gap");
    expect(gaps.length).toBe(1);
    const gap = gaps[0]!.data as { dropped: number; first_seq: number; last_seq: number; reason: string };
    expect(gap.reason).toBe("slow_client");
    expect(gap.dropped).toBe(gap.last_seq - gap.first_seq + 1);
    const seqs = events.filter((e) => e.type !== "events.gap").map((e) => e.seq);
    expect(seqs.length + gap.dropped).toBe(total + 1);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
    expect(seqs).not.toContain(gap.first_seq);
    expect(seqs).toContain(gap.last_seq + 1);
  }, 60_000);
});
