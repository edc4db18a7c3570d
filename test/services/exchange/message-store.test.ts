import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MESSAGE_OVERHEAD as O, MessageStore } from "../../../src/daemon/services/exchange/message-store.ts";

const A = "0:0000.0000.000A";
const B = "0:0000.0000.000B";
const bytes = (n: number) => new Uint8Array(n).fill(0x61);
const msg = (sender: string, id: string, n: number, now = 1000) => ({ sender, id, type: "text" as const, replyTo: null, data: bytes(n), now });

test("a re-delivery of (sender, id) is a duplicate, also after the message was cleared; another sender may reuse the id", () => {
  const s = MessageStore.open(null);
  const q = { peer: 100_000, total: 1_000_000 };
  expect(s.storeInbound(msg(A, "m1", 10), q)).toEqual({ stored: true, evicted: 0 });
  expect(s.storeInbound(msg(A, "m1", 10), q)).toEqual({ stored: false, duplicate: true });
  expect(s.storeInbound(msg(B, "m1", 10), q)).toEqual({ stored: true, evicted: 0 });
  expect(s.find("m1").map((r) => r.sender)).toEqual([A, B]);
  expect(s.clear({ from: A }, 2000)).toEqual({ cleared: 1, bytes: 10 });
  expect(s.storeInbound(msg(A, "m1", 10), q)).toEqual({ stored: false, duplicate: true });
  // Tombstones go after 30 days.
  s.prune(2000 + 31 * 24 * 3_600_000, 7 * 24 * 3_600_000);
  expect(s.storeInbound(msg(A, "m1", 10), q).stored).toBe(true);
});

test("over its quota a sender is refused; read messages are evicted oldest first to make room, unread never", () => {
  const s = MessageStore.open(null);
  // Each message costs at least O bytes: four small ones fill A's share exactly.
  const q = { peer: 4 * O, total: 5 * O };
  for (let i = 0; i < 4; i++) expect(s.storeInbound(msg(A, `a${i}`, 25, i), q).stored).toBe(true);
  expect(s.storeInbound(msg(A, "a4", 1), q)).toEqual({ stored: false, duplicate: false, scope: "peer" });
  // Read the two oldest: now they may go.
  for (const r of s.list({ from: A, limit: 10 }).rows.filter((r) => r.id === "a0" || r.id === "a1")) s.markRead(r.seq, 10);
  expect(s.storeInbound(msg(A, "a4", 1500), q)).toEqual({ stored: true, evicted: 2 });
  expect(s.list({ from: A }).rows.map((r) => r.id).sort()).toEqual(["a2", "a3", "a4"]);
  // The total: B fits in what is left, then not.
  expect(s.storeInbound(msg(B, "b0", 70), q)).toEqual({ stored: true, evicted: 0 });
  expect(s.storeInbound(msg(B, "b1", 1), q)).toEqual({ stored: false, duplicate: false, scope: "total" });
});

test("messages still arriving (reservations) count against the quota", () => {
  const s = MessageStore.open(null);
  const q = { peer: 2 * O, total: 10 * O };
  expect(s.storeInbound(msg(A, "r0", 10), q).stored).toBe(true);
  expect(s.storeInbound(msg(A, "r1", 10), q, { peer: O, total: O })).toEqual({ stored: false, duplicate: false, scope: "peer" });
  expect(s.storeInbound(msg(A, "r1", 10), q).stored).toBe(true);
});

test("the outbox keeps queued messages until delivered or failed, and survives reopening", () => {
  const dir = mkdtempSync(join(tmpdir(), "pilot-msgstore-"));
  try {
    let s = MessageStore.open(join(dir, "m.db"));
    s.enqueue({ id: "o1", target: B, type: "json", replyTo: null, data: bytes(5), now: 100 });
    s.enqueue({ id: "o2", target: B, type: "text", replyTo: "x", data: bytes(7), now: 101 });
    s.close();
    s = MessageStore.open(join(dir, "m.db"));
    expect(s.queuedTargets()).toEqual([B]);
    expect(s.outboxCost(B)).toBe(2 * O);
    expect(s.due(B, 200, 10).map((r) => r.id)).toEqual(["o1", "o2"]);
    s.attemptFailed("o1", { code: "unreachable", message: "offline" }, 5000);
    expect(s.due(B, 200, 10).map((r) => r.id)).toEqual(["o2"]);
    expect(s.nextDue(B)).toBe(101);
    s.delivered("o2", 300);
    expect(s.outboxData("o2").length).toBe(0);
    expect(s.outboxEntry("o1")).toMatchObject({ state: "queued", attempts: 1, error_code: "unreachable" });
    // Past its time to live a queued message fails.
    expect(s.prune(100 + 8 * 24 * 3_600_000, 7 * 24 * 3_600_000)).toEqual(["o1"]);
    expect(s.outboxEntry("o1")).toMatchObject({ state: "failed", error_code: "timeout" });
    expect(s.outboxList(10)).toMatchObject({ queued: 0, failed: 1 });
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("empty messages cost something: a peer cannot fill the store with rows", () => {
  const s = MessageStore.open(null);
  const q = { peer: 10 * O, total: 100 * O };
  for (let i = 0; i < 10; i++) expect(s.storeInbound(msg(A, `e${i}`, 0), q).stored).toBe(true);
  expect(s.storeInbound(msg(A, "e10", 0), q)).toEqual({ stored: false, duplicate: false, scope: "peer" });
});
