/**
 * The reference implementation's tunnel weaknesses (pilot-reference.md §10,
 * items 1-5), each replayed as an attack against our tunnel and shown to fail:
 *   1 injected plaintext          2 replayed handshakes (reference items 2-3)
 *   3 replay-window poisoning     4 forged sender (reference item 5)
 *   5 tampered frames
 */
import { describe, expect, test } from "bun:test";
import { bytesToHex } from "../../src/crypto/bytes.ts";
import { encodeDataFrame, TunnelMessage } from "../../src/protocol/tunnel-frame.ts";
import type { Peer } from "../../src/tunnel/peer.ts";
import { randomBytes, seededRandom } from "../support/fuzz.ts";
import { establishedPair, Link, peerOf, pilotPacket, testNode, text, twoNodes } from "./harness.ts";

const rand = seededRandom(1234);
const ATTACKER = "6.6.6.6:666";

function totalDrops(p: Peer<string>): number {
  return Object.values(p.stats.drops).reduce((x, y) => x + y, 0);
}

/** The data frames A sent in the log (what an eavesdropper captured). */
function capturedData(link: Link, from = "a"): Uint8Array[] {
  return link.log.filter((s) => s.from === from && s.frame[0] === TunnelMessage.Data).map((s) => s.frame);
}

describe("weakness 1: injected plaintext is never accepted", () => {
  test("a raw Pilot packet (34-byte header, no tunnel framing) is dropped, before and after a session exists", () => {
    const { b, aNode, bNode, link, a } = twoNodes();
    const raw = pilotPacket(aNode.address, bNode.address, "RST or data, injected");
    b.receive(raw, ATTACKER, 0);
    expect(b.takeDelivered()).toEqual([]);
    expect(b.stats.drops.malformed).toBe(1);
    expect(b.takeTransmits()).toEqual([]);
    a.connect(1);
    link.pump(1);
    b.receive(raw, aNode.endpoint, 2);
    expect(b.takeDelivered()).toEqual([]);
    expect(b.stats.drops.malformed).toBe(2);
    expect(b.endpoint).toBe(aNode.endpoint);
  });

  test("forged data frames (right type, random or real index, junk ciphertext) are dropped", () => {
    const { b, aNode, bNode } = establishedPair(0);
    const realIndex = b.currentSession!.localIndex;
    const inner = pilotPacket(aNode.address, bNode.address, "forged");
    const forgedWithRealIndex = encodeDataFrame(realIndex, 5, new Uint8Array([...inner, ...randomBytes(rand, 16)]));
    const forgedWithOtherIndex = encodeDataFrame((realIndex ^ 0x5a5a) >>> 0, 5, new Uint8Array([...inner, ...randomBytes(rand, 16)]));
    b.receive(forgedWithRealIndex, ATTACKER, 1);
    b.receive(forgedWithOtherIndex, ATTACKER, 1);
    expect(b.takeDelivered()).toEqual([]);
    expect(b.stats.drops.auth_failed).toBe(1);
    expect(b.stats.drops.unknown_index).toBe(1);
    expect(b.endpoint).toBe(aNode.endpoint);
    expect(b.takeTransmits()).toEqual([]);
  });
});

