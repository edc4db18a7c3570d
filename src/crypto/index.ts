/**
 * The crypto layer's public surface: identity (Ed25519), the tunnel handshake
 * (Noise IK over X25519, HKDF-SHA-256; cookie replies under load), data-frame
 * AEAD (AES-256-GCM) with replay protection. Each module's header documents
 * its API.
 *
 * For a benchmark:
 *   const a = nodeKeys(generateIdentity(), addressOf(1, 1));
 *   const b = nodeKeys(generateIdentity(), addressOf(1, 2));
 *   const { initiator, responder } = connectInMemory(a, b);    // one full handshake
 *   const n = initiator.seal(packet, out);                      // frame = out[0..n)
 *   const plaintext = responder.open(out.subarray(0, n));       // null if rejected
 */
export * from "./identity.ts";
export * from "./handshake.ts";
export * from "./cookie.ts";
export * from "./data-session.ts";
export * from "./replay-window.ts";
export * from "./timestamp.ts";
export * from "./session-pair.ts";
export { secureRandom, type RandomSource } from "./noise.ts";
export { ed25519PublicKey, edPublicToX25519 } from "./keys.ts";
