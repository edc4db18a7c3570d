/**
 * The task service (Pilot port 1003): agents give each other work. This node
 * is the *submitter* of the tasks it sends and the *worker* of the tasks it
 * takes. Both ends keep every task in SQLite and learn every change of it:
 * what cannot be delivered now waits in the outbox (committed with the change
 * itself) and is retried until the peer acknowledges it, across restarts of
 * either daemon; the receiver applies each message once (per task, by the
 * sender's sequence number).
 *
 * Trust rules (docs/SERVICES.md "Tasks"):
 * - a task is taken only from a node the service admits (trusted, or anyone
 *   when opened with --open-services tasks; strangers may need a minimum score);
 * - an update, a result or a verdict counts only from the task's other node,
 *   the authenticated address of the stream it came on, never a field;
 * - task ids are 32 hex characters and never become paths: stored payloads
 *   are named by ids this node makes up;
 * - unfinished tasks are bounded per submitter, for strangers together and in
 *   all; so are their input bytes, uploads in progress and streams.
 *
 * Receipts: a worker signs its result statement when it delivers; the
 * submitter checks it against the worker's key, and its verdict (`approve` /
 * `reject`) signs the verdict statement. Both ends hand the full receipt to the
 * registry (retried until it takes it) and the worker learns the verdict.
 */
