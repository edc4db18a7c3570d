/**
 * The beacons of one deployment as one: each tells its peers where its nodes
 * are registered (mesh_announce), and a beacon that must punch or relay toward
 * a node registered elsewhere hands the datagram to that node's beacon
 * (mesh_deliver), which sends it on as if it came from itself.
 *
 * Trust: every mesh message carries a MAC by the mesh key, which is derived
 * from the deployment's Ed25519 key (a deterministic signature over a fixed
 * string, hashed), so only processes holding that key can speak here; and
 * only from the peer addresses the operator configured (`--beacon-peers`). A
 * beacon forwards only for a sender registered with itself (it checked that
 * registration, the visibility rule and the sender's relay budget), and
 * delivers only to a node registered with itself; what it receives from each
 * peer is metered in bytes, like a node's relay budget. Messages older than
 * MESH_WINDOW_MS are dropped; a replay inside it repeats a relayed tunnel
 * frame (refused by the tunnel's own replay window) or a punch (refused by
 * the daemon's punch nonce cache), or restates an announce (the later
 * registration always wins).
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import {
  decodeMeshAnnounce,
  decodeMeshDeliver,
  encodeMeshAnnounce,
  encodeMeshDeliver,
  MESH_ANNOUNCE_TAG_AT,
  MESH_DELIVER_HEADER_SIZE,
  MESH_DELIVER_TAG_AT,
  MESH_TAG_SIZE,
  type MeshAnnounce,
} from "../protocol/beacon-mesh.ts";
import type { Signer } from "../registry/signer.ts";

/** A mesh message this far from our clock is dropped. */
export const MESH_WINDOW_MS = 30_000;

/** Where a node registered with another beacon is. */
export interface RemoteRegistration {
  /** The peer beacon ("ip:port" key into the peer list). */
  readonly peer: MeshPeer;
  readonly node: number;
  readonly registeredAt: number;
  readonly ip: string;
  readonly port: number;
  readonly expires: number;
}

export interface MeshPeer {
  readonly host: string;
  readonly port: number;
  /** Byte budget of what this peer hands us. */
  tokens: number;
  at: number;
}

export interface MeshStats {
  announcesSent: number;
  announcesReceived: number;
  delivered: number;
  forwarded: number;
  rejected: number;
  rateLimited: number;
}

/** The mesh key of a deployment: the same on every process holding its key, unknown to anyone else. */
export function meshKeyOf(signer: Signer): Uint8Array {
  const sig = signer.sign(new TextEncoder().encode("pilot-beacon-mesh-key-v1"));
  return new Uint8Array(createHash("sha256").update("pilot-beacon-mesh-key-v1\n").update(sig).digest());
}

export class BeaconMesh {
  readonly stats: MeshStats = { announcesSent: 0, announcesReceived: 0, delivered: 0, forwarded: 0, rejected: 0, rateLimited: 0 };
  readonly peers: MeshPeer[];
  private readonly remote = new Map<number, RemoteRegistration>();
  private readonly lastAnnounced = new Map<number, { at: number; source: string }>();

  constructor(
    private readonly key: Uint8Array,
    peers: readonly { host: string; port: number }[],
    private readonly limits: { bytesPerSecond: number; burstBytes: number; maxNodes: number },
  ) {
    this.peers = peers.map((p) => ({ host: p.host, port: p.port, tokens: limits.burstBytes, at: 0 }));
  }

  /** One more peer beacon (IP literal and UDP port). */
  addPeer(host: string, port: number): void {
    if (!this.peerAt(host, port)) this.peers.push({ host, port, tokens: this.limits.burstBytes, at: 0 });
  }

  /** The configured peer a datagram came from, if any. */
  peerAt(ip: string, port: number): MeshPeer | undefined {
    return this.peers.find((p) => p.port === port && p.host === ip);
  }

  private tag(...parts: Uint8Array[]): Uint8Array {
    const h = createHmac("sha256", this.key);
    h.update("pilot-beacon-mesh-v1\n");
    for (const p of parts) h.update(p);
    return new Uint8Array(h.digest().subarray(0, MESH_TAG_SIZE));
  }

