import { describe, expect, test } from "bun:test";
import { bytesToHex } from "../../src/crypto/bytes.ts";
import { addressOf } from "../../src/protocol/address.ts";
import { MAX_TUNNEL_PLAINTEXT, TunnelMessage } from "../../src/protocol/tunnel-frame.ts";
import { DEFAULT_TIMERS } from "../../src/tunnel/timers.ts";
import { establishedPair, Link, peerOf, pilotPacket, testNode, text, twoNodes } from "./harness.ts";

describe("Peer: handshake and queue", () => {
  test("the first packet is queued, a handshake runs, then it is delivered", () => {
    const { a, b, aNode, bNode, link } = twoNodes();
    a.send(pilotPacket(aNode.address, bNode.address, "hello"), 0);
    expect(a.queuedPackets).toBe(1);
    const first = a.takeTransmits();
    expect(first.length).toBe(1);
    expect(first[0]!.frame[0]).toBe(TunnelMessage.Initiation);
    expect(first[0]!.endpoint).toBe(bNode.endpoint);
    // Put it back through the link.
    b.receive(first[0]!.frame, aNode.endpoint, 1);
    link.pump(1);
    expect(b.takeDelivered().map(text)).toEqual(["hello"]);
    expect(a.takeEvents()).toEqual([{ type: "established", role: "initiator", localIndex: a.currentSession!.localIndex, endpoint: bNode.endpoint }]);
    expect(b.takeEvents()).toEqual([{ type: "established", role: "responder", localIndex: b.currentSession!.localIndex, endpoint: aNode.endpoint }]);
    expect(a.isEstablished(1) && b.isEstablished(1)).toBe(true);
    b.send(pilotPacket(bNode.address, aNode.address, "hi back"), 2);
    link.pump(2);
    expect(a.takeDelivered().map(text)).toEqual(["hi back"]);
    expect(a.stats.handshakesCompleted).toBe(1);
    expect(b.stats.handshakesCompleted).toBe(1);
  });

  test("the queue is bounded (oldest dropped) and flushed in order after the handshake", () => {
    const { a, b, aNode, bNode, link } = twoNodes({ queueLimit: 8 });
    for (let i = 0; i < 12; i++) a.send(pilotPacket(aNode.address, bNode.address, `p${i}`), 0);
    expect(a.queuedPackets).toBe(8);
    expect(a.stats.drops.queue_overflow).toBe(4);
    expect(a.stats.initiationsSent).toBe(1);
    link.pump(0);
    expect(b.takeDelivered().map(text)).toEqual(["p4", "p5", "p6", "p7", "p8", "p9", "p10", "p11"]);
  });

  test("no plaintext is ever sent: every frame is a handshake frame or a sealed data frame", () => {
    const { a, b, aNode, bNode, link } = twoNodes();
    const marker = "PLAINTEXT-MARKER-1234567890";
    for (let i = 0; i < 5; i++) a.send(pilotPacket(aNode.address, bNode.address, marker), i);
    link.pump(5);
    b.send(pilotPacket(bNode.address, aNode.address, marker), 6);
    link.pump(6);
    expect(b.takeDelivered().length).toBe(5);
    expect(a.takeDelivered().length).toBe(1);
    const needle = Buffer.from(marker);
    for (const s of link.log) {
      expect([TunnelMessage.Initiation, TunnelMessage.Response, TunnelMessage.Data]).toContain(s.frame[0] as 1);
      expect(Buffer.from(s.frame).includes(needle)).toBe(false);
      // Nothing on the wire looks like a Pilot packet header (version nibble 1).
      expect(s.frame[0]! >> 4).toBe(0);
    }
  });

  test("a responder sends on a new session only after the initiator's first data frame", () => {
    const { a, b, aNode, bNode } = twoNodes();
    a.connect(0);
    const [init] = a.takeTransmits();
    b.receive(init!.frame, aNode.endpoint, 0);
    const [resp] = b.takeTransmits();
    expect(resp!.frame[0]).toBe(TunnelMessage.Response);
    expect(b.currentSession).toBeNull();
    // B has traffic for A but must not use the unconfirmed session.
    b.send(pilotPacket(bNode.address, aNode.address, "early"), 0);
    const afterSend = b.takeTransmits();
    expect(afterSend.every((t) => t.frame[0] !== TunnelMessage.Data)).toBe(true);
    expect(b.queuedPackets).toBe(1);
    // A completes and confirms with a keepalive; B then flushes on the confirmed session.
    a.receive(resp!.frame, bNode.endpoint, 1);
    const [keepalive] = a.takeTransmits();
    expect(keepalive!.frame.length).toBe(32);
    b.receive(keepalive!.frame, aNode.endpoint, 1);
    const flushed = b.takeTransmits().filter((t) => t.frame[0] === TunnelMessage.Data);
    expect(flushed.length).toBe(1);
    for (const t of flushed) a.receive(t.frame, bNode.endpoint, 2);
    expect(a.takeDelivered().map(text)).toEqual(["early"]);
  });

  test("both sides initiating at once still converge", () => {
    const { a, b, aNode, bNode, link } = twoNodes();
    a.send(pilotPacket(aNode.address, bNode.address, "from a"), 0);
    b.send(pilotPacket(bNode.address, aNode.address, "from b"), 0);
    link.pump(0);
    expect(b.takeDelivered().map(text)).toEqual(["from a"]);
    expect(a.takeDelivered().map(text)).toEqual(["from b"]);
    for (let i = 1; i <= 3; i++) {
      a.send(pilotPacket(aNode.address, bNode.address, `a${i}`), i);
      b.send(pilotPacket(bNode.address, aNode.address, `b${i}`), i);
      link.pump(i);
    }
    expect(b.takeDelivered().map(text)).toEqual(["a1", "a2", "a3"]);
    expect(a.takeDelivered().map(text)).toEqual(["b1", "b2", "b3"]);
  });

  test("retries back off (1 s doubling to 5 s, with jitter) and give up after 90 s with an event", () => {
    const { a, aNode, bNode } = twoNodes();
    a.send(pilotPacket(aNode.address, bNode.address, "lost"), 0);
    a.send(pilotPacket(aNode.address, bNode.address, "lost too"), 0);
    const times: number[] = [];
    let now = 0;
    for (;;) {
      if (a.takeTransmits().some((t) => t.frame[0] === TunnelMessage.Initiation)) times.push(now);
      const next = a.nextTimeout();
      if (next === null) break;
      now = next;
      a.tick(now);
    }
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(gaps[0]).toBeGreaterThanOrEqual(1000);
    expect(gaps[0]).toBeLessThan(1334);
    expect(gaps[1]).toBeGreaterThanOrEqual(2000);
    expect(gaps[2]).toBeGreaterThanOrEqual(4000);
    for (const g of gaps.slice(3)) {
      expect(g).toBeGreaterThanOrEqual(5000);
      expect(g).toBeLessThan(5334);
    }
    expect(now).toBeGreaterThanOrEqual(DEFAULT_TIMERS.rekeyAttemptTime);
    expect(now).toBeLessThan(DEFAULT_TIMERS.rekeyAttemptTime + 5334);
    expect(a.takeEvents()).toEqual([{ type: "handshake_failed", reason: "timeout", droppedPackets: 2 }]);
    expect(a.stats.drops.handshake_timeout).toBe(2);
    expect(a.queuedPackets).toBe(0);
    expect(a.handshakeInProgress).toBe(false);
    expect(aNode.indices.size).toBe(0);
  });

  test("the initiator times its handshake by the attempt the response answers (retries included)", () => {
    const { a, b, aNode, bNode } = twoNodes();
    a.send(pilotPacket(aNode.address, bNode.address, "x"), 100);
    a.takeTransmits(); // the first initiation is lost
    const retryAt = a.nextTimeout()!;
    a.tick(retryAt);
    const retry = a.takeTransmits();
    expect(retry[0]!.frame[0]).toBe(TunnelMessage.Initiation);
    b.receive(retry[0]!.frame, aNode.endpoint, retryAt + 3);
    const response = b.takeTransmits();
    a.receive(response[0]!.frame, bNode.endpoint, retryAt + 7);
    // 7 ms after the retry that was answered, not since the first attempt.
    expect(a.handshakeRtt).toBe(7);
    expect(b.handshakeRtt).toBeNull(); // a responder cannot time it
  });

  test("a lost initiation is retried and the retry completes", () => {
    const { a, b, aNode, bNode, link } = twoNodes();
    link.drop = (s) => s.frame[0] === TunnelMessage.Initiation && a.stats.initiationsSent === 1;
    a.send(pilotPacket(aNode.address, bNode.address, "eventually"), 0);
    link.pump(0);
    expect(b.takeDelivered()).toEqual([]);
    const t = a.nextTimeout()!;
    a.tick(t);
    link.pump(t);
    expect(b.takeDelivered().map(text)).toEqual(["eventually"]);
  });

  test("no endpoint yet: the handshake waits and goes out when the control plane names one", () => {
    const aNode = testNode("a", 1, 10);
    const bNode = testNode("b", 2, 20);
    const a = peerOf(aNode, bNode, { endpoint: null });
    const b = peerOf(bNode, aNode);
    a.send(pilotPacket(aNode.address, bNode.address, "x"), 0);
    expect(a.takeTransmits()).toEqual([]);
    a.setEndpoint(bNode.endpoint, 500);
    const link = new Link(a, aNode, b, bNode);
    link.pump(500);
    expect(b.takeDelivered().map(text)).toEqual(["x"]);
  });

  test("a responder that knew no endpoint learns it from the confirming frame and flushes its queue", () => {
    const aNode = testNode("a", 1, 10);
    const bNode = testNode("b", 2, 20);
    const a = peerOf(aNode, bNode);
    const b = peerOf(bNode, aNode, { endpoint: null });
    b.send(pilotPacket(bNode.address, aNode.address, "waiting for A"), 0);
    expect(b.takeTransmits()).toEqual([]);
    const link = new Link(a, aNode, b, bNode);
    a.connect(1);
    link.pump(1);
    expect(b.endpoint).toBe(aNode.endpoint);
    expect(a.takeDelivered().map(text)).toEqual(["waiting for A"]);
  });

  test("the same seeds produce the same bytes on the wire", () => {
    const run = () => {
      const { a, aNode, bNode, link } = twoNodes();
      a.send(pilotPacket(aNode.address, bNode.address, "det"), 0);
      link.pump(0);
      return link.log.map((s) => bytesToHex(s.frame));
    };
    const first = run();
    expect(first.length).toBe(3); // initiation, response, the queued packet
    expect(run()).toEqual(first);
  });
});

