/**
 * Beacon datagrams: the rendezvous's UDP side. They share the daemon's tunnel
 * socket, so the first byte tells them apart: the tunnel uses 0x01-0x0F, the
 * beacon 0x20-0x2F. All integers are big-endian; every message has one exact
 * length (relay messages: a header and one tunnel frame), and decoders return
 * a Result on hostile input, never throw.
 *
 *   discover        0x20  [type][nonce 16][zero padding 83]                                        = 100
 *   discover_reply  0x21  [type][family 4|6][port u16][ip 4|16][nonce 16][sig 64]                   = 88 | 100
 *   register        0x22  [type][0][0 0][node u32][ts u64][nonce 16][token 16][sig 64]               = 112
 *   challenge       0x23  [type][0][0 0][nonce 16][token 16]                                         = 36
 *   register_ack    0x24  [type][family][port u16][ip 4|16][node u32][ttl u32][nonce 16][sig 64]     = 96 | 108
 *   punch_request   0x25  [type][0][0 0][node u32][target u32][nonce 16][zero padding 88]            = 116
 *   punch           0x26  [type][family][port u16][ip 4|16][to u32][peer u32][ts u64][nonce 16][sig 64] = 104 | 116
 *   relay           0x27  [type][0][0 0][destination u32][tunnel frame]                              = 8 + frame
 *   relay_deliver   0x28  [type][0][0 0][source u32][tunnel frame]                                   = 8 + frame
 *   punch_probe     0x29  [type][0][0 0][from u32][to u32][nonce 8]                                  = 20
 *   not_registered  0x2A  [type][0][0 0]                                                             = 4
 *   ping            0x2D  [type][0][0 0][nonce 8]                                                    = 12
 *   pong            0x2E  [type][0][0 0][nonce 8]                                                    = 12
 *
 * Who sends what, and why each is safe (docs/NAT.md has the whole story):
 * - register (node -> beacon) binds a node id to the UDP source address it
 *   arrives from. It is signed by the node's key over REGISTER_CONTEXT, the
 *   beacon's key and the body, and carries a `token` the beacon issued for
 *   exactly that source address (challenge), so a captured registration
 *   replayed from elsewhere binds nothing.
 * - register_ack and punch come from the beacon, signed by the rendezvous key.
 * - punch_request and relay are accepted by the beacon only from the source
 *   address a node registered; relay carries an opaque, end-to-end
 *   authenticated tunnel frame that the beacon cannot read or alter unnoticed.
 * - punch_probe goes node to node only to open NAT mappings; it carries no
 *   authority and receivers ignore its content.
 * - ping (node -> beacon) asks "are you there?": a daemon given several
 *   beacons sends one a second so that it notices a dead beacon within about
 *   two seconds. The beacon answers a pong echoing the nonce, exactly as
 *   large, only to a registered source address and within a per-node rate.
 *
 * A request is never smaller than the answer it draws (discover, register and
 * punch_request are padded), so a spoofed source cannot make the beacon an
 * amplifier. Signing and verifying live outside this pure module. Types 0x2B
 * and 0x2C go between beacons only (beacon-mesh.ts); 0x2F is unassigned.
 */
import { fail, ok, type Result } from "./result.ts";

export const BEACON_TYPE_MIN = 0x20;
export const BEACON_TYPE_MAX = 0x2f;

export const BeaconType = {
  Discover: 0x20,
  DiscoverReply: 0x21,
  Register: 0x22,
  Challenge: 0x23,
  RegisterAck: 0x24,
  PunchRequest: 0x25,
  Punch: 0x26,
  Relay: 0x27,
  RelayDeliver: 0x28,
  PunchProbe: 0x29,
  NotRegistered: 0x2a,
  Ping: 0x2d,
  Pong: 0x2e,
} as const;

