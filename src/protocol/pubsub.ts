/**
 * The pub/sub protocol on port 1002, pure: frames between a client (a
 * subscriber or publisher, through its own daemon) and a broker (a daemon's
 * pub/sub service). Encoders return whole frames; decoders take a frame's
 * body and return a Result on hostile input, never throw.
 *
 * Framing: `u32 length` (big-endian) then `length` bytes of body; the body's
 * first byte is its type. All integers are big-endian; u64 values are at most
 * 2^53 - 1. Strings are UTF-8; a topic's rules are in topic.ts.
 *
 *   client -> broker
 *   subscribe    0x01  [id u32][n u16][pattern n]                     -> ack (count 0) or error (same id)
 *   unsubscribe  0x02  [id u32]   (the id of an earlier subscribe)    -> ack (count 0) or error not_found
 *   publish      0x03  [id u32][n u16][topic n][data ...]             -> ack (count = subscribers reached, seq) or error
 *
 *   broker -> client
 *   welcome      0x81  [version u8][max_event u32][max_topic u16][max_subscriptions u16][...later fields]
 *   event        0x82  [seq u64][time_ms u64][from addr6][n u16][topic n][data ...]
 *   ack          0x83  [id u32][count u32][seq u64]
 *   error        0x84  [id u32][n u8][code n (a-z, _)][message ... (UTF-8)]   id 0: about the connection, which then closes
 *
 * The broker sends `welcome` first (after admitting the client) or an error
 * with id 0 and closes. `from` in an event is set by the broker from the
 * publisher's authenticated stream, never from anything the publisher sent.
 */
import { ADDRESS_SIZE, readAddress, writeAddress, type Address } from "./address.ts";
import { WellKnownPort } from "./ports.ts";
import { fail, ok, type Result } from "./result.ts";

export const PUBSUB_PORT = WellKnownPort.EventStream;
export const PUBSUB_VERSION = 1;
export const FRAME_HEADER_SIZE = 4;
/** Default largest event data a broker accepts (config `pubsub_max_event`). */
export const DEFAULT_MAX_EVENT = 64 * 1024;
/** The most a broker may allow (config upper bound). */
export const MAX_EVENT_LIMIT = 1024 * 1024;
/** Longest error message carried on the wire (longer ones are cut by the encoder). */
export const MAX_ERROR_MESSAGE = 1024;
/** Largest topic field a frame can declare (topic.ts refuses more than 256 characters). */
export const MAX_TOPIC_FIELD = 1024;
/** Bytes of an event frame besides its topic and data (length prefix included). */
export const EVENT_OVERHEAD = FRAME_HEADER_SIZE + 1 + 8 + 8 + ADDRESS_SIZE + 2;
/** Bytes of a publish frame besides its topic and data (length prefix included). */
export const PUBLISH_OVERHEAD = FRAME_HEADER_SIZE + 1 + 4 + 2;

export const PubsubFrameType = {
  Subscribe: 0x01,
  Unsubscribe: 0x02,
  Publish: 0x03,
  Welcome: 0x81,
  Event: 0x82,
  Ack: 0x83,
  Error: 0x84,
} as const;

/** Error codes a broker sends (decoders accept any a-z/_ code, for later versions). */
export const PubsubErrorCode = {
  /** The broker admits only trusted nodes (or the service is not open to strangers). */
  NotTrusted: "not_trusted",
  InvalidTopic: "invalid_topic",
  /** The event's data is larger than the broker's max_event. */
  TooLarge: "too_large",
  /** Over the publish rate (per peer, or the broker's total). */
  RateLimited: "rate_limited",
  /** Too many subscriptions or connections (per connection, per peer or in total). */
  LimitExceeded: "limit_exceeded",
  /** This subscriber fell too far behind: its queue overflowed and the broker cut it. */
  SlowConsumer: "slow_consumer",
  /** A frame that does not decode, or one a client may not send. */
  Malformed: "malformed",
  /** unsubscribe of an id that is not subscribed. */
  NotFound: "not_found",
  /** The broker is stopping. */
  ShuttingDown: "shutting_down",
} as const;

