import { describe, expect, test } from "bun:test";
import {
  decodeFrame,
  encodeFrame,
  FRAME_HEADER_SIZE,
  FrameReader,
  FrameType,
  MAX_FRAME_LENGTH,
  MAX_JSON_LENGTH,
  type Frame,
  type Sender,
} from "../../src/ipc/frames.ts";
import { FrameWriter } from "../../src/ipc/writer.ts";
import { addressOf } from "../../src/protocol/address.ts";
import { fuzz, randomBytes, seededRandom } from "../support/fuzz.ts";

const CASES = Number(process.env.PILOT_FUZZ_CASES ?? 100_000);

function enc(frame: Frame): Uint8Array {
  const r = encodeFrame(frame);
  if (!r.ok) throw new Error(`encode failed: ${r.error.message}`);
  return r.value;
}

/** Decodes a whole encoded frame (header included). */
function dec(bytes: Uint8Array, from: Sender) {
  const reader = new FrameReader();
  reader.push(bytes);
  const raw = reader.next();
  if (raw === null) throw new Error("incomplete");
  if (!raw.ok) return raw;
  return decodeFrame(raw.value.type, raw.value.payload, from);
}

function sender(frame: Frame): Sender {
  switch (frame.type) {
    case FrameType.Request:
    case FrameType.SendDatagram:
    case FrameType.StreamOption:
      return "client";
    case FrameType.Response:
    case FrameType.Accept:
    case FrameType.Datagram:
    case FrameType.Event:
      return "daemon";
    default:
      return "client";
  }
}

function sampleFrames(): Frame[] {
  const rand = seededRandom(3);
  return [
    { type: FrameType.Request, id: 1, method: "dial", params: { address: "0:0000.0000.000B", port: 80 } },
    { type: FrameType.Request, id: 0xffff_ffff, method: "info", params: {} },
    { type: FrameType.Response, id: 7, ok: true, result: { stream: 3, local_port: 49152, remote_address: "1:0001.F291.0004", remote_port: 80 } },
    { type: FrameType.Response, id: 8, ok: true, result: null },
    { type: FrameType.Response, id: 9, ok: false, error: { code: "port_in_use", message: "port 80 is bound" } },
    { type: FrameType.Response, id: 10, ok: false, error: { code: "not_found", message: "nope", hint: "try find" } },
    { type: FrameType.Accept, listener: 2, stream: 99, remoteAddress: addressOf(1, 0xf2910004), remotePort: 49153, localPort: 80 },
    { type: FrameType.Data, stream: 5, data: randomBytes(rand, 100) },
    { type: FrameType.Data, stream: 0xffff_ffff, data: new Uint8Array([0]) },
    { type: FrameType.Credit, stream: 5, bytes: 65536 },
    { type: FrameType.Fin, stream: 5 },
    { type: FrameType.Close, stream: 6 },
    { type: FrameType.Reset, stream: 6, code: "connection_reset", message: "peer reset ✓" },
    { type: FrameType.Reset, stream: 6, code: "timeout", message: "" },
    { type: FrameType.SendDatagram, id: 4, srcPort: 0, dstAddress: addressOf(0, 11), dstPort: 1000, data: randomBytes(rand, 40) },
    { type: FrameType.Datagram, binding: 1, srcAddress: addressOf(0, 10), srcPort: 49200, dstPort: 1000, data: new Uint8Array(0) },
    { type: FrameType.StreamOption, stream: 3, option: 1, value: 1 },
    { type: FrameType.Event, subscription: 1, event: { seq: 12, time: 1_700_000_000_000, type: "trust.request", data: { address: "0:0000.0000.0009", node_id: 9, reason: "hi ✓" } } },
    { type: FrameType.Event, subscription: 0xffff_ffff, event: { seq: 0, time: 0, type: "events.gap", data: { dropped: 3, first_seq: 1, last_seq: 3, reason: "slow_client" } } },
  ];
}

