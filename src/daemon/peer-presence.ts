/**
 * Which trusted peers are online, as the tunnel knows it, told to the local
 * event feed as `peer.online` / `peer.offline`. No timers or sockets of its
 * own: it reads the tunnel's events (src/tunnel/peer.ts) as the data plane
 * hands them over, and hears from the node when trust with a peer ends.
 *
 * - online: a tunnel session with a trusted peer is established (a handshake
 *   completed) while the peer was not online: its first contact since the
 *   daemon started, or the first after it went offline. Rekeys change nothing.
 * - offline `unreachable`: the tunnel gave up on a peer that was online: it
 *   sent, heard nothing back for 15 s, and a new handshake was not answered
 *   for 90 s (src/tunnel/timers.ts). So a peer that went away is noticed only
 *   once something is sent to it; an idle peer stays "online".
 * - offline `untrusted`: trust with it ended (we or it revoked); its sessions
 *   were destroyed.
 *
 * Untrusted nodes (strangers talking to a public node) never raise events:
 * they could flood the feed and its webhook.
 */
import { formatAddress, nodeOf, type Address } from "../protocol/address.ts";
import type { PeerEvent } from "../tunnel/peer.ts";

export interface PeerPresenceOptions {
  /** Is this node trusted now? */
  trusts(node: Address): boolean;
  /** The peer's hostname if known locally, and the path its frames take. */
  describe(node: Address): { hostname: string | null; endpoint: string | null; path: string };
  publish(type: "peer.online" | "peer.offline", data: Record<string, unknown>): void;
}

export class PeerPresence {
  /** Online peers and the hostname they had when they came online (trust, and with it the name, may be gone when they leave). */
  private readonly online = new Map<Address, string | null>();

  constructor(private readonly options: PeerPresenceOptions) {}

  /** Trusted peers online now. */
  get count(): number {
    return this.online.size;
  }

  isOnline(node: Address): boolean {
    return this.online.has(node);
  }

  /** Every tunnel event of one peer, in the order the tunnel raised them. */
  onTunnelEvent(node: Address, event: PeerEvent<string>): void {
    if (event.type === "established") {
      if (this.online.has(node) || !this.options.trusts(node)) return;
      const d = this.options.describe(node);
      this.online.set(node, d.hostname);
      this.options.publish("peer.online", { address: formatAddress(node), node_id: nodeOf(node), hostname: d.hostname, endpoint: d.endpoint, path: d.path });
    } else if (event.type === "handshake_failed") {
      this.wentOffline(node, "unreachable");
    }
  }

  /** Trust with `node` ended and its sessions are gone. */
  untrusted(node: Address): void {
    this.wentOffline(node, "untrusted");
  }

  private wentOffline(node: Address, reason: "unreachable" | "untrusted"): void {
    if (!this.online.has(node)) return;
    const hostname = this.options.describe(node).hostname ?? this.online.get(node) ?? null;
    this.online.delete(node);
    this.options.publish("peer.offline", { address: formatAddress(node), node_id: nodeOf(node), hostname, reason });
  }
}
