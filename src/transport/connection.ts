/**
 * One stream connection as a sans-I/O state machine (the style of quinn-proto and
 * h11): it consumes segments, timer expiries and application calls, and produces
 * segments, bytes and events. It never reads a clock, never touches a socket and
 * never draws a random number: `now` (milliseconds, any monotonic origin) and the
 * initial sequence number are arguments.
 *
 *   StreamConnection.connect(config, iss, now)        active open (sends SYN)
 *   StreamConnection.accept(config, syn, iss, now)    passive open from a received SYN
 *   handleSegment(seg, now)                           feed one received segment
 *   handleTimeout(now)                                call when now >= nextTimeout()
 *   pollTransmit(now): Segment | undefined            drain until undefined after every call above
 *   write(bytes): number                              bytes accepted (up to free send-buffer space; 0 once closed)
 *   read(max?): Uint8Array                            in-order bytes (empty when none)
 *   readInto(dest, at?): number                       same, copied into the caller's buffer (no allocation)
 *   shutdown()                                        half-close: FIN after the buffered data
 *   abort()                                           RST and close now
 *   pollEvent(): StreamEvent | undefined              connected / readable / writable / finished / closed
 *   nextTimeout(): number                             next deadline (Infinity if none)
 *   setNoDelay(on) / stats() / state / error / readableBytes / writableBytes
 *
 * Ownership: the engine keeps `seg.payload` views (zero copy) until the application
 * reads them, so a caller must not reuse that memory. Segments it emits are views
 * into its send buffer; they stay valid (chunks are never reused).
 *
 * Positions: bookkeeping uses unbounded positions (0 = SYN) instead of u32
 * sequence numbers; every number from the wire is unwrapped with serial
 * arithmetic against a nearby position (see seq.ts). Data byte k of each
 * direction is at position k + 1; the FIN takes the position after the last byte.
 *
 * Buffers are budgeted: each starts small (config.initial*Buffer) and grows toward
 * its maximum only when it is the bottleneck (autotuning, as Linux TCP does), each
 * byte of growth granted by a BufferAllocator (the daemon's per-peer budget); space
 * goes back when the connection no longer needs it (our FIN acknowledged, the
 * peer's FIN received, TIME-WAIT, close) or when the owner trims it (`trimBuffers`).
 * A peer that keeps its window closed past config.zeroWindowTimeout fails the
 * connection, so what it makes us hold is held for a bounded time.
 *
 * Where things live: loss detection and the retransmission scoreboard in
 * scoreboard.ts, the congestion controller in congestion.ts, RTO arithmetic in
 * rtt.ts, buffers in send-buffer.ts / receive-buffer.ts. The behaviour as a
 * protocol (states, timers, constants) is written up in docs/PROTOCOL.md §4.
 */
import { Flag, WINDOW_UNIT, type SackBlock } from "../protocol/packet.ts";
import { LARGEST_STREAM_MSS, STREAM_MSS } from "../protocol/limits.ts";
import { UNLIMITED_BUFFERS, type BufferAllocator } from "./buffer-allocator.ts";
import { streamConfig, type StreamConfig } from "./config.ts";
import { NewReno } from "./congestion.ts";
import { ReceiveQueue, ReorderBuffer } from "./receive-buffer.ts";
import { RttEstimator } from "./rtt.ts";
import { Recovery, Scoreboard } from "./scoreboard.ts";
import { SendBuffer } from "./send-buffer.ts";
import { EMPTY_PAYLOAD, NO_SACK, ResetReason, resetPayload, resetReasonOf, type Segment } from "./segment.ts";
import { unwrap, wrap } from "./seq.ts";

export type StreamState =
  | "syn-sent"
  | "syn-received"
  | "established"
  | "fin-wait-1"
  | "fin-wait-2"
  | "close-wait"
  | "closing"
  | "last-ack"
  | "time-wait"
  | "closed";

/**
 * Why a connection ended abnormally: `refused` (RST answering our SYN), `limited`
 * (RST answering our SYN because a connection limit or rate was reached), `reset`
 * (RST later), `timeout` (handshake, user timeout, retransmission limit, zero window
 * or keepalive), `aborted` (the local application called abort()).
 */
export type StreamErrorCode = "refused" | "limited" | "reset" | "timeout" | "aborted";

export interface StreamError {
  readonly code: StreamErrorCode;
  readonly message: string;
}

export type StreamEvent =
  | { readonly type: "connected" }
  /** Bytes are waiting; edge-triggered (again once read() has emptied the queue). */
  | { readonly type: "readable" }
  /** Send-buffer space came back after a short write. */
  | { readonly type: "writable" }
  /** The peer sent FIN: after the bytes already buffered, there is no more data. */
  | { readonly type: "finished" }
  /** Terminal. No error means a clean close (both FINs exchanged and acknowledged). */
  | { readonly type: "closed"; readonly error?: StreamError };

export interface StreamStats {
  state: StreamState;
  /** Milliseconds; 0 until the first sample. */
  srtt: number;
  rttvar: number;
  rto: number;
  cwnd: number;
  ssthresh: number;
  inFlight: number;
  recovery: "none" | "fast" | "timeout";
  /** Bytes the peer's last window still allows beyond what is in flight. */
  sendWindow: number;
  /** Bytes we last advertised. */
  receiveWindow: number;
  sendBuffered: number;
  receiveBuffered: number;
  reorderBuffered: number;
  segmentsSent: number;
  segmentsReceived: number;
  /** Application bytes sent for the first time / acknowledged / sent again. */
  bytesSent: number;
  bytesAcked: number;
  bytesRetransmitted: number;
  /** Application bytes delivered in order / taken by read(). */
  bytesReceived: number;
  bytesRead: number;
  /** Segments sent again (SYN, data, FIN). */
  retransmits: number;
  /** Fast-recovery episodes (each begins with a fast retransmit). */
  fastRetransmits: number;
  /** Tail-loss probes sent (RFC 8985 §7). */
  tailLossProbes: number;
  /** Retransmission-timer expiries (including SYN). */
  timeouts: number;
  dupAcksReceived: number;
  sackBlocksSent: number;
  sackBlocksReceived: number;
  duplicateSegmentsReceived: number;
  outOfOrderSegmentsReceived: number;
  zeroWindowProbesSent: number;
  keepalivesSent: number;
  windowUpdatesSent: number;
  /** Current sizes of the two buffers (what the allocator has granted). */
  sendBufferCap: number;
  receiveBufferCap: number;
  /** Autotuning steps taken. */
  sendBufferGrowths: number;
  receiveBufferGrowths: number;
}

const EV_CONNECTED: StreamEvent = Object.freeze({ type: "connected" });
const EV_READABLE: StreamEvent = Object.freeze({ type: "readable" });
const EV_WRITABLE: StreamEvent = Object.freeze({ type: "writable" });
const EV_FINISHED: StreamEvent = Object.freeze({ type: "finished" });

const ACK_NONE = 0;
const ACK_DELAYED = 1;
const ACK_NOW = 2;

const WRITABLE_LOW_WATER = 64 * 1024;
/** Least time between ACKs sent in answer to invalid or out-of-window segments. */
const OOW_REPLY_INTERVAL = 100;
/** Floor for the tail-loss probe timeout, so timer jitter does not trigger needless probes. */
const MIN_PROBE_TIMEOUT = 10;
/** pathRestored() brings a backed-off retransmission forward at most this often. */
const MIN_RESTORE_INTERVAL = 250;

