/**
 * Messages and files between agents, on the Driver (port 1001 services of the
 * daemons; docs/SERVICES.md).
 *
 * ```ts
 * const pilot = await connect();
 * const sent = await pilot.sendMessage("agent-b", { task: "summarize", url }); // json
 * console.log(sent.id, sent.stored);            // stored: agent-b acknowledged it durably
 * const reply = await pilot.inbox.waitForReply("agent-b", sent.id, 60_000);
 * console.log(reply.json());
 *
 * for (const m of (await pilot.inbox.list({ unread: true })).messages) {
 *   const full = await pilot.inbox.read(m.id);  // marks it read
 *   console.log(m.from, full.text());
 * }
 *
 * const file = await pilot.sendFile("agent-b", "./report.pdf", { onProgress: (p) => console.log(p.bytes, p.size) });
 * console.log(file.sha256, file.resumed_from);  // resumed_from > 0: an earlier try's bytes were kept
 * console.log((await pilot.received()).files);  // what arrived here, under PILOT_HOME/received
 * ```
 *
 * A message goes into the local daemon's durable outbox first: `sendMessage`
 * resolves once the target acknowledged it (`stored: true`), or with
 * `state: "queued"` when it is not reachable yet (delivery continues, also
 * across restarts: see `outbox()`). A refusal rejects with a NodeError whose
 * code says why: `quota_exceeded`, `too_large`, `not_trusted`,
 * `connection_refused` (service switched off there).
 *
 * The daemon reads the file for `sendFile` itself (the path is made absolute
 * here), so the file must be readable by the daemon's user.
 */
import { resolve as resolvePath } from "node:path";
import {
  CALL_CHUNK,
  type FileSendResult,
  type FileTransfersResult,
  type InboxClearResult,
  type InboxEntry,
  type InboxListResult,
  type InboxReadResult,
  type MessageSendResult,
  type MessageStageResult,
  type MessageType,
  type MessageWaitResult,
  type OutboxListResult,
  type ReceivedClearResult,
  type ReceivedListResult,
} from "../protocol/exchange-calls.ts";
import { Driver } from "./driver.ts";

export type {
  FileSendResult,
  InboxClearResult,
  InboxEntry,
  InboxListResult,
  MessageSendResult,
  MessageType,
  OutboxListResult,
  ReceivedClearResult,
  ReceivedListResult,
};

export interface SendMessageOptions {
  /** Default: text for a string, binary for bytes, json for anything else (sent as JSON.stringify). */
  type?: MessageType;
  /** The id of the message this one answers. */
  replyTo?: string;
  /** How long to wait for the target's acknowledgement before resolving with state "queued" (default 15000; 0: do not wait). */
  waitMs?: number;
}

export interface InboxListOptions {
  /** Only from this node (address, node id or hostname). */
  from?: string;
  /** Only messages that arrived within this many ms. */
  sinceMs?: number;
  unread?: boolean;
  /** At most this many, newest first (default 50). */
  limit?: number;
}

/** A message with its data. */
export interface InboxMessage extends InboxEntry {
  readonly data: Uint8Array;
  /** The data as UTF-8 text. */
  text(): string;
  /** The data parsed as JSON. */
  json<T = unknown>(): T;
}

export interface SendFileOptions {
  /** The name to offer (default: the file's own name); the receiver sanitises it. */
  name?: string;
  /** Give up after this long without progress, in ms (default 30000); until then cuts are resumed automatically. */
  timeoutMs?: number;
  /** Called about four times a second while the file goes out. */
  onProgress?: (progress: { bytes: number; size: number }) => void;
}

function toBase64(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64");
}

function withData(entry: InboxEntry, data: Uint8Array): InboxMessage {
  return {
    ...entry,
    data,
    text: () => new TextDecoder().decode(data),
    json: <T>() => JSON.parse(new TextDecoder().decode(data)) as T,
  };
}

/** Sends a message (see SendMessageOptions for types and waiting). */
export async function sendMessage(driver: Driver, target: string, data: string | Uint8Array | unknown, options: SendMessageOptions = {}): Promise<MessageSendResult> {
  let type = options.type;
  let bytes: Uint8Array;
  if (typeof data === "string") {
    type ??= "text";
    bytes = new TextEncoder().encode(data);
  } else if (data instanceof Uint8Array) {
    type ??= "binary";
    bytes = data;
  } else {
    type ??= "json";
    const text = JSON.stringify(data);
    if (text === undefined) throw new TypeError("sendMessage: the data cannot be sent as JSON");
    bytes = new TextEncoder().encode(text);
  }
  const params: Record<string, unknown> = { target, type };
  if (options.replyTo !== undefined) params.reply_to = options.replyTo;
  if (options.waitMs !== undefined) params.wait_ms = options.waitMs;
  if (bytes.length <= CALL_CHUNK) {
    params.data = toBase64(bytes);
  } else {
    let stage: string | undefined;
    for (let at = 0; at < bytes.length; at += CALL_CHUNK) {
      const r = (await driver.call("message_stage", { ...(stage ? { stage } : {}), data: toBase64(bytes.subarray(at, at + CALL_CHUNK)) })) as MessageStageResult;
      stage = r.stage;
    }
    params.stage = stage;
  }
  return (await driver.call("message_send", params)) as MessageSendResult;
}

