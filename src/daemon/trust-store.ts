/**
 * The daemon's copy of its trust relationships, so trust is enforced on the
 * data plane even while the registry is unreachable and after a restart.
 * The registry is authoritative for what both sides agreed to; this file
 * mirrors its last answer plus one local override: a node revoked here stays
 * untrusted locally (and the revocation is retried) until the registry has
 * confirmed it, so `untrust` takes effect at once even offline.
 *
 * File `$PILOT_HOME/trust.json` (0600, written atomically):
 *   { version: 1, trusted: [{node_id, public_key, hostname, since}],
 *     inbound: [{node_id, public_key, hostname, reason, created_at}],
 *     outbound: [{node_id, reason, created_at}], revoked: [node_id] }
 *
 * Every change takes effect in memory first; writing the file comes after and
 * never stands in its way: if the write fails (a full disk, a read-only home),
 * the change still holds, the failure is reported (`persistError`, `onPersistError`)
 * and the write is retried (1 s, doubling to 30 s) until it succeeds.
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFileAtomic } from "../util/atomic-file.ts";

export interface TrustedNode {
  readonly nodeId: number;
  readonly publicKey: string;
  readonly hostname: string | null;
  readonly since: number;
}

export interface InboundRequest {
  readonly nodeId: number;
  readonly publicKey: string;
  readonly hostname: string | null;
  readonly reason: string;
  readonly createdAt: number;
}

export interface OutboundRequest {
  readonly nodeId: number;
  readonly reason: string;
  readonly createdAt: number;
}

export interface TrustSnapshot {
  trusted: TrustedNode[];
  inbound: InboundRequest[];
  outbound: OutboundRequest[];
}

export class TrustStoreError extends Error {}

export class TrustStore {
  private trusted = new Map<number, TrustedNode>();
  private inbound = new Map<number, InboundRequest>();
  private outbound = new Map<number, OutboundRequest>();
  private readonly revoked = new Set<number>();
  /** The last write's failure, until a write succeeds. */
  private lastPersistError: Error | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private retryDelay = 1000;
  /** Told about each failed write (the daemon logs it). */
  onPersistError: ((error: Error) => void) | null = null;
  /** Told when a write succeeds again after failures. */
  onPersistRecovered: (() => void) | null = null;

  constructor(private readonly path: string | null) {}

  /** Why the file does not match memory right now (null: it does). */
  get persistError(): Error | null {
    return this.lastPersistError;
  }

  static load(path: string): TrustStore {
    const store = new TrustStore(path);
    if (!existsSync(path)) return store;
    let data: any;
    try {
      data = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      throw new TrustStoreError(`${path} is not valid JSON (${(e as Error).message}); move it aside and restart to rebuild it from the registry`);
    }
    if (data?.version !== 1 || !Array.isArray(data.trusted)) throw new TrustStoreError(`${path} is not a Pilot trust file (version 1)`);
    for (const t of data.trusted) if (isNodeId(t?.node_id) && typeof t.public_key === "string") store.trusted.set(t.node_id, { nodeId: t.node_id, publicKey: t.public_key, hostname: t.hostname ?? null, since: Number(t.since) || 0 });
    for (const r of data.inbound ?? []) if (isNodeId(r?.node_id)) store.inbound.set(r.node_id, { nodeId: r.node_id, publicKey: String(r.public_key ?? ""), hostname: r.hostname ?? null, reason: String(r.reason ?? ""), createdAt: Number(r.created_at) || 0 });
    for (const r of data.outbound ?? []) if (isNodeId(r?.node_id)) store.outbound.set(r.node_id, { nodeId: r.node_id, reason: String(r.reason ?? ""), createdAt: Number(r.created_at) || 0 });
    for (const id of data.revoked ?? []) if (isNodeId(id)) store.revoked.add(id);
    return store;
  }

  isTrusted(nodeId: number): boolean {
    return this.trusted.has(nodeId) && !this.revoked.has(nodeId);
  }

  trustedNode(nodeId: number): TrustedNode | undefined {
    return this.isTrusted(nodeId) ? this.trusted.get(nodeId) : undefined;
  }

  trustedNodes(): TrustedNode[] {
    return [...this.trusted.values()].filter((t) => !this.revoked.has(t.nodeId)).sort((a, b) => a.nodeId - b.nodeId);
  }

  inboundRequests(): InboundRequest[] {
    return [...this.inbound.values()].sort((a, b) => a.createdAt - b.createdAt);
  }

  outboundRequests(): OutboundRequest[] {
    return [...this.outbound.values()].sort((a, b) => a.createdAt - b.createdAt);
  }

  pendingRevocations(): number[] {
    return [...this.revoked];
  }

  /** Replaces the mirror with the registry's answer; returns the nodes that stopped being trusted. */
  replace(snapshot: TrustSnapshot): number[] {
    const before = new Set(this.trustedNodes().map((t) => t.nodeId));
    this.trusted = new Map(snapshot.trusted.map((t) => [t.nodeId, t]));
    this.inbound = new Map(snapshot.inbound.map((r) => [r.nodeId, r]));
    this.outbound = new Map(snapshot.outbound.map((r) => [r.nodeId, r]));
    // A revocation the registry has applied needs no more retrying.
    for (const id of [...this.revoked]) if (!this.trusted.has(id)) this.revoked.delete(id);
    this.save();
    return [...before].filter((id) => !this.isTrusted(id));
  }

  /** Local, immediate revocation; it holds until the registry confirms. */
  revoke(nodeId: number): void {
    this.revoked.add(nodeId);
    this.inbound.delete(nodeId);
    this.outbound.delete(nodeId);
    this.save();
  }

  confirmRevoked(nodeId: number): void {
    this.revoked.delete(nodeId);
    this.trusted.delete(nodeId);
    this.save();
  }

  /** Writes the file now if it is behind; stops retrying. For shutdown. */
  flush(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.lastPersistError) this.save();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private save(): void {
    if (!this.path) return;
    try {
      this.write(this.path);
    } catch (e) {
      const error = e as Error;
      this.lastPersistError = error;
      this.onPersistError?.(error);
      if (!this.retryTimer) {
        const delay = this.retryDelay;
        this.retryDelay = Math.min(this.retryDelay * 2, 30_000);
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          this.save();
        }, delay);
        this.retryTimer.unref?.();
      }
      return;
    }
    if (this.lastPersistError) {
      this.lastPersistError = null;
      this.onPersistRecovered?.();
    }
    this.retryDelay = 1000;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  private write(path: string): void {
    const data = {
      version: 1,
      trusted: [...this.trusted.values()].map((t) => ({ node_id: t.nodeId, public_key: t.publicKey, hostname: t.hostname, since: t.since })),
      inbound: this.inboundRequests().map((r) => ({ node_id: r.nodeId, public_key: r.publicKey, hostname: r.hostname, reason: r.reason, created_at: r.createdAt })),
      outbound: this.outboundRequests().map((r) => ({ node_id: r.nodeId, reason: r.reason, created_at: r.createdAt })),
      revoked: [...this.revoked],
    };
    writeFileAtomic(path, JSON.stringify(data, null, 2) + "\n");
  }
}

function isNodeId(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
}
