/**
 * A small seeded PRNG for deterministic tests and simulations (sfc32, seeded
 * through splitmix32). Same seed, same sequence, on every platform.
 *
 *   const rng = new Prng(42)
 *   rng.next()            float in [0, 1)
 *   rng.u32()             integer in [0, 2^32)
 *   rng.int(lo, hi)       integer in [lo, hi]
 *   rng.chance(p)         true with probability p
 *   rng.fill(bytes)       fills a Uint8Array
 *   rng.fork()            an independent generator derived from this one
 */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const split = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = split();
    this.b = split();
    this.c = split();
    this.d = split();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  next(): number {
    return this.u32() / 0x1_0000_0000;
  }

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }

  fill(bytes: Uint8Array): Uint8Array {
    const words = Math.floor(bytes.length / 4);
    if (bytes.byteOffset % 4 === 0 && new Uint8Array(new Uint32Array([1]).buffer)[0] === 1) {
      const w = new Uint32Array(bytes.buffer, bytes.byteOffset, words); // little-endian: same bytes as below
      for (let i = 0; i < words; i++) w[i] = this.u32();
    } else {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < words; i++) view.setUint32(4 * i, this.u32(), true);
    }
    for (let i = 4 * words; i < bytes.length; i++) bytes[i] = this.u32() & 0xff;
    return bytes;
  }

  fork(): Prng {
    return new Prng(this.u32());
  }
}
