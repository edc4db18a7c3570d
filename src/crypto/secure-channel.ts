/**
 * The secure channel ("port 443"): a second encryption layer inside one Pilot
 * stream, independent of the tunnel's keys. Sans-I/O: feed it the bytes the
 * stream delivered, take the bytes it wants sent, poll its events. It never
 * touches a socket or a clock; randomness is injectable. The wire format is in
 * docs/PROTOCOL.md §5.
 *
 *   const ch = new SecureChannel({ role: "client", client, server, peerIdentityKey });
 *   ch.start();                         // client: queues its hello
 *   send(ch.takeOutput());              // bytes for the stream (empty when none)
 *   ch.receive(bytes);                  // what the stream delivered
 *   ch.pollEvent();                     // { type: "sign", hash } | "established" | "data" | "end" | "failed"
 *   ch.provideSignature(sig64);         // answer to "sign": Ed25519 over SIGN_CONTEXT ‖ hash
 *   ch.seal(plaintext); ch.end();       // once established: records, then the authenticated end
 *   ch.finish();                        // the stream ended (FIN): truncation is an error
 *
 * Handshake (client = the side that dialled):
 *   C -> S  ClientHello  version, ephemeral X25519 e_C
 *   S -> C  ServerHello  e_S, Ed25519 signature of the server's identity over h_S
 *   C -> S  ClientAuth   Ed25519 signature of the client's identity over h_C
 * Both hashes cover a prologue naming both Pilot addresses and ports of the
 * stream, so a signature proves "this node talks to that node on this stream
 * with these ephemeral keys". Each side checks the other's signature with the
 * identity key its daemon pins for the address the stream comes from. Keys:
 * HKDF-SHA-256 over X25519(e_C, e_S), salted with the hash of the whole
 * transcript, one AES-256-GCM key per direction.
 *
 * The identity's private key never enters this module: a "sign" event asks
 * the owner for a signature (the daemon makes it: `signTranscriptHash`), and
 * only over the fixed context string followed by a 32-byte hash.
 *
 * Malformed or hostile input never throws: it fails the channel with a
 * SecureChannelError (a "failed" event; `error` holds it). A frame's length is
 * checked against its type's bound from the 4-byte header, before its body is
 * awaited or buffered, so buffered input never exceeds one maximal frame.
 */
import { createCipheriv, createDecipheriv, hkdfSync, type KeyObject } from "node:crypto";
import { writeAddress, type Address } from "../protocol/address.ts";
import { aeadKey, AEAD_TAG_SIZE, writeNonce } from "./aead.ts";
import { concatBytes } from "./bytes.ts";
import { sha256 } from "./hkdf.ts";
import { SIGNATURE_SIZE, verifySignature } from "./identity.ts";
import { KEY_SIZE, x25519, x25519PrivateKey, x25519PublicFromPrivate } from "./keys.ts";
import { secureRandom, type RandomSource } from "./noise.ts";

export const SECURE_CHANNEL_VERSION = 1;
/** Opens the prologue of every transcript. */
export const SECURE_CHANNEL_LABEL = "pilot-secure-channel-v1";
/** What a node identity signs for the secure channel: this context, then a 32-byte hash. Nothing else. */
export const SECURE_SIGN_CONTEXT = "pilot-secure-channel-sign-v1\n";
export const TRANSCRIPT_HASH_SIZE = 32;

export const FrameType = {
  ClientHello: 0x01,
  ServerHello: 0x02,
  ClientAuth: 0x03,
  Alert: 0x15,
  Data: 0x17,
  End: 0x18,
} as const;

export const AlertCode = {
  unsupported_version: 1,
  auth_failed: 2,
  unexpected_message: 3,
  bad_frame: 4,
  internal: 5,
} as const;
export type AlertName = keyof typeof AlertCode;