describe("weakness 2: replayed handshakes neither reset the session nor redirect it", () => {
  test("a replayed initiation: no response, same keys and counters, same endpoint, traffic keeps flowing", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    const initiation = link.log.find((s) => s.frame[0] === TunnelMessage.Initiation)!.frame;
    for (let i = 0; i < 3; i++) {
      a.send(pilotPacket(aNode.address, bNode.address, `before ${i}`), 10 + i);
      b.send(pilotPacket(bNode.address, aNode.address, `reply ${i}`), 10 + i);
      link.pump(10 + i);
    }
    const session = b.currentSession!;
    const sendCounter = session.sendCounter;
    const greatest = session.replay.greatest;

    for (const now of [100, 5_000, 200_000]) b.receive(initiation, ATTACKER, now);
    expect(b.stats.drops.stale_initiation).toBe(3);
    expect(b.takeTransmits()).toEqual([]);
    expect(b.currentSession).toBe(session);
    expect(session.sendCounter).toBe(sendCounter);
    expect(session.replay.greatest).toBe(greatest);
    expect(b.endpoint).toBe(aNode.endpoint);

    a.send(pilotPacket(aNode.address, bNode.address, "after"), 101);
    b.send(pilotPacket(bNode.address, aNode.address, "after reply"), 101);
    link.pump(101);
    expect(b.takeDelivered().map(text)).toEqual(["before 0", "before 1", "before 2", "after"]);
    expect(a.takeDelivered().map(text)).toEqual(["reply 0", "reply 1", "reply 2", "after reply"]);
    expect(link.log.filter((s) => s.to === ATTACKER)).toEqual([]);
  });

  test("old data frames replayed after any number of handshakes stay dead", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    a.send(pilotPacket(aNode.address, bNode.address, "once"), 1);
    link.pump(1);
    const old = capturedData(link);
    // Rekey twice (the reference reset its replay window on every key exchange).
    a.send(pilotPacket(aNode.address, bNode.address, "rekey 1"), 121_000);
    link.pump(121_000);
    a.send(pilotPacket(aNode.address, bNode.address, "rekey 2"), 242_000);
    link.pump(242_000);
    b.takeDelivered();
    for (const f of old) b.receive(f, ATTACKER, 242_001);
    expect(b.takeDelivered()).toEqual([]);
    expect(b.endpoint).toBe(aNode.endpoint);
  });

  test("a replayed response does not reset the initiator's session", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    const response = link.log.find((s) => s.frame[0] === TunnelMessage.Response)!.frame;
    const session = a.currentSession!;
    const counter = session.sendCounter;
    a.receive(response, ATTACKER, 10);
    expect(a.stats.drops.unexpected_response).toBe(1);
    expect(a.currentSession).toBe(session);
    expect(session.sendCounter).toBe(counter);
    expect(a.endpoint).toBe(bNode.endpoint);
    // Even while a new handshake is in progress, the old response does not fit it.
    a.connect(10);
    a.send(pilotPacket(aNode.address, bNode.address, "x"), 121_000);
    a.receive(response, ATTACKER, 121_001);
    expect(a.stats.drops.unexpected_response).toBe(2);
    expect(a.currentSession).toBe(session);
    link.pump(121_002);
    expect(b.takeDelivered().map(text)).toEqual(["x"]);
  });

  test("a fresh, genuine initiation from a new address does not move the endpoint by itself", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    link.sourceOf.a = "172.16.0.5:7000";
    a.send(pilotPacket(aNode.address, bNode.address, "rekey from elsewhere"), 121_000);
    const [init] = a.takeTransmits().filter((t) => t.frame[0] === TunnelMessage.Initiation);
    b.receive(init!.frame, "172.16.0.5:7000", 121_000);
    const [resp] = b.takeTransmits();
    expect(resp!.endpoint).toBe("172.16.0.5:7000");
    expect(b.endpoint).toBe(aNode.endpoint);
  });
});

