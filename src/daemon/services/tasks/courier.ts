/**
 * Delivers the outbox, peer by peer, in order. For each peer with messages
 * waiting it takes an open link (one the peer dialed counts too) or dials one,
 * hands the oldest message to the service, and goes on while the peer
 * acknowledges. A peer that cannot be reached, or answers "busy", is retried
 * with exponential backoff (1 s doubling to 5 min); a link from that peer
 * ends the backoff at once, so a daemon that comes back gets its messages
 * the moment it shows up.
 *
 * A node may not be able to dial the peer at all (a private submitter that
 * does not trust the worker it gave a task to). So a submitter also *polls*:
 * it dials each worker it has open tasks with when it has not heard from it
 * for `pollMs`, and at start-up; the worker then pushes what it holds on that
 * link. Links this node dialed close when idle.
 */
import { addressOf, formatAddress, nodeOf } from "../../../protocol/address.ts";
import type { Logger } from "../../../util/log.ts";
import type { TaskLink } from "./link.ts";
import type { OutboxItem } from "./store.ts";

export interface CourierHost {
  dial(peer: number): Promise<TaskLink>;
  next(peer: number): OutboxItem | null;
  /** Sends one item on the link and applies the reply: "done" to go on, "retry" to back off. Throws when the link fails. */
  deliver(link: TaskLink, item: OutboxItem): Promise<"done" | "retry">;
  /** Called when an attempt failed before a reply (dial or stream failure). */
  failed(peer: number, item: OutboxItem | null, error: Error): void;
  /** Peers with which this node should stay in touch (open submitted tasks). */
  pollPeers(): number[];
  outboxPeers(): number[];
}

export interface CourierTimers {
  readonly backoffMinMs: number;
  readonly backoffMaxMs: number;
  readonly pollMs: number;
  /** A link this node dialed closes after this long with nothing to do. */
  readonly dialedIdleMs: number;
  /** A link the peer dialed closes after this long with nothing to do. */
  readonly acceptedIdleMs: number;
  /** A link with a request or payload in flight and no traffic for this long is aborted. */
  readonly stallMs: number;
}

export const DEFAULT_COURIER_TIMERS: CourierTimers = {
  backoffMinMs: 1000,
  backoffMaxMs: 5 * 60_000,
  pollMs: 30_000,
  dialedIdleMs: 2000,
  acceptedIdleMs: 60_000,
  stallMs: 60_000,
};

interface PeerSlot {
  readonly links: Set<TaskLink>;
  running: boolean;
  failures: number;
  retryAt: number;
  lastContact: number;
  dialing: Promise<TaskLink> | null;
  /** Callers waiting on a dial, told at once when the peer opens a link itself. */
  waiters: ((link: TaskLink) => void)[];
}

export class Courier {
  private readonly slots = new Map<number, PeerSlot>();
  private stopped = false;
  private lastPoll = 0;

