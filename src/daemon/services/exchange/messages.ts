/**
 * The mailbox (port 1001, first frame 0x01-0x0F): agents send each other
 * typed messages (text, json, binary) that wait in the receiver's inbox until
 * read, whether or not an app is listening.
 *
 * Receiving: a message arrives as a `message` frame (header and first data)
 * and `message_more` frames up to its announced size. Its size is checked
 * against `message_max_size` and the sender's quota before the data is taken
 * (`too_large`, `quota_exceeded`); once complete it is checked against its
 * type (`invalid_message`), committed to the store, published on the local
 * event feed (`message.received`), and only then acknowledged. A re-delivery
 * of (sender, id) is acknowledged as a duplicate and not stored twice. The
 * sender is the stream's authenticated remote address.
 *
 * Sending: `message_send` puts the message in this node's durable outbox and
 * returns once the target acknowledged it, refused it, or the first attempt
 * failed (the courier keeps trying: see courier.ts), or `wait_ms` passed.
 *
 * Daemon calls: message_send, message_stage, message_wait, inbox_list,
 * inbox_read, inbox_clear, outbox_list, outbox_clear (shapes in
 * src/protocol/exchange-calls.ts).
 */
import { join } from "node:path";
import { formatAddress } from "../../../protocol/address.ts";
import {
  decodeUtf8,
  ExchangeError,
  idFromText,
  idToText,
  MESSAGE_TYPES,
  type ExchangeFrame,
  type MessageFrame,
  type MessageType,
} from "../../../protocol/exchange.ts";
import {
  CALL_CHUNK,
  type InboxClearResult,
  type InboxEntry,
  type InboxListResult,
  type InboxReadResult,
  type MessageSendResult,
  type MessageStageResult,
  type MessageWaitResult,
  type OutboxEntry,
  type OutboxListResult,
} from "../../../protocol/exchange-calls.ts";
import { NodeError } from "../../local-node.ts";
import type { DaemonService, ServiceContext } from "../service.ts";
import type { ExchangeConnection } from "./connection.ts";
import { Couriers, type Settlement } from "./courier.ts";
import { exchangeLimits, type ExchangeLimits } from "./limits.ts";
import { MESSAGE_OVERHEAD, MessageStore, type InboxRow, type OutboxRow } from "./message-store.ts";
import { ExchangePort } from "./port.ts";

type Params = Record<string, unknown>;

/** Queued messages not delivered within this are failed (`timeout`). */
const MESSAGE_TTL_MS = 7 * 24 * 3_600_000;
/** Staged message data (large messages cross IPC in chunks) is dropped after this. */
const STAGE_TTL_MS = 60_000;
const STAGES_MAX = 32;
const WAITERS_MAX = 1024;
const PREVIEW_CHARS = 80;

interface Stage {
  chunks: Uint8Array[];
  bytes: number;
  expires: number;
}

/** A message arriving on one stream. */
interface Incoming {
  readonly frame: MessageFrame;
  readonly parts: Uint8Array[];
  have: number;
  /** Refused already, or a duplicate: its remaining data is read and dropped. */
  readonly discard: boolean;
  /** Stored before (the sender did not get the ack): acknowledged as a duplicate once its data is read. */
  readonly duplicate?: boolean;
}

export class MessagesService implements DaemonService {
  readonly name = "messages";
  readonly limits: ExchangeLimits;
  private store: MessageStore | null = null;
  private couriers: Couriers | null = null;
  private unregister: (() => void) | null = null;
  private pruneTimer: ReturnType<typeof setInterval> | null = null;
  private readonly stages = new Map<string, Stage>();
  /** Bytes of messages still arriving, per sender and in all (they count against the quota). */
  private readonly reserved = new Map<string, number>();
  private reservedTotal = 0;
  private readonly replyWaiters = new Set<{ from: string; replyTo: string; resolve: (row: InboxRow) => void }>();
  private readonly settleWaiters = new Map<string, Set<(s: Settlement) => void>>();

  constructor(private readonly context: ServiceContext) {
    this.limits = exchangeLimits(context.config);
  }

