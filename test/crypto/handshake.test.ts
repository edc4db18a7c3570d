import { describe, expect, test } from "bun:test";
import { bytesToHex } from "../../src/crypto/bytes.ts";
import {
  acceptInitiation,
  consumeInitiation,
  consumeResponse,
  createInitiation,
  localHandshakeKeys,
  remoteHandshakeKeys,
} from "../../src/crypto/handshake.ts";
import { connectInMemory, nodeKeys } from "../../src/crypto/session-pair.ts";
import { compareTimestamps, TimestampClock, timestampToMs } from "../../src/crypto/timestamp.ts";
import { addressOf } from "../../src/protocol/address.ts";
import { INITIATION_MAC2_OFFSET, INITIATION_SIZE, RESPONSE_SIZE } from "../../src/protocol/tunnel-frame.ts";
import { seededBytes, testIdentity } from "./support.ts";

const alice = nodeKeys(testIdentity(1), addressOf(1, 100));
const bob = nodeKeys(testIdentity(2), addressOf(1, 200));
const mallory = nodeKeys(testIdentity(3), addressOf(1, 300));
const clock = new TimestampClock();

function initiate(from = alice, to = bob, index = 11, random = seededBytes(5)) {
  return createInitiation({
    local: from.local,
    remote: to.asRemote,
    localAddress: from.address,
    remoteAddress: to.address,
    localIndex: index,
    timestamp: clock.next(),
    random,
  });
}

