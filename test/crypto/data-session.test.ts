import { describe, expect, test } from "bun:test";
import { gcm } from "@noble/ciphers/aes.js";
import { writeNonce } from "../../src/crypto/aead.ts";
import { bytesToHex } from "../../src/crypto/bytes.ts";
import { DataSession, type DataSessionKeys } from "../../src/crypto/data-session.ts";
import { REPLAY_WINDOW_SIZE } from "../../src/crypto/replay-window.ts";
import { addressOf, writeAddress } from "../../src/protocol/address.ts";
import { encodeDataFrame, MAX_TUNNEL_PLAINTEXT } from "../../src/protocol/tunnel-frame.ts";
import { randomBytes, seededRandom } from "../support/fuzz.ts";

const rand = seededRandom(3);
const A = addressOf(1, 10);
const B = addressOf(1, 20);

function pair(overrides: Partial<DataSessionKeys> = {}) {
  const k1 = randomBytes(rand, 32);
  const k2 = randomBytes(rand, 32);
  const a = new DataSession({ sendKey: k1, receiveKey: k2, localIndex: 111, remoteIndex: 222, localAddress: A, remoteAddress: B, ...overrides });
  const b = new DataSession({ sendKey: k2, receiveKey: k1, localIndex: 222, remoteIndex: 111, localAddress: B, remoteAddress: A, ...overrides });
  return { a, b, k1, k2 };
}

function aad(header: Uint8Array, sender: number, receiver: number): Uint8Array {
  const out = new Uint8Array(28);
  out.set(header);
  const v = new DataView(out.buffer);
  writeAddress(v, 16, sender as never);
  writeAddress(v, 22, receiver as never);
  return out;
}

