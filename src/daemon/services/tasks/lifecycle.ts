/**
 * A task's lifecycle as a pure function: which change an event makes, or why
 * it is refused. No clock, no storage; the service applies what this allows.
 *
 *   queued -> accepted | declined        the worker decides (or `expired` when it does not in time)
 *   accepted -> running                  the worker starts it
 *   running -> succeeded | failed        the worker delivers a result
 *   queued | accepted | running -> cancelled   the submitter withdraws it
 *   queued | accepted | running -> expired     not accepted within accept_within, or past the deadline
 *
 * The worker's view is the task's truth. The submitter mirrors it from the
 * worker's reports (`reported`), and may end its own copy first: a cancel, or
 * an expiry by its own clock while the worker is silent. Such an end is
 * *provisional* once the worker may know the task (the submission went out):
 * a final state the worker reached before it learnt of the cancel wins, and
 * both ends then agree (a worker that saw the cancel in time confirms it with
 * its own `cancelled`). A cancel or expiry of a task that never left this
 * node is final at once.
 */
import { FINAL_TASK_STATES, type TaskOutcome, type TaskState } from "../../../protocol/tasks.ts";

export type TaskRole = "submitted" | "received";

export interface Position {
  readonly role: TaskRole;
  readonly state: TaskState;
  /** Submitter only: its own final state the worker has not confirmed. */
  readonly provisional: boolean;
  /** Submitter only: the submission went out (the worker may know the task). */
  readonly sent: boolean;
}

export type TaskEvent =
  /** The worker takes the task. */
  | { readonly kind: "accept" }
  /** The worker refuses the task. */
  | { readonly kind: "decline" }
  /** The worker begins work. */
  | { readonly kind: "start" }
  /** The worker delivers its result. */
  | { readonly kind: "finish"; readonly outcome: TaskOutcome }
  /** The submitter withdraws the task (locally at the submitter, by message at the worker). */
  | { readonly kind: "cancel" }
  /** A deadline passed (by this node's clock; see `expiryDue`). */
  | { readonly kind: "expire" }
  /** At the submitter: the worker says its task is now in `state`. */
  | { readonly kind: "reported"; readonly state: TaskState };

export type Transition =
  | { readonly ok: true; readonly state: TaskState; readonly provisional: boolean; readonly changed: boolean }
  | { readonly ok: false; readonly reason: string };

const RANK: Record<TaskState, number> = { queued: 0, accepted: 1, running: 2, declined: 3, succeeded: 3, failed: 3, cancelled: 3, expired: 3 };

export function isFinal(state: TaskState): boolean {
  return FINAL_TASK_STATES.has(state);
}

const to = (state: TaskState, provisional = false, changed = true): Transition => ({ ok: true, state, provisional, changed });
const no = (reason: string): Transition => ({ ok: false, reason });

function describe(p: Position): string {
  return p.provisional ? `${p.state} (not yet confirmed by the worker)` : p.state;
}

export function transition(p: Position, e: TaskEvent): Transition {
  return p.role === "received" ? workerTransition(p, e) : submitterTransition(p, e);
}

function workerTransition(p: Position, e: TaskEvent): Transition {
  const s = p.state;
  switch (e.kind) {
    case "accept":
      return s === "queued" ? to("accepted") : no(`the task is ${s}; only a queued task can be accepted`);
    case "decline":
      return s === "queued" ? to("declined") : no(`the task is ${s}; only a queued task can be declined`);
    case "start":
      return s === "accepted" ? to("running") : no(s === "queued" ? "accept the task before starting it" : `the task is ${s}; only an accepted task can be started`);
    case "finish":
      return s === "running" ? to(e.outcome) : no(`the task is ${s}; only a running task can deliver a result`);
    case "cancel":
      return isFinal(s) ? no(`the task is already ${s}`) : to("cancelled");
    case "expire":
      return isFinal(s) ? no(`the task is already ${s}`) : to("expired");
    case "reported":
      return no("only the worker's reports change a submitted task");
  }
}

function submitterTransition(p: Position, e: TaskEvent): Transition {
  const s = p.state;
  switch (e.kind) {
    case "accept":
    case "decline":
    case "start":
    case "finish":
      return no(`only the worker can ${e.kind === "finish" ? "deliver a result for" : e.kind} a task`);
    case "cancel":
    case "expire": {
      const next: TaskState = e.kind === "cancel" ? "cancelled" : "expired";
      if (isFinal(s)) return no(`the task is already ${describe(p)}`);
      // Never sent: nobody else knows the task, so this end is the only one.
      return to(next, p.sent);
    }
    case "reported": {
      const r = e.state;
      if (r === "queued") return no("the worker cannot report a task as queued");
      if (isFinal(s)) {
        if (r === s) return p.provisional ? to(s, false) : to(s, false, false);
        // The worker reached its end before it learnt of our cancel or our expiry: its end wins.
        if (p.provisional && isFinal(r)) return to(r, false);
        // Reports the worker made before it learnt of our provisional end change nothing.
        if (p.provisional) return to(s, true, false);
        return no(`the task is already ${s}; the worker reports ${r}`);
      }
      if (RANK[r] <= RANK[s]) return r === s ? to(s, false, false) : no(`the task is ${s}; the worker reports ${r}, which comes before it`);
      if (r === "declined" && s !== "queued") return no(`the task is ${s}; it can no longer be declined`);
      return to(r);
    }
  }
}

/** Can the submitter give its verdict on the task now? (It judges a delivered result once.) */
export function verdictAllowed(p: Position, hasResult: boolean, verdict: string | null): string | null {
  if (p.role !== "submitted") return "only the submitter judges a result";
  if (verdict !== null) return `the result was already ${verdict}`;
  if (!hasResult || (p.state !== "succeeded" && p.state !== "failed")) return `the task is ${describe(p)}; there is no result to judge yet`;
  return null;
}

export interface Deadlines {
  readonly acceptBy: number;
  readonly deadlineAt: number;
}

/**
 * Is an expiry due at `now` (this node's clock)? The worker expires a task not
 * accepted by accept_by, and any unfinished task at its deadline. The
 * submitter does the same for a task it never sent; for one it sent it waits
 * `graceMs` longer, so that the worker's own verdict (by its clock, which
 * started later) normally arrives first.
 */
export function expiryDue(p: Position, d: Deadlines, now: number, graceMs: number): boolean {
  if (isFinal(p.state)) return false;
  const grace = p.role === "submitted" && p.sent ? graceMs : 0;
  if (p.state === "queued" && now >= d.acceptBy + grace) return true;
  return now >= d.deadlineAt + grace;
}

/** When the next expiry of this task falls due (ms, this node's clock), or null for a final task. */
export function nextExpiry(p: Position, d: Deadlines, graceMs: number): number | null {
  if (isFinal(p.state)) return null;
  const grace = p.role === "submitted" && p.sent ? graceMs : 0;
  return (p.state === "queued" ? Math.min(d.acceptBy, d.deadlineAt) : d.deadlineAt) + grace;
}