import { isAbsolute } from "node:path";
import { readFileSync, statSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { addressOf, formatAddress, networkOf, nodeOf, type Address } from "../../../protocol/address.ts";
import { WellKnownPort } from "../../../protocol/ports.ts";
import { checkReceiptFields, resultStatementBytes, verdictStatementBytes, type TaskReceipt } from "../../../protocol/receipt.ts";
import {
  ACTIVE_TASK_STATES,
  EMPTY_SHA256,
  encodeTaskMessage,
  decodeTaskMessage,
  isRetryable,
  REPLY_CODE_NAMES,
  ReplyCode,
  TASK_LIMITS,
  TASK_STATES,
  checkTaskText,
  type ReplyMessage,
  type ResultKind,
  type ResultMessage,
  type SubmitMessage,
  type TaskEventData,
  type TaskEventType,
  type TaskInfo,
  type TaskOutcome,
  type TaskState,
  type TaskVerdict,
  type UpdateMessage,
  type VerdictMessage,
} from "../../../protocol/tasks.ts";
import { verifySignature } from "../../../crypto/identity.ts";
import { NodeError, type PortBinding, type StreamHandle } from "../../local-node.ts";
import type { DaemonService, ServiceContext } from "../service.ts";
import { Courier, type CourierHost } from "./courier.ts";
import { expiryDue, isFinal, transition, verdictAllowed, type Position, type TaskEvent } from "./lifecycle.ts";
import { reply, TaskLink, type LinkHandler, type PayloadSink, type RequestDecision, type TaskRequest } from "./link.ts";
import { DEFAULT_TASK_LIMITS, DEFAULT_TASK_TIMERS, LimitsSource, type TaskLimits, type TaskTimers } from "./settings.ts";
import { TaskStore, type OutboxItem, type OutboxKind, type TaskRow } from "./store.ts";

export interface TasksServiceOptions {
  readonly limits?: Partial<TaskLimits>;
  readonly timers?: Partial<TaskTimers>;
  /** The config file whose `tasks_*` keys set limits (default: `config.json` next to the service's directory). */
  readonly configFile?: string | null;
  readonly now?: () => number;
}

type Params = Record<string, unknown>;

/** Results of at most this size that are valid UTF-8 are shown inline. */
const INLINE_TEXT = 64 * 1024;
/** `task_read` returns at most this much per call (base64 must fit one IPC frame). */
const READ_MAX = 128 * 1024;
/** Inline payloads through IPC (base64). */
const IPC_PAYLOAD_MAX = 160 * 1024;
/** How long a local change waits for its peer's acknowledgement before answering. */
const DELIVERY_WAIT_MS = 2000;
/** Without --accept-within / --deadline: an hour to accept (never past the deadline), a day to finish. */
const DEFAULT_ACCEPT_WITHIN_MS = 3_600_000;
const DEFAULT_DEADLINE_MS = 24 * 3_600_000;
/** A submitter does not expire a task it sent in its first seconds up: the worker gets a chance to report. */
const STARTUP_QUIET_MS = 30_000;

interface SubmitOutcome {
  readonly kind: "delivered" | "refused" | "failed";
  readonly code?: number;
  readonly message?: string;
  readonly error?: Error;
}

export class TasksService implements DaemonService, LinkHandler, CourierHost {
  readonly name = "tasks" as const;
  private store: TaskStore | null = null;
  private binding: PortBinding | null = null;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private readonly courier: Courier;
  private readonly timers: TaskTimers;
  private readonly limits: LimitsSource;
  private readonly now: () => number;
  private readonly self: number;
  private readonly uploads = new Map<number, number>();
  private uploadsTotal = 0;
  /** Tasks with a payload coming in right now. */
  private readonly busyTasks = new Set<string>();
  /** Submissions admitted and still uploading: they count against the quotas. */
  private readonly reserved = new Map<number, { count: number; bytes: number; stranger: boolean }>();
  private readonly submitWaiters = new Map<string, (o: SubmitOutcome) => void>();
  private receiptsRunning = false;
  private startedAt = 0;
  private lastPrune = 0;
  readonly counters = { violations: 0, refused: 0, duplicates: 0, received: 0, delivered: 0 };

  constructor(
    private readonly context: ServiceContext,
    private readonly options: TasksServiceOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.timers = { ...DEFAULT_TASK_TIMERS, ...options.timers };
    const configFile = options.configFile !== undefined ? options.configFile : context.dir ? `${context.dir.replace(/\/+$/, "")}/../config.json` : null;
    this.limits = new LimitsSource(configFile, { ...DEFAULT_TASK_LIMITS, ...options.limits }, this.now);
    this.self = nodeOf(context.address);
    this.courier = new Courier(this, this.timers, context.log, this.now);
  }

  // ---- DaemonService -----------------------------------------------------------

  start(): void {
    this.store = new TaskStore(this.context.dir);
    const swept = this.store.blobs.sweep(this.store.referencedBlobs());
    if (swept > 0) this.context.log.info("removed partial task payloads left by a crash", { files: swept });
    this.startedAt = this.now();
    this.prune();
    this.binding = this.context.listen(WellKnownPort.TaskSubmit, (stream) => this.accept(stream));
    this.ticker = setInterval(() => this.tick(), this.timers.tickMs);
    this.ticker.unref?.();
    this.tick();
  }

  stop(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    this.binding?.close();
    this.binding = null;
    this.courier.stop();
    for (const w of this.submitWaiters.values()) w({ kind: "failed", error: new NodeError("closed", "the daemon is stopping") });
    this.submitWaiters.clear();
    this.store?.close();
    this.store = null;
  }

  methods(): Record<string, (params: Params) => unknown> {
    return {
      task_submit: (p) => this.submit(p),
      task_list: (p) => this.list(p),
      task_show: (p) => this.show(p),
      task_accept: (p) => this.delivered(p, this.decide(p, "accept")),
      task_decline: (p) => this.delivered(p, this.decide(p, "decline")),
      task_start: (p) => this.delivered(p, this.startTask(p)),
      task_result: (p) => this.delivered(p, this.result(p)),
      task_cancel: (p) => this.delivered(p, this.cancel(p)),
      task_queue: () => this.queue(),
      task_approve: (p) => this.delivered(p, this.judge(p, "accepted")),
      task_reject: (p) => this.delivered(p, this.judge(p, "rejected")),
      task_read: (p) => this.read(p),
      task_policy: () => this.policy(),
    };
  }

  private get db(): TaskStore {
    if (!this.store) throw new NodeError("closed", "the task service is not running");
    return this.store;
  }

  private tick(): void {
    if (!this.store) return;
    try {
      this.expire();
      this.courier.tick();
      void this.submitReceipts();
      if (this.now() - this.lastPrune > 3_600_000) this.prune();
    } catch (e) {
      this.context.log.warn("task housekeeping failed", { error: (e as Error).message });
    }
  }

  // ---- streams -------------------------------------------------------------------

  private accept(stream: StreamHandle): void {
    const peer = stream.remoteAddress;
    const limits = this.limits.get();
    const node = nodeOf(peer);
    const stranger = !this.context.trusts(peer);
    if (
      networkOf(peer) !== 0 ||
      node === this.self ||
      this.courier.linkCount(node) >= limits.maxLinksPerPeer ||
      this.courier.totalLinks() >= limits.maxLinksTotal ||
      (stranger && this.courier.totalLinks((p) => !this.context.trusts(addressOf(0, p))) >= Math.max(1, Math.floor(limits.maxLinksTotal / 4)))
    ) {
      this.counters.refused++;
      stream.abort();
      return;
    }
    const link = new TaskLink(stream, peer, "accepted", this, this.now);
    // A node that may not give us tasks and shares none with us (a worker we chose may be a stranger)
    // gets its one answer, a refusal, and the stream ends.
    if (!this.context.admits(peer) && !this.db.hasTasksWith(node)) link.markShortLived();
    this.courier.addLink(link);
  }

  async dial(peer: number): Promise<TaskLink> {
    const stream = await this.context.dial(addressOf(0, peer), WellKnownPort.TaskSubmit, { timeoutMs: this.timers.dialTimeoutMs });
    const link = new TaskLink(stream, addressOf(0, peer), "dialed", this, this.now);
    if (!this.store) {
      link.close();
      throw new NodeError("closed", "the task service stopped");
    }
    this.courier.addLink(link);
    return link;
  }

  onClosed(link: TaskLink): void {
    this.courier.removeLink(link);
  }

  onViolation(link: TaskLink, reason: string): void {
    this.counters.violations++;
    this.context.log.warn("task stream broke the protocol; closed", { peer: formatAddress(link.peer), reason });
  }

  // ---- requests from peers -------------------------------------------------------

  async onRequest(link: TaskLink, request: TaskRequest): Promise<RequestDecision> {
    if (!this.store) return { reply: reply(ReplyCode.Busy, null, "the task service is stopping") };
    const peer = nodeOf(link.peer);
    switch (request.type) {
      case "submit":
        return this.onSubmit(link.peer, peer, request);
      case "update":
        return { reply: this.onUpdate(peer, request) };
      case "result":
        return this.onResult(link.peer, peer, request);
      case "verdict":
        return { reply: await this.onVerdict(link.peer, peer, request) };
    }
  }

  /** Publishes a task event on the local feed, its payload checked against the SDK's types (TaskEventData). */
  private announce<T extends TaskEventType>(type: T, data: TaskEventData[T]): void {
    this.context.events.publish(type, data);
  }

  private refuse(code: (typeof ReplyCode)[keyof typeof ReplyCode], state: TaskState | null, message: string): { reply: ReplyMessage } {
    if (code !== ReplyCode.Duplicate) this.counters.refused++;
    return { reply: reply(code, state, message) };
  }

  private async onSubmit(address: Address, peer: number, m: SubmitMessage): Promise<RequestDecision> {
    if (peer === this.self) return this.refuse(ReplyCode.NotOpen, null, "a node cannot give itself a task");
    const known = this.db.get(m.taskId);
    if (known) {
      if (known.role === "received" && known.peer === peer) {
        this.counters.duplicates++;
        return this.refuse(ReplyCode.Duplicate, known.state, "already received");
      }
      return this.refuse(ReplyCode.AlreadyExists, null, "a task with this id exists here; choose another id");
    }
    if (this.busyTasks.has(m.taskId)) return this.refuse(ReplyCode.Busy, null, "this task is being received on another stream");
    if (!this.context.admits(address)) return this.refuse(ReplyCode.NotOpen, null, "this node takes tasks only from nodes it trusts");
    const trusted = this.context.trusts(address);
    let limits = this.limits.get();
    if (!trusted && limits.minScore > 0) {
      if (!this.context.reputationOf) return this.refuse(ReplyCode.LowScore, null, `this node requires a score of ${limits.minScore} from untrusted submitters and cannot read scores`);
      let score: number;
      try {
        score = (await this.context.reputationOf(address)) ?? 0; // a score this node may not see, or cannot read now, counts as 0
      } catch (e) {
        return this.refuse(ReplyCode.Busy, null, `could not read your score: ${(e as Error).message}`.slice(0, 300));
      }
      if (!this.store) return this.refuse(ReplyCode.Busy, null, "the task service is stopping");
      if (!(score >= limits.minScore)) return this.refuse(ReplyCode.LowScore, null, `your score ${score} is below the ${limits.minScore} this node requires`);
      if (this.db.get(m.taskId) || this.busyTasks.has(m.taskId)) return this.refuse(ReplyCode.Busy, null, "this task arrived on another stream meanwhile; retry");
      limits = this.limits.get();
    }
    const quota = this.quotaProblem(peer, trusted, m.inputSize, limits);
    if (quota) return this.refuse(ReplyCode.Quota, null, quota);
    if (m.inputSize > 0 && ((this.uploads.get(peer) ?? 0) >= limits.maxUploadsPerPeer || this.uploadsTotal >= limits.maxUploadsTotal)) {
      return this.refuse(ReplyCode.Busy, null, "too many uploads in progress; retry");
    }

    const release = this.reserve(peer, m.inputSize, !trusted, m.taskId);
    const commit = (blob: string | null): ReplyMessage => {
      const now = this.now();
      const again = this.db.get(m.taskId);
      if (again) {
        if (blob) this.db.blobs.remove(blob);
        return again.role === "received" && again.peer === peer ? reply(ReplyCode.Duplicate, again.state, "already received") : reply(ReplyCode.AlreadyExists, null, "a task with this id exists here");
      }
      this.db.insert({
        id: m.taskId,
        role: "received",
        peer,
        description: m.description,
        state: "queued",
        created_at: now,
        updated_at: now,
        accept_by: now + m.acceptWithinMs,
        deadline_at: now + m.deadlineMs,
        input_blob: blob,
        input_size: m.inputSize,
        input_sha256: m.inputSha256,
        input_name: m.inputName,
        in_seq: 1,
        delivered: 1,
        sent: 1,
      });
      this.counters.received++;
      this.context.log.info("task received", { id: m.taskId, from: formatAddress(address), input_bytes: m.inputSize });
      this.announce("task.received", {
        id: m.taskId,
        from: formatAddress(address),
        from_node_id: peer,
        description: m.description,
        input_size: m.inputSize,
        accept_by: now + m.acceptWithinMs,
        deadline_at: now + m.deadlineMs,
      });
      this.announce("task.status", { id: m.taskId, role: "received", peer: formatAddress(address), state: "queued", previous: null, provisional: false, reason: "" });
      return reply(ReplyCode.Ok, "queued", "queued");
    };
    if (m.inputSize === 0) {
      release();
      if (m.inputSha256 !== EMPTY_SHA256) return this.refuse(ReplyCode.HashMismatch, null, "an empty input has the hash of nothing");
      return { reply: commit(null) };
    }
    let writer: ReturnType<TaskStore["blobs"]["create"]>;
    try {
      writer = this.db.blobs.create();
    } catch (e) {
      release();
      return this.refuse(ReplyCode.Busy, null, `cannot store the input: ${(e as Error).message}`.slice(0, 300));
    }
    const sink: PayloadSink = {
      size: m.inputSize,
      write: (chunk) => writer.write(chunk),
      finish: () => {
        release();
        if (!this.store) {
          writer.abort();
          return reply(ReplyCode.Busy, null, "the task service is stopping");
        }
        const sha = writer.commit();
        if (sha !== m.inputSha256 || writer.written !== m.inputSize) {
          this.db.blobs.remove(writer.id);
          this.counters.refused++;
          return reply(ReplyCode.HashMismatch, null, "the input does not match its hash");
        }
        return commit(writer.id);
      },
      abort: () => {
        release();
        writer.abort();
      },
    };
    return { accept: sink };
  }

  /** Why a new task from `peer` does not fit (null: it does). */
  private quotaProblem(peer: number, trusted: boolean, bytes: number, limits: TaskLimits): string | null {
    const active = this.db.activeReceived(peer);
    const mine = this.reserved.get(peer) ?? { count: 0, bytes: 0, stranger: false };
    let reservedTotal = 0;
    let reservedStrangers = 0;
    let reservedBytes = 0;
    for (const r of this.reserved.values()) {
      reservedTotal += r.count;
      reservedBytes += r.bytes;
      if (r.stranger) reservedStrangers += r.count;
    }
    if (active.fromPeer + mine.count >= limits.maxActivePerPeer) return `you have ${active.fromPeer + mine.count} unfinished tasks here; the limit per submitter is ${limits.maxActivePerPeer}`;
    if (!trusted) {
      const strangers = this.db.activeReceivedFrom((p) => !this.context.trusts(addressOf(0, p))) + reservedStrangers;
      if (strangers >= limits.maxActiveStrangers) return `this node holds ${strangers} unfinished tasks from untrusted nodes, its limit`;
    }
    if (active.total + reservedTotal >= limits.maxActiveTotal) return `this node holds ${active.total + reservedTotal} unfinished tasks, its limit`;
    if (active.bytesFromPeer + mine.bytes + bytes > limits.maxBytesPerPeer) return `your unfinished tasks' inputs would exceed ${limits.maxBytesPerPeer} bytes here`;
    if (!this.makeRoom(bytes + reservedBytes, limits)) return `no room for ${bytes} more input bytes (limit ${limits.maxBytesTotal})`;
    return null;
  }

  /** Drops finished tasks' inputs (oldest first) until `bytes` more fit. */
  private makeRoom(bytes: number, limits: TaskLimits): boolean {
    let stored = this.db.receivedInputBytes();
    while (stored + bytes > limits.maxBytesTotal) {
      const old = this.db.finishedReceivedWithInput(16);
      if (old.length === 0) return false;
      for (const row of old) {
        this.db.update(row.id, { input_blob: null });
        this.db.blobs.remove(row.input_blob!);
        stored -= row.input_size;
        if (stored + bytes <= limits.maxBytesTotal) break;
      }
    }
    return true;
  }

  /** Counts an admitted submission against the quotas until it is stored or abandoned. */
  private reserve(peer: number, bytes: number, stranger: boolean, taskId: string): () => void {
    const r = this.reserved.get(peer) ?? { count: 0, bytes: 0, stranger };
    r.count++;
    r.bytes += bytes;
    this.reserved.set(peer, r);
    const upload = bytes > 0 ? this.beginUpload(peer, taskId) : () => {};
    let done = false;
    return () => {
      if (done) return;
      done = true;
      r.count--;
      r.bytes -= bytes;
      if (r.count === 0) this.reserved.delete(peer);
      upload();
    };
  }

  /** Counts a payload coming in (per peer and in all) and marks its task busy, until the returned release. */
  private beginUpload(peer: number, taskId: string): () => void {
    this.uploads.set(peer, (this.uploads.get(peer) ?? 0) + 1);
    this.uploadsTotal++;
    this.busyTasks.add(taskId);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.uploads.get(peer) ?? 1) - 1;
      if (n === 0) this.uploads.delete(peer);
      else this.uploads.set(peer, n);
      this.uploadsTotal--;
      this.busyTasks.delete(taskId);
    };
  }

  private onUpdate(peer: number, m: UpdateMessage): ReplyMessage {
    const row = this.db.get(m.taskId);
    if (!row || row.peer !== peer) return this.refuse(ReplyCode.UnknownTask, null, "no such task with you").reply;
    if (m.seq <= row.in_seq) {
      this.counters.duplicates++;
      return reply(ReplyCode.Duplicate, row.state, "already applied");
    }
    let event: TaskEvent;
    if (row.role === "received") {
      if (m.state !== "cancelled") {
        this.db.update(row.id, { in_seq: m.seq });
        return this.refuse(ReplyCode.Conflict, row.state, "a submitter can only cancel its task").reply;
      }
      event = { kind: "cancel" };
    } else {
      event = { kind: "reported", state: m.state };
    }
    const t = transition(position(row), event);
    if (!t.ok) {
      this.db.update(row.id, { in_seq: m.seq });
      return this.refuse(ReplyCode.Conflict, row.state, t.reason).reply;
    }
    const now = this.now();
    const fields: Partial<TaskRow> = { in_seq: m.seq, state: t.state, provisional: t.provisional ? 1 : 0 };
    if (t.changed) {
      fields.reason = m.reason;
      Object.assign(fields, stamps(row, t.state, now));
    }
    if (row.role === "submitted") {
      fields.delivered = 1;
      fields.sent = 1;
    }
    const next = this.commit(row, fields, []);
    if (row.role === "received") {
      this.context.log.info("task cancelled by its submitter", { id: row.id });
      // A worker at work learns it through the feed (task.status cancelled) and stops.
    }
    return reply(ReplyCode.Ok, next.state, "");
  }

  private async onResult(address: Address, peer: number, m: ResultMessage): Promise<RequestDecision> {
    let row = this.db.get(m.taskId);
    if (!row || row.role !== "submitted" || row.peer !== peer) return this.refuse(ReplyCode.UnknownTask, null, "no such task given to you");
    if (m.seq <= row.in_seq) {
      this.counters.duplicates++;
      return this.refuse(ReplyCode.Duplicate, row.state, "already received");
    }
    if (this.busyTasks.has(m.taskId)) return this.refuse(ReplyCode.Busy, null, "this result is being received on another stream");
    const first = transition(position(row), { kind: "reported", state: m.outcome });
    if (!first.ok) {
      this.db.update(row.id, { in_seq: m.seq });
      return this.refuse(ReplyCode.Conflict, row.state, first.reason);
    }
    const statement = { taskId: m.taskId, submitter: this.self, worker: peer, resultSha256: m.sha256, deliveredAt: m.deliveredAt };
    let key: Uint8Array;
    try {
      key = await this.context.peerKey(address);
    } catch (e) {
      return this.refuse(ReplyCode.Busy, null, `cannot look up your key now: ${(e as Error).message}`.slice(0, 300));
    }
    if (!verifySignature(key, resultStatementBytes(statement), m.signature)) {
      this.context.log.warn("task result with a bad signature refused", { id: m.taskId, from: formatAddress(address) });
      return this.refuse(ReplyCode.BadSignature, null, "the result's signature does not verify against your key");
    }
    if (!this.store) return this.refuse(ReplyCode.Busy, null, "the task service is stopping");
    row = this.db.get(m.taskId);
    if (!row || m.seq <= row.in_seq || this.busyTasks.has(m.taskId)) return this.refuse(ReplyCode.Busy, null, "the task changed meanwhile; retry");
    const limits = this.limits.get();
    const commit = (blob: string | null): ReplyMessage => {
      const current = this.db.get(m.taskId);
      if (!current) {
        if (blob) this.db.blobs.remove(blob);
        return reply(ReplyCode.UnknownTask, null, "the task is gone");
      }
      if (m.seq <= current.in_seq) {
        if (blob) this.db.blobs.remove(blob);
        return reply(ReplyCode.Duplicate, current.state, "already received");
      }
      const t = transition(position(current), { kind: "reported", state: m.outcome });
      if (!t.ok) {
        if (blob) this.db.blobs.remove(blob);
        this.db.update(current.id, { in_seq: m.seq });
        return reply(ReplyCode.Conflict, current.state, t.reason);
      }
      const now = this.now();
      const next = this.commit(current, {
        in_seq: m.seq,
        state: t.state,
        provisional: t.provisional ? 1 : 0,
        reason: m.outcome === "failed" ? "the worker reports failure" : "",
        ...stamps(current, t.state, now),
        delivered: 1,
        sent: 1,
        result_outcome: m.outcome,
        result_kind: m.kind,
        result_size: m.size,
        result_sha256: m.sha256,
        result_name: m.name,
        result_blob: blob,
        delivered_at: m.deliveredAt,
        worker_sig: m.signature,
      }, []);
      this.context.log.info("task result received", { id: m.taskId, from: formatAddress(address), outcome: m.outcome, bytes: m.size });
      this.announce("task.result", { id: m.taskId, from: formatAddress(address), outcome: m.outcome, kind: m.kind, size: m.size, sha256: m.sha256, state: next.state });
      return reply(ReplyCode.Ok, next.state, "");
    };
    if (m.size === 0) {
      if (m.sha256 !== EMPTY_SHA256) return this.refuse(ReplyCode.HashMismatch, null, "an empty result has the hash of nothing");
      return { reply: commit(null) };
    }
    if ((this.uploads.get(peer) ?? 0) >= limits.maxUploadsPerPeer || this.uploadsTotal >= limits.maxUploadsTotal) return this.refuse(ReplyCode.Busy, null, "too many uploads in progress; retry");
    const done = this.beginUpload(peer, m.taskId);
    let writer: ReturnType<TaskStore["blobs"]["create"]>;
    try {
      writer = this.db.blobs.create();
    } catch (e) {
      done();
      return this.refuse(ReplyCode.Busy, null, `cannot store the result: ${(e as Error).message}`.slice(0, 300));
    }
    return {
      accept: {
        size: m.size,
        write: (chunk) => writer.write(chunk),
        finish: () => {
          done();
          if (!this.store) {
            writer.abort();
            return reply(ReplyCode.Busy, null, "the task service is stopping");
          }
          const sha = writer.commit();
          if (sha !== m.sha256 || writer.written !== m.size) {
            this.db.blobs.remove(writer.id);
            this.counters.refused++;
            return reply(ReplyCode.HashMismatch, null, "the result does not match its hash");
          }
          return commit(writer.id);
        },
        abort: () => {
          done();
          writer.abort();
        },
      },
    };
  }

  private async onVerdict(address: Address, peer: number, m: VerdictMessage): Promise<ReplyMessage> {
    let row = this.db.get(m.taskId);
    if (!row || row.role !== "received" || row.peer !== peer) return this.refuse(ReplyCode.UnknownTask, null, "no such task from you").reply;
    if (m.seq <= row.in_seq || row.verdict === m.outcome) {
      this.counters.duplicates++;
      return reply(ReplyCode.Duplicate, row.state, "already received");
    }
    if (row.verdict) return this.refuse(ReplyCode.Conflict, row.state, `the result was already ${row.verdict}`).reply;
    if ((row.state !== "succeeded" && row.state !== "failed") || !row.result_sha256 || row.delivered_at === null || !row.worker_sig) {
      return this.refuse(ReplyCode.Conflict, row.state, "there is no delivered result to judge").reply;
    }
    const receipt: TaskReceipt = {
      taskId: row.id,
      submitter: peer,
      worker: this.self,
      resultSha256: row.result_sha256,
      deliveredAt: row.delivered_at,
      outcome: m.outcome,
      decidedAt: m.decidedAt,
      workerSignature: new Uint8Array(row.worker_sig),
      submitterSignature: m.signature,
    };
    const problem = checkReceiptFields(receipt);
    if (problem) return this.refuse(ReplyCode.BadMessage, row.state, problem).reply;
    let key: Uint8Array;
    try {
      key = await this.context.peerKey(address);
    } catch (e) {
      return this.refuse(ReplyCode.Busy, null, `cannot look up your key now: ${(e as Error).message}`.slice(0, 300)).reply;
    }
    if (!verifySignature(key, verdictStatementBytes(receipt), m.signature)) {
      this.context.log.warn("task verdict with a bad signature refused", { id: m.taskId, from: formatAddress(address) });
      return this.refuse(ReplyCode.BadSignature, row.state, "the verdict's signature does not verify against your key").reply;
    }
    row = this.db.get(m.taskId);
    if (!row || row.verdict) return reply(ReplyCode.Duplicate, row?.state ?? null, "already received");
    this.commit(row, { in_seq: m.seq, verdict: m.outcome, verdict_reason: m.reason, decided_at: m.decidedAt, submitter_sig: m.signature, receipt: "pending", receipt_next_at: 0, receipt_attempts: 0 }, []);
    this.context.log.info("task verdict received", { id: row.id, from: formatAddress(address), outcome: m.outcome });
    this.announce("task.verdict", { id: row.id, role: "received", peer: formatAddress(address), outcome: m.outcome, reason: m.reason });
    void this.submitReceipts();
    return reply(ReplyCode.Ok, row.state, "");
  }

  // ---- the outbox ------------------------------------------------------------------

  next(peer: number): OutboxItem | null {
    return this.store ? this.store.nextOutbox(peer) : null;
  }

  outboxPeers(): number[] {
    return this.store ? this.store.outboxPeers() : [];
  }

  pollPeers(): number[] {
    return this.store ? this.store.peersWithOpenSubmissions() : [];
  }

  async deliver(link: TaskLink, item: OutboxItem): Promise<"done" | "retry"> {
    const row = this.db.get(item.task_id);
    if (!row) {
      this.db.removeOutbox(item.seq);
      return "done";
    }
    let message: TaskRequest;
    let payload: { size: number; read: (o: number, n: number) => Uint8Array } | undefined;
    if (item.kind === "submit") {
      const now = this.now();
      const acceptWithinMs = Math.min(row.accept_by - now, TASK_LIMITS.durationMs);
      const deadlineMs = Math.min(row.deadline_at - now, TASK_LIMITS.durationMs);
      if (row.state !== "queued" || acceptWithinMs < 1 || deadlineMs < acceptWithinMs) {
        // Cancelled or expired before it went: nothing to deliver (the CANCEL that may follow settles it).
        this.db.removeOutbox(item.seq);
        this.resolveSubmit(row.id, { kind: "failed", error: new NodeError("invalid_state", `the task is ${row.state}`) });
        return "done";
      }
      if (!row.sent) this.db.update(row.id, { sent: 1 });
      message = { type: "submit", taskId: row.id, acceptWithinMs, deadlineMs, inputSize: row.input_size, inputSha256: row.input_sha256, inputName: row.input_name, description: row.description };
      if (row.input_size > 0 && row.input_blob) payload = { size: row.input_size, read: (o, n) => this.db.blobs.read(row.input_blob!, o, n) };
    } else {
      const decoded = decodeTaskMessage(item.body);
      if (!decoded.ok || decoded.value.type === "data" || decoded.value.type === "reply" || decoded.value.type === "submit") {
        this.context.log.warn("dropping an undecodable outbox entry", { id: item.task_id, kind: item.kind });
        this.db.removeOutbox(item.seq);
        return "done";
      }
      message = decoded.value;
      if (message.type === "result" && message.size > 0) {
        if (!row.result_blob) {
          this.db.removeOutbox(item.seq);
          this.db.update(row.id, { delivery_error: "the stored result is missing" });
          return "done";
        }
        payload = { size: message.size, read: (o, n) => this.db.blobs.read(row.result_blob!, o, n) };
      }
    }
    this.db.countAttempt(item.seq);
    const answer = await link.request(message, payload);
    if (!this.store) return "retry";
    return this.onReply(item, answer);
  }

  failed(peer: number, item: OutboxItem | null, error: Error): void {
    if (!this.store) return;
    if (item) {
      const row = this.db.get(item.task_id);
      if (row) this.db.update(row.id, { delivery_error: `${formatAddress(addressOf(0, peer))} not reached: ${error.message}`.slice(0, 500) });
      if (item.kind === "submit") this.resolveSubmit(item.task_id, { kind: "failed", error });
    }
  }

  private resolveSubmit(id: string, outcome: SubmitOutcome): void {
    const w = this.submitWaiters.get(id);
    if (w) {
      this.submitWaiters.delete(id);
      w(outcome);
    }
  }

  private onReply(item: OutboxItem, answer: ReplyMessage): "done" | "retry" {
    const row = this.db.get(item.task_id);
    const ok = answer.code === ReplyCode.Ok || answer.code === ReplyCode.Duplicate;
    const why = `${REPLY_CODE_NAMES[answer.code] ?? answer.code}${answer.message ? `: ${answer.message}` : ""}`;
    if (!ok && isRetryable(answer.code)) {
      if (row) this.db.update(row.id, { delivery_error: `the peer is busy (${why})`.slice(0, 500) });
      if (item.kind === "submit") this.resolveSubmit(item.task_id, { kind: "failed", error: new NodeError("rate_limited", why) });
      return "retry";
    }
    this.db.removeOutbox(item.seq);
    this.counters.delivered++;
    if (!row) return "done";
    if (ok) {
      const fields: Partial<TaskRow> = { delivery_error: null };
      if (item.kind === "submit") Object.assign(fields, { delivered: 1, sent: 1 });
      // Our cancel reached a worker that had not finished: it is final on both ends.
      if (item.kind === "update" && row.provisional && row.state === "cancelled") fields.provisional = 0;
      this.commit(row, fields, []);
      if (item.kind === "submit") this.resolveSubmit(row.id, { kind: "delivered" });
      return "done";
    }
    // Refused for good.
    this.context.log.info("task message refused by the peer", { id: row.id, kind: item.kind, reply: why });
    if (item.kind === "submit") {
      if (row.provisional) this.commit(row, { provisional: 0, delivery_error: null }, []);
      else if (!isFinal(row.state)) this.commit(row, { state: "declined", reason: `refused by the worker (${why})`.slice(0, TASK_LIMITS.reason), finished_at: this.now(), delivery_error: null }, []);
      this.resolveSubmit(row.id, { kind: "refused", code: answer.code, message: answer.message });
      return "done";
    }
    if (item.kind === "update" && row.provisional && answer.code === ReplyCode.UnknownTask) {
      // The worker never had it: our end stands.
      this.commit(row, { provisional: 0, delivery_error: null }, []);
      return "done";
    }
    if (item.kind === "update" && answer.code === ReplyCode.Conflict) {
      // The worker finished first; its own report (in its outbox) settles our copy.
      this.commit(row, { delivery_error: null }, []);
      return "done";
    }
    this.commit(row, { delivery_error: `refused by the peer (${why})`.slice(0, 500) }, []);
    return "done";
  }

  /** Stores changed fields and queues messages for the peer, in one transaction; announces a state change. */
  private commit(row: TaskRow, fields: Partial<TaskRow>, messages: { kind: OutboxKind; build: (seq: number, at: number) => Uint8Array }[]): TaskRow {
    const now = this.now();
    const next = this.db.tx(() => {
      let seq = row.out_seq;
      for (const m of messages) {
        seq++;
        this.db.enqueue({ peer: row.peer, task_id: row.id, kind: m.kind, body: m.build(seq, now), created_at: now });
      }
      const all: Partial<TaskRow> = { ...fields, out_seq: seq, updated_at: now };
      this.db.update(row.id, all);
      return { ...row, ...all } as TaskRow;
    });
    if (next.state !== row.state || next.provisional !== row.provisional) {
      this.announce("task.status", {
        id: row.id,
        role: row.role,
        peer: formatAddress(addressOf(0, row.peer)),
        state: next.state,
        previous: row.state,
        provisional: !!next.provisional,
        reason: next.reason,
      });
    }
    if (messages.length > 0) this.courier.kick(row.peer);
    return next;
  }

  // ---- time ------------------------------------------------------------------------

  private expire(): void {
    const now = this.now();
    for (const row of this.db.active()) {
      const p = position(row);
      if (p.role === "submitted" && p.sent && now - this.startedAt < STARTUP_QUIET_MS) continue;
      if (!expiryDue(p, { acceptBy: row.accept_by, deadlineAt: row.deadline_at }, now, this.timers.graceMs)) continue;
      const t = transition(p, { kind: "expire" });
      if (!t.ok) continue;
      const reason = row.state === "queued" && now >= row.accept_by ? "not accepted in time" : "past its deadline";
      if (row.role === "received") {
        this.commit(row, { state: "expired", reason, finished_at: now }, [{ kind: "update", build: (seq, at) => updateBody(row.id, seq, "expired", at, reason) }]);
      } else {
        if (!row.sent) {
          const pending = this.db.outboxFor(row.id, "submit");
          if (pending) this.db.removeOutbox(pending.seq);
          this.resolveSubmit(row.id, { kind: "failed", error: new NodeError("timeout", "the task expired before it could be delivered") });
        }
        this.commit(row, { state: "expired", provisional: t.provisional ? 1 : 0, reason: row.sent ? `${reason} (by this node's clock; the worker has not said)` : `${reason}: the worker was never reached`, finished_at: now }, []);
      }
      this.context.log.info("task expired", { id: row.id, role: row.role, reason });
    }
  }

  private prune(): void {
    this.lastPrune = this.now();
    const limits = this.limits.get();
    for (const role of ["received", "submitted"] as const) {
      for (;;) {
        const rows = this.db.prunable(role, limits.historyCount, this.now() - limits.historyMs, 200);
        if (rows.length === 0) break;
        this.db.tx(() => rows.forEach((r) => this.db.delete(r.id)));
        for (const r of rows) {
          if (r.input_blob) this.db.blobs.remove(r.input_blob);
          if (r.result_blob) this.db.blobs.remove(r.result_blob);
        }
      }
    }
    for (const stale of this.db.dropStaleOutbox(this.now() - this.timers.outboxMaxAgeMs)) {
      this.db.update(stale.task_id, { delivery_error: `gave up delivering the ${stale.kind} after ${Math.round(this.timers.outboxMaxAgeMs / 86_400_000)} days` });
    }
  }

  // ---- receipts --------------------------------------------------------------------

  private async submitReceipts(): Promise<void> {
    if (this.receiptsRunning || !this.store) return;
    this.receiptsRunning = true;
    try {
      for (const row of this.db.pendingReceipts(this.now(), 8)) {
        const receipt = receiptOf(row, this.self);
        if (!receipt) {
          this.db.update(row.id, { receipt: "refused", receipt_error: "the stored receipt is incomplete" });
          continue;
        }
        try {
          await this.context.submitReceipt(receipt);
          if (!this.store) return;
          this.db.update(row.id, { receipt: "submitted", receipt_error: null });
          this.context.log.info("task receipt taken by the registry", { id: row.id, outcome: row.verdict });
        } catch (e) {
          if (!this.store) return;
          const err = e as NodeError;
          if (err.code === "already_exists") {
            this.db.update(row.id, { receipt: "submitted", receipt_error: null });
          } else if (err.code === "invalid_argument" || err.code === "unauthorized") {
            this.db.update(row.id, { receipt: "refused", receipt_error: err.message.slice(0, 500) });
            this.context.log.warn("the registry refused a task receipt", { id: row.id, error: err.message });
          } else {
            const attempts = row.receipt_attempts + 1;
            const wait = Math.min(this.timers.receiptRetryMaxMs, this.timers.receiptRetryMinMs * 2 ** Math.min(attempts - 1, 20));
            this.db.update(row.id, { receipt_attempts: attempts, receipt_next_at: this.now() + wait, receipt_error: (err.message ?? String(e)).slice(0, 500) });
            if (attempts === 1) this.context.log.info("task receipt not taken yet; retrying", { id: row.id, error: err.message });
          }
        }
      }
    } finally {
      this.receiptsRunning = false;
    }
  }

  // ---- local operations (IPC) ------------------------------------------------------

  private async submit(p: Params): Promise<unknown> {
    const description = text(p, "task", TASK_LIMITS.description, true, true);
    const target = text(p, "target", 300, false, true);
    const explicitDeadline = p.deadline_ms === undefined || p.deadline_ms === null ? null : duration(p, "deadline_ms", 0);
    const acceptWithinMs = duration(p, "accept_within_ms", Math.min(DEFAULT_ACCEPT_WITHIN_MS, explicitDeadline ?? Infinity));
    const deadlineMs = explicitDeadline ?? Math.max(DEFAULT_DEADLINE_MS, acceptWithinMs);
    if (acceptWithinMs > deadlineMs) throw new NodeError("invalid_argument", "the time to accept (--accept-within) is longer than the deadline (--deadline)", "the worker must accept before the deadline");
    const input = loadPayload(p, "input");
    const name = optionalText(p, "input_name", TASK_LIMITS.name, false) ?? input?.name ?? "";
    const waitMs = p.wait_ms === undefined ? this.timers.submitWaitMs : int(p, "wait_ms", 0, 60_000);
    const address = await this.context.resolveTarget(target);
    if (networkOf(address) !== 0) throw new NodeError("invalid_argument", "tasks go to nodes of network 0");
    if (address === this.context.address) throw new NodeError("invalid_argument", "a node cannot give itself a task", "submit it to another node");
    const worker = nodeOf(address);
    const id = randomBytes(16).toString("hex");
    let blob: string | null = null;
    let sha = EMPTY_SHA256;
    if (input && input.bytes.length > 0) {
      const w = this.db.blobs.create();
      try {
        w.write(input.bytes);
        sha = w.commit();
      } catch (e) {
        w.abort();
        throw new NodeError("internal", `cannot store the input: ${(e as Error).message}`);
      }
      blob = w.id;
    }
    const now = this.now();
    this.db.tx(() => {
      this.db.insert({
        id,
        role: "submitted",
        peer: worker,
        description,
        state: "queued",
        created_at: now,
        updated_at: now,
        accept_by: now + acceptWithinMs,
        deadline_at: now + deadlineMs,
        input_blob: blob,
        input_size: input?.bytes.length ?? 0,
        input_sha256: sha,
        input_name: name,
        out_seq: 1,
      });
      this.db.enqueue({ peer: worker, task_id: id, kind: "submit", body: new Uint8Array(0), created_at: now });
    });
    this.announce("task.status", { id, role: "submitted", peer: formatAddress(address), state: "queued", previous: null, provisional: false, reason: "" });
    const outcome = waitMs > 0 ? await this.awaitSubmit(id, worker, waitMs) : null;
    const row = this.db.get(id);
    if (!row) throw new NodeError("internal", "the task vanished");
    if (outcome?.kind === "refused") {
      // Nothing happened anywhere: forget it, and say why.
      this.db.delete(id);
      if (blob) this.db.blobs.remove(blob);
      throw refusalError(outcome.code!, outcome.message ?? "", formatAddress(address));
    }
    if (outcome?.kind === "failed" && !row.delivered && isPermanentDialError(outcome.error)) {
      this.db.delete(id);
      if (blob) this.db.blobs.remove(blob);
      const e = outcome.error as NodeError;
      throw new NodeError(e.code, `${formatAddress(address)} cannot be given tasks: ${e.message}`, e.code === "connection_refused" ? "its task service is off (pilot daemon start --no-tasks)" : e.hint);
    }
    return { ...this.view(row), target: formatAddress(address) };
  }

  /**
   * The answer to a local change, once the peer has it or after `wait_ms`
   * (default 2 s) when it is slow or away: the change stands either way,
   * the answer just says whether it arrived (`undelivered`).
   */
  private async delivered(p: Params, view: TaskInfo): Promise<TaskInfo> {
    const waitMs = p.wait_ms === undefined ? DELIVERY_WAIT_MS : int(p, "wait_ms", 0, 60_000);
    const deadline = this.now() + waitMs;
    while (this.store && this.db.outboxCount(view.id) > 0 && this.now() < deadline) {
      if (this.courier.state(view.peer_node_id).failures > 0) break;
      await Bun.sleep(10);
    }
    const row = this.store ? this.db.get(view.id) : null;
    return row ? this.view(row) : view;
  }

  private awaitSubmit(id: string, worker: number, ms: number): Promise<SubmitOutcome | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.submitWaiters.delete(id);
        resolve(null);
      }, ms);
      this.submitWaiters.set(id, (o) => {
        clearTimeout(timer);
        resolve(o);
      });
      this.courier.kick(worker);
    });
  }

  private list(p: Params): unknown {
    const role = p.role === undefined ? undefined : choice(p, "role", ["received", "submitted"] as const);
    const status = p.status === undefined ? undefined : choice(p, "status", [...TASK_STATES, "active", "final"] as const);
    const limit = p.limit === undefined ? 100 : int(p, "limit", 1, 1000);
    const offset = p.offset === undefined ? 0 : int(p, "offset", 0, 1_000_000);
    const states: TaskState[] | undefined = status === undefined ? undefined : status === "active" ? [...ACTIVE_TASK_STATES] : status === "final" ? TASK_STATES.filter((s) => isFinal(s)) : [status];
    const rows = this.db.list({ role, states, limit, offset });
    const total = this.db.count({ role, states });
    return { tasks: rows.map((r) => this.view(r)), total, offset, limit };
  }

  private show(p: Params): unknown {
    return this.view(this.find(p), true);
  }

  private decide(p: Params, kind: "accept" | "decline"): TaskInfo {
    const row = this.find(p);
    if (row.role !== "received") throw new NodeError("invalid_state", `task ${row.id} is one you submitted; its worker ${kind}s it`);
    const reason = optionalText(p, "reason", TASK_LIMITS.reason, true) ?? "";
    const t = transition(position(row), { kind });
    if (!t.ok) throw stateError(row, t.reason);
    const now = this.now();
    if (kind === "accept" && now >= row.accept_by) throw new NodeError("invalid_state", `task ${row.id} was not accepted in time (accept-by has passed)`, "it expires now");
    const next = this.commit(row, { state: t.state, reason, ...stamps(row, t.state, now) }, [{ kind: "update", build: (seq, at) => updateBody(row.id, seq, t.state, at, reason) }]);
    return this.view(next);
  }

  private startTask(p: Params): TaskInfo {
    let row: TaskRow;
    if (p.id === undefined || p.id === null || p.id === "") {
      const oldest = this.db.oldestAccepted();
      if (!oldest) throw new NodeError("not_found", "no accepted task is waiting", "see the queue with: pilot task queue (accept one with: pilot task accept ID)");
      row = oldest;
    } else row = this.find(p);
    if (row.role !== "received") throw new NodeError("invalid_state", `task ${row.id} is one you submitted; its worker starts it`);
    const t = transition(position(row), { kind: "start" });
    if (!t.ok) throw stateError(row, t.reason);
    const next = this.commit(row, { state: "running", reason: "", ...stamps(row, "running", this.now()) }, [{ kind: "update", build: (seq, at) => updateBody(row.id, seq, "running", at, "") }]);
    return this.view(next, true);
  }

  private result(p: Params): TaskInfo {
    let row = this.find(p);
    if (row.role !== "received") throw new NodeError("invalid_state", `task ${row.id} is one you submitted; its worker delivers the result`);
    const outcome: TaskOutcome = p.failed === true ? "failed" : "succeeded";
    if (p.failed !== undefined && typeof p.failed !== "boolean") throw new NodeError("invalid_argument", '"failed" must be true or false');
    const hasText = p.text !== undefined;
    const payload = hasText ? { bytes: new TextEncoder().encode(String(p.text)), name: "" } : loadPayload(p, "result");
    if (hasText && typeof p.text !== "string") throw new NodeError("invalid_argument", '"text" must be a string');
    if (!payload) throw new NodeError("invalid_argument", "a result needs text or a file", "pilot task result ID --text '…' or --file FILE");
    if (payload.bytes.length > TASK_LIMITS.payload) throw tooLarge("result", payload.bytes.length);
    const kind: ResultKind = hasText ? "text" : "file";
    const name = optionalText(p, "name", TASK_LIMITS.name, false) ?? payload.name;
    if (row.state === "accepted") {
      // Delivering straight from accepted: it ran, say so first.
      const t = transition(position(row), { kind: "start" });
      if (!t.ok) throw stateError(row, t.reason);
      row = this.commit(row, { state: "running", ...stamps(row, "running", this.now()) }, [{ kind: "update", build: (seq, at) => updateBody(row.id, seq, "running", at, "") }]);
    }
    const t = transition(position(row), { kind: "finish", outcome });
    if (!t.ok) throw stateError(row, t.reason);
    const now = this.now();
    if (now >= row.deadline_at) throw new NodeError("invalid_state", `task ${row.id} is past its deadline`, "it expires now; the submitter is told");
    let blob: string | null = null;
    let sha = EMPTY_SHA256;
    if (payload.bytes.length > 0) {
      const w = this.db.blobs.create();
      try {
        w.write(payload.bytes);
        sha = w.commit();
      } catch (e) {
        w.abort();
        throw new NodeError("internal", `cannot store the result: ${(e as Error).message}`);
      }
      blob = w.id;
    }
    const deliveredAt = now;
    const statement = { taskId: row.id, submitter: row.peer, worker: this.self, resultSha256: sha, deliveredAt };
    const signature = this.context.signTaskStatement(resultStatementBytes(statement));
    const current = row;
    const next = this.commit(
      current,
      {
        state: outcome,
        reason: "",
        finished_at: now,
        result_outcome: outcome,
        result_kind: kind,
        result_size: payload.bytes.length,
        result_sha256: sha,
        result_name: name,
        result_blob: blob,
        delivered_at: deliveredAt,
        worker_sig: signature,
      },
      [
        {
          kind: "result",
          build: (seq) => encodeTaskMessage({ type: "result", taskId: current.id, seq, outcome, deliveredAt, size: payload.bytes.length, sha256: sha, signature, kind, name }),
        },
      ],
    );
    return this.view(next);
  }

  private cancel(p: Params): TaskInfo {
    const row = this.find(p);
    if (row.role !== "submitted") throw new NodeError("invalid_state", `task ${row.id} was given to you; decline it or deliver a failed result instead`, "pilot task decline ID, or pilot task result ID --failed --text why");
    const reason = optionalText(p, "reason", TASK_LIMITS.reason, true) ?? "";
    const t = transition(position(row), { kind: "cancel" });
    if (!t.ok) throw stateError(row, t.reason);
    const now = this.now();
    if (!row.sent) {
      const pending = this.db.outboxFor(row.id, "submit");
      if (pending) this.db.removeOutbox(pending.seq);
      this.resolveSubmit(row.id, { kind: "failed", error: new NodeError("invalid_state", "cancelled") });
      return this.view(this.commit(row, { state: "cancelled", provisional: 0, reason, finished_at: now }, []));
    }
    const next = this.commit(row, { state: "cancelled", provisional: 1, reason, finished_at: now }, [{ kind: "update", build: (seq, at) => updateBody(row.id, seq, "cancelled", at, reason) }]);
    return this.view(next);
  }

  private queue(): unknown {
    const rows = this.db.list({ role: "received", states: ACTIVE_TASK_STATES, limit: 1000, oldestFirst: true });
    const limits = this.limits.get();
    return {
      queue: rows.map((r, i) => ({ position: i + 1, ...this.view(r) })),
      count: rows.length,
      queued: rows.filter((r) => r.state === "queued").length,
      accepted: rows.filter((r) => r.state === "accepted").length,
      running: rows.filter((r) => r.state === "running").length,
      limit: limits.maxActiveTotal,
    };
  }

  private judge(p: Params, outcome: TaskVerdict): TaskInfo {
    const row = this.find(p);
    const reason = optionalText(p, "reason", TASK_LIMITS.reason, true) ?? "";
    const problem = verdictAllowed(position(row), row.result_sha256 !== null && row.worker_sig !== null && row.delivered_at !== null, row.verdict);
    if (problem) throw new NodeError("invalid_state", `task ${row.id}: ${problem}`);
    // Never before the delivery as the worker dated it (clocks differ).
    const decidedAt = Math.max(this.now(), row.delivered_at!);
    const receipt = { taskId: row.id, submitter: this.self, worker: row.peer, resultSha256: row.result_sha256!, deliveredAt: row.delivered_at!, outcome, decidedAt };
    const signature = this.context.signTaskStatement(verdictStatementBytes(receipt));
    const next = this.commit(
      row,
      { verdict: outcome, verdict_reason: reason, decided_at: decidedAt, submitter_sig: signature, receipt: "pending", receipt_next_at: 0, receipt_attempts: 0, receipt_error: null },
      [{ kind: "verdict", build: (seq) => encodeTaskMessage({ type: "verdict", taskId: row.id, seq, outcome, decidedAt, signature, reason }) }],
    );
    this.announce("task.verdict", { id: row.id, role: "submitted", peer: formatAddress(addressOf(0, row.peer)), outcome, reason });
    void this.submitReceipts();
    return this.view(next);
  }

  private read(p: Params): unknown {
    const row = this.find(p);
    const part = choice(p, "part", ["input", "result"] as const);
    const blob = part === "input" ? row.input_blob : row.result_blob;
    const size = part === "input" ? row.input_size : (row.result_size ?? 0);
    if (part === "result" && row.result_sha256 === null) throw new NodeError("not_found", `task ${row.id} has no result yet`);
    if (part === "input" && size > 0 && !blob) throw new NodeError("not_found", `task ${row.id}'s input is no longer kept`);
    const offset = p.offset === undefined ? 0 : int(p, "offset", 0, TASK_LIMITS.payload);
    const length = p.length === undefined ? READ_MAX : int(p, "length", 1, READ_MAX);
    const bytes = blob && offset < size ? this.db.blobs.read(blob, offset, Math.min(length, size - offset)) : new Uint8Array(0);
    return { id: row.id, part, size, offset, data: Buffer.from(bytes).toString("base64"), eof: offset + bytes.length >= size };
  }

  private policy(): unknown {
    const l = this.limits.get();
    return {
      max_active_per_peer: l.maxActivePerPeer,
      max_active_strangers: l.maxActiveStrangers,
      max_active_total: l.maxActiveTotal,
      max_input_bytes: TASK_LIMITS.payload,
      max_bytes_per_peer: l.maxBytesPerPeer,
      max_bytes_total: l.maxBytesTotal,
      min_score: l.minScore,
      scores_readable: typeof this.context.reputationOf === "function",
      counters: { ...this.counters },
    };
  }

  /** The task named by `p.id`: a full id, or a unique prefix of at least 6 hex characters. */
  private find(p: Params): TaskRow {
    const raw = p.id;
    if (typeof raw !== "string" || !/^[0-9a-fA-F]{6,32}$/.test(raw)) throw new NodeError("invalid_argument", `"${String(raw).slice(0, 40)}" is not a task id`, "task ids are 32 hex characters (a unique prefix of 6 or more will do); list them with: pilot task list");
    const id = raw.toLowerCase();
    if (id.length === 32) {
      const row = this.db.get(id);
      if (!row) throw new NodeError("not_found", `no task ${id}`, "list tasks with: pilot task list");
      return row;
    }
    const ids = this.db.idsWithPrefix(id, 2);
    if (ids.length === 0) throw new NodeError("not_found", `no task starts with ${id}`, "list tasks with: pilot task list");
    if (ids.length > 1) throw new NodeError("invalid_argument", `more than one task starts with ${id}`, "give more of the id");
    return this.db.get(ids[0]!)!;
  }

  private view(row: TaskRow, withText = false): TaskInfo {
    let resultText: string | null = null;
    if (withText && row.result_blob && row.result_size !== null && row.result_size <= INLINE_TEXT) {
      try {
        resultText = new TextDecoder("utf-8", { fatal: true }).decode(this.db.blobs.read(row.result_blob, 0, row.result_size));
      } catch {
        resultText = null;
      }
    } else if (withText && row.result_sha256 === EMPTY_SHA256) resultText = "";
    return {
      id: row.id,
      role: row.role,
      peer: formatAddress(addressOf(0, row.peer)),
      peer_node_id: row.peer,
      description: row.description,
      state: row.state,
      reason: row.reason,
      delivered: row.role === "received" ? true : !!row.delivered,
      provisional: !!row.provisional,
      created_at: row.created_at,
      updated_at: row.updated_at,
      accept_by: row.accept_by,
      deadline_at: row.deadline_at,
      accepted_at: row.accepted_at,
      started_at: row.started_at,
      finished_at: row.finished_at,
      input: row.input_size > 0 || row.input_name !== "" ? { size: row.input_size, sha256: row.input_sha256, name: row.input_name, file: row.input_blob ? this.db.blobs.path(row.input_blob) : null } : null,
      result:
        row.result_sha256 !== null
          ? {
              outcome: row.result_outcome!,
              kind: row.result_kind!,
              size: row.result_size ?? 0,
              sha256: row.result_sha256,
              name: row.result_name ?? "",
              delivered_at: row.delivered_at!,
              text: resultText,
              file: row.result_blob ? this.db.blobs.path(row.result_blob) : null,
              worker_signature: row.worker_sig ? Buffer.from(row.worker_sig).toString("base64") : "",
            }
          : null,
      verdict: row.verdict
        ? { outcome: row.verdict, reason: row.verdict_reason ?? "", decided_at: row.decided_at!, receipt: row.receipt ?? "pending", receipt_error: row.receipt_error }
        : null,
      undelivered: this.db.outboxCount(row.id),
      delivery_error: row.delivery_error,
    };
  }
}

