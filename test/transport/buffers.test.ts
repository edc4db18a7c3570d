import { describe, expect, test } from "bun:test";
import { ReceiveQueue, ReorderBuffer } from "../../src/transport/receive-buffer.ts";
import { SEND_CHUNK_SIZE, SendBuffer } from "../../src/transport/send-buffer.ts";
import { Prng } from "../support/prng.ts";

describe("SendBuffer", () => {
  test("slices any range exactly, across chunk boundaries, and releases acknowledged bytes", () => {
    const rng = new Prng(11);
    const data = rng.fill(new Uint8Array(5 * SEND_CHUNK_SIZE + 123));
    const buf = new SendBuffer();
    let written = 0;
    while (written < data.length) {
      const n = Math.min(data.length - written, rng.int(1, 40_000));
      expect(buf.write(data.subarray(written, written + n), Number.POSITIVE_INFINITY)).toBe(n);
      written += n;
    }
    expect(buf.length).toBe(data.length);
    for (let i = 0; i < 500; i++) {
      const off = rng.int(buf.start, buf.end - 1);
      const len = Math.min(buf.end - off, rng.int(1, 1240));
      expect(buf.slice(off, len)).toEqual(data.subarray(off, off + len));
      if (rng.chance(0.05)) buf.release(Math.min(buf.end - 1, buf.start + rng.int(0, 20_000)));
    }
    buf.release(buf.end);
    expect(buf.length).toBe(0);
  });

  test("write stops at the given limit (backpressure)", () => {
    const buf = new SendBuffer();
    expect(buf.write(new Uint8Array(100), 40)).toBe(40);
    expect(buf.length).toBe(40);
  });

  test("an in-chunk slice is a view, not a copy", () => {
    const buf = new SendBuffer();
    buf.write(new Uint8Array(3000).fill(7), 3000);
    const a = buf.slice(0, 1000);
    const b = buf.slice(0, 1000);
    expect(a.buffer).toBe(b.buffer);
  });
});

describe("ReceiveQueue", () => {
  test("reads across pieces, honouring max", () => {
    const q = new ReceiveQueue();
    q.push(new Uint8Array([1, 2, 3]));
    q.push(new Uint8Array([4, 5]));
    q.push(new Uint8Array([6]));
    expect(q.read(2)).toEqual(new Uint8Array([1, 2]));
    expect(q.read(3)).toEqual(new Uint8Array([3, 4, 5]));
    expect(q.length).toBe(1);
    expect(q.read()).toEqual(new Uint8Array([6]));
    expect(q.read().length).toBe(0);
  });
});

describe("ReorderBuffer", () => {
  test("stores only new bytes of overlapping pieces and drains them in order", () => {
    const r = new ReorderBuffer();
    const bytes = (from: number, to: number) => Uint8Array.from({ length: to - from }, (_, i) => (from + i) & 0xff);
    expect(r.insert(20, bytes(20, 30))).toBe(10);
    expect(r.insert(40, bytes(40, 50))).toBe(10);
    expect(r.insert(15, bytes(15, 45))).toBe(15); // fills [15,20) and [30,40) only
    expect(r.insert(25, bytes(25, 35))).toBe(0);
    const q = new ReceiveQueue();
    expect(r.drain(10, q)).toBe(10); // a gap at [10,15): nothing moves
    expect(q.length).toBe(0);
    expect(r.drain(17, q)).toBe(50); // [17,50) becomes contiguous
    expect(q.read()).toEqual(bytes(17, 50));
    expect(r.isEmpty).toBe(true);
  });

  test("SACK blocks put the most recent arrival first and merge ranges", () => {
    const r = new ReorderBuffer();
    r.insert(100, new Uint8Array(10));
    r.insert(200, new Uint8Array(10));
    r.insert(110, new Uint8Array(10)); // merges with [100,110)
    r.insert(300, new Uint8Array(10));
    const base = 0xffff_fff0; // wire numbers wrap
    const blocks = r.sackBlocks(base);
    expect(blocks[0]).toEqual({ start: (base + 300) >>> 0, end: (base + 310) >>> 0 });
    expect(blocks[1]).toEqual({ start: (base + 100) >>> 0, end: (base + 120) >>> 0 });
    expect(blocks[2]).toEqual({ start: (base + 200) >>> 0, end: (base + 210) >>> 0 });
    expect(blocks.length).toBe(3);
  });
});

describe("ReceiveQueue.readInto", () => {
  test("copies across pieces into the caller's buffer", () => {
    const q = new ReceiveQueue();
    q.push(new Uint8Array([1, 2, 3]));
    q.push(new Uint8Array([4, 5]));
    const dest = new Uint8Array(6);
    expect(q.readInto(dest, 2)).toBe(4);
    expect(dest).toEqual(new Uint8Array([0, 0, 1, 2, 3, 4]));
    expect(q.length).toBe(1);
    expect(q.readInto(dest)).toBe(1);
    expect(dest[0]).toBe(5);
    expect(q.readInto(dest)).toBe(0);
  });
});