export const FRAME_HEADER_SIZE = 4;
export const SEQ_SIZE = 8;
/** Largest plaintext in one record: larger writes are split. */
export const MAX_RECORD_PLAINTEXT = 16 * 1024;
const CLIENT_HELLO_BODY = 1 + KEY_SIZE;
const SERVER_HELLO_BODY = KEY_SIZE + SIGNATURE_SIZE;
const CLIENT_AUTH_BODY = SIGNATURE_SIZE;
const MIN_RECORD_BODY = SEQ_SIZE + AEAD_TAG_SIZE;
export const MAX_RECORD_BODY = SEQ_SIZE + MAX_RECORD_PLAINTEXT + AEAD_TAG_SIZE;
/** The largest frame on the wire (a full data record). */
export const MAX_FRAME_SIZE = FRAME_HEADER_SIZE + MAX_RECORD_BODY;
/**
 * Bytes one direction may seal under its key (2^38 = 256 GiB, i.e. 2^34
 * AES blocks: the margin TLS 1.3 keeps for AES-GCM). Past it the channel
 * fails with `limit_reached`; open a new connection.
 */
export const MAX_BYTES_PER_KEY = 2 ** 38;

const encoder = new TextEncoder();
const SIGN_CONTEXT_BYTES = encoder.encode(SECURE_SIGN_CONTEXT);
const LABEL_BYTES = encoder.encode(SECURE_CHANNEL_LABEL);
const SERVER_ROLE = encoder.encode("server");
const CLIENT_ROLE = encoder.encode("client");
const INFO_C2S = encoder.encode(`${SECURE_CHANNEL_LABEL} c2s`);
const INFO_S2C = encoder.encode(`${SECURE_CHANNEL_LABEL} s2c`);
const INFO_ID = encoder.encode(`${SECURE_CHANNEL_LABEL} channel id`);

export type SecureChannelErrorCode =
  /** Reserved bits set, or a length that does not fit the frame's type. */
  | "bad_frame"
  /** A frame that is not allowed in the current state (e.g. data before the handshake, anything after End). */
  | "unexpected_message"
  | "unsupported_version"
  /** The peer's signature does not verify under the identity key pinned for its address. */
  | "auth_failed"
  /** The peer's ephemeral key is unusable (small order: the shared secret would be zero). */
  | "bad_key"
  /** A data record longer than MAX_RECORD_BODY. */
  | "record_too_large"
  /** A record whose AEAD tag does not verify (tampered, or not from the peer). */
  | "bad_record_mac"
  /** A record sequence number lower than expected. */
  | "replay"
  /** A record sequence number higher than expected (a record is missing). */
  | "out_of_order"
  /** The stream ended without the peer's authenticated End, or in the middle of a frame. */
  | "truncated"
  /** The peer refused the handshake (an alert). */
  | "peer_alert"
  | "limit_reached"
  /** This side gave up (`abort`): a handshake timeout, a signature it could not get, a close. */
  | "aborted";

export class SecureChannelError extends Error {
  constructor(
    readonly code: SecureChannelErrorCode,
    message: string,
    /** For `peer_alert`: what the peer said. */
    readonly alert?: AlertName,
  ) {
    super(message);
    this.name = "SecureChannelError";
  }
}

export interface ChannelEndpoint {
  readonly address: Address;
  readonly port: number;
}

export interface SecureChannelOptions {
  readonly role: "client" | "server";
  /** The dialling side of the stream. */
  readonly client: ChannelEndpoint;
  /** The listening side of the stream. */
  readonly server: ChannelEndpoint;
  /** The peer's Ed25519 identity key (32 bytes), as pinned for the address the stream comes from. */
  readonly peerIdentityKey: Uint8Array;
  readonly random?: RandomSource;
}

export type SecureChannelEvent =
  /** Sign SECURE_SIGN_CONTEXT ‖ hash with this node's identity and call `provideSignature`. */
  | { type: "sign"; hash: Uint8Array }
  | { type: "established"; channelId: Uint8Array }
  | { type: "data"; data: Uint8Array }
  /** The peer's authenticated end of its direction (half-close). */
  | { type: "end" }
  | { type: "failed"; error: SecureChannelError };

