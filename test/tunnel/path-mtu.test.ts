/**
 * Path MTU discovery (RFC 8899 DPLPMTUD): the state machine alone (search up,
 * probe loss, black hole, raise timer, forged acks, path change), then inside
 * the tunnel Peer over the deterministic harness link: sealed probes and acks,
 * don't-fragment on every frame above the base, relays never probed, a path
 * that drops large frames settling below them, and acks the peer never earned
 * ignored.
 */
import { describe, expect, test } from "bun:test";
import type { Address } from "../../src/protocol/address.ts";
import { BASE_DATA_FRAME, BASE_TUNNEL_PLAINTEXT, DATA_HEADER_SIZE, TAG_SIZE } from "../../src/protocol/tunnel-frame.ts";
import { DEFAULT_MAX_PROBES, DEFAULT_PROBE_TIMEOUT, DEFAULT_RAISE_INTERVAL, PathMtu } from "../../src/tunnel/path-mtu.ts";
import { PMTU_ACK, PMTU_PROBE } from "../../src/tunnel/peer.ts";
import { establishedPair, pilotPacket } from "./harness.ts";

const BASE = BASE_DATA_FRAME;
const CANDIDATES = [1472, 8972, 8973, 16_504];

/** Acks every probe the machine asks for, in order, while `fits(size)`; returns the sizes probed. */
function runSearch(m: PathMtu, now: number, fits: (size: number) => boolean): number[] {
  const probed: number[] = [];
  for (let guard = 0; guard < 100; guard++) {
    const p = m.pollProbe(now);
    if (p === null) {
      const t = m.nextTimeout();
      if (t === null || m.state === "complete" || m.state === "error") return probed;
      now = t;
      m.tick(now);
      continue;
    }
    probed.push(p.size);
    if (fits(p.size)) m.onAck(p.id, p.size, now);
  }
  throw new Error("search never ended");
}

describe("PathMtu state machine", () => {
  test("a new path starts at the base, confirms it, then searches upward through every candidate", () => {
    const m = new PathMtu({ base: BASE });
    expect(m.state).toBe("disabled");
    expect(m.size).toBe(BASE);
    m.reset(CANDIDATES, 0);
    expect(m.state).toBe("base");
    expect(m.size).toBe(BASE);
    const probed = runSearch(m, 0, () => true);
    expect(probed).toEqual([BASE, ...CANDIDATES]);
    expect(m.state).toBe("complete");
    expect(m.size).toBe(16_504);
    // At the largest candidate there is nothing to raise to: no timer.
    expect(m.nextTimeout()).toBeNull();
  });

  test("a size that is never acked is tried MAX_PROBES times, then the search completes at the largest acked", () => {
    const m = new PathMtu({ base: BASE });
    m.reset(CANDIDATES, 0);
    const probed = runSearch(m, 0, (size) => size <= 1500);
    expect(probed).toEqual([BASE, 1472, ...Array(DEFAULT_MAX_PROBES).fill(8972)]);
    expect(m.state).toBe("complete");
    expect(m.size).toBe(1472);
    // The raise timer (600 s) searches upward again from the current size.
    const raise = m.nextTimeout()!;
    expect(raise).toBe(2 * 0 + DEFAULT_MAX_PROBES * DEFAULT_PROBE_TIMEOUT + DEFAULT_RAISE_INTERVAL);
    m.tick(raise);
    expect(m.state).toBe("searching");
    expect(m.pollProbe(raise)!.size).toBe(8972);
    expect(m.size).toBe(1472);
  });

  test("a path narrower than the base: error, the size stays at the base, the base is tried again after the raise interval", () => {
    const m = new PathMtu({ base: BASE });
    m.reset(CANDIDATES, 0);
    expect(runSearch(m, 0, () => false)).toEqual(Array(DEFAULT_MAX_PROBES).fill(BASE));
    expect(m.state).toBe("error");
    expect(m.size).toBe(BASE);
    const at = m.nextTimeout()!;
    m.tick(at);
    expect(m.state).toBe("base");
    expect(m.pollProbe(at)!.size).toBe(BASE);
  });

  test("acks for anything but the probe in flight change nothing (wrong id, wrong size, a size never probed, a stale retry)", () => {
    const m = new PathMtu({ base: BASE });
    m.reset(CANDIDATES, 0);
    const base = m.pollProbe(0)!;
    expect(m.onAck(base.id, 16_504, 1)).toBe(false); // a size never probed
    expect(m.onAck(base.id + 1, base.size, 1)).toBe(false); // not this probe
    expect(m.state).toBe("base");
    m.onAck(base.id, base.size, 1);
    const first = m.pollProbe(1)!;
    expect(first.size).toBe(1472);
    m.tick(1 + DEFAULT_PROBE_TIMEOUT);
    const retry = m.pollProbe(1 + DEFAULT_PROBE_TIMEOUT)!;
    expect(retry.size).toBe(1472);
    expect(m.onAck(first.id, first.size, 1100)).toBe(false); // the lost first send's id is stale now
    expect(m.size).toBe(BASE);
    expect(m.onAck(retry.id, retry.size, 1100)).toBe(true);
    expect(m.size).toBe(1472);
    // With nothing in flight (between probes) an ack is ignored too.
    const none = new PathMtu({ base: BASE });
    expect(none.onAck(1, 1472, 0)).toBe(false);
    expect(none.size).toBe(BASE);
  });

  test("black hole: back to the base at once, then the search runs again (and settles lower if the path shrank)", () => {
    const m = new PathMtu({ base: BASE });
    m.reset(CANDIDATES, 0);
    runSearch(m, 0, () => true);
    expect(m.size).toBe(16_504);
    expect(m.onBlackHole(5000)).toBe(true);
    expect(m.size).toBe(BASE);
    expect(m.state).toBe("base");
    expect(m.blackHoles).toBe(1);
    expect(runSearch(m, 5000, (size) => size <= 1500)).toEqual([BASE, 1472, 8972, 8972, 8972]);
    expect(m.size).toBe(1472);
    // At the base there is no black hole to fall out of.
    const fresh = new PathMtu({ base: BASE });
    fresh.reset(CANDIDATES, 0);
    expect(fresh.onBlackHole(0)).toBe(false);
  });

  test("EMSGSIZE on a probe fails that size at once", () => {
    const m = new PathMtu({ base: BASE });
    m.reset(CANDIDATES, 0);
    const b = m.pollProbe(0)!;
    m.onAck(b.id, b.size, 0);
    const p = m.pollProbe(0)!;
    m.onAck(p.id, p.size, 0);
    const big = m.pollProbe(0)!;
    expect(big.size).toBe(8972);
    m.onProbeRefused(8972, 0);
    expect(m.state).toBe("complete");
    expect(m.size).toBe(1472);
  });

  test("a path change resets to the base; a relay (no candidates) is never probed", () => {
    const m = new PathMtu({ base: BASE });
    m.reset(CANDIDATES, 0);
    runSearch(m, 0, () => true);
    m.reset([], 10);
    expect(m.state).toBe("disabled");
    expect(m.size).toBe(BASE);
    expect(m.pollProbe(10)).toBeNull();
    expect(m.nextTimeout()).toBeNull();
    m.reset(CANDIDATES, 20);
    expect(m.size).toBe(BASE);
    expect(m.pollProbe(20)!.size).toBe(BASE);
  });
});

