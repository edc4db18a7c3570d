/**
 * A deterministic, seeded, virtual-time network between two endpoints, for
 * testing and benchmarking sans-I/O engines.
 *
 * Generic part (any message type M):
 *   new SimulatedLink({ seed, ab, ba?, codec })   ab / ba: LinkProfile per direction
 *   link.attach(a, b)                              endpoints implement SimEndpoint<M>
 *   link.run({ until?, deadline })                 true when `until()` held; false at the deadline or a stall
 *   link.now / link.stats.ab / link.stats.ba / link.drop = (msg, toB, now) => boolean
 * LinkProfile: delay and jitter (ms), loss, duplicate, reorder (+ reorderDelay),
 * corrupt (probabilities), bandwidth (bytes/s, a FIFO serialization queue) and
 * queueLimit (bytes; drop-tail beyond it). With a codec that encodes, every
 * message crosses the link as bytes; corruption flips one bit and the codec's
 * decode must reject it (for Pilot packets: the CRC-32 in decodePacket).
 *
 * Stream part (Pilot stream engines through the real packet codec):
 *   new StreamPair(options)       a dialer (a) and a listener (b) that accepts the first SYN
 *   pair.a.conn / pair.b.conn     the StreamConnections; peer.apps run after every step
 *   peer.record / sent / received every segment, when recording; peer.events: engine events
 *   peer.deaf / peer.mute         a dead peer; a closed connection answers with RST, like the daemon
 *   drain / events / openedPair   driving two engines by hand, without a link
 *   Source / Sink                 application behaviours: write a buffer / read and hash
 *   runTransfer(options)          bulk transfer both ways; the benchmark entry point:
 *     runTransfer({ bytes: 64 << 20, loss: 0.02, seed: 1 })
 *       -> { ok, virtualMs, realMs, bytes, mbPerSecond, ... }
 *     Real time covers the transfer only (test data is made before the clock starts).
 *     The first call in a process includes JIT warm-up: run one small transfer first.
 */
import { addressOf } from "../../src/protocol/address.ts";
import { decodePacket, encodePacket, encodedSize } from "../../src/protocol/packet.ts";
import type { StreamConfig } from "../../src/transport/config.ts";
import type { BufferAllocator } from "../../src/transport/buffer-allocator.ts";
import { StreamConnection, type StreamEvent, type StreamStats } from "../../src/transport/connection.ts";
import { resetFor, toPacket, type Segment, type StreamRoute } from "../../src/transport/segment.ts";
import { Prng } from "./prng.ts";

// ------------------------------------------------------------------ generic link

export interface LinkProfile {
  /** One-way propagation delay, ms. Default 1. */
  delay?: number;
  /** Extra uniform delay in [0, jitter) ms per packet (reorders when > packet spacing). */
  jitter?: number;
  loss?: number;
  duplicate?: number;
  /** Probability that a packet is held back by up to `reorderDelay` extra ms. */
  reorder?: number;
  /** Default: 4 x delay. */
  reorderDelay?: number;
  corrupt?: number;
  /** Bottleneck rate in bytes per second (Infinity: none). */
  bandwidth?: number;
  /** Bytes that may wait for the bottleneck before drop-tail. */
  queueLimit?: number;
}

export interface SimEndpoint<M> {
  receive(msg: M, now: number): void;
  poll(now: number): M | undefined;
  nextTimeout(): number;
  timeout(now: number): void;
  /** Runs after every step: the application's turn (read, write, close). */
  step?(now: number): void;
}

export interface WireCodec<M> {
  size(msg: M): number;
  /** With encode/decode, messages cross the link as bytes (and can be corrupted). */
  encode?(msg: M): Uint8Array;
  decode?(bytes: Uint8Array): M | undefined;
}

export interface DirectionStats {
  sent: number;
  lost: number;
  duplicated: number;
  corrupted: number;
  /** Corrupted messages the codec rejected. */
  rejected: number;
  queueDrops: number;
  delivered: number;
  bytes: number;
}

