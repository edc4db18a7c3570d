/**
 * AES-256-GCM through node:crypto (native, AES-NI), with the nonce layout that
 * Noise's AESGCM cipher and Pilot's data frames share: 4 zero bytes, then the
 * message counter as a big-endian u64.
 *
 *   aeadKey(raw32): KeyObject                          build once per key, reuse
 *   writeNonce(nonce12, counter): void                 counter < 2^53
 *   seal(key, nonce, ad, plaintext): Uint8Array        ciphertext ‖ 16-byte tag
 *   open(key, nonce, ad, sealed): Uint8Array | null    null when authentication fails
 *
 * These allocate and are meant for the handshake. The data path
 * (`data-session.ts`) drives node:crypto directly with reused buffers.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from "node:crypto";

export const AEAD_KEY_SIZE = 32;
export const AEAD_TAG_SIZE = 16;
export const AEAD_NONCE_SIZE = 12;
export const AEAD_ALGORITHM = "aes-256-gcm";

export function aeadKey(raw: Uint8Array): KeyObject {
  if (raw.length !== AEAD_KEY_SIZE) throw new RangeError(`AES-256 key must be ${AEAD_KEY_SIZE} bytes`);
  return createSecretKey(raw);
}

const TWO_32 = 0x1_0000_0000;

/** Writes `0x00000000 ‖ u64be(counter)` into a 12-byte buffer. */
export function writeNonce(nonce: Uint8Array, counter: number): void {
  nonce[0] = 0;
  nonce[1] = 0;
  nonce[2] = 0;
  nonce[3] = 0;
  const high = Math.floor(counter / TWO_32);
  const low = counter >>> 0;
  nonce[4] = high >>> 24;
  nonce[5] = (high >>> 16) & 0xff;
  nonce[6] = (high >>> 8) & 0xff;
  nonce[7] = high & 0xff;
  nonce[8] = low >>> 24;
  nonce[9] = (low >>> 16) & 0xff;
  nonce[10] = (low >>> 8) & 0xff;
  nonce[11] = low & 0xff;
}

export function seal(key: KeyObject, nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const cipher = createCipheriv(AEAD_ALGORITHM, key, nonce);
  cipher.setAAD(ad);
  const body = cipher.update(plaintext);
  cipher.final();
  const out = new Uint8Array(body.length + AEAD_TAG_SIZE);
  out.set(body, 0);
  out.set(cipher.getAuthTag(), body.length);
  return out;
}

export function open(key: KeyObject, nonce: Uint8Array, ad: Uint8Array, sealed: Uint8Array): Uint8Array | null {
  if (sealed.length < AEAD_TAG_SIZE) return null;
  const split = sealed.length - AEAD_TAG_SIZE;
  const decipher = createDecipheriv(AEAD_ALGORITHM, key, nonce);
  decipher.setAAD(ad);
  decipher.setAuthTag(sealed.subarray(split));
  const body = decipher.update(sealed.subarray(0, split));
  try {
    decipher.final();
  } catch {
    return null;
  }
  return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
}