describe("encodeFrame / decodeFrame", () => {
  test("every frame type round-trips", () => {
    for (const frame of sampleFrames()) {
      const bytes = enc(frame);
      expect(new DataView(bytes.buffer).getUint32(0)).toBe(bytes.length - 4);
      const back = dec(bytes, sender(frame));
      expect(back.ok).toBe(true);
      if (back.ok) expect(back.value).toEqual(frame);
    }
  });

  test("a side only accepts the frames the other side may send", () => {
    const request = enc({ type: FrameType.Request, id: 1, method: "info", params: {} });
    expect(dec(request, "daemon")).toMatchObject({ ok: false, error: { code: "unexpected_type" } });
    const accept = enc(sampleFrames()[6]!);
    expect(dec(accept, "client")).toMatchObject({ ok: false, error: { code: "unexpected_type" } });
    const unknown = new Uint8Array([0, 0, 0, 1, 0x7f]);
    expect(dec(unknown, "client").ok).toBe(false);
    expect(dec(unknown, "daemon").ok).toBe(false);
  });

  test("EVENT frames come only from the daemon and carry {seq, time, type, data}", () => {
    const event = sampleFrames().find((f) => f.type === FrameType.Event)!;
    expect(dec(enc(event), "client")).toMatchObject({ ok: false, error: { code: "unexpected_type" } });
    const json = (text: string) => {
      const body = new TextEncoder().encode(text);
      const payload = new Uint8Array(4 + body.length);
      payload.set(body, 4);
      return decodeFrame(FrameType.Event, payload, "daemon");
    };
    expect(json(`{"seq":1,"time":2,"type":"peer.offline","data":{}}`)).toMatchObject({ ok: true, value: { subscription: 0, event: { seq: 1, type: "peer.offline" } } });
    for (const bad of [
      `{"seq":-1,"time":2,"type":"peer.offline","data":{}}`,
      `{"seq":1.5,"time":2,"type":"peer.offline","data":{}}`,
      `{"seq":1,"time":"now","type":"peer.offline","data":{}}`,
      `{"seq":1,"time":2,"type":"offline","data":{}}`,
      `{"seq":1,"time":2,"type":"Peer.Offline","data":{}}`,
      `{"seq":1,"time":2,"type":"peer.offline","data":[]}`,
      `{"seq":1,"time":2,"type":"peer.offline"}`,
      `[1]`,
    ]) {
      expect(json(bad)).toMatchObject({ ok: false, error: { code: "invalid_event" } });
    }
    expect(decodeFrame(FrameType.Event, new Uint8Array(4), "daemon")).toMatchObject({ ok: false, error: { code: "truncated" } });
  });

  test("requests need an object with a method name; params default to {}", () => {
    const json = (text: string) => {
      const body = new TextEncoder().encode(text);
      const payload = new Uint8Array(4 + body.length);
      payload.set(body, 4);
      return decodeFrame(FrameType.Request, payload, "client");
    };
    expect(json(`{"method":"info"}`)).toMatchObject({ ok: true, value: { method: "info", params: {} } });
    expect(json(`{"method":"Info"}`).ok).toBe(false);
    expect(json(`{"method":""}`).ok).toBe(false);
    expect(json(`{"method":"info","params":[1]}`).ok).toBe(false);
    expect(json(`[]`).ok).toBe(false);
    expect(json(`{"method":"info"`)).toMatchObject({ ok: false, error: { code: "invalid_json" } });
    expect(decodeFrame(FrameType.Request, new Uint8Array([0, 0, 0, 1, 0xff, 0xfe]), "client")).toMatchObject({ ok: false, error: { code: "invalid_utf8" } });
  });

  test("fixed-size frames reject short and long payloads; DATA and CREDIT reject zero", () => {
    expect(decodeFrame(FrameType.Credit, new Uint8Array(7), "client")).toMatchObject({ ok: false, error: { code: "truncated" } });
    expect(decodeFrame(FrameType.Credit, new Uint8Array(9), "client")).toMatchObject({ ok: false, error: { code: "trailing_bytes" } });
    expect(decodeFrame(FrameType.Credit, new Uint8Array(8), "client")).toMatchObject({ ok: false, error: { code: "invalid_credit" } });
    expect(decodeFrame(FrameType.Data, new Uint8Array(4), "client")).toMatchObject({ ok: false, error: { code: "truncated" } });
    expect(decodeFrame(FrameType.Accept, new Uint8Array(17), "daemon").ok).toBe(false);
    expect(decodeFrame(FrameType.Fin, new Uint8Array(5), "client").ok).toBe(false);
    expect(encodeFrame({ type: FrameType.Data, stream: 1, data: new Uint8Array(0) }).ok).toBe(false);
    expect(encodeFrame({ type: FrameType.Credit, stream: 1, bytes: 0 }).ok).toBe(false);
    expect(encodeFrame({ type: FrameType.Fin, stream: -1 }).ok).toBe(false);
  });

  test("encoding never throws: oversize and unserializable bodies fail as Results", () => {
    const big = { type: FrameType.Response, id: 1, ok: true, result: "x".repeat(MAX_JSON_LENGTH) } as const;
    expect(encodeFrame(big)).toMatchObject({ ok: false, error: { code: "too_large" } });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(encodeFrame({ type: FrameType.Response, id: 1, ok: true, result: cyclic })).toMatchObject({ ok: false, error: { code: "unserializable" } });
    expect(encodeFrame({ type: FrameType.Response, id: 1, ok: true, result: 10n })).toMatchObject({ ok: false, error: { code: "unserializable" } });
    expect(encodeFrame({ type: FrameType.Request, id: 1, method: "no way", params: {} }).ok).toBe(false);
    expect(encodeFrame({ type: FrameType.Data, stream: 1, data: new Uint8Array(MAX_FRAME_LENGTH) })).toMatchObject({ ok: false, error: { code: "too_large" } });
  });
});

