/**
 * Failing a dial fast when the peer is offline.
 *
 * A SYN to a peer whose daemon stopped or was killed gets no answer, and the
 * stream would only give up at its connect timeout (20 s): the tunnel
 * session looks established (its keys are still valid), and nothing else
 * says the peer is gone. The registry does know: a daemon keeps its
 * subscribed registry connection open while it runs, and the registry counts
 * a node offline once that connection closes (a stop, or the kernel closing
 * the socket of a killed process), or after its heartbeats stop.
 *
 * So when a dial's SYN has had no answer for OFFLINE_CHECK_MS (or a few
 * round trips on a slow path), and nothing at all has come from the peer
 * since the dial began, the data plane asks the registry. Only if the
 * registry says offline does the dial fail, with `unreachable` and the
 * reason; if the registry says online, cannot be asked, or the SYN is
 * answered meanwhile, the dial goes on as before. A live peer whose SYN was
 * merely dropped (its SYN rate limit) is therefore never failed: the
 * registry still counts it online.
 *
 * One registry question per peer at a time and per PRESENCE_TTL_MS,
 * shared by every dial to it, and at most MAX_PENDING peers asked at once:
 * a flood of dials to dead peers costs the registry little.
 */
import { formatAddress, type Address } from "../protocol/address.ts";
import { NodeError } from "./local-node.ts";

/** What the registry says about a node. */
export interface PeerPresence {
  readonly online: boolean;
  /** When the registry last heard from it (unix ms), if it says. */
  readonly lastSeen: number | null;
}

/** How long a SYN goes unanswered before the registry is asked. */
export const OFFLINE_CHECK_MS = 700;
/** ...or this many round trips of the path, if that is longer. */
const OFFLINE_CHECK_RTTS = 4;
/** An answer is reused for this long. */
const PRESENCE_TTL_MS = 1000;
/** Peers asked about at once, per daemon. */
const MAX_PENDING = 64;

/** When to ask about a dial's peer, given the path's round trip (ms) if known. */
export function offlineCheckDelay(rttMs: number | null): number {
  return rttMs !== null && rttMs > 0 ? Math.max(OFFLINE_CHECK_MS, Math.ceil(rttMs * OFFLINE_CHECK_RTTS)) : OFFLINE_CHECK_MS;
}

/** Asks the registry (through `ask`) whether peers are online; deduplicated and briefly cached. */
export class PresenceCheck {
  private readonly answers = new Map<Address, { at: number; presence: Promise<PeerPresence | null> }>();

  constructor(
    private readonly ask: (node: Address) => Promise<PeerPresence>,
    private readonly clock: () => number,
  ) {}

  /** The registry's view of `node`, or null when it cannot tell (unreachable, not visible, too many questions). */
  presence(node: Address): Promise<PeerPresence | null> {
    const now = this.clock();
    for (const [n, a] of this.answers) if (now - a.at >= PRESENCE_TTL_MS) this.answers.delete(n);
    const cached = this.answers.get(node);
    if (cached) return cached.presence;
    if (this.answers.size >= MAX_PENDING) return Promise.resolve(null);
    const presence = this.ask(node).then(
      (p) => p,
      () => null,
    );
    this.answers.set(node, { at: now, presence });
    return presence;
  }
}

/** The error of a dial failed because the registry says the peer is offline. */
export function offlineDialError(node: Address, waitedMs: number, presence: PeerPresence, nowUnixMs: number = Date.now()): NodeError {
  const seen = presence.lastSeen !== null && presence.lastSeen > 0 ? `; the registry last heard from it ${Math.max(0, Math.round((nowUnixMs - presence.lastSeen) / 1000))} s ago` : "";
  return new NodeError(
    "unreachable",
    `${formatAddress(node)} is offline: no answer to the connection request within ${(waitedMs / 1000).toFixed(1)} s, and the registry says its daemon is not running${seen}`,
    "start the agent's daemon (pilot daemon start on that machine), or check with: pilot find <it>",
  );
}