describe("weakness 3: replay window poisoning", () => {
  test("forged frames with huge counters do not move the window; genuine frames still pass", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    const index = b.currentSession!.localIndex;
    const greatest = b.currentSession!.replay.greatest;
    for (const counter of [2 ** 25 - 1, 2 ** 20, 5_000, greatest + 1]) {
      b.receive(encodeDataFrame(index, counter, randomBytes(rand, 60)), ATTACKER, 1);
    }
    b.receive(encodeDataFrame(index, 2 ** 40, randomBytes(rand, 60)), ATTACKER, 1);
    expect(b.stats.drops.auth_failed).toBe(4);
    expect(b.stats.drops.counter_limit).toBe(1);
    expect(b.currentSession!.replay.greatest).toBe(greatest);
    for (let i = 0; i < 5; i++) a.send(pilotPacket(aNode.address, bNode.address, `genuine ${i}`), 2);
    link.pump(2);
    expect(b.takeDelivered().map(text)).toEqual(["genuine 0", "genuine 1", "genuine 2", "genuine 3", "genuine 4"]);
  });

  test("a genuine frame with its counter field raised is rejected and moves nothing", () => {
    const { a, b, aNode, bNode } = establishedPair(0);
    a.send(pilotPacket(aNode.address, bNode.address, "real"), 1);
    const [t] = a.takeTransmits();
    const raised = t!.frame.slice();
    raised[9] = 0x10; // counter + 2^48: past the hard limit
    b.receive(raised, ATTACKER, 1);
    raised[9] = 0;
    raised[13] = 0x10; // counter + 2^20: inside the limit, so it reaches (and fails) authentication
    b.receive(raised, ATTACKER, 1);
    expect(b.stats.drops.counter_limit).toBe(1);
    expect(b.stats.drops.auth_failed).toBe(1);
    expect(b.currentSession!.replay.greatest).toBe(0);
    b.receive(t!.frame, aNode.endpoint, 1);
    expect(b.takeDelivered().map(text)).toEqual(["real"]);
  });
});

describe("weakness 4: the sender, its index and the header are authenticated", () => {
  test("a frame moved to another session index does not open", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    const bOldIndex = b.currentSession!.localIndex;
    // Rekey so that B holds two sessions with A (current and previous).
    a.send(pilotPacket(aNode.address, bNode.address, "rekey"), 121_000);
    link.pump(121_000);
    expect(b.currentSession!.localIndex).not.toBe(bOldIndex);
    for (let i = 0; i < 5; i++) a.send(pilotPacket(aNode.address, bNode.address, `n${i}`), 121_001);
    link.pump(121_001);
    b.takeDelivered();
    a.send(pilotPacket(aNode.address, bNode.address, "moved"), 121_002);
    const [t] = a.takeTransmits();
    const moved = t!.frame.slice();
    new DataView(moved.buffer).setUint32(4, bOldIndex);
    b.receive(moved, ATTACKER, 121_002);
    expect(b.stats.drops.auth_failed).toBe(1);
    expect(b.takeDelivered()).toEqual([]);
    expect(b.endpoint).toBe(aNode.endpoint);
    b.receive(t!.frame, aNode.endpoint, 121_003);
    expect(b.takeDelivered().map(text)).toEqual(["moved"]);
  });

  test("a third node's frames cannot pass as A's: re-indexed frames fail, inner source is checked", () => {
    const aNode = testNode("a", 1, 10);
    const bNode = testNode("b", 2, 20);
    const cNode = testNode("c", 3, 30);
    // B talks to both A and C through one socket, so both peers share B's index table.
    const bToA = peerOf(bNode, aNode);
    const bToC = peerOf(bNode, cNode);
    const aToB = peerOf(aNode, bNode);
    const cToB = peerOf(cNode, bNode);
    const ab = new Link(aToB, aNode, bToA, bNode);
    const cb = new Link(cToB, cNode, bToC, bNode);
    aToB.connect(0);
    ab.pump(0);
    cToB.connect(0);
    cb.pump(0);
    expect(bNode.indices.lookup(bToA.currentSession!.localIndex)).toBe(bToA);
    expect(bNode.indices.lookup(bToC.currentSession!.localIndex)).toBe(bToC);

    // C's genuine frame, with its receiver index rewritten to B's session with A.
    cToB.send(pilotPacket(aNode.address, bNode.address, "I am A, honest"), 1);
    const [fromC] = cToB.takeTransmits();
    const rerouted = fromC!.frame.slice();
    new DataView(rerouted.buffer).setUint32(4, bToA.currentSession!.localIndex);
    bToA.receive(rerouted, cNode.endpoint, 1);
    expect(bToA.stats.drops.auth_failed).toBe(1);
    // Delivered as it is, through C's own session, the claim "source = A" is caught.
    bToC.receive(fromC!.frame, cNode.endpoint, 1);
    expect(bToC.stats.drops.wrong_source).toBe(1);
    expect(bToA.takeDelivered()).toEqual([]);
    expect(bToC.takeDelivered()).toEqual([]);
  });

  test("a frame reflected back to its sender does not open (keys and AAD are per direction)", () => {
    const { a, aNode, bNode } = establishedPair(0);
    a.send(pilotPacket(aNode.address, bNode.address, "reflect me"), 1);
    const [t] = a.takeTransmits();
    const reflected = t!.frame.slice();
    new DataView(reflected.buffer).setUint32(4, a.currentSession!.localIndex);
    a.receive(reflected, bNode.endpoint, 2);
    expect(a.stats.drops.auth_failed).toBe(1);
    expect(a.takeDelivered()).toEqual([]);
  });
});

