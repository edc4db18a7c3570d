/**
 * The task service's protocol in one process (FakeNetwork streams, real
 * signatures, real SQLite): lifecycle, offline peers and restarts, duplicates,
 * forgeries, quotas, expiry, cancel races, receipts.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { encodeTaskMessage, decodeTaskMessage, ReplyCode, TASK_LIMITS, EMPTY_SHA256, type TaskMessage } from "../../../src/protocol/tasks.ts";
import { resultStatementBytes, verdictStatementBytes, checkReceiptFields } from "../../../src/protocol/receipt.ts";
import { verifySignature } from "../../../src/crypto/identity.ts";
import { FramedStream } from "../../../src/daemon/services/framed-stream.ts";
import { startTaskHarness, until, type TaskHarness, type TestNode } from "./harness.ts";

let h: TaskHarness;
let s: TestNode; // submitter
let w: TestNode; // worker
let m: TestNode; // a third node

beforeEach(() => {
  h = startTaskHarness();
  s = h.add("sub", 10);
  w = h.add("work", 11);
  m = h.add("mallory", 12);
  h.trust("sub", "work");
});
afterEach(() => h.close());

const show = (n: TestNode, id: string) => n.call("task_show", { id });

async function submitAndRun(text = "summarize", input?: string) {
  const t = await s.call("task_submit", { target: "work", task: text, ...(input !== undefined ? { input_base64: Buffer.from(input).toString("base64"), input_name: "in.txt" } : {}) });
  expect(t.delivered).toBe(true);
  await w.call("task_accept", { id: t.id });
  await w.call("task_start", {});
  return t.id as string;
}

/** Speaks the task protocol by hand from `from` to `to` (for forgeries and attacks). */
async function rawLink(from: TestNode, to: TestNode) {
  const stream = await from.node.dial(to.address, 1003);
  const replies: TaskMessage[] = [];
  let closed = false;
  let ended = false;
  const framed = new FramedStream(stream, {
    onEnd: () => (ended = true),
    maxFrame: 70_000,
    onFrame: (b) => {
      const r = decodeTaskMessage(b);
      if (r.ok) replies.push(r.value);
    },
    onClose: () => (closed = true),
  });
  return {
    send: (msg: TaskMessage) => framed.send(encodeTaskMessage(msg)),
    sendRaw: (bytes: Uint8Array) => framed.send(bytes),
    replies,
    get closed() {
      return closed;
    },
    /** The other end finished its side (or the stream is gone). */
    get ended() {
      return ended || closed;
    },
    next: async () => {
      const n = replies.length;
      await until(() => replies.length > n || closed, 3000, "a reply");
      return replies[n];
    },
    close: () => framed.close(),
  };
}

