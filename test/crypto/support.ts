/** Deterministic helpers for crypto and tunnel tests. */
import { identityFromSeed, type Identity } from "../../src/crypto/identity.ts";
import type { RandomSource } from "../../src/crypto/noise.ts";
import { randomBytes, seededRandom } from "../support/fuzz.ts";

/** A seeded, NOT secure, byte source: makes handshakes reproducible in tests. */
export function seededBytes(seed: number): RandomSource {
  const rand = seededRandom(seed);
  return (n) => randomBytes(rand, n);
}

export function testIdentity(seed: number): Identity {
  return identityFromSeed(seededBytes(seed)(32));
}
