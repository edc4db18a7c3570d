/**
 * The daemon's local event feed: what happened on this node that an agent may
 * want to react to (a trust request, a message, a file, an event from a broker,
 * a peer going offline). Services publish here; the IPC server streams events to
 * apps (`pilot events --follow`, the SDK), webhooks POST them. In memory only.
 *
 *   publish(type, data): LocalEvent     stamps seq and time, keeps the last `keep`, tells subscribers
 *   subscribe(fn): () => void           fn gets every later event, synchronously; never throws into the bus
 *   recent({ since?, limit? })          events kept, oldest first (seq > since)
 *
 * Subscribers must not block: one that needs to queue bounds its own queue.
 */
import { randomBytes } from "node:crypto";
import type { EventFeed, LocalEvent } from "../shared/events.ts";

/** The event shape lives in src/shared/events.ts (the SDK and the IPC layer read it too). */
export type { LocalEvent };

export class EventBus implements EventFeed {
  /** Random per daemon run: a `seq` means nothing across runs. */
  readonly boot = randomBytes(8).toString("hex");
  private seq = 0;
  private readonly kept: LocalEvent[] = [];
  private readonly subscribers = new Set<(event: LocalEvent) => void>();

  constructor(
    private readonly keep = 1000,
    private readonly clock: () => number = Date.now,
  ) {}

  publish(type: string, data: Record<string, unknown>): LocalEvent {
    const event: LocalEvent = Object.freeze({ seq: ++this.seq, time: this.clock(), type, data: Object.freeze({ ...data }) });
    this.kept.push(event);
    if (this.kept.length > this.keep) this.kept.splice(0, this.kept.length - this.keep);
    for (const fn of this.subscribers) {
      try {
        fn(event);
      } catch {
        // A subscriber's bug must not stop the others.
      }
    }
    return event;
  }

  subscribe(fn: (event: LocalEvent) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  recent(options: { since?: number; limit?: number } = {}): LocalEvent[] {
    const since = options.since ?? 0;
    const out = this.kept.filter((e) => e.seq > since);
    return options.limit !== undefined && out.length > options.limit ? out.slice(out.length - options.limit) : out;
  }

  get lastSeq(): number {
    return this.seq;
  }
}
