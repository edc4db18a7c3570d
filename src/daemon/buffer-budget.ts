/**
 * The daemon's budget for stream buffers: how much memory the peers' streams
 * may make it hold, per peer and in total. Streams start with small buffers and
 * grow them only when they are the bottleneck (transport/connection.ts asks
 * through a BufferAllocator); every byte of growth is granted here, so whatever
 * a peer does, what it pins is bounded:
 *
 *   one trusted peer    <= limits.perPeer
 *   one stranger        <= limits.perStranger      (an untrusted node talking to a public node)
 *   all strangers       <= limits.strangersTotal
 *   everything          <= limits.total
 *
 * plus a small floor per stream (StreamConfig.minBuffer each way) that is granted
 * even past the budget so a stream always works; the number of streams is bounded
 * by the port table's per-peer and total limits. A peer over its share is the one
 * whose buffers stop growing; the others keep theirs. Pure bookkeeping.
 *
 *   new BufferBudget(limits)
 *   allocatorFor(peer, trusted): BufferAllocator     one per stream
 *   held / heldBy(peer) / snapshot()
 *   trimRule(): (peer, moved) => boolean             which streams a sweep trims
 */
import type { Address } from "../protocol/address.ts";
import type { BufferAllocator } from "../transport/buffer-allocator.ts";

export interface BufferLimits {
  /** All stream buffers together. */
  readonly total: number;
  /** All streams with one trusted peer. */
  readonly perPeer: number;
  /** All streams with one untrusted peer (only a public node accepts those). */
  readonly perStranger: number;
  /** All streams with untrusted peers together. */
  readonly strangersTotal: number;
}

const MiB = 1024 * 1024;

/** Budget use above which busy streams of peers holding more than an even share are trimmed too. */
export const BUFFER_PRESSURE = 0.75;

export const DEFAULT_BUFFER_LIMITS: BufferLimits = Object.freeze({
  total: 64 * MiB,
  perPeer: 16 * MiB,
  perStranger: 2 * MiB,
  strangersTotal: 16 * MiB,
});

/** Limits scaled from a total (`pilot daemon start --buffer-budget`), keeping the default proportions. */
export function bufferLimitsFor(total: number): BufferLimits {
  const t = Math.max(1 * MiB, Math.floor(total));
  return { total: t, perPeer: Math.floor(t / 4), perStranger: Math.floor(t / 32), strangersTotal: Math.floor(t / 4) };
}

export interface BufferBudgetSnapshot {
  limits: BufferLimits;
  held: number;
  heldByStrangers: number;
  peers: number;
  /** The peer holding the most, and how much. */
  largestPeer: { peer: Address; held: number } | null;
  /** Growth requests refused (all or in part) because a limit was reached. */
  refusals: number;
}

interface PeerLedger {
  held: number;
  streams: number;
}

export class BufferBudget {
  private heldTotal = 0;
  private heldStrangers = 0;
  private readonly peers = new Map<Address, PeerLedger>();
  private refusals = 0;

  constructor(readonly limits: BufferLimits = DEFAULT_BUFFER_LIMITS) {}

  get held(): number {
    return this.heldTotal;
  }

  heldBy(peer: Address): number {
    return this.peers.get(peer)?.held ?? 0;
  }

  /** Fraction of the total in use (may pass 1 by the streams' floors). */
  get pressure(): number {
    return this.heldTotal / this.limits.total;
  }

  /**
   * The allocator for one stream with `peer`. `trusted` is asked at each grant (trust
   * can change while a stream lives); space granted to a stranger is counted as such
   * until it comes back.
   */
  allocatorFor(peer: Address, trusted: () => boolean): BufferAllocator {
    let ledger = this.peers.get(peer);
    if (!ledger) this.peers.set(peer, (ledger = { held: 0, streams: 0 }));
    ledger.streams++;
    const peerLedger = ledger;
    let held = 0;
    let heldAsStranger = 0;
    let open = true;
    return {
      grow: (want: number, atLeast = 0): number => {
        if (!open || want <= 0) return Math.max(0, atLeast);
        const isTrusted = trusted();
        let room = Math.min(this.limits.total - this.heldTotal, (isTrusted ? this.limits.perPeer : this.limits.perStranger) - peerLedger.held);
        if (!isTrusted) room = Math.min(room, this.limits.strangersTotal - this.heldStrangers);
        let granted = Math.min(want, Math.max(0, room));
        if (granted < want) this.refusals++;
        if (granted < atLeast) granted = atLeast;
        held += granted;
        peerLedger.held += granted;
        this.heldTotal += granted;
        if (!isTrusted) {
          heldAsStranger += granted;
          this.heldStrangers += granted;
        }
        return granted;
      },
      release: (bytes: number): void => {
        const n = Math.min(Math.max(0, bytes), held);
        if (n === 0) return;
        held -= n;
        peerLedger.held -= n;
        this.heldTotal -= n;
        const s = Math.min(n, heldAsStranger);
        heldAsStranger -= s;
        this.heldStrangers -= s;
        if (held === 0 && open) {
          // The engine gives everything back when the connection ends.
          open = false;
          if (--peerLedger.streams === 0 && peerLedger.held === 0) this.peers.delete(peer);
        }
      },
    };
  }

  /**
   * The rule for one sweep of the streams (the daemon's housekeeping, every second):
   * whether a stream with `peer` that `moved` bytes since the last sweep or not gives
   * its unused buffer space back. Idle streams always do (they grow again when they
   * need to); above BUFFER_PRESSURE of the total, so do the busy streams of peers
   * that hold more than an even share of the total, so the peer over its share is the
   * one that slows down.
   */
  trimRule(): (peer: Address, moved: boolean) => boolean {
    if (this.pressure <= BUFFER_PRESSURE) return (_peer, moved) => !moved;
    const evenShare = this.peers.size > 0 ? this.limits.total / this.peers.size : Infinity;
    return (peer, moved) => !moved || this.heldBy(peer) > evenShare;
  }

  snapshot(): BufferBudgetSnapshot {
    let largestPeer: BufferBudgetSnapshot["largestPeer"] = null;
    for (const [peer, l] of this.peers) if (!largestPeer || l.held > largestPeer.held) largestPeer = { peer, held: l.held };
    return { limits: this.limits, held: this.heldTotal, heldByStrangers: this.heldStrangers, peers: this.peers.size, largestPeer, refusals: this.refusals };
  }
}