  start(): void {
    this.store = MessageStore.open(this.context.dir ? join(this.context.dir, "messages.db") : null);
    this.store.prune(Date.now(), MESSAGE_TTL_MS);
    this.couriers = new Couriers(this.context, this.store, this.context.log, (id, s) => this.settled(id, s));
    this.unregister = ExchangePort.of(this.context).register("messages", {
      admits: (node) => this.context.admits(node),
      accept: (connection, first) => this.accept(connection, first),
    });
    this.couriers.kickAll();
    this.pruneTimer = setInterval(() => {
      for (const id of this.store?.prune(Date.now(), MESSAGE_TTL_MS) ?? []) this.settled(id, { state: "failed", error: { code: "timeout", message: "not delivered in time" } });
      const now = Date.now();
      for (const [key, s] of this.stages) if (s.expires < now) this.stages.delete(key);
    }, 60_000);
    this.pruneTimer.unref?.();
  }

  stop(): void {
    this.unregister?.();
    this.unregister = null;
    this.couriers?.stop();
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    for (const set of this.settleWaiters.values()) for (const fn of set) fn({ state: "retrying", error: { code: "closed", message: "the daemon is stopping" } });
    this.settleWaiters.clear();
    this.replyWaiters.clear();
    this.store?.close();
    this.store = null;
  }

  methods(): Record<string, (params: Params) => unknown> {
    return {
      message_send: (p) => this.send(p),
      message_stage: (p) => this.stage(p),
      message_wait: (p) => this.waitReply(p),
      inbox_list: (p) => this.list(p),
      inbox_read: (p) => this.read(p),
      inbox_clear: (p) => this.clear(p),
      outbox_list: (p) => this.outbox(p),
      outbox_clear: (p) => this.outboxClear(p),
    };
  }

  private get db(): MessageStore {
    if (!this.store) throw new NodeError("closed", "the messages service is not running");
    return this.store;
  }

  // ---- receiving --------------------------------------------------------------

  private accept(connection: ExchangeConnection, first: ExchangeFrame): void {
    const sender = formatAddress(connection.remote);
    let incoming: Incoming | null = null;
    const unreserve = () => {
      if (incoming && !incoming.discard) this.reserve(sender, -Math.max(incoming.frame.total, MESSAGE_OVERHEAD));
    };
    const onFrame = (frame: ExchangeFrame): void => {
      if (frame.kind === "message") {
        if (incoming) return connection.refuse(ExchangeError.BadFrame, "a new message before the last one was complete");
        incoming = this.begin(connection, sender, frame);
      } else if (frame.kind === "message_more") {
        if (!incoming) return connection.refuse(ExchangeError.BadFrame, "message data without a message");
        if (incoming.have + frame.data.length > incoming.frame.total) return connection.refuse(ExchangeError.BadFrame, "more message data than announced");
        incoming.have += frame.data.length;
        if (!incoming.discard) incoming.parts.push(frame.data);
      } else {
        return connection.refuse(ExchangeError.BadFrame, `${frame.kind} does not belong on a messages stream`);
      }
      if (incoming && incoming.have === incoming.frame.total) {
        const done = incoming;
        unreserve();
        incoming = null;
        if (done.duplicate) connection.send({ kind: "message_ack", id: done.frame.id, duplicate: true });
        else if (!done.discard) this.finish(connection, sender, done);
      }
    };
    connection.handler = {
      onFrame,
      onEnd: () => connection.end(),
      onClose: () => {
        unreserve();
        incoming = null;
      },
    };
    onFrame(first);
  }

  private reserve(sender: string, bytes: number): void {
    const v = (this.reserved.get(sender) ?? 0) + bytes;
    if (v <= 0) this.reserved.delete(sender);
    else this.reserved.set(sender, v);
    this.reservedTotal += bytes;
  }