function newCounters() {
  return {
    segmentsSent: 0,
    segmentsReceived: 0,
    bytesSent: 0,
    bytesAcked: 0,
    bytesRetransmitted: 0,
    bytesReceived: 0,
    bytesRead: 0,
    retransmits: 0,
    fastRetransmits: 0,
    tailLossProbes: 0,
    timeouts: 0,
    dupAcksReceived: 0,
    sackBlocksSent: 0,
    sackBlocksReceived: 0,
    duplicateSegmentsReceived: 0,
    outOfOrderSegmentsReceived: 0,
    zeroWindowProbesSent: 0,
    keepalivesSent: 0,
    windowUpdatesSent: 0,
    sendBufferGrowths: 0,
    receiveBufferGrowths: 0,
  };
}

export class StreamConnection {
  /** The settings; `mss` follows the tunnel path's size (setMss). */
  config: StreamConfig;
  /**
   * The segment size the peer sends with, as seen (the larger of the starting MSS and
   * the last data segment): the delayed-ACK threshold, since the two directions of a
   * path may have discovered different sizes.
   */
  private ackMss: number;
  private readonly baseAckMss: number;
  private st: StreamState;
  private err: StreamError | undefined;
  private readonly openedAt: number;
  private noDelay: boolean;

  // ---- send side (positions in our sequence space; 0 is our SYN) ----
  private readonly iss: number;
  private sndUna = 0;
  /** Next new position to send (HighData + 1); retransmissions never move it back. */
  private sndNxt = 0;
  private readonly sendBuf = new SendBuffer();
  /** Bytes the send buffer may hold now (granted by the allocator; autotuned). */
  private sndCap: number;
  /** Bytes acknowledged since the send buffer last grew. */
  private ackedSinceGrow = 0;
  private finQueued = false;
  private finPos = -1;
  /** First position the peer's window does not allow. */
  private peerEdge = 0;
  private sndWl1 = -1;
  private sndWl2 = -1;
  private maxSndWnd = 0;
  private readonly cc: NewReno;
  private readonly rtt: RttEstimator;
  private readonly board: Scoreboard;
  private pipe = 0;
  private dupAcks = 0;
  private cwndLimited = false;
  private mustRetransmit = false;
  /** The retransmission timer is currently a tail-loss probe timer (RFC 8985 §7). */
  private probeTimer = false;
  private tlpPending = false;
  private tlpOutstanding = false;
  /** The next retransmission timeout was brought forward by pathRestored(): no backoff for it. */
  private restorePending = false;
  private lastRestoreAt = Number.NEGATIVE_INFINITY;
  private rtoDeadline = Number.POSITIVE_INFINITY;
  /** When the cumulative ACK last moved (or data became outstanding): the user-timeout clock. */
  private progressTime: number;
  private synPending = false;
  private synSentAt = -1;
  private synRetransmitted = false;
  private writeBlocked = false;
  private persistDeadline = Number.POSITIVE_INFINITY;
  private persistInterval = 0;
  /** When the peer's window closed on data we have for it (-1: open). */
  private zeroWindowSince = -1;
  private probePending = false;
  private keepaliveProbes = 0;
  private lastKeepalive = 0;
  private lastHeard: number;
  private pendingRst: Segment | undefined;

  // ---- receive side (positions in the peer's sequence space; 0 is its SYN) ----
  private irs = 0;
  private rcvNxt = 0;
  private readonly recvQueue = new ReceiveQueue();
  private readonly reorder = new ReorderBuffer();
  private peerFinPos = -1;
  private finReceived = false;
  /** Bytes we may buffer for the application now (granted by the allocator; autotuned). */
  private rcvCap: number;
  /** Receiver SWS avoidance: never offer less than min(MSS, buffer / 2). */
  private swsFloor: number;
  /**
   * Receive autotuning (dynamic right-sizing, as Linux does): the time the peer takes
   * to fill a window we advertised (`rcvRtt`, a round trip when it is window-limited,
   * longer when it is not), and how much the application read per such interval.
   */
  private rcvRtt = 0;
  private rcvRttMark = -1;
  private rcvRttStart = 0;
  /** Most bytes read in one interval so far, and where the current interval began. */
  private rcvSpace = 0;
  private rcvSpaceRead = 0;
  private rcvSpaceTime = -1;
  private readonly alloc: BufferAllocator;
  /** The buffers' space went back to the allocator (the connection needs none now). */
  private sendReleased = false;
  private receiveReleased = false;
  /** Highest right edge we have advertised. */
  private advEdge = 0;
  private lastAdvWindow = 0;
  private ackState = ACK_NONE;
  private delAckDeadline = Number.POSITIVE_INFINITY;
  private unackedBytes = 0;
  private readableSignalled = false;
  private lastInvalidReply = Number.NEGATIVE_INFINITY;

  private timeWaitDeadline = Number.POSITIVE_INFINITY;
  private events: StreamEvent[] = [];
  private eventHead = 0;
  private readonly counters = newCounters();

  private constructor(config: StreamConfig, iss: number, now: number, state: StreamState, alloc: BufferAllocator) {
    if (!Number.isInteger(iss) || iss < 0 || iss > 0xffff_ffff) throw new RangeError(`ISN ${iss} is not a u32`);
    this.config = config;
    this.baseAckMss = this.ackMss = Math.min(config.mss, STREAM_MSS);
    this.iss = iss;
    this.st = state;
    this.openedAt = now;
    this.progressTime = now;
    this.lastHeard = now;
    this.noDelay = config.noDelay;
    this.cc = new NewReno(config.mss, config.initialWindow);
    // Both ends run the same engine: the peer's delayed-ACK bound is our own.
    this.rtt = new RttEstimator(config.initialRto, config.minRto, config.maxRto, config.delayedAckTimeout);
    if (config.initialRtt) this.rtt.seed(config.initialRtt);
    this.board = new Scoreboard(config.mss, config.dupThresh);
    this.board.wait = (config.initialRtt ? config.initialRtt : config.initialRto) * 1.25 + 1;
    this.alloc = alloc;
    const r = Math.min(config.initialReceiveBuffer, config.receiveBufferSize);
    this.rcvCap = alloc.grow(r, Math.min(r, Math.max(config.minBuffer, 2 * WINDOW_UNIT)));
    const w = Math.min(config.initialSendBuffer, config.sendBufferSize);
    this.sndCap = alloc.grow(w, Math.min(w, config.minBuffer));
    this.swsFloor = Math.min(config.mss, Math.floor(this.rcvCap / 2));
  }

  /**
   * The tunnel path's segment size changed (path MTU discovery): new segments and
   * retransmissions (byte ranges, re-cut at the new size) use it from now on.
   */
  setMss(mss: number): void {
    if (!Number.isInteger(mss) || mss < 64 || mss > LARGEST_STREAM_MSS || mss === this.config.mss) return;
    this.config = { ...this.config, mss };
    this.cc.setMss(mss);
    this.board.setMss(mss);
    this.swsFloor = Math.min(mss, Math.floor(this.rcvCap / 2));
  }

  /** Active open: the first pollTransmit returns the SYN. `iss` must be unpredictable (crypto-random). */
  static connect(config: Partial<StreamConfig>, iss: number, now: number, alloc: BufferAllocator = UNLIMITED_BUFFERS): StreamConnection {
    const c = new StreamConnection(streamConfig(config), iss, now, "syn-sent", alloc);
    c.synPending = true;
    return c;
  }