describe("Peer: keepalive, rekey, expiry", () => {
  test("passive keepalive: received data and sent nothing for 10 s -> one empty frame", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    a.send(pilotPacket(aNode.address, bNode.address, "one way"), 100);
    link.pump(100);
    expect(b.nextTimeout()).toBe(100 + 10_000);
    b.tick(10_099);
    expect(b.takeTransmits()).toEqual([]);
    b.tick(10_100);
    const [ka] = b.takeTransmits();
    expect(ka!.frame.length).toBe(32);
    a.receive(ka!.frame, bNode.endpoint, 10_100);
    expect(a.stats.keepalivesReceived).toBe(1);
    expect(a.takeDelivered()).toEqual([]);
    // Keepalives are not answered with keepalives.
    a.tick(30_000);
    expect(a.takeTransmits().filter((t) => t.frame.length === 32)).toEqual([]);
  });

  test("no keepalive when we answered with data in time", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    a.send(pilotPacket(aNode.address, bNode.address, "ping"), 100);
    link.pump(100);
    b.send(pilotPacket(bNode.address, aNode.address, "pong"), 200);
    link.pump(200);
    b.tick(20_000);
    expect(b.stats.keepalivesSent).toBe(0);
  });

  test("time-based rekey: the initiator starts a handshake at 120 s, before the 180 s limit", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    const old = a.currentSession!;
    a.send(pilotPacket(aNode.address, bNode.address, "t=119"), 119_000);
    expect(a.stats.initiationsSent).toBe(1);
    a.send(pilotPacket(aNode.address, bNode.address, "t=120"), 120_000);
    expect(a.stats.initiationsSent).toBe(2);
    link.pump(120_000);
    expect(b.takeDelivered().map(text)).toEqual(["t=119", "t=120"]);
    expect(a.currentSession).not.toBe(old);
    a.send(pilotPacket(aNode.address, bNode.address, "new keys"), 121_000);
    link.pump(121_000);
    expect(b.takeDelivered().map(text)).toEqual(["new keys"]);
    expect(b.currentSession!.localIndex).toBe(a.currentSession!.remoteIndex);
  });

  test("a responder-created session is not rekeyed by the responder's sends", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    b.send(pilotPacket(bNode.address, aNode.address, "late"), 150_000);
    expect(b.stats.initiationsSent).toBe(0);
    link.pump(150_000);
    expect(a.takeDelivered().map(text)).toEqual(["late"]);
  });

  test("an initiator that only receives rekeys at 165 s", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    b.send(pilotPacket(bNode.address, aNode.address, "at 164"), 164_000);
    link.pump(164_000);
    expect(a.stats.initiationsSent).toBe(1);
    b.send(pilotPacket(bNode.address, aNode.address, "at 165"), 165_000);
    link.pump(165_000);
    expect(a.stats.initiationsSent).toBe(2);
    expect(a.takeDelivered().map(text)).toEqual(["at 164", "at 165"]);
  });

  test("message-based rekey before the hard limit; the old session's frames still open", () => {
    const timers = { rekeyAfterMessages: 20, rejectAfterMessages: 40 };
    const { a, b, aNode, bNode, link } = establishedPair(0, { timers });
    const old = a.currentSession!;
    link.drop = (s) => s.frame[0] === TunnelMessage.Response; // hold the rekey open for a moment
    for (let i = 0; i < 25; i++) a.send(pilotPacket(aNode.address, bNode.address, `m${i}`), 10);
    link.pump(10);
    expect(a.stats.initiationsSent).toBe(2);
    expect(a.currentSession).toBe(old);
    link.drop = () => false;
    a.tick(a.nextTimeout()!);
    link.pump(2_000);
    expect(a.currentSession).not.toBe(old);
    expect(old.sendCounter).toBeLessThan(40);
    expect(b.takeDelivered().length).toBe(25);
  });

  test("a session past 180 s is never used: packets wait for a new handshake", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    link.drop = (s) => s.frame[0] !== TunnelMessage.Data;
    a.send(pilotPacket(aNode.address, bNode.address, "old"), 179_999);
    link.pump(179_999);
    expect(b.takeDelivered().map(text)).toEqual(["old"]);
    a.send(pilotPacket(aNode.address, bNode.address, "too late"), 180_000);
    const sent = a.takeTransmits();
    expect(sent.some((t) => t.frame[0] === TunnelMessage.Data)).toBe(false);
    expect(a.queuedPackets).toBe(1);
    // B also refuses frames on an expired session.
    const stale = establishedPair(0);
    stale.a.send(pilotPacket(stale.aNode.address, stale.bNode.address, "x"), 1);
    const [frame] = stale.a.takeTransmits();
    stale.b.receive(frame!.frame, stale.aNode.endpoint, 180_001);
    expect(stale.b.stats.drops.expired_session).toBe(1);
  });

  test("dead peer: data sent and nothing heard for 15 s starts a new handshake", () => {
    const { a, aNode, bNode } = establishedPair(0);
    a.send(pilotPacket(aNode.address, bNode.address, "anyone?"), 1_000);
    a.takeTransmits();
    expect(a.nextTimeout()).toBe(16_000);
    a.tick(16_000);
    expect(a.takeTransmits().some((t) => t.frame[0] === TunnelMessage.Initiation)).toBe(true);
  });

  test("all session keys are forgotten 540 s after the last handshake", () => {
    const { a, b } = establishedPair(0);
    a.tick(539_999);
    expect(a.currentSession).not.toBeNull();
    a.tick(540_000);
    b.tick(540_000);
    expect(a.currentSession).toBeNull();
    expect(b.currentSession).toBeNull();
    expect(a.takeEvents()).toEqual([{ type: "keys_expired" }]);
    expect(a.nextTimeout()).toBeNull();
  });

  test("persistent keepalive keeps a quiet session alive", () => {
    const aNode = testNode("a", 1, 10);
    const bNode = testNode("b", 2, 20);
    const a = peerOf(aNode, bNode, { persistentKeepalive: 25_000 });
    const b = peerOf(bNode, aNode);
    const link = new Link(a, aNode, b, bNode);
    a.connect(0);
    link.pump(0);
    expect(a.nextTimeout()).toBe(25_000);
    a.tick(25_000);
    expect(link.pump(25_000)).toBe(1);
    expect(b.stats.keepalivesReceived).toBe(2);
  });
});