  /**
   * The announces to send for a registration just accepted (to every peer), or none
   * when this one was announced recently from the same source.
   */
  announce(a: Omit<MeshAnnounce, "sentAt">, now: number): Uint8Array | null {
    if (this.peers.length === 0) return null;
    this.remote.delete(a.node);
    const source = `${a.ip}:${a.port}`;
    const last = this.lastAnnounced.get(a.node);
    if (last && last.source === source && now - last.at < a.ttlMs / 3) return null;
    if (this.lastAnnounced.size >= this.limits.maxNodes) this.lastAnnounced.clear();
    this.lastAnnounced.set(a.node, { at: now, source });
    const out = encodeMeshAnnounce({ ...a, sentAt: now });
    out.set(this.tag(out.subarray(0, MESH_ANNOUNCE_TAG_AT)), MESH_ANNOUNCE_TAG_AT);
    this.stats.announcesSent += this.peers.length;
    return out;
  }

  /** An announce from a peer: recorded (and returned) when authentic, fresh, and newer than what we knew. */
  receiveAnnounce(peer: MeshPeer, data: Uint8Array, now: number): RemoteRegistration | null {
    const m = decodeMeshAnnounce(data);
    if (!m.ok || !this.authentic(data.subarray(MESH_ANNOUNCE_TAG_AT), data.subarray(0, MESH_ANNOUNCE_TAG_AT)) || Math.abs(m.value.sentAt - now) > MESH_WINDOW_MS) {
      this.stats.rejected++;
      return null;
    }
    const a = m.value;
    const known = this.remote.get(a.node);
    if (known && known.registeredAt > a.registeredAt) return null;
    if (!known && this.remote.size >= this.limits.maxNodes) this.sweep(now);
    if (!known && this.remote.size >= this.limits.maxNodes) return null;
    const reg: RemoteRegistration = { peer, node: a.node, registeredAt: a.registeredAt, ip: a.ip, port: a.port, expires: a.sentAt + a.ttlMs };
    this.remote.set(a.node, reg);
    this.lastAnnounced.delete(a.node);
    this.stats.announcesReceived++;
    return reg;
  }

  /** The live registration of a node at another beacon. */
  locate(node: number, now: number): RemoteRegistration | undefined {
    const r = this.remote.get(node);
    return r && r.expires > now ? r : undefined;
  }

  /** The node registered here again: whatever another beacon said about it is older. */
  forget(node: number): void {
    this.remote.delete(node);
  }

  /** Wraps a datagram for `dest`, registered at `peer`'s beacon. */
  wrap(dest: number, inner: Uint8Array, now: number): Uint8Array {
    const out = encodeMeshDeliver({ dest, sentAt: now }, inner);
    out.set(this.tag(out.subarray(0, MESH_DELIVER_TAG_AT), inner), MESH_DELIVER_TAG_AT);
    this.stats.forwarded++;
    return out;
  }

  /** A mesh_deliver from a peer: the destination and the inner datagram when authentic, fresh and within the peer's budget. */
  unwrap(peer: MeshPeer, data: Uint8Array, now: number): { dest: number; inner: Uint8Array } | null {
    const m = decodeMeshDeliver(data);
    if (!m.ok || !this.authentic(data.subarray(MESH_DELIVER_TAG_AT, MESH_DELIVER_HEADER_SIZE), data.subarray(0, MESH_DELIVER_TAG_AT), m.value.inner) || Math.abs(m.value.sentAt - now) > MESH_WINDOW_MS) {
      this.stats.rejected++;
      return null;
    }
    const { bytesPerSecond: rate, burstBytes: burst } = this.limits;
    peer.tokens = Math.min(burst, peer.tokens + (Math.max(0, now - peer.at) / 1000) * rate);
    peer.at = now;
    if (peer.tokens < data.length) {
      this.stats.rateLimited++;
      return null;
    }
    peer.tokens -= data.length;
    this.stats.delivered++;
    return { dest: m.value.dest, inner: m.value.inner };
  }

  private authentic(tag: Uint8Array, ...parts: Uint8Array[]): boolean {
    return tag.length === MESH_TAG_SIZE && timingSafeEqual(tag, this.tag(...parts));
  }

  sweep(now: number): void {
    for (const [node, r] of this.remote) if (r.expires <= now) this.remote.delete(node);
    for (const [node, a] of this.lastAnnounced) if (now - a.at > 10 * 60_000) this.lastAnnounced.delete(node);
  }
}