  /** Passive open for a received SYN (the daemon found a listener); the first pollTransmit returns SYN|ACK. */
  static accept(config: Partial<StreamConfig>, syn: Segment, iss: number, now: number, alloc: BufferAllocator = UNLIMITED_BUFFERS): StreamConnection {
    if ((syn.flags & (Flag.SYN | Flag.ACK | Flag.RST)) !== Flag.SYN) {
      throw new RangeError("accept() needs a SYN segment without ACK or RST");
    }
    const c = new StreamConnection(streamConfig(config), iss, now, "syn-received", alloc);
    c.irs = syn.seq >>> 0;
    c.rcvNxt = 1;
    c.sndWl1 = 0;
    c.sndWl2 = 0;
    c.setPeerWindow(1, syn.window * WINDOW_UNIT);
    c.synPending = true;
    c.counters.segmentsReceived++;
    return c;
  }

  // ---------------------------------------------------------------- queries

  get state(): StreamState {
    return this.st;
  }

  /** Set once the connection closed abnormally. */
  get error(): StreamError | undefined {
    return this.err;
  }

  get readableBytes(): number {
    return this.recvQueue.length;
  }

  /** How many bytes write() would accept now (0 once shut down or closed). */
  get writableBytes(): number {
    return this.canWrite() ? Math.max(0, this.sndCap - this.sendBuf.length) : 0;
  }

  /** Bytes moved so far (acknowledged by the peer + read by the application): changes while the connection makes progress. */
  get progress(): number {
    return this.counters.bytesAcked + this.counters.bytesRead;
  }

  /** Buffer space this connection holds from its allocator now. */
  get bufferCapacity(): number {
    return this.sndCap + this.rcvCap;
  }

  /** The peer's FIN has arrived (in order): no data beyond what is buffered. */
  get peerFinished(): boolean {
    return this.finReceived;
  }

  setNoDelay(on: boolean): void {
    this.noDelay = on;
  }

  pollEvent(): StreamEvent | undefined {
    if (this.eventHead >= this.events.length) return undefined;
    const ev = this.events[this.eventHead++]!;
    if (this.eventHead === this.events.length) {
      this.events.length = 0;
      this.eventHead = 0;
    }
    return ev;
  }

  nextTimeout(): number {
    const st = this.st;
    if (st === "closed") return Number.POSITIVE_INFINITY;
    if (st === "time-wait") return this.timeWaitDeadline;
    let t = this.rtoDeadline < this.persistDeadline ? this.rtoDeadline : this.persistDeadline;
    if (this.board.recheckAt < t) t = this.board.recheckAt;
    if (this.ackState === ACK_DELAYED && this.delAckDeadline < t) t = this.delAckDeadline;
    const ka = this.keepaliveDeadline();
    return ka < t ? ka : t;
  }

  stats(): StreamStats {
    const mode = this.board.mode;
    return {
      state: this.st,
      srtt: this.rtt.srtt,
      rttvar: this.rtt.rttvar,
      rto: this.rtt.rto,
      cwnd: this.cc.cwnd,
      ssthresh: this.cc.ssthresh,
      inFlight: this.pipe,
      recovery: mode === Recovery.Fast ? "fast" : mode === Recovery.Timeout ? "timeout" : "none",
      sendWindow: Math.max(0, this.peerEdge - this.sndNxt),
      receiveWindow: this.lastAdvWindow,
      sendBuffered: this.sendBuf.length,
      receiveBuffered: this.recvQueue.length,
      reorderBuffered: this.reorder.bytes,
      sendBufferCap: this.sndCap,
      receiveBufferCap: this.rcvCap,
      ...this.counters,
    };
  }

  // ------------------------------------------------------- application calls

  /**
   * Queues bytes for sending; returns how many fit in the send buffer (backpressure:
   * wait for `writable`). Returns 0 once the connection has closed (the `closed`
   * event says why). Writing after shutdown() is a caller bug and throws.
   */
  write(bytes: Uint8Array): number {
    if (this.finQueued) throw new Error("cannot write: the stream is shut down");
    if (!this.canWrite()) return 0;
    const n = this.sendBuf.write(bytes, Math.max(0, this.sndCap - this.sendBuf.length));
    if (n < bytes.length) this.writeBlocked = true;
    return n;
  }

  /**
   * Up to `max` in-order bytes (default: all). Zero-copy when they come from one
   * received segment; otherwise one new buffer. Empty when nothing is buffered.
   */
  read(max?: number): Uint8Array {
    const out = this.recvQueue.read(max);
    if (out.length > 0) this.afterRead(out.length);
    return out;
  }

  /** Copies up to `dest.length - at` in-order bytes into `dest` at `at`; returns how many. */
  readInto(dest: Uint8Array, at = 0): number {
    const n = this.recvQueue.readInto(dest, at);
    if (n > 0) this.afterRead(n);
    return n;
  }

  private afterRead(n: number): void {
    this.counters.bytesRead += n;
    if (this.recvQueue.length === 0) this.readableSignalled = false;
    if (this.receiveReleased) {
      // Nothing more will arrive: what was read goes back to the allocator.
      this.rcvCap -= n;
      this.alloc.release(n);
      return;
    }
    this.maybeWindowUpdate();
  }

  /**
   * Receive autotuning, on each in-order arrival. `rcvRtt`: how long the peer takes
   * to fill a window we advertised (a round trip when our window limits it). Once per
   * such interval, if the application read more than in any interval before, the
   * buffer becomes twice that (more while the rate is still climbing, as in slow
   * start), as far as the allocator allows. An application that does not read, or
   * a sender whose rate is steady, never makes it grow.
   */
  private autotuneReceive(now: number): void {
    if (this.rcvRttMark < 0) {
      this.rcvRttMark = this.advEdge;
      this.rcvRttStart = now;
    } else if (this.rcvNxt >= this.rcvRttMark) {
      const sample = Math.max(now - this.rcvRttStart, 0.01);
      // The least such time, as Linux does for this window-dependent sample: once our window
      // no longer limits the peer, the time to fill it grows with the window itself, and an
      // average of it would let the buffer grow with itself, far past the path's needs.
      this.rcvRtt = this.rcvRtt === 0 ? sample : Math.min(this.rcvRtt, sample);
      this.rcvRttMark = this.advEdge;
      this.rcvRttStart = now;
    }
    const interval = this.rcvRtt > 0 ? this.rcvRtt : this.rtt.srtt;
    if (this.rcvSpaceTime < 0) {
      this.rcvSpaceTime = now;
      this.rcvSpaceRead = this.counters.bytesRead;
      return;
    }
    if (interval <= 0 || now - this.rcvSpaceTime < interval) return;
    const copied = this.counters.bytesRead - this.rcvSpaceRead;
    this.rcvSpaceRead = this.counters.bytesRead;
    this.rcvSpaceTime = now;
    if (copied <= this.rcvSpace) return;
    let target = 2 * copied + 16 * this.config.mss;
    if (this.rcvSpace > 0) target += Math.min(2 * target, (2 * target * (copied - this.rcvSpace)) / this.rcvSpace);
    this.rcvSpace = copied;
    const max = this.config.receiveBufferSize;
    if (target > max) target = max;
    if (target <= this.rcvCap) return;
    const granted = this.alloc.grow(Math.ceil(target - this.rcvCap));
    if (granted <= 0) return;
    this.rcvCap += granted;
    this.swsFloor = Math.min(this.config.mss, Math.floor(this.rcvCap / 2));
    this.counters.receiveBufferGrowths++;
  }

