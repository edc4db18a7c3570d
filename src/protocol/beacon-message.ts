/**
 * Beacon datagrams: the rendezvous's UDP side. They share the daemon's tunnel
 * socket, so the first byte tells them apart: the tunnel uses 0x01-0x0F, the
 * beacon 0x20-0x2F. All integers are big-endian; every message has one exact
 * length, and decoders return a Result on hostile input, never throw.
 *
 *   discover        0x20  [type][nonce 16][zero padding 83]                       = 100 bytes
 *   discover_reply  0x21  [type][family 4|6][port u16][ip 4|16][nonce 16][sig 64]  = 88 | 100 bytes
 *
 * A discover is padded to the size of the largest reply so that the beacon
 * never sends more bytes than it received: a spoofed source address cannot
 * turn it into a traffic amplifier. The reply's signature (Ed25519, by the
 * rendezvous key) covers DISCOVER_REPLY_CONTEXT followed by every reply byte
 * before the signature; signing and verifying live outside this pure module.
 * Types 0x22-0x2F are reserved for hole punching and relay.
 */
import { fail, ok, type Result } from "./result.ts";

export const BEACON_TYPE_MIN = 0x20;
export const BEACON_TYPE_MAX = 0x2f;

export const BeaconType = {
  Discover: 0x20,
  DiscoverReply: 0x21,
} as const;

export const BEACON_NONCE_SIZE = 16;
export const BEACON_SIGNATURE_SIZE = 64;
export const DISCOVER_SIZE = 100;
export const DISCOVER_REPLY_V4_SIZE = 1 + 1 + 2 + 4 + BEACON_NONCE_SIZE + BEACON_SIGNATURE_SIZE;
export const DISCOVER_REPLY_V6_SIZE = 1 + 1 + 2 + 16 + BEACON_NONCE_SIZE + BEACON_SIGNATURE_SIZE;

/** Domain separation for the reply signature: never valid as any other Pilot signature. */
export const DISCOVER_REPLY_CONTEXT = "pilot-beacon-discover-reply-v1\n";

export interface Discover {
  readonly type: "discover";
  readonly nonce: Uint8Array;
}

export interface DiscoverReply {
  readonly type: "discover_reply";
  readonly nonce: Uint8Array;
  /** The sender's address as the beacon saw it: dotted IPv4 or RFC 5952 IPv6 text. */
  readonly ip: string;
  readonly port: number;
  readonly signature: Uint8Array;
}

export type BeaconMessage = Discover | DiscoverReply;

/** True when a datagram on the shared socket belongs to the beacon (first byte 0x20-0x2F). */
export function isBeaconDatagram(datagram: Uint8Array): boolean {
  return datagram.length > 0 && datagram[0]! >= BEACON_TYPE_MIN && datagram[0]! <= BEACON_TYPE_MAX;
}

function checkNonce(nonce: Uint8Array): void {
  if (nonce.length !== BEACON_NONCE_SIZE) throw new RangeError(`beacon nonce must be ${BEACON_NONCE_SIZE} bytes, got ${nonce.length}`);
}

export function encodeDiscover(nonce: Uint8Array): Uint8Array {
  checkNonce(nonce);
  const out = new Uint8Array(DISCOVER_SIZE);
  out[0] = BeaconType.Discover;
  out.set(nonce, 1);
  return out;
}

/** The reply without its signature: exactly the bytes the signature covers, after the context. */
export function encodeDiscoverReplyBody(reply: { nonce: Uint8Array; ip: string; port: number }): Uint8Array {
  checkNonce(reply.nonce);
  if (!Number.isInteger(reply.port) || reply.port < 0 || reply.port > 0xffff) throw new RangeError(`port ${reply.port} is not a u16`);
  const ip = parseIp(reply.ip);
  if (!ip.ok) throw new RangeError(ip.error.message);
  const bytes = ip.value;
  const out = new Uint8Array(1 + 1 + 2 + bytes.length + BEACON_NONCE_SIZE);
  out[0] = BeaconType.DiscoverReply;
  out[1] = bytes.length === 4 ? 4 : 6;
  out[2] = reply.port >>> 8;
  out[3] = reply.port & 0xff;
  out.set(bytes, 4);
  out.set(reply.nonce, 4 + bytes.length);
  return out;
}

export function encodeDiscoverReply(body: Uint8Array, signature: Uint8Array): Uint8Array {
  if (signature.length !== BEACON_SIGNATURE_SIZE) throw new RangeError(`signature must be ${BEACON_SIGNATURE_SIZE} bytes`);
  const out = new Uint8Array(body.length + BEACON_SIGNATURE_SIZE);
  out.set(body);
  out.set(signature, body.length);
  return out;
}

/** What the rendezvous signs and a daemon verifies: context ‖ reply body. */
export function discoverReplySignedBytes(body: Uint8Array): Uint8Array {
  const context = new TextEncoder().encode(DISCOVER_REPLY_CONTEXT);
  const out = new Uint8Array(context.length + body.length);
  out.set(context);
  out.set(body, context.length);
  return out;
}

