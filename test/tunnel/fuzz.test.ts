/**
 * Property: whatever bytes arrive, the tunnel neither throws nor delivers
 * anything that A did not send. Every decoder on the receive path is fed
 * random bytes and mutations of genuine frames (which were delivered first,
 * so an unmutated copy is a replay).
 */
import { expect, test } from "bun:test";
import { consumeInitiation, localHandshakeKeys } from "../../src/crypto/handshake.ts";
import { hmacSha256 } from "../../src/crypto/hkdf.ts";
import { INITIATION_MAC_OFFSET, INITIATION_SIZE, TunnelMessage } from "../../src/protocol/tunnel-frame.ts";
import { fuzz } from "../support/fuzz.ts";
import { establishedPair, pilotPacket } from "./harness.ts";

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

test(`consumeInitiation survives ${CASES / 10} mutated initiations, resealed with a valid mac1 to reach the Noise checks`, () => {
  const { aNode, bNode, link } = establishedPair(0);
  const initiation = link.log.find((s) => s.frame[0] === TunnelMessage.Initiation)!.frame;
  const keys = localHandshakeKeys(bNode.identity);
  let accepted = 0;
  let reachedNoise = 0;
  fuzz({ seed: 5, cases: CASES / 10, seeds: [initiation], maxRandomLength: 200 }, (input) => {
    if (input.length === INITIATION_SIZE && input[0] === TunnelMessage.Initiation) {
      input.set(hmacSha256(keys.mac1Key, input.subarray(0, INITIATION_MAC_OFFSET)).subarray(0, 16), INITIATION_MAC_OFFSET);
    }
    const r = consumeInitiation(keys, bNode.address, input);
    if (!r.ok && r.error.code !== "bad_mac") reachedNoise++;
    if (r.ok) {
      accepted++;
      expect(r.value.initiatorAddress).toBe(aNode.address);
    } else {
      expect(r.error.code.length).toBeGreaterThan(0);
    }
  });
  // Only unmutated copies can pass (some mutations are no-ops).
  expect(accepted).toBeLessThan(CASES / 100);
  expect(reachedNoise).toBeGreaterThan(CASES / 100);
});
