/**
 * One port-1001 stream, either side: exchange frames (src/protocol/exchange.ts)
 * over a FramedStream. A frame that does not decode ends the stream with a
 * `bad_frame` refusal and is counted; it never throws into the daemon.
 *
 * Frames go to `handler.onFrame` when a handler is set (the receiving
 * services), else they queue for `receive()` (the sending side, which waits
 * for an answer at a time; the queue is bounded).
 */
import { formatAddress, type Address } from "../../../protocol/address.ts";
import { decodeExchangeFrame, encodeExchangeFrame, errorFrame, EXCHANGE_MAX_FRAME, ExchangeError, ZERO_REF, type ExchangeFrame } from "../../../protocol/exchange.ts";
import { NodeError, type StreamHandle } from "../../local-node.ts";
import { FramedStream } from "../framed-stream.ts";

export interface ConnectionHandler {
  onFrame(frame: ExchangeFrame): void;
  /** The peer half-closed. */
  onEnd?(): void;
  /** The stream is over; called once. */
  onClose?(error?: NodeError): void;
}

/** Frames a sender may have waiting unread (answers come one at a time; more is a broken peer). */
const RECEIVE_QUEUE_MAX = 64;
/** How long a refused stream waits for the peer to read the refusal and close before it is cut. */
const REFUSE_LINGER_MS = 5_000;

export class ExchangeConnection {
  handler: ConnectionHandler | null = null;
  /** Frames that did not decode (the stream is ended at the first). */
  badFrames = 0;
  /** Milliseconds since the epoch of the last frame in either direction. */
  lastActivity = Date.now();
  private readonly framed: FramedStream;
  private readonly queue: ExchangeFrame[] = [];
  private waiting: { resolve: (f: ExchangeFrame) => void; reject: (e: NodeError) => void; timer: ReturnType<typeof setTimeout> | null } | null = null;
  private closeError: NodeError | null = null;
  private closedFlag = false;
  private lingerTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly closeListeners: ((error?: NodeError) => void)[] = [];

  constructor(stream: StreamHandle, private readonly onBadFrame?: (reason: string) => void) {
    this.framed = new FramedStream(stream, {
      maxFrame: EXCHANGE_MAX_FRAME,
      onFrame: (body) => this.frame(body),
      onEnd: () => {
        if (this.handler?.onEnd) this.handler.onEnd();
        else this.fail(new NodeError("connection_reset", "the peer ended the stream"), false);
      },
      onClose: (error) => this.closed(error),
      onViolation: (reason) => this.onBadFrame?.(reason),
    });
  }

  get remote(): Address {
    return this.framed.remoteAddress;
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  set onDrain(fn: (() => void) | null) {
    this.framed.onDrain = fn;
  }

  /** Queues a frame; false once more than the high-water mark waits (wait for onDrain). */
  send(frame: ExchangeFrame): boolean {
    this.lastActivity = Date.now();
    return this.framed.send(encodeExchangeFrame(frame));
  }

  /** Queues a frame body the caller encoded itself (file_data read straight into its frame); as `send`. */
  sendBody(body: Uint8Array): boolean {
    this.lastActivity = Date.now();
    return this.framed.send(body);
  }

  /** Resolves once the queue is under the high-water mark again (at once if it is). */
  drained(): Promise<void> {
    if (this.framed.backlog <= 256 * 1024 || this.closedFlag) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.framed.onDrain = null;
        resolve();
      };
      this.framed.onDrain = done;
      this.closeListeners.push(() => done());
    });
  }

  /** The next frame from the peer; rejects when the stream closes or `timeoutMs` passes. */
  receive(timeoutMs: number): Promise<ExchangeFrame> {
    const next = this.queue.shift();
    if (next) return Promise.resolve(next);
    if (this.closeError) return Promise.reject(this.closeError);
    if (this.waiting) return Promise.reject(new NodeError("internal", "receive() while another receive() waits"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new NodeError("timeout", `no answer from ${formatAddress(this.remote)} within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.waiting = { resolve, reject, timer };
    });
  }

  pause(): void {
    this.framed.pause();
  }

  resume(): void {
    this.framed.resume();
  }

  /** Sends a refusal and half-closes; the stream is cut if the peer does not close it soon. */
  refuse(code: string, message: string, ref: Uint8Array = ZERO_REF): void {
    if (this.closedFlag) return;
    this.handler = { onFrame: () => {} }; // ignore whatever was already on its way
    this.framed.send(encodeExchangeFrame(errorFrame(code, message, ref)));
    this.framed.end();
    this.lingerTimer = setTimeout(() => this.abort(), REFUSE_LINGER_MS);
    this.lingerTimer.unref?.();
  }

  /** Half-close after everything queued. */
  end(): void {
    this.framed.end();
  }

  close(): void {
    this.framed.close();
  }

  abort(): void {
    this.framed.abort();
  }

  onceClosed(fn: (error?: NodeError) => void): void {
    if (this.closedFlag) fn(this.closeError ?? undefined);
    else this.closeListeners.push(fn);
  }

  private frame(body: Uint8Array): void {
    this.lastActivity = Date.now();
    // FramedStream hands each frame in a fresh buffer nobody else holds: data frames may view it.
    const r = decodeExchangeFrame(body, { view: true });
    if (!r.ok) {
      this.badFrames++;
      this.onBadFrame?.(`${r.error.code}: ${r.error.message}`);
      this.refuse(ExchangeError.BadFrame, `a frame that does not decode (${r.error.message})`);
      return;
    }
    if (this.handler) return this.handler.onFrame(r.value);
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      if (w.timer) clearTimeout(w.timer);
      return w.resolve(r.value);
    }
    if (this.queue.length >= RECEIVE_QUEUE_MAX) {
      this.onBadFrame?.("the peer sent more answers than were asked for");
      return this.abort();
    }
    this.queue.push(r.value);
  }

  private fail(error: NodeError, abort: boolean): void {
    this.closeError ??= error;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      if (w.timer) clearTimeout(w.timer);
      w.reject(error);
    }
    if (abort) this.abort();
  }

  private closed(error?: NodeError): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.fail(error ?? new NodeError("connection_reset", "the stream closed"), false);
    this.handler?.onClose?.(error);
    for (const fn of this.closeListeners.splice(0)) fn(error);
  }
}
