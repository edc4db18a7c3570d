/**
 * Length-prefixed frames over one daemon stream, for services: `u32 length`
 * (big-endian) then `length` bytes, each frame one message of the service's
 * codec (src/protocol/). Reading never buffers more than one frame of at most
 * `maxFrame` bytes (a larger length aborts the stream before its body is read);
 * writing queues what the stream's send buffer does not take and says when the
 * queue passes `highWater`, so a service can wait for `onDrain`. Nagle is off
 * on the stream: each frame is a message that goes out at the end of the turn.
 *
 *   new FramedStream(stream, { maxFrame, onFrame, onEnd?, onClose?, onViolation? })
 *   send(body): boolean        false once more than highWater bytes wait: stop and wait for onDrain
 *   pause() / resume()          stop / restart delivering frames (the stream's window closes meanwhile)
 *   end()                       half-close after everything queued
 *   close() / abort()
 */
import type { NodeError, StreamHandle } from "../local-node.ts";

export interface FramedStreamOptions {
  /** Largest frame body accepted from the peer. */
  readonly maxFrame: number;
  /** Bytes waiting to be written above which `send` returns false (default 256 KiB). */
  readonly highWater?: number;
  /** One complete frame from the peer. The body is a fresh buffer the service may keep. */
  onFrame(body: Uint8Array): void;
  /** The peer half-closed after its last complete frame. */
  onEnd?(): void;
  /** The stream is over (gracefully, or with the error). Called once. */
  onClose?(error?: NodeError): void;
  /** The peer broke the framing (oversized or truncated frame); the stream is aborted. */
  onViolation?(reason: string): void;
}

const HEADER = 4;
const READ_CHUNK = 64 * 1024;

export class FramedStream {
  /** Called when the write queue falls back under highWater after `send` returned false. */
  onDrain: (() => void) | null = null;
  private readonly highWater: number;
  private readonly header = new Uint8Array(HEADER);
  private headerHave = 0;
  private body: Uint8Array | null = null;
  private bodyHave = 0;
  private readonly queue: Uint8Array[] = [];
  private queued = 0;
  private wantDrain = false;
  private paused = false;
  private ending = false;
  private ended = false;
  private closed = false;
  private peerEnded = false;

  constructor(
    readonly stream: StreamHandle,
    private readonly options: FramedStreamOptions,
  ) {
    this.highWater = options.highWater ?? 256 * 1024;
    // Every send is a whole message that someone waits for: Nagle would hold a small
    // one back for the peer's delayed ACK (tens of ms per request and reply).
    stream.setNoDelay(true);
    stream.onEvent = (e) => {
      switch (e.type) {
        case "readable":
          return this.pump();
        case "writable":
          return this.flush();
        case "end":
          this.peerEnded = true;
          return this.pump();
        case "closed":
          return this.finish(e.error);
      }
    };
  }

  get remoteAddress() {
    return this.stream.remoteAddress;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Bytes waiting to be written. */
  get backlog(): number {
    return this.queued;
  }

  send(body: Uint8Array): boolean {
    if (this.closed || this.ending) return false;
    const head = new Uint8Array(HEADER);
    new DataView(head.buffer).setUint32(0, body.length);
    this.queue.push(head, body);
    this.queued += HEADER + body.length;
    this.flush();
    if (this.queued > this.highWater) {
      this.wantDrain = true;
      return false;
    }
    return true;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.pump();
  }

  end(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    this.flush();
  }

  close(): void {
    if (this.closed) return;
    this.stream.close();
    this.finish(undefined);
  }

  abort(): void {
    if (this.closed) return;
    this.stream.abort();
    this.finish(undefined);
  }

  private flush(): void {
    while (this.queue.length > 0 && !this.closed) {
      const head = this.queue[0]!;
      const n = this.stream.write(head);
      this.queued -= n;
      if (n < head.length) {
        this.queue[0] = head.subarray(n);
        return;
      }
      this.queue.shift();
    }
    if (this.closed) return;
    if (this.wantDrain && this.queued <= this.highWater) {
      this.wantDrain = false;
      this.onDrain?.();
    }
    if (this.ending && !this.ended && this.queue.length === 0) {
      this.ended = true;
      this.stream.shutdown();
    }
  }

  private pump(): void {
    while (!this.paused && !this.closed) {
      const want = this.body ? this.body.length - this.bodyHave : HEADER - this.headerHave;
      const chunk = this.stream.read(Math.min(want, READ_CHUNK));
      if (!chunk) break;
      if (this.body) {
        this.body.set(chunk, this.bodyHave);
        this.bodyHave += chunk.length;
      } else {
        this.header.set(chunk, this.headerHave);
        this.headerHave += chunk.length;
        if (this.headerHave < HEADER) continue;
        const length = new DataView(this.header.buffer).getUint32(0);
        this.headerHave = 0;
        if (length > this.options.maxFrame) return this.violate(`frame of ${length} bytes is larger than ${this.options.maxFrame}`);
        this.body = new Uint8Array(length);
        this.bodyHave = 0;
      }
      if (this.body && this.bodyHave === this.body.length) {
        const frame = this.body;
        this.body = null;
        try {
          this.options.onFrame(frame);
        } catch (e) {
          return this.violate(`frame rejected: ${(e as Error).message}`);
        }
      }
    }
    if (this.peerEnded && !this.paused && !this.closed) {
      if (this.body || this.headerHave > 0) return this.violate("the stream ended in the middle of a frame");
      this.peerEnded = false; // tell once
      this.options.onEnd?.();
    }
  }

  private violate(reason: string): void {
    this.options.onViolation?.(reason);
    this.abort();
  }

  private finish(error: NodeError | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.queued = 0;
    this.body = null;
    this.stream.onEvent = null;
    this.options.onClose?.(error);
  }
}