export type SecureChannelState =
  | "idle"
  | "await_client_hello"
  | "await_server_hello"
  | "signing"
  | "await_client_auth"
  | "established"
  | "failed";

/** The exact bytes a node identity signs for the channel: context ‖ 32-byte hash. */
export function signedMessage(hash: Uint8Array): Uint8Array {
  if (hash.length !== TRANSCRIPT_HASH_SIZE) throw new RangeError(`a transcript hash is ${TRANSCRIPT_HASH_SIZE} bytes`);
  return concatBytes(SIGN_CONTEXT_BYTES, hash);
}

/** What the daemon's `secure_sign` does with its identity: sign the context and a 32-byte hash, nothing else. */
export function signTranscriptHash(signer: { sign(message: Uint8Array): Uint8Array }, hash: Uint8Array): Uint8Array {
  return signer.sign(signedMessage(hash));
}

export function verifyTranscriptSignature(identityKey: Uint8Array, hash: Uint8Array, signature: Uint8Array): boolean {
  if (identityKey.length !== KEY_SIZE || hash.length !== TRANSCRIPT_HASH_SIZE) return false;
  return verifySignature(identityKey, signedMessage(hash), signature);
}

function frameHeader(type: number, length: number): Uint8Array {
  return new Uint8Array([type, 0, length >>> 8, length & 0xff]);
}

/** An endpoint as the prologue holds it: 6-byte address, u16 port. */
function endpointBytes(e: ChannelEndpoint): Uint8Array {
  if (!Number.isInteger(e.port) || e.port < 0 || e.port > 0xffff) throw new RangeError(`port ${e.port} is not 0-65535`);
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  writeAddress(view, 0, e.address);
  view.setUint16(6, e.port);
  return out;
}

function writeU64(out: Uint8Array, at: number, value: number): void {
  const high = Math.floor(value / 0x1_0000_0000);
  const low = value >>> 0;
  out[at] = high >>> 24;
  out[at + 1] = (high >>> 16) & 0xff;
  out[at + 2] = (high >>> 8) & 0xff;
  out[at + 3] = high & 0xff;
  out[at + 4] = low >>> 24;
  out[at + 5] = (low >>> 16) & 0xff;
  out[at + 6] = (low >>> 8) & 0xff;
  out[at + 7] = low & 0xff;
}

/** A u64 as a JS number, or -1 when it exceeds 2^53 (no honest peer gets there). */
function readU64(bytes: Uint8Array, at: number): number {
  const high = ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
  const low = ((bytes[at + 4]! << 24) | (bytes[at + 5]! << 16) | (bytes[at + 6]! << 8) | bytes[at + 7]!) >>> 0;
  if (high >= 0x20_0000) return -1;
  return high * 0x1_0000_0000 + low;
}

/** The bound each frame type puts on its body length; null for an unknown type. */
function bodyLimits(type: number): readonly [number, number] | null {
  switch (type) {
    case FrameType.ClientHello:
      return [CLIENT_HELLO_BODY, CLIENT_HELLO_BODY];
    case FrameType.ServerHello:
      return [SERVER_HELLO_BODY, SERVER_HELLO_BODY];
    case FrameType.ClientAuth:
      return [CLIENT_AUTH_BODY, CLIENT_AUTH_BODY];
    case FrameType.Alert:
      return [1, 1];
    case FrameType.Data:
      return [MIN_RECORD_BODY, MAX_RECORD_BODY];
    case FrameType.End:
      return [MIN_RECORD_BODY, MIN_RECORD_BODY];
    default:
      return null;
  }
}

export interface FrameHeader {
  readonly type: number;
  readonly length: number;
}

/**
 * Decodes and checks a frame header (4 bytes). Returns the header, or the
 * error that the frame deserves; never looks past the header.
 */