interface InFlight<M> {
  time: number;
  order: number;
  toB: boolean;
  msg: M | undefined;
  bytes: Uint8Array | undefined;
}

function newDirectionStats(): DirectionStats {
  return { sent: 0, lost: 0, duplicated: 0, corrupted: 0, rejected: 0, queueDrops: 0, delivered: 0, bytes: 0 };
}

export class SimulatedLink<M> {
  now: number;
  readonly stats = { ab: newDirectionStats(), ba: newDirectionStats() };
  private readonly rng: Prng;
  private readonly ab: Required<LinkProfile>;
  private readonly ba: Required<LinkProfile>;
  private readonly codec: WireCodec<M>;
  private heap: InFlight<M>[] = [];
  private order = 0;
  private busyAb = 0;
  private busyBa = 0;
  private a: SimEndpoint<M> | undefined;
  private b: SimEndpoint<M> | undefined;
  /** Test hook: return true to drop this message (counted as lost). */
  drop: ((msg: M, toB: boolean, now: number) => boolean) | undefined;

  constructor(options: { seed: number; ab?: LinkProfile; ba?: LinkProfile; codec: WireCodec<M>; start?: number }) {
    this.rng = new Prng(options.seed);
    this.ab = withDefaults(options.ab ?? {});
    this.ba = withDefaults(options.ba ?? options.ab ?? {});
    this.codec = options.codec;
    this.now = options.start ?? 0;
    if ((this.ab.corrupt > 0 || this.ba.corrupt > 0) && !(this.codec.encode && this.codec.decode)) {
      throw new Error("corruption needs a codec that encodes to bytes");
    }
  }

  attach(a: SimEndpoint<M>, b: SimEndpoint<M>): void {
    this.a = a;
    this.b = b;
  }

  /** Sends `msg` from a (toB) or from b. Endpoints' output is collected by run(); tests may inject too. */
  transmit(msg: M, toB: boolean): void {
    const p = toB ? this.ab : this.ba;
    const stats = toB ? this.stats.ab : this.stats.ba;
    const rng = this.rng;
    stats.sent++;
    if (this.drop?.(msg, toB, this.now) || rng.chance(p.loss)) {
      stats.lost++;
      return;
    }
    const copies = rng.chance(p.duplicate) ? 2 : 1;
    if (copies === 2) stats.duplicated++;
    const size = this.codec.size(msg);
    for (let i = 0; i < copies; i++) {
      let depart = this.now;
      if (p.bandwidth !== Number.POSITIVE_INFINITY) {
        const busy = toB ? this.busyAb : this.busyBa;
        const startAt = busy > this.now ? busy : this.now;
        if (((startAt - this.now) * p.bandwidth) / 1000 > p.queueLimit) {
          stats.queueDrops++;
          continue;
        }
        depart = startAt + (size * 1000) / p.bandwidth;
        if (toB) this.busyAb = depart;
        else this.busyBa = depart;
      }
      let time = depart + p.delay;
      if (p.jitter > 0) time += rng.next() * p.jitter;
      if (rng.chance(p.reorder)) time += rng.next() * p.reorderDelay;
      let bytes: Uint8Array | undefined;
      if (this.codec.encode) {
        bytes = this.codec.encode(msg);
        if (rng.chance(p.corrupt)) {
          bytes = bytes.slice();
          const bit = rng.int(0, bytes.length * 8 - 1);
          bytes[bit >> 3]! ^= 1 << (bit & 7);
          stats.corrupted++;
        }
      }
      stats.bytes += size;
      this.push({ time, order: this.order++, toB, msg: bytes ? undefined : msg, bytes });
    }
  }

