/**
 * Tasks between real daemons (real processes, UDP tunnels on 127.0.0.1, the
 * real CLI): the whole lifecycle up to the worker's score, the task.* event
 * feed, results as a file or a failure, an offline submitter, a worker killed
 * mid-task, a forged result, a stranger (and a minimum score), a quota,
 * expiry, cancel, how executors are found, and the README's example word for
 * word (two more nodes, agent-a and agent-b, started for it).
 *
 *   a: submitter (private; trusts b, c and w)
 *   b: worker (public; trusts a and c; tags nlp)
 *   c: a third node trusted by a and b (it tries to forge b's result to a)
 *   d: a stranger (trusts nobody)
 *   w: a second worker (w restarts with --open-services tasks later)
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startCluster, runPilot, type Cluster } from "../../support/cluster.ts";
import { createHash } from "node:crypto";
import { connect, type LocalEvent, type TaskEvent } from "../../../src/driver/index.ts";
import { decodeTaskMessage, encodeTaskMessage, EMPTY_SHA256, ReplyCode } from "../../../src/protocol/tasks.ts";
import { resultStatementBytes } from "../../../src/protocol/receipt.ts";
import { generateIdentity, loadOrCreateIdentity } from "../../../src/crypto/identity.ts";
import { RegistryClient } from "../../../src/registry/client.ts";
import { DAY, seedNodes, signedReceipt } from "../../reputation/helpers.ts";

let c: Cluster;

beforeAll(async () => {
  // Submitters check on their workers every 2 s here (30 s by default), so polling shows within a test's time.
  process.env.PILOT_TASKS_POLL_MS = "2000";
  c = await startCluster({
    daemons: [
      { name: "a", hostname: "task-a" },
      { name: "b", hostname: "task-b", public: true, tags: ["nlp"] },
      { name: "c", hostname: "task-c" },
      { name: "d", hostname: "task-d" },
      { name: "w", hostname: "task-w", public: true },
    ],
  });
  await c.trust("a", "b");
  await c.trust("a", "c");
  await c.trust("b", "c");
  await c.trust("a", "w");
}, 120_000);

afterAll(async () => {
  delete process.env.PILOT_TASKS_POLL_MS;
  await c?.stop();
});

async function ok(name: string, args: string[], options: { timeoutMs?: number } = {}): Promise<any> {
  const r = await c.pilot(name, args, options);
  if (r.code !== 0) throw new Error(`pilot ${args.join(" ")} on ${name} exited ${r.code}: ${r.stderr || r.stdout}`);
  return r.json.data;
}

async function until<T>(fn: () => Promise<T>, ms = 20_000, what = "condition"): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
      last = v;
    } catch (e) {
      last = e;
    }
    await Bun.sleep(200);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

const show = async (name: string, id: string) => (await ok(name, ["task", "show", id])).task;
const stateIs = (name: string, id: string, state: string) => until(async () => {
  const t = await show(name, id);
  return t.state === state && !t.provisional ? t : null;
}, 30_000, `${name} to see ${id.slice(0, 8)} ${state}`);

describe("two daemons, the whole lifecycle", () => {
  test("submit with an input -> accept -> start -> result -> approve; both sides see every step", async () => {
    // The worker has no receipts yet: its score is 0 (100 * P / (P + 2N + 5) with P = N = 0).
    const before = await ok("a", ["reputation", "task-b"]);
    expect(before).toMatchObject({ polo_score: 0, receipts: { accepted: 0, rejected: 0 } });
    const input = join(c.dir, "report.txt");
    writeFileSync(input, "Q3 revenue grew 12%.\nCosts fell.\n");
    const sub = await ok("a", ["task", "submit", "task-b", "--task", "summarize the report", "--input", input, "--deadline", "1h"]);
    const id: string = sub.task.id;
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(sub.task).toMatchObject({ role: "submitted", state: "queued", delivered: true, input: { name: "report.txt", size: 33 } });

    const queue = await ok("b", ["task", "queue"]);
    expect(queue.queue.map((t: any) => t.id)).toContain(id);
    const got = queue.queue.find((t: any) => t.id === id);
    expect(got).toMatchObject({ state: "queued", peer: c.daemon("a").address, description: "summarize the report" });

    await ok("b", ["task", "accept", id.slice(0, 10)]);
    await stateIs("a", id, "accepted");
    const started = await ok("b", ["task", "start"]);
    expect(started.task).toMatchObject({ id, state: "running" });
    const saved = join(c.dir, "input-copy.txt");
    const withInput = await ok("b", ["task", "show", id, "--save-input", saved]);
    expect(withInput.saved[0]).toMatchObject({ part: "input", bytes: 33 });
    await stateIs("a", id, "running");

    await ok("b", ["task", "result", id, "--text", "Revenue up 12%, costs down."]);
    const done = await stateIs("a", id, "succeeded");
    expect(done.result).toMatchObject({ outcome: "succeeded", kind: "text", text: "Revenue up 12%, costs down." });

    const text = await c.pilot("a", ["task", "show", id], { json: false });
    expect(text.stdout).toContain("Revenue up 12%, costs down.");
    expect(text.stdout).toContain(`next: pilot task approve ${id.slice(0, 8)}`);

    const approved = await ok("a", ["task", "approve", id, "--reason", "clear and short"]);
    expect(approved.task.verdict).toMatchObject({ outcome: "accepted" });
    const judged = await until(async () => {
      const t = await show("b", id);
      return t.verdict ? t : null;
    }, 20_000, "the worker to learn the verdict");
    expect(judged.verdict).toMatchObject({ outcome: "accepted", reason: "clear and short" });
    // Both sides hand the receipt to the registry (stored once), and the worker's score moves.
    for (const side of ["a", "b"]) {
      await until(async () => (await show(side, id)).verdict.receipt === "submitted" || null, 20_000, `${side}'s receipt to reach the registry`);
    }
    // One fresh receipt does move the score (src/registry/reputation.ts): a, registered seconds ago
    // with no work of its own, weighs age 0.1 x standing 0.5 = 0.05, so P = 0.05 and
    // 100 * 0.05 / 5.05 = 0.99, which rounds to 1. These are the numbers the README shows.
    const rep = await until(async () => {
      const r = await ok("a", ["reputation", "task-b"]);
      return r.receipts.accepted >= 1 ? r : null;
    }, 20_000, "the registry to count the receipt");
    expect(rep).toMatchObject({
      node_id: c.daemon("b").nodeId,
      receipts: { accepted: 1, rejected: 0, counted_votes: 1, as_worker: 1 },
      counterparties: { total: 1, established: 0, newcomers: 1 },
      evidence: { negative: 0 },
    });
    expect(rep.evidence.positive).toBeCloseTo(0.05, 2);
    expect(rep.polo_score).toBe(1);
    expect(rep.polo_score).toBeGreaterThan(before.polo_score);
    const explained = await c.pilot("a", ["reputation", "task-b"], { json: false });
    expect(explained.stdout).toContain("  Polo score:    1  (0-100)\n");
    expect(explained.stdout).toContain("  Receipts:      1 accepted, 0 rejected in the last 52 weeks: 1 vote (a submitter counts once per week)\n");
    expect(explained.stdout).toContain("  Evidence:      P = 0.05, N = 0;  100 * P / (P + 2 * N + 5) = 1\n");
    // The worker sees the same score (it may always see itself).
    expect((await ok("b", ["reputation", "task-b"])).polo_score).toBe(1);
    expect((await ok("a", ["task", "list", "--submitted", "--status", "succeeded"])).tasks.map((t: any) => t.id)).toContain(id);
    expect((await ok("b", ["task", "list", "--received"])).tasks.map((t: any) => t.id)).toContain(id);
  }, 120_000);

  test("--wait follows the task to its end and prints the result", async () => {
    const waiter = runPilot(["task", "submit", "task-b", "--task", "say hello", "--wait", "--json"], { env: c.daemon("a").env, timeoutMs: 60_000 });
    const id = await until(async () => (await ok("b", ["task", "list", "--received", "--status", "queued"])).tasks.find((t: any) => t.description === "say hello")?.id as string | undefined);
    await ok("b", ["task", "accept", id]);
    await ok("b", ["task", "result", id, "--text", "hello"]);
    const r = await waiter;
    expect(r.code).toBe(0);
    expect(r.json.data.task).toMatchObject({ id, state: "succeeded", result: { text: "hello" } });

    const failing = runPilot(["task", "submit", "task-b", "--task", "impossible", "--wait", "--json"], { env: c.daemon("a").env, timeoutMs: 60_000 });
    const id2 = await until(async () => (await ok("b", ["task", "list", "--received", "--status", "queued"])).tasks.find((t: any) => t.description === "impossible")?.id as string | undefined);
    await ok("b", ["task", "decline", id2, "--reason", "cannot be done"]);
    const f = await failing;
    expect(f.code).toBe(1);
    expect(f.json).toMatchObject({ status: "error", code: "task_failed" });
    expect(f.json.message).toContain("declined: cannot be done");
  }, 120_000);
});

describe("the event feed, and results as a file or a failure", () => {
  test("the worker's feed shows task.received and task.status; the submitter's task.status and task.result (SDK)", async () => {
    const submitter = await connect({ home: c.daemon("a").home });
    const worker = await connect({ home: c.daemon("b").home });
    const atA: TaskEvent[] = [];
    const atB: TaskEvent[] = [];
    const receivedByOn: TaskEvent<"task.received">[] = [];
    // on() subscribes first, so its subscription is in place once the feeds' (asked after it on the same connection) are.
    worker.on("task.received", (e) => receivedByOn.push(e as TaskEvent<"task.received">));
    const feedA = submitter.events({ types: ["task"] });
    const feedB = worker.events({ types: ["task.*"] });
    const pump = async (feed: AsyncIterable<LocalEvent>, into: TaskEvent[]) => {
      for await (const e of feed) into.push(e as TaskEvent);
    };
    const pumps = [pump(feedA, atA), pump(feedB, atB)];
    try {
      await Promise.all([feedA.ready, feedB.ready]);
      const id = (await ok("a", ["task", "submit", "task-b", "--task", "announce every step"])).task.id;
      await ok("b", ["task", "accept", id]);
      await ok("b", ["task", "start", id]);
      await ok("b", ["task", "result", id, "--text", "announced"]);
      await stateIs("a", id, "succeeded");
      const mine = (list: TaskEvent[]) => list.filter((e) => e.data.id === id);
      await until(async () => mine(atA).some((e) => e.type === "task.result") && mine(atA).some((e) => e.type === "task.status" && e.data.state === "succeeded"), 20_000, "the submitter's task.result and succeeded");
      await until(async () => receivedByOn.some((e) => e.data.id === id) && mine(atB).some((e) => e.type === "task.status" && e.data.state === "succeeded"), 20_000, "the worker's events");

      // The worker: the task arrived (from a, with its description), then every state it went through.
      const received = mine(atB).find((e): e is TaskEvent<"task.received"> => e.type === "task.received")!;
      expect(received.data).toMatchObject({ from: c.daemon("a").address, from_node_id: c.daemon("a").nodeId, description: "announce every step", input_size: 0 });
      expect(receivedByOn.find((e) => e.data.id === id)!.data).toEqual(received.data);
      const statusesAt = (list: TaskEvent[]) => mine(list).filter((e): e is TaskEvent<"task.status"> => e.type === "task.status");
      expect(statusesAt(atB).map((e) => [e.data.previous, e.data.state])).toEqual([
        [null, "queued"],
        ["queued", "accepted"],
        ["accepted", "running"],
        ["running", "succeeded"],
      ]);
      expect(statusesAt(atB).every((e) => e.data.role === "received" && e.data.peer === c.daemon("a").address)).toBe(true);
      expect(mine(atB).some((e) => e.type === "task.result")).toBe(false);

      // The submitter: its own view of each change, and the result.
      const states = statusesAt(atA).map((e) => e.data.state);
      expect(states[0]).toBe("queued");
      expect(states.at(-1)).toBe("succeeded");
      expect(states).toContain("accepted");
      expect(statusesAt(atA).every((e) => e.data.role === "submitted" && e.data.peer === c.daemon("b").address)).toBe(true);
      const result = mine(atA).find((e): e is TaskEvent<"task.result"> => e.type === "task.result")!;
      expect(result.data).toMatchObject({ from: c.daemon("b").address, outcome: "succeeded", kind: "text", size: 9, state: "succeeded" });
      expect(result.data.sha256).toBe(createHash("sha256").update("announced").digest("hex"));
      expect(mine(atA).some((e) => e.type === "task.received")).toBe(false);

      // The CLI reads the same feed: `pilot events --type task.result` on the submitter.
      const cli = await ok("a", ["events", "--type", "task.result"]);
      expect(cli.events.find((e: any) => e.data.id === id)).toMatchObject({ type: "task.result", data: result.data });
    } finally {
      await submitter.close();
      await worker.close();
      await Promise.allSettled(pumps);
    }
  }, 90_000);

  test("task result ID --file F delivers the file; --failed fails the task with its explanation", async () => {
    const out = join(c.dir, "summary.csv");
    const body = "quarter,revenue\nQ3,+12%\n";
    writeFileSync(out, body);
    const id = (await ok("a", ["task", "submit", "task-b", "--task", "tabulate"])).task.id;
    await ok("b", ["task", "accept", id]);
    await ok("b", ["task", "start", id]);
    const delivered = await ok("b", ["task", "result", id, "--file", out]);
    expect(delivered.task).toMatchObject({ state: "succeeded", result: { outcome: "succeeded", kind: "file", name: "summary.csv", size: body.length } });
    const done = await stateIs("a", id, "succeeded");
    expect(done.result).toMatchObject({ outcome: "succeeded", kind: "file", name: "summary.csv", size: body.length, sha256: createHash("sha256").update(body).digest("hex") });
    const copy = join(c.dir, "summary-received.csv");
    const saved = await ok("a", ["task", "show", id, "--save-result", copy]);
    expect(saved.saved[0]).toMatchObject({ part: "result", bytes: body.length });
    expect(await Bun.file(copy).text()).toBe(body);

    const id2 = (await ok("a", ["task", "submit", "task-b", "--task", "parse the PDF"])).task.id;
    await ok("b", ["task", "accept", id2]);
    await ok("b", ["task", "start", id2]);
    const failed = await ok("b", ["task", "result", id2, "--failed", "--text", "the input is not a PDF"]);
    expect(failed.task).toMatchObject({ state: "failed", result: { outcome: "failed", kind: "text" } });
    const seen = await stateIs("a", id2, "failed");
    expect(seen.result).toMatchObject({ outcome: "failed", kind: "text", text: "the input is not a PDF" });
    const text = await c.pilot("a", ["task", "show", id2], { json: false });
    expect(text.stdout).toContain("the input is not a PDF");
  }, 90_000);
});

describe("three daemons", () => {
  test("a gives b a task; b hands part of it to c; results flow back up, and verdicts down", async () => {
    const top = (await ok("a", ["task", "submit", "task-b", "--task", "write the report"])).task.id;
    await ok("b", ["task", "accept", top]);
    await ok("b", ["task", "start", top]);
    const sub = (await ok("b", ["task", "submit", "task-c", "--task", "draft section 2"])).task.id;
    await ok("c", ["task", "accept", sub]);
    await ok("c", ["task", "result", sub, "--text", "section 2: draft"]);
    const part = await stateIs("b", sub, "succeeded");
    await ok("b", ["task", "approve", sub]);
    await ok("b", ["task", "result", top, "--text", `report with ${part.result.text}`]);
    const done = await stateIs("a", top, "succeeded");
    expect(done.result.text).toBe("report with section 2: draft");
    await ok("a", ["task", "reject", top, "--reason", "section 1 missing"]);
    await until(async () => (await show("b", top)).verdict?.outcome === "rejected", 20_000, "b to learn a's verdict");
    await until(async () => (await show("c", sub)).verdict?.outcome === "accepted", 20_000, "c to learn b's verdict");
    // Each node sees only its own side of each task.
    await expect(show("c", top)).rejects.toThrow(/no task/);
    await expect(show("a", sub)).rejects.toThrow(/no task/);
  }, 90_000);

  test("the SDK: submit, wait, read the result, approve", async () => {
    const { TaskClient } = await import("../../../src/driver/index.ts");
    const submitter = await connect({ home: c.daemon("a").home });
    const worker = await connect({ home: c.daemon("c").home });
    try {
      const sa = new TaskClient(submitter);
      const sc = new TaskClient(worker);
      const big = Buffer.alloc(300 * 1024, "x"); // over the inline IPC size: goes through a private temp file
      const t = await sa.submit("task-c", { task: "count the x", input: big, inputName: "xs.txt", deadlineMs: 600_000 });
      expect(t).toMatchObject({ delivered: true, input: { size: big.length, name: "xs.txt" } });
      const waiting = sa.wait(t.id, { timeoutMs: 30_000 });
      const q = await sc.queue();
      expect(q.queue.find((x) => x.id === t.id)?.state).toBe("queued");
      await sc.accept(t.id);
      const job = await sc.start();
      expect(job.id).toBe(t.id);
      const input = await sc.read(t.id, "input");
      expect(input.length).toBe(big.length);
      await sc.result(t.id, { data: new TextEncoder().encode(String(input.filter((b) => b === 120).length)), name: "count.txt" });
      const done = await waiting;
      expect(done.state).toBe("succeeded");
      expect(new TextDecoder().decode(await sa.read(t.id, "result"))).toBe(String(big.length));
      const judged = await sa.approve(t.id);
      expect(judged.verdict?.outcome).toBe("accepted");
      await expect(sa.accept(t.id)).rejects.toMatchObject({ code: "invalid_state" });
    } finally {
      await submitter.close();
      await worker.close();
    }
  }, 60_000);
});

describe("peers come and go", () => {
  test("an offline submitter learns the result when it returns", async () => {
    const id = (await ok("a", ["task", "submit", "task-b", "--task", "work while I am away"])).task.id;
    await ok("b", ["task", "accept", id]);
    await ok("b", ["task", "start", id]);
    await stateIs("a", id, "running");
    await c.stopDaemon("a");
    const r = await ok("b", ["task", "result", id, "--text", "here it is"]);
    expect(r.task.state).toBe("succeeded");
    const pending = await until(async () => {
      const t = await show("b", id);
      return t.undelivered > 0 && t.delivery_error ? t : null;
    }, 30_000, "a failed delivery to the stopped submitter");
    expect(pending.delivery_error).toContain("not reached");
    await c.startDaemon({ name: "a", hostname: "task-a" });
    const back = await stateIs("a", id, "succeeded");
    expect(back.result.text).toBe("here it is");
    await until(async () => (await show("b", id)).undelivered === 0, 30_000, "the worker's outbox to empty");
  }, 120_000);

  test("a worker killed mid-task (kill -9) still has the task running after its restart, and completes it", async () => {
    const input = join(c.dir, "data.csv");
    writeFileSync(input, "a,b\n1,2\n");
    const id = (await ok("a", ["task", "submit", "task-b", "--task", "crunch", "--input", input])).task.id;
    await ok("b", ["task", "accept", id]);
    await ok("b", ["task", "start", id]);
    await stateIs("a", id, "running");
    process.kill(c.daemon("b").pid, "SIGKILL");
    await Bun.sleep(300);
    await c.startDaemon({ name: "b", hostname: "task-b", public: true, tags: ["nlp"] });
    const t = await show("b", id);
    expect(t).toMatchObject({ state: "running", input: { size: 8 } });
    const saved = join(c.dir, "data-after-restart.csv");
    await ok("b", ["task", "show", id, "--save-input", saved]);
    expect(await Bun.file(saved).text()).toBe("a,b\n1,2\n");
    await ok("b", ["task", "result", id, "--text", "sum: 3"]);
    const done = await stateIs("a", id, "succeeded");
    expect(done.result.text).toBe("sum: 3");
  }, 120_000);
});

describe("who may do what", () => {
  test("a result forged by a third node is refused; the task stays as it was", async () => {
    const id = (await ok("a", ["task", "submit", "task-b", "--task", "only b may answer"])).task.id;
    await ok("b", ["task", "accept", id]);
    await stateIs("a", id, "accepted");
    // c speaks the task protocol to a by hand: a RESULT for b's task, signed by a key of its choosing.
    const driver = await connect({ home: c.daemon("c").home });
    try {
      const socket = await driver.dial(c.daemon("a").address, 1003);
      const forger = generateIdentity();
      const now = Date.now();
      const sig = forger.sign(resultStatementBytes({ taskId: id, submitter: c.daemon("a").nodeId, worker: c.daemon("b").nodeId, resultSha256: EMPTY_SHA256, deliveredAt: now }));
      const frame = (body: Uint8Array) => {
        const out = Buffer.alloc(4 + body.length);
        out.writeUInt32BE(body.length);
        out.set(body, 4);
        return out;
      };
      const replies: any[] = [];
      let buf = Buffer.alloc(0);
      socket.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          const n = buf.readUInt32BE(0);
          const r = decodeTaskMessage(new Uint8Array(buf.subarray(4, 4 + n)));
          if (r.ok) replies.push(r.value);
          buf = buf.subarray(4 + n);
        }
      });
      // One request at a time: each waits for its reply (a second one before it would break the protocol).
      socket.write(frame(encodeTaskMessage({ type: "result", taskId: id, seq: 9, outcome: "succeeded", deliveredAt: now, size: 0, sha256: EMPTY_SHA256, signature: sig, kind: "text", name: "" })));
      await until(async () => replies.length >= 1, 10_000, "a's reply to the result");
      socket.write(frame(encodeTaskMessage({ type: "update", taskId: id, seq: 10, state: "declined", at: now, reason: "forged" })));
      await until(async () => replies.length >= 2, 10_000, "a's reply to the update");
      expect(replies[0]).toMatchObject({ type: "reply", code: ReplyCode.UnknownTask });
      expect(replies[1]).toMatchObject({ type: "reply", code: ReplyCode.UnknownTask });
      socket.destroy();
    } finally {
      await driver.close();
    }
    expect((await show("a", id)).state).toBe("accepted");
    await ok("a", ["task", "cancel", id]);
  }, 60_000);

  test("a stranger's task is refused unless the worker opens the service", async () => {
    const r = await c.pilot("d", ["task", "submit", "task-b", "--task", "let me in"]);
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ status: "error", code: "not_trusted" });
    expect(r.json.message).toContain("only from nodes it trusts");
    expect((await ok("d", ["task", "list"])).total).toBe(0);

    // w opens its task service to anyone (it is public).
    await c.stopDaemon("w");
    await c.startDaemon({ name: "w", hostname: "task-w", public: true, extraArgs: ["--open-services", "tasks"] });
    const sub = await ok("d", ["task", "submit", "task-w", "--task", "now you take it"]);
    expect(sub.task.delivered).toBe(true);
    // w cannot dial d (private, it does not trust w); d polls and still gets everything.
    await ok("w", ["task", "accept", sub.task.id]);
    await ok("w", ["task", "result", sub.task.id, "--text", "done for a stranger"]);
    const back = await stateIs("d", sub.task.id, "succeeded");
    expect(back.result.text).toBe("done for a stranger");

    // A minimum score (config, read live) applies to strangers. d earns a score of 33 first: five
    // customers registered 60 days ago from five networks accept its work (receipts signed by both,
    // as test/reputation/cli.test.ts seeds them). This happens before w ever reads d's score: w keeps
    // a score it read for a minute (node.ts reputationOf), and drops it only for a worker whose receipt
    // it submitted itself.
    const customers = Array.from({ length: 5 }, () => generateIdentity());
    const ids = seedNodes(
      join(c.dir, "rendezvous", "rendezvous", "registry.db"),
      customers.map((identity, i) => ({ identity, registeredAt: Date.now() - 60 * DAY, ip: `198.51.${100 + i}.30` })),
    );
    const dParty = { id: c.daemon("d").nodeId, identity: loadOrCreateIdentity(join(c.daemon("d").home, "identity.json")).identity };
    const [host, port] = c.registry.split(":");
    for (const [i, identity] of customers.entries()) {
      const client = await RegistryClient.connect({ host: host!, port: Number(port), signer: identity });
      try {
        expect((await client.register()).node_id).toBe(ids[i]!);
        expect((await client.submitReceipt(signedReceipt({ id: ids[i]!, identity }, dParty))).recorded).toBe(true);
      } finally {
        client.close();
      }
    }
    expect((await ok("d", ["reputation", "task-d"])).polo_score).toBe(33);
    // c is a stranger to w too, with a score of at most 1 (b's and a's approvals, both fresh nodes).
    const cScore = (await ok("c", ["reputation", "task-c"])).polo_score;
    expect(cScore).toBeLessThan(30);

    await runPilot(["config", "--set", "tasks_min_score=30"], { env: c.daemon("w").env });
    await Bun.sleep(1200); // the task service looks at its config file at most once a second
    const above = await ok("d", ["task", "submit", "task-w", "--task", "my score is 33"]);
    expect(above.task).toMatchObject({ delivered: true, state: "queued" });
    expect((await ok("w", ["task", "list", "--received", "--status", "queued"])).tasks.map((t: any) => t.id)).toContain(above.task.id);
    const below = await c.pilot("c", ["task", "submit", "task-w", "--task", "my score is low"]);
    expect(below.code).toBe(1);
    expect(below.json).toMatchObject({ status: "error", code: "unauthorized" });
    expect(below.json.message).toContain(`your score ${cScore} is below the 30 this node requires`);
    expect((await ok("c", ["task", "list", "--status", "queued"])).tasks.some((t: any) => t.description === "my score is low")).toBe(false);

    // Raised above d's score, the same stranger is refused.
    await runPilot(["config", "--set", "tasks_min_score=40"], { env: c.daemon("w").env });
    await Bun.sleep(1200);
    const low = await c.pilot("d", ["task", "submit", "task-w", "--task", "again"]);
    expect(low.code).toBe(1);
    expect(low.json.code).toBe("unauthorized");
    expect(low.json.message).toContain("your score 33 is below the 40 this node requires");
    // Trusted submitters need no score.
    expect((await ok("a", ["task", "submit", "task-w", "--task", "from a friend"])).task.delivered).toBe(true);
    await runPilot(["config", "--unset", "tasks_min_score"], { env: c.daemon("w").env });
  }, 120_000);

  test("over quota is refused (tasks_max_per_peer, applied without a restart)", async () => {
    const set = await runPilot(["config", "--set", "tasks_max_per_peer=2", "--json"], { env: c.daemon("b").env });
    expect(set.code).toBe(0);
    await Bun.sleep(1200);
    for (const n of [1, 2]) await ok("c", ["task", "submit", "task-b", "--task", `quota ${n}`]);
    const over = await c.pilot("c", ["task", "submit", "task-b", "--task", "quota 3"]);
    expect(over.code).toBe(1);
    expect(over.json).toMatchObject({ code: "limit_exceeded" });
    expect(over.json.message).toContain("limit per submitter is 2");
    await runPilot(["config", "--unset", "tasks_max_per_peer"], { env: c.daemon("b").env });
  }, 60_000);
});

describe("time and cancel", () => {
  test("a task not accepted within --accept-within expires on both sides", async () => {
    const id = (await ok("a", ["task", "submit", "task-b", "--task", "hurry", "--accept-within", "2s"])).task.id;
    const w = await stateIs("b", id, "expired");
    expect(w.reason).toBe("not accepted in time");
    await stateIs("a", id, "expired");
    const late = await c.pilot("b", ["task", "accept", id]);
    expect(late.code).toBe(1);
    expect(late.json.code).toBe("invalid_state");
  }, 60_000);

  test("cancel: the worker learns it and can no longer deliver", async () => {
    const id = (await ok("a", ["task", "submit", "task-b", "--task", "never mind"])).task.id;
    await ok("b", ["task", "accept", id]);
    await ok("b", ["task", "start", id]);
    const cancelled = await ok("a", ["task", "cancel", id, "--reason", "plans changed"]);
    expect(cancelled.task.state).toBe("cancelled");
    const w = await stateIs("b", id, "cancelled");
    expect(w.reason).toBe("plans changed");
    await stateIs("a", id, "cancelled");
    const late = await c.pilot("b", ["task", "result", id, "--text", "too late"]);
    expect(late.code).toBe(1);
    expect(late.json.code).toBe("invalid_state");
  }, 60_000);
});

describe("a node without the task service (--no-tasks)", () => {
  test("refuses to advertise tasks, and a submission to it fails at once", async () => {
    await c.startDaemon({ name: "x", hostname: "task-x", public: true, extraArgs: ["--no-tasks"] });
    const on = await c.pilot("x", ["set-tasks", "on"]);
    expect(on.code).toBe(2);
    expect(on.json.message).toContain("task service is off");
    const r = await c.pilot("a", ["task", "submit", "task-x", "--task", "anyone home?"]);
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("connection_refused");
    expect(r.json.hint).toContain("--no-tasks");
    expect((await ok("a", ["task", "list", "--status", "queued"])).tasks.some((t: any) => t.description === "anyone home?")).toBe(false);
  }, 60_000);
});

describe("finding executors", () => {
  test("set-tasks on advertises the tag; peers --search TAG --tasks finds it", async () => {
    const on = await ok("b", ["set-tasks", "on"]);
    expect(on).toEqual({ tasks: true, tags: ["nlp", "tasks"] });
    const found = await ok("a", ["peers", "--search", "nlp", "--tasks"]);
    expect(found.peers.map((p: any) => p.hostname)).toEqual(["task-b"]);
    expect(found.peers[0].polo_score).toBeNumber();
    const off = await ok("b", ["set-tasks", "off"]);
    expect(off).toEqual({ tasks: false, tags: ["nlp"] });
    expect((await ok("a", ["peers", "--search", "nlp", "--tasks"])).total).toBe(0);
  }, 60_000);
});

describe("the README's example, as written", () => {
  test("set-tasks on, peers --search tasks, submit -> queue -> accept -> start -> result -> show -> approve -> reputation", async () => {
    // Two fresh nodes named as in the README; a and b trust each other, as the README assumes.
    await c.startDaemon({ name: "agent-a", hostname: "agent-a" });
    await c.startDaemon({ name: "agent-b", hostname: "agent-b" });
    await c.trust("agent-a", "agent-b");
    const A = c.daemon("agent-a");
    const B = c.daemon("agent-b");
    const text = async (name: string, args: string[]) => {
      const r = await c.pilot(name, args, { json: false });
      if (r.code !== 0) throw new Error(`pilot ${args.join(" ")} on ${name} exited ${r.code}: ${r.stderr || r.stdout}`);
      return r.stdout;
    };
    const report = join(c.dir, "report.txt");
    writeFileSync(report, "Q3 revenue grew 12%.\nCosts fell.\n");

    // Each step's text output is what the README's comments show (ids, addresses and times aside).
    expect(await text("agent-b", ["set-tasks", "on"])).toContain("this node advertises that it takes tasks (tag #tasks)");
    expect(await text("agent-a", ["peers", "--search", "tasks"])).toMatch(new RegExp(`^${B.nodeId}\\s+${B.address}\\s+agent-b\\s+#tasks\\s+private\\s+yes\\s+0$`, "m"));
    const submitted = await text("agent-a", ["task", "submit", "agent-b", "--task", "summarize this report", "--input", report, "--deadline", "1h"]);
    expect(submitted).toMatch(new RegExp(`^task [0-9a-f]{32} delivered to ${B.address}: queued until it accepts$`, "m"));
    const short = /^task ([0-9a-f]{8})/.exec(submitted)![1]!;
    expect(await text("agent-b", ["task", "queue"])).toMatch(new RegExp(`^1\\s+${short}\\s+${A.address}\\s+queued\\s+.*summarize this report$`, "m"));
    expect(await text("agent-b", ["task", "accept", short])).toContain(`task ${short} accepted`);
    const started = await text("agent-b", ["task", "start"]);
    expect(started).toContain(`Task ${short}`);
    expect(started).toContain("State:     running");
    const inputPath = /Input:\s+report\.txt, 33 B\s+(\S+)/.exec(started)![1]!;
    expect(inputPath.startsWith(B.home)).toBe(true);
    expect(await Bun.file(inputPath).text()).toBe("Q3 revenue grew 12%.\nCosts fell.\n");
    expect(await text("agent-b", ["task", "result", short, "--text", "Revenue up 12%, costs down."])).toContain(`task ${short} succeeded: result delivered to ${A.address}`);
    const shown = await until(async () => {
      const out = await text("agent-a", ["task", "show", short]);
      return out.includes("State:     succeeded") ? out : null;
    }, 30_000, "agent-a to see the result");
    expect(shown).toContain("  Revenue up 12%, costs down.\n");
    expect(await text("agent-a", ["task", "approve", short])).toContain(`task ${short}: result accepted; ${B.address} is told`);
    // Both daemons hand the receipt in; the registry stores it once and counts it.
    await until(async () => (await ok("agent-a", ["reputation", "agent-b"])).receipts.accepted >= 1, 30_000, "the receipt to count");
    const reputation = await text("agent-a", ["reputation", "agent-b"]);
    expect(reputation).toStartWith(`agent-b  ${B.address}  (node ${B.nodeId})\n`);
    for (const line of [
      "  Polo score:    1  (0-100)",
      "  Receipts:      1 accepted, 0 rejected in the last 52 weeks: 1 vote (a submitter counts once per week)",
      "  Submitters:    1 (0 established, 1 newcomer), the established from 0 networks",
      "  Evidence:      P = 0.05, N = 0;  100 * P / (P + 2 * N + 5) = 1",
    ]) {
      expect(reputation).toContain(line + "\n");
    }
  }, 120_000);
});
