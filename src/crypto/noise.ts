/**
 * The Noise Protocol Framework (revision 34), for DH = 25519, cipher = AESGCM,
 * hash = SHA256, and the interactive patterns without PSKs. Pilot uses IK;
 * NN and XX are here because the same code runs them and the published test
 * vectors exercise it.
 *
 *   new CipherState(); cs.initializeKey(k); cs.encryptWithAd(ad, pt); cs.decryptWithAd(ad, ct) -> Uint8Array | null
 *   new SymmetricState(protocolName); mixKey / mixHash / encryptAndHash / decryptAndHash / split
 *   new HandshakeState({ pattern, initiator, prologue, staticKey?, ephemeralKey?, remoteStatic?, random? })
 *     hs.writeMessage(payload, random?): Uint8Array
 *     hs.readMessage(message): Result<Uint8Array>       never throws on hostile input; a failed
 *                                                       message leaves the state untouched
 *     hs.isComplete(), hs.split(): [initiatorToResponder, responderToInitiator] raw 32-byte keys
 *     hs.handshakeHash(), hs.remoteStaticKey()
 *
 * Private keys are raw 32-byte X25519 scalars; `random(n)` supplies fresh
 * ephemeral keys (injectable so that tests are deterministic).
 */
import type { KeyObject } from "node:crypto";
import { randomBytes } from "node:crypto";
import { fail, ok, type Result } from "../protocol/result.ts";
import { AEAD_NONCE_SIZE, AEAD_TAG_SIZE, aeadKey, open, seal, writeNonce } from "./aead.ts";
import { concatBytes } from "./bytes.ts";
import { HASH_SIZE, hkdf, sha256 } from "./hkdf.ts";
import { KEY_SIZE, x25519, x25519PrivateKey, x25519PublicFromPrivate } from "./keys.ts";

export type RandomSource = (length: number) => Uint8Array;
export const secureRandom: RandomSource = (length) => new Uint8Array(randomBytes(length));

export type Token = "e" | "s" | "ee" | "es" | "se" | "ss";

export interface HandshakePattern {
  readonly name: string;
  /** Keys known in advance: the initiator's, then the responder's pre-message. */
  readonly initiatorPremessage: readonly ("e" | "s")[];
  readonly responderPremessage: readonly ("e" | "s")[];
  /** Message i is written by the initiator when i is even. */
  readonly messages: readonly (readonly Token[])[];
}

export const PATTERN_NN: HandshakePattern = {
  name: "NN",
  initiatorPremessage: [],
  responderPremessage: [],
  messages: [["e"], ["e", "ee"]],
};

export const PATTERN_XX: HandshakePattern = {
  name: "XX",
  initiatorPremessage: [],
  responderPremessage: [],
  messages: [["e"], ["e", "ee", "s", "es"], ["s", "se"]],
};

export const PATTERN_IK: HandshakePattern = {
  name: "IK",
  initiatorPremessage: [],
  responderPremessage: ["s"],
  messages: [
    ["e", "es", "s", "ss"],
    ["e", "ee", "se"],
  ],
};

export function protocolName(pattern: HandshakePattern): string {
  return `Noise_${pattern.name}_25519_AESGCM_SHA256`;
}

const EMPTY = new Uint8Array(0);
/** Noise reserves nonce 2^64-1; we stop far earlier, at the largest exact JS integer. */
const MAX_NONCE = Number.MAX_SAFE_INTEGER;

export class CipherState {
  private key: KeyObject | null = null;
  private nonce = 0;
  private readonly nonceBytes = new Uint8Array(AEAD_NONCE_SIZE);

  initializeKey(key: Uint8Array | null): void {
    this.key = key === null ? null : aeadKey(key);
    this.nonce = 0;
  }

  hasKey(): boolean {
    return this.key !== null;
  }

  snapshot(): { key: KeyObject | null; nonce: number } {
    return { key: this.key, nonce: this.nonce };
  }

  restore(saved: { key: KeyObject | null; nonce: number }): void {
    this.key = saved.key;
    this.nonce = saved.nonce;
  }

  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    if (this.key === null) return plaintext.slice();
    if (this.nonce >= MAX_NONCE) throw new Error("Noise cipher nonce exhausted");
    writeNonce(this.nonceBytes, this.nonce);
    const out = seal(this.key, this.nonceBytes, ad, plaintext);
    this.nonce++;
    return out;
  }

  /** Returns null when authentication fails; the nonce then stays where it was. */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | null {
    if (this.key === null) return ciphertext.slice();
    if (this.nonce >= MAX_NONCE) return null;
    writeNonce(this.nonceBytes, this.nonce);
    const out = open(this.key, this.nonceBytes, ad, ciphertext);
    if (out !== null) this.nonce++;
    return out;
  }
}