export function decodeFrameHeader(bytes: Uint8Array): FrameHeader | SecureChannelError {
  if (bytes.length < FRAME_HEADER_SIZE) return new SecureChannelError("truncated", "a frame header is 4 bytes");
  const type = bytes[0]!;
  const length = (bytes[2]! << 8) | bytes[3]!;
  const limits = bodyLimits(type);
  if (limits === null) return new SecureChannelError("unexpected_message", `unknown frame type 0x${type.toString(16).padStart(2, "0")}`);
  if (bytes[1] !== 0) return new SecureChannelError("bad_frame", "reserved header byte is not zero");
  if (type === FrameType.Data && length > limits[1]) {
    return new SecureChannelError("record_too_large", `a record body of ${length} bytes is larger than ${limits[1]}`);
  }
  if (length < limits[0] || length > limits[1]) return new SecureChannelError("bad_frame", `frame type 0x${type.toString(16).padStart(2, "0")} cannot be ${length} bytes long`);
  return { type, length };
}

/** Input bytes not consumed yet, as a queue of chunks (no quadratic copying). */
class ByteQueue {
  private chunks: Uint8Array[] = [];
  private head = 0;
  length = 0;

  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  /** Copies the first `n` bytes without consuming them (n <= length). */
  peek(n: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) return first.subarray(this.head, this.head + n);
    const out = new Uint8Array(n);
    let at = 0;
    let offset = this.head;
    for (const c of this.chunks) {
      const take = Math.min(n - at, c.length - offset);
      out.set(c.subarray(offset, offset + take), at);
      at += take;
      offset = 0;
      if (at === n) break;
    }
    return out;
  }

  take(n: number): Uint8Array {
    const out = this.peek(n);
    this.skip(n);
    return out;
  }

  private skip(n: number): void {
    this.length -= n;
    while (n > 0) {
      const first = this.chunks[0]!;
      const left = first.length - this.head;
      if (n < left) {
        this.head += n;
        return;
      }
      n -= left;
      this.chunks.shift();
      this.head = 0;
    }
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.length = 0;
  }
}

/**
 * Reads frames out of the byte stream: checks each header as soon as its 4
 * bytes are in, and hands out whole frames. Input beyond the current frame is
 * held, so at most one frame (MAX_FRAME_SIZE) plus what arrived with it is buffered.
 */
export class FrameReader {
  private readonly queue = new ByteQueue();

  get bufferedBytes(): number {
    return this.queue.length;
  }

  push(bytes: Uint8Array): void {
    this.queue.push(bytes);
  }

  /** The next whole frame, null when more bytes are needed, or the error the input deserves. */
  next(): { type: number; frame: Uint8Array } | SecureChannelError | null {
    if (this.queue.length < FRAME_HEADER_SIZE) return null;
    const header = decodeFrameHeader(this.queue.peek(FRAME_HEADER_SIZE));
    if (header instanceof SecureChannelError) return header;
    if (this.queue.length < FRAME_HEADER_SIZE + header.length) return null;
    return { type: header.type, frame: this.queue.take(FRAME_HEADER_SIZE + header.length) };
  }

  clear(): void {
    this.queue.clear();
  }
}

/**
 * One direction's record protection: AES-256-GCM under one key, the nonce
 * being 4 zero bytes ‖ the record's u64 sequence number, the AAD the frame
 * header ‖ sequence number. Sequence numbers start at 0 and go up by one per
 * record; `open` takes only the next one.
 */
export class RecordCipher {
  private readonly key: KeyObject;
  private readonly nonce = new Uint8Array(12);
  /** The sequence number of the next record. */
  seq = 0;
  /** Plaintext bytes protected so far. */
  bytes = 0;

  constructor(rawKey: Uint8Array) {
    this.key = aeadKey(rawKey);
  }