  /**
   * Send autotuning: the application is waiting for room while the network could
   * carry at least half the buffer in one window, and half a buffer has been
   * acknowledged since the last step: double the buffer, as far as the allocator allows.
   */
  private growSend(): void {
    const max = this.config.sendBufferSize;
    if (this.sndCap >= max || 2 * this.ackedSinceGrow < this.sndCap) return;
    const window = Math.min(this.cc.cwnd, this.peerEdge - this.sndUna);
    if (2 * window < this.sndCap) return;
    this.ackedSinceGrow = 0;
    const granted = this.alloc.grow(Math.min(max, 2 * this.sndCap) - this.sndCap);
    if (granted <= 0) return;
    this.sndCap += granted;
    this.counters.sendBufferGrowths++;
  }

  /**
   * Gives back buffer space above `target` bytes per direction (default: the
   * initial sizes) that is not in use: never below the unread and unacknowledged
   * bytes, nor below the window already advertised. The owner calls it for idle
   * connections and under memory pressure. Returns the bytes released.
   */
  trimBuffers(target?: number): number {
    if (this.st === "closed") return 0;
    let released = 0;
    if (!this.receiveReleased) {
      const advertised = Math.max(0, this.advEdge - this.rcvNxt);
      const floor = Math.max(this.recvQueue.length + advertised, 2 * WINDOW_UNIT);
      const want = Math.max(floor, target ?? Math.min(this.config.initialReceiveBuffer, this.config.receiveBufferSize));
      if (want < this.rcvCap) {
        released += this.rcvCap - want;
        this.rcvCap = want;
        this.swsFloor = Math.min(this.config.mss, Math.floor(this.rcvCap / 2));
      }
      this.rcvSpace = 0;
    }
    if (!this.sendReleased) {
      const want = Math.max(this.sendBuf.length, target ?? Math.min(this.config.initialSendBuffer, this.config.sendBufferSize));
      if (want < this.sndCap) {
        released += this.sndCap - want;
        this.sndCap = want;
      }
      this.ackedSinceGrow = 0;
    }
    if (released > 0) this.alloc.release(released);
    return released;
  }

  /**
   * The owner will read no more (it closed, or the connection failed and it was
   * told): unread bytes are dropped and their space goes back.
   */
  discardUnread(): void {
    const n = this.recvQueue.length;
    if (n > 0) this.recvQueue.read(n);
    if (this.st === "closed" || this.receiveReleased) {
      if (this.rcvCap > 0) this.alloc.release(this.rcvCap);
      this.rcvCap = 0;
    }
  }

  /** Nothing more will be written (our FIN is acknowledged, or the connection ended): the send buffer's space goes back. */
  private releaseSend(): void {
    if (this.sendReleased) return;
    this.sendReleased = true;
    this.alloc.release(this.sndCap);
    this.sndCap = 0;
  }

  /** Nothing more will arrive: space beyond the unread bytes goes back (the rest as it is read). */
  private releaseReceive(): void {
    if (this.receiveReleased) return;
    this.receiveReleased = true;
    const keep = this.recvQueue.length;
    if (this.rcvCap > keep) this.alloc.release(this.rcvCap - keep);
    this.rcvCap = keep;
  }

  shutdown(): void {
    if (this.finQueued || !this.canWrite()) return;
    this.finQueued = true;
    this.finPos = this.sendBuf.end + 1;
    if (this.st === "established") this.st = "fin-wait-1";
    else if (this.st === "close-wait") this.st = "last-ack";
  }

  abort(): void {
    const st = this.st;
    if (st === "closed") return;
    if (st !== "syn-sent" && st !== "time-wait") this.queueReset(EMPTY_PAYLOAD);
    this.finish({ code: "aborted", message: "connection aborted locally" });
  }

  /** A RST at our next sequence number (so the peer accepts it), saying why in `payload` if at all. */
  private queueReset(payload: Uint8Array): void {
    this.pendingRst = {
      flags: Flag.RST | Flag.ACK,
      seq: wrap(this.sndNxt, this.iss),
      ack: wrap(this.rcvNxt, this.irs),
      window: 0,
      sack: NO_SACK,
      payload,
    };
  }

  // ------------------------------------------------------------------ output

  pollTransmit(now: number): Segment | undefined {
    if (this.pendingRst) {
      const rst = this.pendingRst;
      this.pendingRst = undefined;
      this.counters.segmentsSent++;
      return rst;
    }
    switch (this.st) {
      case "closed":
        return undefined;
      case "syn-sent":
        return this.synPending ? this.sendSyn(now, false) : undefined;
      case "syn-received":
        if (this.synPending) return this.sendSyn(now, true);
        return this.ackState === ACK_NOW ? this.pureAck() : undefined;
      case "time-wait":
        return this.ackState === ACK_NOW ? this.pureAck() : undefined;
    }
    const seg = this.transmitData(now);
    if (seg) return seg;
    if (this.probePending) {
      this.probePending = false;
      return this.probe();
    }
    if (this.ackState === ACK_NOW) return this.pureAck();
    return undefined;
  }

  private sendSyn(now: number, withAck: boolean): Segment {
    this.synPending = false;
    if (this.synSentAt >= 0) {
      this.synRetransmitted = true;
      this.counters.retransmits++;
    }
    this.synSentAt = now;
    if (this.sndNxt < 1) this.sndNxt = 1;
    if (this.rtoDeadline === Number.POSITIVE_INFINITY) this.armRto(now);
    if (withAck) this.ackSent();
    this.counters.segmentsSent++;
    return {
      flags: withAck ? Flag.SYN | Flag.ACK : Flag.SYN,
      seq: this.iss,
      ack: withAck ? wrap(this.rcvNxt, this.irs) : 0,
      window: this.advertise(),
      sack: NO_SACK,
      payload: EMPTY_PAYLOAD,
    };
  }

  private transmitData(now: number): Segment | undefined {
    const board = this.board;
    const una = this.sndUna;
    const nxt = this.sndNxt;
    if (this.mustRetransmit) {
      // The fast retransmit, or the retransmission a timeout demands: not subject to cwnd.
      this.mustRetransmit = false;
      const s = board.firstUnsacked(una);
      if (s < nxt) {
        const e = Math.min(nxt, s + this.config.mss, board.nextSackedStart(s));
        if (e > board.highRxt) board.highRxt = e;
        return this.sendRange(s, e, true, now);
      }
    }
    if (this.tlpPending) {
      // Tail-loss probe: one new segment if there is one, else the last one again, to draw an ACK with SACK.
      this.tlpPending = false;
      const fresh = this.sendNewData(now, true);
      if (fresh) return fresh;
      if (board.pickTail(una, nxt)) return this.sendRange(board.pickStart, board.pickEnd, true, now);
    }
    if (board.mode !== Recovery.None) {
      // RFC 6675 §5 (C): while cwnd - pipe >= 1 MSS, NextSeg.
      if (this.cc.cwnd - this.pipe < this.config.mss) {
        this.cwndLimited = true;
        return undefined;
      }
      if (board.pickLost(una, nxt, now)) {
        if (board.pickEnd > board.highRxt) board.highRxt = board.pickEnd;
        return this.sendRange(board.pickStart, board.pickEnd, true, now);
      }
      const fresh = this.sendNewData(now);
      if (fresh) return fresh;
      if (board.pickUnsacked(una)) {
        if (board.pickEnd > board.highRxt) board.highRxt = board.pickEnd;
        return this.sendRange(board.pickStart, board.pickEnd, true, now);
      }
      if (!this.hasUnsentData() && board.pickRescue(una, nxt)) {
        return this.sendRange(board.pickStart, board.pickEnd, true, now);
      }
      return undefined;
    }
    return this.sendNewData(now);
  }