  constructor(
    private readonly host: CourierHost,
    private readonly timers: CourierTimers,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  private slot(peer: number): PeerSlot {
    let s = this.slots.get(peer);
    if (!s) {
      s = { links: new Set(), running: false, failures: 0, retryAt: 0, lastContact: 0, dialing: null, waiters: [] };
      this.slots.set(peer, s);
    }
    return s;
  }

  /** Links open with a peer (both directions). */
  linkCount(peer: number): number {
    return this.slots.get(peer)?.links.size ?? 0;
  }

  /** Links open in all, or with the peers `counted` picks. */
  totalLinks(counted: (peer: number) => boolean = () => true): number {
    let n = 0;
    for (const [peer, s] of this.slots) if (counted(peer)) n += s.links.size;
    return n;
  }

  /** A link opened (by either side): the peer is there, so deliver now. */
  addLink(link: TaskLink): void {
    const s = this.slot(nodeOf(link.peer));
    s.links.add(link);
    s.lastContact = this.now();
    s.failures = 0;
    s.retryAt = 0;
    for (const w of s.waiters.splice(0)) w(link);
    this.kick(nodeOf(link.peer));
  }

  removeLink(link: TaskLink): void {
    const peer = nodeOf(link.peer);
    const s = this.slots.get(peer);
    if (!s) return;
    s.links.delete(link);
    if (s.links.size === 0 && !s.running && !s.dialing && s.failures === 0 && this.host.next(peer) === null) this.slots.delete(peer);
  }

  /** Messages wait for `peer`: send them unless it is backing off. */
  kick(peer: number): void {
    if (this.stopped) return;
    const s = this.slot(peer);
    if (s.running) return;
    if (this.openLink(s) === null && this.now() < s.retryAt) return;
    void this.run(peer, s);
  }

  /** Whether the peer is in backoff (its last attempt failed) and when it is tried next. */
  state(peer: number): { failures: number; retryAt: number } {
    const s = this.slots.get(peer);
    return { failures: s?.failures ?? 0, retryAt: s?.retryAt ?? 0 };
  }

  /** Called about once a second: retries due, polls, closes idle links. */
  tick(): void {
    if (this.stopped) return;
    const now = this.now();
    for (const peer of this.host.outboxPeers()) {
      const s = this.slot(peer);
      if (!s.running && now >= s.retryAt) void this.run(peer, s);
    }
    if (now - this.lastPoll >= Math.min(this.timers.pollMs, 1000) || this.lastPoll === 0) {
      this.lastPoll = now;
      for (const peer of this.host.pollPeers()) {
        const s = this.slot(peer);
        if (s.running || s.dialing || s.links.size > 0 || now < s.retryAt || now - s.lastContact < this.timers.pollMs) continue;
        void this.poll(peer, s);
      }
    }
    for (const [peer, s] of this.slots) {
      for (const link of s.links) {
        if (link.isClosed) {
          s.links.delete(link);
          continue;
        }
        if (link.stalled(now, this.timers.stallMs)) {
          link.abort(`nothing moved for ${Math.round(this.timers.stallMs / 1000)} s with a request in flight`);
          continue;
        }
        const limit = link.origin === "dialed" || link.shortLived ? this.timers.dialedIdleMs : this.timers.acceptedIdleMs;
        if (link.idle && !s.running && now - link.lastActivity >= limit && (link.origin === "accepted" || this.host.next(peer) === null)) link.end();
      }
    }
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.slots.values()) for (const link of s.links) link.close();
    this.slots.clear();
  }

  private openLink(s: PeerSlot): TaskLink | null {
    for (const link of s.links) if (!link.isClosed) return link;
    return null;
  }

  private async link(peer: number, s: PeerSlot): Promise<TaskLink> {
    const open = this.openLink(s);
    if (open) return open;
    if (!s.dialing) {
      s.dialing = this.host.dial(peer).finally(() => {
        s.dialing = null;
        s.waiters.length = 0;
      });
    }
    // A dial to a peer that just came back may hang until its timeout; a link the peer opens meanwhile wins.
    const opened = new Promise<TaskLink>((resolve) => s.waiters.push(resolve));
    return Promise.race([s.dialing, opened]);
  }

  private async poll(peer: number, s: PeerSlot): Promise<void> {
    s.lastContact = this.now();
    try {
      await this.link(peer, s);
      // addLink (called by the host for every new link) kicks the outbox; the peer pushes its own.
    } catch (e) {
      this.backoff(peer, s, e as Error, null);
    }
  }

  private async run(peer: number, s: PeerSlot): Promise<void> {
    if (s.running || this.stopped) return;
    s.running = true;
    let item: OutboxItem | null = null;
    let staleRetried = false;
    try {
      while (!this.stopped && (item = this.host.next(peer)) !== null) {
        const reused = this.openLink(s) !== null;
        const link = await this.link(peer, s);
        let outcome: "done" | "retry";
        try {
          outcome = await this.host.deliver(link, item);
        } catch (e) {
          // A link that was already open may have died unnoticed (the peer restarted): one fresh try at once.
          if (!reused || staleRetried || !link.isClosed) throw e;
          staleRetried = true;
          s.links.delete(link);
          continue;
        }
        s.lastContact = this.now();
        if (outcome === "retry") {
          this.backoff(peer, s, new Error("the peer is busy"), null);
          return;
        }
        s.failures = 0;
        s.retryAt = 0;
      }
    } catch (e) {
      this.host.failed(peer, item, e as Error);
      this.backoff(peer, s, e as Error, item);
    } finally {
      s.running = false;
    }
  }

  private backoff(peer: number, s: PeerSlot, error: Error, item: OutboxItem | null): void {
    s.failures++;
    const base = Math.min(this.timers.backoffMaxMs, this.timers.backoffMinMs * 2 ** Math.min(s.failures - 1, 20));
    const jitter = base * 0.2 * Math.random();
    s.retryAt = this.now() + base + jitter;
    if (s.failures === 1 || s.failures % 10 === 0) {
      this.log.info("task peer unreachable; retrying", { peer: formatAddress(addressOf(0, peer)), attempts: s.failures, retry_in_ms: Math.round(base + jitter), error: error.message, ...(item ? { pending: item.kind } : {}) });
    }
  }
}