  /** Checks a message's announced size before taking its data. */
  private begin(connection: ExchangeConnection, sender: string, frame: MessageFrame): Incoming {
    const refuse = (code: string, message: string): Incoming => {
      connection.send({ kind: "error", ref: frame.id, code, message });
      return { frame, parts: [], have: frame.data.length, discard: true };
    };
    const db = this.store;
    if (!db) return refuse(ExchangeError.Internal, "the messages service is stopping");
    // A re-delivery is acknowledged whatever the quota says now: it is stored already.
    if (db.has(sender, idToText(frame.id))) return { frame, parts: [], have: frame.data.length, discard: true, duplicate: true };
    if (frame.total > this.limits.messageMaxSize) return refuse(ExchangeError.TooLarge, `a message of ${frame.total} bytes is larger than this node accepts (${this.limits.messageMaxSize})`);
    const cost = Math.max(frame.total, MESSAGE_OVERHEAD);
    const peerFree = this.limits.messagesQuota - (db.inboxCost(sender) - db.evictable(sender)) - (this.reserved.get(sender) ?? 0);
    if (cost > peerFree) return refuse(ExchangeError.QuotaExceeded, `your share of this node's inbox is full (${this.limits.messagesQuota} bytes of unread messages); the receiver must read or clear messages first`);
    const totalFree = this.limits.messagesQuotaTotal - (db.inboxCost() - db.evictable()) - this.reservedTotal;
    if (cost > totalFree) return refuse(ExchangeError.QuotaExceeded, "this node's inbox is full; the receiver must read or clear messages first");
    // Memory, all peers together: what is being assembled is held until stored. Past the bound the message is refused
    // busy (its data read and dropped) and its sender's outbox retries; one message at a time always fits.
    if (this.reservedTotal > 0 && this.reservedTotal + cost > this.limits.messagesMemoryTotal) {
      return refuse(ExchangeError.Busy, `too many messages are arriving at this node at once (${this.limits.messagesMemoryTotal} bytes being received); retry in a moment`);
    }
    this.reserve(sender, cost);
    return { frame, parts: [frame.data], have: frame.data.length, discard: false };
  }

  private finish(connection: ExchangeConnection, sender: string, m: Incoming): void {
    const id = m.frame.id;
    const data = m.parts.length === 1 ? m.parts[0]! : Buffer.concat(m.parts);
    if (!validFor(m.frame.type, data)) {
      connection.send({ kind: "error", ref: id, code: ExchangeError.InvalidMessage, message: `the data is not valid ${m.frame.type === "json" ? "JSON" : "UTF-8 text"}` });
      return;
    }
    const db = this.store;
    if (!db) return connection.refuse(ExchangeError.Internal, "the messages service is stopping");
    const idText = idToText(id);
    const replyTo = m.frame.replyTo ? idToText(m.frame.replyTo) : null;
    const now = Date.now();
    let outcome;
    try {
      outcome = db.storeInbound(
        { sender, id: idText, type: m.frame.type, replyTo, data, now },
        { peer: this.limits.messagesQuota, total: this.limits.messagesQuotaTotal },
        { peer: this.reserved.get(sender) ?? 0, total: this.reservedTotal },
      );
    } catch (e) {
      this.context.log.warn("cannot store a message", { from: sender, error: (e as Error).message });
      connection.send({ kind: "error", ref: id, code: ExchangeError.Internal, message: "the receiver could not store the message; retry later" });
      return;
    }
    if (outcome.stored) {
      this.context.events.publish("message.received", { from: sender, id: idText, type: m.frame.type, bytes: data.length, ...(replyTo ? { reply_to: replyTo } : {}) });
      if (replyTo) {
        for (const w of this.replyWaiters) {
          if (w.from === sender && w.replyTo === replyTo) {
            this.replyWaiters.delete(w);
            const row = db.findReply(sender, replyTo);
            if (row) w.resolve(row);
          }
        }
      }
      connection.send({ kind: "message_ack", id, duplicate: false });
    } else if (outcome.duplicate) {
      connection.send({ kind: "message_ack", id, duplicate: true });
    } else {
      connection.send({ kind: "error", ref: id, code: ExchangeError.QuotaExceeded, message: outcome.scope === "peer" ? "your share of this node's inbox is full" : "this node's inbox is full" });
    }
  }

  // ---- sending ----------------------------------------------------------------

  private settled(id: string, s: Settlement): void {
    const set = this.settleWaiters.get(id);
    if (!set) return;
    this.settleWaiters.delete(id);
    for (const fn of set) fn(s);
  }

