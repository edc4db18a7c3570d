/**
 * Tunnel frames: the UDP datagrams of the tunnel socket. Byte 0 is the message
 * type; every frame starts with `u8 type, u8 reserved, u16 reserved` (reserved
 * bytes are zero on the wire and checked). All integers are big-endian.
 *
 *   0x01 handshake initiation, exactly 154 bytes
 *        0  u8 type | u8 0 | u16 0
 *        4  Noise IK message 1 (118 B): ephemeral (32), encrypted static (48), encrypted payload (38)
 *      122  mac1 (16)              covers bytes 0-121
 *      138  mac2 (16)              covers bytes 0-137; zero unless the sender holds a cookie
 *   0x02 handshake response, exactly 76 bytes
 *        0  u8 type | u8 0 | u16 0
 *        4  u32 receiver_index     the initiator's session index
 *        8  Noise IK message 2 (52 B): ephemeral (32), encrypted payload (20)
 *       60  mac1 (16)
 *   0x03 cookie reply, exactly 76 bytes (a responder under load answers an initiation with this)
 *        0  u8 type | u8 0 | u16 0
 *        4  mac1 of the initiation it answers (16): routes the reply and is its AEAD's associated data
 *       20  nonce (24)
 *       44  XChaCha20-Poly1305 ciphertext of the 16-byte cookie, then the 16-byte tag
 *   0x04 data, 32 to MAX_DATA_FRAME bytes (BASE_DATA_FRAME unless path MTU discovery proved more)
 *        0  u8 type | u8 0 | u16 0
 *        4  u32 receiver_index     the receiver's session index
 *        8  u64 counter            the AES-GCM nonce counter
 *       16  ciphertext of the Pilot packet, then the 16-byte tag (empty plaintext = keepalive)
 *   0x20-0x2F beacon messages: passed through undecoded (their own codec).
 *
 *   decodeTunnelFrame(bytes): Result<TunnelFrame>        dispatches on byte 0
 *   decodeInitiation / decodeResponse / decodeCookieReply / decodeDataFrame(bytes): Result<...>
 *   encodeInitiation(noise, mac1?, mac2?) / encodeResponse(receiverIndex, noise, mac1?): Uint8Array
 *   encodeCookieReply(mac1, nonce, sealedCookie): Uint8Array
 *   writeDataHeader(out, offset, receiverIndex, counter) / encodeDataFrame(receiverIndex, counter, sealed)
 *
 * Decoders take untrusted bytes, never throw, never read out of bounds, and
 * demand exact lengths. Decoded fields are views into the input, not copies.
 */
import { DATA_FRAME_OVERHEAD, LARGEST_STREAM_MSS, MAX_UDP_PAYLOAD, RELAY_ENVELOPE_RESERVE, STREAM_FRAME_OVERHEAD } from "./limits.ts";
import { fail, ok, type Result } from "./result.ts";

export const TunnelMessage = {
  Initiation: 0x01,
  Response: 0x02,
  CookieReply: 0x03,
  Data: 0x04,
} as const;
export const BEACON_TYPE_FIRST = 0x20;
export const BEACON_TYPE_LAST = 0x2f;

export const TAG_SIZE = 16;
export const MAC_SIZE = 16;
export const INITIATION_NOISE_SIZE = 32 + (32 + TAG_SIZE) + (22 + TAG_SIZE);
export const INITIATION_MAC_OFFSET = 4 + INITIATION_NOISE_SIZE;
export const INITIATION_MAC2_OFFSET = INITIATION_MAC_OFFSET + MAC_SIZE;
export const INITIATION_SIZE = INITIATION_MAC2_OFFSET + MAC_SIZE;
export const RESPONSE_NOISE_SIZE = 32 + (4 + TAG_SIZE);
export const RESPONSE_SIZE = 8 + RESPONSE_NOISE_SIZE + MAC_SIZE;
export const RESPONSE_MAC_OFFSET = RESPONSE_SIZE - MAC_SIZE;
export const COOKIE_SIZE = 16;
export const COOKIE_NONCE_SIZE = 24;
export const COOKIE_SEALED_SIZE = COOKIE_SIZE + TAG_SIZE;
export const COOKIE_REPLY_SIZE = 4 + MAC_SIZE + COOKIE_NONCE_SIZE + COOKIE_SEALED_SIZE;
export const DATA_HEADER_SIZE = 16;
export const MIN_DATA_FRAME = DATA_HEADER_SIZE + TAG_SIZE;
/**
 * The base data frame: a full base UDP payload less the room kept for a relay
 * envelope. Every path starts here; relayed paths never go beyond it.
 */
