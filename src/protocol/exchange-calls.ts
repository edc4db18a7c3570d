/**
 * The daemon calls of the messages and files services, as JSON over IPC: the
 * shapes the daemon answers and the SDK (src/driver/exchange.ts) and CLI read.
 * Shared below both, so neither imports the other. Times are ISO 8601 strings,
 * binary data is base64, ids are UUID strings.
 *
 * An IPC frame holds at most 256 KiB, so message data crosses IPC in chunks
 * of at most CALL_CHUNK bytes: `message_stage` collects a large message before
 * `message_send`, `inbox_read` answers one chunk at a time (`offset`, `more`).
 */
import type { MessageType } from "./exchange.ts";

export type { MessageType };

/** Bytes of message data in one daemon call (base64 keeps it under the IPC frame limit). */
export const CALL_CHUNK = 128 * 1024;

export type OutboxState = "queued" | "delivered" | "failed";

export interface CallError {
  readonly code: string;
  readonly message: string;
}

/** `message_send {target, type, data? (base64), stage?, reply_to?, wait_ms?}` */
export interface MessageSendResult {
  /** The target's full address. */
  readonly target: string;
  readonly id: string;
  readonly type: MessageType;
  readonly bytes: number;
  /** True once the target acknowledged that it stored the message durably. */
  readonly stored: boolean;
  /** queued: in this node's outbox, delivery continues (across restarts); delivered; failed: refused for good (see error). */
  readonly state: OutboxState;
  /** Why the last attempt failed (queued) or why it was refused (failed). */
  readonly error: CallError | null;
}

/** `message_stage {stage?, data (base64)}`: appends to a staged message (kept 60 s). */
export interface MessageStageResult {
  readonly stage: string;
  readonly bytes: number;
}

/** One message in the inbox. */
export interface InboxEntry {
  readonly id: string;
  /** The sender: the authenticated address of the stream it came on. */
  readonly from: string;
  readonly type: MessageType;
  readonly bytes: number;
  readonly received_at: string;
  readonly read: boolean;
  readonly reply_to: string | null;
  /** The first characters of a text or json message (null for binary). */
  readonly preview: string | null;
}

/** `inbox_list {from?, since_ms?, unread?, limit?}` */
export interface InboxListResult {
  /** Newest first. */
  readonly messages: InboxEntry[];
  /** Messages that match, before the limit. */
  readonly total: number;
  /** Unread messages in the whole inbox. */
  readonly unread: number;
  /** Bytes the whole inbox holds. */
  readonly bytes: number;
}

/** `inbox_read {id, from?, offset?}`: one chunk of a message's data; marks it read. */
export interface InboxReadResult {
  readonly message: InboxEntry;
  readonly offset: number;
  /** base64, at most CALL_CHUNK bytes. */
  readonly data: string;
  readonly more: boolean;
}

/** `inbox_clear {before_ms?, from?}` */
export interface InboxClearResult {
  readonly cleared: number;
  readonly bytes: number;
}

/** `message_wait {from, reply_to, timeout_ms}`: the first message from `from` that replies to `reply_to`. */
export interface MessageWaitResult {
  readonly message: InboxEntry;
}

/** One message in this node's outbox (`outbox_list`). */
export interface OutboxEntry {
  readonly id: string;
  readonly target: string;
  readonly type: MessageType;
  readonly bytes: number;
  readonly created_at: string;
  readonly state: OutboxState;
  readonly attempts: number;
  readonly next_attempt_at: string | null;
  readonly done_at: string | null;
  readonly error: CallError | null;
}

export interface OutboxListResult {
  readonly messages: OutboxEntry[];
  readonly queued: number;
  readonly failed: number;
}

/** `file_send {target, path, name?, timeout_ms?, ref?}` */
export interface FileSendResult {
  readonly target: string;
  /** The name the receiver stored it under (sanitised, maybe with a suffix). */
  readonly name: string;
  readonly bytes: number;
  /** Hex. */
  readonly sha256: string;
  /** Bytes the receiver already held from an earlier attempt (not sent again). */
  readonly resumed_from: number;
  readonly seconds: number;
}

/** A transfer in progress (`file_transfers`). */
export interface FileTransferInfo {
  /** The caller's reference for an outgoing transfer (file_send's `ref`), else the transfer id. */
  readonly ref: string;
  readonly direction: "out" | "in";
  readonly peer: string;
  readonly name: string;
  readonly size: number;
  /** Bytes done so far (sent, or durably received), including resumed_from. */
  readonly bytes: number;
  readonly resumed_from: number;
  readonly started_at: string;
}

export interface FileTransfersResult {
  readonly transfers: FileTransferInfo[];
}

/** A file in PILOT_HOME/received (`files_received`). */
export interface ReceivedFile {
  readonly name: string;
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly from: string;
  readonly received_at: string;
}

export interface ReceivedListResult {
  readonly dir: string;
  /** Newest first. */
  readonly files: ReceivedFile[];
  readonly total: number;
  readonly bytes: number;
  /** Partial transfers kept for resuming. */
  readonly partial: number;
}

/** `files_clear {}`: removes the received files (and their records). */
export interface ReceivedClearResult {
  readonly cleared: number;
  readonly bytes: number;
}