  private stage(p: Params): MessageStageResult {
    const data = base64Param(p, "data");
    const now = Date.now();
    let key = p.stage === undefined ? null : str(p, "stage");
    let s = key ? this.stages.get(key) : undefined;
    if (key && !s) throw new NodeError("not_found", `no staged message "${key}" (staged data is kept ${STAGE_TTL_MS / 1000} s)`);
    if (!s) {
      for (const [k, v] of this.stages) if (v.expires < now) this.stages.delete(k);
      if (this.stages.size >= STAGES_MAX) throw new NodeError("limit_exceeded", "too many messages being staged at once");
      key = crypto.randomUUID();
      s = { chunks: [], bytes: 0, expires: 0 };
      this.stages.set(key, s);
    }
    if (s.bytes + data.length > this.limits.messageMaxSize) {
      this.stages.delete(key!);
      throw new NodeError("too_large", `the message is larger than this node sends (message_max_size ${this.limits.messageMaxSize} bytes)`, "raise it with: pilot config --set message_max_size=8MiB (and restart the daemon), or send a file instead: pilot send-file");
    }
    s.chunks.push(data);
    s.bytes += data.length;
    s.expires = now + STAGE_TTL_MS;
    return { stage: key!, bytes: s.bytes };
  }

  private async send(p: Params): Promise<MessageSendResult> {
    const db = this.db;
    const type = messageType(p.type);
    let data: Uint8Array;
    if (p.stage !== undefined) {
      const key = str(p, "stage");
      const s = this.stages.get(key);
      if (!s) throw new NodeError("not_found", `no staged message "${key}"`);
      this.stages.delete(key);
      data = Buffer.concat(s.chunks);
    } else {
      data = base64Param(p, "data");
    }
    if (data.length > this.limits.messageMaxSize) {
      throw new NodeError("too_large", `a message of ${data.length} bytes is larger than this node sends (message_max_size ${this.limits.messageMaxSize} bytes)`, "send it as a file instead: pilot send-file");
    }
    if (!validFor(type, data)) throw new NodeError("invalid_argument", type === "json" ? "the data is not valid JSON" : "the data is not valid UTF-8 text", "send it with type binary");
    let replyTo: string | null = null;
    if (p.reply_to !== undefined && p.reply_to !== null) {
      const r = idFromText(str(p, "reply_to"));
      if (!r) throw new NodeError("invalid_argument", `reply_to "${String(p.reply_to)}" is not a message id`, "message ids look like 0190f4c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d");
      replyTo = idToText(r);
    }
    const waitMs = p.wait_ms === undefined ? 15_000 : int(p, "wait_ms", 0, 3_600_000);
    const address = await this.context.resolveTarget(str(p, "target"));
    const target = formatAddress(address);
    const cost = Math.max(data.length, MESSAGE_OVERHEAD);
    if (db.outboxCost(target) + cost > this.limits.messagesQuota) {
      throw new NodeError("quota_exceeded", `the outbox for ${target} is full of messages not yet delivered (limit messages_quota ${this.limits.messagesQuota} bytes)`, "see it with: pilot outbox");
    }
    if (db.outboxCost() + cost > this.limits.messagesQuotaTotal) {
      throw new NodeError("quota_exceeded", `the outbox is full of messages not yet delivered (limit messages_quota_total ${this.limits.messagesQuotaTotal} bytes)`, "see it with: pilot outbox");
    }
    const id = Bun.randomUUIDv7();
    const settled = waitMs > 0 ? this.whenSettled(id, waitMs) : Promise.resolve(null);
    db.enqueue({ id, target, type, replyTo, data, now: Date.now() });
    this.couriers!.kick(target);
    const s = await settled;
    const row = db.outboxEntry(id);
    const state = row?.state ?? "queued";
    const error = s && s.state !== "delivered" ? s.error : row?.error_code ? { code: row.error_code, message: row.error_message ?? "" } : null;
    if (state === "failed" && error) {
      const code = (["quota_exceeded", "too_large", "not_trusted"] as const).find((c) => c === error.code) ?? (error.code === ExchangeError.ServiceDisabled ? "connection_refused" : "internal");
      throw new NodeError(code, `${target} refused the message: ${error.message}`, refusalHint(error.code, target));
    }
    return { target, id, type, bytes: data.length, stored: state === "delivered", state, error: state === "delivered" ? null : error };
  }

