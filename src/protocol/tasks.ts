/**
 * The task service's wire format (Pilot port 1003) and the words both ends and
 * the SDK share: task ids, states, limits. Pure encode/decode; the service
 * (src/daemon/services/tasks/) does the I/O.
 *
 * One message per frame of the service's framing (`u32 length` + body,
 * src/daemon/services/framed-stream.ts). Every body starts with
 * `u8 version (1), u8 type`; integers are big-endian; `str8`/`str16` are a
 * u8/u16 byte length then UTF-8 text. Either end of a stream may send requests;
 * each request gets one REPLY (stop and wait, per direction), and a request
 * that announces a payload (SUBMIT's input, RESULT's result) gets a first REPLY
 * `ready` before the payload goes as DATA frames, then its final REPLY.
 *
 *   0x01 SUBMIT   task_id[16] u32 accept_within_ms u32 deadline_ms u32 input_size
 *                 input_sha256[32] str8 input_name str16 description
 *   0x02 UPDATE   task_id[16] u32 seq u8 state u64 at str16 reason
 *   0x03 RESULT   task_id[16] u32 seq u8 outcome u64 delivered_at u32 size
 *                 sha256[32] signature[64] u8 kind str8 name
 *   0x04 VERDICT  task_id[16] u32 seq u8 outcome u64 decided_at signature[64] str16 reason
 *   0x05 DATA     bytes (1..TASK_CHUNK) of the payload announced by the request in progress
 *   0x06 REPLY    u8 code u8 state (0: none) str16 message
 *
 * Durations in SUBMIT are what remains at the moment of sending (the two
 * clocks are never compared). Times (`at`, `delivered_at`, `decided_at`) are
 * the sender's clock, ms since the epoch. Text is valid UTF-8 without control
 * characters (a description and a reason may hold newlines and tabs) or
 * direction overrides: it ends up in terminals.
 *
 *   decodeTaskMessage(bytes): Result<TaskMessage>     never throws; exact lengths; fields are copies
 *   encodeTaskMessage(message): Uint8Array            throws RangeError on a message the decoder would refuse
 */
import { fail, ok, type Result } from "./result.ts";

export const TASK_WIRE_VERSION = 1;

/** A task's states. `queued` until the worker accepts or declines; the last five are final. */
export const TASK_STATES = ["queued", "accepted", "declined", "running", "succeeded", "failed", "cancelled", "expired"] as const;
export type TaskState = (typeof TASK_STATES)[number];
export const FINAL_TASK_STATES: ReadonlySet<TaskState> = new Set(["declined", "succeeded", "failed", "cancelled", "expired"]);
export const ACTIVE_TASK_STATES: readonly TaskState[] = ["queued", "accepted", "running"];

export type TaskOutcome = "succeeded" | "failed";
export type TaskVerdict = "accepted" | "rejected";
export type ResultKind = "text" | "file";

export const TASK_LIMITS = Object.freeze({
  /** Bytes of a task's description. Anything longer travels as its input. */
  description: 8192,
  /** Bytes of a reason (decline, cancel, verdict) and of a reply's message. */
  reason: 1024,
  /** Bytes of an input's or result's display name (never a path anywhere). */
  name: 255,
  /** Largest input or result carried inline; larger ones go with `pilot send-file`. */
  payload: 4 * 1024 * 1024,
  /** Largest DATA chunk. */
  chunk: 64 * 1024,
  /** Longest accept-within or deadline: 30 days. */
  durationMs: 30 * 24 * 3_600_000,
});

/** The largest frame body the service accepts. */
export const TASK_MAX_FRAME = 2 + TASK_LIMITS.chunk;

/** Task ids: 16 random bytes chosen by the submitter, 32 lowercase hex characters (the receipt's task id). */
export const TASK_ID = /^[0-9a-f]{32}$/;
export function isTaskId(text: unknown): text is string {
  return typeof text === "string" && TASK_ID.test(text);
}

export const TaskMessageType = {
  Submit: 0x01,
  Update: 0x02,
  Result: 0x03,
  Verdict: 0x04,
  Data: 0x05,
  Reply: 0x06,
} as const;