  run(options: { until?: () => boolean; deadline: number }): boolean {
    const a = this.a!;
    const b = this.b!;
    const until = options.until;
    let spins = 0;
    for (;;) {
      this.flush(a, true);
      this.flush(b, false);
      if (until && until()) return true;
      const head = this.heap[0];
      let t = head ? head.time : Number.POSITIVE_INFINITY;
      const ta = a.nextTimeout();
      const tb = b.nextTimeout();
      if (ta < t) t = ta;
      if (tb < t) t = tb;
      if (t === Number.POSITIVE_INFINITY) return false; // nothing will ever happen again
      if (t > options.deadline) {
        this.now = options.deadline;
        return false;
      }
      if (t > this.now) {
        this.now = t;
        spins = 0;
      } else if (++spins > 100_000) {
        throw new Error(`simulation is not making progress at t=${this.now}`);
      }
      const now = this.now;
      while (this.heap.length > 0 && this.heap[0]!.time <= now) {
        const ev = this.pop();
        const to = ev.toB ? b : a;
        const stats = ev.toB ? this.stats.ab : this.stats.ba;
        let msg = ev.msg;
        if (ev.bytes) {
          msg = this.codec.decode!(ev.bytes);
          if (msg === undefined) {
            stats.rejected++;
            continue;
          }
        }
        stats.delivered++;
        to.receive(msg!, now);
      }
      if (a.nextTimeout() <= now) a.timeout(now);
      if (b.nextTimeout() <= now) b.timeout(now);
    }
  }

  private flush(e: SimEndpoint<M>, toB: boolean): void {
    e.step?.(this.now);
    for (let msg = e.poll(this.now); msg !== undefined; msg = e.poll(this.now)) this.transmit(msg, toB);
  }

  private push(x: InFlight<M>): void {
    const h = this.heap;
    h.push(x);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      const t = h[i]!;
      h[i] = h[parent]!;
      h[parent] = t;
      i = parent;
    }
  }

  private pop(): InFlight<M> {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        const t = h[i]!;
        h[i] = h[m]!;
        h[m] = t;
        i = m;
      }
    }
    return top;
  }
}

function before(x: InFlight<unknown>, y: InFlight<unknown>): boolean {
  return x.time < y.time || (x.time === y.time && x.order < y.order);
}

function withDefaults(p: LinkProfile): Required<LinkProfile> {
  const delay = p.delay ?? 1;
  return {
    delay,
    jitter: p.jitter ?? 0,
    loss: p.loss ?? 0,
    duplicate: p.duplicate ?? 0,
    reorder: p.reorder ?? 0,
    reorderDelay: p.reorderDelay ?? 4 * delay,
    corrupt: p.corrupt ?? 0,
    bandwidth: p.bandwidth ?? Number.POSITIVE_INFINITY,
    queueLimit: p.queueLimit ?? Number.POSITIVE_INFINITY,
  };
}

// ------------------------------------------------------------------ streams

const ROUTE_A: StreamRoute = { src: addressOf(1, 0x10), dst: addressOf(1, 0x20), srcPort: 49152, dstPort: 1001 };

/** Pilot packets through the real codec (encodePacket / decodePacket, CRC-32 checked). */
export const packetCodec: WireCodec<Segment> = {
  size: (seg) => encodedSize(toPacket(seg, ROUTE_A)),
  encode: (seg) => encodePacket(toPacket(seg, ROUTE_A)),
  decode: (bytes) => {
    const r = decodePacket(bytes);
    return r.ok ? r.value : undefined;
  },
};

/** Segments passed by reference (engine-only measurements; no corruption possible). */
export const directCodec: WireCodec<Segment> = {
  size: (seg) => 34 + seg.payload.length + (seg.sack.length > 0 ? 3 + 8 * seg.sack.length : 0),
};

export interface StreamApp {
  step(conn: StreamConnection, now: number): void;
}

/** One side of a StreamPair. */
export class StreamPeer implements SimEndpoint<Segment> {
  conn: StreamConnection | undefined;
  readonly events: StreamEvent[] = [];
  readonly apps: StreamApp[] = [];
  /** Every segment this side received (when `record` is on). */
  readonly received: Segment[] = [];
  readonly sent: Segment[] = [];
  record = false;
  /** Drop every incoming segment (a dead peer). */
  deaf = false;
  /** Never transmit (a dead peer). */
  mute = false;

