/**
 * The pub/sub broker's state, sans-I/O: who is connected, who subscribed to
 * what, the publish rate buckets, and the fan-out of events to subscribers'
 * outlets. Time is an argument; the service (../pubsub.ts) owns the streams.
 *
 *   open(peer, outlet): BrokerClient | Refusal      per-peer and total connection bounds
 *   subscribe(client, id, pattern) / unsubscribe(client, id)
 *   publish(client, topic, topicBytes, data, now)   -> { count, seq } | Refusal
 *   flush(): Cut[]                                  writes this turn's events; says who fell behind
 *   close(client)
 *
 * Fan-out is built for many subscribers of the same events: an event is
 * encoded once (one frame with its length prefix); at the end of a turn the
 * events each subscriber gets are written to its outlet as one batch, and
 * subscribers that get every event of the turn share one batch buffer. There
 * is no JSON and no per-subscriber encoding on this path.
 *
 * Slow consumers are told and cut: a subscriber whose outlet would hold more
 * than `queueBytes` bytes or `queueEvents` events is not written to; `flush`
 * returns it and the service sends it a `slow_consumer` error and closes it.
 * When all subscribers together hold more than `queueTotal`, the ones furthest
 * behind are cut. Nobody waits for a slow subscriber, and it cannot make the
 * broker hold more than its bound.
 */
import { TokenBucket } from "../../../util/token-bucket.ts";
import { concatBytes } from "../../../crypto/bytes.ts";
import { formatAddress, type Address } from "../../../protocol/address.ts";
import { encodeEventFrame, PubsubErrorCode } from "../../../protocol/pubsub.ts";
import { formatPattern, parsePattern, parseTopic, TopicTree } from "../../../protocol/topic.ts";
import type { PubsubLimits } from "./limits.ts";

/** Where the broker writes a client's frames (its connection's write queue). */
export interface BrokerOutlet {
  /** Queues whole frames (`events` of them count as events) for the stream. */
  write(frames: Uint8Array, events: number): void;
  /** Bytes queued that the stream has not taken yet. */
  readonly backlog: number;
  /** Events queued that the stream has not taken entirely. */
  readonly backlogEvents: number;
}

export interface Refusal {
  readonly refused: true;
  readonly code: string;
  readonly message: string;
}

export interface Cut {
  readonly client: BrokerClient;
  readonly message: string;
  /** The patterns it was subscribed to. */
  readonly topics: string[];
}

interface Subscription {
  readonly client: BrokerClient;
  readonly id: number;
  readonly pattern: readonly string[];
  readonly text: string;
}

/** One client connection (a subscriber, a publisher, or both). */
export class BrokerClient {
  readonly subscriptions = new Map<number, Subscription>();
  /** Indices into the broker's events of this turn that go to this client. */
  pending: number[] = [];
  /** No longer served (closed or cut). */
  gone = false;
  readonly openedAt: number;
  published = 0;
  delivered = 0;

  constructor(
    readonly peer: Address,
    readonly outlet: BrokerOutlet,
    now: number,
  ) {
    this.openedAt = now;
  }
}

interface PeerState {
  connections: number;
  subscriptions: number;
  readonly events: TokenBucket;
  readonly bytes: TokenBucket;
}

export interface BrokerStats {
  published: number;
  /** Event deliveries written to subscribers' queues (one per subscriber per event). */
  delivered: number;
  bytes_in: number;
  bytes_out: number;
  cut: number;
  refused: Record<string, number>;
}

const MATCH_CACHE_MAX = 1024;

function refuse(code: string, message: string): Refusal {
  return { refused: true, code, message };
}

export class Broker {
  private readonly clients = new Set<BrokerClient>();
  private readonly peers = new Map<Address, PeerState>();
  private readonly tree = new TopicTree<Subscription>();
  /** Pattern text -> number of subscriptions, for status. */
  private readonly patterns = new Map<string, number>();
  private subscriptionCount = 0;
  /** Topic -> the clients it reaches; cleared whenever a subscription changes. */
  private readonly matchCache = new Map<string, BrokerClient[]>();
  private readonly total: TokenBucket;
  private seq = 0;
  /** This turn's event frames, and who gets them. */
  private turn: Uint8Array[] = [];
  private turnBytes = 0;
  private readonly dirty: BrokerClient[] = [];
  readonly stats: BrokerStats = { published: 0, delivered: 0, bytes_in: 0, bytes_out: 0, cut: 0, refused: {} };

  constructor(
    readonly limits: PubsubLimits,
    now: number,
  ) {
    this.total = new TokenBucket(limits.publishRateTotal, limits.publishRateTotal, now);
  }

  get connectionCount(): number {
    return this.clients.size;
  }

  /** Events published since the last `flush`. */
  get pendingEvents(): number {
    return this.turn.length;
  }