const FULL = BASE_TUNNEL_PLAINTEXT;
const bulk = (aNode: { address: Address }, bNode: { address: Address }) => pilotPacket(aNode.address, bNode.address, new Uint8Array(FULL - 34));

describe("path MTU discovery in the tunnel Peer", () => {
  const pathMtu = { candidates: () => [1472, 8972] };

  test("nothing is probed until there is bulk; then sealed DF probes of exact sizes, acks back, the size rises", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0, { pathMtu });
    a.send(pilotPacket(aNode.address, bNode.address, "small"), 1);
    link.pump(1);
    expect(a.stats.pmtuProbesSent).toBe(0);
    a.send(bulk(aNode, bNode), 2);
    link.pump(2);
    expect(a.pathFrameSize).toBe(8972);
    expect(a.pathMtuState).toBe("complete");
    expect(a.maxPacketSize).toBe(8972 - DATA_HEADER_SIZE - TAG_SIZE);
    expect(a.takeEvents().filter((e) => e.type === "path_mtu").map((e) => (e as { size: number }).size)).toEqual([1472, 8972]);
    // The probes on the wire: data frames of exactly the probed sizes; the acks are small.
    const fromA = link.log.filter((s) => s.from === "a").map((s) => s.frame.length);
    expect(fromA).toEqual(expect.arrayContaining([BASE, 1472, 8972]));
    expect(b.stats.pmtuProbesAnswered).toBe(3);
    expect(link.log.filter((s) => s.from === "b" && s.frame[0] === 0x04).every((s) => s.frame.length <= 64)).toBe(true);
    // The other direction found nothing (b sent no bulk): it stays at the base.
    expect(b.pathFrameSize).toBe(BASE);
    // A large packet now leaves in one frame, with don't-fragment; base-size ones do not set it.
    a.send(pilotPacket(aNode.address, bNode.address, new Uint8Array(8000)), 3);
    a.send(pilotPacket(aNode.address, bNode.address, "x"), 3);
    const [large, small] = a.takeTransmits();
    expect(large!.frame.length).toBe(8000 + 34 + 32);
    expect(large!.dontFragment).toBe(true);
    expect(small!.dontFragment).toBeUndefined();
    b.takeDelivered();
    b.receive(large!.frame, aNode.endpoint, 3);
    expect(b.takeDelivered().map((p) => p.length)).toEqual([8034]);
  });

  test("probes are sent with don't-fragment; a path that drops frames above 1500 settles at 1472 after MAX_PROBES", () => {
    const { a, aNode, bNode, link } = establishedPair(0, { pathMtu });
    link.drop = (s) => s.frame.length > 1500;
    const seen: boolean[] = [];
    const origTake = a.takeTransmits.bind(a);
    a.takeTransmits = () => {
      const t = origTake();
      for (const x of t) if (x.frame.length >= BASE) seen.push(x.dontFragment === true);
      return t;
    };
    a.send(bulk(aNode, bNode), 1);
    link.pump(1);
    let now = 1;
    for (let i = 0; i < 10 && a.pathMtuState === "searching"; i++) {
      now = a.nextTimeout()!;
      a.tick(now);
      // The peer answers something now and then (stream ACKs): a retry waits for news from it.
      a.send(pilotPacket(aNode.address, bNode.address, "ping"), now);
      link.pump(now);
      link.b.send(pilotPacket(bNode.address, aNode.address, "pong"), now);
      link.pump(now);
    }
    expect(a.pathMtuState).toBe("complete");
    expect(a.pathFrameSize).toBe(1472);
    expect(a.stats.pmtuProbesSent).toBe(2 + 3);
    // Every probe, including the base one, set DF: the bulk packet at the base did not.
    expect(seen.filter((x) => x).length).toBe(5);
  });

  test("a peer's own ack for a size it was never probed at, or a forged frame, moves nothing", () => {
    const { a, b, aNode, bNode, link } = establishedPair(0, { pathMtu });
    // The genuine peer lies: an ack it seals itself, naming 8972, with no probe in flight.
    const lie = new Uint8Array(12);
    lie[0] = PMTU_ACK;
    new DataView(lie.buffer).setUint32(4, 1);
    new DataView(lie.buffer).setUint32(8, 8972);
    a.receive(b.currentSession!.sealFrame(lie)!, bNode.endpoint, 1);
    expect(a.stats.pmtuAcksReceived).toBe(1);
    expect(a.pathFrameSize).toBe(BASE);
    // A probe that is not the size it claims is not answered.
    const probe = new Uint8Array(1000);
    probe[0] = PMTU_PROBE;
    new DataView(probe.buffer).setUint32(8, 8972);
    a.receive(b.currentSession!.sealFrame(probe)!, bNode.endpoint, 1);
    expect(a.stats.drops.bad_pmtu).toBe(1);
    expect(a.takeTransmits()).toHaveLength(0);
    // An attacker without the keys: dropped before anything is read.
    const forged = b.currentSession!.sealFrame(lie)!;
    forged[forged.length - 1]! ^= 1;
    a.receive(forged, bNode.endpoint, 1);
    expect(a.stats.drops.auth_failed).toBe(1);
    // During a real search, an ack naming the next size early does nothing either.
    a.send(bulk(aNode, bNode), 2);
    const [baseProbe] = a.takeTransmits().filter((t) => t.frame.length === BASE && t.dontFragment);
    expect(baseProbe).toBeDefined();
    new DataView(lie.buffer).setUint32(4, 1);
    a.receive(b.currentSession!.sealFrame(lie)!, bNode.endpoint, 2);
    expect(a.pathFrameSize).toBe(BASE);
    link.pump(2);
  });

  test("a relay endpoint is never probed; a move to a direct endpoint searches; back to the relay drops to the base at once", () => {
    const isRelay = (e: string) => e.startsWith("relay:");
    const { a, aNode, bNode, link } = establishedPair(0, { pathMtu, isRelay });
    a.setEndpoint("relay:20", 1);
    a.send(bulk(aNode, bNode), 1);
    expect(a.pathMtuState).toBe("disabled");
    expect(a.takeTransmits().every((t) => t.frame.length <= BASE && !t.dontFragment)).toBe(true);
    a.setEndpoint(bNode.endpoint, 2);
    link.pump(2);
    expect(a.pathFrameSize).toBe(8972);
    a.takeEvents();
    a.setEndpoint("relay:20", 3);
    expect(a.pathFrameSize).toBe(BASE);
    expect(a.takeEvents()).toContainEqual({ type: "path_mtu", size: BASE });
    // A packet cut for the old size is not sent through the relay.
    a.send(pilotPacket(aNode.address, bNode.address, new Uint8Array(4000)), 3);
    expect(a.takeTransmits()).toHaveLength(0);
    expect(a.stats.drops.oversize).toBe(1);
  });

  test("loss at the large size (a stream's RTO) is a black hole: the base at once, then a new search", () => {
    const { a, aNode, bNode, link } = establishedPair(0, { pathMtu });
    a.send(bulk(aNode, bNode), 1);
    link.pump(1);
    expect(a.pathFrameSize).toBe(8972);
    a.takeEvents();
    link.drop = (s) => s.frame.length > 1500;
    a.notePathLoss(2);
    expect(a.pathFrameSize).toBe(BASE);
    expect(a.takeEvents()).toContainEqual({ type: "path_mtu", size: BASE });
    link.pump(2);
    expect(a.pathFrameSize).toBe(1472);
  });
});