export const BASE_DATA_FRAME = MAX_UDP_PAYLOAD - RELAY_ENVELOPE_RESERVE;
/** The largest Pilot packet a base-size data frame carries. */
export const BASE_TUNNEL_PLAINTEXT = BASE_DATA_FRAME - DATA_FRAME_OVERHEAD;
/**
 * The largest data frame accepted or sent on any path: a segment of
 * LARGEST_STREAM_MSS. Frames above BASE_DATA_FRAME are sent only on a direct
 * path whose peer acknowledged a probe of at least that size.
 */
export const MAX_DATA_FRAME = LARGEST_STREAM_MSS + STREAM_FRAME_OVERHEAD;
/** The largest Pilot packet a data frame carries. */
export const MAX_TUNNEL_PLAINTEXT = MAX_DATA_FRAME - DATA_FRAME_OVERHEAD;
/** Counters are exact JS integers; the sender's hard limit is far below this. */
export const MAX_WIRE_COUNTER = Number.MAX_SAFE_INTEGER;

if (DATA_HEADER_SIZE + TAG_SIZE !== DATA_FRAME_OVERHEAD) throw new Error("DATA_FRAME_OVERHEAD disagrees with the data frame layout");

export interface InitiationFrame {
  readonly kind: "initiation";
  /** The Noise message inside the frame. */
  readonly noise: Uint8Array;
  /** Everything mac1 covers: the frame up to the mac. */
  readonly macInput: Uint8Array;
  readonly mac1: Uint8Array;
  /** Everything mac2 covers: the frame up to mac2 (mac1 included). */
  readonly mac2Input: Uint8Array;
  /** All zero when the initiator holds no cookie. */
  readonly mac2: Uint8Array;
}

export interface ResponseFrame {
  readonly kind: "response";
  readonly receiverIndex: number;
  readonly noise: Uint8Array;
  readonly macInput: Uint8Array;
  readonly mac1: Uint8Array;
}

export interface CookieReplyFrame {
  readonly kind: "cookie_reply";
  /** The mac1 of the initiation this answers (the initiator finds its handshake by it). */
  readonly mac1: Uint8Array;
  readonly nonce: Uint8Array;
  /** The encrypted cookie followed by its tag. */
  readonly sealedCookie: Uint8Array;
}

export interface DataFrame {
  readonly kind: "data";
  readonly receiverIndex: number;
  readonly counter: number;
  /** The 16-byte header, which is part of the AEAD's associated data. */
  readonly header: Uint8Array;
  /** Ciphertext followed by the tag. */
  readonly sealed: Uint8Array;
}

export interface BeaconFrame {
  readonly kind: "beacon";
  readonly type: number;
  readonly bytes: Uint8Array;
}

export type TunnelFrame = InitiationFrame | ResponseFrame | CookieReplyFrame | DataFrame | BeaconFrame;