  open(peer: Address, outlet: BrokerOutlet, now: number): BrokerClient | Refusal {
    this.sweepPeers(now);
    const state = this.peerState(peer, now);
    if (state.connections >= this.limits.connectionsPerPeer) return this.count(refuse(PubsubErrorCode.LimitExceeded, `this node already has ${state.connections} connections to the broker (at most ${this.limits.connectionsPerPeer} per node)`));
    if (this.clients.size >= this.limits.connectionsTotal) return this.count(refuse(PubsubErrorCode.LimitExceeded, `the broker serves ${this.clients.size} connections, its limit`));
    state.connections++;
    const client = new BrokerClient(peer, outlet, now);
    this.clients.add(client);
    return client;
  }

  close(client: BrokerClient): void {
    if (client.gone) return;
    client.gone = true;
    this.clients.delete(client);
    for (const sub of client.subscriptions.values()) this.removeSubscription(sub);
    client.subscriptions.clear();
    client.pending = [];
    const state = this.peers.get(client.peer);
    if (state) state.connections--;
  }

  subscribe(client: BrokerClient, id: number, patternText: string): Refusal | null {
    if (client.gone) return refuse(PubsubErrorCode.ShuttingDown, "the connection is closing");
    const parsed = parsePattern(patternText);
    if (!parsed.ok) return this.count(refuse(PubsubErrorCode.InvalidTopic, parsed.error.message));
    if (client.subscriptions.has(id)) return this.count(refuse(PubsubErrorCode.Malformed, `subscription id ${id} is already in use on this connection`));
    const state = this.peers.get(client.peer)!;
    if (client.subscriptions.size >= this.limits.subscriptionsPerConnection) return this.count(refuse(PubsubErrorCode.LimitExceeded, `at most ${this.limits.subscriptionsPerConnection} subscriptions per connection`));
    if (state.subscriptions >= this.limits.subscriptionsPerPeer) return this.count(refuse(PubsubErrorCode.LimitExceeded, `this node already holds ${state.subscriptions} subscriptions on the broker (at most ${this.limits.subscriptionsPerPeer} per node)`));
    if (this.subscriptionCount >= this.limits.subscriptionsTotal) return this.count(refuse(PubsubErrorCode.LimitExceeded, `the broker holds ${this.subscriptionCount} subscriptions, its limit`));
    const text = formatPattern(parsed.value);
    const sub: Subscription = { client, id, pattern: parsed.value, text };
    client.subscriptions.set(id, sub);
    this.tree.add(parsed.value, sub);
    this.patterns.set(text, (this.patterns.get(text) ?? 0) + 1);
    state.subscriptions++;
    this.subscriptionCount++;
    this.matchCache.clear();
    return null;
  }

  unsubscribe(client: BrokerClient, id: number): Refusal | null {
    const sub = client.subscriptions.get(id);
    if (!sub) return this.count(refuse(PubsubErrorCode.NotFound, `no subscription ${id} on this connection`));
    client.subscriptions.delete(id);
    this.removeSubscription(sub);
    return null;
  }

  /**
   * Fans an event out to every client with a matching subscription (each
   * once). `topicBytes` are the topic's bytes as received. The sender is
   * `client.peer`, the stream's authenticated address.
   */
  publish(client: BrokerClient, topic: string, topicBytes: Uint8Array, data: Uint8Array, now: number): { count: number; seq: number } | Refusal {
    if (client.gone) return refuse(PubsubErrorCode.ShuttingDown, "the connection is closing");
    if (data.length > this.limits.maxEvent) return this.count(refuse(PubsubErrorCode.TooLarge, `an event of ${data.length} bytes is larger than this broker's limit of ${this.limits.maxEvent}`));
    let targets = this.matchCache.get(topic);
    if (!targets) {
      const parsed = parseTopic(topic);
      if (!parsed.ok) return this.count(refuse(PubsubErrorCode.InvalidTopic, parsed.error.message));
      const clients = new Set<BrokerClient>();
      for (const sub of this.tree.match(parsed.value)) clients.add(sub.client);
      targets = [...clients];
      if (this.matchCache.size >= MATCH_CACHE_MAX) this.matchCache.clear();
      this.matchCache.set(topic, targets);
    }
    const state = this.peers.get(client.peer)!;
    if (!state.events.has(1, now) || !state.bytes.has(data.length, now)) return this.count(refuse(PubsubErrorCode.RateLimited, `this node publishes faster than the broker allows (${this.limits.publishRate} events/s, ${this.limits.publishBytesRate} bytes/s per node)`));
    if (!this.total.has(1, now)) return this.count(refuse(PubsubErrorCode.RateLimited, `the broker is at its total publish rate (${this.limits.publishRateTotal} events/s)`));
    state.events.spend(1);
    state.bytes.spend(data.length);
    this.total.spend(1);
    const seq = ++this.seq;
    client.published++;
    this.stats.published++;
    this.stats.bytes_in += data.length;
    if (targets.length === 0) return { count: 0, seq };
    const frame = encodeEventFrame(seq, now, client.peer, topicBytes, data);
    const index = this.turn.length;
    this.turn.push(frame);
    this.turnBytes += frame.length;
    for (const t of targets) {
      if (t.pending.length === 0) this.dirty.push(t);
      t.pending.push(index);
    }
    return { count: targets.length, seq };
  }