export type ClientFrame =
  | { type: "subscribe"; id: number; pattern: string }
  | { type: "unsubscribe"; id: number }
  | {
      type: "publish";
      id: number;
      topic: string;
      data: Uint8Array;
      /** Set by the decoder: the topic's bytes as received (a view of the frame), so a broker can copy them without re-encoding. */
      topicBytes?: Uint8Array;
    };

export interface WelcomeFrame {
  type: "welcome";
  version: number;
  maxEvent: number;
  maxTopic: number;
  maxSubscriptions: number;
}

export interface EventFrame {
  type: "event";
  seq: number;
  /** Milliseconds since the epoch, by the broker's clock. */
  time: number;
  /** The publisher's authenticated address. */
  from: Address;
  topic: string;
  data: Uint8Array;
}

export type BrokerFrame =
  | WelcomeFrame
  | EventFrame
  | { type: "ack"; id: number; count: number; seq: number }
  | { type: "error"; id: number; code: string; message: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const TWO_32 = 0x1_0000_0000;

function alloc(bodyLength: number): { frame: Uint8Array; view: DataView } {
  const frame = new Uint8Array(FRAME_HEADER_SIZE + bodyLength);
  const view = new DataView(frame.buffer);
  view.setUint32(0, bodyLength);
  return { frame, view };
}

function setU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, Math.floor(value / TWO_32));
  view.setUint32(offset + 4, value >>> 0);
}

function getU64(view: DataView, offset: number): number | null {
  const high = view.getUint32(offset);
  if (high > 0x1f_ffff) return null; // above 2^53 - 1
  return high * TWO_32 + view.getUint32(offset + 4);
}

function checkId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffff_ffff) throw new RangeError(`id ${id} is not a u32`);
}

function topicField(text: string): Uint8Array {
  const bytes = encoder.encode(text);
  if (bytes.length > MAX_TOPIC_FIELD) throw new RangeError(`topic of ${bytes.length} bytes is longer than ${MAX_TOPIC_FIELD}`);
  return bytes;
}

// ---- client -> broker -------------------------------------------------------

/** A whole frame (length prefix included). Throws RangeError on values no frame can carry (a programming error). */
export function encodeClientFrame(f: ClientFrame): Uint8Array {
  checkId(f.id);
  switch (f.type) {
    case "subscribe": {
      const pattern = topicField(f.pattern);
      const { frame, view } = alloc(1 + 4 + 2 + pattern.length);
      frame[4] = PubsubFrameType.Subscribe;
      view.setUint32(5, f.id);
      view.setUint16(9, pattern.length);
      frame.set(pattern, 11);
      return frame;
    }
    case "unsubscribe": {
      const { frame, view } = alloc(1 + 4);
      frame[4] = PubsubFrameType.Unsubscribe;
      view.setUint32(5, f.id);
      return frame;
    }
    case "publish": {
      const topic = topicField(f.topic);
      const { frame, view } = alloc(1 + 4 + 2 + topic.length + f.data.length);
      frame[4] = PubsubFrameType.Publish;
      view.setUint32(5, f.id);
      view.setUint16(9, topic.length);
      frame.set(topic, 11);
      frame.set(f.data, 11 + topic.length);
      return frame;
    }
  }
}

function readText(body: Uint8Array, start: number, end: number, what: string): Result<string> {
  try {
    return ok(decoder.decode(body.subarray(start, end)));
  } catch {
    return fail("malformed", `${what} is not valid UTF-8`);
  }
}

/** A client frame's body (after the length prefix). */
export function decodeClientFrame(body: Uint8Array): Result<ClientFrame> {
  if (body.length < 5) return fail("malformed", `a frame of ${body.length} bytes is too short`);
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const type = body[0]!;
  const id = view.getUint32(1);
  switch (type) {
    case PubsubFrameType.Subscribe:
    case PubsubFrameType.Publish: {
      if (body.length < 7) return fail("malformed", "the frame ends before its topic length");
      const n = view.getUint16(5);
      if (n > MAX_TOPIC_FIELD) return fail("malformed", `a topic field of ${n} bytes is longer than ${MAX_TOPIC_FIELD}`);
      if (body.length < 7 + n) return fail("malformed", "the frame ends inside its topic");
      if (type === PubsubFrameType.Subscribe && body.length !== 7 + n) return fail("malformed", "a subscribe frame has bytes after its pattern");
      const text = readText(body, 7, 7 + n, "the topic");
      if (!text.ok) return text;
      if (type === PubsubFrameType.Subscribe) return ok({ type: "subscribe", id, pattern: text.value });
      return ok({ type: "publish", id, topic: text.value, data: body.subarray(7 + n), topicBytes: body.subarray(7, 7 + n) });
    }
    case PubsubFrameType.Unsubscribe:
      if (body.length !== 5) return fail("malformed", "an unsubscribe frame is exactly 5 bytes");
      return ok({ type: "unsubscribe", id });
    default:
      return fail("unknown_type", `frame type 0x${type.toString(16).padStart(2, "0")} is not a client frame`);
  }
}