export const BEACON_NONCE_SIZE = 16;
export const BEACON_TOKEN_SIZE = 16;
export const BEACON_SIGNATURE_SIZE = 64;
export const DISCOVER_SIZE = 100;
export const DISCOVER_REPLY_V4_SIZE = 1 + 1 + 2 + 4 + BEACON_NONCE_SIZE + BEACON_SIGNATURE_SIZE;
export const DISCOVER_REPLY_V6_SIZE = 1 + 1 + 2 + 16 + BEACON_NONCE_SIZE + BEACON_SIGNATURE_SIZE;
export const REGISTER_SIZE = 4 + 4 + 8 + BEACON_NONCE_SIZE + BEACON_TOKEN_SIZE + BEACON_SIGNATURE_SIZE;
export const CHALLENGE_SIZE = 4 + BEACON_NONCE_SIZE + BEACON_TOKEN_SIZE;
export const REGISTER_ACK_V4_SIZE = 4 + 4 + 4 + 4 + BEACON_NONCE_SIZE + BEACON_SIGNATURE_SIZE;
export const REGISTER_ACK_V6_SIZE = REGISTER_ACK_V4_SIZE + 12;
export const PUNCH_V4_SIZE = 4 + 4 + 4 + 4 + 8 + BEACON_NONCE_SIZE + BEACON_SIGNATURE_SIZE;
export const PUNCH_V6_SIZE = PUNCH_V4_SIZE + 12;
export const PUNCH_REQUEST_SIZE = PUNCH_V6_SIZE;
export const PUNCH_PROBE_SIZE = 20;
export const NOT_REGISTERED_SIZE = 4;
export const PING_SIZE = 12;
export const PING_NONCE_SIZE = 8;
/** Bytes a relay envelope adds to a tunnel frame (within limits.ts's RELAY_ENVELOPE_RESERVE). */
export const RELAY_HEADER_SIZE = 8;
/** A relayed frame is a tunnel frame: 32 bytes (an empty data frame) up to 1360. */
export const RELAY_FRAME_MIN = 32;
export const RELAY_FRAME_MAX = 1360;

/** Domain separation: each signature is valid for one message kind only, and never as any other Pilot signature. */
export const DISCOVER_REPLY_CONTEXT = "pilot-beacon-discover-reply-v1\n";
export const REGISTER_CONTEXT = "pilot-beacon-register-v1\n";
export const REGISTER_ACK_CONTEXT = "pilot-beacon-register-ack-v1\n";
export const PUNCH_CONTEXT = "pilot-beacon-punch-v1\n";

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

export interface Register {
  readonly type: "register";
  readonly node: number;
  /** The node's wall clock, unix milliseconds. */
  readonly timestamp: number;
  readonly nonce: Uint8Array;
  /** The token from the beacon's last challenge for this source address (zeros when there is none). */
  readonly token: Uint8Array;
  readonly signature: Uint8Array;
}

export interface Challenge {
  readonly type: "challenge";
  /** The nonce of the register it answers. */
  readonly nonce: Uint8Array;
  readonly token: Uint8Array;
}

export interface RegisterAck {
  readonly type: "register_ack";
  /** The source address the registration was bound to (the node's public endpoint). */
  readonly ip: string;
  readonly port: number;
  readonly node: number;
  /** How long the registration lasts without a refresh, in ms. */
  readonly ttlMs: number;
  readonly nonce: Uint8Array;
  readonly signature: Uint8Array;
}

export interface PunchRequest {
  readonly type: "punch_request";
  readonly node: number;
  readonly target: number;
  readonly nonce: Uint8Array;
}

export interface Punch {
  readonly type: "punch";
  /** Where `peer` is registered: the address to punch toward. */
  readonly ip: string;
  readonly port: number;
  /** The node this command is for. */
  readonly to: number;
  readonly peer: number;
  /** The beacon's clock, unix milliseconds. */
  readonly timestamp: number;
  /** The nonce of the punch_request that caused it. */
  readonly nonce: Uint8Array;
  readonly signature: Uint8Array;
}

export interface Relay {
  readonly type: "relay";
  /** The destination node. */
  readonly node: number;
  readonly frame: Uint8Array;
}

