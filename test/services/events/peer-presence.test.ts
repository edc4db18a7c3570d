/**
 * peer.online / peer.offline from the tunnel's events: once per coming and
 * going, trusted peers only, rekeys silent, `unreachable` when the handshake
 * gives up, `untrusted` when trust ends (with the hostname it had).
 */
import { expect, test } from "bun:test";
import { PeerPresence } from "../../../src/daemon/peer-presence.ts";
import { addressOf, type Address } from "../../../src/protocol/address.ts";
import type { PeerEvent } from "../../../src/tunnel/peer.ts";

const A = addressOf(0, 2);
const STRANGER = addressOf(0, 3);

function setup() {
  const trusted = new Set<Address>([A]);
  const names = new Map<Address, string>([[A, "agent-b"]]);
  const published: [string, Record<string, unknown>][] = [];
  const presence = new PeerPresence({
    trusts: (n) => trusted.has(n),
    describe: (n) => ({ hostname: names.get(n) ?? null, endpoint: "127.0.0.1:4000", path: "direct" }),
    publish: (type, data) => published.push([type, data]),
  });
  return { presence, published, trusted, names };
}

const established: PeerEvent<string> = { type: "established", role: "initiator", localIndex: 1, endpoint: "127.0.0.1:4000" };
const failed: PeerEvent<string> = { type: "handshake_failed", reason: "timeout", droppedPackets: 2 };

test("online once per coming, offline once per going; rekeys and other events are silent", () => {
  const { presence, published } = setup();
  presence.onTunnelEvent(A, established);
  presence.onTunnelEvent(A, { ...established, role: "responder" }); // a rekey
  presence.onTunnelEvent(A, { type: "endpoint_changed", endpoint: "127.0.0.1:4001" });
  presence.onTunnelEvent(A, { type: "keys_expired" });
  expect(presence.isOnline(A)).toBe(true);
  presence.onTunnelEvent(A, failed);
  presence.onTunnelEvent(A, failed);
  presence.onTunnelEvent(A, established);
  expect(published).toEqual([
    ["peer.online", { address: "0:0000.0000.0002", node_id: 2, hostname: "agent-b", endpoint: "127.0.0.1:4000", path: "direct" }],
    ["peer.offline", { address: "0:0000.0000.0002", node_id: 2, hostname: "agent-b", reason: "unreachable" }],
    ["peer.online", { address: "0:0000.0000.0002", node_id: 2, hostname: "agent-b", endpoint: "127.0.0.1:4000", path: "direct" }],
  ]);
});

test("strangers raise nothing; a handshake that fails before any session raises nothing", () => {
  const { presence, published } = setup();
  presence.onTunnelEvent(STRANGER, established);
  presence.onTunnelEvent(STRANGER, failed);
  presence.onTunnelEvent(A, failed);
  expect(published).toEqual([]);
  expect(presence.count).toBe(0);
});

test("trust ending takes an online peer offline, keeping the hostname it had", () => {
  const { presence, published, trusted, names } = setup();
  presence.onTunnelEvent(A, established);
  trusted.delete(A);
  names.delete(A);
  presence.untrusted(A);
  presence.untrusted(A);
  expect(published.at(-1)).toEqual(["peer.offline", { address: "0:0000.0000.0002", node_id: 2, hostname: "agent-b", reason: "untrusted" }]);
  expect(published.length).toBe(2);
});
