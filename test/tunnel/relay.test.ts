/**
 * The tunnel's side of paths: relay endpoints never roam, probes sealed to an
 * explicit endpoint, a new handshake on demand, and a router that accepts a
 * relayed frame only as coming from the node the relay names.
 */
import { describe, expect, test } from "bun:test";
import { localHandshakeKeys } from "../../src/crypto/handshake.ts";
import { Peer } from "../../src/tunnel/peer.ts";
import { TunnelRouter } from "../../src/tunnel/router.ts";
import { TunnelMessage } from "../../src/protocol/tunnel-frame.ts";
import { seededBytes } from "../crypto/support.ts";
import { Link, pilotPacket, testNode, text, type TestNode } from "./harness.ts";

const isRelay = (e: string) => e.startsWith("relay:");

function peer(self: TestNode, other: TestNode, endpoint: string | null = other.endpoint): Peer<string> {
  return new Peer<string>({
    localAddress: self.address,
    remoteAddress: other.address,
    local: localHandshakeKeys(self.identity),
    remoteIdentityKey: other.identity.publicKey,
    indices: self.indices,
    timestamps: self.clock,
    endpoint,
    random: seededBytes(self.address),
    isRelay,
  });
}

function pair(aEndpoint?: string, bEndpoint?: string) {
  const aNode = testNode("a", 11, 110);
  const bNode = testNode("b", 12, 120);
  const a = peer(aNode, bNode, aEndpoint ?? bNode.endpoint);
  const b = peer(bNode, aNode, bEndpoint ?? aNode.endpoint);
  const link = new Link(a, aNode, b, bNode);
  a.connect(0);
  link.pump(0);
  a.takeEvents();
  b.takeEvents();
  return { a, b, aNode, bNode, link };
}

/** Seals one packet at `from` and hands the frame to `to` as if it came from `source`. */
function deliver(from: Peer<string>, to: Peer<string>, packet: Uint8Array, source: string, now: number): void {
  from.send(packet, now);
  for (const t of from.takeTransmits()) to.receive(t.frame, source, now);
}

describe("relay-aware roaming", () => {
  test("a frame that came through a relay never moves the endpoint, even the newest", () => {
    const { a, b, aNode, bNode } = pair();
    deliver(a, b, pilotPacket(aNode.address, bNode.address, "via relay"), "relay:110", 1);
    expect(b.takeDelivered().map(text)).toEqual(["via relay"]);
    expect(b.endpoint).toBe(aNode.endpoint);
    expect(b.takeEvents()).toEqual([]);
    expect(b.lastDirectAt).toBe(0); // the handshake's keepalive came directly; the relayed frame did not count
    expect(b.lastReceivedAt).toBe(1);
  });

  test("while sending through a relay, a direct frame does not move the endpoint; it is reported, at most once a second", () => {
    const { a, b, aNode, bNode } = pair(undefined, "relay:110");
    deliver(a, b, pilotPacket(aNode.address, bNode.address, "one"), "10.9.9.9:7000", 1);
    deliver(a, b, pilotPacket(aNode.address, bNode.address, "two"), "10.9.9.9:7000", 2);
    expect(b.takeDelivered().map(text)).toEqual(["one", "two"]);
    expect(b.endpoint).toBe("relay:110");
    expect(b.takeEvents()).toEqual([{ type: "direct_heard", endpoint: "10.9.9.9:7000" }]);
    expect(b.lastDirectAt).toBe(2);
    deliver(a, b, pilotPacket(aNode.address, bNode.address, "three"), "10.9.9.9:7000", 1500);
    expect(b.takeEvents()).toEqual([{ type: "direct_heard", endpoint: "10.9.9.9:7000" }]);
    // The shell decides: once it sets a direct endpoint, roaming between addresses works again.
    b.setEndpoint("10.9.9.9:7000", 1501);
    deliver(a, b, pilotPacket(aNode.address, bNode.address, "four"), "10.8.8.8:7001", 1502);
    expect(b.endpoint).toBe("10.8.8.8:7001");
    expect(b.takeEvents()).toEqual([{ type: "endpoint_changed", endpoint: "10.8.8.8:7001" }]);
  });

  test("the established event names where the completing frame came from", () => {
    const aNode = testNode("a", 13, 130);
    const bNode = testNode("b", 14, 140);
    const a = peer(aNode, bNode, "relay:140");
    const b = peer(bNode, aNode, "relay:130");
    a.connect(0);
    const [init] = a.takeTransmits();
    b.receive(init!.frame, "relay:130", 0);
    const [response] = b.takeTransmits();
    expect(response!.endpoint).toBe("relay:130"); // back the way the initiation came
    a.receive(response!.frame, "10.1.1.1:4000", 1);
    expect(a.takeEvents()).toEqual([{ type: "established", role: "initiator", localIndex: a.currentSession!.localIndex, endpoint: "10.1.1.1:4000" }]);
    for (const t of a.takeTransmits()) b.receive(t.frame, "relay:130", 2);
    expect(b.takeEvents()).toEqual([{ type: "established", role: "responder", localIndex: b.currentSession!.localIndex, endpoint: "relay:130" }]);
  });
});