export interface RelayDeliver {
  readonly type: "relay_deliver";
  /** The source node, as the beacon knows it from the source address it relayed from. */
  readonly node: number;
  readonly frame: Uint8Array;
}

export interface PunchProbe {
  readonly type: "punch_probe";
  readonly from: number;
  readonly to: number;
  readonly nonce: Uint8Array;
}

export interface NotRegistered {
  readonly type: "not_registered";
}

export interface Ping {
  readonly type: "ping" | "pong";
  readonly nonce: Uint8Array;
}

export type BeaconMessage =
  | Discover
  | DiscoverReply
  | Register
  | Challenge
  | RegisterAck
  | PunchRequest
  | Punch
  | Relay
  | RelayDeliver
  | PunchProbe
  | NotRegistered
  | Ping;

/** True when a datagram on the shared socket belongs to the beacon (first byte 0x20-0x2F). */
export function isBeaconDatagram(datagram: Uint8Array): boolean {
  return datagram.length > 0 && datagram[0]! >= BEACON_TYPE_MIN && datagram[0]! <= BEACON_TYPE_MAX;
}

function checkSize(bytes: Uint8Array, size: number, what: string): void {
  if (bytes.length !== size) throw new RangeError(`${what} must be ${size} bytes, got ${bytes.length}`);
}

function checkNonce(nonce: Uint8Array): void {
  checkSize(nonce, BEACON_NONCE_SIZE, "beacon nonce");
}

function checkU32(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new RangeError(`${what} ${n} is not a u32`);
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new RangeError(`port ${port} is not a u16`);
}

function checkTimestamp(ts: number): void {
  if (!Number.isSafeInteger(ts) || ts < 0) throw new RangeError(`timestamp ${ts} is not a non-negative safe integer`);
}

function ipBytes(ip: string): Uint8Array {
  const r = parseIp(ip);
  if (!r.ok) throw new RangeError(r.error.message);
  return r.value;
}

/** Big-endian, as every beacon message field. */
export function writeU32(out: Uint8Array, at: number, n: number): void {
  out[at] = n >>> 24;
  out[at + 1] = (n >>> 16) & 0xff;
  out[at + 2] = (n >>> 8) & 0xff;
  out[at + 3] = n & 0xff;
}

export function readU32(d: Uint8Array, at: number): number {
  return ((d[at]! << 24) | (d[at + 1]! << 16) | (d[at + 2]! << 8) | d[at + 3]!) >>> 0;
}

export function writeU64(out: Uint8Array, at: number, n: number): void {
  writeU32(out, at, Math.floor(n / 0x1_0000_0000));
  writeU32(out, at + 4, n >>> 0);
}

export function readU64(d: Uint8Array, at: number): number {
  return readU32(d, at) * 0x1_0000_0000 + readU32(d, at + 4);
}

/** `[type][family][port]` then the address bytes; returns the offset after them. */
function writeEndpoint(out: Uint8Array, ip: Uint8Array, port: number): number {
  out[1] = ip.length === 4 ? 4 : 6;
  out[2] = port >>> 8;
  out[3] = port & 0xff;
  out.set(ip, 4);
  return 4 + ip.length;
}

function concat(context: string, ...parts: Uint8Array[]): Uint8Array {
  const head = new TextEncoder().encode(context);
  let n = head.length;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  out.set(head);
  let at = head.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Appends a 64-byte signature to a signed body. */
export function appendSignature(body: Uint8Array, signature: Uint8Array): Uint8Array {
  checkSize(signature, BEACON_SIGNATURE_SIZE, "signature");
  const out = new Uint8Array(body.length + BEACON_SIGNATURE_SIZE);
  out.set(body);
  out.set(signature, body.length);
  return out;
}

/** The signed part of a signed message (everything but the trailing signature). */
export function signedBodyOf(message: Uint8Array): Uint8Array {
  return message.subarray(0, Math.max(0, message.length - BEACON_SIGNATURE_SIZE));
}

// ---- discover ---------------------------------------------------------------

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
  checkPort(reply.port);
  const ip = ipBytes(reply.ip);
  const out = new Uint8Array(1 + 1 + 2 + ip.length + BEACON_NONCE_SIZE);
  out[0] = BeaconType.DiscoverReply;
  const at = writeEndpoint(out, ip, reply.port);
  out.set(reply.nonce, at);
  return out;
}

