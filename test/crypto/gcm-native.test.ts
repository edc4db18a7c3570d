/**
 * The native AES-256-GCM (libcrypto over bun:ffi, one context per key) is
 * byte-for-byte node:crypto's, in both directions, at every frame size and
 * buffer offset the data path uses; it rejects every tampered frame without
 * returning plaintext; DataSessions with and without it interoperate.
 */
import { describe, expect, test } from "bun:test";
import { createCipheriv } from "node:crypto";
import { DataSession, type DataSessionKeys } from "../../src/crypto/data-session.ts";
import { loadNativeGcm } from "../../src/crypto/gcm-native.ts";
import { addressOf } from "../../src/protocol/address.ts";
import { MAX_TUNNEL_PLAINTEXT } from "../../src/protocol/tunnel-frame.ts";
import { randomBytes, seededRandom } from "../support/fuzz.ts";

const rand = seededRandom(13);
const native = loadNativeGcm();
const A = addressOf(1, 10);
const B = addressOf(1, 20);

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function nodeSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plain: Uint8Array): Uint8Array {
  const c = createCipheriv("aes-256-gcm", Buffer.from(key), Buffer.from(nonce));
  c.setAAD(Buffer.from(aad));
  const body = c.update(Buffer.from(plain));
  c.final();
  return new Uint8Array([...body, ...c.getAuthTag()]);
}

describe.skipIf(native === null)("native AES-256-GCM", () => {
  test("equals node:crypto for sizes 0..max and any output offset, and opens its own output", () => {
    const key = randomBytes(rand, 32);
    const sealer = native!.context(key, "seal");
    const opener = native!.context(key, "open");
    for (const size of [0, 1, 15, 16, 17, 100, 1199, 1240, 4000, MAX_TUNNEL_PLAINTEXT]) {
      for (const at of [0, 3, 16]) {
        const nonce = randomBytes(rand, 12);
        const aad = randomBytes(rand, 28);
        const backing = randomBytes(rand, size + 40);
        const plain = backing.subarray(7, 7 + size); // a view into a larger buffer, as frames are
        const out = new Uint8Array(at + size + 16);
        sealer.seal(nonce, aad, plain, out, at);
        expect(hex(out.subarray(at))).toBe(hex(nodeSeal(key, nonce, aad, plain)));
        const back = opener.open(nonce, aad, out.subarray(at, at + size), out.subarray(at + size));
        expect(back).toEqual(new Uint8Array(plain));
      }
    }
  });

  test("a flipped bit anywhere (ciphertext, tag, AAD, nonce) or a short tag yields null", () => {
    const key = randomBytes(rand, 32);
    const opener = native!.context(key, "open");
    const nonce = randomBytes(rand, 12);
    const aad = randomBytes(rand, 28);
    const plain = randomBytes(rand, 300);
    const sealed = nodeSeal(key, nonce, aad, plain);
    const ct = () => sealed.subarray(0, 300);
    const tag = () => sealed.subarray(300);
    for (const i of [0, 150, 299, 300, 315]) {
      sealed[i]! ^= 0x40;
      expect(opener.open(nonce, aad, ct(), tag())).toBeNull();
      sealed[i]! ^= 0x40;
    }
    const badAad = aad.slice();
    badAad[3]! ^= 1;
    expect(opener.open(nonce, badAad, ct(), tag())).toBeNull();
    const badNonce = nonce.slice();
    badNonce[11]! ^= 1;
    expect(opener.open(badNonce, aad, ct(), tag())).toBeNull();
    expect(opener.open(nonce, aad, ct(), tag().subarray(0, 12))).toBeNull();
    // And the context still works after failures.
    expect(opener.open(nonce, aad, ct(), tag())).toEqual(plain);
  });

  test("a context seals or opens, not both; a wrong-size key is refused", () => {
    const key = randomBytes(rand, 32);
    expect(() => native!.context(key, "seal").open(new Uint8Array(12), new Uint8Array(0), new Uint8Array(0), new Uint8Array(16))).toThrow();
    expect(() => native!.context(key, "open").seal(new Uint8Array(12), new Uint8Array(0), new Uint8Array(0), new Uint8Array(16), 0)).toThrow();
    expect(() => native!.context(randomBytes(rand, 16), "seal")).toThrow(RangeError);
  });
});

describe("DataSession with and without the native AEAD", () => {
  function sessions(nativeA: boolean, nativeB: boolean) {
    const k1 = randomBytes(rand, 32);
    const k2 = randomBytes(rand, 32);
    const base = (send: Uint8Array, receive: Uint8Array, li: number, ri: number, la: typeof A, ra: typeof A, nativeAead: boolean): DataSessionKeys => ({
      sendKey: send,
      receiveKey: receive,
      localIndex: li,
      remoteIndex: ri,
      localAddress: la,
      remoteAddress: ra,
      nativeAead,
    });
    return { a: new DataSession(base(k1, k2, 1, 2, A, B, nativeA)), b: new DataSession(base(k2, k1, 2, 1, B, A, nativeB)) };
  }

  for (const [na, nb] of [[true, false], [false, true], [true, true], [false, false]] as const) {
    test(`native ${na} <-> native ${nb}: identical frames, both ways, replays and forgeries refused`, () => {
      const { a, b } = sessions(na, nb);
      for (const size of [0, 1, 1240, MAX_TUNNEL_PLAINTEXT]) {
        const msg = randomBytes(rand, size);
        const frame = a.sealFrame(msg)!;
        expect(b.open(frame)).toEqual(msg);
        const back = b.sealFrame(msg)!;
        expect(a.open(back)).toEqual(msg);
        expect(b.open(frame)).toBeNull();
        expect(b.lastError).toBe("replay");
      }
      const forged = a.sealFrame(randomBytes(rand, 64))!;
      forged[40]! ^= 1;
      expect(b.open(forged)).toBeNull();
      expect(b.lastError).toBe("auth_failed");
    });
  }

  test("the native and node:crypto paths put the same bytes on the wire", () => {
    const keys = { sendKey: randomBytes(rand, 32), receiveKey: randomBytes(rand, 32), localIndex: 5, remoteIndex: 6, localAddress: A, remoteAddress: B };
    const n = new DataSession({ ...keys, nativeAead: true });
    const j = new DataSession({ ...keys, nativeAead: false });
    for (const size of [0, 33, 1240]) {
      const msg = randomBytes(rand, size);
      expect(n.sealFrame(msg)).toEqual(j.sealFrame(msg)!);
    }
  });
});
