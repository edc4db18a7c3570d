/**
 * One client's stream to the broker, as the broker writes to it: frames in
 * (split by the codec's FrameReader, at most one partial frame held) and a
 * write queue of whole frames out, with exact accounting of the bytes and
 * events waiting, so the broker can tell a slow subscriber before it costs
 * more than its bound.
 *
 * Unlike FramedStream (request/response services), the queue takes batches
 * of frames that are already framed and shared between subscribers (no copy,
 * no per-frame header), and a subscriber that is cut can have what is queued
 * for it dropped at once (`dropQueued`): only a batch the stream has begun to
 * take is finished, so the framing stays intact for the reason frame after it.
 *
 *   write(frames, events)     queue whole frames (never refuses: the broker checks `backlog` first)
 *   backlog / backlogEvents   what waits for the stream
 *   pause() / resume()        stop / restart reading frames (the stream's window closes meanwhile)
 *   dropQueued()              forget queued batches the stream has not begun to take
 *   end()                     half-close after the queue; close() / abort()
 */
import { FrameReader } from "../../../protocol/pubsub.ts";
import type { NodeError, StreamHandle } from "../../local-node.ts";

export interface ConnectionHandlers {
  /** One frame body from the client (a fresh buffer). */
  onFrame(body: Uint8Array): void;
  /** The client half-closed between frames. */
  onEnd(): void;
  /** The client broke the framing (oversized or truncated frame): the stream is aborted after this. */
  onViolation(reason: string): void;
  /** The stream is over. Called once. */
  onClose(error?: NodeError): void;
  /** The queue emptied below `lowWater` after being above `highWater` (for pausing a publisher on unread acks). */
  onDrain?(): void;
}

const READ_CHUNK = 64 * 1024;

export class PubsubConnection {
  private readonly reader: FrameReader;
  private readonly queue: Uint8Array[] = [];
  /** Events in each queued batch (parallel to `queue`). */
  private readonly queueEvents: number[] = [];
  /** Bytes of queue[0] the stream has taken already. */
  private headOffset = 0;
  private bytes = 0;
  private events = 0;
  private paused = false;
  private ending = false;
  private ended = false;
  private closed = false;
  private wantDrain = false;

  constructor(
    readonly stream: StreamHandle,
    maxFrame: number,
    private readonly handlers: ConnectionHandlers,
    private readonly lowWater = 64 * 1024,
  ) {
    this.reader = new FrameReader(maxFrame);
    stream.onEvent = (e) => {
      switch (e.type) {
        case "readable":
          return this.pump();
        case "writable":
          return this.flush();
        case "end":
          return this.peerEnded();
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

  get backlog(): number {
    return this.bytes;
  }

  get backlogEvents(): number {
    return this.events;
  }

  write(frames: Uint8Array, events = 0): void {
    if (this.closed || this.ending || frames.length === 0) return;
    this.queue.push(frames);
    this.queueEvents.push(events);
    this.bytes += frames.length;
    this.events += events;
    this.flush();
  }

  /** Asks for `onDrain` once the queue is back under the low-water mark. */
  notifyDrain(): void {
    this.wantDrain = true;
    if (this.bytes <= this.lowWater) this.flush();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused || this.closed) return;
    this.paused = false;
    this.pump();
  }

  /** Forgets every queued batch the stream has not begun to take. */
  dropQueued(): void {
    const keep = this.headOffset > 0 ? 1 : 0;
    for (let i = keep; i < this.queue.length; i++) {
      this.bytes -= this.queue[i]!.length;
      this.events -= this.queueEvents[i]!;
    }
    this.queue.length = keep;
    this.queueEvents.length = keep;
  }

  /** Half-closes after everything queued; reading continues. */
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
      const rest = this.headOffset === 0 ? head : head.subarray(this.headOffset);
      const n = this.stream.write(rest);
      this.bytes -= n;
      if (n < rest.length) {
        this.headOffset += n;
        break;
      }
      this.events -= this.queueEvents[0]!;
      this.queue.shift();
      this.queueEvents.shift();
      this.headOffset = 0;
    }
    if (this.closed) return;
    if (this.wantDrain && this.bytes <= this.lowWater) {
      this.wantDrain = false;
      this.handlers.onDrain?.();
    }
    if (this.ending && !this.ended && this.queue.length === 0) {
      this.ended = true;
      this.stream.shutdown();
    }
  }

  private pump(): void {
    while (!this.paused && !this.closed) {
      const chunk = this.stream.read(READ_CHUNK);
      if (!chunk) return;
      const r = this.reader.push(chunk);
      if (!r.ok) return this.violate(r.error.message);
      for (const body of r.value) {
        if (this.closed) return;
        this.handlers.onFrame(body);
      }
    }
  }

  /** The peer's FIN: every byte before it has been read (StreamHandle's "end"). */
  private peerEnded(): void {
    if (this.closed) return;
    if (this.reader.midFrame) return this.violate("the stream ended in the middle of a frame");
    this.handlers.onEnd();
  }

  private violate(reason: string): void {
    this.handlers.onViolation(reason);
    this.abort();
  }

  private finish(error: NodeError | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.queueEvents.length = 0;
    this.bytes = 0;
    this.events = 0;
    this.stream.onEvent = null;
    this.handlers.onClose(error);
  }
}
