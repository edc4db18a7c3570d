/**
 * Seeded inputs for property tests of decoders: random byte strings and
 * mutations (bit flips, truncation, extension, splices) of valid encodings.
 * Deterministic for a given seed, so a failure names a reproducible case.
 */

/** xoshiro128** — small, fast, good enough for test inputs. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0 || 1, b = 0x9e3779b9, c = 0x243f6a88, d = 0xb7e15162;
  const next = () => {
    const result = (Math.imul(rotl(Math.imul(b, 5), 7), 9)) >>> 0;
    const t = b << 9;
    c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = rotl(d, 11);
    return result / 0x1_0000_0000;
  };
  for (let i = 0; i < 16; i++) next();
  return next;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export function randomBytes(rand: () => number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (rand() * 256) | 0;
  return out;
}

export function mutate(rand: () => number, input: Uint8Array): Uint8Array {
  const r = rand();
  const pick = (n: number) => Math.floor(rand() * n);
  if (r < 0.35) {
    const out = input.slice();
    const flips = 1 + pick(4);
    for (let i = 0; i < flips && out.length > 0; i++) out[pick(out.length)]! ^= 1 << pick(8);
    return out;
  }
  if (r < 0.55) return input.slice(0, pick(input.length + 1));
  if (r < 0.7) {
    const extra = randomBytes(rand, 1 + pick(64));
    const out = new Uint8Array(input.length + extra.length);
    out.set(input);
    out.set(extra, input.length);
    return out;
  }
  if (r < 0.85) {
    const out = input.slice();
    if (out.length > 0) out[pick(out.length)] = [0, 0xff, 0x7f, 0x80][pick(4)]!;
    return out;
  }
  // Overwrite a length-like u16 somewhere with an extreme value.
  const out = input.slice();
  if (out.length >= 2) {
    const at = pick(out.length - 1);
    const v = [0, 1, 0xffff, out.length, out.length + 1][pick(5)]!;
    out[at] = v >> 8;
    out[at + 1] = v & 0xff;
  }
  return out;
}

/** Runs `check` over `cases` inputs: a mix of random bytes and mutations of `seeds`. */
export function fuzz(
  options: { seed: number; cases: number; seeds: Uint8Array[]; maxRandomLength?: number },
  check: (input: Uint8Array) => void,
): void {
  const rand = seededRandom(options.seed);
  const maxLen = options.maxRandomLength ?? 200;
  for (let i = 0; i < options.cases; i++) {
    const input =
      options.seeds.length > 0 && rand() < 0.7
        ? mutate(rand, options.seeds[Math.floor(rand() * options.seeds.length)]!)
        : randomBytes(rand, Math.floor(rand() * maxLen));
    try {
      check(input);
    } catch (error) {
      throw new Error(`fuzz case ${i} (seed ${options.seed}) failed on ${Buffer.from(input).toString("hex")}: ${error}`);
    }
  }
}