export function isBeaconType(type: number): boolean {
  return type >= BEACON_TYPE_FIRST && type <= BEACON_TYPE_LAST;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkPrefix(bytes: Uint8Array, type: number, name: string): Result<null> {
  if (bytes.length < 4) return fail("truncated", `${name} of ${bytes.length} bytes has no header`);
  if (bytes[0] !== type) return fail("wrong_type", `byte 0 is 0x${bytes[0]!.toString(16)}, not ${name}`);
  if ((bytes[1]! | bytes[2]! | bytes[3]!) !== 0) return fail("reserved_nonzero", `${name}: reserved header bytes are not zero`);
  return ok(null);
}

export function decodeInitiation(bytes: Uint8Array): Result<InitiationFrame> {
  const prefix = checkPrefix(bytes, TunnelMessage.Initiation, "handshake initiation");
  if (!prefix.ok) return prefix;
  if (bytes.length !== INITIATION_SIZE) {
    return fail("bad_length", `handshake initiation is ${bytes.length} bytes, expected ${INITIATION_SIZE}`);
  }
  return ok({
    kind: "initiation",
    noise: bytes.subarray(4, INITIATION_MAC_OFFSET),
    macInput: bytes.subarray(0, INITIATION_MAC_OFFSET),
    mac1: bytes.subarray(INITIATION_MAC_OFFSET, INITIATION_MAC2_OFFSET),
    mac2Input: bytes.subarray(0, INITIATION_MAC2_OFFSET),
    mac2: bytes.subarray(INITIATION_MAC2_OFFSET),
  });
}

export function decodeResponse(bytes: Uint8Array): Result<ResponseFrame> {
  const prefix = checkPrefix(bytes, TunnelMessage.Response, "handshake response");
  if (!prefix.ok) return prefix;
  if (bytes.length !== RESPONSE_SIZE) {
    return fail("bad_length", `handshake response is ${bytes.length} bytes, expected ${RESPONSE_SIZE}`);
  }
  return ok({
    kind: "response",
    receiverIndex: view(bytes).getUint32(4),
    noise: bytes.subarray(8, RESPONSE_MAC_OFFSET),
    macInput: bytes.subarray(0, RESPONSE_MAC_OFFSET),
    mac1: bytes.subarray(RESPONSE_MAC_OFFSET),
  });
}

export function decodeCookieReply(bytes: Uint8Array): Result<CookieReplyFrame> {
  const prefix = checkPrefix(bytes, TunnelMessage.CookieReply, "cookie reply");
  if (!prefix.ok) return prefix;
  if (bytes.length !== COOKIE_REPLY_SIZE) {
    return fail("bad_length", `cookie reply is ${bytes.length} bytes, expected ${COOKIE_REPLY_SIZE}`);
  }
  const nonceAt = 4 + MAC_SIZE;
  return ok({
    kind: "cookie_reply",
    mac1: bytes.subarray(4, nonceAt),
    nonce: bytes.subarray(nonceAt, nonceAt + COOKIE_NONCE_SIZE),
    sealedCookie: bytes.subarray(nonceAt + COOKIE_NONCE_SIZE),
  });
}

export function decodeDataFrame(bytes: Uint8Array): Result<DataFrame> {
  const prefix = checkPrefix(bytes, TunnelMessage.Data, "data frame");
  if (!prefix.ok) return prefix;
  if (bytes.length < MIN_DATA_FRAME) return fail("truncated", `data frame of ${bytes.length} bytes is shorter than ${MIN_DATA_FRAME}`);
  if (bytes.length > MAX_DATA_FRAME) return fail("bad_length", `data frame of ${bytes.length} bytes exceeds ${MAX_DATA_FRAME}`);
  const v = view(bytes);
  const high = v.getUint32(8);
  if (high > 0x1f_ffff) return fail("counter_out_of_range", "data frame counter exceeds 2^53 - 1");
  return ok({
    kind: "data",
    receiverIndex: v.getUint32(4),
    counter: high * 0x1_0000_0000 + v.getUint32(12),
    header: bytes.subarray(0, DATA_HEADER_SIZE),
    sealed: bytes.subarray(DATA_HEADER_SIZE),
  });
}

/** Decodes any tunnel frame by its type byte. */
export function decodeTunnelFrame(bytes: Uint8Array): Result<TunnelFrame> {
  if (bytes.length === 0) return fail("truncated", "empty datagram");
  const type = bytes[0]!;
  switch (type) {
    case TunnelMessage.Initiation:
      return decodeInitiation(bytes);
    case TunnelMessage.Response:
      return decodeResponse(bytes);
    case TunnelMessage.CookieReply:
      return decodeCookieReply(bytes);
    case TunnelMessage.Data:
      return decodeDataFrame(bytes);
    default:
      if (isBeaconType(type)) return ok({ kind: "beacon", type, bytes });
      return fail("unknown_type", `unknown tunnel message type 0x${type.toString(16).padStart(2, "0")}`);
  }
}

function checkLength(part: Uint8Array, expected: number, what: string): void {
  if (part.length !== expected) throw new RangeError(`${what} must be ${expected} bytes, got ${part.length}`);
}

function checkU32(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new RangeError(`${what} ${n} is not a u32`);
}

/** Builds an initiation frame; the macs are left zero when not given (the handshake fills them in). */
export function encodeInitiation(noise: Uint8Array, mac1?: Uint8Array, mac2?: Uint8Array): Uint8Array {
  checkLength(noise, INITIATION_NOISE_SIZE, "initiation Noise message");
  const out = new Uint8Array(INITIATION_SIZE);
  out[0] = TunnelMessage.Initiation;
  out.set(noise, 4);
  if (mac1) {
    checkLength(mac1, MAC_SIZE, "mac1");
    out.set(mac1, INITIATION_MAC_OFFSET);
  }
  if (mac2) {
    checkLength(mac2, MAC_SIZE, "mac2");
    out.set(mac2, INITIATION_MAC2_OFFSET);
  }
  return out;
}

export function encodeCookieReply(mac1: Uint8Array, nonce: Uint8Array, sealedCookie: Uint8Array): Uint8Array {
  checkLength(mac1, MAC_SIZE, "mac1");
  checkLength(nonce, COOKIE_NONCE_SIZE, "cookie nonce");
  checkLength(sealedCookie, COOKIE_SEALED_SIZE, "sealed cookie");
  const out = new Uint8Array(COOKIE_REPLY_SIZE);
  out[0] = TunnelMessage.CookieReply;
  out.set(mac1, 4);
  out.set(nonce, 4 + MAC_SIZE);
  out.set(sealedCookie, 4 + MAC_SIZE + COOKIE_NONCE_SIZE);
  return out;
}

export function encodeResponse(receiverIndex: number, noise: Uint8Array, mac1?: Uint8Array): Uint8Array {
  checkU32(receiverIndex, "receiver index");
  checkLength(noise, RESPONSE_NOISE_SIZE, "response Noise message");
  const out = new Uint8Array(RESPONSE_SIZE);
  out[0] = TunnelMessage.Response;
  view(out).setUint32(4, receiverIndex);
  out.set(noise, 8);
  if (mac1) {
    checkLength(mac1, MAC_SIZE, "mac1");
    out.set(mac1, RESPONSE_MAC_OFFSET);
  }
  return out;
}

/** Writes the 16-byte data header at `offset` (hot path: no checks beyond the caller's). */
export function writeDataHeader(out: Uint8Array, offset: number, receiverIndex: number, counter: number): void {
  out[offset] = TunnelMessage.Data;
  out[offset + 1] = 0;
  out[offset + 2] = 0;
  out[offset + 3] = 0;
  out[offset + 4] = receiverIndex >>> 24;
  out[offset + 5] = (receiverIndex >>> 16) & 0xff;
  out[offset + 6] = (receiverIndex >>> 8) & 0xff;
  out[offset + 7] = receiverIndex & 0xff;
  const high = Math.floor(counter / 0x1_0000_0000);
  const low = counter >>> 0;
  out[offset + 8] = high >>> 24;
  out[offset + 9] = (high >>> 16) & 0xff;
  out[offset + 10] = (high >>> 8) & 0xff;
  out[offset + 11] = high & 0xff;
  out[offset + 12] = low >>> 24;
  out[offset + 13] = (low >>> 16) & 0xff;
  out[offset + 14] = (low >>> 8) & 0xff;
  out[offset + 15] = low & 0xff;
}

export function encodeDataFrame(receiverIndex: number, counter: number, sealed: Uint8Array): Uint8Array {
  checkU32(receiverIndex, "receiver index");
  if (!Number.isSafeInteger(counter) || counter < 0) throw new RangeError(`counter ${counter} is out of range`);
  if (sealed.length < TAG_SIZE) throw new RangeError("sealed payload is shorter than its tag");
  if (DATA_HEADER_SIZE + sealed.length > MAX_DATA_FRAME) throw new RangeError(`data frame would exceed ${MAX_DATA_FRAME} bytes`);
  const out = new Uint8Array(DATA_HEADER_SIZE + sealed.length);
  writeDataHeader(out, 0, receiverIndex, counter);
  out.set(sealed, DATA_HEADER_SIZE);
  return out;
}