describe("the task lifecycle between two nodes", () => {
  test("submit -> accept -> start -> result -> approve: both sides learn every step, with receipts", async () => {
    const t = await s.call("task_submit", { target: "work", task: "summarize the report", input_base64: Buffer.from("the report").toString("base64"), input_name: "report.txt" });
    expect(t).toMatchObject({ role: "submitted", state: "queued", delivered: true, description: "summarize the report", input: { size: 10, name: "report.txt" } });
    expect(t.id).toMatch(/^[0-9a-f]{32}$/);

    const got = await until(() => w.call("task_show", { id: t.id }).catch(() => null));
    expect(got).toMatchObject({ role: "received", state: "queued", peer: s.node.address ? expect.any(String) : "", description: "summarize the report" });
    expect(w.seen("task.received")[0]!.data).toMatchObject({ id: t.id, description: "summarize the report", input_size: 10 });
    const input = await w.call("task_read", { id: t.id, part: "input" });
    expect(Buffer.from(input.data, "base64").toString()).toBe("the report");
    // The input is stored under a name the worker made up, never the task id or the sender's name.
    const blobs = readdirSync(join(w.dir!, "blobs"));
    expect(blobs).toHaveLength(1);
    expect(blobs[0]).not.toContain(t.id);
    expect(got.input.file).toBe(join(w.dir!, "blobs", blobs[0]!));

    await w.call("task_accept", { id: t.id.slice(0, 8) });
    await until(async () => (await show(s, t.id)).state === "accepted");
    const started = await w.call("task_start", {});
    expect(started).toMatchObject({ id: t.id, state: "running" });
    await until(async () => (await show(s, t.id)).state === "running");

    await w.call("task_result", { id: t.id, text: "a short summary" });
    const done = await until(async () => {
      const x = await show(s, t.id);
      return x.state === "succeeded" ? x : null;
    });
    expect(done.result).toMatchObject({ outcome: "succeeded", kind: "text", size: 15, text: "a short summary" });
    expect(s.seen("task.result")[0]!.data).toMatchObject({ id: t.id, outcome: "succeeded", size: 15 });
    expect(s.seen("task.status").map((e) => e.data.state)).toEqual(["queued", "accepted", "running", "succeeded"]);
    expect(w.seen("task.status").map((e) => e.data.state)).toEqual(["queued", "accepted", "running", "succeeded"]);

    // The worker's signature over the result statement verifies against its key.
    const statement = resultStatementBytes({ taskId: t.id, submitter: s.id, worker: w.id, resultSha256: done.result.sha256, deliveredAt: done.result.delivered_at });
    expect(verifySignature(w.identity.publicKey, statement, Buffer.from(done.result.worker_signature, "base64"))).toBe(true);

    s.registryTakesReceipts = true;
    const approved = await s.call("task_approve", { id: t.id, reason: "good" });
    expect(approved.verdict).toMatchObject({ outcome: "accepted", reason: "good" });
    await until(() => s.receipts.length === 1, 3000, "the submitter's receipt");
    // The worker learns the verdict; its registry is down: the receipt waits and is retried.
    const judged = await until(async () => {
      const x = await show(w, t.id);
      return x.verdict ? x : null;
    });
    expect(judged.verdict).toMatchObject({ outcome: "accepted", receipt: "pending" });
    expect(judged.verdict.receipt_error).toContain("the registry did not answer");
    expect(w.seen("task.verdict")[0]!.data).toMatchObject({ id: t.id, outcome: "accepted" });
    w.registryTakesReceipts = true;
    await until(() => w.receipts.length === 1, 3000, "the worker's receipt");
    await until(async () => (await show(w, t.id)).verdict.receipt === "submitted");

    // Both hand in the same receipt, signed by both, well formed.
    const [rs, rw] = [s.receipts[0]!, w.receipts[0]!];
    expect(rw).toEqual(rs);
    expect(checkReceiptFields(rs)).toBeNull();
    expect(rs).toMatchObject({ taskId: t.id, submitter: s.id, worker: w.id, outcome: "accepted" });
    expect(verifySignature(w.identity.publicKey, resultStatementBytes(rs), rs.workerSignature)).toBe(true);
    expect(verifySignature(s.identity.publicKey, verdictStatementBytes(rs), rs.submitterSignature)).toBe(true);
    // A second verdict is refused.
    await expect(s.call("task_reject", { id: t.id })).rejects.toMatchObject({ code: "invalid_state" });
  });

  test("decline, and a failed result the submitter rejects", async () => {
    const a = await s.call("task_submit", { target: "work", task: "one" });
    await until(() => w.call("task_show", { id: a.id }).catch(() => null));
    await w.call("task_decline", { id: a.id, reason: "not my field" });
    const declined = await until(async () => {
      const x = await show(s, a.id);
      return x.state === "declined" ? x : null;
    });
    expect(declined.reason).toBe("not my field");
    await expect(w.call("task_start", { id: a.id })).rejects.toMatchObject({ code: "invalid_state" });

    const b = await submitAndRun("two");
    await w.call("task_result", { id: b, text: "could not parse the file", failed: true });
    await until(async () => (await show(s, b)).state === "failed");
    const rejected = await s.call("task_reject", { id: b, reason: "no effort" });
    expect(rejected.verdict).toMatchObject({ outcome: "rejected", reason: "no effort" });
    await until(async () => (await show(w, b)).verdict?.outcome === "rejected");
  });

  test("`result` straight from accepted reports running first; `start` with no id takes the oldest accepted", async () => {
    const ids: string[] = [];
    for (const n of [1, 2, 3]) ids.push((await s.call("task_submit", { target: "work", task: `task ${n}` })).id);
    await until(async () => (await w.call("task_queue")).count === 3);
    for (const id of [ids[2], ids[0], ids[1]]) await w.call("task_accept", { id });
    expect((await w.call("task_start", {})).id).toBe(ids[0]);
    expect((await w.call("task_start", {})).id).toBe(ids[1]);
    await w.call("task_result", { id: ids[2], text: "done" });
    await until(async () => (await show(s, ids[2]!)).state === "succeeded");
    const seen = s.seen("task.status").filter((e) => e.data.id === ids[2]).map((e) => e.data.state);
    expect(seen).toEqual(["queued", "accepted", "running", "succeeded"]);
    await expect(w.call("task_start", {})).rejects.toMatchObject({ code: "not_found" });
  });

  test("a file result and input up to the 4 MiB bound travel in chunks; larger ones are refused with a hint", async () => {
    const big = Buffer.alloc(TASK_LIMITS.payload, 7);
    big.write("start");
    const file = join(h.dir, "input.bin");
    writeFileSync(file, big);
    const t = await s.call("task_submit", { target: "work", task: "crunch", input_file: file, wait_ms: 5000 });
    expect(t).toMatchObject({ delivered: true, input: { size: TASK_LIMITS.payload, name: "input.bin" } });
    await w.call("task_accept", { id: t.id });
    const first = await w.call("task_read", { id: t.id, part: "input", offset: 0, length: 5 });
    expect(Buffer.from(first.data, "base64").toString()).toBe("start");
    const out = join(h.dir, "out.bin");
    writeFileSync(out, Buffer.alloc(3 * 1024 * 1024, 1));
    await w.call("task_result", { id: t.id, file: out });
    const done = await until(async () => {
      const x = await show(s, t.id);
      return x.state === "succeeded" ? x : null;
    }, 10_000);
    expect(done.result).toMatchObject({ kind: "file", size: 3 * 1024 * 1024, name: "out.bin", text: null });
    expect(existsSync(done.result.file)).toBe(true);

    writeFileSync(file, Buffer.alloc(TASK_LIMITS.payload + 1));
    const tooBig = await s.call("task_submit", { target: "work", task: "crunch", input_file: file }).catch((e) => e);
    expect(tooBig).toMatchObject({ code: "limit_exceeded" });
    expect(tooBig.hint).toContain("send-file");
  });
});

