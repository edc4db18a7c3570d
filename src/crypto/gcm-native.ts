/**
 * AES-256-GCM with one reusable context per key, through the system's
 * libcrypto (OpenSSL 3, `libcrypto.so.3`) over bun:ffi. node:crypto cannot
 * take a new nonce on an existing cipher, so the data path there builds a
 * Cipher/Decipher object per frame (~3-4 us of a 1240-byte frame's ~4 us);
 * here a frame costs the AES work and five FFI calls (~0.7 us).
 *
 *   const gcm = loadNativeGcm()                 null when unavailable: not Bun, no libcrypto.so.3,
 *                                               or PILOT_NATIVE_AEAD=0 (then use node:crypto)
 *   const ctx = gcm.context(key32, "seal")      key set once; freed when `ctx` is collected
 *   ctx.seal(nonce12, aad, plaintext, out, at)  ciphertext at out[at..], tag right after it
 *   ctx.open(nonce12, aad, ciphertext, tag)     the plaintext in a new buffer, or null when the
 *                                               tag does not verify (nothing is returned then)
 *
 * The same construction and nonce layout as `aead.ts`/`data-session.ts`; the
 * output is byte-for-byte what node:crypto produces (tested). OpenSSL checks
 * the tag in constant time; a frame that fails it yields no plaintext.
 */
import { createCipheriv } from "node:crypto";

const EVP_CTRL_GCM_GET_TAG = 0x10;
const EVP_CTRL_GCM_SET_TAG = 0x11;
const TAG = 16;

type Ptr = number;
interface Lib {
  EVP_CIPHER_CTX_new(): Ptr;
  EVP_CIPHER_CTX_free(ctx: Ptr): void;
  EVP_aes_256_gcm(): Ptr;
  EVP_EncryptInit_ex(ctx: Ptr, cipher: Ptr | null, engine: null, key: Ptr | null, iv: Ptr | null): number;
  EVP_DecryptInit_ex(ctx: Ptr, cipher: Ptr | null, engine: null, key: Ptr | null, iv: Ptr | null): number;
  EVP_EncryptUpdate(ctx: Ptr, out: Ptr | null, outl: Ptr, input: Ptr, inl: number): number;
  EVP_DecryptUpdate(ctx: Ptr, out: Ptr | null, outl: Ptr, input: Ptr, inl: number): number;
  EVP_EncryptFinal_ex(ctx: Ptr, out: Ptr, outl: Ptr): number;
  EVP_DecryptFinal_ex(ctx: Ptr, out: Ptr, outl: Ptr): number;
  EVP_CIPHER_CTX_ctrl(ctx: Ptr, type: number, arg: number, p: Ptr): number;
}

export interface GcmContext {
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out: Uint8Array, at: number): void;
  open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): Uint8Array | null;
}

export interface NativeGcm {
  context(key: Uint8Array, direction: "seal" | "open"): GcmContext;
}

let loaded: NativeGcm | null | undefined;

/** The native implementation, or null (callers then use node:crypto). Loaded and self-tested once. */
export function loadNativeGcm(): NativeGcm | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (process.env.PILOT_NATIVE_AEAD === "0" || typeof Bun === "undefined") return null;
  try {
    loaded = selfTested(open());
  } catch {
    loaded = null;
  }
  return loaded;
}