  private whenSettled(id: string, ms: number): Promise<Settlement | null> {
    return new Promise((resolve) => {
      let set = this.settleWaiters.get(id);
      if (!set) this.settleWaiters.set(id, (set = new Set()));
      const done = (s: Settlement | null) => {
        clearTimeout(timer);
        set!.delete(done);
        resolve(s);
      };
      const timer = setTimeout(() => done(null), ms);
      set.add(done);
    });
  }

  private async waitReply(p: Params): Promise<MessageWaitResult> {
    const db = this.db;
    const from = formatAddress(await this.context.resolveTarget(str(p, "from")));
    const r = idFromText(str(p, "reply_to"));
    if (!r) throw new NodeError("invalid_argument", "reply_to is not a message id");
    const replyTo = idToText(r);
    const timeoutMs = int(p, "timeout_ms", 0, 24 * 3_600_000);
    const found = db.findReply(from, replyTo);
    if (found) return { message: entry(found) };
    if (this.replyWaiters.size >= WAITERS_MAX) throw new NodeError("limit_exceeded", "too many calls waiting for replies");
    const row = await new Promise<InboxRow | null>((resolve) => {
      const waiter = {
        from,
        replyTo,
        resolve: (row: InboxRow) => {
          clearTimeout(timer);
          resolve(row);
        },
      };
      const timer = setTimeout(() => {
        this.replyWaiters.delete(waiter);
        resolve(null);
      }, timeoutMs);
      this.replyWaiters.add(waiter);
    });
    if (!row) throw new NodeError("timeout", `no reply from ${from} to ${replyTo} within ${Math.round(timeoutMs / 1000)} s`, "it may still come: see pilot inbox");
    return { message: entry(row) };
  }

  // ---- the inbox ----------------------------------------------------------------

  private async list(p: Params): Promise<InboxListResult> {
    const db = this.db;
    const from = p.from === undefined ? undefined : formatAddress(await this.context.resolveTarget(str(p, "from")));
    const since = p.since_ms === undefined ? undefined : Date.now() - int(p, "since_ms", 0, 100 * 365 * 24 * 3_600_000);
    const limit = p.limit === undefined ? 50 : int(p, "limit", 1, 10_000);
    const { rows, total } = db.list({ from, since, unread: p.unread === true, limit });
    return { messages: rows.map(entry), total, unread: db.unreadCount(), bytes: db.inboxBytes() };
  }

  private async one(p: Params): Promise<InboxRow> {
    const db = this.db;
    const id = idFromText(str(p, "id"));
    if (!id) throw new NodeError("invalid_argument", `"${String(p.id)}" is not a message id`, "message ids look like 0190f4c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d (see pilot inbox)");
    const from = p.from === undefined ? undefined : formatAddress(await this.context.resolveTarget(str(p, "from")));
    const rows = db.find(idToText(id), from);
    if (rows.length === 0) throw new NodeError("not_found", `no message ${idToText(id)} in the inbox${from ? ` from ${from}` : ""}`, "list messages with: pilot inbox");
    if (rows.length > 1) throw new NodeError("invalid_argument", `${rows.length} senders used message id ${idToText(id)}`, `name the sender: --from ${rows.map((r) => r.sender).join(" or --from ")}`);
    return rows[0]!;
  }

  private async read(p: Params): Promise<InboxReadResult> {
    const row = await this.one(p);
    const offset = p.offset === undefined ? 0 : int(p, "offset", 0, row.bytes);
    const data = this.db.dataOf(row.seq, offset, CALL_CHUNK);
    if (offset === 0) this.db.markRead(row.seq, Date.now());
    return { message: { ...entry(row), read: true }, offset, data: Buffer.from(data).toString("base64"), more: offset + data.length < row.bytes };
  }