// ---- broker -> client -------------------------------------------------------

/**
 * An event frame, encoded once and shared by every subscriber it goes to.
 * `topic` is the topic's UTF-8 bytes as the publisher sent them (already checked).
 */
export function encodeEventFrame(seq: number, time: number, from: Address, topic: Uint8Array, data: Uint8Array): Uint8Array {
  const { frame, view } = alloc(EVENT_OVERHEAD - FRAME_HEADER_SIZE + topic.length + data.length);
  frame[4] = PubsubFrameType.Event;
  setU64(view, 5, seq);
  setU64(view, 13, time);
  writeAddress(view, 21, from);
  view.setUint16(27, topic.length);
  frame.set(topic, 29);
  frame.set(data, 29 + topic.length);
  return frame;
}

/** A whole frame (length prefix included). Error messages longer than MAX_ERROR_MESSAGE bytes are cut. */
export function encodeBrokerFrame(f: BrokerFrame): Uint8Array {
  switch (f.type) {
    case "welcome": {
      const { frame, view } = alloc(1 + 1 + 4 + 2 + 2);
      frame[4] = PubsubFrameType.Welcome;
      frame[5] = f.version & 0xff;
      view.setUint32(6, f.maxEvent);
      view.setUint16(10, f.maxTopic);
      view.setUint16(12, f.maxSubscriptions);
      return frame;
    }
    case "event":
      return encodeEventFrame(f.seq, f.time, f.from, topicField(f.topic), f.data);
    case "ack": {
      checkId(f.id);
      const { frame, view } = alloc(1 + 4 + 4 + 8);
      frame[4] = PubsubFrameType.Ack;
      view.setUint32(5, f.id);
      view.setUint32(9, f.count);
      setU64(view, 13, f.seq);
      return frame;
    }
    case "error": {
      checkId(f.id);
      if (!/^[a-z_]{1,32}$/.test(f.code)) throw new RangeError(`error code "${f.code}" is not 1-32 of a-z and _`);
      let message = encoder.encode(f.message);
      if (message.length > MAX_ERROR_MESSAGE) {
        // Cut at a character boundary.
        let end = MAX_ERROR_MESSAGE;
        while (end > 0 && (message[end]! & 0xc0) === 0x80) end--;
        message = message.subarray(0, end);
      }
      const code = encoder.encode(f.code);
      const { frame, view } = alloc(1 + 4 + 1 + code.length + message.length);
      frame[4] = PubsubFrameType.Error;
      view.setUint32(5, f.id);
      frame[9] = code.length;
      frame.set(code, 10);
      frame.set(message, 10 + code.length);
      return frame;
    }
  }
}