describe("without a directory (in memory)", () => {
  test("the whole lifecycle works with the store and payloads in memory", async () => {
    const ms = h.add("mem-s", 20, { persistent: false });
    const mw = h.add("mem-w", 21, { persistent: false });
    h.trust("mem-s", "mem-w");
    const t = await ms.call("task_submit", { target: "mem-w", task: "in memory", input_base64: Buffer.from("abc").toString("base64") });
    await mw.call("task_accept", { id: t.id });
    expect(Buffer.from((await mw.call("task_read", { id: t.id, part: "input" })).data, "base64").toString()).toBe("abc");
    expect((await mw.call("task_show", { id: t.id })).input.file).toBeNull();
    await mw.call("task_result", { id: t.id, text: "def" });
    const done = await until(async () => {
      const x = await ms.call("task_show", { id: t.id });
      return x.state === "succeeded" ? x : null;
    });
    expect(done.result).toMatchObject({ text: "def", file: null });
  });
});

describe("offline peers and restarts", () => {
  test("a worker that is offline gets the task when it comes back; both restart from disk", async () => {
    w.offline = true;
    const t = await s.call("task_submit", { target: "work", task: "later", wait_ms: 300 });
    expect(t).toMatchObject({ state: "queued", delivered: false, undelivered: 1 });
    expect((await show(s, t.id)).delivery_error).toContain("did not answer");
    // The submitter restarts while the task waits: the outbox is on disk.
    s.stop();
    s.start();
    w.offline = false;
    await until(() => w.call("task_show", { id: t.id }).catch(() => null), 5000, "delivery after the restart");
    await until(async () => (await show(s, t.id)).delivered);
    expect((await show(s, t.id)).undelivered).toBe(0);
  });

  test("an offline submitter learns the result when it returns (the worker retries, and the submitter polls)", async () => {
    const id = await submitAndRun();
    await until(async () => (await show(s, id)).state === "running");
    s.offline = true;
    s.stop();
    await w.call("task_result", { id, text: "finished while you were away" });
    await until(async () => (await show(w, id)).delivery_error !== null, 3000, "a failed delivery");
    expect((await show(w, id)).undelivered).toBe(1);
    s.offline = false;
    s.start();
    const got = await until(async () => {
      const x = await show(s, id);
      return x.state === "succeeded" ? x : null;
    }, 5000);
    expect(got.result.text).toBe("finished while you were away");
    await until(async () => (await show(w, id)).undelivered === 0, 3000, "the worker to see the acknowledgement");
  });

  test("a private submitter the worker cannot dial still gets its result: it polls", async () => {
    // The submitter is private and does not trust the worker: the worker can never dial it.
    s.private = true;
    s.trusted.delete(w.id);
    const id = await submitAndRun();
    await until(async () => (await show(s, id)).state === "running");
    await until(() => s.service!["courier"].linkCount(w.id) === 0, 3000, "the idle link to close");
    await w.call("task_result", { id, text: "polled" });
    const got = await until(async () => {
      const x = await show(s, id);
      return x.state === "succeeded" ? x : null;
    }, 5000, "the poll");
    expect(got.result.text).toBe("polled");
    expect(w.logs.some((l) => l.includes("does not trust you"))).toBe(true);
  });

  test("a worker restarted mid-task still has it running and completes it", async () => {
    const id = await submitAndRun("long job", "data");
    w.stop();
    w.start();
    const t = await show(w, id);
    expect(t).toMatchObject({ state: "running", input: { size: 4 } });
    expect(Buffer.from((await w.call("task_read", { id, part: "input" })).data, "base64").toString()).toBe("data");
    await w.call("task_result", { id, text: "done after restart" });
    await until(async () => (await show(s, id)).state === "succeeded");
  });

  test("partial payloads a crash left behind are removed at start", async () => {
    const blobs = join(w.dir!, "blobs");
    writeFileSync(join(blobs, "0123456789abcdef0123456789abcdef.part"), "partial");
    writeFileSync(join(blobs, "fedcba9876543210fedcba9876543210"), "orphan");
    w.stop();
    w.start();
    expect(readdirSync(blobs)).toEqual([]);
  });
});

