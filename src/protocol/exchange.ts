/**
 * The data exchange on port 1001: messages (the mailbox) and file transfers.
 * Frames travel as `u32 length | body` over one stream (the daemon's
 * FramedStream); this module is the body codec. Pure: decoders return a
 * Result on hostile input and never throw; encoders throw RangeError only on
 * values the caller built wrongly. All integers are big-endian.
 *
 *   message        0x01  c->s  [kind][id 16][type u8][flags u8][reply_to 16 if flags&1][total u32][data ...]
 *   message_more   0x02  c->s  [kind][data 1+]                       the rest of the last message's data
 *   message_ack    0x03  s->c  [kind][id 16][status u8]               0 stored, 1 duplicate (stored before)
 *   file_offer     0x10  c->s  [kind][transfer 16][size u64][name_len u16][name utf8]
 *   file_accept    0x11  s->c  [kind][transfer 16][offset u64]        send from `offset` (what is durably stored)
 *   file_data      0x12  c->s  [kind][data 1+]
 *   file_end       0x13  c->s  [kind][sha256 32]                      of the whole file
 *   file_done      0x14  s->c  [kind][transfer 16][sha256 32][size u64][name_len u16][name utf8]  durably stored as `name`
 *   error          0x7F  s->c  [kind][ref 16][code_len u8][code ascii][message utf8]               ref: message id or transfer (zeros: none)
 *
 * The first frame of a stream says which service it is for (0x01-0x0F
 * messages, 0x10-0x1F files). There is no sender field anywhere: the sender
 * is the stream's authenticated remote node. `type`: 1 text (UTF-8), 2 json
 * (UTF-8 JSON), 3 binary. A name is 1-1024 bytes of UTF-8 and is only a
 * suggestion: the receiver sanitises it and never uses it as a path.
 */
import { fail, ok, type Result } from "./result.ts";

export const ExchangeKind = {
  Message: 0x01,
  MessageMore: 0x02,
  MessageAck: 0x03,
  FileOffer: 0x10,
  FileAccept: 0x11,
  FileData: 0x12,
  FileEnd: 0x13,
  FileDone: 0x14,
  Error: 0x7f,
} as const;

/** Largest frame body on port 1001: a data chunk of EXCHANGE_CHUNK bytes plus its header. */
export const EXCHANGE_CHUNK = 256 * 1024;
export const EXCHANGE_MAX_FRAME = EXCHANGE_CHUNK + 64;
export const ID_SIZE = 16;
export const SHA256_SIZE = 32;
export const NAME_MAX_BYTES = 1024;
export const ERROR_MESSAGE_MAX_BYTES = 1024;
/** Largest message a sender may announce (the receiver's own limit is usually far lower). */
export const MESSAGE_TOTAL_MAX = 0xffff_ffff;

export type MessageType = "text" | "json" | "binary";
export const MESSAGE_TYPES: readonly MessageType[] = ["text", "json", "binary"];
const TYPE_CODE: Record<MessageType, number> = { text: 1, json: 2, binary: 3 };

/** Which service a stream is for, from its first frame's kind byte. */
export type ExchangeService = "messages" | "files";

export function serviceOfKind(kind: number): ExchangeService | null {
  if (kind >= 0x01 && kind <= 0x0f) return "messages";
  if (kind >= 0x10 && kind <= 0x1f) return "files";
  return null;
}