  private async clear(p: Params): Promise<InboxClearResult> {
    const db = this.db;
    const before = p.before_ms === undefined ? undefined : Date.now() - int(p, "before_ms", 0, 100 * 365 * 24 * 3_600_000);
    const from = p.from === undefined ? undefined : formatAddress(await this.context.resolveTarget(str(p, "from")));
    return db.clear({ before, from }, Date.now());
  }

  private outbox(p: Params): OutboxListResult {
    const limit = p.limit === undefined ? 50 : int(p, "limit", 1, 10_000);
    const { rows, queued, failed } = this.db.outboxList(limit);
    return { messages: rows.map(outboxEntry), queued, failed };
  }

  private outboxClear(p: Params): { removed: number } {
    return { removed: this.db.outboxClear(p.cancel === true) };
  }
}

export function messagesService(context: ServiceContext): DaemonService {
  return new MessagesService(context);
}

// ---- helpers ------------------------------------------------------------------

function validFor(type: MessageType, data: Uint8Array): boolean {
  if (type === "binary") return true;
  const text = decodeUtf8(data);
  if (text === null) return false;
  if (type === "text") return true;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function preview(row: InboxRow): string | null {
  if (!row.preview) return null;
  const text = new TextDecoder().decode(row.preview).replace(/\uFFFD+$/, "");
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]+/g, " ");
  return clean.length > PREVIEW_CHARS ? clean.slice(0, PREVIEW_CHARS - 1) + "…" : clean;
}

function entry(row: InboxRow): InboxEntry {
  return {
    id: row.id,
    from: row.sender,
    type: row.type,
    bytes: row.bytes,
    received_at: new Date(row.received_at).toISOString(),
    read: row.read_at !== null,
    reply_to: row.reply_to,
    preview: preview(row),
  };
}

function outboxEntry(row: OutboxRow): OutboxEntry {
  return {
    id: row.id,
    target: row.target,
    type: row.type,
    bytes: row.bytes,
    created_at: new Date(row.created_at).toISOString(),
    state: row.state,
    attempts: row.attempts,
    next_attempt_at: row.state === "queued" && row.next_attempt_at !== null ? new Date(row.next_attempt_at).toISOString() : null,
    done_at: row.done_at === null ? null : new Date(row.done_at).toISOString(),
    error: row.error_code ? { code: row.error_code, message: row.error_message ?? "" } : null,
  };
}

function refusalHint(code: string, target: string): string | undefined {
  switch (code) {
    case ExchangeError.QuotaExceeded:
      return `${target} must read or clear its inbox before it takes more from you`;
    case ExchangeError.TooLarge:
      return "send it as a file instead: pilot send-file";
    case ExchangeError.NotTrusted:
      return `${target} takes messages only from nodes it trusts: ask with pilot handshake ${target} "why"`;
    case ExchangeError.ServiceDisabled:
      return `${target} runs with its messages service switched off`;
    default:
      return undefined;
  }
}

function str(p: Params, key: string): string {
  const v = p[key];
  if (typeof v !== "string" || v === "") throw new NodeError("invalid_argument", `"${key}" must be a non-empty string`);
  return v;
}

function int(p: Params, key: string, min: number, max: number): number {
  const v = p[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw new NodeError("invalid_argument", `"${key}" must be a whole number from ${min} to ${max}`);
  return v;
}

function base64Param(p: Params, key: string): Uint8Array {
  const v = p[key];
  if (typeof v !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0) throw new NodeError("invalid_argument", `"${key}" must be base64`);
  if (v.length > Math.ceil(CALL_CHUNK / 3) * 4 + 4) throw new NodeError("invalid_argument", `"${key}" carries more than ${CALL_CHUNK} bytes: stage larger messages with message_stage`);
  return new Uint8Array(Buffer.from(v, "base64"));
}

function messageType(v: unknown): MessageType {
  if (v === undefined) return "text";
  if (typeof v !== "string" || !(MESSAGE_TYPES as readonly string[]).includes(v)) throw new NodeError("invalid_argument", `type must be one of ${MESSAGE_TYPES.join(", ")}`);
  return v as MessageType;
}