describe("handshake", () => {
  test("one round trip gives both sides matching keys, one per direction", () => {
    const { frame, state } = initiate();
    expect(frame.length).toBe(INITIATION_SIZE);
    const pending = consumeInitiation(bob.local, bob.address, frame);
    if (!pending.ok) throw new Error(pending.error.message);
    expect(pending.value.initiatorAddress).toBe(alice.address);
    expect(pending.value.initiatorIndex).toBe(11);
    expect(bytesToHex(pending.value.initiatorStatic)).toBe(bytesToHex(alice.identity.staticPublic));
    const accepted = acceptInitiation(pending.value, alice.identity.publicKey, { localIndex: 22 });
    if (!accepted.ok) throw new Error(accepted.error.message);
    expect(accepted.value.frame.length).toBe(RESPONSE_SIZE);
    const keys = consumeResponse(state, accepted.value.frame);
    if (!keys.ok) throw new Error(keys.error.message);
    const r = accepted.value.keys;
    expect(keys.value.remoteIndex).toBe(22);
    expect(r.remoteIndex).toBe(11);
    expect(bytesToHex(keys.value.sendKey)).toBe(bytesToHex(r.receiveKey));
    expect(bytesToHex(keys.value.receiveKey)).toBe(bytesToHex(r.sendKey));
    expect(bytesToHex(keys.value.sendKey)).not.toBe(bytesToHex(keys.value.receiveKey));
    expect(bytesToHex(keys.value.handshakeHash)).toBe(bytesToHex(r.handshakeHash));
    expect(keys.value.isInitiator).toBe(true);
    expect(r.isInitiator).toBe(false);
  });

  test("forward secrecy: every handshake between the same identities yields new keys", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const pair = connectInMemory(alice, bob);
      for (const k of [pair.initiatorKeys.sendKey, pair.initiatorKeys.receiveKey]) seen.add(bytesToHex(k));
    }
    expect(seen.size).toBe(10);
  });

  test("deterministic with injected randomness", () => {
    const a = initiate(alice, bob, 1, seededBytes(9));
    const ts = a.state.timestamp;
    const again = createInitiation({
      local: alice.local,
      remote: bob.asRemote,
      localAddress: alice.address,
      remoteAddress: bob.address,
      localIndex: 1,
      timestamp: ts,
      random: seededBytes(9),
    });
    expect(bytesToHex(again.frame)).toBe(bytesToHex(a.frame));
  });

  test("the responder refuses an initiator whose key is not the one pinned for its address", () => {
    // Mallory claims to be Alice: her payload says Alice's address, but her static is her own.
    const forged = createInitiation({
      local: mallory.local,
      remote: bob.asRemote,
      localAddress: alice.address,
      remoteAddress: bob.address,
      localIndex: 5,
      timestamp: clock.next(),
    });
    const pending = consumeInitiation(bob.local, bob.address, forged.frame);
    if (!pending.ok) throw new Error(pending.error.message);
    expect(pending.value.initiatorAddress).toBe(alice.address);
    const accepted = acceptInitiation(pending.value, alice.identity.publicKey, { localIndex: 6 });
    expect(accepted.ok).toBe(false);
    if (!accepted.ok) expect(accepted.error.code).toBe("wrong_identity");
  });

  test("an initiator that pinned the wrong responder key gets nowhere", () => {
    // Encrypted to Mallory's key: Bob's mac1 check drops it before any DH.
    const toWrongKey = initiate(alice, { ...bob, asRemote: mallory.asRemote });
    const r1 = consumeInitiation(bob.local, bob.address, toWrongKey.frame);
    expect(!r1.ok && r1.error.code).toBe("bad_mac");
    // Even with a valid mac1 for Bob, the Noise message does not decrypt.
    const macOk = initiate(alice, { ...bob, asRemote: { ...mallory.asRemote, mac1Key: bob.asRemote.mac1Key } });
    const r2 = consumeInitiation(bob.local, bob.address, macOk.frame);
    expect(!r2.ok && r2.error.code).toBe("decrypt_failed");
    // And a responder impersonating Bob (without Bob's key) cannot read Alice's initiation.
    const toBob = initiate();
    expect(consumeInitiation(mallory.local, bob.address, toBob.frame).ok).toBe(false);
  });

  test("the prologue binds the responder's Pilot address", () => {
    const toOtherAddress = initiate(alice, { ...bob, address: addressOf(1, 201) });
    const r = consumeInitiation(bob.local, bob.address, toOtherAddress.frame);
    expect(!r.ok && r.error.code).toBe("decrypt_failed");
  });

  test("every single-bit change of an initiation up to mac2 is rejected (mac2 is the cookie's: cookie.test.ts)", () => {
    const { frame } = initiate();
    expect(bytesToHex(frame.subarray(INITIATION_MAC2_OFFSET))).toBe("00".repeat(16));
    for (let i = 0; i < INITIATION_MAC2_OFFSET; i++) {
      const bad = frame.slice();
      bad[i]! ^= 1 << i % 8;
      expect(consumeInitiation(bob.local, bob.address, bad).ok).toBe(false);
    }
    expect(consumeInitiation(bob.local, bob.address, frame).ok).toBe(true);
  });

  test("a pending initiation is answered at most once", () => {
    const { frame } = initiate();
    const pending = consumeInitiation(bob.local, bob.address, frame);
    if (!pending.ok) throw new Error(pending.error.message);
    expect(acceptInitiation(pending.value, alice.identity.publicKey, { localIndex: 1 }).ok).toBe(true);
    const again = acceptInitiation(pending.value, alice.identity.publicKey, { localIndex: 2 });
    expect(!again.ok && again.error.code).toBe("already_accepted");
  });

  test("responses: wrong index, forgeries and replays fail; the genuine one still completes", () => {
    const { frame, state } = initiate();
    const pending = consumeInitiation(bob.local, bob.address, frame);
    if (!pending.ok) throw new Error(pending.error.message);
    const accepted = acceptInitiation(pending.value, alice.identity.publicKey, { localIndex: 9 });
    if (!accepted.ok) throw new Error(accepted.error.message);
    const response = accepted.value.frame;

    const wrongIndex = response.slice();
    wrongIndex[7]! ^= 1;
    expect(consumeResponse(state, wrongIndex).ok).toBe(false);
    for (let i = 8; i < response.length; i++) {
      const bad = response.slice();
      bad[i]! ^= 0x40;
      expect(consumeResponse(state, bad).ok).toBe(false);
    }
    // A response from another (older) handshake of the same pair does not fit this one.
    const { frame: otherFrame } = initiate(alice, bob, 11, seededBytes(77));
    const otherPending = consumeInitiation(bob.local, bob.address, otherFrame);
    if (!otherPending.ok) throw new Error(otherPending.error.message);
    const other = acceptInitiation(otherPending.value, alice.identity.publicKey, { localIndex: 9 });
    if (!other.ok) throw new Error(other.error.message);
    expect(consumeResponse(state, other.value.frame).ok).toBe(false);

    expect(consumeResponse(state, response).ok).toBe(true);
    const replay = consumeResponse(state, response);
    expect(!replay.ok && replay.error.code).toBe("already_complete");
  });

  test("identity keys that are not curve points are refused", () => {
    const { frame } = initiate();
    const pending = consumeInitiation(bob.local, bob.address, frame);
    if (!pending.ok) throw new Error(pending.error.message);
    const bad = new Uint8Array(32).fill(0xff);
    const r = acceptInitiation(pending.value, bad, { localIndex: 1 });
    expect(r.ok).toBe(false);
    expect(() => remoteHandshakeKeys(bad)).toThrow();
    expect(localHandshakeKeys(alice.identity).staticPair.publicKey).toEqual(alice.identity.staticPublic);
  });
});

describe("timestamps", () => {
  test("strictly increase even when the wall clock stalls or steps back", () => {
    let now = 1_700_000_000_000;
    const c = new TimestampClock(() => now);
    const a = c.next();
    const b = c.next();
    now -= 5000;
    const d = c.next();
    expect(compareTimestamps(a, b)).toBeLessThan(0);
    expect(compareTimestamps(b, d)).toBeLessThan(0);
    expect(Math.round(timestampToMs(a))).toBe(1_700_000_000_000);
  });

  test("a restarted sender (new clock) is newer than before, following the wall clock", () => {
    let now = 1_700_000_000_000;
    const before = new TimestampClock(() => now).next();
    now += 1;
    const after = new TimestampClock(() => now).next();
    expect(compareTimestamps(before, after)).toBeLessThan(0);
  });
});