/** The inbox of this node: messages peers sent, kept until cleared. */
export class Inbox {
  constructor(private readonly driver: Driver) {}

  list(options: InboxListOptions = {}): Promise<InboxListResult> {
    const params: Record<string, unknown> = {};
    if (options.from !== undefined) params.from = options.from;
    if (options.sinceMs !== undefined) params.since_ms = Math.round(options.sinceMs);
    if (options.unread) params.unread = true;
    if (options.limit !== undefined) params.limit = options.limit;
    return this.driver.call("inbox_list", params) as Promise<InboxListResult>;
  }

  /** One message with its data; marks it read. `from` picks among senders that used the same id. */
  async read(id: string, options: { from?: string } = {}): Promise<InboxMessage> {
    const parts: Uint8Array[] = [];
    let offset = 0;
    let entry: InboxEntry;
    for (;;) {
      const r = (await this.driver.call("inbox_read", { id, offset, ...(options.from !== undefined ? { from: options.from } : {}) })) as InboxReadResult;
      entry = r.message;
      const chunk = new Uint8Array(Buffer.from(r.data, "base64"));
      parts.push(chunk);
      offset += chunk.length;
      if (!r.more || chunk.length === 0) break;
    }
    return withData(entry, parts.length === 1 ? parts[0]! : new Uint8Array(Buffer.concat(parts)));
  }

  /** Deletes messages: all, or those older than `beforeMs` ms, or from one node. */
  clear(options: { beforeMs?: number; from?: string } = {}): Promise<InboxClearResult> {
    const params: Record<string, unknown> = {};
    if (options.beforeMs !== undefined) params.before_ms = Math.round(options.beforeMs);
    if (options.from !== undefined) params.from = options.from;
    return this.driver.call("inbox_clear", params) as Promise<InboxClearResult>;
  }

  /** Waits for the first message from `from` that replies to `id` (and reads it); rejects with `timeout`. */
  async waitForReply(from: string, id: string, timeoutMs: number): Promise<InboxMessage> {
    const r = (await this.driver.call("message_wait", { from, reply_to: id, timeout_ms: Math.round(timeoutMs) })) as MessageWaitResult;
    return this.read(r.message.id, { from: r.message.from });
  }

  /** What this node sent: queued (delivery continues), delivered, failed (with the reason). */
  outbox(options: { limit?: number } = {}): Promise<OutboxListResult> {
    return this.driver.call("outbox_list", options.limit !== undefined ? { limit: options.limit } : {}) as Promise<OutboxListResult>;
  }
}

/** Sends a file; resolves once the target stored it durably and its SHA-256 matched. */
export async function sendFile(driver: Driver, target: string, path: string, options: SendFileOptions = {}): Promise<FileSendResult> {
  const ref = crypto.randomUUID();
  const params: Record<string, unknown> = { target, path: resolvePath(path), ref };
  if (options.name !== undefined) params.name = options.name;
  if (options.timeoutMs !== undefined) params.timeout_ms = Math.round(options.timeoutMs);
  const call = driver.call("file_send", params) as Promise<FileSendResult>;
  if (!options.onProgress) return call;
  const onProgress = options.onProgress;
  let done = false;
  const poll = (async () => {
    while (!done) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      if (done) break;
      try {
        const r = (await driver.call("file_transfers")) as FileTransfersResult;
        const t = r.transfers.find((x) => x.ref === ref);
        if (t && !done) onProgress({ bytes: t.bytes, size: t.size });
      } catch {
        break;
      }
    }
  })();
  try {
    const result = await call;
    onProgress({ bytes: result.bytes, size: result.bytes });
    return result;
  } finally {
    done = true;
    await poll;
  }
}

declare module "./driver.ts" {
  interface Driver {
    /** Sends a message to `target`'s inbox (see src/driver/exchange.ts). */
    sendMessage(target: string, data: string | Uint8Array | unknown, options?: SendMessageOptions): Promise<MessageSendResult>;
    /** This node's inbox (list, read, clear, waitForReply, outbox). */
    readonly inbox: Inbox;
    /** Sends a file to `target` (streamed, verified, resumable). */
    sendFile(target: string, path: string, options?: SendFileOptions): Promise<FileSendResult>;
    /** Files that arrived at this node. */
    received(): Promise<ReceivedListResult>;
    /** Removes every received file (and its record). */
    clearReceived(): Promise<ReceivedClearResult>;
  }
}

Driver.prototype.sendMessage = function (this: Driver, target: string, data: unknown, options?: SendMessageOptions) {
  return sendMessage(this, target, data, options);
};
Object.defineProperty(Driver.prototype, "inbox", {
  configurable: true,
  get(this: Driver) {
    return new Inbox(this);
  },
});
Driver.prototype.sendFile = function (this: Driver, target: string, path: string, options?: SendFileOptions) {
  return sendFile(this, target, path, options);
};
Driver.prototype.received = function (this: Driver) {
  return this.call("files_received") as Promise<ReceivedListResult>;
};
Driver.prototype.clearReceived = function (this: Driver) {
  return this.call("files_clear") as Promise<ReceivedClearResult>;
};