  /** Writes a Data or End frame for `plaintext` (at most MAX_RECORD_PLAINTEXT) at `out[at]`; returns its size. */
  seal(type: number, plaintext: Uint8Array, out: Uint8Array, at: number): number {
    const bodyLength = SEQ_SIZE + plaintext.length + AEAD_TAG_SIZE;
    out[at] = type;
    out[at + 1] = 0;
    out[at + 2] = bodyLength >>> 8;
    out[at + 3] = bodyLength & 0xff;
    writeU64(out, at + FRAME_HEADER_SIZE, this.seq);
    writeNonce(this.nonce, this.seq);
    this.seq++;
    this.bytes += plaintext.length;
    const cipher = createCipheriv("aes-256-gcm", this.key, this.nonce);
    cipher.setAAD(out.subarray(at, at + FRAME_HEADER_SIZE + SEQ_SIZE));
    const body = cipher.update(plaintext);
    cipher.final();
    let p = at + FRAME_HEADER_SIZE + SEQ_SIZE;
    out.set(body, p);
    p += body.length;
    out.set(cipher.getAuthTag(), p);
    return FRAME_HEADER_SIZE + bodyLength;
  }

  /** Opens a whole Data or End frame (as FrameReader gives it): the plaintext, or why not. */
  open(frame: Uint8Array): Uint8Array | SecureChannelError {
    if (frame.length < FRAME_HEADER_SIZE + MIN_RECORD_BODY) return new SecureChannelError("bad_frame", "a record is at least 28 bytes");
    const seq = readU64(frame, FRAME_HEADER_SIZE);
    if (seq !== this.seq) {
      const code = seq >= 0 && seq < this.seq ? "replay" : "out_of_order";
      return new SecureChannelError(code, `record ${seq === -1 ? "beyond 2^53" : seq} where ${this.seq} was expected`);
    }
    const sealedAt = FRAME_HEADER_SIZE + SEQ_SIZE;
    const tagAt = frame.length - AEAD_TAG_SIZE;
    writeNonce(this.nonce, seq);
    const decipher = createDecipheriv("aes-256-gcm", this.key, this.nonce);
    decipher.setAAD(frame.subarray(0, sealedAt));
    decipher.setAuthTag(frame.subarray(tagAt));
    const plain = decipher.update(frame.subarray(sealedAt, tagAt));
    try {
      decipher.final();
    } catch {
      return new SecureChannelError("bad_record_mac", `record ${seq} does not authenticate (tampered, or not from the peer)`);
    }
    this.seq++;
    this.bytes += plain.length;
    return new Uint8Array(plain.buffer, plain.byteOffset, plain.byteLength);
  }
}

export class SecureChannel {
  readonly role: "client" | "server";
  private stateValue: SecureChannelState = "idle";
  private readonly prologue: Uint8Array;
  private readonly peerKey: Uint8Array;
  private readonly random: RandomSource;
  private readonly input = new FrameReader();
  private output: Uint8Array[] = [];
  private readonly events: SecureChannelEvent[] = [];
  private ephemeralPrivate: Uint8Array | null = null;
  private ephemeralPublic: Uint8Array | null = null;
  private shared: Uint8Array | null = null;
  private clientHello: Uint8Array | null = null;
  private serverHello: Uint8Array | null = null;
  private pendingHash: Uint8Array | null = null;
  private sendKey: RecordCipher | null = null;
  private receiveKey: RecordCipher | null = null;
  private sentEnd = false;
  private receivedEnd = false;
  /** Set once the channel failed. */
  error: SecureChannelError | null = null;
  /** 16 bytes that name this channel (the same on both sides, different for every connection); null before established. */
  channelId: Uint8Array | null = null;

  constructor(options: SecureChannelOptions) {
    if (options.peerIdentityKey.length !== KEY_SIZE) throw new RangeError(`an identity key is ${KEY_SIZE} bytes`);
    this.role = options.role;
    this.peerKey = options.peerIdentityKey.slice();
    this.random = options.random ?? secureRandom;
    this.prologue = concatBytes(
      LABEL_BYTES,
      new Uint8Array([0]),
      endpointBytes(options.client),
      endpointBytes(options.server),
    );
    if (this.role === "server") this.stateValue = "await_client_hello";
  }

  get state(): SecureChannelState {
    return this.stateValue;
  }

  get established(): boolean {
    return this.stateValue === "established";
  }

