/**
 * Fuzz of FramedStream's framing (src/daemon/services/framed-stream.ts), the
 * `u32 length | body` layer under ports 1001 and 1003, over a scripted
 * StreamHandle: the handle is the seam FramedStream is written against, and
 * here it hands out bytes in random pieces (reads shorter than asked) and
 * takes writes in random pieces, with pause/resume, sends and half-closes
 * interleaved at random. Reading: every frame arrives in order and byte-exact;
 * an oversized length or an end in the middle of a frame is a violation that
 * aborts the stream (nothing after it is delivered), and a clean end is told
 * once. Writing: the peer gets exactly `u32 length | body` per frame in order,
 * `send` says false only above highWater, onDrain follows, `end` half-closes
 * after the last byte.
 */
import { expect, test } from "bun:test";
import type { StreamEvent, StreamHandle } from "../../src/daemon/local-node.ts";
import { FramedStream } from "../../src/daemon/services/framed-stream.ts";
import { randomBytes, seededRandom } from "../support/fuzz.ts";

const CASES = Number(process.env.PILOT_FUZZ_CASES ?? 100_000);
const MAX_FRAME = 200;
const HIGH_WATER = 256;

class ScriptedHandle implements StreamHandle {
  readonly id = 1;
  readonly localPort = 1001;
  readonly remoteAddress = { network: 0, node: 2 } as unknown as StreamHandle["remoteAddress"];
  readonly remotePort = 49152;
  onEvent: ((event: StreamEvent) => void) | null = null;
  /** Bytes that have arrived and not been read. */
  private inbound: Uint8Array = new Uint8Array(0);
  /** What the peer received from us. */
  readonly out: Uint8Array[] = [];
  /** Bytes write() may still take. */
  room = 0;
  shutdowns = 0;
  aborted = false;
  closed = false;

  constructor(private readonly rand: () => number) {}

  arrive(bytes: Uint8Array): void {
    const next = new Uint8Array(this.inbound.length + bytes.length);
    next.set(this.inbound);
    next.set(bytes, this.inbound.length);
    this.inbound = next;
  }

  write(data: Uint8Array): number {
    if (this.aborted || this.closed) return 0;
    const n = Math.min(data.length, this.room);
    if (n > 0) this.out.push(data.slice(0, n));
    this.room -= n;
    return n;
  }

  read(max: number): Uint8Array | null {
    if (this.inbound.length === 0) return null;
    // A read may return less than asked and less than is there, as a real stream's may.
    const n = Math.max(1, Math.min(max, this.inbound.length, 1 + Math.floor(this.rand() * 64)));
    const chunk = this.inbound.slice(0, n);
    this.inbound = this.inbound.subarray(n);
    return chunk;
  }

  shutdown(): void {
    this.shutdowns++;
  }
  close(): void {
    this.closed = true;
  }
  abort(): void {
    this.aborted = true;
  }
  setNoDelay(): void {}

  emit(event: StreamEvent): void {
    this.onEvent?.(event);
  }
}

