/**
 * Which handshake initiations get Diffie-Hellman work, sans I/O. Anyone who
 * knows a public node's key can make initiations with a valid mac1, and each
 * one the node decrypts costs it two X25519 operations (four to answer). The
 * router asks the guard about every initiation whose mac1 is valid, before
 * any DH:
 *
 *   known source      the endpoint of a peer with a session, or of a peer the shell prefers
 *                     (trusted): its own small budget per endpoint and in total, so a flood
 *                     from strangers never delays a known peer's rekey
 *   relayed           the beacon vouches for the sender's address (a registered node): a
 *                     budget per relayed node, and the strangers' total
 *   anyone else       under load, a valid mac2 (cookie.ts) is required: an initiation
 *                     without one is answered with a cookie reply (bounded per source and
 *                     in total) and dropped; with one, a budget per source address (IPv4
 *                     address, IPv6 /64); always, the strangers' total
 *
 * "Under load": more than `loadThreshold` initiations per second from
 * sources other than known ones, and for `loadHold` after. Below that, a
 * stranger needs no cookie: an extra round trip only when it is needed.
 *
 *   const g = new HandshakeGuard(limits?)
 *   g.admit(source, now, { known, relayed, hasMac2 }) -> "process" | "cookie" | "drop"
 *   g.underLoad(now)
 *
 * `source` is the endpoint as text ("ip:port", "[v6]:port", or "relay:<node>").
 * Every table is bounded (`maxSources`), so a flood from many sources costs
 * bounded memory.
 */
import { BucketTable, TokenBucket } from "./rate-limit.ts";

export interface HandshakeLimits {
  /** Initiations per second from other than known sources above which cookies are required. */
  readonly loadThreshold: number;
  /** How long (ms) the node stays under load after the rate drops. */
  readonly loadHold: number;
  /** Under load: handshakes per second per source address (IPv4 address, IPv6 /64, relayed node), and burst. */
  readonly perAddressRate: number;
  readonly perAddressBurst: number;
  /** Handshakes per second from everyone but known sources together (the DH work strangers can cause), and burst. */
  readonly strangerRate: number;
  readonly strangerBurst: number;
  /** Handshakes per second from one known source, and from all together. */
  readonly knownPerSourceRate: number;
  readonly knownPerSourceBurst: number;
  readonly knownRate: number;
  readonly knownBurst: number;
  /** Cookie replies per second to one source endpoint, and in total. */
  readonly cookiePerSourceRate: number;
  readonly cookiePerSourceBurst: number;
  readonly cookieRate: number;
  readonly cookieBurst: number;
  /** Most sources each table remembers. */
  readonly maxSources: number;
}

export const DEFAULT_HANDSHAKE_LIMITS: HandshakeLimits = {
  loadThreshold: 100,
  loadHold: 1_000,
  perAddressRate: 20,
  perAddressBurst: 5,
  strangerRate: 200,
  strangerBurst: 50,
  knownPerSourceRate: 5,
  knownPerSourceBurst: 10,
  knownRate: 500,
  knownBurst: 100,
  cookiePerSourceRate: 1,
  cookiePerSourceBurst: 2,
  cookieRate: 1_000,
  cookieBurst: 200,
  maxSources: 4_096,
};

export type GuardVerdict = "process" | "cookie" | "drop";

export interface GuardStats {
  /** Initiations let through to DH work. */
  processed: number;
  cookies: number;
  /** Dropped: over a budget (per source, strangers' total, or cookie replies). */
  throttled: number;
}

/** The address part of an endpoint, as rate limits count sources: the IPv4 address, the IPv6 /64, or the relayed node. */
export function sourceAddress(source: string): string {
  if (source.startsWith("relay:")) return source;
  const colon = source.lastIndexOf(":");
  let host = colon > 0 ? source.slice(0, colon) : source;
  if (host.startsWith("[")) host = host.slice(1, host.endsWith("]") ? -1 : undefined);
  if (!host.includes(":")) return host;
  if (host.toLowerCase().startsWith("::ffff:") && host.includes(".")) return host.slice(7);
  return ipv6Prefix64(host);
}

function ipv6Prefix64(host: string): string {
  const [head = "", tail] = host.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? left : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return groups.slice(0, 4).map((g) => (g === "" ? "0" : g.toLowerCase().replace(/^0+(?=.)/, ""))).join(":") + "::/64";
}

export class HandshakeGuard {
  readonly limits: HandshakeLimits;
  readonly stats: GuardStats = { processed: 0, cookies: 0, throttled: 0 };
  private readonly perAddress: BucketTable;
  private readonly strangers: TokenBucket;
  private readonly knownPerSource: BucketTable;
  private readonly known: TokenBucket;
  private readonly cookiePerSource: BucketTable;
  private readonly cookieTotal: TokenBucket;
  private windowStart = -Infinity;
  private windowCount = 0;
  private loadUntil = -Infinity;

  constructor(limits: Partial<HandshakeLimits> = {}) {
    const l = (this.limits = { ...DEFAULT_HANDSHAKE_LIMITS, ...limits });
    this.perAddress = new BucketTable(l.perAddressRate, l.perAddressBurst, l.maxSources);
    this.strangers = new TokenBucket(l.strangerRate, l.strangerBurst);
    this.knownPerSource = new BucketTable(l.knownPerSourceRate, l.knownPerSourceBurst, l.maxSources);
    this.known = new TokenBucket(l.knownRate, l.knownBurst);
    this.cookiePerSource = new BucketTable(l.cookiePerSourceRate, l.cookiePerSourceBurst, l.maxSources);
    this.cookieTotal = new TokenBucket(l.cookieRate, l.cookieBurst);
  }

  underLoad(now: number): boolean {
    return now < this.loadUntil;
  }

  /** Entries held by the per-source tables (all bounded by `maxSources`). */
  get sourcesTracked(): number {
    return this.perAddress.size + this.knownPerSource.size + this.cookiePerSource.size;
  }

  /**
   * What to do with one initiation whose mac1 is valid. `hasMac2` is asked
   * only when the answer depends on it (it costs an HMAC).
   */
  admit(source: string, now: number, how: { known: boolean; relayed: boolean; hasMac2: () => boolean }): GuardVerdict {
    if (how.known && this.knownPerSource.take(source, now) && this.known.take(now)) return this.verdict("process");
    this.noteStranger(now);
    if (how.relayed) return this.verdict(this.perAddress.take(source, now) && this.strangers.take(now) ? "process" : "drop");
    if (this.underLoad(now)) {
      if (!how.hasMac2()) {
        return this.verdict(this.cookiePerSource.take(source, now) && this.cookieTotal.take(now) ? "cookie" : "drop");
      }
      if (!this.perAddress.take(sourceAddress(source), now)) return this.verdict("drop");
    }
    return this.verdict(this.strangers.take(now) ? "process" : "drop");
  }

  private noteStranger(now: number): void {
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.windowCount = 0;
    }
    if (++this.windowCount > this.limits.loadThreshold) this.loadUntil = now + this.limits.loadHold;
  }

  private verdict(v: GuardVerdict): GuardVerdict {
    if (v === "process") this.stats.processed++;
    else if (v === "cookie") this.stats.cookies++;
    else this.stats.throttled++;
    return v;
  }
}