  /** `probe`: a tail-loss probe, which ignores cwnd and Nagle (never the peer's window). */
  private sendNewData(now: number, probe = false): Segment | undefined {
    const nxt = this.sndNxt;
    if (this.finQueued && nxt > this.finPos) return undefined; // FIN already sent
    const mss = this.config.mss;
    const avail = this.sendBuf.end - (nxt - 1);
    if (avail <= 0) {
      // The FIN needs no window: it takes no buffer space at the receiver.
      return this.finQueued ? this.sendRange(nxt, nxt + 1, false, now) : undefined;
    }
    let len = avail < mss ? avail : mss;
    const room = this.peerEdge - nxt;
    if (room < len) {
      // Zero window means stop. A small window is used only if it is a fair share of
      // the largest the peer has offered (sender-side SWS avoidance, RFC 9293 §3.8.6.2.1)
      // or nothing is outstanding (then no ACK would come to open it further).
      if (room <= 0 || (2 * room < this.maxSndWnd && nxt > this.sndUna)) {
        if (nxt === this.sndUna && this.persistDeadline === Number.POSITIVE_INFINITY) this.startPersist(now);
        return undefined;
      }
      len = room;
    }
    if (this.cc.cwnd - this.pipe < len && !probe) {
      this.cwndLimited = true;
      return undefined;
    }
    // Nagle: hold a partial segment while data is unacknowledged, unless the FIN is waiting.
    if (len < mss && len === avail && !this.noDelay && !this.finQueued && nxt > this.sndUna && !probe) return undefined;
    let end = nxt + len;
    if (this.finQueued && len === avail) end++; // the FIN rides on the last data segment
    return this.sendRange(nxt, end, false, now);
  }

  /** Builds the segment for positions [s, e) (the FIN counts as the position after the data). */
  private sendRange(s: number, e: number, retransmit: boolean, now: number): Segment {
    const finHere = this.finQueued && e > this.finPos;
    const dataEnd = finHere ? this.finPos : e;
    const payload = dataEnd > s ? this.sendBuf.slice(s - 1, dataEnd - s) : EMPTY_PAYLOAD;
    const c = this.counters;
    if (retransmit) {
      c.retransmits++;
      c.bytesRetransmitted += payload.length;
      this.board.recordRetransmission(s, e, this.sndNxt, now);
    } else {
      if (s === this.sndUna && this.rtoDeadline === Number.POSITIVE_INFINITY) this.progressTime = now;
      this.sndNxt = e;
      this.board.noteSent(s, now);
      c.bytesSent += payload.length;
      if (this.persistDeadline !== Number.POSITIVE_INFINITY) {
        this.persistDeadline = Number.POSITIVE_INFINITY;
        this.persistInterval = 0;
      }
    }
    this.pipe += e - s;
    if (this.rtoDeadline === Number.POSITIVE_INFINITY) this.armRto(now);
    const seg: Segment = {
      flags: finHere ? Flag.ACK | Flag.FIN : Flag.ACK,
      seq: wrap(s, this.iss),
      ack: wrap(this.rcvNxt, this.irs),
      window: this.advertise(),
      sack: this.currentSack(),
      payload,
    };
    this.ackSent();
    c.segmentsSent++;
    return seg;
  }

  private pureAck(): Segment {
    return this.controlSegment(this.sndNxt);
  }

  /** Zero-window and keepalive probe: an old sequence number, which the peer must answer with an ACK. */
  private probe(): Segment {
    return this.controlSegment(this.sndUna - 1);
  }

  private controlSegment(position: number): Segment {
    const seg: Segment = {
      flags: Flag.ACK,
      seq: wrap(position, this.iss),
      ack: wrap(this.rcvNxt, this.irs),
      window: this.advertise(),
      sack: this.currentSack(),
      payload: EMPTY_PAYLOAD,
    };
    this.ackSent();
    this.counters.segmentsSent++;
    return seg;
  }

  /** The window field for an outgoing segment; records the edge it promises. */
  private advertise(): number {
    let units = Math.floor((this.rcvCap - this.recvQueue.length) / WINDOW_UNIT);
    // Receiver SWS avoidance: never offer less than min(MSS, buffer/2).
    if (units * WINDOW_UNIT < this.swsFloor) units = 0;
    if (units > 0xffff) units = 0xffff;
    const wnd = units * WINDOW_UNIT;
    this.lastAdvWindow = wnd;
    if (this.rcvNxt + wnd > this.advEdge) this.advEdge = this.rcvNxt + wnd;
    return units;
  }

  private currentSack(): readonly SackBlock[] {
    if (this.reorder.isEmpty) return NO_SACK;
    const blocks = this.reorder.sackBlocks(this.irs);
    this.counters.sackBlocksSent += blocks.length;
    return blocks;
  }

  private ackSent(): void {
    this.ackState = ACK_NONE;
    this.unackedBytes = 0;
    this.delAckDeadline = Number.POSITIVE_INFINITY;
  }

  // ------------------------------------------------------------------- input

  handleSegment(seg: Segment, now: number): void {
    const st = this.st;
    if (st === "closed") return;
    this.counters.segmentsReceived++;
    if (st === "syn-sent") {
      this.onSegmentInSynSent(seg, now);
      return;
    }
    const flags = seg.flags;
    const seqPos = unwrap(seg.seq, this.rcvNxt, this.irs);

    // RFC 5961 §3: a RST resets only at exactly the next expected sequence number;
    // elsewhere in the window it draws a challenge ACK; outside it is ignored.
    if (flags & Flag.RST) {
      if (st === "time-wait") return; // RFC 1337
      if (seqPos === this.rcvNxt) {
        if (resetReasonOf(seg) === ResetReason.WindowClosed) {
          this.finish({ code: "reset", message: "the peer ended the connection: this side kept its receive window closed too long (the application was not reading)" });
        } else {
          this.finish({ code: "reset", message: "the peer reset the connection" });
        }
      } else if (seqPos > this.rcvNxt && seqPos < this.rcvNxt + Math.max(this.receiveRoom(), 1)) {
        this.replyToInvalid(now); // challenge ACK
      }
      return;
    }
    this.lastHeard = now;
    this.keepaliveProbes = 0;

    if (flags & Flag.SYN) {
      if (st === "syn-received" && seqPos === 0) {
        if (!(flags & Flag.ACK)) {
          this.synPending = true; // the peer did not hear our SYN|ACK: say it again
          return;
        }
        // Simultaneous open: the peer's SYN|ACK completes our handshake below.
      } else {
        this.replyToInvalid(now); // RFC 5961 §4 challenge ACK (also re-ACKs a repeated SYN|ACK)
        return;
      }
    }
    if (!(flags & Flag.ACK)) return; // after the SYN every segment carries an ACK

    if (st === "syn-received") {
      if (unwrap(seg.ack, this.sndUna, this.iss) !== 1) return;
      this.sndUna = 1;
      if (!this.synRetransmitted && this.synSentAt >= 0) this.rttSample(now - this.synSentAt);
      this.rtoDeadline = Number.POSITIVE_INFINITY;
      this.establish(now);
    }

    if (!this.processAck(seg, seqPos, now)) return;
    if (this.st === "closed" || flags & Flag.SYN) return;

    const fin = (flags & Flag.FIN) !== 0;
    if (seg.payload.length > 0 || fin) this.processData(seg.payload, seqPos, fin, now);
    else if (seqPos < this.rcvNxt || seqPos > this.rcvNxt + this.receiveRoom() + 1) this.replyToInvalid(now); // e.g. a probe
  }