/** REPLY codes. Below 20: done; 20-39: try again later; 40 and up: refused for good. */
export const ReplyCode = {
  Ok: 0,
  /** Send the payload now (DATA frames), then wait for the final reply. */
  Ready: 1,
  /** Already applied (a retry of something delivered): treated as ok. */
  Duplicate: 2,
  Busy: 20,
  NotOpen: 40,
  Quota: 41,
  LowScore: 42,
  UnknownTask: 43,
  Conflict: 44,
  BadMessage: 45,
  BadSignature: 46,
  TooLarge: 47,
  AlreadyExists: 48,
  HashMismatch: 49,
  Expired: 50,
} as const;
export type ReplyCodeValue = (typeof ReplyCode)[keyof typeof ReplyCode];
const REPLY_CODES: ReadonlySet<number> = new Set(Object.values(ReplyCode));
export const REPLY_CODE_NAMES: Readonly<Record<number, string>> = Object.freeze(Object.fromEntries(Object.entries(ReplyCode).map(([k, v]) => [v, k.replace(/[A-Z]/g, (c, i) => (i ? "_" : "") + c.toLowerCase())])));

export function isRetryable(code: number): boolean {
  return code >= 20 && code < 40;
}

/** States an UPDATE may carry (succeeded/failed come with a RESULT; queued is never sent). */
export const UPDATE_STATES: readonly TaskState[] = ["accepted", "declined", "running", "cancelled", "expired"];

export interface SubmitMessage {
  readonly type: "submit";
  readonly taskId: string;
  readonly acceptWithinMs: number;
  readonly deadlineMs: number;
  readonly inputSize: number;
  /** 64 lowercase hex characters (the hash of the empty string when there is no input). */
  readonly inputSha256: string;
  readonly inputName: string;
  readonly description: string;
}

export interface UpdateMessage {
  readonly type: "update";
  readonly taskId: string;
  readonly seq: number;
  readonly state: TaskState;
  readonly at: number;
  readonly reason: string;
}

export interface ResultMessage {
  readonly type: "result";
  readonly taskId: string;
  readonly seq: number;
  readonly outcome: TaskOutcome;
  readonly deliveredAt: number;
  readonly size: number;
  readonly sha256: string;
  /** The worker's Ed25519 signature over resultStatementBytes (src/protocol/receipt.ts). */
  readonly signature: Uint8Array;
  readonly kind: ResultKind;
  readonly name: string;
}

export interface VerdictMessage {
  readonly type: "verdict";
  readonly taskId: string;
  readonly seq: number;
  readonly outcome: TaskVerdict;
  readonly decidedAt: number;
  /** The submitter's Ed25519 signature over verdictStatementBytes. */
  readonly signature: Uint8Array;
  readonly reason: string;
}

export interface DataMessage {
  readonly type: "data";
  readonly bytes: Uint8Array;
}

export interface ReplyMessage {
  readonly type: "reply";
  readonly code: ReplyCodeValue;
  /** The replier's state of the task, when it has one. */
  readonly state: TaskState | null;
  readonly message: string;
}

export type TaskMessage = SubmitMessage | UpdateMessage | ResultMessage | VerdictMessage | DataMessage | ReplyMessage;

// ---- text --------------------------------------------------------------------

/** Control characters (all, or all but tab and newline) and bidirectional overrides. */
const FORBIDDEN_LINE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const FORBIDDEN_MULTILINE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