/** The signed part of an encoded reply (everything but the trailing signature). */
export function discoverReplyBodyOf(reply: Uint8Array): Uint8Array {
  return reply.subarray(0, Math.max(0, reply.length - BEACON_SIGNATURE_SIZE));
}

export function decodeBeaconMessage(datagram: Uint8Array): Result<BeaconMessage> {
  if (datagram.length === 0) return fail("truncated", "empty datagram");
  const type = datagram[0]!;
  if (type < BEACON_TYPE_MIN || type > BEACON_TYPE_MAX) {
    return fail("not_beacon", `first byte 0x${type.toString(16).padStart(2, "0")} is outside the beacon range 0x20-0x2F`);
  }
  switch (type) {
    case BeaconType.Discover:
      return decodeDiscover(datagram);
    case BeaconType.DiscoverReply:
      return decodeDiscoverReply(datagram);
    default:
      return fail("unknown_type", `beacon message type 0x${type.toString(16)} is not known`);
  }
}

function decodeDiscover(d: Uint8Array): Result<BeaconMessage> {
  if (d.length !== DISCOVER_SIZE) return fail("bad_length", `discover must be ${DISCOVER_SIZE} bytes, got ${d.length}`);
  for (let i = 1 + BEACON_NONCE_SIZE; i < DISCOVER_SIZE; i++) {
    if (d[i] !== 0) return fail("bad_padding", "discover padding must be zero");
  }
  return ok({ type: "discover", nonce: d.slice(1, 1 + BEACON_NONCE_SIZE) });
}

function decodeDiscoverReply(d: Uint8Array): Result<BeaconMessage> {
  if (d.length < 2) return fail("truncated", "discover_reply is truncated");
  const family = d[1]!;
  if (family !== 4 && family !== 6) return fail("bad_family", `address family ${family} is neither 4 nor 6`);
  const ipSize = family === 4 ? 4 : 16;
  const expected = family === 4 ? DISCOVER_REPLY_V4_SIZE : DISCOVER_REPLY_V6_SIZE;
  if (d.length !== expected) return fail("bad_length", `discover_reply (IPv${family}) must be ${expected} bytes, got ${d.length}`);
  const port = (d[2]! << 8) | d[3]!;
  const ip = formatIp(d.subarray(4, 4 + ipSize));
  const nonceAt = 4 + ipSize;
  return ok({
    type: "discover_reply",
    ip,
    port,
    nonce: d.slice(nonceAt, nonceAt + BEACON_NONCE_SIZE),
    signature: d.slice(nonceAt + BEACON_NONCE_SIZE),
  });
}

// ---------------------------------------------------------------------------
// IP literals <-> bytes (pure; no DNS, no zone ids).

const IPV4 = /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** Parses a dotted IPv4 (4 bytes) or textual IPv6 (16 bytes) literal. */
export function parseIp(text: string): Result<Uint8Array> {
  if (IPV4.test(text)) return ok(new Uint8Array(text.split(".").map(Number)));
  return parseIpv6(text);
}

function parseIpv6(text: string): Result<Uint8Array> {
  const bad = () => fail("invalid_ip", `"${text.slice(0, 64)}" is not an IPv4 or IPv6 literal`);
  if (text.length === 0 || text.length > 45) return bad();
  const halves = text.split("::");
  if (halves.length > 2) return bad();
  const parseGroups = (part: string, allowV4Tail: boolean): number[] | undefined => {
    if (part === "") return [];
    const groups = part.split(":");
    const out: number[] = [];
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      if (allowV4Tail && i === groups.length - 1 && IPV4.test(g)) {
        const b = g.split(".").map(Number) as [number, number, number, number];
        out.push((b[0] << 8) | b[1], (b[2] << 8) | b[3]);
      } else if (HEX_GROUP.test(g)) {
        out.push(parseInt(g, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = parseGroups(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? parseGroups(halves[1]!, true) : [];
  if (head === undefined || tail === undefined) return bad();
  let groups: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return bad();
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return bad();
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i]! >>> 8;
    out[2 * i + 1] = groups[i]! & 0xff;
  }
  return ok(out);
}

/**
 * Formats 4 bytes as dotted IPv4, 16 bytes as RFC 5952 IPv6 (lowercase, the
 * longest run of two or more zero groups shortened to "::", IPv4-mapped
 * addresses as ::ffff:a.b.c.d). Any other length throws (a caller bug).
 */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) throw new RangeError(`an IP address is 4 or 16 bytes, got ${bytes.length}`);
  let mapped = bytes[10] === 0xff && bytes[11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) if (bytes[i] !== 0) mapped = false;
  if (mapped) return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((bytes[2 * i]! << 8) | bytes[2 * i + 1]!);
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) => groups.slice(from, to).map((g) => g.toString(16)).join(":");
  if (bestLength < 2) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/** An IPv4-mapped IPv6 literal (::ffff:a.b.c.d) as plain IPv4; anything else unchanged. */
export function unmapIpv4(ip: string): string {
  const lower = ip.toLowerCase();
  if (lower.startsWith("::ffff:") && IPV4.test(lower.slice(7))) return lower.slice(7);
  return ip;
}