describe("FrameReader", () => {
  test("reassembles frames cut at every possible point", () => {
    const frames = sampleFrames();
    const stream = Buffer.concat(frames.map((f) => enc(f)));
    for (let cut = 0; cut <= stream.length; cut += 7) {
      const reader = new FrameReader();
      reader.push(stream.subarray(0, cut));
      reader.push(stream.subarray(cut));
      const got: Frame[] = [];
      for (;;) {
        const raw = reader.next();
        if (raw === null) break;
        expect(raw.ok).toBe(true);
        if (!raw.ok) break;
        const frame = decodeFrame(raw.value.type, raw.value.payload, sender(frames[got.length]!));
        expect(frame.ok).toBe(true);
        if (frame.ok) got.push(frame.value);
      }
      expect(got).toEqual(frames);
      expect(reader.pendingBytes).toBe(0);
    }
  });

  test("one byte at a time", () => {
    const frames = sampleFrames();
    const stream = Buffer.concat(frames.map((f) => enc(f)));
    const reader = new FrameReader();
    let count = 0;
    for (const byte of stream) {
      reader.push(new Uint8Array([byte]));
      for (let raw = reader.next(); raw !== null; raw = reader.next()) {
        expect(raw.ok).toBe(true);
        count++;
      }
    }
    expect(count).toBe(frames.length);
  });

  test("a frame inside one chunk is returned without copying", () => {
    const bytes = enc({ type: FrameType.Data, stream: 1, data: new Uint8Array(1000).fill(7) });
    const reader = new FrameReader();
    reader.push(bytes);
    const raw = reader.next();
    expect(raw?.ok && raw.value.payload.buffer).toBe(bytes.buffer);
  });

  test("a declared length above the limit fails at once, before the bytes arrive, and stays failed", () => {
    const reader = new FrameReader();
    const header = new Uint8Array(FRAME_HEADER_SIZE);
    new DataView(header.buffer).setUint32(0, MAX_FRAME_LENGTH + 1);
    reader.push(header);
    expect(reader.next()).toMatchObject({ ok: false, error: { code: "bad_length" } });
    reader.push(enc({ type: FrameType.Fin, stream: 1 }));
    expect(reader.next()?.ok).toBe(false);
    expect(reader.pendingBytes).toBe(0);
  });

  test("a zero length is an error; the maximum length is accepted", () => {
    const zero = new FrameReader();
    zero.push(new Uint8Array([0, 0, 0, 0, 1]));
    expect(zero.next()?.ok).toBe(false);
    const max = new FrameReader();
    const frame = new Uint8Array(4 + MAX_FRAME_LENGTH);
    new DataView(frame.buffer).setUint32(0, MAX_FRAME_LENGTH);
    frame[4] = FrameType.Data;
    frame[9] = 1;
    max.push(frame.subarray(0, 100));
    expect(max.next()).toBeNull();
    max.push(frame.subarray(100));
    const raw = max.next();
    expect(raw?.ok).toBe(true);
    if (raw?.ok) expect(decodeFrame(raw.value.type, raw.value.payload, "client").ok).toBe(true);
  });
});

