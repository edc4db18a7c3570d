import { expect, test } from "bun:test";
import { addressOf } from "../../src/protocol/address.ts";
import { PortTable } from "../../src/daemon/port-table.ts";

test("TIME-WAIT connections keep their port but stop counting toward the limits", () => {
  const t = new PortTable<string, string, object>({ maxPerPort: 2, maxTotal: 3 });
  const peer = addressOf(0, 9);
  const [a, b, c] = [{}, {}, {}];
  t.addConnection(peer, 50000, 80, a);
  t.addConnection(peer, 50001, 80, b);
  expect(t.hasRoom(80)).toBe(false);
  t.markLingering(peer, 50000, 80, a);
  t.markLingering(peer, 50000, 80, a); // twice changes nothing
  expect(t.hasRoom(80)).toBe(true);
  expect(t.connectionCount).toBe(1);
  expect(t.heldCount).toBe(2);
  t.addConnection(peer, 50002, 80, c);
  expect(t.hasRoom(80)).toBe(false);
  t.removeConnection(peer, 50000, 80, a); // a lingering one leaves without touching the active counts
  expect(t.connectionCount).toBe(2);
  t.removeConnection(peer, 50001, 80, b);
  expect(t.hasRoom(80)).toBe(true);
  expect(t.heldCount).toBe(1);
});

test("ephemeral allocation skips ports still held by a lingering connection", () => {
  const t = new PortTable<string, string, object>();
  const peer = addressOf(0, 9);
  const first = t.allocateEphemeral()!;
  const conn = {};
  t.addConnection(peer, 80, first, conn);
  t.markLingering(peer, 80, first, conn);
  for (let i = 0; i < 16383; i++) expect(t.allocateEphemeral()).not.toBe(first);
});
