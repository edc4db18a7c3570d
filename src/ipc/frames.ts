/**
 * The IPC wire: frames between an app (the driver) and its local daemon over
 * one unix stream socket. Pure encode/decode; nothing here touches a socket.
 *
 *   frame = u32 length | u8 type | payload        length = 1 + payload length
 *
 * Control is JSON (REQUEST/RESPONSE, matched by request id, never by order);
 * the data path is binary (DATA, CREDIT, FIN, CLOSE, RESET, ACCEPT,
 * DATAGRAM); local events are pushed as EVENT frames (protocol 2). All integers are big-endian. Decoders take untrusted bytes and
 * return a Result; they never throw. Encoders never throw either: a value
 * that cannot be sent (too large, not JSON) comes back as a failed Result.
 */
import { ADDRESS_SIZE, readAddress, writeAddress, type Address } from "../protocol/address.ts";
import { fail, ok, type Result } from "../protocol/result.ts";
import { parseEvent, type LocalEvent } from "../shared/events.ts";

/**
 * The newest protocol this build speaks, negotiated by the `hello` request.
 * 2 added EVENT frames and the `events_*` methods; a client that says 1 is
 * served as before and never gets an EVENT frame.
 */
export const IPC_PROTOCOL_VERSION = 2;
/** The oldest protocol this build still serves. */
export const IPC_MIN_PROTOCOL_VERSION = 1;
/** u32 length + u8 type. */
export const FRAME_HEADER_SIZE = 5;
/** Hard limit on a frame's length field (type byte + payload). A peer that declares more is dropped. */
export const MAX_FRAME_LENGTH = 256 * 1024;
/** Senders cut stream bytes into DATA frames of at most this many bytes. */
export const MAX_DATA_CHUNK = 64 * 1024;
/** Initial credit, per stream and per direction: how many bytes may be in flight before a CREDIT. */
export const STREAM_WINDOW = 256 * 1024;
/** Largest JSON body a REQUEST or RESPONSE can carry. */
export const MAX_JSON_LENGTH = MAX_FRAME_LENGTH - 1 - 4;

export const FrameType = {
  /** client→daemon: u32 request id | JSON {method, params} */
  Request: 0x01,
  /** daemon→client: u32 request id | JSON {ok:true, result} or {ok:false, error:{code, message, hint?}} */
  Response: 0x02,
  /** daemon→client: u32 listener id | u32 stream id | addr6 remote | u16 remote port | u16 local port */
  Accept: 0x03,
  /** both ways: u32 stream id | 1+ bytes of stream data */
  Data: 0x04,
  /** both ways: u32 stream id | u32 bytes the sender of this frame has consumed and grants again */
  Credit: 0x05,
  /** both ways: u32 stream id. Half-close: no more DATA in this direction. */
  Fin: 0x06,
  /** both ways: u32 stream id. Graceful close of both directions; the id is dead afterwards. */
  Close: 0x07,
  /** both ways: u32 stream id | u8 code length | code (ASCII) | message (UTF-8). Abortive close. */
  Reset: 0x08,
  /** client→daemon: u32 request id | u16 source port | addr6 destination | u16 destination port | data */
  SendDatagram: 0x09,
  /** daemon→client: u32 binding id | addr6 source | u16 source port | u16 destination port | data */
  Datagram: 0x0a,
  /** client→daemon: u32 stream id | u8 option | u8 value. Fire and forget. */
  StreamOption: 0x0b,
  /** daemon→client (protocol 2): u32 subscription id | JSON event {seq, time, type, data} */
  Event: 0x0c,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

export const StreamOptionCode = { NoDelay: 1 } as const;

/** Who sent the bytes being decoded: each side accepts only the frames the other may send. */
export type Sender = "client" | "daemon";

export interface WireError {
  readonly code: string;
  readonly message: string;
  readonly hint?: string;
}

export type Frame =
  | { readonly type: typeof FrameType.Request; readonly id: number; readonly method: string; readonly params: Record<string, unknown> }
  | { readonly type: typeof FrameType.Response; readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly type: typeof FrameType.Response; readonly id: number; readonly ok: false; readonly error: WireError }
  | {
      readonly type: typeof FrameType.Accept;
      readonly listener: number;
      readonly stream: number;
      readonly remoteAddress: Address;
      readonly remotePort: number;
      readonly localPort: number;
    }
  | { readonly type: typeof FrameType.Data; readonly stream: number; readonly data: Uint8Array }
  | { readonly type: typeof FrameType.Credit; readonly stream: number; readonly bytes: number }
  | { readonly type: typeof FrameType.Fin; readonly stream: number }
  | { readonly type: typeof FrameType.Close; readonly stream: number }
  | { readonly type: typeof FrameType.Reset; readonly stream: number; readonly code: string; readonly message: string }
  | {
      readonly type: typeof FrameType.SendDatagram;
      readonly id: number;
      readonly srcPort: number;
      readonly dstAddress: Address;
      readonly dstPort: number;
      readonly data: Uint8Array;
    }
  | {
      readonly type: typeof FrameType.Datagram;
      readonly binding: number;
      readonly srcAddress: Address;
      readonly srcPort: number;
      readonly dstPort: number;
      readonly data: Uint8Array;
    }
  | { readonly type: typeof FrameType.StreamOption; readonly stream: number; readonly option: number; readonly value: number }
  | { readonly type: typeof FrameType.Event; readonly subscription: number; readonly event: LocalEvent };

const CLIENT_SENDS: ReadonlySet<number> = new Set([
  FrameType.Request,
  FrameType.Data,
  FrameType.Credit,
  FrameType.Fin,
  FrameType.Close,
  FrameType.Reset,
  FrameType.SendDatagram,
  FrameType.StreamOption,
]);
const DAEMON_SENDS: ReadonlySet<number> = new Set([
  FrameType.Response,
  FrameType.Accept,
  FrameType.Data,
  FrameType.Credit,
  FrameType.Fin,
  FrameType.Close,
  FrameType.Reset,
  FrameType.Datagram,
  FrameType.Event,
]);

/** Method names: lower-case words joined by "_" (e.g. "set_hostname"). */
const METHOD = /^[a-z][a-z0-9_]{0,63}$/;
/** Error codes: same shape as NodeErrorCode values. */
const ERROR_CODE = /^[a-z][a-z0-9_]{0,63}$/;
const MAX_RESET_MESSAGE = 1024;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

// ---------------------------------------------------------------------------
// Encoding

function frameBuffer(type: FrameTypeCode, payloadLength: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(FRAME_HEADER_SIZE + payloadLength);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 1 + payloadLength);
  bytes[4] = type;
  return { bytes, view };
}

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;
}

