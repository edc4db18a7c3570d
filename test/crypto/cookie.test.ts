import { describe, expect, test } from "bun:test";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { bytesToHex } from "../../src/crypto/bytes.ts";
import { COOKIE_SECRET_LIFETIME, CookieChecker, CookieJar, computeMac2, cookieReplyKey } from "../../src/crypto/cookie.ts";
import { createInitiation, remoteHandshakeKeys } from "../../src/crypto/handshake.ts";
import { nodeKeys } from "../../src/crypto/session-pair.ts";
import { TimestampClock } from "../../src/crypto/timestamp.ts";
import { addressOf } from "../../src/protocol/address.ts";
import { COOKIE_REPLY_SIZE, decodeCookieReply, decodeInitiation, INITIATION_MAC2_OFFSET, INITIATION_SIZE, type InitiationFrame } from "../../src/protocol/tunnel-frame.ts";
import { seededBytes, testIdentity } from "./support.ts";

const alice = nodeKeys(testIdentity(1), addressOf(1, 100));
const bob = nodeKeys(testIdentity(2), addressOf(1, 200));
const carol = nodeKeys(testIdentity(3), addressOf(1, 300));
const clock = new TimestampClock();

function initiation(): Uint8Array {
  return createInitiation({ local: alice.local, remote: bob.asRemote, localAddress: alice.address, remoteAddress: bob.address, localIndex: 7, timestamp: clock.next() }).frame;
}

function decoded(frame: Uint8Array): InitiationFrame {
  const r = decodeInitiation(frame);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

const bobStatic = bob.local.staticPair.publicKey;
const SOURCE = "198.51.100.7:4000";

describe("cookies (mac2)", () => {
  test("a cookie reply gives the initiator the cookie for its source address; its next initiation's mac2 checks out there only", () => {
    const checker = new CookieChecker(bobStatic, seededBytes(1));
    const jar = new CookieJar(remoteHandshakeKeys(bob.identity.publicKey).staticPublic);
    const first = initiation();
    jar.stamp(first, 0);
    expect(bytesToHex(first.subarray(INITIATION_MAC2_OFFSET))).toBe("00".repeat(16)); // no cookie yet
    expect(checker.checkMac2(decoded(first), SOURCE, 0)).toBe(false);
    const reply = checker.createReply(decoded(first), SOURCE, 0);
    expect(reply.length).toBe(COOKIE_REPLY_SIZE);
    expect(reply.length).toBeLessThan(INITIATION_SIZE);
    const r = decodeCookieReply(reply);
    if (!r.ok) throw new Error(r.error.message);
    expect(jar.consumeReply(r.value, 10).ok).toBe(true);
    expect(jar.hasCookie(10)).toBe(true);
    const second = initiation();
    jar.stamp(second, 20);
    expect(checker.checkMac2(decoded(second), SOURCE, 30)).toBe(true);
    // Bound to the source address: the same frame from elsewhere does not check.
    expect(checker.checkMac2(decoded(second), "198.51.100.7:4001", 30)).toBe(false);
    expect(checker.checkMac2(decoded(second), "relay:5", 30)).toBe(false);
    // mac2 covers everything before it.
    for (const at of [4, 50, INITIATION_MAC2_OFFSET - 1, INITIATION_MAC2_OFFSET]) {
      const bad = second.slice();
      bad[at]! ^= 0x40;
      expect(checker.checkMac2(decoded(bad), SOURCE, 30)).toBe(false);
    }
  });

  test("the secret rotates every 2 minutes: old cookies stop working, and the initiator stops using them", () => {
    const checker = new CookieChecker(bobStatic, seededBytes(2));
    const jar = new CookieJar(bobStatic);
    const first = initiation();
    jar.stamp(first, 0);
    jar.consumeReply((decodeCookieReply(checker.createReply(decoded(first), SOURCE, 0)) as any).value, 0);
    const frame = initiation();
    jar.stamp(frame, 1000);
    expect(checker.checkMac2(decoded(frame), SOURCE, COOKIE_SECRET_LIFETIME - 1)).toBe(true);
    expect(checker.checkMac2(decoded(frame), SOURCE, COOKIE_SECRET_LIFETIME)).toBe(false);
    expect(jar.hasCookie(COOKIE_SECRET_LIFETIME - 1)).toBe(true);
    const late = initiation();
    jar.stamp(late, COOKIE_SECRET_LIFETIME);
    expect(bytesToHex(late.subarray(INITIATION_MAC2_OFFSET))).toBe("00".repeat(16));
  });

  test("a reply is taken only for our latest initiation, once, and only if it is genuine", () => {
    const checker = new CookieChecker(bobStatic, seededBytes(3));
    const jar = new CookieJar(bobStatic);
    const old = initiation();
    jar.stamp(old, 0);
    const latest = initiation();
    jar.stamp(latest, 1);
    const reply = (f: Uint8Array) => (decodeCookieReply(checker.createReply(decoded(f), SOURCE, 1)) as any).value;
    expect(jar.consumeReply(reply(old), 2).ok).toBe(false); // answers an initiation we moved on from
    const genuine = checker.createReply(decoded(latest), SOURCE, 1);
    // Any flipped bit after the echoed mac1 (nonce, ciphertext, tag) fails to decrypt.
    for (let i = 20; i < genuine.length; i++) {
      const bad = genuine.slice();
      bad[i]! ^= 1 << i % 8;
      const r = jar.consumeReply((decodeCookieReply(bad) as any).value, 2);
      expect(!r.ok && r.error.code).toBe("auth_failed");
    }
    // Sealed by another node (Carol's key) for the same mac1: refused.
    const carolChecker = new CookieChecker(carol.local.staticPair.publicKey, seededBytes(4));
    expect(jar.consumeReply((decodeCookieReply(carolChecker.createReply(decoded(latest), SOURCE, 1)) as any).value, 2).ok).toBe(false);
    expect(jar.consumeReply((decodeCookieReply(genuine) as any).value, 2).ok).toBe(true);
    expect(jar.consumeReply((decodeCookieReply(genuine) as any).value, 3).ok).toBe(false); // once
  });

  test("wire layout: XChaCha20-Poly1305 under SHA-256(label ‖ responder static), associated data = the echoed mac1", () => {
    const checker = new CookieChecker(bobStatic, seededBytes(5));
    const frame = decoded(initiation());
    const reply = decodeCookieReply(checker.createReply(frame, SOURCE, 0));
    if (!reply.ok) throw new Error("no reply");
    expect(bytesToHex(reply.value.mac1)).toBe(bytesToHex(frame.mac1));
    const cookie = xchacha20poly1305(cookieReplyKey(bobStatic), reply.value.nonce, frame.mac1).decrypt(reply.value.sealedCookie);
    expect(bytesToHex(cookie)).toBe(bytesToHex(checker.cookieFor(SOURCE, 0)));
    // mac2 is HMAC-SHA-256(cookie, bytes 0-137), truncated to 16.
    const withMac2 = new Uint8Array(frame.mac2Input.length + 16);
    withMac2.set(frame.mac2Input);
    withMac2.set(computeMac2(cookie, withMac2), INITIATION_MAC2_OFFSET);
    expect(checker.checkMac2(decoded(withMac2), SOURCE, 0)).toBe(true);
  });
});
