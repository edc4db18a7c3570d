/**
 * The Pilot packet: the v0.5 wire spec's 34-byte header, bit for bit, then the payload.
 *
 *   0  u8   version (high nibble, always 1) | flags (low nibble: SYN 1, ACK 2, FIN 4, RST 8)
 *   1  u8   protocol
 *   2  u16  payload length
 *   4  6B   source address        10  6B  destination address
 *   16 u16  source port           18  u16 destination port
 *   20 u32  sequence number       24  u32 acknowledgment number
 *   28 u16  window                30  u32 CRC-32 over header (this field zeroed) + payload
 *
 * Stream segments that need options (SACK) use protocol 0x04, "stream with
 * options": the payload then starts with an options block
 * `[u8 length][TLV options]` and the rest is data. Options are recognised by the
 * protocol number in the header, never by guessing at payload content.
 * All integers are big-endian.
 */
import type { Address } from "./address.ts";
import { crc32 } from "./crc32.ts";
import { fail, ok, type Result } from "./result.ts";

export const HEADER_SIZE = 34;
export const PACKET_VERSION = 1;
export const MAX_PAYLOAD = 0xffff;

export const Flag = { SYN: 0x1, ACK: 0x2, FIN: 0x4, RST: 0x8 } as const;

export const Protocol = {
  Stream: 0x01,
  Datagram: 0x02,
  Control: 0x03,
  /** On the wire only: a stream segment whose payload begins with an options block. */
  StreamWithOptions: 0x04,
} as const;
export type ProtocolNumber = 0x01 | 0x02 | 0x03;

/** Option kinds inside the options block of a `StreamWithOptions` segment. */
export const OptionKind = { SACK: 1 } as const;
export const MAX_SACK_BLOCKS = 4;

/** A received range `[start, end)` in sequence space (end exclusive, mod 2^32). */
export interface SackBlock {
  readonly start: number;
  readonly end: number;
}

export interface Packet {
  readonly protocol: ProtocolNumber;
  readonly flags: number;
  readonly src: Address;
  readonly dst: Address;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly seq: number;
  readonly ack: number;
  readonly window: number;
  /** Stream only; empty for other protocols. */
  readonly sack: readonly SackBlock[];
  readonly payload: Uint8Array;
}

const NO_SACK: readonly SackBlock[] = Object.freeze([]);
const EMPTY = new Uint8Array(0);

/** Builds a packet with defaults for the fields a caller leaves out. */
export function packet(fields: Partial<Packet> & Pick<Packet, "protocol" | "src" | "dst">): Packet {
  return {
    flags: 0,
    srcPort: 0,
    dstPort: 0,
    seq: 0,
    ack: 0,
    window: 0,
    sack: NO_SACK,
    payload: EMPTY,
    ...fields,
  };
}

function optionsLength(p: Packet): number {
  if (p.protocol !== Protocol.Stream || p.sack.length === 0) return 0;
  return 1 + 2 + 8 * p.sack.length;
}

/** Total encoded size of `p`. */
export function encodedSize(p: Packet): number {
  return HEADER_SIZE + optionsLength(p) + p.payload.length;
}

/**
 * Encodes `p` into `out` at `offset` (or a new buffer) and returns the bytes written
 * as a view. Throws only on programmer error (a field out of range).
 */
export function encodePacket(p: Packet, out?: Uint8Array, offset = 0): Uint8Array {
  const optLen = optionsLength(p);
  const wirePayload = optLen + p.payload.length;
  if (wirePayload > MAX_PAYLOAD) throw new RangeError(`payload of ${wirePayload} bytes exceeds ${MAX_PAYLOAD}`);
  if (p.sack.length > MAX_SACK_BLOCKS) throw new RangeError(`at most ${MAX_SACK_BLOCKS} SACK blocks`);
  const size = HEADER_SIZE + wirePayload;
  const buf = out ? out.subarray(offset, offset + size) : new Uint8Array(size);
  if (buf.length < size) throw new RangeError(`output buffer too small: need ${size}`);
  // Plain byte stores: no DataView and no `.buffer` on the hot path (Bun materialises
  // an ArrayBuffer when `.buffer` is read on a natively created array).
  buf[0] = (PACKET_VERSION << 4) | (p.flags & 0x0f);
  buf[1] = optLen > 0 ? Protocol.StreamWithOptions : p.protocol;
  put16(buf, 2, wirePayload);
  putAddress(buf, 4, p.src);
  putAddress(buf, 10, p.dst);
  put16(buf, 16, p.srcPort);
  put16(buf, 18, p.dstPort);
  put32(buf, 20, p.seq);
  put32(buf, 24, p.ack);
  put16(buf, 28, p.window);
  put32(buf, 30, 0);
  let at = HEADER_SIZE;
  if (optLen > 0) {
    buf[at] = optLen - 1;
    buf[at + 1] = OptionKind.SACK;
    buf[at + 2] = 8 * p.sack.length;
    at += 3;
    for (const block of p.sack) {
      put32(buf, at, block.start);
      put32(buf, at + 4, block.end);
      at += 8;
    }
  }
  buf.set(p.payload, at);
  put32(buf, 30, crc32(buf));
  return buf;
}

