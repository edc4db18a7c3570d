import { expect, test } from "bun:test";
import { RttEstimator } from "../../src/transport/rtt.ts";
import { StreamConnection } from "../../src/transport/connection.ts";

test("the RTO adds the peer's maximum ACK delay and is floored at minRto", () => {
  const r = new RttEstimator(1000, 50, 60_000, 40);
  expect(r.rto).toBe(1000);
  r.sample(1);
  // 1 + max(1, 4 * 0.5) + 40 = 43 -> floored to 50
  expect(r.rto).toBe(50);
  for (let i = 0; i < 50; i++) r.sample(30);
  expect(r.rto).toBeGreaterThan(30 + 40);
  expect(r.rto).toBeLessThan(30 + 40 + 10);
});

test("a seed from the path replaces the blind initial RTO; the connection's first sample replaces the seed", () => {
  const r = new RttEstimator(1000, 50, 60_000, 40);
  r.seed(10);
  expect(r.rto).toBe(10 + 4 * 5 + 40);
  expect(r.hasSample).toBe(false);
  r.sample(100);
  expect(r.srtt).toBe(100);
  r.seed(1); // too late: ignored once real samples exist
  expect(r.srtt).toBe(100);
});

test("a connection seeded with the path's RTT retransmits its SYN after tens of ms, not a second", () => {
  const seeded = StreamConnection.connect({ initialRtt: 5 }, 1234, 0);
  const blind = StreamConnection.connect({}, 1234, 0);
  expect(seeded.pollTransmit(0)?.flags).toBeDefined();
  expect(blind.pollTransmit(0)?.flags).toBeDefined();
  expect(seeded.nextTimeout()).toBeLessThan(100);
  expect(blind.nextTimeout()).toBe(1000);
});