export function encodeDiscoverReply(body: Uint8Array, signature: Uint8Array): Uint8Array {
  return appendSignature(body, signature);
}

/** What the rendezvous signs and a daemon verifies: context ‖ reply body. */
export function discoverReplySignedBytes(body: Uint8Array): Uint8Array {
  return concat(DISCOVER_REPLY_CONTEXT, body);
}

/** The signed part of an encoded reply (everything but the trailing signature). */
export function discoverReplyBodyOf(reply: Uint8Array): Uint8Array {
  return signedBodyOf(reply);
}

// ---- register / challenge / register_ack --------------------------------------

export function encodeRegisterBody(r: { node: number; timestamp: number; nonce: Uint8Array; token: Uint8Array }): Uint8Array {
  checkU32(r.node, "node");
  checkTimestamp(r.timestamp);
  checkNonce(r.nonce);
  checkSize(r.token, BEACON_TOKEN_SIZE, "token");
  const out = new Uint8Array(REGISTER_SIZE - BEACON_SIGNATURE_SIZE);
  out[0] = BeaconType.Register;
  writeU32(out, 4, r.node);
  writeU64(out, 8, r.timestamp);
  out.set(r.nonce, 16);
  out.set(r.token, 16 + BEACON_NONCE_SIZE);
  return out;
}

/** What a node signs to register: context ‖ the beacon's public key ‖ register body. */
export function registerSignedBytes(beaconKey: Uint8Array, body: Uint8Array): Uint8Array {
  return concat(REGISTER_CONTEXT, beaconKey, body);
}

export function encodeChallenge(nonce: Uint8Array, token: Uint8Array): Uint8Array {
  checkNonce(nonce);
  checkSize(token, BEACON_TOKEN_SIZE, "token");
  const out = new Uint8Array(CHALLENGE_SIZE);
  out[0] = BeaconType.Challenge;
  out.set(nonce, 4);
  out.set(token, 4 + BEACON_NONCE_SIZE);
  return out;
}

export function encodeRegisterAckBody(a: { ip: string; port: number; node: number; ttlMs: number; nonce: Uint8Array }): Uint8Array {
  checkPort(a.port);
  checkU32(a.node, "node");
  checkU32(a.ttlMs, "ttl");
  checkNonce(a.nonce);
  const ip = ipBytes(a.ip);
  const out = new Uint8Array(4 + ip.length + 8 + BEACON_NONCE_SIZE);
  out[0] = BeaconType.RegisterAck;
  let at = writeEndpoint(out, ip, a.port);
  writeU32(out, at, a.node);
  writeU32(out, at + 4, a.ttlMs);
  at += 8;
  out.set(a.nonce, at);
  return out;
}

export function registerAckSignedBytes(body: Uint8Array): Uint8Array {
  return concat(REGISTER_ACK_CONTEXT, body);
}

// ---- punching -----------------------------------------------------------------

export function encodePunchRequest(r: { node: number; target: number; nonce: Uint8Array }): Uint8Array {
  checkU32(r.node, "node");
  checkU32(r.target, "target");
  checkNonce(r.nonce);
  const out = new Uint8Array(PUNCH_REQUEST_SIZE);
  out[0] = BeaconType.PunchRequest;
  writeU32(out, 4, r.node);
  writeU32(out, 8, r.target);
  out.set(r.nonce, 12);
  return out;
}