describe("who may say what", () => {
  test("a result, an update or a verdict from a third node is refused as unknown", async () => {
    const id = await submitAndRun();
    // A stranger with no task here gets one answer, and the stream ends.
    const door = await rawLink(m, s);
    door.send({ type: "update", taskId: id, seq: 99, state: "declined", at: Date.now(), reason: "forged" });
    expect(await door.next()).toMatchObject({ type: "reply", code: ReplyCode.UnknownTask });
    await until(() => door.ended, 2000, "the stranger's stream to end");
    // A node the submitter trusts (so its stream is taken) still cannot speak for the worker.
    s.trusted.add(m.id);
    w.trusted.add(m.id);
    const link = await rawLink(m, s);
    const sig = m.identity.sign(resultStatementBytes({ taskId: id, submitter: s.id, worker: m.id, resultSha256: EMPTY_SHA256, deliveredAt: Date.now() }));
    link.send({ type: "result", taskId: id, seq: 99, outcome: "succeeded", deliveredAt: Date.now(), size: 0, sha256: EMPTY_SHA256, signature: sig, kind: "text", name: "" });
    expect(await link.next()).toMatchObject({ type: "reply", code: ReplyCode.UnknownTask });
    link.send({ type: "update", taskId: id, seq: 99, state: "declined", at: Date.now(), reason: "forged" });
    expect(await link.next()).toMatchObject({ type: "reply", code: ReplyCode.UnknownTask });
    // ... and a cancel sent to the worker in the submitter's name.
    const toWorker = await rawLink(m, w);
    toWorker.send({ type: "update", taskId: id, seq: 99, state: "cancelled", at: Date.now(), reason: "forged" });
    expect(await toWorker.next()).toMatchObject({ type: "reply", code: ReplyCode.UnknownTask });
    expect((await show(s, id)).state).toBe("running");
    expect((await show(w, id)).state).toBe("running");
  });

  test("a result signed by anyone but the worker is refused", async () => {
    const id = await submitAndRun();
    const link = await rawLink(w, s);
    const now = Date.now();
    const forged = m.identity.sign(resultStatementBytes({ taskId: id, submitter: s.id, worker: w.id, resultSha256: EMPTY_SHA256, deliveredAt: now }));
    link.send({ type: "result", taskId: id, seq: 50, outcome: "succeeded", deliveredAt: now, size: 0, sha256: EMPTY_SHA256, signature: forged, kind: "text", name: "" });
    expect(await link.next()).toMatchObject({ code: ReplyCode.BadSignature });
    // Signed for another task id (replayed) is just as bad.
    const other = w.identity.sign(resultStatementBytes({ taskId: "f".repeat(32), submitter: s.id, worker: w.id, resultSha256: EMPTY_SHA256, deliveredAt: now }));
    link.send({ type: "result", taskId: id, seq: 51, outcome: "succeeded", deliveredAt: now, size: 0, sha256: EMPTY_SHA256, signature: other, kind: "text", name: "" });
    expect(await link.next()).toMatchObject({ code: ReplyCode.BadSignature });
    expect((await show(s, id)).state).toBe("running");
  });

  test("a payload that does not match its hash is refused and not kept", async () => {
    const id = await submitAndRun();
    const link = await rawLink(w, s);
    const now = Date.now();
    const sha = "00".repeat(32);
    const sig = w.identity.sign(resultStatementBytes({ taskId: id, submitter: s.id, worker: w.id, resultSha256: sha, deliveredAt: now }));
    link.send({ type: "result", taskId: id, seq: 60, outcome: "succeeded", deliveredAt: now, size: 3, sha256: sha, signature: sig, kind: "text", name: "" });
    expect(await link.next()).toMatchObject({ code: ReplyCode.Ready });
    link.send({ type: "data", bytes: new Uint8Array([1, 2, 3]) });
    expect(await link.next()).toMatchObject({ code: ReplyCode.HashMismatch });
    expect(readdirSync(join(s.dir!, "blobs"))).toEqual([]);
  });

  test("protocol violations close the stream; nothing throws", async () => {
    w.open = true;
    const link = await rawLink(m, w);
    link.sendRaw(new Uint8Array([1, 0x42, 0, 0]));
    await until(() => link.closed, 2000, "the stream to close");
    const link2 = await rawLink(m, w);
    link2.send({ type: "data", bytes: new Uint8Array([1]) });
    await until(() => link2.closed, 2000, "the stream to close");
    const link3 = await rawLink(m, w);
    link3.send({ type: "reply", code: ReplyCode.Ok, state: null, message: "" });
    await until(() => link3.closed, 2000, "the stream to close");
    expect(w.service!.counters.violations).toBe(3);
  });

  test("a stranger's task is refused unless the node opens the service; a minimum score applies to strangers", async () => {
    const refused = await m.call("task_submit", { target: "work", task: "let me in" }).catch((e) => e);
    expect(refused).toMatchObject({ code: "not_trusted" });
    expect(refused.message).toContain("only from nodes it trusts");
    expect((await m.call("task_list")).total).toBe(0); // a refusal leaves nothing behind
    expect((await w.call("task_list")).total).toBe(0);

    w.open = true;
    const ok = await m.call("task_submit", { target: "work", task: "now open" });
    expect(ok.delivered).toBe(true);

    w.stop();
    w.start({ limits: { minScore: 5 } });
    m.score = 3;
    const low = await m.call("task_submit", { target: "work", task: "low score" }).catch((e) => e);
    expect(low).toMatchObject({ code: "unauthorized" });
    expect(low.message).toContain("below the 5");
    m.score = 7;
    expect((await m.call("task_submit", { target: "work", task: "good score" })).delivered).toBe(true);
    // Trusted submitters need no score.
    s.score = 0;
    expect((await s.call("task_submit", { target: "work", task: "trusted" })).delivered).toBe(true);
    // Without a way to read scores, a minimum refuses strangers (fail closed).
    w.stop();
    w.reputationHook = false;
    w.start({ limits: { minScore: 5 } });
    expect(await m.call("task_submit", { target: "work", task: "no hook" }).catch((e) => e.code)).toBe("unauthorized");
  });

  test("quotas: per submitter, strangers together, and in all", async () => {
    w.stop();
    w.start({ limits: { maxActivePerPeer: 2, maxActiveStrangers: 3, maxActiveTotal: 4 } });
    for (const n of [1, 2]) await s.call("task_submit", { target: "work", task: `t${n}` });
    const over = await s.call("task_submit", { target: "work", task: "t3" }).catch((e) => e);
    expect(over).toMatchObject({ code: "limit_exceeded" });
    expect(over.message).toContain("limit per submitter is 2");
    // A finished task frees its slot.
    const first = (await w.call("task_list")).tasks.at(-1).id;
    await w.call("task_decline", { id: first });
    await s.call("task_submit", { target: "work", task: "t4" });

    w.open = true;
    const strangers = [m, h.add("s2", 13), h.add("s3", 14)];
    await strangers[0]!.call("task_submit", { target: "work", task: "x" });
    await strangers[1]!.call("task_submit", { target: "work", task: "y" });
    // 4 unfinished in all now (2 trusted + 2 strangers): the daemon-wide bound.
    expect(await strangers[2]!.call("task_submit", { target: "work", task: "z" }).catch((e) => e.message)).toContain("unfinished tasks, its limit");
  });

  test("random and mutated frames from a peer never hurt the service", async () => {
    const { mutate, randomBytes, seededRandom } = await import("../../support/fuzz.ts");
    const rand = seededRandom(5);
    const id = await submitAndRun();
    const seeds = [
      encodeTaskMessage({ type: "update", taskId: id, seq: 50, state: "cancelled", at: 1, reason: "x" }),
      encodeTaskMessage({ type: "submit", taskId: "ab".repeat(16), acceptWithinMs: 1000, deadlineMs: 2000, inputSize: 3, inputSha256: "00".repeat(32), inputName: "n", description: "d" }),
      encodeTaskMessage({ type: "data", bytes: new Uint8Array([1, 2, 3]) }),
    ];
    for (let round = 0; round < 30; round++) {
      const link = await rawLink(s, w);
      for (let i = 0; i < 10 && !link.closed; i++) link.sendRaw(rand() < 0.7 ? mutate(rand, seeds[Math.floor(rand() * seeds.length)]!) : randomBytes(rand, Math.floor(rand() * 80)));
      await Bun.sleep(5);
      link.close();
    }
    // Still serving, with the task as the rules allow it to be.
    expect(["running", "cancelled"]).toContain((await show(w, id)).state);
    const t = await s.call("task_submit", { target: "work", task: "after the noise" });
    expect(t.delivered).toBe(true);
  });

  test("streams and uploads in progress are bounded per peer", async () => {
    w.open = true;
    const links: Awaited<ReturnType<typeof rawLink>>[] = [];
    for (let i = 0; i < 5; i++) links.push(await rawLink(m, w));
    await until(() => links.filter((l) => l.closed).length === 1, 2000, "the fifth stream to be refused");
    expect(links[4]!.closed).toBe(true);
    // Two uploads at once from one peer; the third is told to come back later.
    const submit = (l: (typeof links)[number], n: number) =>
      l.send({ type: "submit", taskId: n.toString(16).padStart(32, "0"), acceptWithinMs: 60_000, deadlineMs: 60_000, inputSize: 10, inputSha256: "00".repeat(32), inputName: "", description: `upload ${n}` });
    submit(links[0]!, 1);
    expect(await links[0]!.next()).toMatchObject({ code: ReplyCode.Ready });
    submit(links[1]!, 2);
    expect(await links[1]!.next()).toMatchObject({ code: ReplyCode.Ready });
    submit(links[2]!, 3);
    expect(await links[2]!.next()).toMatchObject({ code: ReplyCode.Busy });
    // An upload whose stream dies is forgotten: its slot and its partial file go.
    links[0]!.close();
    await until(async () => {
      submit(links[3]!, 4);
      const r = await links[3]!.next();
      return r && (r as any).code === ReplyCode.Ready;
    }, 3000, "the slot to free");
    expect(readdirSync(join(w.dir!, "blobs")).filter((f) => !f.endsWith(".part"))).toEqual([]);
    // An upload that stops moving is cut after the stall time (1 s here).
    await until(() => links[1]!.closed, 4000, "the stalled upload to be cut");
  });

  test("ids are validated before use; nothing the peer sends names a file", async () => {
    for (const bad of ["../../etc/passwd", "abc", "g".repeat(32), "a".repeat(33), 42]) {
      await expect(w.call("task_show", { id: bad })).rejects.toMatchObject({ code: "invalid_argument" });
    }
    const t = await s.call("task_submit", { target: "work", task: "named", input_base64: Buffer.from("x").toString("base64"), input_name: "../../../../tmp/evil" });
    const got = await until(() => w.call("task_show", { id: t.id }).catch(() => null));
    expect(got.input.name).toBe("../../../../tmp/evil"); // a label only
    expect(got.input.file.startsWith(join(w.dir!, "blobs") + "/")).toBe(true);
    expect(got.input.file).not.toContain("evil");
  });
});