describe("weakness 5: tampered frames are dropped", () => {
  test("every single-bit flip anywhere in a data frame (header, ciphertext, tag) is dropped", () => {
    const { a, b, aNode, bNode } = establishedPair(0);
    a.send(pilotPacket(aNode.address, bNode.address, "integrity"), 1);
    const [t] = a.takeTransmits();
    const frame = t!.frame;
    const greatest = b.currentSession!.replay.greatest;
    for (let i = 0; i < frame.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = frame.slice();
        bad[i]! ^= 1 << bit;
        b.receive(bad, ATTACKER, 2);
      }
    }
    expect(b.takeDelivered()).toEqual([]);
    expect(totalDrops(b)).toBe(frame.length * 8);
    expect(b.currentSession!.replay.greatest).toBe(greatest);
    expect(b.endpoint).toBe(aNode.endpoint);
    b.receive(frame, aNode.endpoint, 3);
    expect(b.takeDelivered().map(text)).toEqual(["integrity"]);
  });
});

describe("identities and keys", () => {
  test("a peer pinned to the wrong key never completes a handshake with the impostor", () => {
    const aNode = testNode("a", 1, 10);
    const bNode = testNode("b", 2, 20);
    const mallory = testNode("m", 3, 10); // same address as A, different key
    const b = peerOf(bNode, aNode); // B pins A's real key
    const m = peerOf(mallory, bNode);
    const link = new Link(m, mallory, b, bNode);
    link.sourceOf.m = aNode.endpoint;
    m.send(pilotPacket(aNode.address, bNode.address, "trust me"), 0);
    link.pump(0);
    expect(b.stats.drops.wrong_identity).toBe(1);
    expect(b.stats.responsesSent).toBe(0);
    expect(b.takeDelivered()).toEqual([]);
    // And the initiator side: A pinning a wrong key for B gets no answer B can produce.
    const a = peerOf(aNode, bNode, { pinned: mallory.identity.publicKey });
    const b2 = peerOf(bNode, aNode);
    const link2 = new Link(a, aNode, b2, bNode);
    a.send(pilotPacket(aNode.address, bNode.address, "to the wrong key"), 0);
    link2.pump(0);
    expect(b2.stats.drops.bad_initiation).toBe(1);
    expect(a.isEstablished(0)).toBe(false);
  });

  test("forward secrecy: each handshake between the same nodes gives unrelated session keys", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    const frames: string[] = [];
    const plaintext = pilotPacket(aNode.address, bNode.address, "same every time");
    for (let round = 0; round < 3; round++) {
      const now = round * 121_000 + 1;
      a.send(plaintext, now);
      link.pump(now);
    }
    for (const f of capturedData(link)) frames.push(bytesToHex(f.subarray(16)));
    // Same plaintext; counters restart at 0 per session, yet no ciphertext repeats.
    expect(new Set(frames).size).toBe(frames.length);
    expect(b.takeDelivered().length).toBe(3);
    expect(b.currentSession!.localIndex).toBe(a.currentSession!.remoteIndex);
  });
});