  /**
   * Writes this turn's events to their subscribers, one batch each. Returns the
   * subscribers that could not take their batch (or, when all queues together
   * are over `queueTotal`, the furthest behind): the service tells and cuts them.
   */
  flush(): Cut[] {
    const cuts: Cut[] = [];
    if (this.turn.length > 0) {
      const turn = this.turn;
      let shared: Uint8Array | null = null;
      for (const client of this.dirty) {
        const indices = client.pending;
        client.pending = [];
        if (client.gone || indices.length === 0) continue;
        let batch: Uint8Array;
        if (indices.length === turn.length) batch = shared ??= concatBytes(...turn);
        else if (indices.length === 1) batch = turn[indices[0]!]!;
        else batch = concatBytes(...indices.map((i) => turn[i]!));
        const { outlet } = client;
        if (outlet.backlog + batch.length > this.limits.queueBytes || outlet.backlogEvents + indices.length > this.limits.queueEvents) {
          cuts.push(this.cut(client, `this subscriber fell behind: ${outlet.backlog + batch.length} bytes (${outlet.backlogEvents + indices.length} events) would be waiting for it, more than the broker's limit of ${this.limits.queueBytes} bytes (${this.limits.queueEvents} events)`));
          continue;
        }
        outlet.write(batch, indices.length);
        client.delivered += indices.length;
        this.stats.delivered += indices.length;
        this.stats.bytes_out += batch.length;
      }
      this.dirty.length = 0;
      this.turn = [];
      this.turnBytes = 0;
    }
    let held = this.queuedTotal();
    if (held > this.limits.queueTotal) {
      const behind = [...this.clients].filter((c) => c.outlet.backlog > 0).sort((a, b) => b.outlet.backlog - a.outlet.backlog);
      for (const client of behind) {
        if (held <= this.limits.queueTotal) break;
        held -= client.outlet.backlog;
        cuts.push(this.cut(client, `the broker's subscribers together have more than ${this.limits.queueTotal} bytes waiting, and this one is furthest behind (${client.outlet.backlog} bytes)`));
      }
    }
    return cuts;
  }

  /** Bytes waiting in every client's queue. */
  queuedTotal(): number {
    let sum = 0;
    for (const c of this.clients) sum += c.outlet.backlog;
    return sum;
  }

  status(): Record<string, unknown> {
    const peers = new Map<Address, { connections: number; subscriptions: number }>();
    let subscribers = 0;
    for (const c of this.clients) {
      const p = peers.get(c.peer) ?? { connections: 0, subscriptions: 0 };
      p.connections++;
      p.subscriptions += c.subscriptions.size;
      peers.set(c.peer, p);
      if (c.subscriptions.size > 0) subscribers++;
    }
    return {
      connections: this.clients.size,
      subscribers,
      subscriptions: this.subscriptionCount,
      queued_bytes: this.queuedTotal(),
      last_seq: this.seq,
      topics: [...this.patterns].map(([pattern, subscriptions]) => ({ pattern, subscriptions })).sort((a, b) => b.subscriptions - a.subscriptions || a.pattern.localeCompare(b.pattern)),
      peers: [...peers].map(([peer, p]) => ({ address: formatAddress(peer), ...p })),
      ...this.stats,
      refused: { ...this.stats.refused },
    };
  }

  private cut(client: BrokerClient, message: string): Cut {
    this.stats.cut++;
    const topics = [...client.subscriptions.values()].map((s) => s.text);
    this.close(client);
    return { client, message, topics };
  }

  private removeSubscription(sub: Subscription): void {
    this.tree.remove(sub.pattern, sub);
    const n = (this.patterns.get(sub.text) ?? 1) - 1;
    if (n <= 0) this.patterns.delete(sub.text);
    else this.patterns.set(sub.text, n);
    const state = this.peers.get(sub.client.peer);
    if (state) state.subscriptions--;
    this.subscriptionCount--;
    this.matchCache.clear();
  }

  private peerState(peer: Address, now: number): PeerState {
    let state = this.peers.get(peer);
    if (!state) {
      const { publishRate, publishBytesRate } = this.limits;
      state = { connections: 0, subscriptions: 0, events: new TokenBucket(publishRate, publishRate, now), bytes: new TokenBucket(publishBytesRate, publishBytesRate, now) };
      this.peers.set(peer, state);
    }
    return state;
  }

  /** Forgets peers with no connection whose buckets are full again (reconnecting gains nothing). */
  private sweepPeers(now: number): void {
    if (this.peers.size < 64) return;
    for (const [peer, s] of this.peers) if (s.connections === 0 && s.events.isFull(now) && s.bytes.isFull(now)) this.peers.delete(peer);
  }

  private count(r: Refusal): Refusal {
    this.stats.refused[r.code] = (this.stats.refused[r.code] ?? 0) + 1;
    return r;
  }
}

