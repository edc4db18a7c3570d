/**
 * PubsubConnection, the broker's side of one client stream: exact backlog
 * accounting, dropping what a cut subscriber has not begun to receive while
 * keeping the framing intact, half-close after the queue, and framing
 * violations. Driven through a scripted StreamHandle.
 */
import { describe, expect, test } from "bun:test";
import { addressOf } from "../../../src/protocol/address.ts";
import type { StreamEvent, StreamHandle } from "../../../src/daemon/local-node.ts";
import { PubsubConnection } from "../../../src/daemon/services/pubsub/connection.ts";

/** A stream whose send side takes `room` bytes until more is granted, and whose receive side is scripted. */
class ScriptedStream implements StreamHandle {
  readonly id = 1;
  readonly localPort = 1002;
  readonly remoteAddress = addressOf(0, 9);
  readonly remotePort = 49152;
  onEvent: ((event: StreamEvent) => void) | null = null;
  written: number[] = [];
  room = 0;
  inbound: Uint8Array[] = [];
  shut = false;
  aborted = false;
  closed = false;
  write(data: Uint8Array): number {
    const n = Math.min(this.room, data.length);
    this.room -= n;
    for (let i = 0; i < n; i++) this.written.push(data[i]!);
    return n;
  }
  read(max: number): Uint8Array | null {
    const head = this.inbound.shift();
    if (!head) return null;
    if (head.length > max) {
      this.inbound.unshift(head.subarray(max));
      return head.subarray(0, max);
    }
    return head;
  }
  shutdown() {
    this.shut = true;
  }
  close() {
    this.closed = true;
  }
  abort() {
    this.aborted = true;
  }
  setNoDelay() {}
  emit(e: StreamEvent) {
    this.onEvent?.(e);
  }
  grant(n: number) {
    this.room += n;
    this.emit({ type: "writable" });
  }
}

function setup(maxFrame = 1000) {
  const stream = new ScriptedStream();
  const log: string[] = [];
  const frames: Uint8Array[] = [];
  const conn = new PubsubConnection(stream, maxFrame, {
    onFrame: (b) => frames.push(b),
    onEnd: () => log.push("end"),
    onViolation: (r) => log.push(`violation: ${r}`),
    onClose: (e) => log.push(`close ${e?.code ?? ""}`),
    onDrain: () => log.push("drain"),
  });
  return { stream, conn, log, frames };
}

const bytes = (n: number, v: number) => new Uint8Array(n).fill(v);

describe("writing", () => {
  test("backlog counts bytes and events exactly as the stream takes them", () => {
    const { stream, conn } = setup();
    stream.room = 5;
    conn.write(bytes(10, 1), 2);
    conn.write(bytes(10, 2), 3);
    expect([conn.backlog, conn.backlogEvents]).toEqual([15, 5]);
    stream.grant(5); // finishes the first batch
    expect([conn.backlog, conn.backlogEvents]).toEqual([10, 3]);
    stream.grant(100);
    expect([conn.backlog, conn.backlogEvents]).toEqual([0, 0]);
    expect(stream.written).toEqual([...bytes(10, 1), ...bytes(10, 2)]);
  });

  test("dropQueued forgets batches not begun, but finishes the one the stream has started (framing stays intact)", () => {
    const { stream, conn } = setup();
    stream.room = 4;
    conn.write(bytes(10, 1), 1);
    conn.write(bytes(10, 2), 1);
    conn.write(bytes(10, 3), 1);
    conn.dropQueued();
    expect([conn.backlog, conn.backlogEvents]).toEqual([6, 1]);
    conn.write(bytes(3, 9), 0); // the reason frame
    stream.grant(100);
    expect(stream.written).toEqual([...bytes(10, 1), ...bytes(3, 9)]);
    // Nothing begun: everything goes.
    const other = setup();
    other.conn.write(bytes(10, 1), 1);
    other.conn.dropQueued();
    expect(other.conn.backlog).toBe(0);
  });

  test("end() half-closes only after the queue is out; onDrain fires once under the low-water mark", () => {
    const { stream, conn, log } = setup();
    conn.write(bytes(100_000, 1), 1);
    conn.notifyDrain();
    conn.end();
    conn.write(bytes(1, 1), 1); // ignored after end()
    expect(stream.shut).toBe(false);
    stream.grant(20_000); // 80,000 left: above the 64 KiB low-water mark
    expect(log).toEqual([]);
    stream.grant(80_000);
    expect(log).toEqual(["drain"]);
    expect(stream.shut).toBe(true);
    expect(stream.written.length).toBe(100_000);
  });
});

describe("reading", () => {
  test("frames split across reads are delivered whole; the peer's FIN between frames is onEnd", () => {
    const { stream, frames, log } = setup();
    stream.inbound.push(new Uint8Array([0, 0, 0, 3, 1]), new Uint8Array([2, 3, 0, 0]), new Uint8Array([0, 1, 7]));
    stream.emit({ type: "readable" });
    expect(frames.map((f) => [...f])).toEqual([[1, 2, 3], [7]]);
    stream.emit({ type: "end" });
    expect(log).toEqual(["end"]);
  });

  test("pause stops delivery until resume", () => {
    const { stream, conn, frames } = setup();
    conn.pause();
    stream.inbound.push(new Uint8Array([0, 0, 0, 1, 5]));
    stream.emit({ type: "readable" });
    expect(frames.length).toBe(0);
    conn.resume();
    expect(frames.length).toBe(1);
  });

  test("an oversized frame or a FIN inside a frame is a violation: the stream is aborted", () => {
    const big = setup(10);
    big.stream.inbound.push(new Uint8Array([0, 0, 0, 11]));
    big.stream.emit({ type: "readable" });
    expect(big.log).toEqual(["violation: a frame of 11 bytes is larger than 10", "close "]);
    expect(big.stream.aborted).toBe(true);
    const cut = setup();
    cut.stream.inbound.push(new Uint8Array([0, 0, 0, 5, 1]));
    cut.stream.emit({ type: "readable" });
    cut.stream.emit({ type: "end" });
    expect(cut.log[0]).toBe("violation: the stream ended in the middle of a frame");
    expect(cut.conn.isClosed).toBe(true);
  });

  test("closed: onClose once with the error; writes after it are ignored", () => {
    const { stream, conn, log } = setup();
    stream.emit({ type: "closed", error: { code: "connection_reset" } as any });
    stream.emit({ type: "closed" });
    conn.write(bytes(5, 1), 1);
    expect(log).toEqual(["close connection_reset"]);
    expect(conn.backlog).toBe(0);
  });
});
