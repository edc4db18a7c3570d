/**
 * Property: whatever bytes arrive, the tunnel neither throws nor delivers
 * anything that A did not send. Every decoder on the receive path is fed
 * random bytes and mutations of genuine frames (which were delivered first,
 * so an unmutated copy is a replay).
 */
import { expect, test } from "bun:test";
import {
  acceptInitiation,
  consumeInitiation,
  consumeResponse,
  createInitiation,
  localHandshakeKeys,
  remoteHandshakeKeys,
} from "../../src/crypto/handshake.ts";
import { hmacSha256 } from "../../src/crypto/hkdf.ts";
import {
  INITIATION_MAC_OFFSET,
  INITIATION_MAC2_OFFSET,
  INITIATION_SIZE,
  RESPONSE_MAC_OFFSET,
  RESPONSE_SIZE,
  TunnelMessage,
} from "../../src/protocol/tunnel-frame.ts";
import { TunnelRouter } from "../../src/tunnel/router.ts";
import { seededBytes } from "../crypto/support.ts";
import { fuzz } from "../support/fuzz.ts";
import { establishedPair, pilotPacket, testNode } from "./harness.ts";

const CASES = Number(process.env.PILOT_FUZZ_CASES ?? 100_000);

test(`Peer.receive survives ${CASES} random and mutated datagrams and delivers none of them`, () => {
  const { a, b, aNode, bNode, link } = establishedPair(0);
  for (let i = 0; i < 4; i++) a.send(pilotPacket(aNode.address, bNode.address, "x".repeat(i * 50)), 1);
  // Produce a rekey so the seeds include a second initiation/response pair.
  a.send(pilotPacket(aNode.address, bNode.address, "rekey"), 121_000);
  link.pump(121_000);
  expect(b.takeDelivered().length).toBe(5);
  const seeds = link.log.map((s) => s.frame);
  expect(new Set(seeds.map((f) => f[0])).size).toBe(3);
  let now = 121_001;
  fuzz({ seed: 21, cases: CASES, seeds, maxRandomLength: 300 }, (input) => {
    // Steer half the random inputs onto real frame types so they reach the deeper checks.
    if (input.length > 0 && input[0]! > 0x30 && input[0]! % 2 === 0) {
      input[0] = [TunnelMessage.Initiation, TunnelMessage.Response, TunnelMessage.Data][input[0]! % 3]!;
    }
    b.receive(input, "fuzzer:1", now);
    a.receive(input, "fuzzer:1", now);
    now += 1;
  });
  expect(b.takeDelivered()).toEqual([]);
  expect(a.takeDelivered()).toEqual([]);
  expect(b.endpoint).toBe(aNode.endpoint);
  expect(a.endpoint).toBe(bNode.endpoint);
  // The session still works afterwards.
  a.send(pilotPacket(aNode.address, bNode.address, "still fine"), now);
  b.send(pilotPacket(bNode.address, aNode.address, "still fine"), now);
  link.pump(now);
  expect(b.takeDelivered().length).toBe(1);
  expect(a.takeDelivered().length).toBe(1);
});

/** Re-seals mac1 on 1 input in 8 so that it reaches the Noise decryption (which costs two DHs). */
function resealSome(input: Uint8Array, size: number, type: number, macOffset: number, key: Uint8Array, i: number): void {
  if (i % 8 === 0 && input.length === size && input[0] === type) {
    input.set(hmacSha256(key, input.subarray(0, macOffset)).subarray(0, 16), macOffset);
  }
}

test(`consumeInitiation survives ${CASES} mutated and random initiations`, () => {
  const { aNode, bNode, link } = establishedPair(0);
  const initiation = link.log.find((s) => s.frame[0] === TunnelMessage.Initiation)!.frame;
  const keys = localHandshakeKeys(bNode.identity);
  let accepted = 0;
  let reachedNoise = 0;
  let i = 0;
  fuzz({ seed: 5, cases: CASES, seeds: [initiation], maxRandomLength: 200 }, (input) => {
    resealSome(input, INITIATION_SIZE, TunnelMessage.Initiation, INITIATION_MAC_OFFSET, keys.mac1Key, i++);
    const r = consumeInitiation(keys, bNode.address, input);
    if (r.ok) {
      accepted++;
      expect(r.value.initiatorAddress).toBe(aNode.address);
      // Only mac2 (the cookie's business, checked by the guard under load) lies outside mac1 and Noise.
      expect(Buffer.compare(input.subarray(0, INITIATION_MAC2_OFFSET), initiation.subarray(0, INITIATION_MAC2_OFFSET))).toBe(0);
    } else {
      expect(r.error.code.length).toBeGreaterThan(0);
      if (r.error.code !== "bad_mac" && r.error.code !== "bad_length" && r.error.code !== "truncated") reachedNoise++;
    }
  });
  // Only copies unmutated but for mac2 can pass.
  expect(accepted).toBeLessThan(CASES / 20);
  expect(reachedNoise).toBeGreaterThan(CASES / 50);
});