export class SymmetricState {
  private chainingKey: Uint8Array;
  private hash: Uint8Array;
  readonly cipher = new CipherState();

  constructor(name: string) {
    const bytes = new TextEncoder().encode(name);
    if (bytes.length <= HASH_SIZE) {
      this.hash = new Uint8Array(HASH_SIZE);
      this.hash.set(bytes);
    } else {
      this.hash = sha256(bytes);
    }
    this.chainingKey = this.hash.slice();
  }

  mixKey(inputKeyMaterial: Uint8Array): void {
    const [ck, tempKey] = hkdf(this.chainingKey, inputKeyMaterial, 2) as [Uint8Array, Uint8Array];
    this.chainingKey = ck;
    this.cipher.initializeKey(tempKey);
  }

  mixHash(data: Uint8Array): void {
    this.hash = sha256(this.hash, data);
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.cipher.encryptWithAd(this.hash, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  decryptAndHash(ciphertext: Uint8Array): Uint8Array | null {
    const plaintext = this.cipher.decryptWithAd(this.hash, ciphertext);
    if (plaintext === null) return null;
    this.mixHash(ciphertext);
    return plaintext;
  }

  /** The two transport keys: [initiator -> responder, responder -> initiator]. */
  split(): [Uint8Array, Uint8Array] {
    const [k1, k2] = hkdf(this.chainingKey, EMPTY, 2) as [Uint8Array, Uint8Array];
    return [k1, k2];
  }

  handshakeHash(): Uint8Array {
    return this.hash.slice();
  }

  snapshot(): SymmetricSnapshot {
    return { chainingKey: this.chainingKey, hash: this.hash, cipher: this.cipher.snapshot() };
  }

  restore(saved: SymmetricSnapshot): void {
    this.chainingKey = saved.chainingKey;
    this.hash = saved.hash;
    this.cipher.restore(saved.cipher);
  }
}

interface SymmetricSnapshot {
  chainingKey: Uint8Array;
  hash: Uint8Array;
  cipher: { key: KeyObject | null; nonce: number };
}

/** An X25519 key pair with its private half already a KeyObject (build once, reuse). */
export interface StaticKeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: Uint8Array;
}

export function staticKeyPair(privateRaw: Uint8Array): StaticKeyPair {
  return { privateKey: x25519PrivateKey(privateRaw), publicKey: x25519PublicFromPrivate(privateRaw) };
}

const keyPair = staticKeyPair;

export interface HandshakeOptions {
  readonly pattern: HandshakePattern;
  readonly initiator: boolean;
  readonly prologue: Uint8Array;
  /** Our static X25519 key: raw private bytes, or a prebuilt pair (patterns with `s` on our side). */
  readonly staticKey?: Uint8Array | StaticKeyPair;
  /** A fixed ephemeral private key (test vectors); otherwise drawn from `random`. */
  readonly ephemeralKey?: Uint8Array;
  /** The peer's static X25519 public key when the pattern pre-shares it. */
  readonly remoteStatic?: Uint8Array;
  readonly random?: RandomSource;
}

export class HandshakeState {
  private readonly symmetric: SymmetricState;
  private readonly pattern: HandshakePattern;
  private readonly initiator: boolean;
  private readonly random: RandomSource;
  private readonly s: StaticKeyPair | null;
  private e: StaticKeyPair | null;
  private rs: Uint8Array | null;
  private re: Uint8Array | null = null;
  private index = 0;

  constructor(options: HandshakeOptions) {
    this.pattern = options.pattern;
    this.initiator = options.initiator;
    this.random = options.random ?? secureRandom;
    const s = options.staticKey;
    this.s = s === undefined ? null : s instanceof Uint8Array ? keyPair(s) : s;
    this.e = options.ephemeralKey ? keyPair(options.ephemeralKey) : null;
    this.rs = options.remoteStatic ? options.remoteStatic.slice() : null;
    this.symmetric = new SymmetricState(protocolName(options.pattern));
    this.symmetric.mixHash(options.prologue);
    this.mixPremessage(options.pattern.initiatorPremessage, this.initiator);
    this.mixPremessage(options.pattern.responderPremessage, !this.initiator);
  }

  private mixPremessage(tokens: readonly ("e" | "s")[], ours: boolean): void {
    for (const token of tokens) {
      if (token === "e") throw new Error("pre-message ephemeral keys are not supported");
      const key = ours ? this.s?.publicKey : this.rs;
      if (!key) throw new Error(`pattern ${this.pattern.name} needs the ${ours ? "local" : "remote"} static key in advance`);
      this.symmetric.mixHash(key);
    }
  }

