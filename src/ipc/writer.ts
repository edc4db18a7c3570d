/**
 * Outbound side of one IPC connection: frames are appended to one growing
 * buffer and written with a single socket write per turn of the event loop
 * (a microtask after the code that produced them), so many small frames cost
 * one syscall. Adjacent DATA frames for the same stream are merged. When the
 * socket takes less than offered, the rest waits for `drain()`; nothing is
 * dropped and nothing is written out of order.
 *
 * Memory is bounded by the protocol, not here: stream bytes are only sent
 * within the peer's credit, and owners stop producing above `highWater`.
 */
import { FRAME_HEADER_SIZE, FrameType, MAX_DATA_CHUNK } from "./frames.ts";

/** The part of a Bun socket the writer needs: write returns bytes taken, or -1 when closed. */
export interface ByteSink {
  write(data: Uint8Array, byteOffset?: number, byteLength?: number): number;
}

const INITIAL_CAPACITY = 64 * 1024;
const SHRINK_ABOVE = 4 * 1024 * 1024;

export class FrameWriter {
  private buf = new Uint8Array(INITIAL_CAPACITY);
  private view = new DataView(this.buf.buffer);
  private len = 0;
  /** Bytes already cut out of `buf` that the socket has not taken yet, oldest first. */
  private queue: Uint8Array[] = [];
  private queued = 0;
  private flushScheduled = false;
  /** Offset of the last frame in `buf` if it is a DATA frame that can still grow, else -1. */
  private lastDataAt = -1;
  private lastDataStream = -1;
  private dead = false;
  /** Bytes the socket has taken since the writer was made. */
  private written = 0;
  /** Callbacks waiting until the socket has taken `mark` bytes in all, oldest (smallest mark) first. */
  private flushWaiters: { mark: number; done: () => void }[] = [];

  /** Called just before bytes go to the socket: the owner appends coalesced frames (credits). */
  beforeFlush: (() => void) | null = null;
  /** Called when the backlog has fallen to or below `highWater` after a flush or a drain. */
  onWritable: (() => void) | null = null;
  /** Called once if the socket reports it is closed. */
  onDead: (() => void) | null = null;

  constructor(
    private readonly sink: ByteSink,
    readonly highWater: number = 1024 * 1024,
  ) {}

  /** Bytes accepted but not yet taken by the socket. */
  get backlog(): number {
    return this.len + this.queued;
  }

  get isDead(): boolean {
    return this.dead;
  }

  /** Appends an encoded frame. */
  append(frame: Uint8Array): void {
    if (this.dead) return;
    this.reserve(frame.length);
    this.buf.set(frame, this.len);
    this.len += frame.length;
    this.lastDataAt = -1;
    this.scheduleFlush();
  }

  /** Appends `data[start, end)` as DATA frames for `stream`, merging with the previous frame when possible. */
  appendData(stream: number, data: Uint8Array, start = 0, end = data.length): void {
    if (this.dead) return;
    while (start < end) {
      if (this.lastDataAt >= 0 && this.lastDataStream === stream) {
        const carried = this.len - this.lastDataAt - 9;
        const room = MAX_DATA_CHUNK - carried;
        if (room > 0) {
          const n = Math.min(room, end - start);
          this.reserve(n);
          this.buf.set(data.subarray(start, start + n), this.len);
          this.len += n;
          this.view.setUint32(this.lastDataAt, 1 + 4 + carried + n);
          start += n;
          continue;
        }
      }
      const n = Math.min(MAX_DATA_CHUNK, end - start);
      this.reserve(9 + n);
      const at = this.len;
      this.view.setUint32(at, 1 + 4 + n);
      this.buf[at + 4] = FrameType.Data;
      this.view.setUint32(at + 5, stream);
      this.buf.set(data.subarray(start, start + n), at + 9);
      this.len += 9 + n;
      this.lastDataAt = at;
      this.lastDataStream = stream;
      start += n;
    }
    this.scheduleFlush();
  }

  /** Appends a frame whose payload is a u32 stream id and optionally one more u32 (FIN, CLOSE, CREDIT). */
  appendStreamFrame(type: number, stream: number, extra?: number): void {
    if (this.dead) return;
    const payload = extra === undefined ? 4 : 8;
    this.reserve(FRAME_HEADER_SIZE + payload);
    const at = this.len;
    this.view.setUint32(at, 1 + payload);
    this.buf[at + 4] = type;
    this.view.setUint32(at + 5, stream);
    if (extra !== undefined) this.view.setUint32(at + 9, extra);
    this.len += FRAME_HEADER_SIZE + payload;
    this.lastDataAt = -1;
    this.scheduleFlush();
  }

  /**
   * Calls `done` once the socket has taken every byte appended so far (bytes
   * appended later do not delay it), or at once if the writer is dead: a
   * stream's end callback fires only when its FIN is in the kernel, so a
   * process may exit right after it without losing data.
   */
  whenFlushed(done: () => void): void {
    if (this.dead || this.backlog === 0) return done();
    this.flushWaiters.push({ mark: this.written + this.backlog, done });
    this.scheduleFlush();
  }

  private settleWaiters(): void {
    while (this.flushWaiters.length > 0 && this.flushWaiters[0]!.mark <= this.written) this.flushWaiters.shift()!.done();
  }

  /** Writes now what can be written (normally called from the scheduled microtask). */
  flush(): void {
    if (this.dead) return;
    this.beforeFlush?.();
    this.flushScheduled = false;
    if (this.queue.length > 0) {
      // Blocked on the socket: new frames keep collecting in `buf` until drain.
      return;
    }
    if (this.len > 0) {
      const written = this.sink.write(this.buf, 0, this.len);
      if (written < 0) return this.die();
      this.written += written;
      if (written < this.len) {
        const rest = this.buf.slice(written, this.len);
        this.queue.push(rest);
        this.queued += rest.length;
      }
      this.len = 0;
      this.lastDataAt = -1;
      if (this.buf.length > SHRINK_ABOVE) {
        this.buf = new Uint8Array(INITIAL_CAPACITY);
        this.view = new DataView(this.buf.buffer);
      }
    }
    this.settleWaiters();
    if (this.backlog <= this.highWater) this.onWritable?.();
  }

  /** To be called from the socket's drain handler. */
  drain(): void {
    if (this.dead) return;
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const written = this.sink.write(head, 0, head.length);
      if (written < 0) return this.die();
      this.queued -= Math.max(0, written);
      this.written += Math.max(0, written);
      if (written < head.length) {
        this.queue[0] = head.subarray(written);
        return;
      }
      this.queue.shift();
    }
    this.flush();
  }

  /** Drops everything; later appends are ignored. Whoever waits in `whenFlushed` is released (the connection's end is reported elsewhere). */
  discard(): void {
    this.dead = true;
    this.queue = [];
    this.queued = 0;
    this.len = 0;
    this.beforeFlush = null;
    this.onWritable = null;
    const waiters = this.flushWaiters;
    this.flushWaiters = [];
    for (const w of waiters) w.done();
  }

  private die(): void {
    const onDead = this.onDead;
    this.discard();
    this.onDead = null;
    onDead?.();
  }

  /** Arranges a flush after the current code (one per turn, however many frames). */
  scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => this.flush());
  }

  private reserve(extra: number): void {
    const need = this.len + extra;
    if (need <= this.buf.length) return;
    let capacity = this.buf.length * 2;
    while (capacity < need) capacity *= 2;
    const next = new Uint8Array(capacity);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
}
