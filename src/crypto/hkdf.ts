/**
 * HKDF-SHA-256 (RFC 5869) and SHA-256, as Noise uses them.
 *
 *   hkdf(salt, ikm, outputs: 2 | 3): Uint8Array[]   each output 32 bytes, empty info
 *   sha256(...parts): Uint8Array
 *   hmacSha256(key, ...parts): Uint8Array
 *
 * Noise's HKDF(chaining_key, ikm, n) is exactly RFC 5869 with salt =
 * chaining_key and an empty info string, truncated to n * 32 bytes; node's
 * native `hkdfSync` computes it.
 */
import { createHash, createHmac, hkdfSync } from "node:crypto";

export const HASH_SIZE = 32;
const NO_INFO = new Uint8Array(0);

export function hkdf(salt: Uint8Array, ikm: Uint8Array, outputs: 2 | 3): Uint8Array[] {
  const okm = new Uint8Array(hkdfSync("sha256", ikm, salt, NO_INFO, outputs * HASH_SIZE));
  const result: Uint8Array[] = [];
  for (let i = 0; i < outputs; i++) result.push(okm.slice(i * HASH_SIZE, (i + 1) * HASH_SIZE));
  return result;
}

export function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

export function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac("sha256", key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}
