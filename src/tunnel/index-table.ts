/**
 * Session indices: each side of a session picks a random u32 that the other
 * puts in every frame it sends back (WireGuard style), so the receiver finds
 * the session without trying keys and without naming the sender in clear.
 * One table per tunnel socket, shared by all its peers.
 *
 *   const table = new IndexTable<Owner>(random?)
 *   table.allocate(owner): number      a fresh index, never 0 and never one in use
 *   table.lookup(index): Owner | undefined
 *   table.release(index): void
 */
import { secureRandom, type RandomSource } from "../crypto/noise.ts";

export class IndexTable<T> {
  private readonly owners = new Map<number, T>();

  constructor(private readonly random: RandomSource = secureRandom) {}

  get size(): number {
    return this.owners.size;
  }

  allocate(owner: T): number {
    for (;;) {
      const b = this.random(4);
      const index = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
      if (index !== 0 && !this.owners.has(index)) {
        this.owners.set(index, owner);
        return index;
      }
    }
  }

  lookup(index: number): T | undefined {
    return this.owners.get(index);
  }

  release(index: number): void {
    this.owners.delete(index);
  }
}