function isU16(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff;
}

function jsonBytes(value: unknown): Result<Uint8Array> {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    return fail("unserializable", `value is not JSON-serializable: ${(error as Error).message}`);
  }
  if (text === undefined) return fail("unserializable", "value is not JSON-serializable");
  const bytes = utf8Encoder.encode(text);
  if (bytes.length > MAX_JSON_LENGTH) {
    return fail("too_large", `JSON body of ${bytes.length} bytes exceeds the IPC limit of ${MAX_JSON_LENGTH}`);
  }
  return ok(bytes);
}

function jsonFrame(type: FrameTypeCode, id: number, body: unknown): Result<Uint8Array> {
  if (!isU32(id)) return fail("invalid_field", `request id ${id} is not a u32`);
  const json = jsonBytes(body);
  if (!json.ok) return json;
  const { bytes, view } = frameBuffer(type, 4 + json.value.length);
  view.setUint32(5, id);
  bytes.set(json.value, 9);
  return ok(bytes);
}

/** Encodes one frame. Fails (never throws) on out-of-range fields, oversize or unserializable bodies. */
export function encodeFrame(frame: Frame): Result<Uint8Array> {
  switch (frame.type) {
    case FrameType.Request:
      if (!METHOD.test(frame.method)) return fail("invalid_field", `"${frame.method}" is not a method name`);
      return jsonFrame(frame.type, frame.id, { method: frame.method, params: frame.params });
    case FrameType.Response:
      return jsonFrame(
        frame.type,
        frame.id,
        frame.ok ? { ok: true, result: frame.result } : { ok: false, error: frame.error },
      );
    case FrameType.Accept: {
      if (!isU32(frame.listener) || !isU32(frame.stream) || !isU16(frame.remotePort) || !isU16(frame.localPort)) {
        return fail("invalid_field", "ACCEPT field out of range");
      }
      const { bytes, view } = frameBuffer(frame.type, 8 + ADDRESS_SIZE + 4);
      view.setUint32(5, frame.listener);
      view.setUint32(9, frame.stream);
      writeAddress(view, 13, frame.remoteAddress);
      view.setUint16(19, frame.remotePort);
      view.setUint16(21, frame.localPort);
      return ok(bytes);
    }
    case FrameType.Data: {
      if (!isU32(frame.stream)) return fail("invalid_field", "stream id out of range");
      if (frame.data.length === 0) return fail("invalid_field", "DATA must carry at least one byte");
      if (4 + frame.data.length > MAX_FRAME_LENGTH - 1) return fail("too_large", "DATA frame too large");
      const { bytes, view } = frameBuffer(frame.type, 4 + frame.data.length);
      view.setUint32(5, frame.stream);
      bytes.set(frame.data, 9);
      return ok(bytes);
    }
    case FrameType.Credit: {
      if (!isU32(frame.stream) || !isU32(frame.bytes) || frame.bytes === 0) return fail("invalid_field", "CREDIT field out of range");
      const { bytes, view } = frameBuffer(frame.type, 8);
      view.setUint32(5, frame.stream);
      view.setUint32(9, frame.bytes);
      return ok(bytes);
    }
    case FrameType.Fin:
    case FrameType.Close: {
      if (!isU32(frame.stream)) return fail("invalid_field", "stream id out of range");
      const { bytes, view } = frameBuffer(frame.type, 4);
      view.setUint32(5, frame.stream);
      return ok(bytes);
    }
    case FrameType.Reset: {
      if (!isU32(frame.stream)) return fail("invalid_field", "stream id out of range");
      if (!ERROR_CODE.test(frame.code)) return fail("invalid_field", `"${frame.code}" is not an error code`);
      const code = utf8Encoder.encode(frame.code);
      const message = utf8Encoder.encode(frame.message.slice(0, MAX_RESET_MESSAGE));
      const { bytes, view } = frameBuffer(frame.type, 5 + code.length + message.length);
      view.setUint32(5, frame.stream);
      bytes[9] = code.length;
      bytes.set(code, 10);
      bytes.set(message, 10 + code.length);
      return ok(bytes);
    }
    case FrameType.SendDatagram: {
      if (!isU32(frame.id) || !isU16(frame.srcPort) || !isU16(frame.dstPort)) return fail("invalid_field", "SEND_DATAGRAM field out of range");
      if (4 + 2 + ADDRESS_SIZE + 2 + frame.data.length > MAX_FRAME_LENGTH - 1) return fail("too_large", "datagram too large for one frame");
      const { bytes, view } = frameBuffer(frame.type, 14 + frame.data.length);
      view.setUint32(5, frame.id);
      view.setUint16(9, frame.srcPort);
      writeAddress(view, 11, frame.dstAddress);
      view.setUint16(17, frame.dstPort);
      bytes.set(frame.data, 19);
      return ok(bytes);
    }
    case FrameType.Datagram: {
      if (!isU32(frame.binding) || !isU16(frame.srcPort) || !isU16(frame.dstPort)) return fail("invalid_field", "DATAGRAM field out of range");
      if (4 + ADDRESS_SIZE + 4 + frame.data.length > MAX_FRAME_LENGTH - 1) return fail("too_large", "datagram too large for one frame");
      const { bytes, view } = frameBuffer(frame.type, 14 + frame.data.length);
      view.setUint32(5, frame.binding);
      writeAddress(view, 9, frame.srcAddress);
      view.setUint16(15, frame.srcPort);
      view.setUint16(17, frame.dstPort);
      bytes.set(frame.data, 19);
      return ok(bytes);
    }
    case FrameType.StreamOption: {
      if (!isU32(frame.stream) || !isU16(frame.option) || frame.option > 0xff || frame.value < 0 || frame.value > 0xff) {
        return fail("invalid_field", "STREAM_OPTION field out of range");
      }
      const { bytes, view } = frameBuffer(frame.type, 6);
      view.setUint32(5, frame.stream);
      bytes[9] = frame.option;
      bytes[10] = frame.value;
      return ok(bytes);
    }
    case FrameType.Event:
      return jsonFrame(frame.type, frame.subscription, frame.event);
    default:
      return fail("unknown_type", "unknown frame type");
  }
}