/** A broker frame's body (after the length prefix). */
export function decodeBrokerFrame(body: Uint8Array): Result<BrokerFrame> {
  if (body.length < 1) return fail("malformed", "an empty frame");
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  switch (body[0]) {
    case PubsubFrameType.Welcome:
      // Later versions may append fields: ignore what follows.
      if (body.length < 10) return fail("malformed", "a welcome frame is at least 10 bytes");
      return ok({ type: "welcome", version: body[1]!, maxEvent: view.getUint32(2), maxTopic: view.getUint16(6), maxSubscriptions: view.getUint16(8) });
    case PubsubFrameType.Event: {
      const fixed = EVENT_OVERHEAD - FRAME_HEADER_SIZE;
      if (body.length < fixed) return fail("malformed", `an event frame is at least ${fixed} bytes`);
      const seq = getU64(view, 1);
      const time = getU64(view, 9);
      if (seq === null || time === null) return fail("out_of_range", "an event's seq or time is above 2^53 - 1");
      const n = view.getUint16(23);
      if (n > MAX_TOPIC_FIELD) return fail("malformed", `a topic field of ${n} bytes is longer than ${MAX_TOPIC_FIELD}`);
      if (body.length < fixed + n) return fail("malformed", "the frame ends inside its topic");
      const topic = readText(body, fixed, fixed + n, "the topic");
      if (!topic.ok) return topic;
      return ok({ type: "event", seq, time, from: readAddress(view, 17), topic: topic.value, data: body.subarray(fixed + n) });
    }
    case PubsubFrameType.Ack: {
      if (body.length !== 17) return fail("malformed", "an ack frame is exactly 17 bytes");
      const seq = getU64(view, 9);
      if (seq === null) return fail("out_of_range", "an ack's seq is above 2^53 - 1");
      return ok({ type: "ack", id: view.getUint32(1), count: view.getUint32(5), seq });
    }
    case PubsubFrameType.Error: {
      if (body.length < 6) return fail("malformed", "an error frame is at least 6 bytes");
      const n = body[5]!;
      if (n < 1 || n > 32 || body.length < 6 + n) return fail("malformed", "an error frame's code is 1-32 bytes");
      let code = "";
      for (let i = 6; i < 6 + n; i++) {
        const c = body[i]!;
        if (!((c >= 0x61 && c <= 0x7a) || c === 0x5f)) return fail("malformed", "an error code is a-z and _ only");
        code += String.fromCharCode(c);
      }
      if (body.length - 6 - n > MAX_ERROR_MESSAGE) return fail("malformed", `an error message is at most ${MAX_ERROR_MESSAGE} bytes`);
      const message = readText(body, 6 + n, body.length, "the error message");
      if (!message.ok) return message;
      return ok({ type: "error", id: view.getUint32(1), code, message: message.value });
    }
    default:
      return fail("unknown_type", `frame type 0x${body[0]!.toString(16).padStart(2, "0")} is not a broker frame`);
  }
}

// ---- framing ----------------------------------------------------------------

/**
 * Splits a byte stream into frame bodies. Holds at most one partial frame of
 * at most `maxFrame` bytes: a larger declared length is an error (`too_large`)
 * before any of its body is buffered, and the reader is then finished.
 */
export class FrameReader {
  private readonly header = new Uint8Array(FRAME_HEADER_SIZE);
  private headerHave = 0;
  private body: Uint8Array | null = null;
  private bodyHave = 0;
  private failed = false;

  constructor(readonly maxFrame: number) {}

  /** True while a frame has begun but not completed (the stream must not end here). */
  get midFrame(): boolean {
    return this.headerHave > 0 || this.body !== null;
  }

  /** Complete frame bodies in `chunk` (each a fresh buffer), or the error that ends the stream. */
  push(chunk: Uint8Array): Result<Uint8Array[]> {
    if (this.failed) return fail("finished", "the reader stopped at an earlier error");
    const out: Uint8Array[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (!this.body) {
        const take = Math.min(FRAME_HEADER_SIZE - this.headerHave, chunk.length - at);
        this.header.set(chunk.subarray(at, at + take), this.headerHave);
        this.headerHave += take;
        at += take;
        if (this.headerHave < FRAME_HEADER_SIZE) break;
        this.headerHave = 0;
        const length = new DataView(this.header.buffer).getUint32(0);
        if (length > this.maxFrame) {
          this.failed = true;
          return fail("too_large", `a frame of ${length} bytes is larger than ${this.maxFrame}`);
        }
        if (length === 0) {
          out.push(new Uint8Array(0));
          continue;
        }
        this.body = new Uint8Array(length);
        this.bodyHave = 0;
      }
      const take = Math.min(this.body.length - this.bodyHave, chunk.length - at);
      this.body.set(chunk.subarray(at, at + take), this.bodyHave);
      this.bodyHave += take;
      at += take;
      if (this.bodyHave === this.body.length) {
        out.push(this.body);
        this.body = null;
      }
    }
    return ok(out);
  }
}
