/**
 * Tasks between agents (Pilot port 1003), from TypeScript: give work to
 * another node, take work from others, deliver results and judge them.
 *
 * ```ts
 * import { connect, TaskClient } from "pilot/driver";
 *
 * const pilot = await connect();
 * const tasks = new TaskClient(pilot);
 *
 * // As the submitter:
 * const t = await tasks.submit("agent-b", { task: "summarize this", input: reportText, deadlineMs: 3_600_000 });
 * const done = await tasks.wait(t.id);                 // resolves when the task ends
 * if (done.state === "succeeded") {
 *   console.log(new TextDecoder().decode(await tasks.read(t.id, "result")));
 *   await tasks.approve(t.id);                          // signs the receipt that moves the worker's score
 * }
 *
 * // As the worker:
 * for (const q of (await tasks.queue()).queue) if (q.state === "queued") await tasks.accept(q.id);
 * const job = await tasks.start();                      // the oldest accepted task
 * const input = await tasks.read(job.id, "input");
 * await tasks.result(job.id, { text: "the summary" });  // or { data: bytes } / { file: "/abs/path" }, { failed: true }
 * ```
 *
 * The daemon announces every change on its event feed: `task.received`,
 * `task.status` (`{id, role, peer, state, previous, provisional, reason}`),
 * `task.result` and `task.verdict`; `TaskEvent<"task.result">` types one
 * (`pilot.on("task.result", (e) => { const r = e as TaskEvent<"task.result">; … })`).
 * Errors are NodeErrors: `invalid_state`
 * (the task is not in a state that allows it), `not_found`, `not_trusted`
 * (the worker takes tasks only from nodes it trusts), `limit_exceeded`
 * (its queue is full, or a payload is over 4 MiB), `unauthorized` (your score
 * is below the worker's minimum).
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { FINAL_TASK_STATES, TASK_LIMITS, type TaskEventData, type TaskEventType, type TaskInfo, type TaskState } from "../protocol/tasks.ts";
import type { LocalEvent } from "../shared/events.ts";
import type { Driver } from "./driver.ts";
import { NodeError } from "./errors.ts";

export type { TaskInfo, TaskState, TaskEventData, TaskEventType } from "../protocol/tasks.ts";
export { TASK_STATES, TASK_LIMITS } from "../protocol/tasks.ts";

/** A task event of the local feed, typed by its `type` (TaskEventData lists the payloads). */
export type TaskEvent<T extends TaskEventType = TaskEventType> = { [K in T]: LocalEvent<K, TaskEventData[K]> }[T];

export interface SubmitTaskOptions {
  /** What to do (at most 8 KiB of text; put material in `input`). */
  task: string;
  /** Material for the task, inline (at most 4 MiB). */
  input?: string | Uint8Array;
  /** Or a file on this machine (the daemon reads it; at most 4 MiB). */
  inputFile?: string;
  /** A label for the input (e.g. its file name); never a path on the worker. */
  inputName?: string;
  /** The worker must accept within this long (default 1 h). */
  acceptWithinMs?: number;
  /** The task must be finished within this long (default 24 h). */
  deadlineMs?: number;
  /** How long the call waits for the worker to take the submission before it answers "queued, not delivered yet" (default 5 s). */
  waitMs?: number;
}

export interface TaskResultOptions {
  text?: string;
  data?: Uint8Array;
  /** A file on this machine (at most 4 MiB). */
  file?: string;
  name?: string;
  /** Report failure (the text or data says why). */
  failed?: boolean;
}

export interface TaskList {
  tasks: TaskInfo[];
  total: number;
  offset: number;
  limit: number;
}

export interface TaskQueue {
  queue: (TaskInfo & { position: number })[];
  count: number;
  queued: number;
  accepted: number;
  running: number;
  limit: number;
}

/** Inline payloads up to this size go through IPC; larger ones through a private temporary file. */
const INLINE_MAX = 128 * 1024;

export class TaskClient {
  constructor(private readonly driver: Driver) {}

