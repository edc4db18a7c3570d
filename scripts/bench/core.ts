/**
 * The pure core's figures, each beside a baseline measured in the same run:
 *
 *   AES-256-GCM seal+open of a 1200-byte frame: the data path (DataSession: reusable libcrypto contexts, else node:crypto) vs @noble/ciphers
 *   tunnel handshakes per second (Noise IK, both sides)          vs raw X25519 agreements per second
 *   stream engine in memory, lossless and 2 % loss (MB/s)        vs copying the same bytes in 1240-byte pieces
 *
 *   bun run bench:core
 */
import { gcm } from "@noble/ciphers/aes.js";
import { diffieHellman, generateKeyPairSync, randomBytes } from "node:crypto";
import { identityFromSeed } from "../../src/crypto/identity.ts";
import { connectInMemory, nodeKeys } from "../../src/crypto/session-pair.ts";
import { addressOf } from "../../src/protocol/address.ts";
import { runTransfer } from "../../test/support/simulated-link.ts";

function timeIt(iterations: number, fn: (i: number) => void): number {
  for (let i = 0; i < Math.min(1000, iterations / 10); i++) fn(i); // warm up
  const t = performance.now();
  for (let i = 0; i < iterations; i++) fn(i);
  return (performance.now() - t) / iterations; // ms per iteration
}

const line = (label: string, value: string, baseline: string, ratio: string) =>
  console.log(`${label.padEnd(34)} ${value.padEnd(26)} | baseline ${baseline.padEnd(34)} | ${ratio}`);

// ---- AES-GCM ----------------------------------------------------------------
{
  const a = nodeKeys(identityFromSeed(new Uint8Array(32).fill(1)), addressOf(0, 4));
  const b = nodeKeys(identityFromSeed(new Uint8Array(32).fill(2)), addressOf(0, 5));
  const { initiator, responder } = connectInMemory(a, b);
  const plaintext = new Uint8Array(1200).fill(7);
  const frame = new Uint8Array(1300);
  const nativeMs = timeIt(100_000, () => {
    const n = initiator.seal(plaintext, frame);
    if (!responder.open(frame.subarray(0, n))) throw new Error("open failed");
  });
  const key = randomBytes(32);
  const nonce = new Uint8Array(12);
  const nobleMs = timeIt(5_000, (i) => {
    nonce[11] = i & 0xff;
    nonce[10] = (i >> 8) & 0xff;
    const sealed = gcm(key, nonce).encrypt(plaintext);
    gcm(key, nonce).decrypt(sealed);
  });
  line("AES-GCM seal+open, 1200 B frame", `${(nativeMs * 1000).toFixed(2)} us (${(1200 / (nativeMs * 1000)).toFixed(0)} MB/s)`, `@noble ${(nobleMs * 1000).toFixed(1)} us`, `native ${(nobleMs / nativeMs).toFixed(1)}x faster`);
}

// ---- handshakes ----------------------------------------------------------------
{
  const a = nodeKeys(identityFromSeed(new Uint8Array(32).fill(3)), addressOf(0, 6));
  const b = nodeKeys(identityFromSeed(new Uint8Array(32).fill(4)), addressOf(0, 7));
  const hsMs = timeIt(2_000, () => connectInMemory(a, b));
  const priv = generateKeyPairSync("x25519").privateKey;
  const pub = generateKeyPairSync("x25519").publicKey;
  const dhMs = timeIt(10_000, () => diffieHellman({ privateKey: priv, publicKey: pub }));
  line("tunnel handshake (IK, both sides)", `${(1000 / hsMs).toFixed(0)} /s (${(hsMs * 1000).toFixed(0)} us)`, `X25519 ${(1000 / dhMs).toFixed(0)} /s`, `${(hsMs / dhMs).toFixed(1)} DH-equivalents each`);
}

// ---- stream engine ------------------------------------------------------------------
{
  const bytes = 64 << 20;
  runTransfer({ bytes: 4 << 20, seed: 9 }); // JIT warm-up
  const src = new Uint8Array(bytes).fill(1);
  const dst = new Uint8Array(bytes);
  const copyMs = timeIt(3, () => {
    for (let off = 0; off < bytes; off += 1240) dst.set(src.subarray(off, Math.min(bytes, off + 1240)), off);
  });
  const copyMBps = bytes / 1e6 / (copyMs / 1000);
  for (const [label, loss] of [["stream engine, lossless", 0], ["stream engine, 2 % loss", 0.02]] as const) {
    const check = runTransfer({ bytes: 8 << 20, loss, seed: 7 }); // verified (SHA-256 both ends), not timed
    if (!check.ok || !check.intact) throw new Error(`${label}: transfer not intact`);
    const runs = [1, 2, 3].map((seed) => runTransfer({ bytes, loss, seed, verify: false }));
    if (!runs.every((r) => r.ok)) throw new Error(`${label}: transfer incomplete`);
    const mbps = runs.map((r) => r.mbPerSecond).sort((x, y) => x - y)[1]!;
    line(label, `${mbps.toFixed(0)} MB/s (median of 3, 64 MiB)`, `copy in 1240 B pieces ${copyMBps.toFixed(0)} MB/s`, `${(mbps / copyMBps).toFixed(2)}x`);
  }
}