  /** Bytes received and not yet decoded (never more than one maximal frame). */
  get bufferedBytes(): number {
    return this.input.bufferedBytes;
  }

  /** True once the peer's End arrived. */
  get peerEnded(): boolean {
    return this.receivedEnd;
  }

  /** Client: queue the ClientHello. (A server waits for it.) */
  start(): void {
    if (this.role !== "client" || this.stateValue !== "idle") throw new Error("start() is for a client that has not started");
    this.newEphemeral();
    this.clientHello = concatBytes(frameHeader(FrameType.ClientHello, CLIENT_HELLO_BODY), new Uint8Array([SECURE_CHANNEL_VERSION]), this.ephemeralPublic!);
    this.output.push(this.clientHello);
    this.stateValue = "await_server_hello";
  }

  /** Everything queued for the stream since the last call, as one buffer (empty when nothing). */
  takeOutput(): Uint8Array {
    if (this.output.length === 0) return new Uint8Array(0);
    const out = this.output.length === 1 ? this.output[0]! : concatBytes(...this.output);
    this.output = [];
    return out;
  }

  pollEvent(): SecureChannelEvent | undefined {
    return this.events.shift();
  }

  /** Bytes the stream delivered. Never throws on bad input: the channel fails instead. */
  receive(bytes: Uint8Array): void {
    if (this.stateValue === "failed") return;
    this.input.push(bytes);
    this.process();
  }

  /** The stream ended (the peer's FIN). Anything but a clean End before it is truncation. */
  finish(): void {
    if (this.stateValue === "failed") return;
    if (this.receivedEnd && this.input.bufferedBytes === 0) return;
    this.fail(new SecureChannelError("truncated", this.stateValue === "established" ? "the stream ended without the peer's authenticated end of data" : "the stream ended during the secure handshake"), null);
  }

  /** The answer to a "sign" event: the 64-byte signature over SECURE_SIGN_CONTEXT ‖ hash. */
  provideSignature(signature: Uint8Array): void {
    if (this.stateValue !== "signing" || !this.pendingHash) throw new Error("no signature was asked for");
    if (signature.length !== SIGNATURE_SIZE) throw new RangeError(`a signature is ${SIGNATURE_SIZE} bytes`);
    this.pendingHash = null;
    if (this.role === "server") {
      this.serverHello = concatBytes(this.serverHello!, signature);
      this.output.push(this.serverHello);
      this.stateValue = "await_client_auth";
      this.process();
      return;
    }
    const clientAuth = concatBytes(frameHeader(FrameType.ClientAuth, CLIENT_AUTH_BODY), signature);
    this.output.push(clientAuth);
    this.establish(clientAuth);
    this.process();
  }

  /** Gives up on the channel from the outside (e.g. signing failed, a timeout); queues an alert while still handshaking. */
  abort(message: string, code: SecureChannelErrorCode = "aborted"): void {
    if (this.stateValue === "failed") return;
    this.fail(new SecureChannelError(code, message), this.stateValue === "established" ? null : "internal");
  }

  /** Queues `plaintext` as records of at most MAX_RECORD_PLAINTEXT bytes. */
  seal(plaintext: Uint8Array): void {
    const key = this.sendKey;
    if (this.stateValue !== "established" || !key) throw new Error("the secure channel is not established");
    if (this.sentEnd) throw new Error("the secure channel's sending side has ended");
    if (key.bytes + plaintext.length > MAX_BYTES_PER_KEY) {
      this.fail(new SecureChannelError("limit_reached", "this connection has sent as much as one key may protect; open a new one"), null);
      throw this.error!;
    }
    if (plaintext.length === 0) return;
    const records = Math.ceil(plaintext.length / MAX_RECORD_PLAINTEXT);
    const out = new Uint8Array(plaintext.length + records * (FRAME_HEADER_SIZE + SEQ_SIZE + AEAD_TAG_SIZE));
    let at = 0;
    for (let offset = 0; offset < plaintext.length; offset += MAX_RECORD_PLAINTEXT) {
      at += key.seal(FrameType.Data, plaintext.subarray(offset, offset + MAX_RECORD_PLAINTEXT), out, at);
    }
    this.output.push(out);
  }

