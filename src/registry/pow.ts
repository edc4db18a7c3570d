/**
 * Proof of work for new identities: what a key pays to become a node.
 *
 *   work  = SHA-256("pilot-registry-pow-v1\n" ‖ challenge (16 B) ‖ public key (32 B) ‖ nonce (8 B))
 *   valid when `work` starts with at least `difficulty` zero bits
 *
 * The registry's challenge is random and changes every CHALLENGE_LIFETIME_MS
 * (the current and the previous one are accepted), so work cannot be done
 * long in advance; the work names the key, so it cannot be reused for another
 * key (and a key that is already a node never pays again).
 *
 * The difficulty follows the registry-wide rate of new identities: a decaying
 * count of recent registrations (time constant RATE_WINDOW_MS) against a free
 * rate. At or below it the difficulty is `baseBits` (12: about 4 000 hashes,
 * well under a millisecond); every doubling above it adds `bitsPerDoubling`
 * (2), so the work per identity grows with the square of the flood's rate.
 *
 * Pure: time and randomness come in as arguments (PowGate) or not at all
 * (powWork, meetsDifficulty, solvePowSlice).
 */
import { concatBytes } from "../crypto/bytes.ts";

export const POW_CONTEXT = "pilot-registry-pow-v1\n";
export const POW_CHALLENGE_SIZE = 16;
export const POW_NONCE_SIZE = 8;
export const CHALLENGE_LIFETIME_MS = 10 * 60_000;
export const RATE_WINDOW_MS = 60_000;
export const POW_MAX_BITS = 32;

const context = new TextEncoder().encode(POW_CONTEXT);

export interface PowConfig {
  /** Difficulty (leading zero bits) while new identities arrive at or below the free rate. 0: no work at low rate. */
  readonly baseBits: number;
  /** New identities per minute, registry-wide, before the difficulty rises. */
  readonly freePerMinute: number;
  /** Bits added per doubling of the rate above the free rate. */
  readonly bitsPerDoubling: number;
  /** The difficulty never rises above this. */
  readonly maxBits: number;
}

export const DEFAULT_POW: PowConfig = { baseBits: 12, freePerMinute: 60, bitsPerDoubling: 2, maxBits: 28 };

/** The 32-byte work value for one attempt. */
export function powWork(challenge: Uint8Array, publicKey: Uint8Array, nonce: Uint8Array): Uint8Array {
  const out = new Uint8Array(32);
  Bun.SHA256.hash(concatBytes(context, challenge, publicKey, nonce), out);
  return out;
}

/** Does `work` start with at least `bits` zero bits? */
export function meetsDifficulty(work: Uint8Array, bits: number): boolean {
  let left = bits;
  for (let i = 0; left > 0; i++) {
    const byte = work[i] ?? 0xff;
    if (left >= 8) {
      if (byte !== 0) return false;
      left -= 8;
    } else {
      return byte >> (8 - left) === 0;
    }
  }
  return true;
}

/**
 * Tries nonces `from .. from + count - 1` (the counter in the nonce's last six
 * bytes, big-endian). Returns the first nonce that meets `bits`, or undefined.
 * Callers yield to their event loop between slices.
 */
export function solvePowSlice(challenge: Uint8Array, publicKey: Uint8Array, bits: number, from: number, count: number): Uint8Array | undefined {
  const input = concatBytes(context, challenge, publicKey, new Uint8Array(POW_NONCE_SIZE));
  const view = new DataView(input.buffer, input.byteOffset + input.length - POW_NONCE_SIZE, POW_NONCE_SIZE);
  const out = new Uint8Array(32);
  for (let n = from; n < from + count; n++) {
    view.setUint16(2, Math.floor(n / 2 ** 32));
    view.setUint32(4, n >>> 0);
    Bun.SHA256.hash(input, out);
    if (meetsDifficulty(out, bits)) return input.slice(input.length - POW_NONCE_SIZE);
  }
  return undefined;
}

/**
 * The registry's side: the rotating challenge, the current difficulty, and
 * the checks. Memory: two challenges and one number.
 */
export class PowGate {
  private current: { challenge: Uint8Array; since: number };
  private previous: Uint8Array | undefined;
  private load = 0;
  private loadAt = 0;

  constructor(
    private readonly config: PowConfig,
    private readonly random: (size: number) => Uint8Array,
    now: number,
  ) {
    this.current = { challenge: random(POW_CHALLENGE_SIZE), since: now };
  }

  /** The challenge to solve now. */
  challenge(now: number): Uint8Array {
    if (now - this.current.since >= CHALLENGE_LIFETIME_MS) {
      this.previous = this.current.challenge;
      this.current = { challenge: this.random(POW_CHALLENGE_SIZE), since: now };
    }
    return this.current.challenge;
  }

  /** Recent new identities per minute (a decaying average). */
  ratePerMinute(now: number): number {
    return this.decayed(now) * (60_000 / RATE_WINDOW_MS);
  }

  /** Leading zero bits a new identity must show now. */
  difficulty(now: number): number {
    const { baseBits, freePerMinute, bitsPerDoubling, maxBits } = this.config;
    const rate = this.ratePerMinute(now);
    const over = rate > freePerMinute ? Math.ceil(Math.log2(rate / freePerMinute) * bitsPerDoubling) : 0;
    return Math.min(Math.max(maxBits, baseBits), baseBits + over);
  }

  /** Is `nonce` valid work for `publicKey` at the current difficulty, against the current or the previous challenge? */
  verify(publicKey: Uint8Array, nonce: Uint8Array, now: number): boolean {
    const bits = this.difficulty(now);
    if (bits === 0) return true;
    if (nonce.length !== POW_NONCE_SIZE) return false;
    for (const c of [this.challenge(now), this.previous]) {
      if (c && meetsDifficulty(powWork(c, publicKey, nonce), bits)) return true;
    }
    return false;
  }

  /** A new identity was created: it raises the difficulty for the next ones. */
  record(now: number): void {
    this.load = this.decayed(now) + 1;
    this.loadAt = now;
  }

  private decayed(now: number): number {
    return this.load * Math.exp(-Math.max(0, now - this.loadAt) / RATE_WINDOW_MS);
  }
}