function frameBytes(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

test(`FramedStream: ${CASES} scripted streams of frames, pieces, pauses and sends: order, exactness, violations and half-close hold`, () => {
  const rand = seededRandom(41);
  const pick = (n: number) => Math.floor(rand() * n);
  let violations = 0;
  let cleanEnds = 0;
  for (let i = 0; i < CASES; i++) {
    const h = new ScriptedHandle(rand);
    const frames: Uint8Array[] = [];
    const ends: number[] = [];
    const closes: unknown[] = [];
    const violated: string[] = [];
    let drains = 0;
    let paused = false;
    let deliveredWhilePaused = 0;
    const fs = new FramedStream(h, {
      maxFrame: MAX_FRAME,
      highWater: HIGH_WATER,
      onFrame: (b) => {
        if (paused) deliveredWhilePaused++;
        frames.push(b);
      },
      onEnd: () => ends.push(frames.length),
      onClose: (e) => closes.push(e),
      onViolation: (r) => violated.push(r),
    });
    fs.onDrain = () => drains++;

    // What the peer sends: frames, maybe an oversized length, maybe cut short.
    const sentBodies: Uint8Array[] = [];
    const parts: Uint8Array[] = [];
    let expectViolation = false;
    let oversized = false;
    const count = pick(6);
    for (let k = 0; k < count; k++) {
      const r = rand();
      if (r < 0.06) {
        const head = new Uint8Array(4);
        new DataView(head.buffer).setUint32(0, MAX_FRAME + 1 + (rand() < 0.5 ? 0 : pick(0xffffff)));
        parts.push(head, randomBytes(rand, pick(20)));
        expectViolation = true;
        oversized = true;
        break;
      }
      const body = randomBytes(rand, r < 0.1 ? 0 : r < 0.15 ? MAX_FRAME : pick(80));
      if (k === count - 1 && rand() < 0.1) {
        // Cut in the middle of the header or the body, then the peer's FIN.
        const whole = frameBytes(body);
        parts.push(whole.subarray(0, 1 + pick(whole.length - 1)));
        expectViolation = true;
        break;
      }
      sentBodies.push(body);
      parts.push(frameBytes(body));
    }
    const inbound = Buffer.concat(parts);

    // What we send meanwhile.
    const ours: Uint8Array[] = [];
    let expectedQueued = 0;
    let ending = false;
    let sawFull = false;
    let at = 0;
    let finSent = false;
    for (let step = 0; step < 400; step++) {
      if (h.aborted) break;
      const r = rand();
      if (r < 0.35 && at < inbound.length) {
        const n = 1 + pick(24);
        h.arrive(inbound.subarray(at, at + n));
        at += n;
        h.emit({ type: "readable" });
      } else if (r < 0.45) {
        paused = !paused;
        if (paused) fs.pause();
        else fs.resume();
      } else if (r < 0.6 && !ending) {
        const body = randomBytes(rand, pick(120));
        const before = fs.backlog;
        const accepted = fs.send(body);
        ours.push(body);
        expectedQueued = before + 4 + body.length;
        if (!accepted) sawFull = true;
        // false only when more than highWater waits (after what the stream took at once).
        if (accepted !== fs.backlog <= HIGH_WATER || fs.backlog > expectedQueued) throw new Error(`case ${i}: send said ${accepted} with ${fs.backlog} queued`);
      } else if (r < 0.8) {
        h.room += pick(200);
        h.emit({ type: "writable" });
      } else if (r < 0.83 && !ending && rand() < 0.3) {
        ending = true;
        fs.end();
        if (fs.send(new Uint8Array(1))) throw new Error(`case ${i}: send after end() accepted`);
      } else if (at >= inbound.length && !finSent && rand() < 0.2) {
        finSent = true;
        h.emit({ type: "end" });
      }
      if (at >= inbound.length && finSent && !paused && fs.backlog === 0 && (ending ? h.shutdowns > 0 : true)) break;
    }
    // Settle: everything arrives, the peer half-closes, we resume and the stream takes all we queued.
    if (!h.aborted) {
      if (at < inbound.length) {
        h.arrive(inbound.subarray(at));
        at = inbound.length;
        h.emit({ type: "readable" });
      }
      if (paused) {
        paused = false;
        fs.resume();
      }
      if (!finSent) h.emit({ type: "end" });
      h.room += 1 << 20;
      h.emit({ type: "writable" });
    }

    try {
      expect(deliveredWhilePaused).toBe(0);
      // Reading: the frames that arrived, in order and exact; a violation iff the peer broke the framing.
      expect(frames.length).toBe(sentBodies.length);
      expect(Buffer.concat(frames).equals(Buffer.concat(sentBodies))).toBe(true);
      expect(frames.map((f) => f.length)).toEqual(sentBodies.map((b) => b.length));
      if (expectViolation) {
        violations++;
        expect(violated.length).toBe(1);
        // An oversized length is refused as soon as its header is read, not when the stream ends.
        expect(violated[0]).toMatch(oversized ? /larger than/ : /ended in the middle of a frame/);
        expect(h.aborted).toBe(true);
        expect(fs.isClosed).toBe(true);
        expect(closes.length).toBe(1);
        expect(ends).toEqual([]);
      } else {
        cleanEnds++;
        expect(violated).toEqual([]);
        expect(h.aborted).toBe(false);
        expect(ends).toEqual([frames.length]);
        // Writing: exactly our frames, in order; end() half-closes once, after the last byte.
        expect(Buffer.concat(h.out).equals(Buffer.concat(ours.map(frameBytes)))).toBe(true);
        expect(fs.backlog).toBe(0);
        expect(h.shutdowns).toBe(ending ? 1 : 0);
        // A send that said false was followed by onDrain once the queue went down.
        if (sawFull) expect(drains).toBeGreaterThan(0);
      }
    } catch (e) {
      throw new Error(`case ${i} (seed 41): ${e} ending=${ending} backlog=${fs.backlog} out=${h.out.length} closed=${fs.isClosed} closes=${closes.length} aborted=${h.aborted}`);
    }
  }
  expect(violations).toBeGreaterThan(CASES / 50);
  expect(cleanEnds).toBeGreaterThan(CASES / 2);
});