  private onSegmentInSynSent(seg: Segment, now: number): void {
    const flags = seg.flags;
    let acked = false;
    if (flags & Flag.ACK) {
      if (unwrap(seg.ack, 0, this.iss) !== 1) {
        if (!(flags & Flag.RST)) {
          this.pendingRst = { flags: Flag.RST, seq: seg.ack, ack: 0, window: 0, sack: NO_SACK, payload: EMPTY_PAYLOAD };
        }
        return;
      }
      acked = true;
    }
    if (flags & Flag.RST) {
      if (!acked) return;
      const reason = resetReasonOf(seg);
      if (reason === ResetReason.Limit) this.finish({ code: "limited", message: "connection refused: the peer has reached its connection limit for us" });
      else if (reason === ResetReason.Rate) this.finish({ code: "limited", message: "connection refused: too many connection attempts to the peer just now" });
      else this.finish({ code: "refused", message: "connection refused: the peer answered the SYN with a reset" });
      return;
    }
    if (!(flags & Flag.SYN)) return;
    this.irs = seg.seq >>> 0;
    this.rcvNxt = 1;
    this.lastHeard = now;
    this.sndWl1 = 0;
    this.sndWl2 = acked ? 1 : 0;
    this.setPeerWindow(1, seg.window * WINDOW_UNIT);
    if (acked) {
      this.sndUna = 1;
      if (!this.synRetransmitted && this.synSentAt >= 0) this.rttSample(now - this.synSentAt);
      this.rtoDeadline = Number.POSITIVE_INFINITY;
      this.establish(now);
      this.ackState = ACK_NOW;
    } else {
      // Simultaneous open: answer with SYN|ACK (same ISN) and wait for theirs.
      this.st = "syn-received";
      this.synPending = true;
    }
  }

  private establish(now: number): void {
    this.progressTime = now;
    // The handshake's timeouts end here: data starts with an un-backed-off timer (in the
    // spirit of RFC 6298 5.7), not with the 8 s that three lost SYNs had doubled it to.
    this.rtt.progressed();
    this.st = this.finQueued ? "fin-wait-1" : "established";
    this.emit(EV_CONNECTED);
  }

  /** Processes the ACK, SACK and window fields. False when the segment must be dropped. */
  private processAck(seg: Segment, seqPos: number, now: number): boolean {
    const una = this.sndUna;
    const ackPos = unwrap(seg.ack, una, this.iss);
    if (ackPos > this.sndNxt) {
      this.replyToInvalid(now); // acknowledges something never sent (RFC 9293, RFC 5961 §5)
      return false;
    }
    const board = this.board;
    // RTT: sample the most recently sent byte this ACK newly delivers (by cumulative
    // ACK or SACK), unless it was ever retransmitted (Karn).
    let sampleAt = ackPos > una && board.sacked.indexContaining(ackPos - 1) < 0 ? ackPos - 1 : -1;
    let newlySacked = 0;
    const sack = seg.sack;
    if (sack.length > 0) {
      this.counters.sackBlocksReceived += sack.length;
      if (this.sndNxt > una) {
        const floor = ackPos > una ? ackPos : una;
        for (let i = 0; i < sack.length; i++) {
          const b = sack[i]!;
          const s = unwrap(b.start, una, this.iss);
          const e = unwrap(b.end, una, this.iss);
          if (e <= s || e <= floor || e > this.sndNxt) continue; // D-SACK, stale, or bogus
          const topIsNew = e - 1 > sampleAt && board.sacked.indexContaining(e - 1) < 0;
          const added = board.addSack(s > floor ? s : floor, e);
          newlySacked += added;
          if (added > 0 && topIsNew) sampleAt = e - 1;
        }
      }
    }
    if (sampleAt > 0) {
      const sentAt = board.cleanSendTime(sampleAt);
      if (sentAt === sentAt) this.rttSample(now - sentAt); // NaN: retransmitted or unknown
    }

    let acked = 0;
    if (ackPos > una) {
      acked = ackPos - una;
      this.sndUna = ackPos;
      const dataAcked = Math.min(ackPos - 1, this.sendBuf.end);
      this.counters.bytesAcked += dataAcked - this.sendBuf.start;
      this.sendBuf.release(dataAcked);
      board.onCumulativeAck(ackPos);
      this.progressTime = now;
      this.rtt.progressed();
      this.dupAcks = 0;
      this.tlpOutstanding = false;
      if (this.sndUna === this.sndNxt) this.rtoDeadline = Number.POSITIVE_INFINITY;
      else this.armRto(now);
      this.ackedSinceGrow += acked;
      if (this.writeBlocked && this.canWrite()) {
        this.growSend();
        const free = this.sndCap - this.sendBuf.length;
        if (free >= Math.min(WRITABLE_LOW_WATER, this.sndCap / 2)) {
          this.writeBlocked = false;
          this.emit(EV_WRITABLE);
        }
      }
    } else if (newlySacked > 0) {
      // RFC 6675 DupAck: no cumulative progress, but SACK news. Piggybacked data does not disqualify it.
      this.dupAcks++;
      this.counters.dupAcksReceived++;
    }

    // Loss recovery and congestion control.
    let grow = acked > 0;
    if (board.mode !== Recovery.None && this.sndUna >= board.recoveryPoint) {
      if (board.mode === Recovery.Fast) {
        this.cc.onRecoveryEnd(); // deflate: cwnd = ssthresh
        grow = false;
      }
      board.exitRecovery();
    }
    if (grow && board.mode !== Recovery.Fast) this.cc.onAck(acked, this.cwndLimited || board.mode === Recovery.Timeout);
    if (acked > 0) this.cwndLimited = false;
    this.detectLoss(now, newlySacked > 0);

    // The send window, from the newest segment only (RFC 9293 SND.WL1 / SND.WL2), and
    // only from a segment inside our receive window (never from one that claims to
    // come from beyond it).
    if (
      (this.sndWl1 < seqPos || (this.sndWl1 === seqPos && this.sndWl2 <= ackPos)) &&
      seqPos <= this.rcvNxt + this.receiveRoom() + 1
    ) {
      this.sndWl1 = seqPos;
      this.sndWl2 = ackPos;
      this.setPeerWindow(ackPos, seg.window * WINDOW_UNIT);
    }

    if (this.finQueued && ackPos > this.finPos && acked > 0) this.onFinAcked(now);
    return true;
  }

  private setPeerWindow(base: number, wnd: number): void {
    this.peerEdge = base + wnd;
    if (wnd > this.maxSndWnd) this.maxSndWnd = wnd;
    if (this.peerEdge > this.sndNxt && this.persistDeadline !== Number.POSITIVE_INFINITY) {
      this.persistDeadline = Number.POSITIVE_INFINITY;
      this.persistInterval = 0;
    }
    if (this.peerEdge > this.sndNxt) this.zeroWindowSince = -1;
  }

  private onFinAcked(now: number): void {
    this.releaseSend();
    switch (this.st) {
      case "fin-wait-1":
        this.st = "fin-wait-2";
        break;
      case "closing":
        this.enterTimeWait(now);
        break;
      case "last-ack":
        this.finish(undefined);
        break;
    }
  }