  isComplete(): boolean {
    return this.index >= this.pattern.messages.length;
  }

  /** True when the next message is ours to write. */
  isMyTurn(): boolean {
    return !this.isComplete() && (this.index % 2 === 0) === this.initiator;
  }

  handshakeHash(): Uint8Array {
    return this.symmetric.handshakeHash();
  }

  remoteStaticKey(): Uint8Array | null {
    return this.rs ? this.rs.slice() : null;
  }

  split(): [Uint8Array, Uint8Array] {
    if (!this.isComplete()) throw new Error("handshake is not complete");
    return this.symmetric.split();
  }

  private dh(token: "ee" | "es" | "se" | "ss"): Uint8Array {
    // Token names read "initiator key, responder key"; each side picks its own half.
    const mine = (letter: "e" | "s") => (letter === "e" ? this.e : this.s);
    const theirs = (letter: "e" | "s") => (letter === "e" ? this.re : this.rs);
    const [iLetter, rLetter] = [token[0] as "e" | "s", token[1] as "e" | "s"];
    const local = this.initiator ? mine(iLetter) : mine(rLetter);
    const remote = this.initiator ? theirs(rLetter) : theirs(iLetter);
    if (!local || !remote) throw new Error(`missing key for ${token}`);
    return x25519(local.privateKey, remote);
  }

  /** Writes our next message; `random` overrides the constructor's source for a fresh ephemeral. */
  writeMessage(payload: Uint8Array, random: RandomSource = this.random): Uint8Array {
    if (!this.isMyTurn()) throw new Error("not our turn to write a handshake message");
    const parts: Uint8Array[] = [];
    for (const token of this.pattern.messages[this.index]!) {
      switch (token) {
        case "e":
          if (!this.e) this.e = keyPair(random(KEY_SIZE));
          parts.push(this.e.publicKey);
          this.symmetric.mixHash(this.e.publicKey);
          break;
        case "s":
          if (!this.s) throw new Error("pattern needs a local static key");
          parts.push(this.symmetric.encryptAndHash(this.s.publicKey));
          break;
        default:
          this.symmetric.mixKey(this.dh(token));
      }
    }
    parts.push(this.symmetric.encryptAndHash(payload));
    this.index++;
    return concatBytes(...parts);
  }

  /**
   * Processes the peer's next message. A message that fails leaves the state
   * exactly as it was (as if it never arrived), so forged or corrupted
   * messages cannot kill a handshake in progress.
   */
  readMessage(message: Uint8Array): Result<Uint8Array> {
    if (this.isComplete() || this.isMyTurn()) return fail("unexpected_message", "not expecting a handshake message now");
    const saved = { symmetric: this.symmetric.snapshot(), re: this.re, rs: this.rs };
    let result: Result<Uint8Array>;
    try {
      result = this.read(message);
    } catch (error) {
      result = fail("bad_key", `handshake key agreement failed: ${(error as Error).message}`);
    }
    if (!result.ok) {
      this.symmetric.restore(saved.symmetric);
      this.re = saved.re;
      this.rs = saved.rs;
    }
    return result;
  }

  private read(message: Uint8Array): Result<Uint8Array> {
    let at = 0;
    for (const token of this.pattern.messages[this.index]!) {
      switch (token) {
        case "e": {
          if (message.length - at < KEY_SIZE) return fail("truncated", "handshake message too short for an ephemeral key");
          this.re = message.slice(at, at + KEY_SIZE);
          at += KEY_SIZE;
          this.symmetric.mixHash(this.re);
          break;
        }
        case "s": {
          const length = KEY_SIZE + (this.symmetric.cipher.hasKey() ? AEAD_TAG_SIZE : 0);
          if (message.length - at < length) return fail("truncated", "handshake message too short for a static key");
          const rs = this.symmetric.decryptAndHash(message.subarray(at, at + length));
          if (rs === null) return fail("decrypt_failed", "could not decrypt the peer's static key");
          this.rs = rs;
          at += length;
          break;
        }
        default:
          this.symmetric.mixKey(this.dh(token));
      }
    }
    const rest = message.subarray(at);
    if (this.symmetric.cipher.hasKey() && rest.length < AEAD_TAG_SIZE) return fail("truncated", "handshake payload is shorter than its tag");
    const payload = this.symmetric.decryptAndHash(rest);
    if (payload === null) return fail("decrypt_failed", "could not decrypt the handshake payload");
    this.index++;
    return ok(payload);
  }
}