describe("FrameWriter", () => {
  class Sink {
    chunks: Uint8Array[] = [];
    budget = Infinity;
    write(data: Uint8Array, offset = 0, length = data.length - offset): number {
      const n = Math.min(length, this.budget);
      this.budget -= n;
      this.chunks.push(data.slice(offset, offset + n));
      return n;
    }
    frames(): Frame[] {
      const reader = new FrameReader();
      for (const c of this.chunks) reader.push(c);
      const out: Frame[] = [];
      for (let raw = reader.next(); raw !== null; raw = reader.next()) {
        if (!raw.ok) throw new Error(raw.error.message);
        const f = decodeFrame(raw.value.type, raw.value.payload, "client");
        if (!f.ok) throw new Error(f.error.message);
        out.push(f.value);
      }
      return out;
    }
  }

  test("coalesces a turn's frames into one write and merges adjacent DATA of one stream", async () => {
    const sink = new Sink();
    const writer = new FrameWriter(sink);
    for (let i = 0; i < 100; i++) writer.appendData(3, new Uint8Array([i]));
    writer.appendStreamFrame(FrameType.Fin, 3);
    writer.appendData(4, new Uint8Array([1, 2]));
    expect(sink.chunks.length).toBe(0);
    await Promise.resolve();
    expect(sink.chunks.length).toBe(1);
    const frames = sink.frames();
    expect(frames.length).toBe(3);
    expect(frames[0]).toMatchObject({ type: FrameType.Data, stream: 3 });
    expect(Array.from((frames[0] as { data: Uint8Array }).data)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  test("cuts big writes into DATA frames of at most MAX_DATA_CHUNK", async () => {
    const sink = new Sink();
    const writer = new FrameWriter(sink);
    writer.appendData(1, new Uint8Array(200_000).fill(9));
    await Promise.resolve();
    const sizes = sink.frames().map((f) => (f as { data: Uint8Array }).data.length);
    expect(sizes).toEqual([65536, 65536, 65536, 200_000 - 3 * 65536]);
  });

  test("whenFlushed: called once the socket took every byte appended before it, not later ones", async () => {
    const sink = new Sink();
    sink.budget = 100;
    const writer = new FrameWriter(sink);
    const order: string[] = [];
    writer.appendData(1, new Uint8Array(5000).fill(1));
    writer.appendStreamFrame(FrameType.Fin, 1);
    writer.whenFlushed(() => order.push("fin flushed"));
    await Promise.resolve();
    expect(order).toEqual([]); // only 100 bytes went out
    writer.appendData(2, new Uint8Array(50_000).fill(2)); // later bytes: not waited for
    sink.budget = 5009 + 9 - 100; // exactly up to and including the FIN
    writer.drain();
    expect(order).toEqual(["fin flushed"]);
    expect(writer.backlog).toBeGreaterThan(0);
    writer.whenFlushed(() => order.push("all flushed"));
    sink.budget = Infinity;
    writer.drain();
    expect(order).toEqual(["fin flushed", "all flushed"]);
    writer.whenFlushed(() => order.push("nothing pending: at once"));
    expect(order.at(-1)).toBe("nothing pending: at once");
  });

  test("whenFlushed: a writer whose socket died releases its waiters", async () => {
    const sink = { write: () => -1 };
    const writer = new FrameWriter(sink);
    let released = 0;
    writer.appendData(1, new Uint8Array(10));
    writer.whenFlushed(() => released++);
    await Promise.resolve();
    expect(released).toBe(1);
    writer.whenFlushed(() => released++);
    expect(released).toBe(2);
  });

  test("keeps the unwritten rest for drain, in order, and reports its backlog", async () => {
    const sink = new Sink();
    sink.budget = 10;
    const writer = new FrameWriter(sink, 1000);
    let writable = 0;
    writer.onWritable = () => writable++;
    writer.appendData(1, new Uint8Array(5000).fill(1));
    await Promise.resolve();
    expect(writer.backlog).toBe(5009 - 10);
    writer.appendData(2, new Uint8Array(3).fill(2));
    await Promise.resolve();
    expect(writer.backlog).toBe(5009 - 10 + 12);
    expect(writable).toBe(0);
    sink.budget = Infinity;
    writer.drain();
    expect(writer.backlog).toBe(0);
    expect(writable).toBe(1);
    const frames = sink.frames();
    expect(frames.map((f) => (f as { stream: number }).stream)).toEqual([1, 2]);
  });

  test("a closed socket (-1) kills the writer once", async () => {
    let dead = 0;
    const writer = new FrameWriter({ write: () => -1 });
    writer.onDead = () => dead++;
    writer.appendStreamFrame(FrameType.Fin, 1);
    await Promise.resolve();
    writer.appendStreamFrame(FrameType.Fin, 1);
    await Promise.resolve();
    expect(dead).toBe(1);
    expect(writer.isDead).toBe(true);
  });
});

describe("fuzz", () => {
  const seeds = sampleFrames().map((f) => enc(f));

  test(`decodeFrame survives ${CASES} random and mutated payloads from both sides, and what it accepts re-encodes exactly`, () => {
    let accepted = 0;
    fuzz({ seed: 11, cases: CASES, seeds: seeds.map((s) => s.subarray(4)), maxRandomLength: 64 }, (input) => {
      // The first byte plays the type, the rest the payload.
      if (input.length === 0) return;
      const type = input[0]!;
      const payload = input.subarray(1);
      for (const from of ["client", "daemon"] as const) {
        const r = decodeFrame(type, payload, from);
        if (!r.ok) {
          expect(typeof r.error.code).toBe("string");
          continue;
        }
        accepted++;
        const again = encodeFrame(r.value);
        expect(again.ok).toBe(true);
        if (!again.ok) continue;
        const back = decodeFrame(again.value[4]!, again.value.subarray(5), from);
        expect(back.ok).toBe(true);
        if (back.ok) expect(back.value).toEqual(r.value);
      }
    });
    expect(accepted).toBeGreaterThan(CASES / 20);
  });

  test(`FrameReader survives ${CASES / 10} random streams cut at random points`, () => {
    const rand = seededRandom(5);
    fuzz({ seed: 12, cases: CASES / 10, seeds: [Buffer.concat(seeds)], maxRandomLength: 300 }, (input) => {
      const reader = new FrameReader(4096);
      let at = 0;
      while (at < input.length) {
        const n = 1 + Math.floor(rand() * 40);
        reader.push(input.subarray(at, at + n));
        at += n;
        for (let raw = reader.next(); raw !== null; raw = reader.next()) {
          if (!raw.ok) return;
          decodeFrame(raw.value.type, raw.value.payload, rand() < 0.5 ? "client" : "daemon");
        }
      }
    });
  });
});