export function encodePunchBody(p: { ip: string; port: number; to: number; peer: number; timestamp: number; nonce: Uint8Array }): Uint8Array {
  checkPort(p.port);
  checkU32(p.to, "to");
  checkU32(p.peer, "peer");
  checkTimestamp(p.timestamp);
  checkNonce(p.nonce);
  const ip = ipBytes(p.ip);
  const out = new Uint8Array(4 + ip.length + 16 + BEACON_NONCE_SIZE);
  out[0] = BeaconType.Punch;
  let at = writeEndpoint(out, ip, p.port);
  writeU32(out, at, p.to);
  writeU32(out, at + 4, p.peer);
  writeU64(out, at + 8, p.timestamp);
  at += 16;
  out.set(p.nonce, at);
  return out;
}

export function punchSignedBytes(body: Uint8Array): Uint8Array {
  return concat(PUNCH_CONTEXT, body);
}

export function encodePunchProbe(p: { from: number; to: number; nonce: Uint8Array }): Uint8Array {
  checkU32(p.from, "from");
  checkU32(p.to, "to");
  checkSize(p.nonce, 8, "probe nonce");
  const out = new Uint8Array(PUNCH_PROBE_SIZE);
  out[0] = BeaconType.PunchProbe;
  writeU32(out, 4, p.from);
  writeU32(out, 8, p.to);
  out.set(p.nonce, 12);
  return out;
}

export function encodeNotRegistered(): Uint8Array {
  const out = new Uint8Array(NOT_REGISTERED_SIZE);
  out[0] = BeaconType.NotRegistered;
  return out;
}

/** A ping (node -> beacon) or its pong (beacon -> node): the same 12 bytes but the type. */
export function encodePing(type: "ping" | "pong", nonce: Uint8Array): Uint8Array {
  checkSize(nonce, PING_NONCE_SIZE, "ping nonce");
  const out = new Uint8Array(PING_SIZE);
  out[0] = type === "ping" ? BeaconType.Ping : BeaconType.Pong;
  out.set(nonce, 4);
  return out;
}

// ---- relay --------------------------------------------------------------------

function checkRelayFrame(frame: Uint8Array): void {
  if (frame.length < RELAY_FRAME_MIN || frame.length > RELAY_FRAME_MAX) {
    throw new RangeError(`a relayed frame is ${RELAY_FRAME_MIN}-${RELAY_FRAME_MAX} bytes, got ${frame.length}`);
  }
}

/** Writes the 8-byte relay header in place (for shells that reuse one buffer). */
export function writeRelayHeader(out: Uint8Array, type: typeof BeaconType.Relay | typeof BeaconType.RelayDeliver, node: number): void {
  out[0] = type;
  out[1] = 0;
  out[2] = 0;
  out[3] = 0;
  writeU32(out, 4, node);
}

export function encodeRelay(destination: number, frame: Uint8Array): Uint8Array {
  checkU32(destination, "destination");
  checkRelayFrame(frame);
  const out = new Uint8Array(RELAY_HEADER_SIZE + frame.length);
  writeRelayHeader(out, BeaconType.Relay, destination);
  out.set(frame, RELAY_HEADER_SIZE);
  return out;
}

export function encodeRelayDeliver(source: number, frame: Uint8Array): Uint8Array {
  checkU32(source, "source");
  checkRelayFrame(frame);
  const out = new Uint8Array(RELAY_HEADER_SIZE + frame.length);
  writeRelayHeader(out, BeaconType.RelayDeliver, source);
  out.set(frame, RELAY_HEADER_SIZE);
  return out;
}

/** Re-encodes any decoded message (its signature included), byte for byte. */
export function encodeBeaconMessage(m: BeaconMessage): Uint8Array {
  switch (m.type) {
    case "discover":
      return encodeDiscover(m.nonce);
    case "discover_reply":
      return appendSignature(encodeDiscoverReplyBody(m), m.signature);
    case "register":
      return appendSignature(encodeRegisterBody(m), m.signature);
    case "challenge":
      return encodeChallenge(m.nonce, m.token);
    case "register_ack":
      return appendSignature(encodeRegisterAckBody(m), m.signature);
    case "punch_request":
      return encodePunchRequest(m);
    case "punch":
      return appendSignature(encodePunchBody(m), m.signature);
    case "relay":
      return encodeRelay(m.node, m.frame);
    case "relay_deliver":
      return encodeRelayDeliver(m.node, m.frame);
    case "punch_probe":
      return encodePunchProbe(m);
    case "not_registered":
      return encodeNotRegistered();
    case "ping":
    case "pong":
      return encodePing(m.type, m.nonce);
  }
}