// ---- helpers -----------------------------------------------------------------------

function position(row: TaskRow): Position {
  return { role: row.role, state: row.state, provisional: !!row.provisional, sent: !!row.sent };
}

/** The times a move to `state` sets (first time only). */
function stamps(row: TaskRow, state: TaskState, now: number): Partial<TaskRow> {
  const out: Partial<TaskRow> = {};
  if (state === "accepted" && row.accepted_at === null) out.accepted_at = now;
  if (state === "running" && row.started_at === null) out.started_at = now;
  if (isFinal(state) && row.finished_at === null) out.finished_at = now;
  return out;
}

function updateBody(taskId: string, seq: number, state: TaskState, at: number, reason: string): Uint8Array {
  return encodeTaskMessage({ type: "update", taskId, seq, state, at, reason });
}

function receiptOf(row: TaskRow, self: number): TaskReceipt | null {
  if (!row.verdict || !row.result_sha256 || row.delivered_at === null || row.decided_at === null || !row.worker_sig || !row.submitter_sig) return null;
  return {
    taskId: row.id,
    submitter: row.role === "submitted" ? self : row.peer,
    worker: row.role === "submitted" ? row.peer : self,
    resultSha256: row.result_sha256,
    deliveredAt: row.delivered_at,
    outcome: row.verdict,
    decidedAt: row.decided_at,
    workerSignature: new Uint8Array(row.worker_sig),
    submitterSignature: new Uint8Array(row.submitter_sig),
  };
}