  private processData(payload: Uint8Array, seqPos: number, fin: boolean, now: number): void {
    const st = this.st;
    if (st !== "established" && st !== "fin-wait-1" && st !== "fin-wait-2") {
      // The peer has already finished: this is a retransmission. Re-ACK it; a
      // repeated FIN in TIME-WAIT restarts the timer (our ACK was lost).
      this.ackState = ACK_NOW;
      if (st === "time-wait" && fin) this.timeWaitDeadline = now + this.config.timeWait;
      return;
    }
    let start = seqPos;
    let data = payload;
    let end = start + data.length;
    if (this.peerFinPos >= 0 && end > this.peerFinPos) {
      // Nothing exists beyond the peer's FIN.
      if (start >= this.peerFinPos) data = EMPTY_PAYLOAD;
      else data = data.subarray(0, this.peerFinPos - start);
      end = start + data.length;
    }
    const edge = this.rcvNxt + this.receiveRoom();
    if (end > edge) {
      // Beyond the window: keep what fits; a FIN after dropped data cannot count.
      fin = false;
      if (start >= edge) {
        this.ackState = ACK_NOW;
        return;
      }
      data = data.subarray(0, edge - start);
      end = edge;
    }
    if (start < this.rcvNxt) {
      if (end < this.rcvNxt || (end === this.rcvNxt && (!fin || this.finReceived))) {
        this.counters.duplicateSegmentsReceived++;
        this.ackState = ACK_NOW;
        return;
      }
      data = data.subarray(this.rcvNxt - start); // partial overlap: keep only the new part
      start = this.rcvNxt;
    }
    if (fin && this.peerFinPos < 0) this.peerFinPos = end;

    if (start === this.rcvNxt) {
      if (data.length > 0) {
        this.recvQueue.push(data);
        this.rcvNxt = end;
        if (!this.reorder.isEmpty) {
          this.rcvNxt = this.reorder.drain(this.rcvNxt, this.recvQueue);
          this.ackState = ACK_NOW; // a hole filled (RFC 5681 §4.2)
        } else {
          this.scheduleAck(data.length, now);
        }
        this.counters.bytesReceived += this.rcvNxt - start;
        this.autotuneReceive(now);
        if (!this.readableSignalled) {
          this.readableSignalled = true;
          this.emit(EV_READABLE);
        }
      }
    } else {
      this.counters.outOfOrderSegmentsReceived++;
      this.reorder.insert(start, data);
      this.ackState = ACK_NOW; // out of order: ACK at once, with SACK
    }
    if (this.peerFinPos >= 0 && this.rcvNxt === this.peerFinPos && !this.finReceived) this.receiveFin(now);
  }

  /**
   * An ACK in answer to a segment outside the window, a SYN or RST that draws a
   * challenge, or an ACK of unsent data: at most one per OOW_REPLY_INTERVAL, so two
   * confused endpoints cannot keep ACKing each other (RFC 5961 §7 spirit).
   * Segments that carry data or FIN are not limited.
   */
  private replyToInvalid(now: number): void {
    if (now - this.lastInvalidReply < OOW_REPLY_INTERVAL) return;
    this.lastInvalidReply = now;
    this.ackState = ACK_NOW;
  }

  private scheduleAck(bytes: number, now: number): void {
    this.unackedBytes += bytes;
    this.ackMss = bytes > this.baseAckMss ? bytes : this.baseAckMss;
    if (this.unackedBytes >= 2 * this.ackMss || this.config.delayedAckTimeout === 0) {
      this.ackState = ACK_NOW;
    } else if (this.ackState === ACK_NONE) {
      this.ackState = ACK_DELAYED;
      this.delAckDeadline = now + this.config.delayedAckTimeout;
    }
  }

  private receiveFin(now: number): void {
    this.finReceived = true;
    this.releaseReceive();
    this.rcvNxt++;
    this.ackState = ACK_NOW;
    this.emit(EV_FINISHED);
    if (this.st === "established") this.st = "close-wait";
    else if (this.st === "fin-wait-1") this.st = "closing";
    else if (this.st === "fin-wait-2") this.enterTimeWait(now);
  }

  /** Bytes beyond rcvNxt we can accept: buffer space not taken by unread data. */
  private receiveRoom(): number {
    return this.rcvCap - this.recvQueue.length;
  }

  /** After the application reads: send a window update if the peer is (nearly) blocked by a stale window. */
  private maybeWindowUpdate(): void {
    if (this.finReceived || this.st === "closed" || this.st === "syn-sent" || this.st === "syn-received") return;
    let units = Math.floor(this.receiveRoom() / WINDOW_UNIT);
    if (units * WINDOW_UNIT < this.swsFloor) units = 0;
    const wnd = Math.min(units, 0xffff) * WINDOW_UNIT;
    const peerSees = Math.max(0, this.advEdge - this.rcvNxt);
    const threshold = Math.min(this.rcvCap / 2, 2 * this.config.mss);
    if (wnd - peerSees >= threshold && wnd >= 2 * peerSees && this.ackState !== ACK_NOW) {
      this.ackState = ACK_NOW;
      this.counters.windowUpdatesSent++;
    }
  }

  // ------------------------------------------------------------------ timers

  /**
   * The way to the peer works again (a path probe answered, the relay registration back, the peer
   * roamed): a retransmission waiting out a backed-off timer goes now instead of at its deadline, so
   * a stream resumes within a round trip of the outage's end rather than up to a minute later (the
   * timer doubles while the path is down). Neither the backoff nor the count of timeouts grows for
   * it, and the user timeout still runs from the last progress. At most once per
   * MIN_RESTORE_INTERVAL. True when the timer was brought forward (call handleTimeout(now)).
   */
  pathRestored(now: number): boolean {
    if (this.st === "closed" || this.st === "time-wait") return false;
    if (this.rtt.backoff === 0 || this.rtoDeadline === Number.POSITIVE_INFINITY || this.rtoDeadline <= now) return false;
    if (now - this.lastRestoreAt < MIN_RESTORE_INTERVAL) return false;
    this.lastRestoreAt = now;
    this.restorePending = true;
    this.rtoDeadline = now;
    return true;
  }

  handleTimeout(now: number): void {
    if (this.st === "closed") return;
    if (this.st === "time-wait") {
      if (now >= this.timeWaitDeadline) this.finish(undefined);
      return;
    }
    if (now >= this.board.recheckAt) this.detectLoss(now, true);
    if (now >= this.rtoDeadline) this.onRetransmitTimeout(now);
    if (this.isClosed()) return;
    if (now >= this.persistDeadline) this.onPersistTimeout(now);
    if (this.isClosed()) return;
    if (now >= this.keepaliveDeadline()) this.onKeepaliveTimeout(now);
    if (this.isClosed()) return;
    if (this.ackState === ACK_DELAYED && now >= this.delAckDeadline) this.ackState = ACK_NOW;
  }

  /**
   * Arms the retransmission timer: the RTO, or the shorter tail-loss probe timeout
   * (RFC 8985 §7: 2 x SRTT, plus the peer's delayed-ACK allowance when less than
   * two segments are out) when no probe is outstanding and we are not recovering.
   */
  private armRto(now: number): void {
    const opening = this.st === "syn-sent" || this.st === "syn-received";
    const limit = opening ? this.openedAt + this.config.connectTimeout : this.progressTime + this.config.userTimeout;
    let t = now + this.rtt.rto;
    this.probeTimer = false;
    this.restorePending = false;
    if (!opening && this.rtt.hasSample && !this.tlpOutstanding && this.board.mode === Recovery.None) {
      let pto = 2 * this.rtt.srtt;
      if (this.sndNxt - this.sndUna < 2 * this.config.mss) pto += this.config.delayedAckTimeout;
      if (pto < MIN_PROBE_TIMEOUT) pto = MIN_PROBE_TIMEOUT;
      if (now + pto < t) {
        t = now + pto;
        this.probeTimer = true;
      }
    }
    this.rtoDeadline = t < limit ? t : limit;
  }

