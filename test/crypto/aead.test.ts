import { describe, expect, test } from "bun:test";
import { gcm } from "@noble/ciphers/aes.js";
import { bytesToHex, hexToBytes } from "../../src/crypto/bytes.ts";
import { aeadKey, open, seal, writeNonce } from "../../src/crypto/aead.ts";
import { hkdf, hmacSha256 } from "../../src/crypto/hkdf.ts";
import { randomBytes, seededRandom } from "../support/fuzz.ts";

describe("AES-256-GCM (native) against @noble/ciphers", () => {
  const rand = seededRandom(11);
  for (const length of [0, 1, 15, 16, 17, 1200, 1328]) {
    test(`${length}-byte plaintext, both directions`, () => {
      const raw = randomBytes(rand, 32);
      const nonce = new Uint8Array(12);
      writeNonce(nonce, length * 7919 + 3);
      const ad = randomBytes(rand, 28);
      const plaintext = randomBytes(rand, length);

      const native = seal(aeadKey(raw), nonce, ad, plaintext);
      const reference = gcm(raw, nonce, ad).encrypt(plaintext);
      expect(bytesToHex(native)).toBe(bytesToHex(reference));

      const openedByNative = open(aeadKey(raw), nonce, ad, reference);
      expect(openedByNative && bytesToHex(openedByNative)).toBe(bytesToHex(plaintext));
      expect(bytesToHex(gcm(raw, nonce, ad).decrypt(native))).toBe(bytesToHex(plaintext));
    });
  }

  test("any flipped bit in ciphertext, tag, nonce or AD fails to open", () => {
    const raw = randomBytes(rand, 32);
    const key = aeadKey(raw);
    const nonce = new Uint8Array(12);
    writeNonce(nonce, 1);
    const ad = randomBytes(rand, 28);
    const sealed = seal(key, nonce, ad, randomBytes(rand, 64));
    for (let i = 0; i < sealed.length; i++) {
      const bad = sealed.slice();
      bad[i]! ^= 0x80;
      expect(open(key, nonce, ad, bad)).toBeNull();
    }
    const badNonce = nonce.slice();
    badNonce[11]! ^= 1;
    expect(open(key, badNonce, ad, sealed)).toBeNull();
    const badAd = ad.slice();
    badAd[0]! ^= 1;
    expect(open(key, nonce, badAd, sealed)).toBeNull();
    expect(open(key, nonce, ad, sealed.subarray(0, 15))).toBeNull();
    expect(open(key, nonce, ad, sealed)).not.toBeNull();
  });

  test("nonce = 4 zero bytes then the counter as a big-endian u64", () => {
    const nonce = new Uint8Array(12).fill(0xaa);
    writeNonce(nonce, 0x0102_0304_0506);
    expect(bytesToHex(nonce)).toBe("000000000000010203040506");
    writeNonce(nonce, Number.MAX_SAFE_INTEGER);
    expect(bytesToHex(nonce)).toBe("00000000001fffffffffffff");
  });
});

describe("HKDF-SHA-256", () => {
  test("RFC 5869 test case 1 through the native HKDF we build on", async () => {
    const { hkdfSync } = await import("node:crypto");
    const ikm = new Uint8Array(22).fill(0x0b);
    const salt = hexToBytes("000102030405060708090a0b0c");
    const info = hexToBytes("f0f1f2f3f4f5f6f7f8f9");
    const okm = new Uint8Array(hkdfSync("sha256", ikm, salt, info, 42));
    expect(bytesToHex(okm)).toBe(
      "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    );
  });

  test("matches Noise's HMAC definition of HKDF(ck, ikm, 3)", () => {
    const rand = seededRandom(5);
    const ck = randomBytes(rand, 32);
    const ikm = randomBytes(rand, 32);
    const temp = hmacSha256(ck, ikm);
    const o1 = hmacSha256(temp, new Uint8Array([1]));
    const o2 = hmacSha256(temp, o1, new Uint8Array([2]));
    const o3 = hmacSha256(temp, o2, new Uint8Array([3]));
    expect(hkdf(ck, ikm, 3).map(bytesToHex)).toEqual([o1, o2, o3].map(bytesToHex));
    const empty = hkdf(ck, new Uint8Array(0), 2);
    const t = hmacSha256(ck, new Uint8Array(0));
    expect(bytesToHex(empty[0]!)).toBe(bytesToHex(hmacSha256(t, new Uint8Array([1]))));
  });
});