export interface MessageFrame {
  readonly kind: "message";
  readonly id: Uint8Array;
  readonly type: MessageType;
  readonly replyTo: Uint8Array | null;
  /** Bytes of data in all: this frame's plus the message_more frames that follow. */
  readonly total: number;
  readonly data: Uint8Array;
}
export interface MessageMoreFrame {
  readonly kind: "message_more";
  readonly data: Uint8Array;
}
export interface MessageAckFrame {
  readonly kind: "message_ack";
  readonly id: Uint8Array;
  readonly duplicate: boolean;
}
export interface FileOfferFrame {
  readonly kind: "file_offer";
  readonly transfer: Uint8Array;
  readonly size: number;
  readonly name: string;
}
export interface FileAcceptFrame {
  readonly kind: "file_accept";
  readonly transfer: Uint8Array;
  readonly offset: number;
}
export interface FileDataFrame {
  readonly kind: "file_data";
  readonly data: Uint8Array;
}
export interface FileEndFrame {
  readonly kind: "file_end";
  readonly sha256: Uint8Array;
}
export interface FileDoneFrame {
  readonly kind: "file_done";
  readonly transfer: Uint8Array;
  readonly sha256: Uint8Array;
  readonly size: number;
  readonly name: string;
}
export interface ErrorFrame {
  readonly kind: "error";
  /** The message id or transfer the refusal is about; all zeros when it is about the stream. */
  readonly ref: Uint8Array;
  /** Lower-case ASCII, e.g. quota_exceeded, too_large, not_trusted, service_disabled. */
  readonly code: string;
  readonly message: string;
}

export type ExchangeFrame =
  | MessageFrame
  | MessageMoreFrame
  | MessageAckFrame
  | FileOfferFrame
  | FileAcceptFrame
  | FileDataFrame
  | FileEndFrame
  | FileDoneFrame
  | ErrorFrame;

/** The refusal codes a receiver sends in error frames. */
export const ExchangeError = {
  /** The peer's share (or the node's total) of storage is used up. */
  QuotaExceeded: "quota_exceeded",
  /** Larger than this node accepts at all. */
  TooLarge: "too_large",
  /** The service takes only trusted nodes (or is not opened to strangers). */
  NotTrusted: "not_trusted",
  /** The service is switched off on this node. */
  ServiceDisabled: "service_disabled",
  /** Too many streams from this peer (or in all) right now: retry later. */
  Busy: "busy",
  /** A frame that does not decode or does not belong here. */
  BadFrame: "bad_frame",
  /** A message whose data does not match its type (text not UTF-8, json not JSON). */
  InvalidMessage: "invalid_message",
  /** The file's SHA-256 does not match what arrived. */
  ChecksumMismatch: "checksum_mismatch",
  /** The stream was idle too long. */
  Timeout: "timeout",
  Internal: "internal",
} as const;

export const ZERO_REF = new Uint8Array(ID_SIZE);

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const CODE_PATTERN = /^[a-z0-9_]{1,64}$/;

/** Strict UTF-8 decoding: null for bytes that are not UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return null;
  }
}

// ---- encoding ---------------------------------------------------------------

function check(condition: boolean, message: string): void {
  if (!condition) throw new RangeError(message);
}

function checkId(id: Uint8Array, what: string): void {
  check(id.length === ID_SIZE, `${what} must be ${ID_SIZE} bytes, got ${id.length}`);
}

function checkU64(n: number, what: string): void {
  check(Number.isSafeInteger(n) && n >= 0, `${what} must be a whole number from 0 to 2^53-1, got ${n}`);
}

function nameBytes(name: string): Uint8Array {
  const bytes = utf8.encode(name);
  check(bytes.length >= 1 && bytes.length <= NAME_MAX_BYTES, `a name must be 1-${NAME_MAX_BYTES} bytes of UTF-8, got ${bytes.length}`);
  return bytes;
}

function setU64(view: DataView, at: number, n: number): void {
  view.setUint32(at, Math.floor(n / 0x1_0000_0000));
  view.setUint32(at + 4, n >>> 0);
}

function getU64(view: DataView, at: number): number | null {
  const high = view.getUint32(at);
  if (high > 0x1f_ffff) return null; // above 2^53-1
  return high * 0x1_0000_0000 + view.getUint32(at + 4);
}

function frame(kind: number, size: number): { out: Uint8Array; view: DataView } {
  const out = new Uint8Array(1 + size);
  out[0] = kind;
  return { out, view: new DataView(out.buffer) };
}

/**
 * An empty file_data frame body for `size` bytes of data, to be filled in place
 * (`body.subarray(1)`): what encodeExchangeFrame makes of a file_data frame,
 * without copying data into it (the sender reads the file straight into it).
 */