  constructor(
    private readonly listen: { config: Partial<StreamConfig>; iss: number; alloc?: BufferAllocator } | undefined,
    conn?: StreamConnection,
  ) {
    this.conn = conn;
  }

  receive(seg: Segment, now: number): void {
    if (this.deaf) return;
    if (this.record) this.received.push(seg);
    if (!this.conn) {
      if (this.listen && seg.flags === 0x1) this.conn = StreamConnection.accept(this.listen.config, seg, this.listen.iss, now, this.listen.alloc);
      return;
    }
    if (this.conn.state === "closed") {
      // Like the daemon: a closed connection is forgotten, and a segment for it draws a RST.
      const rst = resetFor(seg);
      if (rst) this.resets.push(rst);
      return;
    }
    this.conn.handleSegment(seg, now);
  }

  private readonly resets: Segment[] = [];

  poll(now: number): Segment | undefined {
    if (!this.conn || this.mute) return undefined;
    const seg = this.conn.pollTransmit(now) ?? this.resets.shift();
    if (seg && this.record) this.sent.push(seg);
    return seg;
  }

  nextTimeout(): number {
    return this.conn ? this.conn.nextTimeout() : Number.POSITIVE_INFINITY;
  }

  timeout(now: number): void {
    this.conn?.handleTimeout(now);
  }

  step(now: number): void {
    const c = this.conn;
    if (!c) return;
    for (let ev = c.pollEvent(); ev; ev = c.pollEvent()) this.events.push(ev);
    for (const app of this.apps) app.step(c, now);
    for (let ev = c.pollEvent(); ev; ev = c.pollEvent()) this.events.push(ev);
  }

  has(type: StreamEvent["type"]): boolean {
    return this.events.some((e) => e.type === type);
  }

  get closedEvent(): Extract<StreamEvent, { type: "closed" }> | undefined {
    return this.events.find((e): e is Extract<StreamEvent, { type: "closed" }> => e.type === "closed");
  }
}

export interface StreamPairOptions {
  seed?: number;
  /** Both directions, unless `back` is given for b -> a. */
  link?: LinkProfile;
  back?: LinkProfile;
  config?: Partial<StreamConfig>;
  configA?: Partial<StreamConfig>;
  configB?: Partial<StreamConfig>;
  issA?: number;
  issB?: number;
  /** Where each side's buffer space comes from (default: unlimited). */
  allocA?: BufferAllocator;
  allocB?: BufferAllocator;
  /** Through encodePacket/decodePacket (default) or by reference. */
  codec?: "packet" | "direct";
  start?: number;
}

export class StreamPair {
  readonly link: SimulatedLink<Segment>;
  readonly a: StreamPeer;
  readonly b: StreamPeer;

  constructor(o: StreamPairOptions = {}) {
    const seed = o.seed ?? 1;
    const rng = new Prng(seed ^ 0x5eed);
    const start = o.start ?? 0;
    this.link = new SimulatedLink<Segment>({
      seed,
      ab: o.link,
      ba: o.back ?? o.link,
      codec: o.codec === "direct" ? directCodec : packetCodec,
      start,
    });
    const configA = { ...o.config, ...o.configA };
    const configB = { ...o.config, ...o.configB };
    this.a = new StreamPeer(undefined, StreamConnection.connect(configA, o.issA ?? rng.u32(), start, o.allocA));
    this.b = new StreamPeer({ config: configB, iss: o.issB ?? rng.u32(), alloc: o.allocB });
    this.link.attach(this.a, this.b);
  }

  get now(): number {
    return this.link.now;
  }

  /** Runs until `until()` holds or `ms` of virtual time pass. */
  run(until: (() => boolean) | undefined, ms: number): boolean {
    return this.link.run({ until, deadline: this.link.now + ms });
  }

  get ca(): StreamConnection {
    return this.a.conn!;
  }