function stateError(row: TaskRow, reason: string): NodeError {
  return new NodeError("invalid_state", `task ${row.id}: ${reason}`, "see it with: pilot task show " + row.id.slice(0, 8));
}

function refusalError(code: number, message: string, worker: string): NodeError {
  const text = `${worker} refused the task${message ? `: ${message}` : ""}`;
  switch (code) {
    case ReplyCode.NotOpen:
      return new NodeError("not_trusted", text, `ask for trust first (pilot handshake ${worker} "why"), or find a node open to tasks: pilot peers --search TAG --tasks`);
    case ReplyCode.Quota:
      return new NodeError("limit_exceeded", text, "wait for your earlier tasks there to finish, or pick another worker");
    case ReplyCode.LowScore:
      return new NodeError("unauthorized", text, "this worker takes tasks from untrusted nodes only above a polo score; ask it for trust instead");
    case ReplyCode.TooLarge:
      return new NodeError("limit_exceeded", text, "send large inputs with pilot send-file and name them in the task");
    case ReplyCode.AlreadyExists:
      return new NodeError("already_exists", text);
    default:
      return new NodeError("invalid_argument", text);
  }
}

function isPermanentDialError(e: Error | undefined): boolean {
  const code = (e as NodeError | undefined)?.code;
  return code === "not_found" || code === "connection_refused" || code === "not_trusted";
}