  /** Queues the authenticated End of our direction; nothing may be sealed after it. */
  end(): void {
    if (this.stateValue !== "established" || !this.sendKey) throw new Error("the secure channel is not established");
    if (this.sentEnd) return;
    const out = new Uint8Array(FRAME_HEADER_SIZE + MIN_RECORD_BODY);
    this.sendKey.seal(FrameType.End, new Uint8Array(0), out, 0);
    this.sentEnd = true;
    this.output.push(out);
  }

  // ---- internals ------------------------------------------------------------

  private newEphemeral(): void {
    const priv = this.random(KEY_SIZE);
    if (priv.length !== KEY_SIZE) throw new Error("the random source returned the wrong length");
    this.ephemeralPrivate = priv;
    this.ephemeralPublic = x25519PublicFromPrivate(priv);
  }

  private process(): void {
    while (this.stateValue !== "failed" && this.stateValue !== "signing") {
      const next = this.input.next();
      if (next === null) return;
      if (next instanceof SecureChannelError) {
        const alert = this.stateValue === "established" ? null : next.code === "unexpected_message" ? "unexpected_message" : "bad_frame";
        return this.fail(next, alert);
      }
      this.handleFrame(next.type, next.frame);
    }
  }

  private handleFrame(type: number, frame: Uint8Array): void {
    const body = frame.subarray(FRAME_HEADER_SIZE);
    if (type === FrameType.Alert) {
      // A server that refuses the client's signature says so right after the client's last
      // handshake message, when the client already counts itself established; later, alerts
      // (which are not authenticated) are refused.
      if (this.stateValue === "established" && (this.role === "server" || this.receiveKey!.seq > 0)) {
        return this.fail(new SecureChannelError("unexpected_message", "an alert after the handshake"), null);
      }
      const name = (Object.keys(AlertCode) as AlertName[]).find((k) => AlertCode[k] === body[0]) ?? "internal";
      return this.fail(new SecureChannelError("peer_alert", `the peer refused the secure handshake: ${name.replace(/_/g, " ")}`, name), null);
    }
    switch (this.stateValue) {
      case "await_client_hello":
        if (type !== FrameType.ClientHello) return this.unexpected(type);
        return this.onClientHello(frame, body);
      case "await_server_hello":
        if (type !== FrameType.ServerHello) return this.unexpected(type);
        return this.onServerHello(frame, body);
      case "await_client_auth":
        if (type !== FrameType.ClientAuth) return this.unexpected(type);
        return this.onClientAuth(frame, body);
      case "established":
        if (type !== FrameType.Data && type !== FrameType.End) return this.unexpected(type);
        return this.onRecord(type, frame);
      default:
        return this.unexpected(type);
    }
  }

  private unexpected(type: number): void {
    const what = this.stateValue === "established" && this.receivedEnd ? "after the peer's end of data" : `in state ${this.stateValue}`;
    this.fail(new SecureChannelError("unexpected_message", `frame type 0x${type.toString(16).padStart(2, "0")} ${what}`), this.stateValue === "established" ? null : "unexpected_message");
  }

  private onClientHello(frame: Uint8Array, body: Uint8Array): void {
    if (body[0] !== SECURE_CHANNEL_VERSION) {
      return this.fail(new SecureChannelError("unsupported_version", `the client speaks secure-channel version ${body[0]}; this side speaks ${SECURE_CHANNEL_VERSION}`), "unsupported_version");
    }
    this.clientHello = frame.slice();
    this.newEphemeral();
    if (!this.agree(body.subarray(1, 1 + KEY_SIZE))) return;
    this.serverHello = concatBytes(frameHeader(FrameType.ServerHello, SERVER_HELLO_BODY), this.ephemeralPublic!);
    this.askSignature(sha256(this.prologue, SERVER_ROLE, this.clientHello, this.serverHello));
  }