describe("time, cancel and duplicates", () => {
  test("a task not accepted in time expires on both sides", async () => {
    const t = await s.call("task_submit", { target: "work", task: "quick", accept_within_ms: 1000, deadline_ms: 60_000 });
    await until(async () => (await show(w, t.id)).state === "expired", 4000);
    const mine = await until(async () => {
      const x = await show(s, t.id);
      return x.state === "expired" ? x : null;
    }, 4000);
    expect(mine).toMatchObject({ provisional: false, reason: "not accepted in time" });
    await expect(w.call("task_accept", { id: t.id })).rejects.toMatchObject({ code: "invalid_state" });
  });

  test("a running task past its deadline expires; a late result is refused", async () => {
    const t = await s.call("task_submit", { target: "work", task: "quick", accept_within_ms: 1000, deadline_ms: 1500 });
    await w.call("task_accept", { id: t.id });
    await w.call("task_start", { id: t.id });
    await until(async () => (await show(w, t.id)).state === "expired", 4000);
    await until(async () => (await show(s, t.id)).state === "expired", 4000);
    await expect(w.call("task_result", { id: t.id, text: "late" })).rejects.toMatchObject({ code: "invalid_state" });
  });

  test("a task that never reached its worker expires at the submitter alone", async () => {
    w.offline = true;
    const t = await s.call("task_submit", { target: "work", task: "nobody home", accept_within_ms: 1000, deadline_ms: 2000, wait_ms: 100 });
    const x = await until(async () => {
      const r = await show(s, t.id);
      return r.state === "expired" ? r : null;
    }, 4000);
    expect(x).toMatchObject({ provisional: false, undelivered: 0 });
    w.offline = false;
    await Bun.sleep(300);
    await expect(w.call("task_show", { id: t.id })).rejects.toMatchObject({ code: "not_found" });
  });

  test("cancel: the worker stops and both agree; a task never sent is cancelled on the spot", async () => {
    const id = await submitAndRun();
    // The answer waits (briefly) for the worker's acknowledgement: confirmed on the spot.
    const c = await s.call("task_cancel", { id, reason: "no longer needed" });
    expect(c).toMatchObject({ state: "cancelled", provisional: false, undelivered: 0 });
    // Without waiting, the cancel is provisional until the worker confirms it.
    const id2 = await submitAndRun();
    expect(await s.call("task_cancel", { id: id2, wait_ms: 0 })).toMatchObject({ state: "cancelled", provisional: true });
    await until(async () => (await show(s, id2)).provisional === false);
    await until(async () => (await show(w, id)).state === "cancelled");
    expect((await show(w, id)).reason).toBe("no longer needed");
    await until(async () => (await show(s, id)).provisional === false);
    await expect(w.call("task_result", { id, text: "too late" })).rejects.toMatchObject({ code: "invalid_state" });

    w.offline = true;
    await Bun.sleep(50); // the cut reaches both ends
    const t = await s.call("task_submit", { target: "work", task: "never sent", wait_ms: 50 });
    // (the first attempt failed, so it was never sent)
    const n = await s.call("task_cancel", { id: t.id });
    expect(n).toMatchObject({ state: "cancelled", provisional: false, delivered: false, undelivered: 0 });
    w.offline = false;
    await Bun.sleep(300);
    await expect(w.call("task_show", { id: t.id })).rejects.toMatchObject({ code: "not_found" });
  });

  test("a cancel that crosses the worker's result: the worker's end wins on both sides", async () => {
    const id = await submitAndRun();
    s.offline = true; // the result cannot reach the submitter yet
    await w.call("task_result", { id, text: "done first" });
    s.offline = false;
    w.offline = true; // and the cancel cannot reach the worker yet
    const c = await s.call("task_cancel", { id });
    expect(c).toMatchObject({ state: "cancelled", provisional: true });
    w.offline = false;
    const final = await until(async () => {
      const x = await show(s, id);
      return x.state === "succeeded" ? x : null;
    }, 5000);
    expect(final).toMatchObject({ provisional: false, result: { text: "done first" } });
    expect((await show(w, id)).state).toBe("succeeded");
  });

  test("duplicates are applied once (a replayed update, a re-sent submission)", async () => {
    const id = await submitAndRun();
    const link = await rawLink(s, w);
    link.send({ type: "update", taskId: id, seq: 1, state: "cancelled", at: Date.now(), reason: "replay of an old seq" });
    expect(await link.next()).toMatchObject({ code: ReplyCode.Duplicate, state: "running" });
    expect((await show(w, id)).state).toBe("running");
    const row = await show(s, id);
    link.send({ type: "submit", taskId: id, acceptWithinMs: 1000, deadlineMs: 2000, inputSize: 0, inputSha256: EMPTY_SHA256, inputName: "", description: row.description });
    expect(await link.next()).toMatchObject({ code: ReplyCode.Duplicate });
    // The same id from another node is refused.
    const other = await rawLink(m, w);
    w.open = true;
    other.send({ type: "submit", taskId: id, acceptWithinMs: 1000, deadlineMs: 2000, inputSize: 0, inputSha256: EMPTY_SHA256, inputName: "", description: "hijack" });
    expect(await other.next()).toMatchObject({ code: ReplyCode.AlreadyExists });
  });
});