  get cb(): StreamConnection {
    if (!this.b.conn) throw new Error("b has not accepted a connection yet");
    return this.b.conn;
  }
}

/** Writes `data` as fast as the stream accepts it, in `chunk`-sized writes; optionally shuts down after. */
export class Source implements StreamApp {
  written = 0;

  constructor(
    readonly data: Uint8Array,
    private readonly options: { chunk?: number; shutdown?: boolean; rng?: Prng } = {},
  ) {}

  get done(): boolean {
    return this.written === this.data.length;
  }

  step(conn: StreamConnection): void {
    const st = conn.state;
    if (st !== "established" && st !== "close-wait") return;
    const maxChunk = this.options.chunk ?? 256 * 1024;
    while (this.written < this.data.length) {
      const size = this.options.rng ? this.options.rng.int(1, maxChunk) : maxChunk;
      const end = Math.min(this.data.length, this.written + size);
      const want = end - this.written;
      const n = conn.write(this.data.subarray(this.written, end));
      this.written += n;
      if (n < want) break;
    }
    if (this.done && this.options.shutdown !== false) conn.shutdown();
  }
}

/** Reads everything (unless paused), hashing it; notes EOF. */
export class Sink implements StreamApp {
  paused = false;
  bytes = 0;
  eof = false;
  /** Keep the bytes too (for small tests). */
  readonly chunks: Uint8Array[] | undefined;
  private readonly hasher: Bun.CryptoHasher | undefined;
  private readonly scratch = new Uint8Array(256 * 1024);

  constructor(options: { keep?: boolean; hash?: boolean } = {}) {
    this.chunks = options.keep ? [] : undefined;
    this.hasher = options.hash === false ? undefined : new Bun.CryptoHasher("sha256");
  }

  step(conn: StreamConnection): void {
    if (this.paused) return;
    if (this.chunks) {
      for (let data = conn.read(); data.length > 0; data = conn.read()) {
        this.bytes += data.length;
        this.hasher?.update(data);
        this.chunks.push(data);
      }
    } else {
      for (let n = conn.readInto(this.scratch); n > 0; n = conn.readInto(this.scratch)) {
        this.bytes += n;
        this.hasher?.update(this.scratch.subarray(0, n));
      }
    }
    if (conn.peerFinished && conn.readableBytes === 0) this.eof = true;
  }

  digest(): string {
    if (!this.hasher) throw new Error("this Sink does not hash");
    return this.hasher.copy().digest("hex");
  }

  text(): string {
    return Buffer.concat(this.chunks ?? []).toString();
  }
}