/**
 * An EVENT frame around an event's JSON, already encoded once for every
 * subscriber (`eventJson` in src/shared/events.ts keeps it below MAX_JSON_LENGTH).
 */
export function encodeEventFrame(subscription: number, json: Uint8Array): Result<Uint8Array> {
  if (!isU32(subscription)) return fail("invalid_field", "subscription id out of range");
  if (json.length > MAX_JSON_LENGTH) return fail("too_large", "event JSON too large for one frame");
  const { bytes, view } = frameBuffer(FrameType.Event, 4 + json.length);
  view.setUint32(5, subscription);
  bytes.set(json, 9);
  return ok(bytes);
}

// ---------------------------------------------------------------------------
// Decoding

function parseJson(bytes: Uint8Array): Result<unknown> {
  let text: string;
  try {
    text = utf8Decoder.decode(bytes);
  } catch {
    return fail("invalid_utf8", "JSON body is not valid UTF-8");
  }
  try {
    return ok(JSON.parse(text) as unknown);
  } catch {
    return fail("invalid_json", "body is not valid JSON");
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function short(type: string, need: number, have: number): Result<never> {
  return fail("truncated", `${type} needs ${need} payload bytes, got ${have}`);
}

function exact(type: string, need: number, have: number): Result<never> {
  return fail(have < need ? "truncated" : "trailing_bytes", `${type} payload must be exactly ${need} bytes, got ${have}`);
}

/**
 * Decodes one frame's payload. `from` says who sent it: a frame type that
 * side may not send is an error. Sub-arrays of `payload` are returned as is
 * (no copy); the caller owns `payload`.
 */
export function decodeFrame(type: number, payload: Uint8Array, from: Sender): Result<Frame> {
  const allowed = from === "client" ? CLIENT_SENDS : DAEMON_SENDS;
  if (!allowed.has(type)) return fail("unexpected_type", `frame type 0x${type.toString(16).padStart(2, "0")} may not be sent by the ${from}`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const n = payload.length;
  switch (type) {
    case FrameType.Request: {
      if (n < 5) return short("REQUEST", 5, n);
      const body = parseJson(payload.subarray(4));
      if (!body.ok) return body;
      const v = body.value;
      if (!isPlainObject(v)) return fail("invalid_request", "REQUEST body must be a JSON object");
      if (typeof v.method !== "string" || !METHOD.test(v.method)) return fail("invalid_request", "REQUEST needs a method name");
      if (v.params !== undefined && !isPlainObject(v.params)) return fail("invalid_request", "REQUEST params must be an object");
      return ok({ type, id: view.getUint32(0), method: v.method, params: (v.params as Record<string, unknown> | undefined) ?? {} });
    }
    case FrameType.Response: {
      if (n < 5) return short("RESPONSE", 5, n);
      const body = parseJson(payload.subarray(4));
      if (!body.ok) return body;
      const v = body.value;
      const id = view.getUint32(0);
      if (!isPlainObject(v) || typeof v.ok !== "boolean") return fail("invalid_response", "RESPONSE body must be {ok, ...}");
      if (v.ok) return ok({ type, id, ok: true, result: v.result ?? null });
      const e = v.error;
      if (!isPlainObject(e) || typeof e.code !== "string" || !ERROR_CODE.test(e.code) || typeof e.message !== "string") {
        return fail("invalid_response", "RESPONSE error must be {code, message, hint?}");
      }
      if (e.hint !== undefined && typeof e.hint !== "string") return fail("invalid_response", "RESPONSE error hint must be a string");
      const error: WireError = e.hint === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, hint: e.hint };
      return ok({ type, id, ok: false, error });
    }
    case FrameType.Accept:
      if (n !== 18) return exact("ACCEPT", 18, n);
      return ok({
        type,
        listener: view.getUint32(0),
        stream: view.getUint32(4),
        remoteAddress: readAddress(view, 8),
        remotePort: view.getUint16(14),
        localPort: view.getUint16(16),
      });
    case FrameType.Data:
      if (n < 5) return short("DATA", 5, n);
      return ok({ type, stream: view.getUint32(0), data: payload.subarray(4) });
    case FrameType.Credit: {
      if (n !== 8) return exact("CREDIT", 8, n);
      const bytes = view.getUint32(4);
      if (bytes === 0) return fail("invalid_credit", "CREDIT of 0 bytes");
      return ok({ type, stream: view.getUint32(0), bytes });
    }
    case FrameType.Fin:
    case FrameType.Close:
      if (n !== 4) return exact(type === FrameType.Fin ? "FIN" : "CLOSE", 4, n);
      return ok({ type, stream: view.getUint32(0) });
    case FrameType.Reset: {
      if (n < 5) return short("RESET", 5, n);
      const codeLength = payload[4]!;
      if (n < 5 + codeLength) return short("RESET", 5 + codeLength, n);
      let code: string;
      let message: string;
      try {
        code = utf8Decoder.decode(payload.subarray(5, 5 + codeLength));
        message = utf8Decoder.decode(payload.subarray(5 + codeLength));
      } catch {
        return fail("invalid_utf8", "RESET code or message is not valid UTF-8");
      }
      if (!ERROR_CODE.test(code)) return fail("invalid_reset", "RESET code is not an error code");
      if (message.length > MAX_RESET_MESSAGE) return fail("invalid_reset", "RESET message too long");
      return ok({ type, stream: view.getUint32(0), code, message });
    }
    case FrameType.SendDatagram:
      if (n < 14) return short("SEND_DATAGRAM", 14, n);
      return ok({
        type,
        id: view.getUint32(0),
        srcPort: view.getUint16(4),
        dstAddress: readAddress(view, 6),
        dstPort: view.getUint16(12),
        data: payload.subarray(14),
      });
    case FrameType.Datagram:
      if (n < 14) return short("DATAGRAM", 14, n);
      return ok({
        type,
        binding: view.getUint32(0),
        srcAddress: readAddress(view, 4),
        srcPort: view.getUint16(10),
        dstPort: view.getUint16(12),
        data: payload.subarray(14),
      });
    case FrameType.StreamOption:
      if (n !== 6) return exact("STREAM_OPTION", 6, n);
      return ok({ type, stream: view.getUint32(0), option: payload[4]!, value: payload[5]! });
    case FrameType.Event: {
      if (n < 5) return short("EVENT", 5, n);
      const body = parseJson(payload.subarray(4));
      if (!body.ok) return body;
      const event = parseEvent(body.value);
      if (!event) return fail("invalid_event", "EVENT body must be {seq, time, type, data}");
      return ok({ type, subscription: view.getUint32(0), event });
    }
    default:
      return fail("unexpected_type", "unknown frame type");
  }
}

// ---------------------------------------------------------------------------
// Splitting a byte stream into frames

export interface RawFrame {
  readonly type: number;
  readonly payload: Uint8Array;
}

/**
 * Reassembles frames from arbitrarily cut chunks. A frame that lies inside one
 * chunk is returned as a view on it (no copy), so callers must not hand in
 * buffers they will reuse. Holds at most one partial frame (bounded by
 * `maxFrameLength`); a declared length above it is an error, after which the
 * reader stays failed.
 */
export class FrameReader {
  private chunks: Uint8Array[] = [];
  private offset = 0; // into chunks[0]
  private buffered = 0;
  private failure: Result<never> | null = null;

  constructor(private readonly maxFrameLength: number = MAX_FRAME_LENGTH) {}

  /** Bytes received but not yet returned as frames. */
  get pendingBytes(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0 || this.failure) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The next complete frame, null if more bytes are needed, or the (sticky) error. */
  next(): Result<RawFrame> | null {
    if (this.failure) return this.failure;
    if (this.buffered < FRAME_HEADER_SIZE) return null;
    const length = this.peekU32();
    if (length < 1 || length > this.maxFrameLength) {
      this.failure = fail("bad_length", `frame length ${length} is outside 1..${this.maxFrameLength}`);
      this.chunks = [];
      this.buffered = 0;
      return this.failure;
    }
    if (this.buffered < 4 + length) return null;
    const first = this.chunks[0]!;
    let frame: Uint8Array;
    if (first.length - this.offset >= 4 + length) {
      frame = first.subarray(this.offset + 4, this.offset + 4 + length);
      this.offset += 4 + length;
      if (this.offset === first.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    } else {
      this.skip(4);
      frame = this.take(length);
    }
    this.buffered -= 4 + length;
    return ok({ type: frame[0]!, payload: frame.subarray(1) });
  }

  private peekU32(): number {
    let value = 0;
    let chunkIndex = 0;
    let at = this.offset;
    for (let i = 0; i < 4; i++) {
      let chunk = this.chunks[chunkIndex]!;
      while (at >= chunk.length) {
        chunkIndex++;
        at = 0;
        chunk = this.chunks[chunkIndex]!;
      }
      value = value * 256 + chunk[at]!;
      at++;
    }
    return value;
  }

  private skip(count: number): void {
    while (count > 0) {
      const chunk = this.chunks[0]!;
      const available = chunk.length - this.offset;
      if (available > count) {
        this.offset += count;
        return;
      }
      count -= available;
      this.chunks.shift();
      this.offset = 0;
    }
  }

  private take(count: number): Uint8Array {
    const out = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      const chunk = this.chunks[0]!;
      const available = chunk.length - this.offset;
      const n = Math.min(available, count - filled);
      out.set(chunk.subarray(this.offset, this.offset + n), filled);
      filled += n;
      if (n === available) {
        this.chunks.shift();
        this.offset = 0;
      } else {
        this.offset += n;
      }
    }
    return out;
  }
}
