/**
 * Raw 32-byte Curve25519 keys as node:crypto KeyObjects, and the Ed25519 ->
 * X25519 conversion that lets one identity key serve both signing and Noise.
 *
 *   x25519PrivateKey(raw32): KeyObject       x25519PublicKey(raw32): KeyObject
 *   x25519PublicFromPrivate(raw32): Uint8Array
 *   x25519(privateKey: KeyObject, publicRaw32: Uint8Array): Uint8Array   throws on a low-order point
 *   ed25519PrivateKey(seed32) / ed25519PublicKey(raw32): KeyObject
 *   ed25519PublicFromSeed(seed32): Uint8Array
 *   edPublicToX25519(edPublic32) / edSeedToX25519(seed32): Uint8Array
 *
 * node:crypto does not take `format: "raw"`, so raw keys are wrapped in the
 * fixed DER prefixes of SPKI / PKCS#8 (RFC 8410). Building a KeyObject costs a
 * few microseconds: callers that reuse a key build it once.
 */
import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from "node:crypto";
import { ed25519 } from "@noble/curves/ed25519.js";

export const KEY_SIZE = 32;

const X25519_SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");
const X25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

function checkSize(raw: Uint8Array, what: string): void {
  if (raw.length !== KEY_SIZE) throw new RangeError(`${what} must be ${KEY_SIZE} bytes, got ${raw.length}`);
}

function wrap(prefix: Buffer, raw: Uint8Array): Buffer {
  return Buffer.concat([prefix, raw]);
}

function rawPublic(key: KeyObject): Uint8Array {
  const der = key.export({ format: "der", type: "spki" });
  return new Uint8Array(der.subarray(der.length - KEY_SIZE));
}

export function x25519PrivateKey(raw: Uint8Array): KeyObject {
  checkSize(raw, "X25519 private key");
  return createPrivateKey({ key: wrap(X25519_PKCS8_PREFIX, raw), format: "der", type: "pkcs8" });
}

export function x25519PublicKey(raw: Uint8Array): KeyObject {
  checkSize(raw, "X25519 public key");
  return createPublicKey({ key: wrap(X25519_SPKI_PREFIX, raw), format: "der", type: "spki" });
}

export function x25519PublicFromPrivate(raw: Uint8Array): Uint8Array {
  return rawPublic(createPublicKey(x25519PrivateKey(raw)));
}

/**
 * X25519 Diffie-Hellman. Throws if the peer's point has small order (the
 * shared secret would be all zeros and carry no secret): OpenSSL refuses it,
 * and the check below makes that independent of the backend.
 */
export function x25519(privateKey: KeyObject, peerPublic: Uint8Array): Uint8Array {
  const shared = diffieHellman({ privateKey, publicKey: x25519PublicKey(peerPublic) });
  let acc = 0;
  for (let i = 0; i < shared.length; i++) acc |= shared[i]!;
  if (acc === 0) throw new Error("X25519 produced an all-zero shared secret");
  return new Uint8Array(shared);
}

export function ed25519PrivateKey(seed: Uint8Array): KeyObject {
  checkSize(seed, "Ed25519 private key (seed)");
  return createPrivateKey({ key: wrap(ED25519_PKCS8_PREFIX, seed), format: "der", type: "pkcs8" });
}

export function ed25519PublicKey(raw: Uint8Array): KeyObject {
  checkSize(raw, "Ed25519 public key");
  return createPublicKey({ key: wrap(ED25519_SPKI_PREFIX, raw), format: "der", type: "spki" });
}

export function ed25519PublicFromSeed(seed: Uint8Array): Uint8Array {
  return rawPublic(createPublicKey(ed25519PrivateKey(seed)));
}

/**
 * The birational map from an Ed25519 public key to its X25519 (Montgomery u)
 * form. Throws on bytes that are not a valid Edwards point.
 */
export function edPublicToX25519(edPublic: Uint8Array): Uint8Array {
  checkSize(edPublic, "Ed25519 public key");
  return ed25519.utils.toMontgomery(edPublic);
}

/** The X25519 private scalar matching `edPublicToX25519(public of seed)`. */
export function edSeedToX25519(seed: Uint8Array): Uint8Array {
  checkSize(seed, "Ed25519 private key (seed)");
  return ed25519.utils.toMontgomerySecret(seed);
}
