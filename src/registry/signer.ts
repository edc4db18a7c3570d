/**
 * The little the registry needs from an Ed25519 identity: a public key and a
 * way to sign. `Identity` from src/crypto/identity.ts satisfies it (nodes and
 * the rendezvous itself use that); tests may hand in anything that signs.
 *
 * Verification uses node:crypto (~13k/s in Bun, 7x pure JS). It takes no raw
 * keys, so a raw 32-byte key is wrapped in the fixed SPKI DER prefix of
 * RFC 8410, and the KeyObject is cached per key: the registry verifies the
 * same node keys over and over. The cache is an LRU of up to 65 536 keys
 * (the active nodes of a large registry): measured in Bun 1.4, a cached
 * KeyObject costs well under 1 KiB, and making one ~2 us against ~50 us for
 * the verification itself, so a miss is cheap and the cap only bounds memory
 * against a flood of distinct keys.
 */
import { createPublicKey, verify, type KeyObject } from "node:crypto";

export interface Signer {
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** 64-byte Ed25519 signature over `message`. */
  sign(message: Uint8Array): Uint8Array;
}

export const ED25519_KEY_SIZE = 32;
export const ED25519_SIGNATURE_SIZE = 64;

const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** Public KeyObjects by key bytes, least recently used first; bounded so a flood of distinct keys cannot grow it without limit. */
const publicKeys = new Map<string, KeyObject>();
export const PUBLIC_KEY_CACHE_LIMIT = 65_536;

function publicKeyObject(publicKey: Uint8Array): KeyObject | undefined {
  const id = Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength).toString("latin1");
  let key = publicKeys.get(id);
  if (key) {
    // Most recently used goes last, so the first key is the one to drop.
    publicKeys.delete(id);
    publicKeys.set(id, key);
    return key;
  }
  try {
    key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: "der", type: "spki" });
  } catch {
    return undefined;
  }
  if (publicKeys.size >= PUBLIC_KEY_CACHE_LIMIT) publicKeys.delete(publicKeys.keys().next().value!);
  publicKeys.set(id, key);
  return key;
}

/** Verifies an Ed25519 signature. Wrong sizes, invalid points and bad signatures all give false. */
export function verifyEd25519(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== ED25519_KEY_SIZE || signature.length !== ED25519_SIGNATURE_SIZE) return false;
  const key = publicKeyObject(publicKey);
  if (!key) return false;
  try {
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}
