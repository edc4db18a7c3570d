/**
 * The crypto layer's public surface: identity (Ed25519), the tunnel handshake
 * (Noise IK over X25519, HKDF-SHA-256), data-frame AEAD (AES-256-GCM) with
 * replay protection. Each module's header documents its API.
 */
export * from "./identity.ts";
export * from "./handshake.ts";
export * from "./data-session.ts";
export * from "./replay-window.ts";
export * from "./timestamp.ts";
export * from "./session-pair.ts";
export { secureRandom, type RandomSource } from "./noise.ts";
export { edPublicToX25519 } from "./keys.ts";