  private onServerHello(frame: Uint8Array, body: Uint8Array): void {
    const prefix = frame.subarray(0, FRAME_HEADER_SIZE + KEY_SIZE);
    const signature = body.subarray(KEY_SIZE);
    const hashS = sha256(this.prologue, SERVER_ROLE, this.clientHello!, prefix);
    if (!verifyTranscriptSignature(this.peerKey, hashS, signature)) {
      return this.fail(new SecureChannelError("auth_failed", "the server's signature does not verify under the identity key pinned for its address"), "auth_failed");
    }
    if (!this.agree(body.subarray(0, KEY_SIZE))) return;
    this.serverHello = frame.slice();
    this.askSignature(sha256(this.prologue, CLIENT_ROLE, this.clientHello!, this.serverHello, frameHeader(FrameType.ClientAuth, CLIENT_AUTH_BODY)));
  }

  private onClientAuth(frame: Uint8Array, body: Uint8Array): void {
    const hashC = sha256(this.prologue, CLIENT_ROLE, this.clientHello!, this.serverHello!, frame.subarray(0, FRAME_HEADER_SIZE));
    if (!verifyTranscriptSignature(this.peerKey, hashC, body)) {
      return this.fail(new SecureChannelError("auth_failed", "the client's signature does not verify under the identity key pinned for its address"), "auth_failed");
    }
    this.establish(frame);
  }

  private askSignature(hash: Uint8Array): void {
    this.pendingHash = hash;
    this.stateValue = "signing";
    this.events.push({ type: "sign", hash });
  }

  /** X25519 with the peer's ephemeral key; fails the channel on a small-order key (all-zero secret). */
  private agree(peerEphemeral: Uint8Array): boolean {
    try {
      this.shared = x25519(x25519PrivateKey(this.ephemeralPrivate!), peerEphemeral);
    } catch {
      this.fail(new SecureChannelError("bad_key", "the peer's ephemeral key is not usable (small order)"), "bad_frame");
      return false;
    }
    this.ephemeralPrivate!.fill(0);
    this.ephemeralPrivate = null;
    return true;
  }

  private establish(clientAuth: Uint8Array): void {
    const shared = this.shared!;
    this.shared = null;
    const transcript = sha256(this.prologue, this.clientHello!, this.serverHello!, clientAuth);
    const derive = (info: Uint8Array, n: number) => new Uint8Array(hkdfSync("sha256", shared, transcript, info, n));
    const c2s = new RecordCipher(derive(INFO_C2S, 32));
    const s2c = new RecordCipher(derive(INFO_S2C, 32));
    this.channelId = derive(INFO_ID, 16);
    shared.fill(0);
    this.sendKey = this.role === "client" ? c2s : s2c;
    this.receiveKey = this.role === "client" ? s2c : c2s;
    this.stateValue = "established";
    this.events.push({ type: "established", channelId: this.channelId });
  }

  private onRecord(type: number, frame: Uint8Array): void {
    if (this.receivedEnd) return this.unexpected(type);
    const plain = this.receiveKey!.open(frame);
    if (plain instanceof SecureChannelError) return this.fail(plain, null);
    if (type === FrameType.End) {
      this.receivedEnd = true;
      this.events.push({ type: "end" });
      return;
    }
    if (plain.length > 0) this.events.push({ type: "data", data: plain });
  }

  private fail(error: SecureChannelError, alert: AlertName | null): void {
    if (this.stateValue === "failed") return;
    this.stateValue = "failed";
    this.error = error;
    this.input.clear();
    this.pendingHash = null;
    this.ephemeralPrivate?.fill(0);
    this.ephemeralPrivate = null;
    this.shared?.fill(0);
    this.shared = null;
    if (alert !== null) this.output.push(concatBytes(frameHeader(FrameType.Alert, 1), new Uint8Array([AlertCode[alert]])));
    this.events.push({ type: "failed", error });
  }
}
