/**
 * One session's data-frame crypto: AES-256-GCM with a key per direction from
 * the handshake, a send counter, and a replay window. This is the hot path.
 *
 *   const s = new DataSession({ sendKey, receiveKey, localIndex, remoteIndex, localAddress, remoteAddress })
 *   s.seal(plaintext, out, offset = 0): number   frame length written into out, or -1 when the send
 *                                                 key is used up (REJECT_AFTER_MESSAGES); throws
 *                                                 RangeError if the plaintext or `out` is too big/small
 *   s.sealFrame(plaintext): Uint8Array | null    same, into a new buffer of the exact size
 *   s.open(frame): Uint8Array | null             the plaintext, or null with s.lastError set;
 *                                                 s.lastAdvanced tells whether the frame was the
 *                                                 newest seen (what endpoint roaming keys on)
 *
 * Frame: `04 00 0000 | u32 receiver_index | u64 counter | ciphertext | tag`.
 * Nonce: 4 zero bytes ‖ u64 counter; each direction has its own key, so a
 * (key, nonce) pair is never reused. AAD: the 16-byte header ‖ the sender's
 * 6-byte Pilot address ‖ the receiver's, so a frame is bound to its index,
 * counter and the two nodes. The replay window is updated only after the tag
 * verifies.
 *
 * The AEAD: one reusable libcrypto context per direction where the system has
 * one (`gcm-native.ts`; per frame the only allocation is the opened plaintext),
 * else node:crypto with a Cipher/Decipher object per frame (KeyObjects built
 * once). Nonce and AAD buffers are reused either way.
 */
import { createCipheriv, createDecipheriv, type KeyObject } from "node:crypto";
import { writeAddress, type Address } from "../protocol/address.ts";
import {
  DATA_HEADER_SIZE,
  MAX_DATA_FRAME,
  MAX_TUNNEL_PLAINTEXT,
  MIN_DATA_FRAME,
  TAG_SIZE,
  TunnelMessage,
  writeDataHeader,
} from "../protocol/tunnel-frame.ts";
import { AEAD_ALGORITHM, AEAD_NONCE_SIZE, aeadKey } from "./aead.ts";
import { loadNativeGcm, type GcmContext } from "./gcm-native.ts";
import { ReplayWindow } from "./replay-window.ts";

/**
 * Message limits per key. AES-GCM's safety margin shrinks with the total data
 * under one key (TLS 1.3 allows 2^24.5 records of 16 KiB, about 2^34.5 AES
 * blocks, for a ~2^-57 bound). Our frames are at most ~1030 blocks (16 KiB of
 * stream data on a path that carries it), so 2^25 frames stays inside the same
 * margin. Sessions ask for a new handshake at half of that, long before the
 * hard limit; in practice the 120 s time limit comes first at any rate below
 * ~140 k frames/s (2.2 GB/s at the largest size, 170 MB/s at the base).
 */
export const REKEY_AFTER_MESSAGES = 2 ** 24;
export const REJECT_AFTER_MESSAGES = 2 ** 25;

export const AAD_SIZE = DATA_HEADER_SIZE + 6 + 6;

export type OpenError = "" | "malformed" | "wrong_index" | "counter_limit" | "replay" | "auth_failed";

export interface DataSessionKeys {
  readonly sendKey: Uint8Array;
  readonly receiveKey: Uint8Array;
  /** Our session index: peers put it in the frames they send us. */
  readonly localIndex: number;
  /** The peer's session index: we put it in the frames we send. */
  readonly remoteIndex: number;
  readonly localAddress: Address;
  readonly remoteAddress: Address;
  /** Overrides for tests; default REJECT_AFTER_MESSAGES. */
  readonly rejectAfterMessages?: number;
  /** Use the native AEAD when available (default); false forces node:crypto (tests). */
  readonly nativeAead?: boolean;
}

const TWO_32 = 0x1_0000_0000;

export class DataSession {
  readonly localIndex: number;
  readonly remoteIndex: number;
  readonly localAddress: Address;
  readonly remoteAddress: Address;
  readonly replay = new ReplayWindow();
  /** Counter of the next frame we send = frames sent so far. */
  sendCounter = 0;
  /** Frames received and authenticated. */
  receivedCount = 0;
  /** Why the last `open` returned null. */
  lastError: OpenError = "";
  /** Whether the last successful `open` carried the greatest counter so far. */
  lastAdvanced = false;
  /** Counter of the last frame passed to `open` (after the header parsed). */
  lastCounter = -1;

  private readonly sendKey: KeyObject | null;
  private readonly receiveKey: KeyObject | null;
  private readonly sealer: GcmContext | null;
  private readonly opener: GcmContext | null;
  private readonly rejectAfter: number;
  private readonly sendNonce = Buffer.alloc(AEAD_NONCE_SIZE);
  private readonly receiveNonce = Buffer.alloc(AEAD_NONCE_SIZE);
  /** header ‖ local ‖ remote; the counter bytes 8..16 change per frame. */
  private readonly sendAad = Buffer.alloc(AAD_SIZE);
  /** header ‖ remote ‖ local; the header is copied from each frame. */
  private readonly receiveAad = Buffer.alloc(AAD_SIZE);