export function fileDataFrameBody(size: number): Uint8Array {
  check(size >= 1 && size <= EXCHANGE_CHUNK, `file_data needs 1 to ${EXCHANGE_CHUNK} bytes`);
  return frame(ExchangeKind.FileData, size).out;
}

export function encodeExchangeFrame(f: ExchangeFrame): Uint8Array {
  switch (f.kind) {
    case "message": {
      checkId(f.id, "message id");
      if (f.replyTo) checkId(f.replyTo, "reply_to");
      check(Number.isInteger(f.total) && f.total >= f.data.length && f.total <= MESSAGE_TOTAL_MAX, `message total ${f.total} must be at least the data's ${f.data.length} bytes and at most ${MESSAGE_TOTAL_MAX}`);
      const head = ID_SIZE + 2 + (f.replyTo ? ID_SIZE : 0) + 4;
      const { out, view } = frame(ExchangeKind.Message, head + f.data.length);
      out.set(f.id, 1);
      out[1 + ID_SIZE] = TYPE_CODE[f.type];
      out[2 + ID_SIZE] = f.replyTo ? 1 : 0;
      let at = 3 + ID_SIZE;
      if (f.replyTo) {
        out.set(f.replyTo, at);
        at += ID_SIZE;
      }
      view.setUint32(at, f.total);
      out.set(f.data, at + 4);
      return out;
    }
    case "message_more":
    case "file_data": {
      check(f.data.length >= 1, `${f.kind} needs at least one byte`);
      const { out } = frame(f.kind === "message_more" ? ExchangeKind.MessageMore : ExchangeKind.FileData, f.data.length);
      out.set(f.data, 1);
      return out;
    }
    case "message_ack": {
      checkId(f.id, "message id");
      const { out } = frame(ExchangeKind.MessageAck, ID_SIZE + 1);
      out.set(f.id, 1);
      out[1 + ID_SIZE] = f.duplicate ? 1 : 0;
      return out;
    }
    case "file_offer": {
      checkId(f.transfer, "transfer");
      checkU64(f.size, "file size");
      const name = nameBytes(f.name);
      const { out, view } = frame(ExchangeKind.FileOffer, ID_SIZE + 8 + 2 + name.length);
      out.set(f.transfer, 1);
      setU64(view, 1 + ID_SIZE, f.size);
      view.setUint16(9 + ID_SIZE, name.length);
      out.set(name, 11 + ID_SIZE);
      return out;
    }
    case "file_accept": {
      checkId(f.transfer, "transfer");
      checkU64(f.offset, "offset");
      const { out, view } = frame(ExchangeKind.FileAccept, ID_SIZE + 8);
      out.set(f.transfer, 1);
      setU64(view, 1 + ID_SIZE, f.offset);
      return out;
    }
    case "file_end": {
      check(f.sha256.length === SHA256_SIZE, `sha256 must be ${SHA256_SIZE} bytes`);
      const { out } = frame(ExchangeKind.FileEnd, SHA256_SIZE);
      out.set(f.sha256, 1);
      return out;
    }
    case "file_done": {
      checkId(f.transfer, "transfer");
      check(f.sha256.length === SHA256_SIZE, `sha256 must be ${SHA256_SIZE} bytes`);
      checkU64(f.size, "file size");
      const name = nameBytes(f.name);
      const { out, view } = frame(ExchangeKind.FileDone, ID_SIZE + SHA256_SIZE + 8 + 2 + name.length);
      out.set(f.transfer, 1);
      out.set(f.sha256, 1 + ID_SIZE);
      setU64(view, 1 + ID_SIZE + SHA256_SIZE, f.size);
      view.setUint16(9 + ID_SIZE + SHA256_SIZE, name.length);
      out.set(name, 11 + ID_SIZE + SHA256_SIZE);
      return out;
    }
    case "error": {
      checkId(f.ref, "ref");
      check(CODE_PATTERN.test(f.code), `error code "${f.code}" must be 1-64 of a-z, 0-9, _`);
      const message = utf8.encode(f.message);
      check(message.length <= ERROR_MESSAGE_MAX_BYTES, `an error message must be at most ${ERROR_MESSAGE_MAX_BYTES} bytes`);
      const { out } = frame(ExchangeKind.Error, ID_SIZE + 1 + f.code.length + message.length);
      out.set(f.ref, 1);
      out[1 + ID_SIZE] = f.code.length;
      out.set(utf8.encode(f.code), 2 + ID_SIZE);
      out.set(message, 2 + ID_SIZE + f.code.length);
      return out;
    }
  }
}

