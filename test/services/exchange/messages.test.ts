/**
 * The mailbox between real daemons (port 1001), through the real CLI: send,
 * inbox, read, clear, replies; who may send (strangers refused, the sender
 * cannot be forged); quotas; --no-messages; nothing lost across kill -9 of
 * either side.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startCluster, type Cluster } from "../../support/cluster.ts";
import { connect } from "../../../src/driver/index.ts";
import { encodeExchangeFrame, idFromText, idToText } from "../../../src/protocol/exchange.ts";
import { configure, isDead, rawExchange, waitFor } from "./support.ts";

setDefaultTimeout(90_000);

let c: Cluster;
let A: string;
let B: string;

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "a", hostname: "msg-a" }] });
  // b is public (so a stranger's stream reaches the service), with small limits to test them.
  configure(c, "b", { messages_quota: "1MiB", message_max_size: "700KiB" });
  await c.startDaemon({ name: "b", hostname: "msg-b", public: true });
  await c.startDaemon({ name: "c", hostname: "msg-c" });
  await c.startDaemon({ name: "off", hostname: "msg-off", public: true, extraArgs: ["--no-messages"] });
  await c.startDaemon({ name: "open", hostname: "msg-open", public: true, extraArgs: ["--open-services", "messages"] });
  await c.trust("b", "a");
  A = c.daemon("a").address;
  B = c.daemon("b").address;
});
afterAll(async () => {
  await c?.stop();
});

async function inbox(name: string, args: string[] = []) {
  const r = await c.pilot(name, ["inbox", ...args]);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
  return r.json.data;
}

describe("messages", () => {
  test("send-message, inbox, read and clear: typed, with sender, time, size and read state", async () => {
    const text = await c.pilot("a", ["send-message", "msg-b", "--data", "hello b"]);
    expect(text.code).toBe(0);
    expect(text.json.data).toMatchObject({ target: B, type: "text", bytes: 7, stored: true, state: "delivered" });
    const json = await c.pilot("a", ["send-message", "msg-b", "--type", "json", "--data", '{"task":"summarize","n":3}']);
    expect(json.json.data).toMatchObject({ type: "json", stored: true });
    const bin = await c.pilot("a", ["send-message", "msg-b", "-", "--type", "binary"], { input: "\u0000\u0001binary" });
    expect(bin.json.data).toMatchObject({ type: "binary", bytes: 8, stored: true });

    const list = await inbox("b");
    expect(list.total).toBe(3);
    expect(list.unread).toBe(3);
    expect(list.messages.map((m: any) => m.type)).toEqual(["binary", "json", "text"]);
    for (const m of list.messages) {
      expect(m.from).toBe(A);
      expect(m.read).toBe(false);
      expect(Date.now() - Date.parse(m.received_at)).toBeLessThan(60_000);
    }
    expect(list.messages[2]).toMatchObject({ id: text.json.data.id, bytes: 7, preview: "hello b" });

    const readJson = await c.pilot("b", ["inbox", "read", json.json.data.id]);
    expect(readJson.json.data).toMatchObject({ id: json.json.data.id, from: A, type: "json", data: { task: "summarize", n: 3 }, read: true });
    const readBin = await c.pilot("b", ["inbox", "read", bin.json.data.id]);
    expect(Buffer.from(readBin.json.data.data_base64, "base64").toString()).toBe("\u0000\u0001binary");
    const human = await c.pilot("b", ["inbox", "read", text.json.data.id], { json: false });
    expect(human.stdout).toContain("hello b");
    expect(human.stdout).toContain(`from:      ${A}`);

    expect((await inbox("b", ["--unread"])).total).toBe(0);
    expect((await inbox("b", ["--from", "msg-a", "--since", "1h", "--limit", "1"])).messages.length).toBe(1);
    expect((await inbox("b", ["--from", c.daemon("c").address])).total).toBe(0);
    const notOld = await c.pilot("b", ["inbox", "clear", "--before", "1h"]);
    expect(notOld.json.data.cleared).toBe(0);
    const cleared = await c.pilot("b", ["inbox", "clear"]);
    expect(cleared.json.data).toMatchObject({ cleared: 3 });
    expect((await inbox("b")).total).toBe(0);
  });

  test("--wait prints the target's reply to this message", async () => {
    const waiting = c.pilot("a", ["send-message", "msg-b", "--data", "ping?", "--wait", "30s"]);
    let id = "";
    await waitFor("the message at b", async () => {
      const l = await inbox("b", ["--unread"]);
      id = l.messages.find((m: any) => m.preview === "ping?")?.id ?? "";
      return id !== "";
    });
    const reply = await c.pilot("b", ["send-message", "msg-a", "--reply-to", id, "--data", "pong!"]);
    expect(reply.json.data.stored).toBe(true);
    const r = await waiting;
    expect(r.code).toBe(0);
    expect(r.json.data).toMatchObject({ id, stored: true, reply: { from: B, reply_to: id, data: "pong!" } });
    await c.pilot("b", ["inbox", "clear"]);
    await c.pilot("a", ["inbox", "clear"]);
  });

  test("the sender is the stream's authenticated address, whatever the message says; a re-delivery is stored once", async () => {
    const id = new Uint8Array(16).fill(0x42);
    const claim = new TextEncoder().encode(JSON.stringify({ from: c.daemon("c").address, note: "I am c, honest" }));
    const frame = { kind: "message" as const, id, type: "json" as const, replyTo: null, total: claim.length, data: claim };
    const answers = await rawExchange(c.daemon("a").home, B, [frame, frame], 2);
    expect(answers[0]).toMatchObject({ kind: "message_ack", duplicate: false });
    expect(answers[1]).toMatchObject({ kind: "message_ack", duplicate: true });
    const list = await inbox("b");
    expect(list.total).toBe(1);
    expect(list.messages[0]).toMatchObject({ id: idToText(id), from: A });
    await c.pilot("b", ["inbox", "clear"]);
  });

  test("a stranger is refused by a public node that did not open the service; a broken frame is refused, not fatal", async () => {
    const r = await c.pilot("c", ["send-message", "msg-b", "--data", "let me in"]);
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("not_trusted");
    expect(r.json.message).toContain("only from nodes it trusts");
    expect((await inbox("b")).total).toBe(0);
    const outbox = await c.pilot("c", ["outbox"]);
    expect(outbox.json.data.messages[0]).toMatchObject({ state: "failed", error: { code: "not_trusted" } });

    // A node that opened its mailbox to strangers takes it, and still knows who sent it.
    const open = await c.pilot("c", ["send-message", c.daemon("open").address, "--data", "hi stranger"]);
    expect(open.json.data).toMatchObject({ stored: true });
    expect((await inbox("open")).messages[0]).toMatchObject({ from: c.daemon("c").address, preview: "hi stranger" });

    const answers = await rawExchange(c.daemon("a").home, B, [new Uint8Array([0x01, 0xff])], 1);
    expect(answers[0]).toMatchObject({ kind: "error", code: "bad_frame" });
    expect((await c.pilot("a", ["send-message", "msg-b", "--data", "still fine"])).json.data.stored).toBe(true);
    await c.pilot("b", ["inbox", "clear"]);
  });

  test("a peer over its quota gets quota_exceeded; reading makes room; too large is too_large", async () => {
    const file = join(c.dir, "600k.txt");
    writeFileSync(file, "x".repeat(600 * 1024));
    const first = await c.pilot("a", ["send-message", "msg-b", "--data-file", file]);
    expect(first.json.data).toMatchObject({ stored: true, bytes: 600 * 1024 });
    const second = await c.pilot("a", ["send-message", "msg-b", "--data-file", file]);
    expect(second.code).toBe(1);
    expect(second.json.code).toBe("quota_exceeded");
    expect(second.json.hint).toContain("read or clear");
    // Reading the first lets it be evicted for the next.
    await c.pilot("b", ["inbox", "read", first.json.data.id]);
    const third = await c.pilot("a", ["send-message", "msg-b", "--data-file", file]);
    expect(third.json.data.stored).toBe(true);
    const list = await inbox("b");
    expect(list.messages.map((m: any) => m.id)).toEqual([third.json.data.id]);
    // A re-delivery of a stored message (its ack was lost) is acknowledged as a duplicate even though the quota is full now.
    const data = new Uint8Array(600 * 1024).fill(0x78);
    const id = idFromText(third.json.data.id)!;
    const again = await rawExchange(c.daemon("a").home, B, [
      { kind: "message", id, type: "text", replyTo: null, total: data.length, data: data.subarray(0, 200 * 1024) },
      { kind: "message_more", data: data.subarray(200 * 1024, 400 * 1024) },
      { kind: "message_more", data: data.subarray(400 * 1024) },
    ], 1);
    expect(again[0]).toMatchObject({ kind: "message_ack", duplicate: true });

    const big = join(c.dir, "800k.txt");
    writeFileSync(big, "y".repeat(800 * 1024));
    const tooLarge = await c.pilot("a", ["send-message", "msg-b", "--data-file", big]);
    expect(tooLarge.code).toBe(1);
    expect(tooLarge.json.code).toBe("too_large");
    await c.pilot("b", ["inbox", "clear"]);
  });

  test("--no-messages refuses messages with a clear code", async () => {
    const r = await c.pilot("a", ["send-message", "msg-off", "--data", "anyone?"]);
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("connection_refused");
    expect(r.json.message).toContain("switched off");
  });

  test("bad values are usage errors (exit 2)", async () => {
    for (const args of [
      ["send-message", "msg-b", "--data", "x", "--type", "xml"],
      ["send-message", "msg-b", "--type", "json", "--data", "{not json"],
      ["send-message", "msg-b", "--data", "x", "--wait", "soon"],
      ["send-message", "msg-b", "--data", "x", "--reply-to", "42"],
      ["send-message", "msg-b"],
      ["inbox", "--limit", "0"],
      ["inbox", "read", "../../etc/passwd"],
      ["inbox", "shred"],
      ["config", "--set", "messages_quota=lots"],
      ["config", "--set", "files_quota=1KiB"],
    ]) {
      const r = await c.pilot("a", args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(["invalid_argument", "usage"]).toContain(r.json.code);
    }
  });

  test("the SDK: sendMessage (json, large), inbox.list/read/clear, waitForReply, sendFile with progress, received", async () => {
    const a = await connect({ home: c.daemon("a").home });
    const b = await connect({ home: c.daemon("b").home });
    try {
      const sent = await a.sendMessage("msg-b", { task: "summarize", items: [1, 2, 3] });
      expect(sent).toMatchObject({ target: B, type: "json", stored: true, state: "delivered" });
      const big = new Uint8Array(300 * 1024).map((_, i) => i % 251);
      const bigSent = await a.sendMessage("msg-b", big); // more than one IPC frame: staged, then read back in chunks
      expect(bigSent).toMatchObject({ type: "binary", bytes: big.length, stored: true });

      const list = await b.inbox.list({ from: "msg-a", unread: true });
      expect(list.messages.map((m) => m.id)).toEqual([bigSent.id, sent.id]);
      const m = await b.inbox.read(sent.id);
      expect(m.from).toBe(A);
      expect(m.json()).toEqual({ task: "summarize", items: [1, 2, 3] });
      expect((await b.inbox.read(bigSent.id)).data).toEqual(big);

      const replying = a.inbox.waitForReply("msg-b", sent.id, 20_000);
      await b.sendMessage("msg-a", "done", { replyTo: sent.id });
      const reply = await replying;
      expect(reply).toMatchObject({ from: B, reply_to: sent.id, type: "text" });
      expect(reply.text()).toBe("done");
      await expect(a.inbox.waitForReply("msg-b", bigSent.id, 300)).rejects.toMatchObject({ code: "timeout" });
      expect((await a.inbox.outbox()).messages.find((x) => x.id === sent.id)?.state).toBe("delivered");

      const path = join(c.dir, "sdk.bin");
      writeFileSync(path, new Uint8Array(8 * 1024 * 1024).fill(3));
      const progress: number[] = [];
      const file = await a.sendFile("msg-b", path, { name: "sdk-file.bin", onProgress: (p) => progress.push(p.bytes) });
      expect(file).toMatchObject({ target: B, name: "sdk-file.bin", bytes: 8 * 1024 * 1024, resumed_from: 0 });
      expect(progress[progress.length - 1]).toBe(8 * 1024 * 1024);
      const received = await b.received();
      expect(received.files[0]).toMatchObject({ name: "sdk-file.bin", from: A, sha256: file.sha256 });
      expect(await b.clearReceived()).toMatchObject({ cleared: 1 });
      await expect(a.sendMessage("msg-b", "x", { type: "json" })).rejects.toMatchObject({ code: "invalid_argument" });

      expect((await b.inbox.clear({ from: "msg-a" })).cleared).toBe(2);
      await a.inbox.clear();
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("hostile daemon-call parameters get invalid_argument (or not_found), never a crash", async () => {
    const a = await connect({ home: c.daemon("a").home });
    try {
      const calls: [string, Record<string, unknown>][] = [
        ["message_send", {}],
        ["message_send", { target: 5, data: "aGk=" }],
        ["message_send", { target: "msg-b", data: "not base64!" }],
        ["message_send", { target: "msg-b", data: "aGk=", type: "xml" }],
        ["message_send", { target: "msg-b", data: "aGk=", reply_to: "../../x" }],
        ["message_send", { target: "msg-b", data: "aGk=", wait_ms: -1 }],
        ["message_send", { target: "msg-b", stage: "no-such-stage" }],
        ["message_stage", { data: "x".repeat(300_000) }],
        ["message_wait", { from: "msg-b", reply_to: "nope", timeout_ms: 10 }],
        ["inbox_list", { limit: 0 }],
        ["inbox_list", { since_ms: "yesterday" }],
        ["inbox_read", { id: { $ne: 1 } }],
        ["inbox_read", { id: "0190f4c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d" }],
        ["inbox_clear", { before_ms: 1.5 }],
        ["outbox_list", { limit: 1e9 }],
        ["file_send", { target: "msg-b", path: "relative/path" }],
        ["file_send", { target: "msg-b", path: "/" }],
        ["file_send", { target: "msg-b", path: "/etc/hostname", name: "x".repeat(2000) }],
        ["file_send", { target: "msg-b", path: "/etc/hostname", timeout_ms: 0 }],
      ];
      for (const [method, params] of calls) {
        const e = await a.call(method, params).then(() => null, (err) => err);
        expect({ method, params, code: e?.code }).toEqual({ method, params, code: expect.stringMatching(/^(invalid_argument|not_found)$/) });
      }
      expect((await a.info()).address).toBe(A);
    } finally {
      await a.close();
    }
  });

  test("nothing is lost across kill -9: the sender's outbox survives it, and an acknowledged message survives the receiver's", async () => {
    await c.stopDaemon("b");
    const queued = await c.pilot("a", ["send-message", "msg-b", "--data", "while you were out", "--timeout", "3s"]);
    expect(queued.code).toBe(0);
    expect(queued.json.data).toMatchObject({ stored: false, state: "queued" });
    const id = queued.json.data.id;
    expect(idFromText(id)).not.toBeNull();

    const a = c.daemon("a");
    process.kill(a.pid, "SIGKILL");
    await waitFor("a to die", () => isDead(a.pid));
    await c.startDaemon({ name: "b", hostname: "msg-b", public: true });
    await c.startDaemon({ name: "a", hostname: "msg-a" });
    await waitFor("the queued message at b", async () => (await inbox("b")).messages.some((m: any) => m.id === id));
    await waitFor("a to see it delivered", async () => (await c.pilot("a", ["outbox"])).json.data.messages.find((m: any) => m.id === id)?.state === "delivered");

    const b = c.daemon("b");
    process.kill(b.pid, "SIGKILL");
    await waitFor("b to die", () => isDead(b.pid));
    await c.startDaemon({ name: "b", hostname: "msg-b", public: true });
    const after = await inbox("b");
    expect(after.messages.find((m: any) => m.id === id)).toMatchObject({ from: A, preview: "while you were out" });
  });

  test("messages still arriving are bounded in memory for all peers together: past messages_memory_total one is refused busy, and its sender's retry gets through", async () => {
    configure(c, "mem", { messages_memory_total: "1MiB" });
    await c.startDaemon({ name: "mem", hostname: "msg-mem" });
    await c.trust("mem", "a");
    const MEM = c.daemon("mem").address;
    // A stream that announces 700 KiB, sends 1 KiB of it and then holds: the receiver reserves the whole message.
    const holder = await connect({ home: c.daemon("a").home });
    const held = await holder.dial(MEM, 1001);
    held.on("error", () => {});
    const announce = (fill: number) => {
      const body = encodeExchangeFrame({ kind: "message", id: new Uint8Array(16).fill(fill), type: "binary", replyTo: null, total: 700 * 1024, data: new Uint8Array(1024) });
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      return Buffer.concat([head, body]);
    };
    held.write(announce(0x11));
    await Bun.sleep(300);
    // A second large one while the first is held: 1.4 MiB would be assembling at once, over the 1 MiB bound.
    const refused = await rawExchange(c.daemon("a").home, MEM, [{ kind: "message", id: new Uint8Array(16).fill(0x12), type: "binary", replyTo: null, total: 400 * 1024, data: new Uint8Array(1024) }], 1);
    expect(refused[0]).toMatchObject({ kind: "error", code: "busy" });
    expect((refused[0] as { message: string }).message).toContain("retry");
    // A small one still fits beside the held one.
    const small = await c.pilot("a", ["send-message", "msg-mem", "--data", "small"]);
    expect(small.json.data).toMatchObject({ stored: true });
    // A large one sent the normal way is refused busy while the bound is reached, stays queued, and is delivered once the
    // held stream goes away.
    const big = join(c.dir, "400k.bin");
    writeFileSync(big, Buffer.alloc(400 * 1024, 7));
    const queued = c.pilot("a", ["send-message", "msg-mem", "--data-file", big, "--type", "binary"]);
    await Bun.sleep(1500);
    held.destroy();
    await holder.close();
    const r = await queued;
    expect(r.json?.data ?? r.stderr).toMatchObject({ bytes: 400 * 1024 });
    await waitFor("the large message in mem's inbox", async () => (await inbox("mem")).messages.some((m: any) => m.bytes === 400 * 1024), 30_000);
    expect((await inbox("mem")).messages.filter((m: any) => m.bytes === 700 * 1024)).toEqual([]);
  }, 60_000);
});