  constructor(keys: DataSessionKeys) {
    this.localIndex = keys.localIndex >>> 0;
    this.remoteIndex = keys.remoteIndex >>> 0;
    this.localAddress = keys.localAddress;
    this.remoteAddress = keys.remoteAddress;
    const native = keys.nativeAead === false ? null : loadNativeGcm();
    this.sealer = native ? native.context(keys.sendKey, "seal") : null;
    this.opener = native ? native.context(keys.receiveKey, "open") : null;
    this.sendKey = native ? null : aeadKey(keys.sendKey);
    this.receiveKey = native ? null : aeadKey(keys.receiveKey);
    this.rejectAfter = keys.rejectAfterMessages ?? REJECT_AFTER_MESSAGES;
    writeDataHeader(this.sendAad, 0, this.remoteIndex, 0);
    const send = new DataView(this.sendAad.buffer, this.sendAad.byteOffset, AAD_SIZE);
    writeAddress(send, DATA_HEADER_SIZE, keys.localAddress);
    writeAddress(send, DATA_HEADER_SIZE + 6, keys.remoteAddress);
    const receive = new DataView(this.receiveAad.buffer, this.receiveAad.byteOffset, AAD_SIZE);
    writeAddress(receive, DATA_HEADER_SIZE, keys.remoteAddress);
    writeAddress(receive, DATA_HEADER_SIZE + 6, keys.localAddress);
  }

  /** True while the send key may still be used. */
  get canSend(): boolean {
    return this.sendCounter < this.rejectAfter;
  }

  seal(plaintext: Uint8Array, out: Uint8Array, offset = 0): number {
    const length = DATA_HEADER_SIZE + plaintext.length + TAG_SIZE;
    if (plaintext.length > MAX_TUNNEL_PLAINTEXT) {
      throw new RangeError(`plaintext of ${plaintext.length} bytes exceeds ${MAX_TUNNEL_PLAINTEXT}`);
    }
    if (out.length - offset < length) throw new RangeError(`output buffer too small: need ${length} bytes`);
    if (this.sendCounter >= this.rejectAfter) return -1;
    const counter = this.sendCounter++;
    const aad = this.sendAad;
    const nonce = this.sendNonce;
    const high = Math.floor(counter / TWO_32);
    const low = counter >>> 0;
    nonce[4] = aad[8] = high >>> 24;
    nonce[5] = aad[9] = (high >>> 16) & 0xff;
    nonce[6] = aad[10] = (high >>> 8) & 0xff;
    nonce[7] = aad[11] = high & 0xff;
    nonce[8] = aad[12] = low >>> 24;
    nonce[9] = aad[13] = (low >>> 16) & 0xff;
    nonce[10] = aad[14] = (low >>> 8) & 0xff;
    nonce[11] = aad[15] = low & 0xff;
    for (let i = 0; i < DATA_HEADER_SIZE; i++) out[offset + i] = aad[i]!;
    if (this.sealer) {
      this.sealer.seal(nonce, aad, plaintext, out, offset + DATA_HEADER_SIZE);
      return length;
    }
    const cipher = createCipheriv(AEAD_ALGORITHM, this.sendKey!, nonce);
    cipher.setAAD(aad);
    const body = cipher.update(plaintext);
    cipher.final();
    out.set(body, offset + DATA_HEADER_SIZE);
    out.set(cipher.getAuthTag(), offset + DATA_HEADER_SIZE + body.length);
    return length;
  }

  sealFrame(plaintext: Uint8Array): Uint8Array | null {
    const out = new Uint8Array(DATA_HEADER_SIZE + plaintext.length + TAG_SIZE);
    return this.seal(plaintext, out) < 0 ? null : out;
  }

  open(frame: Uint8Array): Uint8Array | null {
    this.lastAdvanced = false;
    this.lastCounter = -1;
    const length = frame.length;
    if (
      length < MIN_DATA_FRAME ||
      length > MAX_DATA_FRAME ||
      frame[0] !== TunnelMessage.Data ||
      (frame[1]! | frame[2]! | frame[3]!) !== 0
    ) {
      this.lastError = "malformed";
      return null;
    }
    const index = ((frame[4]! << 24) | (frame[5]! << 16) | (frame[6]! << 8) | frame[7]!) >>> 0;
    if (index !== this.localIndex) {
      this.lastError = "wrong_index";
      return null;
    }
    const high = ((frame[8]! << 24) | (frame[9]! << 16) | (frame[10]! << 8) | frame[11]!) >>> 0;
    const low = ((frame[12]! << 24) | (frame[13]! << 16) | (frame[14]! << 8) | frame[15]!) >>> 0;
    // No genuine frame has a counter at or beyond the hard limit (which is far below 2^53,
    // so every counter that passes is an exact integer).
    const counter = high * TWO_32 + low;
    if (counter >= this.rejectAfter) {
      this.lastError = "counter_limit";
      return null;
    }
    this.lastCounter = counter;
    if (!this.replay.accepts(counter)) {
      this.lastError = "replay";
      return null;
    }
    const aad = this.receiveAad;
    const nonce = this.receiveNonce;
    for (let i = 0; i < DATA_HEADER_SIZE; i++) aad[i] = frame[i]!;
    for (let i = 4; i < AEAD_NONCE_SIZE; i++) nonce[i] = frame[i + 4]!;
    let plaintext: Uint8Array;
    if (this.opener) {
      const opened = this.opener.open(nonce, aad, frame.subarray(DATA_HEADER_SIZE, length - TAG_SIZE), frame.subarray(length - TAG_SIZE));
      if (!opened) {
        this.lastError = "auth_failed";
        return null;
      }
      plaintext = opened;
    } else {
      const decipher = createDecipheriv(AEAD_ALGORITHM, this.receiveKey!, nonce);
      decipher.setAAD(aad);
      decipher.setAuthTag(frame.subarray(length - TAG_SIZE));
      plaintext = decipher.update(frame.subarray(DATA_HEADER_SIZE, length - TAG_SIZE));
      try {
        decipher.final();
      } catch {
        this.lastError = "auth_failed";
        return null;
      }
    }
    this.lastAdvanced = this.replay.commit(counter);
    this.receivedCount++;
    this.lastError = "";
    return plaintext;
  }
}