const ZERO4 = new Uint8Array(4);

/** CRC-32 of an encoded packet with its checksum field taken as zero. */
function packetChecksum(bytes: Uint8Array): number {
  let c = crc32(bytes.subarray(0, 30));
  c = crc32(ZERO4, c);
  return crc32(bytes.subarray(HEADER_SIZE), c);
}

/**
 * Decodes one packet from untrusted bytes. Trailing bytes beyond the declared
 * payload are rejected (a frame holds exactly one packet). The payload is a view
 * into `bytes`, not a copy.
 */
export function decodePacket(bytes: Uint8Array): Result<Packet> {
  if (bytes.length < HEADER_SIZE) return fail("truncated", `packet of ${bytes.length} bytes is shorter than the 34-byte header`);
  const b0 = bytes[0]!;
  const version = b0 >> 4;
  if (version !== PACKET_VERSION) return fail("bad_version", `packet version ${version} is not ${PACKET_VERSION}`);
  const wireProtocol = bytes[1]!;
  const payloadLength = get16(bytes, 2);
  if (bytes.length !== HEADER_SIZE + payloadLength) {
    return fail("bad_length", `header declares ${payloadLength} payload bytes but ${bytes.length - HEADER_SIZE} follow`);
  }
  if (get32(bytes, 30) !== packetChecksum(bytes)) return fail("bad_checksum", "CRC-32 mismatch");
  let protocol: ProtocolNumber;
  let sack: readonly SackBlock[] = NO_SACK;
  let payload = bytes.subarray(HEADER_SIZE);
  switch (wireProtocol) {
    case Protocol.Stream:
    case Protocol.Datagram:
    case Protocol.Control:
      protocol = wireProtocol;
      break;
    case Protocol.StreamWithOptions: {
      const options = decodeOptions(payload);
      if (!options.ok) return options;
      protocol = Protocol.Stream;
      sack = options.value.sack;
      payload = payload.subarray(options.value.consumed);
      break;
    }
    default:
      return fail("bad_protocol", `unknown protocol 0x${wireProtocol.toString(16).padStart(2, "0")}`);
  }
  const flags = b0 & 0x0f;
  if (protocol !== Protocol.Stream && flags & (Flag.SYN | Flag.FIN | Flag.RST)) {
    return fail("bad_flags", "SYN, FIN and RST are meaningful only on stream packets");
  }
  return ok({
    protocol,
    flags,
    src: getAddress(bytes, 4),
    dst: getAddress(bytes, 10),
    srcPort: get16(bytes, 16),
    dstPort: get16(bytes, 18),
    seq: get32(bytes, 20),
    ack: get32(bytes, 24),
    window: get16(bytes, 28),
    sack,
    payload,
  });
}

function decodeOptions(payload: Uint8Array): Result<{ sack: readonly SackBlock[]; consumed: number }> {
  if (payload.length < 1) return fail("bad_options", "options block is missing its length byte");
  const length = payload[0]!;
  if (1 + length > payload.length) return fail("bad_options", `options block of ${length} bytes overruns the payload`);
  const opts = payload.subarray(1, 1 + length);
  let sack: SackBlock[] | null = null;
  let at = 0;
  while (at < length) {
    if (at + 2 > length) return fail("bad_options", "truncated option header");
    const kind = opts[at]!;
    const len = opts[at + 1]!;
    at += 2;
    if (at + len > length) return fail("bad_options", `option ${kind} overruns the options block`);
    if (kind === OptionKind.SACK) {
      if (sack !== null) return fail("bad_options", "SACK option appears twice");
      if (len === 0 || len % 8 !== 0 || len / 8 > MAX_SACK_BLOCKS) {
        return fail("bad_options", `SACK option length ${len} is not 8 x 1..${MAX_SACK_BLOCKS}`);
      }
      sack = [];
      for (let i = 0; i < len; i += 8) {
        sack.push({ start: get32(opts, at + i), end: get32(opts, at + i + 4) });
      }
    }
    // Unknown kinds are skipped: the TLV length makes that safe and lets the format grow.
    at += len;
  }
  return ok({ sack: sack ?? NO_SACK, consumed: 1 + length });
}

/** The header's window field counts units of this many bytes (so 0xFFFF = 64 MiB - 1 KiB). */
export const WINDOW_UNIT = 1024;

// ---- big-endian field access without DataView --------------------------------------

function put16(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 8;
  b[at + 1] = v;
}

function put32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = v >>> 16;
  b[at + 2] = v >>> 8;
  b[at + 3] = v;
}

function get16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

function get32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

const TWO_32 = 0x1_0000_0000;

function putAddress(b: Uint8Array, at: number, a: Address): void {
  put16(b, at, Math.floor(a / TWO_32));
  put32(b, at + 2, a % TWO_32);
}

function getAddress(b: Uint8Array, at: number): Address {
  return (get16(b, at) * TWO_32 + get32(b, at + 2)) as Address;
}