/** An error frame whose message is cut to fit (at a character boundary), for refusals built from runtime text. */
export function errorFrame(code: string, message: string, ref: Uint8Array = ZERO_REF): ErrorFrame {
  let text = message;
  while (utf8.encode(text).length > ERROR_MESSAGE_MAX_BYTES) text = text.slice(0, Math.floor(text.length * 0.9));
  return { kind: "error", ref, code, message: text };
}

// ---- decoding ---------------------------------------------------------------

const TYPE_OF: Record<number, MessageType> = { 1: "text", 2: "json", 3: "binary" };

/**
 * Decodes one frame body. Byte fields are copies of `body`, except with
 * `{ view: true }`, where the data of message_more and file_data frames are
 * views into it (for a caller that owns `body` and never reuses it: the
 * stream reader hands each frame in a fresh buffer; saves a copy of every
 * data byte).
 */
export function decodeExchangeFrame(body: Uint8Array, options?: { readonly view?: boolean }): Result<ExchangeFrame> {
  if (body.length === 0) return fail("empty", "an empty frame");
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const n = body.length;
  const kind = body[0]!;
  switch (kind) {
    case ExchangeKind.Message: {
      if (n < 1 + ID_SIZE + 2 + 4) return fail("truncated", "a message frame is too short");
      const type = TYPE_OF[body[1 + ID_SIZE]!];
      if (!type) return fail("bad_type", `unknown message type ${body[1 + ID_SIZE]}`);
      const flags = body[2 + ID_SIZE]!;
      if (flags > 1) return fail("bad_flags", `unknown message flags 0x${flags.toString(16)}`);
      let at = 3 + ID_SIZE;
      let replyTo: Uint8Array | null = null;
      if (flags & 1) {
        if (n < at + ID_SIZE + 4) return fail("truncated", "a message frame is too short for its reply_to");
        replyTo = body.slice(at, at + ID_SIZE);
        at += ID_SIZE;
      }
      const total = view.getUint32(at);
      const data = body.slice(at + 4);
      if (data.length > total) return fail("bad_length", `a message carries ${data.length} bytes but announces ${total}`);
      return ok({ kind: "message", id: body.slice(1, 1 + ID_SIZE), type, replyTo, total, data });
    }
    case ExchangeKind.MessageMore:
    case ExchangeKind.FileData:
      if (n < 2) return fail("truncated", "a data frame without data");
      return ok({ kind: kind === ExchangeKind.MessageMore ? "message_more" : "file_data", data: options?.view ? body.subarray(1) : body.slice(1) });
    case ExchangeKind.MessageAck: {
      if (n !== 2 + ID_SIZE) return fail("bad_length", "a message ack must be 18 bytes");
      const status = body[1 + ID_SIZE]!;
      if (status > 1) return fail("bad_status", `unknown ack status ${status}`);
      return ok({ kind: "message_ack", id: body.slice(1, 1 + ID_SIZE), duplicate: status === 1 });
    }
    case ExchangeKind.FileOffer: {
      if (n < 1 + ID_SIZE + 8 + 2) return fail("truncated", "a file offer is too short");
      const size = getU64(view, 1 + ID_SIZE);
      if (size === null) return fail("bad_size", "a file size above 2^53-1");
      const name = decodeName(body, 9 + ID_SIZE, view);
      if (!name.ok) return name;
      return ok({ kind: "file_offer", transfer: body.slice(1, 1 + ID_SIZE), size, name: name.value });
    }
    case ExchangeKind.FileAccept: {
      if (n !== 1 + ID_SIZE + 8) return fail("bad_length", "a file accept must be 25 bytes");
      const offset = getU64(view, 1 + ID_SIZE);
      if (offset === null) return fail("bad_size", "an offset above 2^53-1");
      return ok({ kind: "file_accept", transfer: body.slice(1, 1 + ID_SIZE), offset });
    }
    case ExchangeKind.FileEnd:
      if (n !== 1 + SHA256_SIZE) return fail("bad_length", "a file end must be 33 bytes");
      return ok({ kind: "file_end", sha256: body.slice(1) });
    case ExchangeKind.FileDone: {
      if (n < 1 + ID_SIZE + SHA256_SIZE + 8 + 2) return fail("truncated", "a file done is too short");
      const size = getU64(view, 1 + ID_SIZE + SHA256_SIZE);
      if (size === null) return fail("bad_size", "a file size above 2^53-1");
      const name = decodeName(body, 9 + ID_SIZE + SHA256_SIZE, view);
      if (!name.ok) return name;
      return ok({ kind: "file_done", transfer: body.slice(1, 1 + ID_SIZE), sha256: body.slice(1 + ID_SIZE, 1 + ID_SIZE + SHA256_SIZE), size, name: name.value });
    }
    case ExchangeKind.Error: {
      if (n < 2 + ID_SIZE) return fail("truncated", "an error frame is too short");
      const codeLength = body[1 + ID_SIZE]!;
      const codeEnd = 2 + ID_SIZE + codeLength;
      if (codeLength === 0 || n < codeEnd) return fail("bad_length", "an error frame's code does not fit");
      let code = "";
      for (let i = 2 + ID_SIZE; i < codeEnd; i++) code += String.fromCharCode(body[i]!);
      if (!CODE_PATTERN.test(code)) return fail("bad_code", "an error code must be 1-64 of a-z, 0-9, _");
      if (n - codeEnd > ERROR_MESSAGE_MAX_BYTES) return fail("bad_length", `an error message above ${ERROR_MESSAGE_MAX_BYTES} bytes`);
      const message = decodeUtf8(body.subarray(codeEnd));
      if (message === null) return fail("bad_utf8", "an error message that is not UTF-8");
      return ok({ kind: "error", ref: body.slice(1, 1 + ID_SIZE), code, message });
    }
    default:
      return fail("unknown_kind", `unknown frame kind 0x${kind.toString(16).padStart(2, "0")}`);
  }
}

/** `[u16 length][utf8]` at `at`, filling the frame exactly. */
function decodeName(body: Uint8Array, at: number, view: DataView): Result<string> {
  const length = view.getUint16(at);
  if (length < 1 || length > NAME_MAX_BYTES) return fail("bad_name", `a name must be 1-${NAME_MAX_BYTES} bytes`);
  if (body.length !== at + 2 + length) return fail("bad_length", "a name that does not fill the frame exactly");
  const name = decodeUtf8(body.subarray(at + 2));
  if (name === null) return fail("bad_utf8", "a name that is not UTF-8");
  return ok(name);
}

// ---- ids --------------------------------------------------------------------

const HEX = /^[0-9a-f]{32}$/;

/** 16 bytes as a UUID string (8-4-4-4-12, lower case). */
export function idToText(id: Uint8Array): string {
  const hex = Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A UUID string (with or without dashes, any case) as 16 bytes; null if it is not one. */
export function idFromText(text: string): Uint8Array | null {
  const hex = text.replace(/-/g, "").toLowerCase();
  if (!HEX.test(hex)) return null;
  if (text.includes("-") && !/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(text)) return null;
  return new Uint8Array(Buffer.from(hex, "hex"));
}