describe("DataSession", () => {
  test("seal/open both ways; header carries the receiver's index and the counter", () => {
    const { a, b } = pair();
    for (let i = 0; i < 5; i++) {
      const msg = randomBytes(rand, 100 + i);
      const frame = a.sealFrame(msg)!;
      expect(frame.length).toBe(msg.length + 32);
      expect(bytesToHex(frame.subarray(0, 16))).toBe(`04000000000000de${i.toString(16).padStart(16, "0")}`);
      expect(bytesToHex(b.open(frame)!)).toBe(bytesToHex(msg));
      expect(b.lastAdvanced).toBe(true);
      const back = b.sealFrame(msg)!;
      expect(bytesToHex(a.open(back)!)).toBe(bytesToHex(msg));
    }
    expect(a.sendCounter).toBe(5);
    expect(b.receivedCount).toBe(5);
  });

  test("an empty plaintext (keepalive) is a 32-byte frame", () => {
    const { a, b } = pair();
    const frame = a.sealFrame(new Uint8Array(0))!;
    expect(frame.length).toBe(32);
    expect(b.open(frame)!.length).toBe(0);
  });

  test("native frames are standard AES-256-GCM: @noble/ciphers opens them and builds frames we open", () => {
    const { a, b, k1 } = pair();
    const msg = randomBytes(rand, 1200);
    const frame = a.sealFrame(msg)!;
    const nonce = new Uint8Array(12);
    writeNonce(nonce, 0);
    const header = frame.subarray(0, 16);
    const opened = gcm(k1, nonce, aad(header, A, B)).decrypt(frame.subarray(16));
    expect(bytesToHex(opened)).toBe(bytesToHex(msg));

    // The other way: a frame sealed by the reference, with counter 7.
    writeNonce(nonce, 7);
    const refHeader = encodeDataFrame(222, 7, new Uint8Array(16)).subarray(0, 16);
    const sealed = gcm(k1, nonce, aad(refHeader, A, B)).encrypt(msg);
    const refFrame = encodeDataFrame(222, 7, sealed);
    expect(bytesToHex(b.open(refFrame)!)).toBe(bytesToHex(msg));
  });

  test("the AAD binds both Pilot addresses: the same keys between other addresses do not open", () => {
    const { a, k1, k2 } = pair();
    const frame = a.sealFrame(randomBytes(rand, 50))!;
    for (const [local, remote] of [
      [B, addressOf(1, 99)],
      [addressOf(1, 99), A],
      [A, B],
    ] as const) {
      const other = new DataSession({ sendKey: k2, receiveKey: k1, localIndex: 222, remoteIndex: 111, localAddress: local, remoteAddress: remote });
      expect(other.open(frame)).toBeNull();
      expect(other.lastError).toBe("auth_failed");
    }
  });

  test("replays are refused; late frames inside the window are accepted once", () => {
    const { a, b } = pair();
    const frames = Array.from({ length: 10 }, () => a.sealFrame(new Uint8Array([1]))!);
    expect(b.open(frames[9]!)).not.toBeNull();
    expect(b.open(frames[9]!)).toBeNull();
    expect(b.lastError).toBe("replay");
    expect(b.open(frames[3]!)).not.toBeNull();
    expect(b.lastAdvanced).toBe(false);
    expect(b.open(frames[3]!)).toBeNull();
    expect(b.replay.greatest).toBe(9);
  });

  test("frames older than the window are refused", () => {
    const { a, b } = pair();
    const first = a.sealFrame(new Uint8Array([1]))!;
    for (let i = 0; i < REPLAY_WINDOW_SIZE; i++) a.sendCounter++;
    expect(b.open(a.sealFrame(new Uint8Array([2]))!)).not.toBeNull();
    expect(b.open(first)).toBeNull();
    expect(b.lastError).toBe("replay");
  });

  test("a frame that fails authentication leaves the window untouched", () => {
    const { a, b } = pair();
    expect(b.open(a.sealFrame(new Uint8Array([1]))!)).not.toBeNull();
    const forged = encodeDataFrame(222, 1_000_000, randomBytes(rand, 40));
    expect(b.open(forged)).toBeNull();
    expect(b.lastError).toBe("auth_failed");
    expect(b.replay.greatest).toBe(0);
    expect(b.open(a.sealFrame(new Uint8Array([2]))!)).not.toBeNull();
  });

  test("malformed frames, wrong index, and counters past the hard limit are refused before decryption", () => {
    const { a, b } = pair({ rejectAfterMessages: 1000 });
    const frame = a.sealFrame(new Uint8Array([1]))!;
    const cases: [Uint8Array, string][] = [
      [frame.subarray(0, 31), "malformed"],
      [Uint8Array.from([5, ...frame.subarray(1)]), "malformed"],
      [Uint8Array.from([4, 1, ...frame.subarray(2)]), "malformed"],
      [encodeDataFrame(223, 0, frame.subarray(16)), "wrong_index"],
      [encodeDataFrame(222, 1000, frame.subarray(16)), "counter_limit"],
      [encodeDataFrame(222, 2 ** 52, frame.subarray(16)), "counter_limit"],
    ];
    for (const [bytes, reason] of cases) {
      expect(b.open(bytes)).toBeNull();
      expect(b.lastError).toBe(reason as never);
    }
    const huge = frame.slice();
    huge.fill(0xff, 8, 16);
    expect(b.open(huge)).toBeNull();
    expect(b.lastError).toBe("counter_limit");
    expect(b.open(frame)).not.toBeNull();
  });

  test("the sender stops at the hard message limit", () => {
    const { a } = pair({ rejectAfterMessages: 3 });
    expect(a.sealFrame(new Uint8Array(1))).not.toBeNull();
    expect(a.sealFrame(new Uint8Array(1))).not.toBeNull();
    expect(a.sealFrame(new Uint8Array(1))).not.toBeNull();
    expect(a.canSend).toBe(false);
    expect(a.sealFrame(new Uint8Array(1))).toBeNull();
    expect(a.seal(new Uint8Array(1), new Uint8Array(64))).toBe(-1);
  });

  test("oversized plaintext or a short output buffer is a programmer error", () => {
    const { a } = pair();
    expect(() => a.sealFrame(new Uint8Array(MAX_TUNNEL_PLAINTEXT + 1))).toThrow(RangeError);
    expect(() => a.seal(new Uint8Array(10), new Uint8Array(41))).toThrow(RangeError);
    expect(a.sendCounter).toBe(0);
    const out = new Uint8Array(100);
    expect(a.seal(new Uint8Array(10), out, 50)).toBe(42);
    expect(out[50]).toBe(4);
  });

  test("seal + open of a 1200-byte frame stays within budget", () => {
    const { a, b } = pair();
    const msg = randomBytes(rand, 1200);
    const out = new Uint8Array(1232);
    const n = 20_000;
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      a.seal(msg, out);
      if (b.open(out) === null) throw new Error(b.lastError);
    }
    const perFrameUs = ((performance.now() - start) * 1000) / n;
    console.log(`seal+open 1200 B: ${perFrameUs.toFixed(2)} µs per frame`);
    // The budget is ~4 µs; allow a noisy shared machine plenty of slack.
    expect(perFrameUs).toBeLessThan(40);
  });
});