// ---- decoding -----------------------------------------------------------------

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
    case BeaconType.Register:
      return decodeRegister(datagram);
    case BeaconType.Challenge:
      return decodeChallenge(datagram);
    case BeaconType.RegisterAck:
      return decodeRegisterAck(datagram);
    case BeaconType.PunchRequest:
      return decodePunchRequest(datagram);
    case BeaconType.Punch:
      return decodePunch(datagram);
    case BeaconType.Relay:
    case BeaconType.RelayDeliver:
      return decodeRelay(datagram);
    case BeaconType.PunchProbe:
      return decodePunchProbe(datagram);
    case BeaconType.NotRegistered:
      return datagram.length === NOT_REGISTERED_SIZE && zeros(datagram, 1, 4)
        ? ok({ type: "not_registered" })
        : fail(datagram.length === NOT_REGISTERED_SIZE ? "bad_padding" : "bad_length", `not_registered must be ${NOT_REGISTERED_SIZE} bytes with zero reserved bytes`);
    case BeaconType.Ping:
    case BeaconType.Pong: {
      const name = type === BeaconType.Ping ? "ping" : "pong";
      const h = fixedHeader(datagram, PING_SIZE, name);
      return h.ok ? ok({ type: name, nonce: datagram.slice(4, PING_SIZE) }) : h;
    }
    default:
      return fail("unknown_type", `beacon message type 0x${type.toString(16)} is not known`);
  }
}

function zeros(d: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (d[i] !== 0) return false;
  return true;
}

/** Checks `[type][0][0 0]` and the exact length. */
function fixedHeader(d: Uint8Array, size: number, name: string): Result<null> {
  if (d.length !== size) return fail("bad_length", `${name} must be ${size} bytes, got ${d.length}`);
  if (!zeros(d, 1, 4)) return fail("bad_padding", `${name} reserved bytes must be zero`);
  return ok(null);
}

/** Reads `[type][family][port][ip]`; checks the length against the family. */
function endpointHeader(d: Uint8Array, v4Size: number, v6Size: number, name: string): Result<{ ip: string; port: number; at: number }> {
  if (d.length < 2) return fail("truncated", `${name} is truncated`);
  const family = d[1]!;
  if (family !== 4 && family !== 6) return fail("bad_family", `address family ${family} is neither 4 nor 6`);
  const expected = family === 4 ? v4Size : v6Size;
  if (d.length !== expected) return fail("bad_length", `${name} (IPv${family}) must be ${expected} bytes, got ${d.length}`);
  const ipSize = family === 4 ? 4 : 16;
  return ok({ ip: formatIp(d.subarray(4, 4 + ipSize)), port: (d[2]! << 8) | d[3]!, at: 4 + ipSize });
}

function decodeDiscover(d: Uint8Array): Result<BeaconMessage> {
  if (d.length !== DISCOVER_SIZE) return fail("bad_length", `discover must be ${DISCOVER_SIZE} bytes, got ${d.length}`);
  if (!zeros(d, 1 + BEACON_NONCE_SIZE, DISCOVER_SIZE)) return fail("bad_padding", "discover padding must be zero");
  return ok({ type: "discover", nonce: d.slice(1, 1 + BEACON_NONCE_SIZE) });
}

function decodeDiscoverReply(d: Uint8Array): Result<BeaconMessage> {
  const h = endpointHeader(d, DISCOVER_REPLY_V4_SIZE, DISCOVER_REPLY_V6_SIZE, "discover_reply");
  if (!h.ok) return h;
  const { ip, port, at } = h.value;
  return ok({ type: "discover_reply", ip, port, nonce: d.slice(at, at + BEACON_NONCE_SIZE), signature: d.slice(at + BEACON_NONCE_SIZE) });
}