export function sha256(data: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

/** Deterministic pseudo-random test data. */
export function testData(bytes: number, seed: number): Uint8Array {
  return new Prng(seed).fill(new Uint8Array(bytes));
}

export interface TransferOptions {
  /** Bytes a -> b. */
  bytes: number;
  /** Bytes b -> a (default 0). */
  bytesBack?: number;
  seed?: number;
  loss?: number;
  duplicate?: number;
  reorder?: number;
  jitter?: number;
  corrupt?: number;
  /** One-way delay in ms (default 1). */
  delay?: number;
  /**
   * Bytes per second. Default 1.25e9 (10 Gbit/s): packets leave about a microsecond
   * apart, so the receiver sees them one by one and ACKs every second segment, as
   * on a real path. (Infinity delivers whole bursts at one instant: one stretch ACK each.)
   */
  bandwidth?: number;
  queueLimit?: number;
  config?: Partial<StreamConfig>;
  issA?: number;
  issB?: number;
  /** "direct" (default) measures the engine alone; "packet" adds encode + CRC + decode per packet. */
  codec?: "packet" | "direct";
  /** Compare SHA-256 of what was sent and received (default true). */
  verify?: boolean;
  /** Virtual-time limit in ms (default 10 minutes). */
  deadline?: number;
}

export interface TransferResult {
  /** Every byte arrived, in order, and both directions saw EOF. */
  ok: boolean;
  /** Hashes matched (true when verify is off). */
  intact: boolean;
  virtualMs: number;
  realMs: number;
  /** Application bytes delivered, both directions. */
  bytes: number;
  /** bytes / realMs, in MB/s (10^6 bytes). */
  mbPerSecond: number;
  a: StreamStats;
  b: StreamStats;
  link: { ab: DirectionStats; ba: DirectionStats };
}

/**
 * A bulk transfer through a StreamPair: each side writes its data, shuts down, and
 * reads until EOF. Test data is generated before the clock starts.
 */
export function runTransfer(o: TransferOptions): TransferResult {
  const seed = o.seed ?? 1;
  const forward = testData(o.bytes, seed * 2 + 1);
  const backward = testData(o.bytesBack ?? 0, seed * 2 + 2);
  const profile: LinkProfile = {
    delay: o.delay,
    loss: o.loss,
    duplicate: o.duplicate,
    reorder: o.reorder,
    jitter: o.jitter,
    corrupt: o.corrupt,
    bandwidth: o.bandwidth ?? 1.25e9,
    queueLimit: o.queueLimit,
  };
  const pair = new StreamPair({
    seed,
    link: profile,
    config: o.config,
    issA: o.issA,
    issB: o.issB,
    codec: o.codec ?? (o.corrupt ? "packet" : "direct"),
  });
  const rng = new Prng(seed + 99);
  const sourceA = new Source(forward, { chunk: 64 * 1024, rng: rng.fork() });
  const sourceB = new Source(backward, { chunk: 64 * 1024, rng: rng.fork() });
  const verify = o.verify !== false;
  const sinkA = new Sink({ hash: verify });
  const sinkB = new Sink({ hash: verify });
  pair.a.apps.push(sourceA, sinkA);
  pair.b.apps.push(sourceB, sinkB);
  const started = performance.now();
  const done = pair.run(() => sinkA.eof && sinkB.eof, o.deadline ?? 600_000);
  const realMs = performance.now() - started;
  const intact = !verify || (sinkB.digest() === sha256(forward) && sinkA.digest() === sha256(backward));
  const bytes = sinkA.bytes + sinkB.bytes;
  return {
    ok: done && sinkB.bytes === forward.length && sinkA.bytes === backward.length && intact,
    intact,
    virtualMs: pair.now,
    realMs,
    bytes,
    mbPerSecond: bytes / 1000 / realMs,
    a: pair.ca.stats(),
    b: pair.b.conn ? pair.cb.stats() : pair.ca.stats(),
    link: pair.link.stats,
  };
}

// ------------------------------------------------------------------ by hand

/** Everything `conn` wants to send at `now`. */
export function drain(conn: StreamConnection, now: number): Segment[] {
  const out: Segment[] = [];
  for (let seg = conn.pollTransmit(now); seg; seg = conn.pollTransmit(now)) out.push(seg);
  return out;
}

/** Every pending event of `conn`. */
export function events(conn: StreamConnection): StreamEvent[] {
  const out: StreamEvent[] = [];
  for (let ev = conn.pollEvent(); ev; ev = conn.pollEvent()) out.push(ev);
  return out;
}

/**
 * Two connections opened by hand at time `now` (no link, no loss): a dialled b.
 * Returns them established, with their handshake events already taken.
 */
export function openedPair(
  options: { configA?: Partial<StreamConfig>; configB?: Partial<StreamConfig>; issA?: number; issB?: number; now?: number } = {},
): { a: StreamConnection; b: StreamConnection } {
  const now = options.now ?? 0;
  const a = StreamConnection.connect(options.configA ?? {}, options.issA ?? 1000, now);
  const [syn] = drain(a, now);
  const b = StreamConnection.accept(options.configB ?? {}, syn!, options.issB ?? 5000, now);
  for (const s of drain(b, now)) a.handleSegment(s, now);
  for (const s of drain(a, now)) b.handleSegment(s, now);
  events(a);
  events(b);
  if (a.state !== "established" || b.state !== "established") throw new Error("handshake failed");
  return { a, b };
}