/** Why `text` cannot travel as a task's text field (null: it can). `multiline` allows tabs and newlines. */
export function checkTaskText(text: string, maxBytes: number, multiline: boolean): string | null {
  if (typeof text !== "string") return "not text";
  if (!text.isWellFormed()) return "contains an unpaired surrogate";
  if ((multiline ? FORBIDDEN_MULTILINE : FORBIDDEN_LINE).test(text)) return multiline ? "contains control characters" : "contains control characters or newlines";
  if (utf8.encode(text).length > maxBytes) return `is longer than ${maxBytes} bytes`;
  return null;
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---- decoding ----------------------------------------------------------------

class Reader {
  at = 0;
  error: string | null = null;
  constructor(readonly bytes: Uint8Array) {}
  private take(n: number): number {
    if (this.error) return -1;
    if (this.bytes.length - this.at < n) {
      this.error = "truncated";
      return -1;
    }
    const start = this.at;
    this.at += n;
    return start;
  }
  u8(): number {
    const i = this.take(1);
    return i < 0 ? 0 : this.bytes[i]!;
  }
  u32(): number {
    const i = this.take(4);
    return i < 0 ? 0 : ((this.bytes[i]! << 24) | (this.bytes[i + 1]! << 16) | (this.bytes[i + 2]! << 8) | this.bytes[i + 3]!) >>> 0;
  }
  u64(): number {
    const hi = this.u32();
    const lo = this.u32();
    if (hi > 0x1f_ffff) {
      if (!this.error) this.error = "time_out_of_range";
      return 0;
    }
    return hi * 0x1_0000_0000 + lo;
  }
  raw(n: number): Uint8Array {
    const i = this.take(n);
    return i < 0 ? new Uint8Array(0) : this.bytes.slice(i, i + n);
  }
  hex(n: number): string {
    return Buffer.from(this.raw(n)).toString("hex");
  }
  text(lengthBytes: 1 | 2, max: number, multiline: boolean, field: string): string {
    const n = lengthBytes === 1 ? this.u8() : (this.u8() << 8) | this.u8();
    if (this.error) return "";
    if (n > max) {
      this.error = `${field}_too_long`;
      return "";
    }
    const bytes = this.raw(n);
    if (this.error) return "";
    let text: string;
    try {
      text = strictUtf8.decode(bytes);
    } catch {
      this.error = `${field}_not_utf8`;
      return "";
    }
    if (checkTaskText(text, max, multiline) !== null) {
      this.error = `${field}_forbidden_characters`;
      return "";
    }
    return text;
  }
}

function stateFromWire(code: number): TaskState | null {
  return code >= 1 && code <= TASK_STATES.length ? TASK_STATES[code - 1]! : null;
}

function stateToWire(state: TaskState): number {
  return TASK_STATES.indexOf(state) + 1;
}

export function decodeTaskMessage(bytes: Uint8Array): Result<TaskMessage> {
  if (!(bytes instanceof Uint8Array) || bytes.length < 2) return fail("truncated", "a task message needs at least 2 bytes");
  if (bytes[0] !== TASK_WIRE_VERSION) return fail("unsupported_version", `task wire version ${bytes[0]} is not 1`);
  const type = bytes[1]!;
  const r = new Reader(bytes);
  r.at = 2;
  let message: TaskMessage;
  switch (type) {
    case TaskMessageType.Submit: {
      const taskId = r.hex(16);
      const acceptWithinMs = r.u32();
      const deadlineMs = r.u32();
      const inputSize = r.u32();
      const inputSha256 = r.hex(32);
      const inputName = r.text(1, TASK_LIMITS.name, false, "name");
      const description = r.text(2, TASK_LIMITS.description, true, "description");
      if (r.error) break;
      if (acceptWithinMs < 1 || acceptWithinMs > TASK_LIMITS.durationMs) return fail("bad_duration", "accept_within_ms must be 1 ms to 30 days");
      if (deadlineMs < 1 || deadlineMs > TASK_LIMITS.durationMs) return fail("bad_duration", "deadline_ms must be 1 ms to 30 days");
      if (acceptWithinMs > deadlineMs) return fail("bad_duration", "accept_within_ms is past the deadline");
      if (inputSize > TASK_LIMITS.payload) return fail("too_large", `input of ${inputSize} bytes is larger than ${TASK_LIMITS.payload}`);
      if (description.length === 0) return fail("empty_description", "a task needs a description");
      message = { type: "submit", taskId, acceptWithinMs, deadlineMs, inputSize, inputSha256, inputName, description };
      break;
    }
    case TaskMessageType.Update: {
      const taskId = r.hex(16);
      const seq = r.u32();
      const stateCode = r.u8();
      const at = r.u64();
      const reason = r.text(2, TASK_LIMITS.reason, true, "reason");
      if (r.error) break;
      const state = stateFromWire(stateCode);
      if (state === null || !UPDATE_STATES.includes(state)) return fail("bad_state", `state ${stateCode} cannot be sent as an update`);
      if (seq === 0) return fail("bad_seq", "sequence numbers start at 1");
      message = { type: "update", taskId, seq, state, at, reason };
      break;
    }
    case TaskMessageType.Result: {
      const taskId = r.hex(16);
      const seq = r.u32();
      const outcomeCode = r.u8();
      const deliveredAt = r.u64();
      const size = r.u32();
      const sha256 = r.hex(32);
      const signature = r.raw(64);
      const kindCode = r.u8();
      const name = r.text(1, TASK_LIMITS.name, false, "name");
      if (r.error) break;
      if (outcomeCode !== 1 && outcomeCode !== 2) return fail("bad_outcome", `result outcome ${outcomeCode} is not 1 (succeeded) or 2 (failed)`);
      if (kindCode !== 1 && kindCode !== 2) return fail("bad_kind", `result kind ${kindCode} is not 1 (text) or 2 (file)`);
      if (size > TASK_LIMITS.payload) return fail("too_large", `result of ${size} bytes is larger than ${TASK_LIMITS.payload}`);
      if (seq === 0) return fail("bad_seq", "sequence numbers start at 1");
      message = { type: "result", taskId, seq, outcome: outcomeCode === 1 ? "succeeded" : "failed", deliveredAt, size, sha256, signature, kind: kindCode === 1 ? "text" : "file", name };
      break;
    }
    case TaskMessageType.Verdict: {
      const taskId = r.hex(16);
      const seq = r.u32();
      const outcomeCode = r.u8();
      const decidedAt = r.u64();
      const signature = r.raw(64);
      const reason = r.text(2, TASK_LIMITS.reason, true, "reason");
      if (r.error) break;
      if (outcomeCode !== 1 && outcomeCode !== 2) return fail("bad_outcome", `verdict ${outcomeCode} is not 1 (accepted) or 2 (rejected)`);
      if (seq === 0) return fail("bad_seq", "sequence numbers start at 1");
      message = { type: "verdict", taskId, seq, outcome: outcomeCode === 1 ? "accepted" : "rejected", decidedAt, signature, reason };
      break;
    }
    case TaskMessageType.Data: {
      const n = bytes.length - 2;
      if (n < 1) return fail("empty_data", "a DATA frame carries at least one byte");
      if (n > TASK_LIMITS.chunk) return fail("too_large", `a DATA frame carries at most ${TASK_LIMITS.chunk} bytes`);
      return ok({ type: "data", bytes: bytes.slice(2) });
    }
    case TaskMessageType.Reply: {
      const code = r.u8();
      const stateCode = r.u8();
      const text = r.text(2, TASK_LIMITS.reason, true, "message");
      if (r.error) break;
      if (!REPLY_CODES.has(code)) return fail("bad_code", `reply code ${code} is unknown`);
      const state = stateCode === 0 ? null : stateFromWire(stateCode);
      if (stateCode !== 0 && state === null) return fail("bad_state", `state ${stateCode} is unknown`);
      message = { type: "reply", code: code as ReplyCodeValue, state, message: text };
      break;
    }
    default:
      return fail("unknown_type", `task message type ${type} is unknown`);
  }
  if (r.error) return fail(r.error, `malformed task message (type ${type}): ${r.error.replace(/_/g, " ")}`);
  if (r.at !== bytes.length) return fail("trailing_bytes", `${bytes.length - r.at} bytes after the task message`);
  return ok(message!);
}

// ---- encoding ----------------------------------------------------------------

class Writer {
  private readonly parts: number[] = [];
  private chunks: Uint8Array[] = [];
  private length = 0;
  private flushNumbers(): void {
    if (this.parts.length === 0) return;
    this.chunks.push(Uint8Array.from(this.parts));
    this.length += this.parts.length;
    this.parts.length = 0;
  }
  u8(v: number): this {
    this.parts.push(v & 0xff);
    return this;
  }
  u32(v: number): this {
    this.parts.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
    return this;
  }
  u64(v: number): this {
    return this.u32(Math.floor(v / 0x1_0000_0000)).u32(v >>> 0);
  }
  raw(bytes: Uint8Array): this {
    this.flushNumbers();
    this.chunks.push(bytes);
    this.length += bytes.length;
    return this;
  }
  hex(text: string): this {
    return this.raw(Uint8Array.from(Buffer.from(text, "hex")));
  }
  text(lengthBytes: 1 | 2, text: string): this {
    const bytes = utf8.encode(text);
    if (lengthBytes === 1) this.u8(bytes.length);
    else this.u8(bytes.length >> 8).u8(bytes.length);
    return this.raw(bytes);
  }
  done(): Uint8Array {
    this.flushNumbers();
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

const HEX = (n: number) => new RegExp(`^[0-9a-f]{${n}}$`);
const HEX32 = HEX(32);
const HEX64 = HEX(64);

function need(condition: boolean, what: string): void {
  if (!condition) throw new RangeError(`cannot encode task message: ${what}`);
}

function checkText(text: string, max: number, multiline: boolean, field: string): void {
  const why = checkTaskText(text, max, multiline);
  need(why === null, `${field} ${why}`);
}

function checkU32(v: number, field: string): void {
  need(Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff, `${field} must be a u32`);
}

function checkTime(v: number, field: string): void {
  need(Number.isSafeInteger(v) && v >= 0, `${field} must be a time in ms`);
}

export function encodeTaskMessage(m: TaskMessage): Uint8Array {
  const w = new Writer().u8(TASK_WIRE_VERSION);
  switch (m.type) {
    case "submit":
      need(HEX32.test(m.taskId), "task id");
      need(HEX64.test(m.inputSha256), "input hash");
      for (const [f, v] of [["accept_within_ms", m.acceptWithinMs], ["deadline_ms", m.deadlineMs]] as const) need(Number.isInteger(v) && v >= 1 && v <= TASK_LIMITS.durationMs, `${f} out of range`);
      need(m.acceptWithinMs <= m.deadlineMs, "accept_within_ms past the deadline");
      need(Number.isInteger(m.inputSize) && m.inputSize >= 0 && m.inputSize <= TASK_LIMITS.payload, "input size");
      need(m.description.length > 0, "empty description");
      checkText(m.inputName, TASK_LIMITS.name, false, "input name");
      checkText(m.description, TASK_LIMITS.description, true, "description");
      return w.u8(TaskMessageType.Submit).hex(m.taskId).u32(m.acceptWithinMs).u32(m.deadlineMs).u32(m.inputSize).hex(m.inputSha256).text(1, m.inputName).text(2, m.description).done();
    case "update":
      need(HEX32.test(m.taskId), "task id");
      checkU32(m.seq, "seq");
      need(m.seq >= 1, "seq starts at 1");
      need(UPDATE_STATES.includes(m.state), `state ${m.state} cannot be sent as an update`);
      checkTime(m.at, "at");
      checkText(m.reason, TASK_LIMITS.reason, true, "reason");
      return w.u8(TaskMessageType.Update).hex(m.taskId).u32(m.seq).u8(stateToWire(m.state)).u64(m.at).text(2, m.reason).done();
    case "result":
      need(HEX32.test(m.taskId), "task id");
      checkU32(m.seq, "seq");
      need(m.seq >= 1, "seq starts at 1");
      need(m.outcome === "succeeded" || m.outcome === "failed", "outcome");
      checkTime(m.deliveredAt, "delivered_at");
      need(Number.isInteger(m.size) && m.size >= 0 && m.size <= TASK_LIMITS.payload, "result size");
      need(HEX64.test(m.sha256), "result hash");
      need(m.signature instanceof Uint8Array && m.signature.length === 64, "signature must be 64 bytes");
      need(m.kind === "text" || m.kind === "file", "kind");
      checkText(m.name, TASK_LIMITS.name, false, "name");
      return w
        .u8(TaskMessageType.Result)
        .hex(m.taskId)
        .u32(m.seq)
        .u8(m.outcome === "succeeded" ? 1 : 2)
        .u64(m.deliveredAt)
        .u32(m.size)
        .hex(m.sha256)
        .raw(m.signature)
        .u8(m.kind === "text" ? 1 : 2)
        .text(1, m.name)
        .done();
    case "verdict":
      need(HEX32.test(m.taskId), "task id");
      checkU32(m.seq, "seq");
      need(m.seq >= 1, "seq starts at 1");
      need(m.outcome === "accepted" || m.outcome === "rejected", "outcome");
      checkTime(m.decidedAt, "decided_at");
      need(m.signature instanceof Uint8Array && m.signature.length === 64, "signature must be 64 bytes");
      checkText(m.reason, TASK_LIMITS.reason, true, "reason");
      return w
        .u8(TaskMessageType.Verdict)
        .hex(m.taskId)
        .u32(m.seq)
        .u8(m.outcome === "accepted" ? 1 : 2)
        .u64(m.decidedAt)
        .raw(m.signature)
        .text(2, m.reason)
        .done();
    case "data":
      need(m.bytes.length >= 1 && m.bytes.length <= TASK_LIMITS.chunk, `data of 1-${TASK_LIMITS.chunk} bytes`);
      return w.u8(TaskMessageType.Data).raw(m.bytes).done();
    case "reply":
      need(REPLY_CODES.has(m.code), "reply code");
      checkText(m.message, TASK_LIMITS.reason, true, "message");
      return w
        .u8(TaskMessageType.Reply)
        .u8(m.code)
        .u8(m.state === null ? 0 : stateToWire(m.state))
        .text(2, m.message)
        .done();
  }
}

/** Cuts a text to at most `maxBytes` of UTF-8 without splitting a character, and blanks what a task text may not hold. */
export function clampTaskText(text: string, maxBytes: number, multiline = true): string {
  const cleaned = text.replace(new RegExp((multiline ? FORBIDDEN_MULTILINE : FORBIDDEN_LINE).source, "g"), " ").toWellFormed();
  const bytes = utf8.encode(cleaned);
  if (bytes.length <= maxBytes) return cleaned;
  let end = maxBytes;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return new TextDecoder().decode(bytes.subarray(0, end));
}

/** The SHA-256 of nothing, as an input hash for a task without input. */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// ---- the JSON view the daemon, the CLI and the SDK share -------------------

/** One task as `task_show` / `task_list` return it (IPC, `pilot --json task show`, the SDK). */
export interface TaskInfo {
  /** 32 lowercase hex characters. */
  id: string;
  /** `submitted`: this node asked; `received`: this node is the worker. */
  role: "submitted" | "received";
  /** The other node: the worker of a submitted task, the submitter of a received one. */
  peer: string;
  peer_node_id: number;
  description: string;
  state: TaskState;
  /** Why it is in this state (a decline's or cancel's reason, a refusal, an expiry). */
  reason: string;
  /** Submitter only: the worker has the task (false while it waits to be delivered). */
  delivered: boolean;
  /** Submitter only: this side cancelled or expired the task and the worker has not confirmed it yet. */
  provisional: boolean;
  created_at: number;
  updated_at: number;
  /** The worker must accept or decline by then (this node's clock). */
  accept_by: number;
  /** The task must be finished by then (this node's clock). */
  deadline_at: number;
  accepted_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  input: { size: number; sha256: string; name: string; file: string | null } | null;
  result: {
    outcome: TaskOutcome;
    kind: ResultKind;
    size: number;
    sha256: string;
    name: string;
    /** The worker's time of delivery (its clock). */
    delivered_at: number;
    /** The result itself when it is text of at most 64 KiB. */
    text: string | null;
    file: string | null;
    /** base64 of the worker's signature over the result statement. */
    worker_signature: string;
  } | null;
  verdict: {
    outcome: TaskVerdict;
    reason: string;
    decided_at: number;
    /** pending: waiting for the registry to take it; submitted; refused (by the registry, for good). */
    receipt: "pending" | "submitted" | "refused";
    receipt_error: string | null;
  } | null;
  /** Messages for the peer not yet delivered (the outbox). */
  undelivered: number;
  /** The last delivery problem, if any. */
  delivery_error: string | null;
}

/**
 * What the task service announces on the daemon's local event feed (SDK
 * `events()` / `on()`, `pilot events`, webhooks). Addresses are
 * `N:NNNN.HHHH.LLLL`; times are ms since the epoch on this node's clock.
 */
export interface TaskEventData {
  /** At the worker: a task arrived (it is queued until accepted or declined). */
  "task.received": { id: string; from: string; from_node_id: number; description: string; input_size: number; accept_by: number; deadline_at: number };
  /** On both ends, for every change of state (`previous` null: the task is new here). */
  "task.status": { id: string; role: "submitted" | "received"; peer: string; state: TaskState; previous: TaskState | null; provisional: boolean; reason: string };
  /** At the submitter: the worker delivered its result (`state` is the task's state after it). */
  "task.result": { id: string; from: string; outcome: TaskOutcome; kind: ResultKind; size: number; sha256: string; state: TaskState };
  /** On both ends: the submitter approved (`accepted`) or rejected the result. */
  "task.verdict": { id: string; role: "submitted" | "received"; peer: string; outcome: TaskVerdict; reason: string };
}

export type TaskEventType = keyof TaskEventData;