function open(): NativeGcm {
  // Loaded lazily so that other runtimes never see the bun:ffi import.
  const { dlopen, FFIType, ptr } = require("bun:ffi") as typeof import("bun:ffi");
  const P = FFIType.ptr;
  const { symbols } = dlopen("libcrypto.so.3", {
    EVP_CIPHER_CTX_new: { args: [], returns: P },
    EVP_CIPHER_CTX_free: { args: [P], returns: FFIType.void },
    EVP_aes_256_gcm: { args: [], returns: P },
    EVP_EncryptInit_ex: { args: [P, P, P, P, P], returns: FFIType.i32 },
    EVP_DecryptInit_ex: { args: [P, P, P, P, P], returns: FFIType.i32 },
    EVP_EncryptUpdate: { args: [P, P, P, P, FFIType.i32], returns: FFIType.i32 },
    EVP_DecryptUpdate: { args: [P, P, P, P, FFIType.i32], returns: FFIType.i32 },
    EVP_EncryptFinal_ex: { args: [P, P, P], returns: FFIType.i32 },
    EVP_DecryptFinal_ex: { args: [P, P, P], returns: FFIType.i32 },
    EVP_CIPHER_CTX_ctrl: { args: [P, FFIType.i32, FFIType.i32, P], returns: FFIType.i32 },
  });
  const C = symbols as unknown as Lib;
  const aes = C.EVP_aes_256_gcm();
  if (!aes) throw new Error("libcrypto has no aes-256-gcm");
  // Scratch shared by all contexts (one thread): the out-length word and a tag buffer.
  const outl = new Int32Array(2);
  const pOutl = ptr(outl);
  const scratchTag = new Uint8Array(TAG);
  const pScratchTag = ptr(scratchTag);
  const freed = new FinalizationRegistry<Ptr>((ctx) => C.EVP_CIPHER_CTX_free(ctx));
  const fail = (what: string): never => {
    throw new Error(`libcrypto ${what} failed`);
  };

  return {
    context(key, direction) {
      if (key.length !== 32) throw new RangeError("AES-256 key must be 32 bytes");
      const ctx = C.EVP_CIPHER_CTX_new();
      if (!ctx) fail("EVP_CIPHER_CTX_new");
      const init = direction === "seal" ? C.EVP_EncryptInit_ex : C.EVP_DecryptInit_ex;
      if (init(ctx, aes, null, ptr(key), null) !== 1) {
        C.EVP_CIPHER_CTX_free(ctx);
        fail("init");
      }
      const handle: GcmContext =
        direction === "seal"
          ? {
              seal(nonce, aad, plaintext, out, at) {
                if (out.length - at < plaintext.length + TAG) throw new RangeError("output buffer too small");
                if (C.EVP_EncryptInit_ex(ctx, null, null, null, ptr(nonce)) !== 1) fail("EVP_EncryptInit_ex");
                if (aad.length > 0 && C.EVP_EncryptUpdate(ctx, null, pOutl, ptr(aad), aad.length) !== 1) fail("EVP_EncryptUpdate (aad)");
                if (plaintext.length > 0 && C.EVP_EncryptUpdate(ctx, ptr(out, at), pOutl, ptr(plaintext), plaintext.length) !== 1) fail("EVP_EncryptUpdate");
                if (C.EVP_EncryptFinal_ex(ctx, pScratchTag, pOutl) !== 1) fail("EVP_EncryptFinal_ex");
                if (C.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG, ptr(out, at + plaintext.length)) !== 1) fail("get tag");
              },
              open() {
                throw new Error("a seal context cannot open");
              },
            }
          : {
              seal() {
                throw new Error("an open context cannot seal");
              },
              open(nonce, aad, ciphertext, tag) {
                if (tag.length !== TAG) return null;
                const plain = new Uint8Array(ciphertext.length);
                scratchTag.set(tag);
                if (C.EVP_DecryptInit_ex(ctx, null, null, null, ptr(nonce)) !== 1) return null;
                if (aad.length > 0 && C.EVP_DecryptUpdate(ctx, null, pOutl, ptr(aad), aad.length) !== 1) return null;
                if (ciphertext.length > 0 && C.EVP_DecryptUpdate(ctx, ptr(plain), pOutl, ptr(ciphertext), ciphertext.length) !== 1) return null;
                if (C.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG, pScratchTag) !== 1) return null;
                // Final verifies the tag; on failure the plaintext is dropped, never returned.
                if (C.EVP_DecryptFinal_ex(ctx, pScratchTag, pOutl) !== 1) {
                  plain.fill(0);
                  return null;
                }
                return plain;
              },
            };
      freed.register(handle, ctx);
      return handle;
    },
  };
}

/** Refuses a library whose output differs from node:crypto's on a known input, or that accepts a bad tag. */
function selfTested(gcm: NativeGcm): NativeGcm {
  const key = new Uint8Array(32).map((_, i) => i * 7 + 1);
  const nonce = new Uint8Array(12).map((_, i) => (i < 4 ? 0 : i * 13));
  const aad = new Uint8Array(28).map((_, i) => i + 100);
  const plain = new Uint8Array(1240).map((_, i) => (i * 31) & 0xff);
  const out = new Uint8Array(plain.length + TAG);
  gcm.context(key, "seal").seal(nonce, aad, plain, out, 0);
  const c = createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(aad);
  const body = c.update(plain);
  c.final();
  const expected = new Uint8Array([...body, ...c.getAuthTag()]);
  if (!out.every((b, i) => b === expected[i])) throw new Error("native AES-GCM differs from node:crypto");
  const opener = gcm.context(key, "open");
  const back = opener.open(nonce, aad, out.subarray(0, plain.length), out.subarray(plain.length));
  if (!back || !back.every((b, i) => b === plain[i])) throw new Error("native AES-GCM does not open its own output");
  out[5]! ^= 1;
  if (opener.open(nonce, aad, out.subarray(0, plain.length), out.subarray(plain.length)) !== null) throw new Error("native AES-GCM accepted a forged frame");
  return gcm;
}