function decodeRegister(d: Uint8Array): Result<BeaconMessage> {
  const h = fixedHeader(d, REGISTER_SIZE, "register");
  if (!h.ok) return h;
  const timestamp = readU64(d, 8);
  if (!Number.isSafeInteger(timestamp)) return fail("bad_timestamp", "register timestamp is out of range");
  return ok({
    type: "register",
    node: readU32(d, 4),
    timestamp,
    nonce: d.slice(16, 32),
    token: d.slice(32, 48),
    signature: d.slice(48),
  });
}

function decodeChallenge(d: Uint8Array): Result<BeaconMessage> {
  const h = fixedHeader(d, CHALLENGE_SIZE, "challenge");
  if (!h.ok) return h;
  return ok({ type: "challenge", nonce: d.slice(4, 20), token: d.slice(20, 36) });
}

function decodeRegisterAck(d: Uint8Array): Result<BeaconMessage> {
  const h = endpointHeader(d, REGISTER_ACK_V4_SIZE, REGISTER_ACK_V6_SIZE, "register_ack");
  if (!h.ok) return h;
  const { ip, port, at } = h.value;
  return ok({
    type: "register_ack",
    ip,
    port,
    node: readU32(d, at),
    ttlMs: readU32(d, at + 4),
    nonce: d.slice(at + 8, at + 8 + BEACON_NONCE_SIZE),
    signature: d.slice(at + 8 + BEACON_NONCE_SIZE),
  });
}

function decodePunchRequest(d: Uint8Array): Result<BeaconMessage> {
  const h = fixedHeader(d, PUNCH_REQUEST_SIZE, "punch_request");
  if (!h.ok) return h;
  if (!zeros(d, 12 + BEACON_NONCE_SIZE, PUNCH_REQUEST_SIZE)) return fail("bad_padding", "punch_request padding must be zero");
  return ok({ type: "punch_request", node: readU32(d, 4), target: readU32(d, 8), nonce: d.slice(12, 28) });
}

function decodePunch(d: Uint8Array): Result<BeaconMessage> {
  const h = endpointHeader(d, PUNCH_V4_SIZE, PUNCH_V6_SIZE, "punch");
  if (!h.ok) return h;
  const { ip, port, at } = h.value;
  const timestamp = readU64(d, at + 8);
  if (!Number.isSafeInteger(timestamp)) return fail("bad_timestamp", "punch timestamp is out of range");
  return ok({
    type: "punch",
    ip,
    port,
    to: readU32(d, at),
    peer: readU32(d, at + 4),
    timestamp,
    nonce: d.slice(at + 16, at + 16 + BEACON_NONCE_SIZE),
    signature: d.slice(at + 16 + BEACON_NONCE_SIZE),
  });
}

function decodeRelay(d: Uint8Array): Result<BeaconMessage> {
  const name = d[0] === BeaconType.Relay ? "relay" : "relay_deliver";
  const frame = d.length - RELAY_HEADER_SIZE;
  if (frame < RELAY_FRAME_MIN || frame > RELAY_FRAME_MAX) {
    return fail("bad_length", `${name} carries a ${RELAY_FRAME_MIN}-${RELAY_FRAME_MAX} byte tunnel frame, got ${Math.max(0, frame)} bytes`);
  }
  if (!zeros(d, 1, 4)) return fail("bad_padding", `${name} reserved bytes must be zero`);
  return ok({ type: name, node: readU32(d, 4), frame: d.subarray(RELAY_HEADER_SIZE) });
}

function decodePunchProbe(d: Uint8Array): Result<BeaconMessage> {
  const h = fixedHeader(d, PUNCH_PROBE_SIZE, "punch_probe");
  if (!h.ok) return h;
  return ok({ type: "punch_probe", from: readU32(d, 4), to: readU32(d, 8), nonce: d.slice(12, 20) });
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