describe("Peer: roaming and source checks", () => {
  test("the endpoint follows authenticated data frames, and only the newest ones", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    expect(b.endpoint).toBe(aNode.endpoint);
    a.send(pilotPacket(aNode.address, bNode.address, "before the move"), 1);
    const early = a.takeTransmits();
    link.sourceOf.a = "192.168.7.7:9999";
    a.send(pilotPacket(aNode.address, bNode.address, "after the move"), 2);
    link.pump(2);
    expect(b.endpoint).toBe("192.168.7.7:9999");
    expect(b.takeEvents()).toEqual([{ type: "endpoint_changed", endpoint: "192.168.7.7:9999" }]);
    // A late frame from the old address is still delivered but does not move the endpoint back.
    b.receive(early[0]!.frame, aNode.endpoint, 3);
    expect(b.takeDelivered().map(text)).toEqual(["after the move", "before the move"]);
    expect(b.endpoint).toBe("192.168.7.7:9999");
    b.send(pilotPacket(bNode.address, aNode.address, "to the new place"), 4);
    expect(b.takeTransmits()[0]!.endpoint).toBe("192.168.7.7:9999");
  });

  test("an authenticated packet claiming another source address is dropped and counted", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0);
    a.send(pilotPacket(addressOf(1, 99), bNode.address, "spoofed source"), 1);
    link.pump(1);
    expect(b.takeDelivered()).toEqual([]);
    expect(b.stats.drops.wrong_source).toBe(1);
    const short = a.currentSession!.sealFrame(new Uint8Array(10))!;
    b.receive(short, aNode.endpoint, 2);
    expect(b.stats.drops.short_packet).toBe(1);
    expect(b.takeDelivered()).toEqual([]);
  });

  test("send() refuses things that are not Pilot packets (programmer error)", () => {
    const { a } = establishedPair(0);
    expect(() => a.send(new Uint8Array(10), 1)).toThrow(RangeError);
    expect(() => a.send(new Uint8Array(MAX_TUNNEL_PLAINTEXT + 1), 1)).toThrow(RangeError);
    // Larger than the base but within the largest frame: only a path that proved the size carries it.
    a.send(new Uint8Array(2000), 1);
    expect(a.takeTransmits()).toHaveLength(0);
    expect(a.stats.drops.oversize).toBe(1);
  });
});
