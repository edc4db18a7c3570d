/**
 * The lifecycle function, exhaustively: every role x state x flag x event,
 * against a table written out independently of the implementation.
 */
import { describe, expect, test } from "bun:test";
import { TASK_STATES, type TaskState } from "../../../src/protocol/tasks.ts";
import { expiryDue, nextExpiry, transition, verdictAllowed, type Position, type TaskEvent } from "../../../src/daemon/services/tasks/lifecycle.ts";

const FINAL = new Set<TaskState>(["declined", "succeeded", "failed", "cancelled", "expired"]);
const ACTIVE: TaskState[] = ["queued", "accepted", "running"];

const EVENTS: TaskEvent[] = [
  { kind: "accept" },
  { kind: "decline" },
  { kind: "start" },
  { kind: "finish", outcome: "succeeded" },
  { kind: "finish", outcome: "failed" },
  { kind: "cancel" },
  { kind: "expire" },
  ...TASK_STATES.map((state) => ({ kind: "reported", state }) as TaskEvent),
];

/** What must happen: a target [state, provisional, changed], or null for refused. */
function expected(p: Position, e: TaskEvent): [TaskState, boolean, boolean] | null {
  const s = p.state;
  if (p.role === "received") {
    switch (e.kind) {
      case "accept":
        return s === "queued" ? ["accepted", false, true] : null;
      case "decline":
        return s === "queued" ? ["declined", false, true] : null;
      case "start":
        return s === "accepted" ? ["running", false, true] : null;
      case "finish":
        return s === "running" ? [e.outcome, false, true] : null;
      case "cancel":
        return ACTIVE.includes(s) ? ["cancelled", false, true] : null;
      case "expire":
        return ACTIVE.includes(s) ? ["expired", false, true] : null;
      case "reported":
        return null;
    }
  }
  switch (e.kind) {
    case "accept":
    case "decline":
    case "start":
    case "finish":
      return null;
    case "cancel":
      return ACTIVE.includes(s) ? ["cancelled", p.sent, true] : null;
    case "expire":
      return ACTIVE.includes(s) ? ["expired", p.sent, true] : null;
    case "reported": {
      const r = e.state;
      if (r === "queued") return null;
      if (FINAL.has(s)) {
        if (r === s) return [s, false, p.provisional];
        if (p.provisional) return FINAL.has(r) ? [r, false, true] : [s, true, false];
        return null;
      }
      const order: TaskState[] = ["queued", "accepted", "running"];
      if (r === s) return [s, false, false];
      if (FINAL.has(r)) return r === "declined" && s !== "queued" ? null : [r, false, true];
      return order.indexOf(r) > order.indexOf(s) ? [r, false, true] : null;
    }
  }
}

describe("task lifecycle", () => {
  test("every role, state, flag and event does what the table says", () => {
    let cases = 0;
    for (const role of ["received", "submitted"] as const) {
      for (const state of TASK_STATES) {
        for (const provisional of [false, true]) {
          // Only a submitter's final state can be provisional.
          if (provisional && (role === "received" || !FINAL.has(state))) continue;
          for (const sent of [false, true]) {
            if (provisional && !sent) continue;
            const p: Position = { role, state, provisional, sent };
            for (const e of EVENTS) {
              const want = expected(p, e);
              const got = transition(p, e);
              cases++;
              if (want === null) {
                expect({ p, e, ok: got.ok }).toEqual({ p, e, ok: false });
                if (!got.ok) expect(got.reason.length).toBeGreaterThan(5);
              } else {
                expect({ p, e, got }).toEqual({ p, e, got: { ok: true, state: want[0], provisional: want[1], changed: want[2] } });
              }
            }
          }
        }
      }
    }
    expect(cases).toBeGreaterThan(300);
  });

  test("final states are final, except a submitter's own unconfirmed end", () => {
    for (const state of FINAL) {
      for (const e of EVENTS) {
        const worker = transition({ role: "received", state, provisional: false, sent: true }, e);
        expect(worker.ok).toBe(false);
        const settled = transition({ role: "submitted", state, provisional: false, sent: true }, e);
        if (settled.ok) expect(settled).toEqual({ ok: true, state, provisional: false, changed: false });
      }
    }
  });

  test("the two ends converge whatever order a cancel and the worker's end meet in", () => {
    // The worker finishes; the submitter cancels before hearing of it.
    let s = transition({ role: "submitted", state: "running", provisional: false, sent: true }, { kind: "cancel" });
    expect(s).toMatchObject({ ok: true, state: "cancelled", provisional: true });
    const w = transition({ role: "received", state: "succeeded", provisional: false, sent: true }, { kind: "cancel" });
    expect(w.ok).toBe(false); // the worker refuses the late cancel ...
    s = transition({ role: "submitted", state: "cancelled", provisional: true, sent: true }, { kind: "reported", state: "succeeded" });
    expect(s).toMatchObject({ ok: true, state: "succeeded", provisional: false }); // ... and its end wins at the submitter
    // The cancel arrives first: the worker confirms with its own "cancelled".
    const w2 = transition({ role: "received", state: "running", provisional: false, sent: true }, { kind: "cancel" });
    expect(w2).toMatchObject({ ok: true, state: "cancelled" });
    s = transition({ role: "submitted", state: "cancelled", provisional: true, sent: true }, { kind: "reported", state: "cancelled" });
    expect(s).toMatchObject({ ok: true, state: "cancelled", provisional: false, changed: true });
  });

  test("expiry: the worker by its deadlines, the submitter later for a task it sent", () => {
    const d = { acceptBy: 1000, deadlineAt: 5000 };
    const worker = (state: TaskState): Position => ({ role: "received", state, provisional: false, sent: true });
    const submitter = (state: TaskState, sent: boolean): Position => ({ role: "submitted", state, provisional: false, sent });
    expect(expiryDue(worker("queued"), d, 999, 100)).toBe(false);
    expect(expiryDue(worker("queued"), d, 1000, 100)).toBe(true);
    expect(expiryDue(worker("accepted"), d, 4999, 100)).toBe(false);
    expect(expiryDue(worker("running"), d, 5000, 100)).toBe(true);
    expect(expiryDue(worker("succeeded"), d, 1e12, 100)).toBe(false);
    expect(expiryDue(submitter("queued", false), d, 1000, 100)).toBe(true);
    expect(expiryDue(submitter("queued", true), d, 1099, 100)).toBe(false);
    expect(expiryDue(submitter("queued", true), d, 1100, 100)).toBe(true);
    expect(expiryDue(submitter("running", true), d, 5099, 100)).toBe(false);
    expect(nextExpiry(worker("queued"), d, 100)).toBe(1000);
    expect(nextExpiry(worker("running"), d, 100)).toBe(5000);
    expect(nextExpiry(submitter("running", true), d, 100)).toBe(5100);
    expect(nextExpiry(worker("failed"), d, 100)).toBeNull();
  });

  test("a verdict needs a delivered result, once, from the submitter", () => {
    const p = (state: TaskState, role: "submitted" | "received" = "submitted"): Position => ({ role, state, provisional: false, sent: true });
    expect(verdictAllowed(p("succeeded"), true, null)).toBeNull();
    expect(verdictAllowed(p("failed"), true, null)).toBeNull();
    expect(verdictAllowed(p("succeeded"), true, "accepted")).toContain("already");
    expect(verdictAllowed(p("running"), false, null)).toContain("no result");
    expect(verdictAllowed(p("succeeded", "received"), true, null)).toContain("submitter");
    expect(verdictAllowed({ role: "submitted", state: "cancelled", provisional: true, sent: true }, false, null)).toContain("not yet confirmed");
  });
});