describe("sendTo and rehandshake", () => {
  test("sendTo seals to one endpoint without moving the peer, and refuses without a session", () => {
    const aNode = testNode("a", 15, 150);
    const bNode = testNode("b", 16, 160);
    const lonely = peer(aNode, bNode);
    expect(lonely.sendTo(pilotPacket(aNode.address, bNode.address, "x"), "10.5.5.5:1", 0)).toBe(false);
    expect(lonely.takeTransmits()).toEqual([]);
    expect(lonely.handshakeInProgress).toBe(false);

    const { a, bNode: other } = pair();
    const before = a.lastDataSentAt;
    expect(a.sendTo(pilotPacket(a.localAddress, a.remoteAddress, "probe"), "10.7.7.7:9", 5)).toBe(true);
    const [t] = a.takeTransmits();
    expect(t!.endpoint).toBe("10.7.7.7:9");
    expect(a.endpoint).toBe(other.endpoint);
    expect(a.lastDataSentAt).toBe(before); // a probe is not application traffic
    // Unanswered probes never trigger the dead-peer handshake.
    a.tick(60_000);
    expect(a.handshakeInProgress).toBe(false);
  });

  test("rehandshake starts a new handshake while the current session keeps carrying packets", () => {
    const { a, b, aNode, bNode, link } = pair();
    const first = a.currentSession!.localIndex;
    a.rehandshake(100);
    expect(a.handshakeInProgress).toBe(true);
    a.send(pilotPacket(aNode.address, bNode.address, "still flowing"), 100);
    const sent = a.takeTransmits();
    expect(sent.map((t) => t.frame[0]).sort()).toEqual([TunnelMessage.Initiation, TunnelMessage.Data]);
    for (const t of sent) b.receive(t.frame, aNode.endpoint, 100);
    expect(b.takeDelivered().map(text)).toEqual(["still flowing"]);
    link.pump(101);
    expect(a.currentSession!.localIndex).not.toBe(first);
    expect(a.lastHandshakeAt).toBe(101);
  });
});

describe("router: relayed frames", () => {
  test("a relayed frame is accepted only from the node the relay names", () => {
    const aNode = testNode("a", 17, 170);
    const bNode = testNode("b", 18, 180);
    const cNode = testNode("c", 19, 190);
    const routerB = new TunnelRouter<string>({ localAddress: bNode.address, identity: bNode.identity, admit: () => "accept", isRelay, timestamps: bNode.clock });
    routerB.addPeer(aNode.address, aNode.identity.publicKey, "relay:170");
    routerB.addPeer(cNode.address, cNode.identity.publicKey, "relay:190");
    const a = peer(aNode, bNode, "relay:180");
    a.connect(0);
    const [init] = a.takeTransmits();
    // An initiation relayed in c's name (a's, in truth) is dropped; in a's name it is answered.
    expect(routerB.receive(init!.frame, "relay:190", 1, cNode.address)).toBe("dropped");
    expect(routerB.stats.wrongRelaySender).toBe(1);
    expect(routerB.receive(init!.frame, "relay:170", 2, aNode.address)).toBe("ok");
    const [response] = routerB.takeTransmits();
    a.receive(response!.frame, "relay:180", 3);
    a.send(pilotPacket(aNode.address, bNode.address, "hello"), 4);
    const frames = a.takeTransmits();
    // a's data frame, relayed as if from c: dropped before it touches a's session.
    for (const t of frames) expect(routerB.receive(t.frame, "relay:190", 5, cNode.address)).toBe("dropped");
    expect(routerB.takeDelivered()).toEqual([]);
    // The same frames named as a's are delivered: nothing was consumed by the attempt.
    for (const t of frames) expect(routerB.receive(t.frame, "relay:170", 6, aNode.address)).toBe("ok");
    expect(routerB.takeDelivered().map((d) => text(d.packet))).toEqual(["hello"]);
  });
});