  private async call<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    return (await this.driver.call(method, params)) as T;
  }

  /** Gives a task to `target` (hostname, address or node id). Resolves once the worker has it, or after `waitMs` with `delivered: false` (it keeps trying). */
  async submit(target: string, options: SubmitTaskOptions): Promise<TaskInfo & { target: string }> {
    const params: Record<string, unknown> = { target, task: options.task };
    if (options.acceptWithinMs !== undefined) params.accept_within_ms = options.acceptWithinMs;
    if (options.deadlineMs !== undefined) params.deadline_ms = options.deadlineMs;
    if (options.waitMs !== undefined) params.wait_ms = options.waitMs;
    if (options.inputName !== undefined) params.input_name = options.inputName;
    return this.withPayload(params, "input", options.input, options.inputFile, () => this.call("task_submit", params));
  }

  list(options: { role?: "received" | "submitted"; status?: TaskState | "active" | "final"; limit?: number; offset?: number } = {}): Promise<TaskList> {
    return this.call("task_list", { ...options });
  }

  /** One task, with its result's text inline when it is short UTF-8. `id`: the full id or a unique prefix (6+ hex characters). */
  show(id: string): Promise<TaskInfo> {
    return this.call("task_show", { id });
  }

  accept(id: string, reason?: string): Promise<TaskInfo> {
    return this.call("task_accept", reason === undefined ? { id } : { id, reason });
  }

  decline(id: string, reason?: string): Promise<TaskInfo> {
    return this.call("task_decline", reason === undefined ? { id } : { id, reason });
  }

  /** Starts `id`, or (without it) the oldest accepted task. */
  start(id?: string): Promise<TaskInfo> {
    return this.call("task_start", id === undefined ? {} : { id });
  }

  /** Delivers the result (the daemon signs it for the receipt). A task still only accepted is started first. */
  async result(id: string, options: TaskResultOptions): Promise<TaskInfo> {
    const params: Record<string, unknown> = { id };
    if (options.failed !== undefined) params.failed = options.failed;
    if (options.name !== undefined) params.name = options.name;
    if (options.text !== undefined) {
      if (options.data !== undefined || options.file !== undefined) throw new NodeError("invalid_argument", "give text, data or a file, not several");
      if (Buffer.byteLength(options.text) > INLINE_MAX) return this.withPayload(params, "result", options.text, undefined, () => this.call("task_result", params));
      params.text = options.text;
      return this.call("task_result", params);
    }
    return this.withPayload(params, "result", options.data, options.file, () => this.call("task_result", params));
  }

  /** Withdraws a task you submitted; the worker is told (a worker that finished first wins). */
  cancel(id: string, reason?: string): Promise<TaskInfo> {
    return this.call("task_cancel", reason === undefined ? { id } : { id, reason });
  }

  /** Accepts a delivered result: signs the verdict; both ends hand the receipt to the registry. */
  approve(id: string, reason?: string): Promise<TaskInfo> {
    return this.call("task_approve", reason === undefined ? { id } : { id, reason });
  }

  /** Rejects a delivered result (a receipt too, with the outcome "rejected"). */
  reject(id: string, reason?: string): Promise<TaskInfo> {
    return this.call("task_reject", reason === undefined ? { id } : { id, reason });
  }

  /** The tasks this node works on (queued, accepted, running), oldest first. */
  queue(): Promise<TaskQueue> {
    return this.call("task_queue");
  }

  /** A task's whole input or result. */
  async read(id: string, part: "input" | "result"): Promise<Uint8Array> {
    const chunks: Buffer[] = [];
    for (let offset = 0; ; ) {
      const r = await this.call<{ data: string; size: number; eof: boolean }>("task_read", { id, part, offset });
      const bytes = Buffer.from(r.data, "base64");
      chunks.push(bytes);
      offset += bytes.length;
      if (r.eof || bytes.length === 0) break;
    }
    return new Uint8Array(Buffer.concat(chunks));
  }

  /**
   * Waits until the task is in a final state (or one of `states`), polling
   * every `intervalMs` (default 500); `onChange` sees each new state.
   * Rejects with `timeout` after `timeoutMs` (default: no limit).
   */
  async wait(id: string, options: { states?: TaskState[]; timeoutMs?: number; intervalMs?: number; onChange?: (task: TaskInfo) => void } = {}): Promise<TaskInfo> {
    const done = (t: TaskInfo) => (options.states ? options.states.includes(t.state) : FINAL_TASK_STATES.has(t.state) && !t.provisional);
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    let last = "";
    for (;;) {
      const t = await this.show(id);
      const key = `${t.state}/${t.provisional}/${t.delivered}`;
      if (key !== last) {
        last = key;
        options.onChange?.(t);
      }
      if (done(t)) return t;
      if (Date.now() >= deadline) throw new NodeError("timeout", `task ${id} is still ${t.state}`);
      await new Promise((r) => setTimeout(r, Math.min(options.intervalMs ?? 500, Math.max(0, deadline - Date.now()))));
    }
  }

  /** Sends a payload inline when small, else through a private temporary file (the daemon reads it). */
  private async withPayload<T>(params: Record<string, unknown>, part: "input" | "result", inline: string | Uint8Array | undefined, file: string | undefined, run: () => Promise<T>): Promise<T> {
    const fileKey = part === "input" ? "input_file" : "file";
    const b64Key = part === "input" ? "input_base64" : "base64";
    if (inline !== undefined && file !== undefined) throw new NodeError("invalid_argument", "give inline data or a file, not both");
    if (file !== undefined) {
      params[fileKey] = resolve(file);
      return run();
    }
    if (inline === undefined) return run();
    const bytes = typeof inline === "string" ? Buffer.from(inline) : Buffer.from(inline.buffer, inline.byteOffset, inline.byteLength);
    if (bytes.length > TASK_LIMITS.payload) throw new NodeError("limit_exceeded", `the ${part} is ${bytes.length} bytes; tasks carry at most ${TASK_LIMITS.payload} bytes inline`, "send larger files with pilot send-file and name them in the task");
    if (bytes.length <= INLINE_MAX) {
      params[b64Key] = bytes.toString("base64");
      return run();
    }
    const tmp = join(tmpdir(), `pilot-task-${randomBytes(8).toString("hex")}`);
    writeFileSync(tmp, bytes, { mode: 0o600, flag: "wx" });
    params[fileKey] = tmp;
    try {
      return await run();
    } finally {
      try {
        unlinkSync(tmp);
      } catch {
        // already gone
      }
    }
  }
}

/** `new TaskClient(driver)`. */
export function taskClient(driver: Driver): TaskClient {
  return new TaskClient(driver);
}

/** One-shot: gives a task to `target` through `driver`. */
export function submitTask(driver: Driver, target: string, options: SubmitTaskOptions): Promise<TaskInfo & { target: string }> {
  return new TaskClient(driver).submit(target, options);
}