function tooLarge(what: string, size: number): NodeError {
  return new NodeError("limit_exceeded", `the ${what} is ${size} bytes; tasks carry at most ${TASK_LIMITS.payload} bytes inline`, "send larger files with: pilot send-file NODE FILE, and name the file in the task or result text");
}

function text(p: Params, key: string, maxBytes: number, multiline: boolean, required: boolean): string {
  const v = p[key];
  if (v === undefined && !required) return "";
  if (typeof v !== "string" || v.length === 0) throw new NodeError("invalid_argument", `"${key}" must be non-empty text`);
  const why = checkTaskText(v, maxBytes, multiline);
  if (why) throw new NodeError("invalid_argument", `${key} ${why}`, key === "task" ? "put long material in --input FILE" : undefined);
  return v;
}

function optionalText(p: Params, key: string, maxBytes: number, multiline: boolean): string | undefined {
  if (p[key] === undefined || p[key] === null) return undefined;
  if (typeof p[key] !== "string") throw new NodeError("invalid_argument", `"${key}" must be text`);
  const why = checkTaskText(p[key] as string, maxBytes, multiline);
  if (why) throw new NodeError("invalid_argument", `${key} ${why}`);
  return p[key] as string;
}

function int(p: Params, key: string, min: number, max: number): number {
  const v = p[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw new NodeError("invalid_argument", `"${key}" must be a whole number from ${min} to ${max}`);
  return v;
}

function duration(p: Params, key: string, fallback: number): number {
  if (p[key] === undefined || p[key] === null) return fallback;
  return int(p, key, 1000, TASK_LIMITS.durationMs);
}

function choice<T extends string>(p: Params, key: string, choices: readonly T[]): T {
  const v = p[key];
  if (typeof v !== "string" || !(choices as readonly string[]).includes(v)) throw new NodeError("invalid_argument", `"${key}" must be one of ${choices.join(", ")}`);
  return v as T;
}

/** A payload from the local caller: `<prefix>_file` (an absolute path the daemon reads) or `<prefix>_base64`. */
function loadPayload(p: Params, prefix: "input" | "result"): { bytes: Uint8Array; name: string } | null {
  const file = p[prefix === "input" ? "input_file" : "file"];
  const b64 = p[prefix === "input" ? "input_base64" : "base64"];
  if (file !== undefined && b64 !== undefined) throw new NodeError("invalid_argument", "give a file or inline bytes, not both");
  if (file !== undefined) {
    if (typeof file !== "string" || !isAbsolute(file)) throw new NodeError("invalid_argument", `"${prefix === "input" ? "input_file" : "file"}" must be an absolute path`);
    let size: number;
    try {
      const st = statSync(file);
      if (!st.isFile()) throw new NodeError("invalid_argument", `${file} is not a regular file`);
      size = st.size;
    } catch (e) {
      if (e instanceof NodeError) throw e;
      throw new NodeError((e as NodeJS.ErrnoException).code === "ENOENT" ? "not_found" : "invalid_argument", `cannot read ${file}: ${(e as Error).message}`);
    }
    if (size > TASK_LIMITS.payload) throw tooLarge(prefix, size);
    const bytes = new Uint8Array(readFileSync(file));
    if (bytes.length > TASK_LIMITS.payload) throw tooLarge(prefix, bytes.length);
    const base = file.split("/").pop() ?? "";
    return { bytes, name: checkTaskText(base, TASK_LIMITS.name, false) === null ? base : "" };
  }
  if (b64 !== undefined) {
    if (typeof b64 !== "string" || b64.length > Math.ceil(IPC_PAYLOAD_MAX / 3) * 4 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new NodeError("invalid_argument", `"${prefix === "input" ? "input_base64" : "base64"}" must be base64 of at most ${IPC_PAYLOAD_MAX} bytes`, "larger payloads go as a file path");
    return { bytes: new Uint8Array(Buffer.from(b64, "base64")), name: "" };
  }
  return null;
}

/** The factory the daemon's service table uses. */
export function createTasksService(context: ServiceContext, options?: TasksServiceOptions): TasksService {
  return new TasksService(context, options);
}