  private onRetransmitTimeout(now: number): void {
    this.rtoDeadline = Number.POSITIVE_INFINITY;
    const restored = this.restorePending;
    this.restorePending = false;
    const cfg = this.config;
    if (this.st === "syn-sent" || this.st === "syn-received") {
      if (now >= this.openedAt + cfg.connectTimeout) {
        this.finish({ code: "timeout", message: `connection attempt timed out after ${cfg.connectTimeout} ms` });
        return;
      }
      if (restored) {
        this.synPending = true;
        return;
      }
      this.counters.timeouts++;
      this.rtt.backOff();
      this.synPending = true;
      return;
    }
    if (this.sndNxt === this.sndUna) return;
    if (now >= this.progressTime + cfg.userTimeout || this.rtt.backoff >= cfg.maxRetransmits) {
      const silent = Math.round(now - this.progressTime);
      this.finish({ code: "timeout", message: `peer stopped acknowledging data (nothing acknowledged for ${silent} ms)` });
      return;
    }
    if (restored) {
      // The path is back: send what is outstanding again now, at the backoff reached so far.
      this.board.enterTimeout(this.sndUna, this.sndNxt, this.rtt.backoff >= 3);
      this.dupAcks = 0;
      this.mustRetransmit = true;
      this.pipe = this.board.pipe(this.sndUna, this.sndNxt, now);
      this.armRto(now);
      return;
    }
    if (this.probeTimer) {
      this.probeTimer = false;
      this.tlpPending = true;
      this.tlpOutstanding = true;
      this.counters.tailLossProbes++;
      this.armRto(now);
      return;
    }
    this.counters.timeouts++;
    this.cc.onTimeout(this.sndNxt - this.sndUna, this.rtt.backoff > 0);
    this.rtt.backOff();
    this.board.enterTimeout(this.sndUna, this.sndNxt, this.rtt.backoff >= 3);
    this.dupAcks = 0;
    this.mustRetransmit = true;
    this.pipe = this.board.pipe(this.sndUna, this.sndNxt, now);
    this.armRto(now);
  }

  private rttSample(r: number): void {
    this.rtt.sample(r);
    // RACK: data sent before data that has arrived is lost after one RTT plus a quarter
    // RTT of reordering allowance (and 1 ms for timer granularity).
    this.board.wait = this.rtt.srtt * 1.25 + 1;
  }

  /**
   * Loss detection after an ACK (`news`: it SACKed something new) or when time alone
   * may have made a hole lost: enter fast recovery on DupThresh duplicate ACKs or
   * when the first unacknowledged byte is lost; find lost retransmissions; update pipe.
   */
  private detectLoss(now: number, news: boolean): void {
    const board = this.board;
    if (
      board.mode === Recovery.None &&
      this.sndNxt > this.sndUna &&
      (this.dupAcks >= this.config.dupThresh || (news && board.isLost(this.sndUna, this.sndNxt, now)))
    ) {
      this.cc.onLossDetected(this.sndNxt - this.sndUna);
      board.enterFast(this.sndUna, this.sndNxt);
      this.mustRetransmit = true;
      this.dupAcks = 0;
      this.counters.fastRetransmits++;
    }
    if (board.hasRetransmissionsInFlight) board.detectLostRetransmissions(this.sndUna, now);
    this.pipe = board.pipe(this.sndUna, this.sndNxt, now);
  }

  private startPersist(now: number): void {
    if (this.persistInterval === 0) this.persistInterval = Math.min(this.rtt.rto, this.config.maxPersistInterval);
    if (this.zeroWindowSince < 0) this.zeroWindowSince = now;
    let t = Math.min(now + this.persistInterval, this.lastHeard + this.config.userTimeout);
    const zw = this.config.zeroWindowTimeout;
    if (zw > 0 && this.zeroWindowSince + zw < t) t = this.zeroWindowSince + zw;
    this.persistDeadline = t;
  }

  private onPersistTimeout(now: number): void {
    this.persistDeadline = Number.POSITIVE_INFINITY;
    if (this.sndNxt !== this.sndUna || !this.hasUnsentData() || this.peerEdge > this.sndNxt) {
      this.zeroWindowSince = -1;
      return;
    }
    if (now >= this.lastHeard + this.config.userTimeout) {
      this.finish({ code: "timeout", message: "peer stopped answering zero-window probes" });
      return;
    }
    const zw = this.config.zeroWindowTimeout;
    if (zw > 0 && this.zeroWindowSince >= 0 && now >= this.zeroWindowSince + zw) {
      const s = Math.round((now - this.zeroWindowSince) / 1000);
      this.queueReset(resetPayload(ResetReason.WindowClosed)); // the peer learns why
      this.finish({ code: "timeout", message: `the peer kept its receive window closed for ${s} s (it is not reading)` });
      return;
    }
    this.probePending = true;
    this.counters.zeroWindowProbesSent++;
    this.persistInterval = Math.min(this.persistInterval * 2, this.config.maxPersistInterval);
    this.startPersist(now);
  }

  private keepaliveDeadline(): number {
    const cfg = this.config;
    if (cfg.keepaliveIdle <= 0) return Number.POSITIVE_INFINITY;
    const st = this.st;
    if (st !== "established" && st !== "close-wait" && st !== "fin-wait-2") return Number.POSITIVE_INFINITY;
    // While data or a window probe is outstanding, the retransmission and persist timers watch the peer.
    if (this.sndNxt > this.sndUna || this.persistDeadline !== Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY;
    return this.keepaliveProbes === 0 ? this.lastHeard + cfg.keepaliveIdle : this.lastKeepalive + cfg.keepaliveInterval;
  }

  private onKeepaliveTimeout(now: number): void {
    const cfg = this.config;
    if (this.keepaliveProbes >= cfg.keepaliveCount) {
      this.finish({ code: "timeout", message: `peer did not answer ${cfg.keepaliveCount} keepalive probes` });
      return;
    }
    this.keepaliveProbes++;
    this.lastKeepalive = now;
    this.probePending = true;
    this.counters.keepalivesSent++;
  }

  // ------------------------------------------------------------------ helpers

  /** A method, not a property test, so TypeScript does not narrow `st` across calls that change it. */
  private isClosed(): boolean {
    return this.st === "closed";
  }

  private canWrite(): boolean {
    const st = this.st;
    return !this.finQueued && (st === "established" || st === "close-wait" || st === "syn-sent" || st === "syn-received");
  }

  private hasUnsentData(): boolean {
    return this.sendBuf.end > this.sndNxt - 1 || (this.finQueued && this.sndNxt <= this.finPos);
  }

  private enterTimeWait(now: number): void {
    this.st = "time-wait";
    this.releaseSend();
    this.releaseReceive();
    this.rtoDeadline = Number.POSITIVE_INFINITY;
    this.persistDeadline = Number.POSITIVE_INFINITY;
    this.probePending = false;
    this.timeWaitDeadline = now + this.config.timeWait;
  }

  private finish(error: StreamError | undefined): void {
    this.st = "closed";
    this.err = error;
    this.rtoDeadline = Number.POSITIVE_INFINITY;
    this.persistDeadline = Number.POSITIVE_INFINITY;
    this.timeWaitDeadline = Number.POSITIVE_INFINITY;
    this.ackState = ACK_NONE;
    this.probePending = false;
    this.synPending = false;
    this.mustRetransmit = false;
    this.tlpPending = false;
    this.sendBuf.release(this.sendBuf.end);
    this.releaseSend();
    this.releaseReceive();
    this.emit(error ? { type: "closed", error } : { type: "closed" });
  }

  private emit(ev: StreamEvent): void {
    this.events.push(ev);
  }
}