test(`consumeResponse survives ${CASES} mutated and random responses, and the handshake still completes`, () => {
  const aNode = testNode("a", 1, 10);
  const bNode = testNode("b", 2, 20);
  const aKeys = localHandshakeKeys(aNode.identity);
  const { frame, state } = createInitiation({
    local: aKeys,
    remote: remoteHandshakeKeys(bNode.identity.publicKey),
    localAddress: aNode.address,
    remoteAddress: bNode.address,
    localIndex: 77,
    timestamp: aNode.clock.next(),
  });
  const pending = consumeInitiation(localHandshakeKeys(bNode.identity), bNode.address, frame);
  if (!pending.ok) throw new Error(pending.error.message);
  const accepted = acceptInitiation(pending.value, aNode.identity.publicKey, { localIndex: 88 });
  if (!accepted.ok) throw new Error(accepted.error.message);
  const response = accepted.value.frame;
  let reachedNoise = 0;
  let i = 0;
  fuzz({ seed: 6, cases: CASES, seeds: [response], maxRandomLength: 120 }, (input) => {
    if (input.length >= 8 && input[0] === TunnelMessage.Response) input.set([0, 0, 0, 77], 4);
    resealSome(input, RESPONSE_SIZE, TunnelMessage.Response, RESPONSE_MAC_OFFSET, aKeys.mac1Key, i++);
    if (Buffer.from(input).equals(Buffer.from(response))) return; // the genuine one would complete
    const r = consumeResponse(state, input);
    expect(r.ok).toBe(false);
    if (!r.ok && r.error.code !== "bad_mac" && r.error.code !== "bad_length") reachedNoise++;
  });
  expect(reachedNoise).toBeGreaterThan(CASES / 50);
  const keys = consumeResponse(state, response);
  expect(keys.ok).toBe(true);
});

test(`under load, a router survives ${CASES} mutated initiations and cookie replies; only genuine cookies are taken`, () => {
  // b is under load (threshold 0): every initiation without a valid mac2 draws a cookie reply.
  const aNode = testNode("a", 1, 10);
  const bNode = testNode("b", 2, 20);
  const b = new TunnelRouter<string>({ localAddress: bNode.address, identity: bNode.identity, admit: () => "accept", random: seededBytes(9), timestamps: bNode.clock, handshakeLimits: { loadThreshold: 0, cookiePerSourceRate: 1e9, cookiePerSourceBurst: 1e9, cookieRate: 1e9, cookieBurst: 1e9 } });
  const a = new TunnelRouter<string>({ localAddress: aNode.address, identity: aNode.identity, admit: () => "accept", random: seededBytes(8), timestamps: aNode.clock });
  a.addPeer(bNode.address, bNode.identity.publicKey, bNode.endpoint, 0);
  a.send(bNode.address, pilotPacket(aNode.address, bNode.address, "hello"), 0);
  const initiation = a.takeTransmits()[0]!.frame;
  expect(b.receive(initiation, aNode.endpoint, 0)).toBe("dropped");
  const reply = b.takeTransmits()[0]!.frame;
  expect(reply[0]).toBe(TunnelMessage.CookieReply);
  const bKeys = localHandshakeKeys(bNode.identity);
  let i = 0;
  fuzz({ seed: 31, cases: CASES, seeds: [initiation, reply], maxRandomLength: 200 }, (input) => {
    if (input.length > 0 && input[0]! > 0x30) input[0] = [TunnelMessage.Initiation, TunnelMessage.CookieReply][input[0]! % 2]!;
    resealSome(input, INITIATION_SIZE, TunnelMessage.Initiation, INITIATION_MAC_OFFSET, bKeys.mac1Key, i++);
    b.receive(input, "fuzzer:1", 1 + i / 1000);
    // a has one handshake in flight: only a genuine reply to it could give it a cookie.
    if (input[0] === TunnelMessage.CookieReply && !Buffer.from(input).equals(Buffer.from(reply))) a.receive(input, bNode.endpoint, 1);
  });
  expect(a.peer(bNode.address)!.stats.cookiesReceived).toBe(0);
  expect(b.stats.initiationsDecrypted).toBe(0); // none carried a valid mac2
  expect(b.stats.cookieRepliesSent).toBeGreaterThan(CASES / 200);
  expect(b.peerCount).toBe(0);
  // The genuine reply still works: a retries at once with mac2, and b answers it.
  expect(a.receive(reply, bNode.endpoint, 2)).toBe("ok");
  expect(a.peer(bNode.address)!.stats.cookiesReceived).toBe(1);
  const retry = a.takeTransmits()[0]!.frame;
  b.receive(retry, aNode.endpoint, 2);
  expect(b.stats.initiationsDecrypted).toBe(1);
  expect(b.takeUnknownInitiators().map((u) => u.address)).toEqual([aNode.address]);
});
